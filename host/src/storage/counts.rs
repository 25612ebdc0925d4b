//! Service-wide counts that several instances change at once (`meta/NAME-count`, outside rooms:
//! the public room count). A call reads one, adds to it and writes it back; two instances doing
//! that in the same instant would each write their own sum, and one change would be lost. So in
//! a shared store a batch's change to a count is committed as a difference from what the batch
//! read: PostgreSQL adds it to whatever the row holds at COMMIT. No lock is taken to read, and
//! a batch that changes no count pays nothing.

use std::collections::BTreeMap;

/// Whether a durable key is a count (`wit/STORAGE.md`: `meta/` keys named `...-count` hold a
/// number in decimal text, absent meaning 0).
pub fn is_count(key: &str) -> bool {
    key.starts_with("meta/") && key.ends_with("-count")
}

/// The number a count's value holds (absent or unreadable: 0).
fn number(value: Option<&[u8]>) -> i64 {
    value
        .and_then(|bytes| std::str::from_utf8(bytes).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// What the batch read of each count before it first wrote it: the base of its difference.
#[derive(Debug, Default)]
pub struct CountBases {
    read: BTreeMap<String, i64>,
}

impl CountBases {
    /// The batch read `key` from the database as `value`, not having written it yet.
    pub fn note_read(&mut self, key: &str, value: Option<&[u8]>) {
        self.read.insert(key.to_string(), number(value));
    }

    /// The differences the batch's writes make to the counts it read first (a count written
    /// without being read, as a rebuild does, is written as it is). Takes those keys out of
    /// `durable`.
    pub fn differences(
        &mut self,
        durable: &mut BTreeMap<String, Option<Vec<u8>>>,
    ) -> Vec<(String, i64)> {
        let read = std::mem::take(&mut self.read);
        read.into_iter()
            .filter_map(|(key, base)| {
                let written = durable.remove(&key)?;
                Some((key, number(written.as_deref()) - base))
            })
            .collect()
    }

    /// The batch is over (committed or not): the next one reads afresh.
    pub fn clear(&mut self) {
        self.read.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_meta_keys_named_count_are_counts() {
        assert!(is_count("meta/public-room-count"));
        assert!(!is_count("meta/layout"));
        assert!(!is_count("public-room/a@c"));
        assert!(!is_count("room/a@c/meta/x-count"));
    }

    #[test]
    fn a_count_read_then_written_becomes_a_difference_and_one_only_written_stays_a_value() {
        let mut bases = CountBases::default();
        bases.note_read("meta/a-count", Some(b"5"));
        bases.note_read("meta/b-count", None);
        let mut durable = BTreeMap::from([
            ("meta/a-count".to_string(), Some(b"7".to_vec())),
            ("meta/b-count".to_string(), None),
            ("meta/c-count".to_string(), Some(b"3".to_vec())),
        ]);
        assert_eq!(
            bases.differences(&mut durable),
            [
                ("meta/a-count".to_string(), 2),
                ("meta/b-count".to_string(), 0)
            ]
        );
        assert_eq!(
            durable.keys().collect::<Vec<_>>(),
            ["meta/c-count"],
            "a count written without a read is a plain write"
        );
        assert!(bases.differences(&mut durable).is_empty());
    }
}
