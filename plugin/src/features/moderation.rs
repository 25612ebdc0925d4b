//! Retractions: a moderator's of anyone's message (XEP-0425 0.3, `urn:xmpp:message-moderate:1`),
//! an occupant's of their own (XEP-0424, `urn:xmpp:message-retract:1`); and corrections of
//! someone else's message refused (XEP-0308).
//!
//! A message is named by the room's stanza-id (XEP-0359), which is also its archive id. A
//! retracted message's archive entry becomes a tombstone: the message's attributes, stanza-id
//! and occupant id, and a `<retracted/>` saying who (`by`, with a `<moderated/>` and the reason
//! for a moderation) and when (`stamp`); no body, no other payload. MAM and the join history
//! (read from the archive) show only that. The retraction itself is archived too, as XEP-0424
//! asks, so that clients that were away learn of it.
//!
//! Whose message it is: the archive entry's occupant id (XEP-0421) against the sender's, never
//! the nickname, so a later holder of a nick cannot retract or correct its former holder's
//! messages. A message the archive no longer holds (trimmed from a room that does not archive)
//! cannot be retracted (`item-not-found`). Corrections name the corrected message by its `id`
//! attribute as its sender's client set it (what clients send; XEP-0308 says "the id of the
//! message being corrected"), or by its stanza-id: a stanza-id is looked up exactly, a client
//! id among the room's newest [`CORRECTION_WINDOW`] messages, and the correction is refused
//! when the message found is someone else's (by client id: when none found is the sender's).
//! Only the room writes `<retracted/>` and `<moderated/>`: an occupant's message carrying one
//! is refused.

use chrono::SecondsFormat;
use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::message_correct::Replace;
use xmpp_parsers::muc::user::Role;
use xmpp_parsers::ns;
use xmpp_parsers::occupant_id::OccupantId;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::errors;
use crate::event::{Groupchat, Refusal, RoomFeature, RoomIq};
use crate::host::{
    ArchiveEntry, ArchiveFilter, ArchivePosition, ArchiveQuery, ArchiveWriteError, Fault, Host,
};
use crate::occupant::Occupant;
use crate::permissions::{self, Actor};
use crate::room::Room;

pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
/// The archive keeps tombstones of retracted messages (XEP-0424 §Tombstones).
const NS_TOMBSTONE: &str = "urn:xmpp:message-retract:1#tombstone";

/// How many of the room's newest messages a correction's id is looked for in.
pub const CORRECTION_WINDOW: u32 = 100;

/// The longest moderation reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// A refused request: its error and a text saying why.
type Denial = (Refusal, &'static str);

fn deny(type_: ErrorType, condition: DefinedCondition, text: &'static str) -> Denial {
    (
        Refusal {
            type_,
            condition,
            text: None,
        },
        text,
    )
}

fn forbidden(text: &'static str) -> Denial {
    deny(ErrorType::Auth, DefinedCondition::Forbidden, text)
}

fn bad_request(text: &'static str) -> Denial {
    deny(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

/// The archive entry with this stanza-id, if the room still holds it.
fn archived(host: &mut dyn Host, room: &str, id: &str) -> Result<Option<ArchiveEntry>, Fault> {
    let query = ArchiveQuery {
        filter: ArchiveFilter {
            ids: vec![id.to_string()],
            ..ArchiveFilter::default()
        },
        position: ArchivePosition::Oldest,
        limit: 1,
    };
    // An id the archive lacks is simply not found: the filter names it, no position does.
    Ok(host
        .archive_query(room, &query)
        .ok()
        .and_then(|page| page.entries.into_iter().next()))
}

/// Who asks for a retraction.
#[derive(Clone, Copy, PartialEq)]
enum Retractor {
    Moderator,
    Author,
}

/// The message an archive entry holds, if it may be retracted: not a tombstone, and not a
/// retraction, except that a moderator may retract an occupant's (which may carry a body: a
/// spammer's retraction of their own earlier message is no shield). Only the room writes
/// `<retracted/>` (occupants' messages carrying one are refused), so it marks a tombstone.
fn retractable(entry: &ArchiveEntry, by: Retractor) -> Result<Result<Element, Denial>, Fault> {
    let stanza: Element = entry
        .stanza
        .parse()
        .map_err(|e| Fault(format!("archived stanza {} unreadable: {e}", entry.id)))?;
    if stanza.has_child("retracted", NS_RETRACT) {
        return Ok(Err(not_acceptable("this message is already retracted")));
    }
    let occupants = by == Retractor::Moderator && entry.occupant_id.is_some();
    if stanza.has_child("retract", NS_RETRACT) && !occupants {
        return Ok(Err(not_acceptable("a retraction cannot be retracted")));
    }
    Ok(Ok(stanza))
}

fn not_acceptable(text: &'static str) -> Denial {
    deny(ErrorType::Cancel, DefinedCondition::NotAcceptable, text)
}

/// The moderator, as a moderation names them: occupant JID and occupant id.
fn moderated(by: &str, occupant_id: Option<&str>) -> Element {
    Element::builder("moderated", NS_MODERATE)
        .attr(xml_ncname!("by").into(), by)
        .append_all(occupant_id.map(|id| Element::from(OccupantId { id: id.to_string() })))
        .build()
}

fn reason(text: Option<&str>) -> Option<Element> {
    text.map(|text| {
        Element::builder("reason", NS_RETRACT)
            .append(text.to_string())
            .build()
    })
}

/// What is left of a retracted message: its attributes, the room's stanza-id and the author's
/// occupant id, and `retracted`.
fn tombstone(original: &Element, room: &str, retracted: Element) -> Element {
    let mut kept = Element::builder("message", ns::JABBER_CLIENT);
    for ((namespace, name), value) in original.attrs() {
        if *namespace == Namespace::NONE {
            kept = kept.attr(name.clone(), value.as_str());
        }
    }
    kept.append_all(
        original
            .children()
            .filter(|child| {
                (child.is("stanza-id", ns::SID) && child.attr("by") == Some(room))
                    || child.is("occupant-id", ns::OID)
            })
            .cloned(),
    )
    .append(retracted)
    .build()
}

/// `<retracted/>`: who retracted the message, when, and for a moderation the moderator and
/// reason.
fn retracted(
    host: &mut dyn Host,
    by: &str,
    moderation: Option<(Element, Option<&str>)>,
) -> Result<Element, Fault> {
    let now = host.now_ms();
    let stamp = chrono::DateTime::from_timestamp_millis(now as i64)
        .ok_or_else(|| Fault(format!("bad clock {now}")))?
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut element = Element::builder("retracted", NS_RETRACT)
        .attr(xml_ncname!("stamp").into(), stamp)
        .attr(xml_ncname!("by").into(), by);
    if let Some((moderated, text)) = moderation {
        element = element.append(moderated).append_all(reason(text));
    }
    Ok(element.build())
}

fn replace(host: &mut dyn Host, room: &str, id: &str, stanza: &Element) -> Result<(), Fault> {
    match host.archive_replace(room, id, &String::from(stanza)) {
        Ok(_) => Ok(()),
        Err(ArchiveWriteError::Refused(why)) => Err(Fault(why)),
        Err(ArchiveWriteError::DuplicateId(id)) => Err(Fault(format!("archive id {id} twice"))),
    }
}

/// A moderator's `<moderate id=.../>` (an IQ `set` to the room): the message becomes a
/// tombstone, the room announces the retraction, the moderator gets a result.
fn moderate(host: &mut dyn Host, iq: &RoomIq) -> Result<Result<(), Denial>, Fault> {
    let request = iq.query;
    if iq.inbound.envelope.type_.as_deref() != Some("set") {
        return Ok(Err(bad_request("a moderation is an iq of type set")));
    }
    let Some(id) = request.attr("id").filter(|id| !id.is_empty()) else {
        return Ok(Err(bad_request(
            "moderate names the message by its stanza-id",
        )));
    };
    if !request.has_child("retract", NS_RETRACT) {
        return Ok(Err(deny(
            ErrorType::Cancel,
            DefinedCondition::FeatureNotImplemented,
            "the only moderation is a retraction",
        )));
    }
    let why = request.get_child("reason", NS_MODERATE).map(Element::text);
    if why
        .as_ref()
        .is_some_and(|why| why.chars().count() > MAX_REASON_CHARS)
    {
        return Ok(Err(deny(
            ErrorType::Modify,
            DefinedCondition::NotAcceptable,
            "the reason is longer than 1,000 characters",
        )));
    }
    let why = why.as_deref().filter(|why| !why.is_empty());
    let room = iq.room;
    let occupant = Occupant::of_session(host, &room.jid, &iq.inbound.from.to_string())?;
    let actor = Actor {
        affiliation: iq
            .muc
            .affiliation(host, &room.jid, &iq.inbound.from.to_bare().to_string())?,
        role: occupant.as_ref().map_or(Role::None, Occupant::role),
    };
    let (Ok(()), Some(moderator)) = (permissions::may_moderate_messages(&actor), occupant) else {
        return Ok(Err(forbidden(
            "only moderators may retract other occupants' messages",
        )));
    };
    let Some(entry) = archived(host, &room.jid, id)? else {
        return Ok(Err(deny(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "no message with this stanza-id in this room",
        )));
    };
    let original = match retractable(&entry, Retractor::Moderator)? {
        Ok(original) => original,
        Err(denial) => return Ok(Err(denial)),
    };
    let by = format!("{}/{}", room.jid, moderator.nick);
    // A record an earlier plugin wrote may lack the id: the moderation then names the nick only.
    let moderator_id = moderator.occupant_id.as_deref();
    let gone = retracted(host, &by, Some((moderated(&by, moderator_id), why)))?;
    replace(host, &room.jid, id, &tombstone(&original, &room.jid, gone))?;
    let retraction = Element::builder("retract", NS_RETRACT)
        .attr(xml_ncname!("id").into(), id)
        .append(moderated(&by, moderator_id))
        .append_all(reason(why))
        .build();
    let announcement = Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "groupchat")
        .attr(xml_ncname!("from").into(), room.jid.as_str())
        .attr(xml_ncname!("id").into(), host.unique_id())
        .append(retraction)
        .build();
    iq.core.relay_from_room(host, room, announcement)?;
    Ok(Ok(()))
}

/// An occupant's retraction of a message: refused unless the message is theirs (by occupant
/// id), still archived and not itself a retraction; a `<moderated/>` in it is a forgery.
fn check_retraction(
    host: &mut dyn Host,
    room: &Room,
    occupant_id: &str,
    retraction: &Element,
) -> Result<Option<Denial>, Fault> {
    if retraction.has_child("moderated", NS_MODERATE) {
        return Ok(Some(forbidden(
            "only the room announces a moderation: send moderate to the room",
        )));
    }
    let Some(id) = retraction.attr("id").filter(|id| !id.is_empty()) else {
        return Ok(Some(bad_request(
            "a retraction names the message by its stanza-id",
        )));
    };
    let Some(entry) = archived(host, &room.jid, id)? else {
        return Ok(Some(deny(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "no message with this stanza-id in this room",
        )));
    };
    if entry.occupant_id.as_deref() != Some(occupant_id) {
        return Ok(Some(forbidden("you may retract only your own messages")));
    }
    Ok(retractable(&entry, Retractor::Author)?.err())
}

/// An occupant's correction: refused when the newest messages hold the corrected id from
/// someone else and not from the sender.
fn check_correction(
    host: &mut dyn Host,
    room: &Room,
    occupant_id: &str,
    correction: &Element,
) -> Result<Option<Denial>, Fault> {
    let id = match Replace::try_from(correction.clone()) {
        Ok(Replace { id }) if !id.0.is_empty() => id,
        _ => {
            return Ok(Some(bad_request(
                "a correction names the corrected message's id",
            )))
        }
    };
    // A stanza-id names one message exactly, however old.
    if let Some(entry) = archived(host, &room.jid, &id.0)? {
        return Ok((entry.occupant_id.as_deref() != Some(occupant_id))
            .then(|| forbidden("you may correct only your own messages")));
    }
    let query = ArchiveQuery {
        filter: ArchiveFilter::default(),
        position: ArchivePosition::Newest,
        limit: CORRECTION_WINDOW,
    };
    let Ok(page) = host.archive_query(&room.jid, &query) else {
        return Ok(None);
    };
    let mut someone_elses = false;
    for entry in &page.entries {
        if !names(entry, &id.0) {
            continue;
        }
        if entry.occupant_id.as_deref() == Some(occupant_id) {
            return Ok(None);
        }
        someone_elses = true;
    }
    Ok(someone_elses.then(|| forbidden("you may correct only your own messages")))
}

/// Whether the archived message is the one `id` names: its stanza-id, or its sender's `id`.
fn names(entry: &ArchiveEntry, id: &str) -> bool {
    if entry.id == id {
        return true;
    }
    // Most entries do not contain the id at all: only those that do are parsed.
    entry.stanza.contains(id)
        && entry
            .stanza
            .parse::<Element>()
            .is_ok_and(|stanza| stanza.attr("id") == Some(id))
}

pub struct Moderation;

impl RoomFeature for Moderation {
    fn check_groupchat_stored(
        &self,
        host: &mut dyn Host,
        room: &Room,
        occupant_id: &str,
        message: &Element,
    ) -> Result<Option<Denial>, Fault> {
        // What only the room writes: an occupant's would forge a tombstone or a moderation.
        if message.has_child("retracted", NS_RETRACT) || message.has_child("moderated", NS_MODERATE)
        {
            return Ok(Some(forbidden(
                "only the room marks a message retracted or moderated",
            )));
        }
        if let Some(retraction) = message.get_child("retract", NS_RETRACT) {
            if let Some(denial) = check_retraction(host, room, occupant_id, retraction)? {
                return Ok(Some(denial));
            }
        }
        match message.get_child("replace", ns::MESSAGE_CORRECT) {
            Some(correction) => check_correction(host, room, occupant_id, correction),
            None => Ok(None),
        }
    }

    /// An occupant's retraction (checked, and archived by now): its message becomes a
    /// tombstone. The room's own announcements of a moderation are not from an occupant: the
    /// moderation made its tombstone.
    fn store_groupchat(&self, host: &mut dyn Host, message: &Groupchat) -> Result<(), Fault> {
        if message.sender.is_none() {
            return Ok(());
        }
        let Some(id) = message
            .message
            .get_child("retract", NS_RETRACT)
            .and_then(|retraction| retraction.attr("id"))
        else {
            return Ok(());
        };
        let room = &message.room.jid;
        // Gone already when a room that does not archive trimmed it to make room for this one.
        let Some(entry) = archived(host, room, id)? else {
            return Ok(());
        };
        let Ok(original) = retractable(&entry, Retractor::Author)? else {
            return Ok(());
        };
        let by = message.message.attr("from").unwrap_or(room);
        let gone = retracted(host, by, None)?;
        replace(host, room, id, &tombstone(&original, room, gone))
    }

    fn room_iq_namespaces(&self) -> &'static [&'static str] {
        &[NS_MODERATE]
    }

    fn room_iq(&self, host: &mut dyn Host, iq: &RoomIq) -> Result<(), Fault> {
        let envelope = iq.inbound.envelope;
        match moderate(host, iq)? {
            Ok(()) => host.send(errors::result(envelope, None)),
            Err((refusal, text)) => errors::reply(
                host,
                envelope,
                "iq",
                refusal.type_,
                refusal.condition,
                Some(text),
            ),
        }
    }

    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        vec![NS_MODERATE, NS_RETRACT, NS_TOMBSTONE]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Muc, Settings};
    use crate::memory_host::MemoryHost;

    const ROOM: &str = "r@muc.example";
    const OWNER: &str = "owner@example.org/o";
    const SPAMMER: &str = "spammer@example.org/s";
    const OTHER: &str = "other@example.org/x";

    /// A configured room with the owner (a moderator) and two participants in it.
    fn room() -> (Muc, MemoryHost) {
        let muc = Muc::new(Settings::default());
        let mut host = MemoryHost::default();
        join(&muc, &mut host, OWNER, "Owner");
        let answer = host.exchange(
            &muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='c' from='{OWNER}' to='{ROOM}'>\
                 <query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='submit'/></query></iq>"
            ),
        );
        assert_eq!(answer[0].attr("type"), Some("result"), "{answer:?}");
        join(&muc, &mut host, SPAMMER, "Spammer");
        join(&muc, &mut host, OTHER, "Other");
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

    fn leave(muc: &Muc, host: &mut MemoryHost, from: &str, nick: &str) {
        host.exchange(
            muc,
            &format!(
                "<presence xmlns='jabber:client' type='unavailable' from='{from}' to='{ROOM}/{nick}'/>"
            ),
        );
    }

    /// Sends a groupchat message; returns what the room sent.
    fn say(muc: &Muc, host: &mut MemoryHost, from: &str, payload: &str) -> Vec<Element> {
        host.exchange(
            muc,
            &format!(
                "<message xmlns='jabber:client' type='groupchat' id='m1' from='{from}' to='{ROOM}'>\
                 {payload}</message>"
            ),
        )
    }

    fn stanza_id(sent: &[Element]) -> String {
        sent[0]
            .get_child("stanza-id", ns::SID)
            .and_then(|id| id.attr("id"))
            .expect("a relayed message")
            .to_string()
    }

    fn moderate(muc: &Muc, host: &mut MemoryHost, from: &str, id: &str) -> Vec<Element> {
        host.exchange(
            muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='mod' from='{from}' to='{ROOM}'>\
                 <moderate xmlns='{NS_MODERATE}' id='{id}'><retract xmlns='{NS_RETRACT}'/>\
                 <reason>spam</reason></moderate></iq>"
            ),
        )
    }

    fn condition(reply: &Element) -> String {
        assert_eq!(reply.attr("type"), Some("error"), "{reply:?}");
        let error = reply.get_child("error", ns::JABBER_CLIENT).unwrap();
        error.children().next().unwrap().name().to_string()
    }

    fn archived_stanza(host: &MemoryHost, id: &str) -> Element {
        host.archives[ROOM]
            .iter()
            .find(|entry| entry.id == id)
            .expect("archived")
            .stanza
            .parse()
            .unwrap()
    }

    #[test]
    fn a_spammer_can_neither_forge_a_tombstone_nor_hide_behind_a_retraction() {
        let (muc, mut host) = room();
        for forged in [
            format!(
                "<body>buy</body><retracted xmlns='{NS_RETRACT}' stamp='2020-01-01T00:00:00Z'/>"
            ),
            format!("<body>buy</body><moderated xmlns='{NS_MODERATE}' by='{ROOM}/Owner'/>"),
        ] {
            let refused = say(&muc, &mut host, SPAMMER, &forged);
            assert_eq!(refused.len(), 1, "{refused:?}");
            assert_eq!(condition(&refused[0]), "forbidden");
        }
        assert!(host
            .archives
            .get(ROOM)
            .is_none_or(|entries| entries.is_empty()));
        // Spam riding on a retraction of the spammer's own earlier message.
        let first = stanza_id(&say(&muc, &mut host, SPAMMER, "<body>hi</body>"));
        let spam = stanza_id(&say(
            &muc,
            &mut host,
            SPAMMER,
            &format!("<body>buy now</body><retract xmlns='{NS_RETRACT}' id='{first}'/>"),
        ));
        let sent = moderate(&muc, &mut host, OWNER, &spam);
        assert!(
            sent.iter().all(|s| s.attr("type") != Some("error")),
            "{sent:?}"
        );
        let tombstone = archived_stanza(&host, &spam);
        assert!(tombstone.has_child("retracted", NS_RETRACT));
        assert!(!tombstone.has_child("body", ns::JABBER_CLIENT));
    }

    #[test]
    fn a_correction_by_stanza_id_is_checked_however_old_the_message() {
        let (muc, mut host) = room();
        let old = stanza_id(&say(&muc, &mut host, OTHER, "<body>original</body>"));
        for n in 0..CORRECTION_WINDOW {
            say(&muc, &mut host, OWNER, &format!("<body>filler {n}</body>"));
        }
        let refused = say(
            &muc,
            &mut host,
            SPAMMER,
            &format!(
                "<body>changed</body><replace xmlns='urn:xmpp:message-correct:0' id='{old}'/>"
            ),
        );
        assert_eq!(condition(&refused[0]), "forbidden");
    }

    #[test]
    fn a_moderator_retracts_a_message_which_becomes_a_tombstone() {
        let (muc, mut host) = room();
        host.now_ms = 1_000;
        let spam = stanza_id(&say(&muc, &mut host, SPAMMER, "<body>buy now</body>"));
        host.now_ms = 60_000;
        let sent = moderate(&muc, &mut host, OWNER, &spam);

        // The announcement, to all three sessions, then the result.
        assert_eq!(sent.len(), 4, "{sent:?}");
        let announcement = &sent[0];
        assert_eq!(announcement.attr("from"), Some(ROOM));
        assert_eq!(announcement.attr("type"), Some("groupchat"));
        let retraction = announcement.get_child("retract", NS_RETRACT).unwrap();
        assert_eq!(retraction.attr("id"), Some(spam.as_str()));
        let moderated = retraction.get_child("moderated", NS_MODERATE).unwrap();
        assert_eq!(moderated.attr("by"), Some("r@muc.example/Owner"));
        assert!(moderated.has_child("occupant-id", ns::OID));
        assert_eq!(
            retraction
                .get_child("reason", NS_RETRACT)
                .map(Element::text),
            Some("spam".into())
        );
        assert_eq!(sent[3].attr("type"), Some("result"));

        // The tombstone: who and when, the author's ids, nothing of the content.
        let tombstone = archived_stanza(&host, &spam);
        assert!(!tombstone.has_child("body", ns::JABBER_CLIENT));
        assert!(!String::from(&tombstone).contains("buy now"));
        assert_eq!(tombstone.attr("from"), Some("r@muc.example/Spammer"));
        assert!(tombstone.has_child("occupant-id", ns::OID));
        assert!(tombstone.has_child("stanza-id", ns::SID));
        let retracted = tombstone.get_child("retracted", NS_RETRACT).unwrap();
        assert_eq!(retracted.attr("stamp"), Some("1970-01-01T00:01:00Z"));
        assert_eq!(retracted.attr("by"), Some("r@muc.example/Owner"));
        assert!(retracted.has_child("moderated", NS_MODERATE));

        // The announcement is archived after it, with its own stanza-id.
        let last = host.archives[ROOM].last().unwrap().clone();
        assert_eq!(last.id, stanza_id(&sent));
        assert!(last.stanza.contains(&spam));

        // Neither may be retracted again.
        let again = moderate(&muc, &mut host, OWNER, &spam);
        assert_eq!(condition(&again[0]), "not-acceptable");
        let retraction_of_retraction = moderate(&muc, &mut host, OWNER, &last.id);
        assert_eq!(condition(&retraction_of_retraction[0]), "not-acceptable");
    }

    #[test]
    fn only_a_moderator_in_the_room_moderates_and_only_known_ids() {
        let (muc, mut host) = room();
        let spam = stanza_id(&say(&muc, &mut host, SPAMMER, "<body>buy now</body>"));
        let before = host.archives[ROOM].clone();
        assert_eq!(
            condition(&moderate(&muc, &mut host, OTHER, &spam)[0]),
            "forbidden"
        );
        assert_eq!(
            condition(&moderate(&muc, &mut host, "stranger@example.org/z", &spam)[0]),
            "forbidden"
        );
        // The owner, out of the room, has no role.
        leave(&muc, &mut host, OWNER, "Owner");
        assert_eq!(
            condition(&moderate(&muc, &mut host, OWNER, &spam)[0]),
            "forbidden"
        );
        join(&muc, &mut host, OWNER, "Owner");
        assert_eq!(
            condition(&moderate(&muc, &mut host, OWNER, "no-such-id")[0]),
            "item-not-found"
        );
        assert_eq!(host.archives[ROOM], before, "nothing stored on refusal");

        let malformed = host.exchange(
            &muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='bad' from='{OWNER}' to='{ROOM}'>\
                 <moderate xmlns='{NS_MODERATE}'><retract xmlns='{NS_RETRACT}'/></moderate></iq>"
            ),
        );
        assert_eq!(condition(&malformed[0]), "bad-request");
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let too_long = host.exchange(
            &muc,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='long' from='{OWNER}' to='{ROOM}'>\
                 <moderate xmlns='{NS_MODERATE}' id='{spam}'><retract xmlns='{NS_RETRACT}'/>\
                 <reason>{long}</reason></moderate></iq>"
            ),
        );
        assert_eq!(condition(&too_long[0]), "not-acceptable");
        assert_eq!(host.archives[ROOM], before);
    }

    #[test]
    fn an_occupant_retracts_their_own_message_by_occupant_id_not_by_nick() {
        let (muc, mut host) = room();
        let mine = stanza_id(&say(&muc, &mut host, OTHER, "<body>oops</body>"));
        let theirs = stanza_id(&say(&muc, &mut host, SPAMMER, "<body>spam</body>"));
        let retract = |id: &str| format!("<retract xmlns='{NS_RETRACT}' id='{id}'/>");

        let refused = say(&muc, &mut host, OTHER, &retract(&theirs));
        assert_eq!(refused.len(), 1, "nothing relayed: {refused:?}");
        assert_eq!(condition(&refused[0]), "forbidden");
        assert!(archived_stanza(&host, &theirs).has_child("body", ns::JABBER_CLIENT));

        // Someone else under the same nick later is not its author.
        leave(&muc, &mut host, OTHER, "Other");
        join(&muc, &mut host, "impostor@example.org/i", "Other");
        let impostor = say(&muc, &mut host, "impostor@example.org/i", &retract(&mine));
        assert_eq!(condition(&impostor[0]), "forbidden");
        leave(&muc, &mut host, "impostor@example.org/i", "Other");
        join(&muc, &mut host, OTHER, "Other");

        let relayed = say(&muc, &mut host, OTHER, &retract(&mine));
        assert_eq!(relayed.len(), 3, "to everyone: {relayed:?}");
        let tombstone = archived_stanza(&host, &mine);
        assert!(!tombstone.has_child("body", ns::JABBER_CLIENT));
        let retracted = tombstone.get_child("retracted", NS_RETRACT).unwrap();
        assert_eq!(retracted.attr("by"), Some("r@muc.example/Other"));
        assert!(!retracted.has_child("moderated", NS_MODERATE));
        // The retraction is archived too, and cannot itself be retracted.
        let retraction = stanza_id(&relayed);
        assert!(archived_stanza(&host, &retraction).has_child("retract", NS_RETRACT));
        let twice = say(&muc, &mut host, OTHER, &retract(&retraction));
        assert_eq!(condition(&twice[0]), "not-acceptable");
        let unknown = say(&muc, &mut host, OTHER, &retract("nope"));
        assert_eq!(condition(&unknown[0]), "item-not-found");
    }

    #[test]
    fn a_forged_moderation_is_refused() {
        let (muc, mut host) = room();
        let theirs = stanza_id(&say(&muc, &mut host, SPAMMER, "<body>spam</body>"));
        let forged = say(
            &muc,
            &mut host,
            OTHER,
            &format!(
                "<retract xmlns='{NS_RETRACT}' id='{theirs}'>\
                 <moderated xmlns='{NS_MODERATE}' by='r@muc.example/Owner'/></retract>"
            ),
        );
        assert_eq!(condition(&forged[0]), "forbidden");
        assert!(archived_stanza(&host, &theirs).has_child("body", ns::JABBER_CLIENT));
    }

    #[test]
    fn corrections_of_someone_elses_message_are_refused() {
        let (muc, mut host) = room();
        // Both clients happen to use the id 'm1'; the spammer's is the newer.
        let own = stanza_id(&say(&muc, &mut host, OTHER, "<body>helo</body>"));
        say(&muc, &mut host, SPAMMER, "<body>spam</body>");
        let correct = |id: &str| {
            format!(
                "<body>hello</body><replace xmlns='{}' id='{id}'/>",
                ns::MESSAGE_CORRECT
            )
        };
        assert_eq!(say(&muc, &mut host, OTHER, &correct("m1")).len(), 3);
        assert_eq!(say(&muc, &mut host, OTHER, &correct(&own)).len(), 3);

        let refused = say(&muc, &mut host, OWNER, &correct("m1"));
        assert_eq!(condition(&refused[0]), "forbidden");
        let archived = host.archives[ROOM].len();
        let refused = say(&muc, &mut host, OWNER, &correct(&own));
        assert_eq!(condition(&refused[0]), "forbidden");
        assert_eq!(host.archives[ROOM].len(), archived);
        // An id the room does not know: the clients judge.
        assert_eq!(say(&muc, &mut host, OWNER, &correct("unknown")).len(), 3);
        let refused = say(&muc, &mut host, OWNER, &correct(""));
        assert_eq!(condition(&refused[0]), "bad-request");
    }

    #[test]
    fn the_room_advertises_moderation_and_tombstones() {
        let (_, mut host) = room();
        let room = Room::load(&mut host, ROOM).unwrap().unwrap();
        let features = Moderation.disco_features(&room);
        for feature in [NS_MODERATE, NS_RETRACT, NS_TOMBSTONE] {
            assert!(features.contains(&feature), "{feature}");
        }
    }
}
