//! Layout 3's migration: the join history that layouts 1 and 2 kept beside each room record,
//! under `room/ROOM/history/SEQ` (and `room/ROOM/history-range`), moves into the room's
//! archive, oldest first, and the keys go. It runs inside `upgrade`, one call: all of it
//! commits or none. Ids are the room's stanza-ids on the stored messages, or, for a message
//! without one, `history-SEQ`; an entry whose id the archive already holds is left out, so
//! running it again over the same keys adds nothing.

use minidom::Element;
use serde::Deserialize;

use crate::features::{archive, occupant_id, stable_id};
use crate::host::{ArchiveEntry, ArchiveWriteError, Fault, Host, Level, Tier};

/// A history entry as layouts 1 and 2 stored it.
#[derive(Deserialize)]
struct Stored {
    /// The message as broadcast, without `to`.
    stanza: String,
    at_ms: u64,
}

/// Moves every room's history, in both tiers, into its archive. Returns how many entries moved.
pub fn run(host: &mut dyn Host) -> Result<u64, Fault> {
    let mut moved = 0;
    for tier in [Tier::Durable, Tier::Volatile] {
        // Keys come sorted: one room's entries are together, oldest (lowest SEQ) first.
        for (key, bytes) in host.scan(tier, "room/", None, u32::MAX) {
            let Some((room, rest)) = key.strip_prefix("room/").and_then(|k| k.split_once('/'))
            else {
                continue;
            };
            if rest == "history-range" {
                host.delete(tier, &key);
                continue;
            }
            let Some(seq) = rest.strip_prefix("history/") else {
                continue;
            };
            host.delete(tier, &key);
            let stored: Stored = match serde_json::from_slice(&bytes) {
                Ok(stored) => stored,
                Err(error) => {
                    host.log(
                        Level::Warn,
                        &format!("history entry {key} unreadable, dropped: {error}"),
                    );
                    continue;
                }
            };
            let entry = match entry_of(room, seq, stored) {
                Ok(entry) => entry,
                Err(Fault(error)) => {
                    host.log(
                        Level::Warn,
                        &format!("history entry {key} unreadable, dropped: {error}"),
                    );
                    continue;
                }
            };
            match host.archive_append(room, entry) {
                Ok(()) => moved += 1,
                Err(ArchiveWriteError::DuplicateId(_)) => {}
                Err(error) => return Err(archive::write_fault(error)),
            }
        }
    }
    Ok(moved)
}

/// The archive entry for a stored history entry, with a stanza-id made from its sequence
/// number and stamped for a message that has none.
fn entry_of(room: &str, seq: &str, stored: Stored) -> Result<ArchiveEntry, Fault> {
    let mut message: Element = stored.stanza.parse()?;
    let mut xml = stored.stanza;
    if room_stanza_id(&message, room).is_none() {
        stable_id::stamp(&mut message, room, &format!("history-{seq}"));
        xml = String::from(&message);
    }
    let id = room_stanza_id(&message, room)
        .ok_or_else(|| Fault("a stamped message has no stanza-id".into()))?;
    Ok(ArchiveEntry {
        id: id.to_string(),
        at_ms: stored.at_ms,
        sender: message.attr("from").unwrap_or(room).to_string(),
        occupant_id: message
            .get_child("occupant-id", occupant_id::NS)
            .and_then(|child| child.attr("id"))
            .map(str::to_string),
        real_jid: None,
        stanza: xml,
    })
}

/// The id the room stamped on a message (XEP-0359).
fn room_stanza_id<'a>(message: &'a Element, room: &str) -> Option<&'a str> {
    message
        .children()
        .find(|c| c.is("stanza-id", stable_id::NS) && c.attr("by") == Some(room))
        .and_then(|c| c.attr("id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Muc, Settings};
    use crate::keys;
    use crate::memory_host::MemoryHost;

    fn stored(stanza: &str, at_ms: u64) -> Vec<u8> {
        serde_json::json!({ "stanza": stanza, "at_ms": at_ms })
            .to_string()
            .into_bytes()
    }

    fn message(room: &str, n: u32, stanza_id: Option<&str>) -> String {
        let id = stanza_id.map_or(String::new(), |id| {
            format!("<stanza-id xmlns='urn:xmpp:sid:0' id='{id}' by='{room}'/>")
        });
        format!(
            "<message xmlns='jabber:client' type='groupchat' from='{room}/n{n}'>\
             <body>{n}</body>{id}<occupant-id xmlns='urn:xmpp:occupant-id:0' id='o{n}'/></message>"
        )
    }

    /// A layout 2 store: a persistent room with three entries (the middle one without a
    /// stanza-id) and a temporary one with one.
    fn layout_2_store() -> MemoryHost {
        let mut host = MemoryHost::default();
        host.durable.insert(keys::LAYOUT.into(), b"2".to_vec());
        let kept = "kept@muc.example";
        for (seq, id) in [(7, Some("a")), (8, None), (9, Some("c"))] {
            host.durable.insert(
                format!("room/{kept}/history/{seq:020}"),
                stored(&message(kept, seq, id), u64::from(seq) * 1000),
            );
        }
        host.durable.insert(
            format!("room/{kept}/history-range"),
            br#"{"first":7,"next":10}"#.to_vec(),
        );
        let temporary = "temp@muc.example";
        host.volatile.insert(
            format!("room/{temporary}/history/{:020}", 0),
            stored(&message(temporary, 1, Some("t")), 500),
        );
        host.volatile.insert(
            format!("room/{temporary}/history-range"),
            br#"{"first":0,"next":1}"#.to_vec(),
        );
        host.volatile
            .insert(format!("room/{temporary}/occupant/n1"), b"{}".to_vec());
        host
    }

    #[test]
    fn every_history_entry_moves_into_the_archive_in_order_and_the_keys_go() {
        let mut host = layout_2_store();
        let muc = Muc::new(Settings::default());
        muc.upgrade(&mut host, "0.2.0").unwrap();

        let kept = &host.archives["kept@muc.example"];
        let ids: Vec<&str> = kept.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids[0], "a");
        assert_eq!(ids[2], "c");
        assert_eq!(ids[1], "history-00000000000000000008");
        let stamped: Element = kept[1].stanza.parse().unwrap();
        assert_eq!(
            room_stanza_id(&stamped, "kept@muc.example"),
            Some(ids[1]),
            "the made id is on the stanza too"
        );
        assert_eq!(
            kept.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            [7000, 8000, 9000]
        );
        assert_eq!(kept[0].sender, "kept@muc.example/n7");
        assert_eq!(kept[0].occupant_id.as_deref(), Some("o7"));
        assert_eq!(host.archives["temp@muc.example"].len(), 1);

        let left: Vec<&String> = host
            .durable
            .keys()
            .chain(host.volatile.keys())
            .filter(|key| key.contains("/history"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(host
            .volatile
            .contains_key("room/temp@muc.example/occupant/n1"));
        assert_eq!(
            host.durable.get(keys::LAYOUT).unwrap(),
            keys::LAYOUT_VERSION.to_string().as_bytes()
        );

        // Again (another swap): nothing is added.
        muc.upgrade(&mut host, "0.3.0").unwrap();
        assert_eq!(host.archives["kept@muc.example"].len(), 3);
    }

    #[test]
    fn the_same_keys_moved_twice_add_nothing() {
        let mut host = layout_2_store();
        assert_eq!(run(&mut host).unwrap(), 4);
        let mut again = layout_2_store();
        again.archives = host.archives.clone();
        assert_eq!(run(&mut again).unwrap(), 0);
        assert_eq!(again.archives, host.archives);
    }

    #[test]
    fn an_unreadable_entry_is_dropped_and_logged_not_fatal() {
        let mut host = layout_2_store();
        host.durable.insert(
            format!("room/kept@muc.example/history/{:020}", 10),
            b"not json".to_vec(),
        );
        assert_eq!(run(&mut host).unwrap(), 4);
        assert!(host
            .logged
            .iter()
            .any(|(level, text)| *level == Level::Warn && text.contains("unreadable")));
        assert!(!host.durable.keys().any(|key| key.contains("/history/")));
    }
}
