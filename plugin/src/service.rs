//! The MUC service: entry points the binding layer calls, and dispatch of inbound stanzas to the
//! module that owns them.

use jid::Jid;
use minidom::Element;
use xmpp_parsers::muc::user::Status;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::adhoc;
use crate::admin;
use crate::affiliation;
use crate::announce::Presence;
use crate::commands;
use crate::destroy;
use crate::disco;
use crate::errors;
use crate::event::{OccupantIq, RoomIq, RoomMessage};
use crate::extensions;
use crate::features::{self, lock, registration};
use crate::groupchat;
use crate::history_migration;
use crate::host::{Envelope, Fault, HookEvent, Host, Level, StanzaKind, Tier};
use crate::keys;
use crate::occupant::Occupant;
use crate::owner;
use crate::presence;
use crate::private_message;
use crate::room::{self, Room};
use crate::shutdown;
use crate::software_version;

pub const NAME: &str = "muc";
#[cfg(not(feature = "swap-test-variant"))]
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// A second build that differs visibly (its version, in `describe` and XEP-0092), for the
/// hot-swap tests.
#[cfg(feature = "swap-test-variant")]
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+swap-test");
/// The version of `wit/muc-plugin.wit` this plugin is built against.
pub const CONTRACT: &str = "1.5.0";

/// Stanzas larger than this are refused with `policy-violation` before any work is done.
const MAX_STANZA_BYTES: usize = 256 * 1024;

pub use crate::event::{GuestRooms, Inbound, Muc, Settings, DEFAULT_MAX_ROOMS_PER_USER};

impl Muc {
    pub fn handle_stanza(
        &self,
        host: &mut dyn Host,
        envelope: &Envelope,
        xml: &str,
    ) -> Result<(), Fault> {
        let kind = kind_name(envelope.kind);
        if xml.len() > MAX_STANZA_BYTES {
            return errors::reply(
                host,
                envelope,
                kind,
                ErrorType::Modify,
                DefinedCondition::PolicyViolation,
                Some("stanza too large"),
            );
        }
        let Ok(element) = xml.parse::<Element>() else {
            return errors::reply(
                host,
                envelope,
                kind,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                None,
            );
        };
        // An address failing resourceprep (e.g. a nickname with control characters).
        let (Ok(from), Ok(to)) = (Jid::new(&envelope.from), Jid::new(&envelope.to)) else {
            return errors::reply(
                host,
                envelope,
                kind,
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                None,
            );
        };
        let inbound = Inbound {
            envelope,
            element,
            from,
            to,
        };
        // A reply to an IQ the room forwarded to an occupant goes back through the room; other
        // IQ replies to an occupant JID answer nothing and are dropped (an error among them is
        // a client declining a request, not a ghost's bounce).
        if envelope.kind == StanzaKind::Iq
            && matches!(envelope.type_.as_deref(), Some("result" | "error"))
        {
            if let (Some(_), Some(nick)) = (inbound.to.node(), inbound.to.resource()) {
                return features::occupant_iq_reply(host, &inbound, nick.as_str());
            }
        }
        if envelope.type_.as_deref() == Some("error") {
            return remove_ghost(self, host, &inbound);
        }
        // An IQ result answers nothing the service asked: it is dropped, never answered
        // (RFC 6120 §8.2.3), whoever it is addressed to.
        if envelope.kind == StanzaKind::Iq && envelope.type_.as_deref() == Some("result") {
            return Ok(());
        }
        match (
            inbound.to.node().is_some(),
            inbound.to.resource().map(|r| r.to_string()),
        ) {
            (false, _) => self.to_service(host, &inbound),
            (true, None) => self.to_room(host, &inbound),
            (true, Some(nick)) => self.to_occupant(host, &inbound, &nick),
        }
    }

    fn to_service(&self, host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
        let envelope = inbound.envelope;
        match (
            envelope.kind,
            envelope.type_.as_deref(),
            query_ns(&inbound.element).as_deref(),
        ) {
            (StanzaKind::Iq, Some("get"), Some(ns::DISCO_INFO)) => {
                host.send(errors::result(envelope, Some(disco::service_info())))
            }
            (StanzaKind::Iq, Some("get"), Some(ns::DISCO_ITEMS)) => {
                let query = inbound.element.children().next().expect("a query");
                disco::service_items(host, envelope, query)
            }
            (StanzaKind::Iq, Some("get"), Some(ns::PING)) => {
                host.send(errors::result(envelope, None))
            }
            (StanzaKind::Iq, Some("get"), Some(ns::VERSION)) => host.send(errors::result(
                envelope,
                Some(software_version::query(VERSION)),
            )),
            (StanzaKind::Iq, Some("set"), Some(commands::NS)) => {
                let command = inbound
                    .element
                    .children()
                    .next()
                    .expect("a child has a namespace");
                adhoc::handle(self, host, inbound, command)
            }
            (StanzaKind::Iq, Some("get" | "set"), _) => unsupported(host, envelope),
            _ => Ok(()),
        }
    }

    fn to_room(&self, host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
        let envelope = inbound.envelope;
        match envelope.kind {
            StanzaKind::Message if envelope.type_.as_deref() == Some("groupchat") => {
                groupchat::handle(host, inbound)
            }
            StanzaKind::Message => self.room_message(host, inbound),
            // A join must name a nickname (XEP-0045 §7.2.1).
            StanzaKind::Presence if envelope.type_.is_none() => errors::reply(
                host,
                envelope,
                "presence",
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                None,
            ),
            // Leaving by the room's bare JID is leaving under one's nickname.
            StanzaKind::Presence if envelope.type_.as_deref() == Some("unavailable") => {
                let room_jid = inbound.to.to_bare().to_string();
                match Occupant::of_session(host, &room_jid, &inbound.from.to_string())? {
                    Some(occupant) => presence::handle(self, host, inbound, &occupant.nick),
                    None => Ok(()),
                }
            }
            StanzaKind::Presence => Ok(()),
            StanzaKind::Iq => self.room_iq(host, inbound),
        }
    }

    /// Non-groupchat messages to a room, for the feature that claims them (voice requests,
    /// invitations and declines).
    fn room_message(&self, host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
        let room = lock::visible_to(
            host,
            &inbound.to.to_bare().to_string(),
            &inbound.envelope.from,
        )?;
        let Some(room) = room else {
            return errors::reply(
                host,
                inbound.envelope,
                "message",
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                None,
            );
        };
        match features::room_message_owner(&inbound.element) {
            Some(feature) => {
                let message = RoomMessage {
                    muc: self,
                    inbound,
                    room: &room,
                    core: &admin::Changes,
                };
                feature.room_message(host, &message)
            }
            None => unsupported(host, inbound.envelope),
        }
    }

    fn room_iq(&self, host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
        let envelope = inbound.envelope;
        let Some(query) = inbound.element.children().next() else {
            return errors::reply(
                host,
                envelope,
                "iq",
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                None,
            );
        };
        let room_jid = inbound.to.to_bare().to_string();
        if query.is("query", owner::NS) {
            return owner::handle(self, host, inbound, query);
        }
        if query.is("query", admin::NS) {
            return admin::handle(self, host, inbound, query);
        }
        let bare_jid = inbound.from.to_bare().to_string();
        let get = envelope.type_.as_deref() == Some("get");
        let room = lock::visible_to(host, &room_jid, &envelope.from)?;
        let namespace = query.ns();
        if let Some(feature) = features::room_iq_owner(&namespace) {
            // A room the sender may not see (absent, or locked to all but its owner) does not
            // exist for any feature's IQ, as for a join.
            let Some(room) = &room else {
                return errors::reply(
                    host,
                    envelope,
                    "iq",
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    Some("no such room"),
                );
            };
            let iq = RoomIq {
                muc: self,
                inbound,
                room,
                query,
                core: &admin::Changes,
            };
            return feature.room_iq(host, &iq);
        }
        match (get, room, namespace.as_str()) {
            (true, Some(_), ns::DISCO_INFO)
                if query.attr("node") == Some(registration::ROOMUSER_NODE) =>
            {
                let nick = affiliation::record(host, &room_jid, &bare_jid)?.and_then(|r| r.nick);
                host.send(errors::result(
                    envelope,
                    Some(registration::roomuser_item(nick)),
                ))
            }
            (true, Some(room), ns::DISCO_INFO) if query.attr("node").is_none() => {
                let info = disco::room_info(host, &room)?;
                host.send(errors::result(envelope, Some(info)))
            }
            (true, Some(_), ns::DISCO_ITEMS) => {
                let items = disco::room_items(&room_jid, query.attr("node"))?;
                host.send(errors::result(envelope, Some(items)))
            }
            (true, Some(_), ns::PING) => host.send(errors::result(envelope, None)),
            (_, None, ns::DISCO_INFO | ns::DISCO_ITEMS | ns::PING) => errors::reply(
                host,
                envelope,
                "iq",
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                None,
            ),
            _ => unsupported(host, envelope),
        }
    }

    fn to_occupant(&self, host: &mut dyn Host, inbound: &Inbound, nick: &str) -> Result<(), Fault> {
        let envelope = inbound.envelope;
        match envelope.kind {
            StanzaKind::Presence => presence::handle(self, host, inbound, nick),
            StanzaKind::Message if envelope.type_.as_deref() == Some("groupchat") => errors::reply(
                host,
                envelope,
                "message",
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                None,
            ),
            StanzaKind::Message => private_message::handle(host, inbound, nick),
            StanzaKind::Iq => self.occupant_iq(host, inbound, nick),
        }
    }

    /// An IQ request to `room/nick`, by XEP-0045's business rules as Prosody applies them: only
    /// an occupant may send one (`not-acceptable`), to a nickname someone holds
    /// (`item-not-found`); a self-ping (XEP-0410) is answered here; the rest goes to the feature
    /// claiming its namespace, or else to the one that forwards it to the occupant's client.
    fn occupant_iq(&self, host: &mut dyn Host, inbound: &Inbound, nick: &str) -> Result<(), Fault> {
        let envelope = inbound.envelope;
        let room_jid = inbound.to.to_bare().to_string();
        let sender = Occupant::of_session(host, &room_jid, &inbound.from.to_string())?;
        let room = match &sender {
            Some(_) => Room::load(host, &room_jid)?,
            None => None,
        };
        let (Some(sender), Some(room)) = (sender, room) else {
            return errors::reply(
                host,
                envelope,
                "iq",
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                Some("you are not in this room"),
            );
        };
        let Some(target) = Occupant::load(host, &room_jid, nick)? else {
            return errors::reply(
                host,
                envelope,
                "iq",
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                Some("nobody in the room has this nickname"),
            );
        };
        let Some(query) = inbound.element.children().next() else {
            return errors::reply(
                host,
                envelope,
                "iq",
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                None,
            );
        };
        let get = envelope.type_.as_deref() == Some("get");
        if get && query.is("ping", ns::PING) && target.nick == sender.nick {
            return host.send(errors::result(envelope, None));
        }
        if let Some(feature) = features::occupant_iq_owner(&query.ns()) {
            let iq = RoomIq {
                muc: self,
                inbound,
                room: &room,
                query,
                core: &admin::Changes,
            };
            return feature.occupant_iq(host, &iq, nick);
        }
        let iq = OccupantIq {
            inbound,
            room: &room,
            sender: &sender,
            target: &target,
            query,
        };
        if features::unclaimed_occupant_iq(host, &iq)? {
            return Ok(());
        }
        unsupported(host, envelope)
    }

    pub fn on_timer(&self, host: &mut dyn Host, key: &str) -> Result<(), Fault> {
        if let Some(room_jid) = extensions::tick_room(key) {
            return extensions::on_tick(host, room_jid);
        }
        let Some(room_jid) = lock::timer_room(key) else {
            host.log(Level::Warn, &format!("unknown timer {key}"));
            return Ok(());
        };
        // A room still locked when its timer fires was never configured: it goes.
        match Room::load(host, room_jid)? {
            Some(room) if room.locked => {
                destroy::destroy(host, &room, destroy::for_occupants(None))
            }
            _ => Ok(()),
        }
    }

    /// Takes over data another version of the plugin wrote. Layout 1 lacks the room indexes of
    /// layout 2; they are made from the room records when the data is in layout 1 or comes from
    /// a version before 0.2.0 (which repairs them after such a version served layout 2 data
    /// without keeping them). Layouts before 3 kept each room's join history in its own keys:
    /// it moves into the room's archive. A newer layout is refused, leaving the data untouched.
    pub fn upgrade(&self, host: &mut dyn Host, from_version: &str) -> Result<(), Fault> {
        let stored = host.get(Tier::Durable, keys::LAYOUT);
        let layout = match stored.as_deref().map(std::str::from_utf8) {
            None => 1,
            Some(Ok(text)) => text
                .parse::<u32>()
                .map_err(|_| Fault(format!("stored layout {text:?} is not a number")))?,
            Some(Err(_)) => return Err(Fault("stored layout is not text".into())),
        };
        if layout > keys::LAYOUT_VERSION {
            return Err(Fault(format!(
                "the data is in layout {layout} (written by {from_version}); this plugin reads up to {}",
                keys::LAYOUT_VERSION
            )));
        }
        // The indexes are built once, not at every swap (a rebuild reads every room): when the
        // data comes from layout 1, or from a version that served without keeping them (a
        // rollback to one, then forward again).
        if layout < keys::ROOM_INDEXES_SINCE || !keeps_room_indexes(from_version) {
            room::rebuild_indexes(host)?;
        }
        if layout < keys::ARCHIVE_SINCE {
            let moved = history_migration::run(host)?;
            host.log(
                Level::Info,
                &format!(
                    "layout {layout} to {}: {moved} history entries moved into the archive",
                    keys::LAYOUT_VERSION
                ),
            );
        }
        let version = keys::LAYOUT_VERSION.to_string().into_bytes();
        host.put(Tier::Durable, keys::LAYOUT, version)
    }

    pub fn on_shutdown(&self, host: &mut dyn Host) -> Result<(), Fault> {
        shutdown::remove_everyone(host)
    }
}

/// Whether the plugin version `version` keeps the room indexes of layout 2 (0.2.0 and later).
fn keeps_room_indexes(version: &str) -> bool {
    let release = version.split(['+', '-']).next().unwrap_or_default();
    let mut numbers = release.split('.').map(|n| n.parse::<u64>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (0, 2)
}

/// An error bounced by an occupant's client means it is gone: it leaves the room, announced
/// with 333 (XEP-0045 §7.2.x, "ghost" occupants).
fn remove_ghost(muc: &Muc, host: &mut dyn Host, inbound: &Inbound) -> Result<(), Fault> {
    let room_jid = inbound.to.to_bare().to_string();
    let Some(room) = Room::load(host, &room_jid)? else {
        return Ok(());
    };
    let Some(ghost) = Occupant::of_session(host, &room_jid, &inbound.from.to_string())? else {
        return Ok(());
    };
    let affiliation = muc.affiliation(host, &room_jid, &ghost.bare_jid)?;
    let full_jid = inbound.from.to_string();
    if ghost.sessions.len() > 1 {
        // Only that client is gone: others see the user's remaining ones.
        let staying = presence::remove_session(host, &room_jid, &ghost, &full_jid)?;
        let others = Occupant::all(host, &room_jid)?;
        let payload = presence::stored_payload(&staying);
        return Presence::of(&staying, affiliation, payload).to_others(host, &room, &others);
    }
    ghost.remove(host, &room_jid);
    let others = Occupant::all(host, &room_jid)?;
    let why = Element::builder("status", ns::JABBER_CLIENT)
        .append(format!("Kicked: {}", error_summary(&inbound.element)))
        .build();
    let left = extensions::occupant_view(&ghost, affiliation.clone());
    let mut gone = Presence::departure(&ghost, affiliation, vec![why]);
    gone.statuses.push(Status::ServiceErrorKick);
    gone.to_others(host, &room, &others)?;
    features::left(host, &room, &ghost)?;
    if others.is_empty() && !crate::room::persistent::is_persistent(&room) {
        presence::destroy_silently(host, &room)?;
        return Ok(());
    }
    extensions::notify(host, &room, &others, HookEvent::Left(left))
}

/// "service unavailable: TEXT" for a bounced stanza's error, for people to read.
fn error_summary(bounced: &Element) -> String {
    let Some(error) = bounced.get_child("error", ns::JABBER_CLIENT) else {
        return "error".into();
    };
    let condition = error
        .children()
        .find(|c| c.ns() == ns::XMPP_STANZAS && c.name() != "text")
        .map_or("error".to_string(), |c| c.name().replace('-', " "));
    match error.get_child("text", ns::XMPP_STANZAS).map(Element::text) {
        Some(text) if !text.is_empty() => format!("{condition}: {text}"),
        _ => condition,
    }
}

fn unsupported(host: &mut dyn Host, envelope: &Envelope) -> Result<(), Fault> {
    let kind = kind_name(envelope.kind);
    errors::reply(
        host,
        envelope,
        kind,
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        None,
    )
}

/// The namespace of an IQ's (or any stanza's) first child.
fn query_ns(stanza: &Element) -> Option<String> {
    stanza.children().next().map(Element::ns)
}

pub fn kind_name(kind: StanzaKind) -> &'static str {
    match kind {
        StanzaKind::Message => "message",
        StanzaKind::Presence => "presence",
        StanzaKind::Iq => "iq",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;

    fn envelope(kind: StanzaKind, type_: Option<&str>) -> Envelope {
        Envelope {
            kind,
            type_: type_.map(str::to_string),
            from: "a@example.org/r".into(),
            to: "room@muc.example.org".into(),
            id: Some("x1".into()),
        }
    }

    fn condition(host: &mut MemoryHost) -> String {
        let sent = host.take_sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let error = sent[0]
            .get_child("error", ns::JABBER_CLIENT)
            .expect("an error");
        error.children().next().unwrap().name().to_string()
    }

    #[test]
    fn malformed_xml_from_a_buggy_host_is_a_bad_request_and_changes_nothing() {
        let mut host = MemoryHost::default();
        let muc = Muc::new(Settings::default());
        let env = envelope(StanzaKind::Message, Some("groupchat"));
        muc.handle_stanza(
            &mut host,
            &env,
            "<message xmlns='jabber:client'><body>unclosed",
        )
        .unwrap();
        assert_eq!(condition(&mut host), "bad-request");
        assert!(host.durable.is_empty() && host.volatile.is_empty());
    }

    #[test]
    fn an_oversized_stanza_is_refused_before_any_work() {
        let mut host = MemoryHost::default();
        let muc = Muc::new(Settings::default());
        let env = envelope(StanzaKind::Message, Some("groupchat"));
        let body = "x".repeat(MAX_STANZA_BYTES);
        let xml = format!("<message xmlns='jabber:client'><body>{body}</body></message>");
        muc.handle_stanza(&mut host, &env, &xml).unwrap();
        assert_eq!(condition(&mut host), "policy-violation");
    }

    #[test]
    fn errors_are_never_answered_with_errors() {
        let mut host = MemoryHost::default();
        let muc = Muc::new(Settings::default());
        let env = envelope(StanzaKind::Iq, Some("error"));
        muc.handle_stanza(&mut host, &env, "<iq xmlns='jabber:client' type='error'/>")
            .unwrap();
        assert!(host.take_sent().is_empty());
    }

    #[test]
    fn iq_results_and_errors_to_the_service_a_room_or_an_occupant_are_never_answered() {
        let mut host = MemoryHost::default();
        let muc = Muc::new(Settings::default());
        let join = "<presence xmlns='jabber:client' from='a@example.org/r' \
                    to='room@muc.example.org/a'><x xmlns='http://jabber.org/protocol/muc'/></presence>";
        host.exchange(&muc, join);
        for to in [
            "muc.example.org",
            "room@muc.example.org",
            "room@muc.example.org/a",
        ] {
            for type_ in ["result", "error"] {
                for payload in ["", "<query xmlns='jabber:iq:version'/>"] {
                    let iq = format!(
                        "<iq xmlns='jabber:client' type='{type_}' id='r1' \
                         from='b@example.org/r' to='{to}'>{payload}</iq>"
                    );
                    let answers = host.exchange(&muc, &iq);
                    assert!(answers.is_empty(), "{iq} was answered: {answers:?}");
                }
            }
        }
    }

    #[test]
    fn unknown_queries_are_service_unavailable() {
        let mut host = MemoryHost::default();
        let muc = Muc::new(Settings::default());
        let env = envelope(StanzaKind::Iq, Some("get"));
        muc.handle_stanza(
            &mut host,
            &env,
            "<iq xmlns='jabber:client' type='get'><q xmlns='urn:example'/></iq>",
        )
        .unwrap();
        assert_eq!(condition(&mut host), "service-unavailable");
    }
}
