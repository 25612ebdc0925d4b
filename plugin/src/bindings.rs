//! The thin layer between the WIT world and the library: converts types, nothing else.

wit_bindgen::generate!({ path: "../wit", world: "muc-plugin" });

use minidom::Element;

use exports::muc::plugin::guest::{self, Guest, PluginInfo};
use muc::plugin::{
    archive, clock, extensions, ids, logging, routing, settings, storage, timers, types,
};
use xmpp_parsers::data_forms::{Field, FieldType, Option_};
use xmpp_parsers::muc::user::{Affiliation, Role};

use crate::host::{
    ArchiveEntry, ArchiveFilter, ArchivePage, ArchivePosition, ArchiveQuery, ArchiveQueryError,
    ArchiveWriteError, Configured, Envelope, Fault, HookEvent, HookOutcome, Host, Level,
    MessageHooks, OccupantView, RoomView, Said, StanzaKind, TickRequest, Tier, Verdict,
};
use crate::service::{self, GuestRooms, Muc, Settings};

/// The instance's settings, given by `init`. A component instance is single-threaded.
static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

struct Component;

impl Guest for Component {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: service::NAME.into(),
            version: service::VERSION.into(),
            contract: service::CONTRACT.into(),
        }
    }

    fn init(settings: guest::Settings) -> Result<(), String> {
        SETTINGS
            .set(Settings {
                service: settings.service,
                admins: settings.admins,
                max_rooms_per_user: named_number("max-rooms-per-user")?
                    .unwrap_or(service::DEFAULT_MAX_ROOMS_PER_USER),
                guest_domain: settings::get("guest-domain"),
                guest_rooms: guest_rooms()?,
            })
            .map_err(|_| "init called twice".to_string())
    }

    fn upgrade(from_version: String) -> Result<(), String> {
        with_muc(|muc, host| muc.upgrade(host, &from_version))
    }

    fn handle_stanza(stanza: types::Stanza) -> Result<(), String> {
        let envelope = envelope(stanza.envelope);
        with_muc(|muc, host| muc.handle_stanza(host, &envelope, &stanza.xml))
    }

    fn on_timer(key: String) -> Result<(), String> {
        with_muc(|muc, host| muc.on_timer(host, &key))
    }

    fn on_shutdown() -> Result<(), String> {
        with_muc(|muc, host| muc.on_shutdown(host))
    }
}

/// A named setting of the host's (`muc:plugin/settings`) that must be a whole number.
fn named_number(name: &str) -> Result<Option<u32>, String> {
    settings::get(name)
        .map(|text| {
            text.parse()
                .map_err(|_| format!("setting {name} = {text:?} is not a whole number"))
        })
        .transpose()
}

/// The host's setting `guest-rooms` (a host before it has guests says nothing: the default).
fn guest_rooms() -> Result<GuestRooms, String> {
    match settings::get("guest-rooms") {
        None => Ok(GuestRooms::default()),
        Some(name) => GuestRooms::from_name(&name)
            .ok_or_else(|| format!("setting guest-rooms = {name:?} is neither public nor none")),
    }
}

fn with_muc(call: impl FnOnce(&Muc, &mut dyn Host) -> Result<(), Fault>) -> Result<(), String> {
    let settings = SETTINGS.get().ok_or("called before init")?;
    let muc = Muc::new(settings.clone());
    call(&muc, &mut WitHost).map_err(|Fault(reason)| reason)
}

fn envelope(envelope: types::Envelope) -> Envelope {
    Envelope {
        kind: match envelope.kind {
            types::StanzaKind::Message => StanzaKind::Message,
            types::StanzaKind::Presence => StanzaKind::Presence,
            types::StanzaKind::Iq => StanzaKind::Iq,
        },
        type_: envelope.type_,
        from: envelope.from,
        to: envelope.to,
        id: envelope.id,
    }
}

/// The host, reached through the WIT imports.
struct WitHost;

fn tier(tier: Tier) -> storage::Tier {
    match tier {
        Tier::Durable => storage::Tier::Durable,
        Tier::Volatile => storage::Tier::Volatile,
    }
}

impl Host for WitHost {
    fn get(&mut self, t: Tier, key: &str) -> Option<Vec<u8>> {
        storage::get(tier(t), key)
    }

    fn put(&mut self, t: Tier, key: &str, value: Vec<u8>) -> Result<(), Fault> {
        storage::put(tier(t), key, &value).map_err(|e| Fault(format!("{e:?}")))
    }

    fn delete(&mut self, t: Tier, key: &str) {
        storage::delete(tier(t), key)
    }

    fn scan(
        &mut self,
        t: Tier,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Vec<(String, Vec<u8>)> {
        storage::scan(tier(t), prefix, start_after, limit)
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect()
    }

    fn delete_prefix(&mut self, t: Tier, prefix: &str) -> u32 {
        storage::delete_prefix(tier(t), prefix)
    }

    fn send(&mut self, stanza: Element) -> Result<(), Fault> {
        routing::send(&String::from(&stanza)).map_err(|e| Fault(format!("{e:?}")))
    }

    fn send_serialised(&mut self, stanza: String) -> Result<(), Fault> {
        routing::send(&stanza).map_err(|e| Fault(format!("{e:?}")))
    }

    fn broadcast(&mut self, stanza: Element, recipients: &[String]) -> Result<(), Fault> {
        routing::broadcast(&String::from(&stanza), recipients).map_err(|e| Fault(format!("{e:?}")))
    }

    fn broadcast_to_keys(&mut self, stanza: &str, t: Tier, prefix: &str) -> Result<(), Fault> {
        routing::broadcast_to_keys(stanza, tier(t), prefix)
            .map(|_| ())
            .map_err(|e| Fault(format!("{e:?}")))
    }

    fn set_timer(&mut self, key: &str, at_ms: u64) {
        timers::set(key, at_ms)
    }

    fn cancel_timer(&mut self, key: &str) {
        timers::cancel(key)
    }

    fn now_ms(&mut self) -> u64 {
        clock::now()
    }

    fn unique_id(&mut self) -> String {
        ids::unique_id()
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => logging::Level::Trace,
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
            Level::Error => logging::Level::Error,
        };
        logging::log(level, message)
    }

    fn extensions_active(&mut self, room: &str) -> bool {
        extensions::active(room)
    }

    fn extension_message_hooks(&mut self, room: &str) -> MessageHooks {
        match extensions::message_hooks(room) {
            extensions::MessageHooksNeed::None => MessageHooks::None,
            extensions::MessageHooksNeed::OccupantsNamed(nicks) => {
                MessageHooks::OccupantsNamed(nicks)
            }
            extensions::MessageHooksNeed::WithOccupants => MessageHooks::WithOccupants,
        }
    }

    fn extension_hook(&mut self, room: &RoomView, event: HookEvent) -> HookOutcome {
        let event = match event {
            HookEvent::Message { sender, body } => {
                extensions::Event::Message(extensions::MessageEvent {
                    sender: occupant(&sender),
                    body,
                })
            }
            HookEvent::Join(who) => extensions::Event::Join(occupant(&who)),
            HookEvent::Joined(who) => extensions::Event::Joined(occupant(&who)),
            HookEvent::Left(who) => extensions::Event::Left(occupant(&who)),
            HookEvent::Tick => extensions::Event::Tick,
        };
        let outcome = extensions::hook(&wit_room(room), &event);
        HookOutcome {
            verdict: match outcome.verdict {
                extensions::Verdict::Pass => Verdict::Pass,
                extensions::Verdict::Rewrite(body) => Verdict::Rewrite(body),
                extensions::Verdict::Refuse(why) => Verdict::Refuse(why),
            },
            said: outcome
                .said
                .into_iter()
                .map(|s| Said {
                    nick: s.nick,
                    body: s.body,
                })
                .collect(),
            next_tick: tick_request(outcome.next_tick),
        }
    }

    fn extension_form_fields(&mut self, room: &str) -> Vec<Field> {
        extensions::form_fields(room)
            .into_iter()
            .map(|f| {
                let type_ = match f.kind {
                    extensions::FieldKind::Boolean => FieldType::Boolean,
                    extensions::FieldKind::TextSingle => FieldType::TextSingle,
                    extensions::FieldKind::TextMulti => FieldType::TextMulti,
                    extensions::FieldKind::ListSingle => FieldType::ListSingle,
                };
                let mut field = Field::new(&f.var, type_);
                field.label = Some(f.label);
                field.values = f.values;
                field.options = f
                    .options
                    .into_iter()
                    .map(|value| Option_ { label: None, value })
                    .collect();
                field
            })
            .collect()
    }

    fn configure_extensions(
        &mut self,
        room: &RoomView,
        submitted: &[(String, Vec<String>)],
    ) -> Result<Configured, String> {
        let submitted: Vec<extensions::SubmittedField> = submitted
            .iter()
            .map(|(var, values)| extensions::SubmittedField {
                var: var.clone(),
                values: values.clone(),
            })
            .collect();
        extensions::configure(&wit_room(room), &submitted).map(|c| Configured {
            changed: c.changed,
            next_tick: tick_request(c.next_tick),
        })
    }

    fn forget_extensions(&mut self, room: &str) {
        extensions::forget(room)
    }

    fn archive_append(&mut self, room: &str, entry: ArchiveEntry) -> Result<(), ArchiveWriteError> {
        let entry = archive::Entry {
            id: entry.id,
            at: entry.at_ms,
            sender: entry.sender,
            occupant_id: entry.occupant_id,
            real_jid: entry.real_jid,
            stanza: entry.stanza,
        };
        archive::append(room, &entry).map_err(archive_write_error)
    }

    fn archive_query(
        &mut self,
        room: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, ArchiveQueryError> {
        let ArchiveFilter {
            start_ms,
            end_ms,
            with,
            after_id,
            before_id,
            ids,
        } = &query.filter;
        let query = archive::PageRequest {
            filter: archive::Filter {
                start: *start_ms,
                end: *end_ms,
                with: with.clone(),
                after_id: after_id.clone(),
                before_id: before_id.clone(),
                ids: ids.clone(),
            },
            position: match &query.position {
                ArchivePosition::Oldest => archive::Position::Oldest,
                ArchivePosition::Newest => archive::Position::Newest,
                ArchivePosition::After(id) => archive::Position::After(id.clone()),
                ArchivePosition::Before(id) => archive::Position::Before(id.clone()),
            },
            limit: query.limit,
        };
        let page = archive::query(room, &query).map_err(|error| match error {
            archive::QueryError::ItemNotFound(id) => ArchiveQueryError::ItemNotFound(id),
        })?;
        Ok(ArchivePage {
            entries: page
                .entries
                .into_iter()
                .map(|entry| ArchiveEntry {
                    id: entry.id,
                    at_ms: entry.at,
                    sender: entry.sender,
                    occupant_id: entry.occupant_id,
                    real_jid: entry.real_jid,
                    stanza: entry.stanza,
                })
                .collect(),
            complete: page.complete,
            count: page.count,
            index: page.index,
        })
    }

    fn archive_replace(
        &mut self,
        room: &str,
        id: &str,
        stanza: &str,
    ) -> Result<bool, ArchiveWriteError> {
        archive::replace(room, id, stanza).map_err(archive_write_error)
    }

    fn archive_trim(&mut self, room: &str, keep: u32) {
        archive::trim(room, keep)
    }

    fn archive_delete(&mut self, room: &str) {
        archive::delete(room)
    }
}

fn archive_write_error(error: archive::WriteError) -> ArchiveWriteError {
    match error {
        archive::WriteError::Storage(refused) => ArchiveWriteError::Refused(format!("{refused:?}")),
        archive::WriteError::DuplicateId(id) => ArchiveWriteError::DuplicateId(id),
    }
}

fn tick_request(request: extensions::TickRequest) -> TickRequest {
    match request {
        extensions::TickRequest::Keep => TickRequest::Keep,
        extensions::TickRequest::At(at) => TickRequest::At(at),
        extensions::TickRequest::Stop => TickRequest::Stop,
    }
}

fn wit_room(room: &RoomView) -> extensions::Room {
    extensions::Room {
        jid: room.jid.clone(),
        name: room.name.clone(),
        subject: room.subject.clone(),
        non_anonymous: room.non_anonymous,
        owners: room.owners.clone(),
        occupants: room.occupants.iter().map(occupant).collect(),
    }
}

fn occupant(occupant: &OccupantView) -> extensions::Occupant {
    extensions::Occupant {
        nick: occupant.nick.clone(),
        role: match occupant.role {
            Role::Moderator => extensions::Role::Moderator,
            Role::Visitor => extensions::Role::Visitor,
            _ => extensions::Role::Participant,
        },
        affiliation: match occupant.affiliation {
            Affiliation::Owner => extensions::Affiliation::Owner,
            Affiliation::Admin => extensions::Affiliation::Admin,
            Affiliation::Member => extensions::Affiliation::Member,
            _ => extensions::Affiliation::None,
        },
        jid: occupant.bare_jid.clone(),
    }
}

export!(Component);
