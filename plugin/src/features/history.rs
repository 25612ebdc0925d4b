//! Discussion history (XEP-0045 §7.2.15): the room keeps its last messages, up to the configured
//! number, and sends a joiner those its `<history/>` asks for (`maxstanzas`, `maxchars`,
//! `seconds`, `since`), each with a `urn:xmpp:delay` from the room.
//!
//! Entries live beside the room record, in its tier, under `room/ROOM/history/SEQ` with
//! `room/ROOM/history-range` holding the first and next sequence numbers.

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use serde::{Deserialize, Serialize};
use xmpp_parsers::muc::muc::History as Request;

use crate::config::{FieldSpec, Kind};
use crate::event::{Groupchat, Joined, RoomFeature};
use crate::host::{Fault, Host};
use xmpp_parsers::ns;

use crate::room::Room;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#maxhistoryfetch",
    label: "Number of messages kept and sent to joiners",
    kind: Kind::Number {
        default: 20,
        max: 1000,
    },
};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Range {
    first: u64,
    next: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The message as broadcast, without `to`.
    stanza: String,
    at_ms: u64,
}

fn range_key(room: &str) -> String {
    format!("room/{room}/history-range")
}

fn entry_key(room: &str, seq: u64) -> String {
    format!("room/{room}/history/{seq:020}")
}

fn entries_prefix(room: &str) -> String {
    format!("room/{room}/history/")
}

/// Keeps `stanza` (a message as broadcast, without `to`, serialised), dropping the oldest
/// beyond the room's limit.
pub fn record(host: &mut dyn Host, room: &Room, stanza: &str) -> Result<(), Fault> {
    let limit = FIELD.number(&room.config);
    let tier = room.tier();
    let mut range: Range = match host.get(tier, &range_key(&room.jid)) {
        Some(bytes) => serde_json::from_slice(&bytes)?,
        None => Range::default(),
    };
    if limit > 0 {
        let entry = Entry {
            stanza: stanza.to_string(),
            at_ms: host.now_ms(),
        };
        host.put(
            tier,
            &entry_key(&room.jid, range.next),
            serde_json::to_vec(&entry)?,
        )?;
        range.next += 1;
    }
    while range.next - range.first > limit {
        host.delete(tier, &entry_key(&room.jid, range.first));
        range.first += 1;
    }
    host.put(tier, &range_key(&room.jid), serde_json::to_vec(&range)?)
}

/// The history a joiner asked for, oldest first, addressed to `to`.
pub fn replay(
    host: &mut dyn Host,
    room: &Room,
    request: Option<&Request>,
    to: &str,
) -> Result<Vec<Element>, Fault> {
    let limit = FIELD.number(&room.config) as u32;
    let now = host.now_ms();
    let oldest_ms = oldest_wanted(request, now);
    let entries: Vec<Entry> = host
        .scan(room.tier(), &entries_prefix(&room.jid), None, limit)
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice(&bytes))
        .collect::<Result<_, _>>()?;
    let max_stanzas = request.and_then(|r| r.maxstanzas).unwrap_or(limit) as usize;
    let mut chars_left = request.and_then(|r| r.maxchars).map(|c| c as usize);
    let mut replayed = Vec::new();
    for entry in entries
        .iter()
        .rev()
        .filter(|e| e.at_ms >= oldest_ms)
        .take(max_stanzas)
    {
        let message = delayed(entry, &room.jid, to)?;
        if let Some(left) = chars_left.as_mut() {
            // XEP-0045 counts the characters of the whole stanza as sent.
            let size = String::from(&message).chars().count();
            if size > *left {
                break;
            }
            *left -= size;
        }
        replayed.push(message);
    }
    replayed.reverse();
    Ok(replayed)
}

/// The earliest time a request's `seconds` and `since` let through.
fn oldest_wanted(request: Option<&Request>, now_ms: u64) -> u64 {
    let by_seconds = request
        .and_then(|r| r.seconds)
        .map(|s| now_ms.saturating_sub(u64::from(s) * 1000));
    let by_since = request
        .and_then(|r| r.since.as_ref())
        .map(|since| since.0.timestamp_millis().max(0) as u64);
    by_seconds.into_iter().chain(by_since).max().unwrap_or(0)
}

fn delayed(entry: &Entry, room: &str, to: &str) -> Result<Element, Fault> {
    let mut message: Element = entry.stanza.parse()?;
    message.set_attr(Namespace::NONE, xml_ncname!("to").into(), to);
    let stamp = chrono::DateTime::from_timestamp_millis(entry.at_ms as i64)
        .ok_or_else(|| Fault(format!("bad history time {}", entry.at_ms)))?
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    message.append_child(
        Element::builder("delay", "urn:xmpp:delay")
            .attr(xml_ncname!("from").into(), room)
            .attr(xml_ncname!("stamp").into(), stamp)
            .build(),
    );
    Ok(message)
}

pub struct History;

impl RoomFeature for History {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    /// Messages with a body or a subject are kept; a subject change is the subject's, not history.
    fn store_groupchat(&self, host: &mut dyn Host, message: &Groupchat) -> Result<(), Fault> {
        let worth_keeping = message.message.has_child("body", ns::JABBER_CLIENT)
            || message.message.has_child("subject", ns::JABBER_CLIENT);
        if worth_keeping && !message.changes_subject {
            record(host, message.room, &message.xml)?;
        }
        Ok(())
    }

    fn catch_up(&self, host: &mut dyn Host, joined: &Joined) -> Result<(), Fault> {
        for message in replay(host, joined.room, joined.history, joined.to)? {
            host.send(message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_host::MemoryHost;

    fn message(n: u32) -> Element {
        format!("<message xmlns='jabber:client' type='groupchat' from='r@muc.example/a'><body>{n}</body></message>")
            .parse()
            .unwrap()
    }

    fn bodies(messages: &[Element]) -> Vec<String> {
        messages
            .iter()
            .map(|m| m.get_child("body", "jabber:client").unwrap().text())
            .collect()
    }

    fn room_with(host: &mut MemoryHost, count: u32, limit: u64) -> Room {
        let mut room = Room::new_locked("r@muc.example");
        room.config.insert(FIELD.var.into(), limit.into());
        for n in 1..=count {
            host.now_ms = u64::from(n) * 1000;
            record(host, &room, &String::from(&message(n))).unwrap();
        }
        room.locked = false;
        room
    }

    #[test]
    fn the_room_keeps_its_last_messages() {
        let mut host = MemoryHost::default();
        let room = room_with(&mut host, 5, 3);
        let all = replay(&mut host, &room, None, "j@example.org/x").unwrap();
        assert_eq!(bodies(&all), ["3", "4", "5"]);
        assert_eq!(all[0].attr("to"), Some("j@example.org/x"));
        let delay = all[0].get_child("delay", "urn:xmpp:delay").unwrap();
        assert_eq!(delay.attr("from"), Some("r@muc.example"));
        assert_eq!(delay.attr("stamp"), Some("1970-01-01T00:00:03.000Z"));
    }

    #[test]
    fn requests_limit_by_stanzas_seconds_since_and_chars() {
        let mut host = MemoryHost::default();
        let room = room_with(&mut host, 5, 20);
        let ask = |request: Request, host: &mut MemoryHost| {
            bodies(&replay(host, &room, Some(&request), "j@example.org/x").unwrap())
        };
        assert_eq!(
            ask(Request::new().with_maxstanzas(2), &mut host),
            ["4", "5"]
        );
        assert_eq!(
            ask(Request::new().with_seconds(2), &mut host),
            ["3", "4", "5"]
        );
        let since = "1970-01-01T00:00:04Z".parse().unwrap();
        assert_eq!(ask(Request::new().with_since(since), &mut host), ["4", "5"]);
        assert!(ask(Request::new().with_maxchars(0), &mut host).is_empty());
        let one = String::from(&replay(&mut host, &room, None, "j@example.org/x").unwrap()[4])
            .chars()
            .count();
        assert_eq!(
            ask(Request::new().with_maxchars(one as u32 * 2), &mut host),
            ["4", "5"]
        );
    }
}
