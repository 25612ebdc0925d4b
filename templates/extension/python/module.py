"""{{name}}: a room extension. `!{{name}}` makes it greet the sender, with the owner's `greeting`
setting, and count how many times each person called it (in its store, which outlives its
instances, keyed by occupant id, which a nickname change keeps).

The contract is wit/room-extension.wit (the `room-extension` world): read it for what each hook
is for, what the imports give and what the host counts as a fault. componentize-py turns it into
the `wit_world` package (`componentize-py -d wit -w room-extension bindings DIR` writes it out):
records are dataclasses, enums `SettingKind.TEXT_SINGLE`, verdicts `MessageVerdict_Pass()`.
The module's top level runs once, at build time; the hooks are the methods of `Hooks`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.hooks import JoinVerdict_Allow, Manifest, MessageVerdict_Pass
from wit_world.imports import room, store
from wit_world.imports.model import Setting, SettingKind


class Hooks(exports.Hooks):
    def describe(self):
        """Asked once, when the operator installs it: no import may be used here."""
        return Manifest(
            name="{{name}}",
            version="0.1.0",
            description="Greets whoever says !{{name}}, counting their calls",
            nick="{{name}}",
            command="!{{name}}",
            settings=[
                Setting(
                    name="greeting",
                    label="How it greets",
                    kind=SettingKind.TEXT_SINGLE,
                    default=["Hello"],
                    options=[],
                )
            ],
            tick_seconds=None,
            capabilities=[],
        )

    def on_command(self, sender, arguments):
        key = f"calls/{sender.id}"
        stored = store.get(key)
        calls = (int(stored.decode()) if stored is not None else 0) + 1
        greeting = "".join(room.setting("greeting"))
        # A refused put (quota full) or say (past the host's message rate) raises Err, its value
        # the reason; uncaught, it would be a fault. Here the count or the greeting is skipped.
        try:
            store.put(key, str(calls).encode())
            room.say(f"{greeting}, {sender.nick}! That makes {calls}.")
        except Err:
            pass

    # The other hooks give their "don't care" answer.
    def on_message(self, sender, body):
        return MessageVerdict_Pass()

    def on_join(self, joiner):
        return JoinVerdict_Allow()

    def on_joined(self, occupant):
        pass

    def on_left(self, occupant):
        pass

    def on_tick(self):
        pass
