/**
 * {{name}}: a room extension. `!{{name}}` makes it greet the sender, with the owner's `greeting`
 * setting, and count how many times each person called it (in its store, which outlives its
 * instances, keyed by occupant id, which a nickname change keeps).
 *
 * The contract is wit/room-extension.wit (the `room-extension` world): read it for what each
 * hook is for, what the imports give and what the host counts as a fault. Its interfaces are
 * imported by their WIT names; records are objects with camelCase fields, an `option` is
 * `undefined` or the value, enums are strings, verdicts `{ tag: 'pass' }`. The module's top level
 * runs once, at build time; the hooks are the methods of `hooks`.
 */

import { say, setting } from 'muc:extension/room@1.0.0';
import { get, put } from 'muc:extension/store@1.0.0';

export const hooks = {
  /** Asked once, when the operator installs it: no import may be used here. */
  describe() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      description: 'Greets whoever says !{{name}}, counting their calls',
      nick: '{{name}}',
      command: '!{{name}}',
      settings: [
        { name: 'greeting', label: 'How it greets', kind: 'text-single', default: ['Hello'], options: [] },
      ],
      tickSeconds: undefined,
      capabilities: [],
    };
  },

  onCommand(sender, args) {
    const key = `calls/${sender.id}`;
    const stored = get(key);
    const calls = (stored === undefined ? 0 : Number(new TextDecoder().decode(stored))) + 1;
    const greeting = setting('greeting').join('');
    // A refused put (quota full) or say (past the host's message rate) throws an error whose
    // `payload` names why; uncaught, it would be a fault. Here the count or the greeting is
    // skipped.
    try {
      put(key, new TextEncoder().encode(String(calls)));
      say(`${greeting}, ${sender.nick}! That makes ${calls}.`);
    } catch {}
  },

  // The other hooks give their "don't care" answer.
  onMessage(sender, body) {
    return { tag: 'pass' };
  },
  onJoin(joiner) {
    return { tag: 'allow' };
  },
  onJoined(occupant) {},
  onLeft(occupant) {},
  onTick() {},
};
