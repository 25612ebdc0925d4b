//! An in-memory [`Host`] for unit tests: everything is committed at once and sent stanzas are
//! collected, with broadcasts expanded per recipient as the real host does.

use std::collections::BTreeMap;
use std::ops::Bound;

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;

use xmpp_parsers::data_forms::Field;

use crate::host::{
    ArchiveEntry, ArchivePage, ArchivePosition, ArchiveQuery, ArchiveQueryError, ArchiveWriteError,
    Envelope, Fault, Host, Level, StanzaKind, Tier,
};
use crate::service::Muc;

#[derive(Default)]
pub struct MemoryHost {
    pub durable: BTreeMap<String, Vec<u8>>,
    pub volatile: BTreeMap<String, Vec<u8>>,
    pub sent: Vec<Element>,
    pub timers: BTreeMap<String, u64>,
    pub now_ms: u64,
    /// What the room extensions add to every configuration form.
    pub extension_fields: Vec<Field>,
    /// Store entries read so far (each `get`, and each entry a `scan` returned): what a call
    /// costs in reads, for tests that check it is bounded.
    pub entries_read: usize,
    pub logged: Vec<(Level, String)>,
    /// Each room's archive, oldest first.
    pub archives: BTreeMap<String, Vec<ArchiveEntry>>,
    next_id: u64,
}

impl MemoryHost {
    fn tier(&mut self, tier: Tier) -> &mut BTreeMap<String, Vec<u8>> {
        match tier {
            Tier::Durable => &mut self.durable,
            Tier::Volatile => &mut self.volatile,
        }
    }

    /// The stanzas sent so far, leaving none behind.
    pub fn take_sent(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.sent)
    }

    /// Hands `muc` the stanza `xml` (in `jabber:client`, with `from` and `to`) as the host does,
    /// and returns what it sent.
    pub fn exchange(&mut self, muc: &Muc, xml: &str) -> Vec<Element> {
        let stanza: Element = xml.parse().expect("a test stanza");
        let kind = match stanza.name() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            _ => StanzaKind::Iq,
        };
        let attr = |name: &str| stanza.attr(name).map(str::to_string);
        let envelope = Envelope {
            kind,
            type_: attr("type"),
            from: attr("from").expect("a test stanza's from"),
            to: attr("to").expect("a test stanza's to"),
            id: attr("id"),
        };
        muc.handle_stanza(self, &envelope, xml).expect("no fault");
        self.take_sent()
    }
}

impl Host for MemoryHost {
    fn get(&mut self, tier: Tier, key: &str) -> Option<Vec<u8>> {
        self.entries_read += 1;
        self.tier(tier).get(key).cloned()
    }

    fn put(&mut self, tier: Tier, key: &str, value: Vec<u8>) -> Result<(), Fault> {
        self.tier(tier).insert(key.to_string(), value);
        Ok(())
    }

    fn delete(&mut self, tier: Tier, key: &str) {
        self.tier(tier).remove(key);
    }

    fn scan(
        &mut self,
        tier: Tier,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Vec<(String, Vec<u8>)> {
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let entries: Vec<(String, Vec<u8>)> = self
            .tier(tier)
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit as usize)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        self.entries_read += entries.len();
        entries
    }

    fn delete_prefix(&mut self, tier: Tier, prefix: &str) -> u32 {
        let map = self.tier(tier);
        let before = map.len();
        map.retain(|key, _| !key.starts_with(prefix));
        (before - map.len()) as u32
    }

    fn send(&mut self, stanza: Element) -> Result<(), Fault> {
        self.sent.push(stanza);
        Ok(())
    }

    fn broadcast(&mut self, stanza: Element, recipients: &[String]) -> Result<(), Fault> {
        for recipient in recipients {
            let mut copy = stanza.clone();
            copy.set_attr(
                Namespace::NONE,
                xml_ncname!("to").into(),
                recipient.as_str(),
            );
            self.sent.push(copy);
        }
        Ok(())
    }

    fn set_timer(&mut self, key: &str, at_ms: u64) {
        self.timers.insert(key.to_string(), at_ms);
    }

    fn cancel_timer(&mut self, key: &str) {
        self.timers.remove(key);
    }

    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }

    fn unique_id(&mut self) -> String {
        self.next_id += 1;
        format!("id{}", self.next_id)
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logged.push((level, message.to_string()));
    }

    fn extension_form_fields(&mut self, _room: &str) -> Vec<Field> {
        self.extension_fields.clone()
    }

    fn archive_append(
        &mut self,
        room: &str,
        mut entry: ArchiveEntry,
    ) -> Result<(), ArchiveWriteError> {
        let archive = self.archives.entry(room.to_string()).or_default();
        if archive.iter().any(|kept| kept.id == entry.id) {
            return Err(ArchiveWriteError::DuplicateId(entry.id));
        }
        // Times never go backwards within a room.
        if let Some(newest) = archive.last() {
            entry.at_ms = entry.at_ms.max(newest.at_ms);
        }
        archive.push(entry);
        Ok(())
    }

    fn archive_query(
        &mut self,
        room: &str,
        query: &ArchiveQuery,
    ) -> Result<ArchivePage, ArchiveQueryError> {
        let empty = Vec::new();
        let archive = self.archives.get(room).unwrap_or(&empty);
        let position_of = |id: &str| {
            archive
                .iter()
                .position(|entry| entry.id == id)
                .ok_or_else(|| ArchiveQueryError::ItemNotFound(id.to_string()))
        };
        let filter = &query.filter;
        let after = filter.after_id.as_deref().map(position_of).transpose()?;
        let before = filter.before_id.as_deref().map(position_of).transpose()?;
        let matching: Vec<usize> = (0..archive.len())
            .filter(|&at| {
                let entry = &archive[at];
                filter.start_ms.is_none_or(|start| entry.at_ms >= start)
                    && filter.end_ms.is_none_or(|end| entry.at_ms <= end)
                    && filter
                        .with
                        .as_ref()
                        .is_none_or(|with| &entry.sender == with)
                    && after.is_none_or(|after| at > after)
                    && before.is_none_or(|before| at < before)
                    && (filter.ids.is_empty() || filter.ids.contains(&entry.id))
            })
            .collect();
        let limit = query.limit as usize;
        // The candidates beyond the position, and whether the page is their oldest end.
        let (candidates, from_oldest): (Vec<usize>, bool) = match &query.position {
            ArchivePosition::Oldest => (matching.clone(), true),
            ArchivePosition::Newest => (matching.clone(), false),
            ArchivePosition::After(id) => {
                let p = position_of(id)?;
                (
                    matching.iter().copied().filter(|&at| at > p).collect(),
                    true,
                )
            }
            ArchivePosition::Before(id) => {
                let p = position_of(id)?;
                (
                    matching.iter().copied().filter(|&at| at < p).collect(),
                    false,
                )
            }
        };
        let page: Vec<usize> = if from_oldest {
            candidates.iter().copied().take(limit).collect()
        } else {
            candidates[candidates.len().saturating_sub(limit)..].to_vec()
        };
        let index = page.first().map_or(0, |first| {
            matching.iter().filter(|&&at| at < *first).count()
        });
        Ok(ArchivePage {
            entries: page.iter().map(|&at| archive[at].clone()).collect(),
            complete: candidates.len() <= limit,
            count: matching.len() as u64,
            index: index as u64,
        })
    }

    fn archive_replace(
        &mut self,
        room: &str,
        id: &str,
        stanza: &str,
    ) -> Result<bool, ArchiveWriteError> {
        let entry = self
            .archives
            .get_mut(room)
            .and_then(|archive| archive.iter_mut().find(|entry| entry.id == id));
        Ok(entry
            .map(|entry| entry.stanza = stanza.to_string())
            .is_some())
    }

    fn archive_trim(&mut self, room: &str, keep: u32) {
        if let Some(archive) = self.archives.get_mut(room) {
            let excess = archive.len().saturating_sub(keep as usize);
            archive.drain(..excess);
        }
    }

    fn archive_delete(&mut self, room: &str) {
        self.archives.remove(room);
    }
}
