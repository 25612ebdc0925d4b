//! Discussion history (XEP-0045 §7.2.15): a joiner gets the room's last messages that its
//! `<history/>` asks for (`maxstanzas`, `maxchars`, `seconds`, `since`), at most the
//! configured number, each with a `urn:xmpp:delay` from the room. They are read from the room's
//! archive (the `archive` feature writes it, and keeps at least that many when archiving is
//! off); subject changes are archived but not replayed (the subject follows the history on its
//! own).

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::muc::muc::History as Request;

use crate::config::FieldSpec;
use crate::event::{Joined, RoomFeature};
use crate::host::{ArchiveEntry, ArchiveFilter, ArchivePosition, ArchiveQuery, Fault, Host};
use crate::room::Room;
use crate::rules::subject;

pub use crate::rules::history::FIELD;

/// Pages read past subject changes to fill a join's history: a run of subject changes cannot
/// make a join read without bound.
const MAX_PAGES: usize = 4;

/// The history a joiner asked for, oldest first, addressed to `to`.
pub fn replay(
    host: &mut dyn Host,
    room: &Room,
    request: Option<&Request>,
    to: &str,
) -> Result<Vec<Element>, Fault> {
    let limit = FIELD.number(&room.config) as u32;
    let wanted = request
        .and_then(|r| r.maxstanzas)
        .unwrap_or(limit)
        .min(limit) as usize;
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let now = host.now_ms();
    let filter = ArchiveFilter {
        start_ms: Some(oldest_wanted(request, now)).filter(|&oldest| oldest > 0),
        ..ArchiveFilter::default()
    };
    // Newest first, until enough are found or the archive is read back to the oldest wanted.
    let mut newest_first: Vec<(ArchiveEntry, Element)> = Vec::new();
    let mut position = ArchivePosition::Newest;
    for _ in 0..MAX_PAGES {
        let query = ArchiveQuery {
            filter: filter.clone(),
            position,
            limit: (wanted - newest_first.len()) as u32,
        };
        let page = host
            .archive_query(&room.jid, &query)
            .map_err(|e| Fault(format!("reading the join history failed: {e:?}")))?;
        let Some(oldest) = page.entries.first() else {
            break;
        };
        position = ArchivePosition::Before(oldest.id.clone());
        for entry in page.entries.into_iter().rev() {
            let message: Element = entry.stanza.parse()?;
            if !subject::is_change(&message) {
                newest_first.push((entry, message));
            }
        }
        if page.complete || newest_first.len() >= wanted {
            break;
        }
    }
    let mut chars_left = request.and_then(|r| r.maxchars).map(|c| c as usize);
    let mut replayed = Vec::new();
    for (entry, message) in newest_first {
        let message = delayed(message, entry.at_ms, &room.jid, to)?;
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

fn delayed(mut message: Element, at_ms: u64, room: &str, to: &str) -> Result<Element, Fault> {
    message.set_attr(Namespace::NONE, xml_ncname!("to").into(), to);
    let stamp = chrono::DateTime::from_timestamp_millis(at_ms as i64)
        .ok_or_else(|| Fault(format!("bad history time {at_ms}")))?
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

    /// Appends as the archive feature does for a message as broadcast.
    fn record(host: &mut MemoryHost, room: &Room, message: &Element) {
        let entry = ArchiveEntry {
            id: host.unique_id(),
            at_ms: host.now_ms,
            sender: message.attr("from").unwrap().to_string(),
            occupant_id: None,
            real_jid: None,
            stanza: String::from(message),
        };
        host.archive_append(&room.jid, entry).unwrap();
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
            record(host, &room, &message(n));
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

    #[test]
    fn subject_changes_are_archived_but_not_replayed() {
        let mut host = MemoryHost::default();
        let room = room_with(&mut host, 3, 3);
        let change: Element = "<message xmlns='jabber:client' type='groupchat' \
             from='r@muc.example/a'><subject>news</subject></message>"
            .parse()
            .unwrap();
        record(&mut host, &room, &change);
        assert_eq!(host.archives["r@muc.example"].len(), 4);
        let all = replay(&mut host, &room, None, "j@example.org/x").unwrap();
        assert_eq!(bodies(&all), ["1", "2", "3"]);
    }
}
