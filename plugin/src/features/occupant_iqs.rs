//! IQs between occupants (XEP-0045 §7.x business rules, as Prosody's `handle_iq_to_occupant` and
//! ejabberd's `mod_muc_room` do them): an occupant's request to `room/nick` in a namespace no
//! feature claims is forwarded to that occupant, and its reply comes back through the room. The
//! room rewrites both ways, in every room whatever its anonymity: the request leaves from the
//! asker's occupant JID with an id the room made up, the reply reaches the asker from the
//! occupant JID it asked, with its own id, so neither side learns the other's real JID.
//!
//! A request goes to the client that joined under the nickname last, except the payloads a
//! user's server answers for the account (vCard-temp, vCard4, PubSub: the avatars of XEP-0153
//! and XEP-0084), which go to the occupant's bare JID, as Prosody and ejabberd send them.
//!
//! Each forward waiting for its reply is a volatile record under the asker's nickname
//! (`keys::iq_forwards`): at most [`MAX_PENDING`] per nickname and [`MAX_ROOM_PENDING`] in the
//! room (one more is refused with `resource-constraint`, type `wait`), lapsing after
//! [`PENDING_MS`]. They are not timed out by a timer: a lapsed record is dropped when its reply
//! comes, or when anyone in the room forwards again, or with the asker when it leaves the room
//! (its replies are then dropped). A target
//! that leaves changes nothing: its client may still answer, else the asker's client times
//! out, as with Prosody. A reply that matches no waiting forward (an unknown id, another
//! sender, lapsed) is dropped, never answered.

use jid::Jid;
use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use serde::{Deserialize, Serialize};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::errors;
use crate::event::{Inbound, OccupantIq, RoomFeature};
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::occupant::Occupant;
use crate::room::Room;

/// Forwards one occupant (nickname) may have waiting for their replies.
pub const MAX_PENDING: usize = 16;
/// Forwards that may wait in one room, all askers together.
pub const MAX_ROOM_PENDING: usize = 256;
/// How long a forward waits for its reply (ms).
pub const PENDING_MS: u64 = 60_000;

/// Payloads the user's server answers on the account's behalf: forwarded to the bare JID.
const ANSWERED_FOR_THE_ACCOUNT: &[&str] =
    &[ns::VCARD, "urn:ietf:params:xml:ns:vcard-4.0", ns::PUBSUB];

/// The ids the room makes (`unique-id`) are short and hold no `/`: a reply's id that is not
/// such cannot be one, and is not looked up.
const MAX_ID_BYTES: usize = 128;

pub struct OccupantIqs;

/// A forwarded request waiting for its reply.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pending {
    /// The asking session's full JID: where the reply goes.
    asker: String,
    /// The request's own id, which the reply gets back.
    id: String,
    /// The occupant JID the request was addressed to: the reply comes from it, so that the
    /// asker's client matches the two.
    asked: String,
    /// Where the room sent the request: only a reply from there (or from its bare JID, the
    /// user's server answering) is relayed.
    forwarded_to: String,
    /// When the forward lapses (ms since the epoch).
    expires_ms: u64,
}

impl RoomFeature for OccupantIqs {
    fn unclaimed_occupant_iq(&self, host: &mut dyn Host, iq: &OccupantIq) -> Result<bool, Fault> {
        let envelope = iq.inbound.envelope;
        let Some(id) = envelope.id.clone() else {
            refuse(
                host,
                iq,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "an IQ needs an id",
            )?;
            return Ok(true);
        };
        let now = host.now_ms();
        // Per nickname, and across the room: what an occupant left waiting under a nickname
        // it no longer holds counts there until it lapses and is collected.
        if waiting(host, &keys::iq_forwards(&iq.room.jid, &iq.sender.nick), now) >= MAX_PENDING
            || waiting(host, &keys::room_iq_forwards(&iq.room.jid), now) >= MAX_ROOM_PENDING
        {
            refuse(
                host,
                iq,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                "too many of your requests to occupants are waiting for their answer",
            )?;
            return Ok(true);
        }
        let Some(forwarded_to) = destination(iq.target, iq.query) else {
            // An occupant record always holds a session; one that does not is nobody.
            refuse(
                host,
                iq,
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "nobody in the room has this nickname",
            )?;
            return Ok(true);
        };
        let room_id = host.unique_id();
        let pending = Pending {
            asker: iq.inbound.from.to_string(),
            id,
            asked: envelope.to.clone(),
            forwarded_to,
            expires_ms: now + PENDING_MS,
        };
        host.put(
            Tier::Volatile,
            &keys::iq_forward(&iq.room.jid, &iq.sender.nick, &room_id),
            serde_json::to_vec(&pending)?,
        )?;
        let mut request = iq.inbound.element.clone();
        let sender = format!("{}/{}", iq.room.jid, iq.sender.nick);
        readdress(&mut request, &sender, &pending.forwarded_to, &room_id);
        host.send(request)?;
        Ok(true)
    }

    fn occupant_iq_reply(
        &self,
        host: &mut dyn Host,
        reply: &Inbound,
        nick: &str,
    ) -> Result<bool, Fault> {
        let Some(id) = reply.envelope.id.as_deref() else {
            return Ok(false);
        };
        if id.len() > MAX_ID_BYTES || id.contains('/') {
            return Ok(false);
        }
        let key = keys::iq_forward(&reply.to.to_bare().to_string(), nick, id);
        let Some(stored) = host.get(Tier::Volatile, &key) else {
            return Ok(false);
        };
        let pending: Pending = serde_json::from_slice(&stored)?;
        // Anyone may send a reply to `room/nick` with a guessed id: only the one asked answers.
        if !answers_from(&reply.from, &pending.forwarded_to) {
            return Ok(false);
        }
        host.delete(Tier::Volatile, &key);
        if pending.expires_ms <= host.now_ms() {
            return Ok(true);
        }
        let mut relayed = reply.element.clone();
        readdress(&mut relayed, &pending.asked, &pending.asker, &pending.id);
        // An error's `by` may name the replier's real JID.
        for error in relayed
            .children_mut()
            .filter(|c| c.is("error", ns::JABBER_CLIENT))
        {
            error.attrs_mut().remove(&Namespace::NONE, "by");
        }
        host.send(relayed)?;
        Ok(true)
    }

    /// The asker's forwards go with it: their replies would find no session to reach.
    fn left(&self, host: &mut dyn Host, room: &Room, occupant: &Occupant) -> Result<(), Fault> {
        host.delete_prefix(
            Tier::Volatile,
            &keys::iq_forwards(&room.jid, &occupant.nick),
        );
        Ok(())
    }
}

/// Where a request to `target` goes: the account's bare JID for what its server answers, the
/// session that joined last otherwise.
fn destination(target: &Occupant, query: &Element) -> Option<String> {
    if ANSWERED_FOR_THE_ACCOUNT.contains(&query.ns().as_str()) {
        return Some(target.bare_jid.clone());
    }
    target
        .sessions
        .last()
        .map(|session| session.full_jid.clone())
}

/// Whether `from` may answer a request forwarded to `forwarded_to`: that address, or its bare
/// JID (the user's server answering for a session).
fn answers_from(from: &Jid, forwarded_to: &str) -> bool {
    let Ok(asked) = Jid::new(forwarded_to) else {
        return false;
    };
    *from == asked || from.as_str() == asked.to_bare().as_str()
}

/// The forwards under `nick` still waiting; lapsed ones (and any unreadable) are deleted.
/// The live forwards under `prefix`; lapsed ones found there are deleted.
fn waiting(host: &mut dyn Host, prefix: &str, now: u64) -> usize {
    let mut live = 0;
    for (key, value) in host.scan(Tier::Volatile, prefix, None, u32::MAX) {
        match serde_json::from_slice::<Pending>(&value) {
            Ok(pending) if pending.expires_ms > now => live += 1,
            _ => host.delete(Tier::Volatile, &key),
        }
    }
    live
}

fn readdress(stanza: &mut Element, from: &str, to: &str, id: &str) {
    stanza.set_attr(Namespace::NONE, xml_ncname!("from").into(), from);
    stanza.set_attr(Namespace::NONE, xml_ncname!("to").into(), to);
    stanza.set_attr(Namespace::NONE, xml_ncname!("id").into(), id);
}

fn refuse(
    host: &mut dyn Host,
    iq: &OccupantIq,
    type_: ErrorType,
    condition: DefinedCondition,
    text: &str,
) -> Result<(), Fault> {
    errors::reply(
        host,
        iq.inbound.envelope,
        "iq",
        type_,
        condition,
        Some(text),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Settings;
    use crate::memory_host::MemoryHost;
    use crate::service::Muc;

    const ROOM: &str = "r@muc.example.org";
    const ALICE: &str = "alice@example.org/phone";
    const BOB: &str = "bob@example.org/desk";
    const BOB_LAPTOP: &str = "bob@example.org/laptop";

    /// An instant room with alice and bob in it.
    fn room() -> (Muc, MemoryHost) {
        let muc = Muc::new(Settings::default());
        let mut host = MemoryHost::default();
        join(&muc, &mut host, ALICE, "alice");
        let configured = host.exchange(
            &muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='c' from='{ALICE}' to='{ROOM}'>\
                 <query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='submit'/></query></iq>"
            ),
        );
        assert_eq!(configured[0].attr("type"), Some("result"), "{configured:?}");
        join(&muc, &mut host, BOB, "bob");
        (muc, host)
    }

    fn join(muc: &Muc, host: &mut MemoryHost, from: &str, nick: &str) {
        host.exchange(
            muc,
            &format!(
                "<presence xmlns='jabber:client' from='{from}' to='{ROOM}/{nick}'>\
                 <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        );
    }

    fn iq(type_: &str, id: &str, from: &str, to: &str, payload: &str) -> String {
        format!(
            "<iq xmlns='jabber:client' type='{type_}' id='{id}' from='{from}' to='{to}'>\
             {payload}</iq>"
        )
    }

    const VERSION: &str = "<query xmlns='jabber:iq:version'/>";

    /// Alice asks bob's client its version; returns what the room sent it.
    fn ask_bob(muc: &Muc, host: &mut MemoryHost, id: &str) -> Element {
        let sent = host.exchange(muc, &iq("get", id, ALICE, &format!("{ROOM}/bob"), VERSION));
        assert_eq!(sent.len(), 1, "{sent:?}");
        sent.into_iter().next().unwrap()
    }

    fn condition(sent: &[Element]) -> String {
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].attr("type"), Some("error"));
        let error = sent[0]
            .get_child("error", ns::JABBER_CLIENT)
            .expect("an error");
        error.children().next().unwrap().name().to_string()
    }

    #[test]
    fn a_request_and_its_reply_cross_the_room_with_neither_real_jid() {
        let (muc, mut host) = room();
        let forwarded = ask_bob(&muc, &mut host, "v1");
        assert_eq!(forwarded.attr("to"), Some(BOB));
        assert_eq!(forwarded.attr("from"), Some("r@muc.example.org/alice"));
        let room_id = forwarded.attr("id").unwrap().to_string();
        assert_ne!(room_id, "v1");
        assert!(forwarded.get_child("query", "jabber:iq:version").is_some());

        let answer = "<query xmlns='jabber:iq:version'><name>bobs client</name></query>";
        let relayed = host.exchange(
            &muc,
            &iq("result", &room_id, BOB, &format!("{ROOM}/alice"), answer),
        );
        assert_eq!(relayed.len(), 1, "{relayed:?}");
        let reply = &relayed[0];
        assert_eq!(reply.attr("to"), Some(ALICE));
        assert_eq!(reply.attr("from"), Some("r@muc.example.org/bob"));
        assert_eq!(reply.attr("id"), Some("v1"));
        assert_eq!(reply.attr("type"), Some("result"));
        let text = String::from(reply);
        assert!(
            text.contains("bobs client") && !text.contains("bob@"),
            "{text}"
        );
        // Answered once: the same reply again is dropped.
        let again = iq("result", &room_id, BOB, &format!("{ROOM}/alice"), answer);
        assert!(host.exchange(&muc, &again).is_empty());
        assert!(host.volatile.keys().all(|k| !k.contains("/iq-forward/")));
    }

    #[test]
    fn an_error_reply_is_relayed_without_its_by() {
        let (muc, mut host) = room();
        let room_id = ask_bob(&muc, &mut host, "v1")
            .attr("id")
            .unwrap()
            .to_string();
        let error = format!(
            "<error type='cancel' by='{BOB}'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
        );
        let relayed = host.exchange(
            &muc,
            &iq("error", &room_id, BOB, &format!("{ROOM}/alice"), &error),
        );
        assert_eq!(condition(&relayed), "service-unavailable");
        assert_eq!(relayed[0].attr("id"), Some("v1"));
        assert!(!String::from(&relayed[0]).contains("bob@"), "{relayed:?}");
        // Bob declined a request: he is still in the room.
        assert!(Occupant::load(&mut host, ROOM, "bob").unwrap().is_some());
    }

    #[test]
    fn a_reply_from_anyone_but_the_one_asked_is_dropped_and_the_forward_kept() {
        let (muc, mut host) = room();
        join(&muc, &mut host, "eve@example.org/x", "eve");
        let room_id = ask_bob(&muc, &mut host, "v1")
            .attr("id")
            .unwrap()
            .to_string();
        let to_alice = format!("{ROOM}/alice");
        for (from, id) in [
            ("eve@example.org/x", room_id.as_str()),
            ("stranger@example.org/y", room_id.as_str()),
            (BOB, "not-an-id-the-room-made"),
            (BOB, "a/b"),
        ] {
            assert!(
                host.exchange(&muc, &iq("result", id, from, &to_alice, ""))
                    .is_empty(),
                "{from} {id}"
            );
        }
        // Addressed to another occupant, bob's own reply does not match either.
        let to_eve = format!("{ROOM}/eve");
        assert!(host
            .exchange(&muc, &iq("result", &room_id, BOB, &to_eve, ""))
            .is_empty());
        let relayed = host.exchange(&muc, &iq("result", &room_id, BOB, &to_alice, ""));
        assert_eq!(relayed.len(), 1);
    }

    #[test]
    fn the_newest_session_is_asked_and_vcards_go_to_the_account() {
        let (muc, mut host) = room();
        join(&muc, &mut host, BOB_LAPTOP, "bob");
        assert_eq!(ask_bob(&muc, &mut host, "v1").attr("to"), Some(BOB_LAPTOP));
        for namespace in ANSWERED_FOR_THE_ACCOUNT {
            let payload = format!("<vCard xmlns='{namespace}'/>");
            let sent = host.exchange(
                &muc,
                &iq("get", "card", ALICE, &format!("{ROOM}/bob"), &payload),
            );
            assert_eq!(sent[0].attr("to"), Some("bob@example.org"), "{namespace}");
            let room_id = sent[0].attr("id").unwrap().to_string();
            // The user's server answers for the account, from its bare JID.
            let relayed = host.exchange(
                &muc,
                &iq(
                    "result",
                    &room_id,
                    "bob@example.org",
                    &format!("{ROOM}/alice"),
                    &payload,
                ),
            );
            assert_eq!(relayed[0].attr("from"), Some("r@muc.example.org/bob"));
            assert_eq!(relayed[0].attr("id"), Some("card"));
        }
    }

    #[test]
    fn strangers_and_absent_nicknames_are_refused_and_nothing_is_kept() {
        let (muc, mut host) = room();
        let stranger = host.exchange(
            &muc,
            &iq(
                "get",
                "s",
                "stranger@example.org/y",
                &format!("{ROOM}/bob"),
                VERSION,
            ),
        );
        assert_eq!(condition(&stranger), "not-acceptable");
        let absent = host.exchange(
            &muc,
            &iq("get", "a", ALICE, &format!("{ROOM}/nobody"), VERSION),
        );
        assert_eq!(condition(&absent), "item-not-found");
        assert_eq!(absent[0].attr("from"), Some("r@muc.example.org/nobody"));
        let nameless = format!(
            "<iq xmlns='jabber:client' type='get' from='{ALICE}' to='{ROOM}/bob'>{VERSION}</iq>"
        );
        assert_eq!(condition(&host.exchange(&muc, &nameless)), "bad-request");
        assert!(host.volatile.keys().all(|k| !k.contains("/iq-forward/")));
    }

    #[test]
    fn a_self_ping_is_answered_by_the_room_and_a_ping_to_another_is_forwarded() {
        let (muc, mut host) = room();
        let ping = "<ping xmlns='urn:xmpp:ping'/>";
        let own = host.exchange(&muc, &iq("get", "p", ALICE, &format!("{ROOM}/alice"), ping));
        assert_eq!(own[0].attr("type"), Some("result"));
        assert_eq!(own[0].attr("to"), Some(ALICE));
        let other = host.exchange(&muc, &iq("get", "p", ALICE, &format!("{ROOM}/bob"), ping));
        assert_eq!(other[0].attr("to"), Some(BOB));
    }

    #[test]
    fn waiting_forwards_are_bounded_per_occupant_and_lapse() {
        let (muc, mut host) = room();
        for n in 0..MAX_PENDING {
            ask_bob(&muc, &mut host, &format!("v{n}"));
        }
        let over = host.exchange(
            &muc,
            &iq("get", "over", ALICE, &format!("{ROOM}/bob"), VERSION),
        );
        assert_eq!(condition(&over), "resource-constraint");
        // Bob's own requests are his own count.
        let bobs = host.exchange(
            &muc,
            &iq("get", "b", BOB, &format!("{ROOM}/alice"), VERSION),
        );
        assert_eq!(bobs[0].attr("to"), Some(ALICE));

        host.now_ms += PENDING_MS;
        let room_id = ask_bob(&muc, &mut host, "late")
            .attr("id")
            .unwrap()
            .to_string();
        let prefix = keys::iq_forwards(ROOM, "alice");
        assert_eq!(
            host.volatile
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .count(),
            1
        );
        host.now_ms += PENDING_MS;
        let lapsed = iq("result", &room_id, BOB, &format!("{ROOM}/alice"), "");
        assert!(host.exchange(&muc, &lapsed).is_empty());
    }

    #[test]
    fn what_nicknames_left_behind_counts_across_the_room_until_it_lapses() {
        let (muc, mut host) = room();
        // Forwards waiting under nicknames nobody holds now (their askers changed nick).
        for n in 0..MAX_ROOM_PENDING {
            let pending = Pending {
                asker: format!("{ALICE}"),
                id: format!("old{n}"),
                asked: format!("{ROOM}/bob"),
                forwarded_to: BOB.to_string(),
                expires_ms: host.now_ms + PENDING_MS,
            };
            host.volatile.insert(
                keys::iq_forward(ROOM, &format!("former{}", n % 20), &format!("r{n}")),
                serde_json::to_vec(&pending).unwrap(),
            );
        }
        let over = host.exchange(
            &muc,
            &iq("get", "over", ALICE, &format!("{ROOM}/bob"), VERSION),
        );
        assert_eq!(condition(&over), "resource-constraint");
        host.now_ms += PENDING_MS;
        ask_bob(&muc, &mut host, "later");
        let prefix = keys::room_iq_forwards(ROOM);
        assert_eq!(
            host.volatile
                .keys()
                .filter(|k| k.starts_with(&prefix))
                .count(),
            1,
            "the lapsed ones are collected"
        );
    }

    #[test]
    fn the_askers_forwards_go_when_it_leaves() {
        let (muc, mut host) = room();
        let room_id = ask_bob(&muc, &mut host, "v1")
            .attr("id")
            .unwrap()
            .to_string();
        host.exchange(
            &muc,
            &format!(
                "<presence xmlns='jabber:client' type='unavailable' \
                 from='{ALICE}' to='{ROOM}/alice'/>"
            ),
        );
        assert!(host.volatile.keys().all(|k| !k.contains("/iq-forward/")));
        let reply = iq("result", &room_id, BOB, &format!("{ROOM}/alice"), "");
        assert!(host.exchange(&muc, &reply).is_empty());
    }

    #[test]
    fn a_nickname_with_a_slash_has_forwards_of_its_own() {
        assert!(!keys::iq_forwards(ROOM, "a/b").starts_with(&keys::iq_forwards(ROOM, "a")));
    }
}
