//! How an instance sharing the store learns that another installed, replaced or removed a room
//! extension: its heartbeat (see [`super::lease`]) reads a digest of the extension catalog in the
//! same round trip as each beat, and counts the changes it sees. The core compares that count
//! with the one it last followed between batches: an atomic load, no database round trip, until
//! the catalog actually changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::extension_tier::CATALOG_PREFIX;

/// The catalog's digest, as a sub-select (its rows are small: a manifest each, naming its
/// component's hash, so a replaced component changes it too). NULL for an empty catalog.
pub fn digest_query() -> String {
    let end = prefix_end();
    format!(
        "(SELECT md5(string_agg(key || value, ''::bytea ORDER BY key)) FROM extensions
          WHERE key >= '{CATALOG_PREFIX}'::bytea AND key < '{end}'::bytea)"
    )
}

/// The smallest key past every catalog key (the prefix's last character, plus one).
fn prefix_end() -> String {
    let mut end = CATALOG_PREFIX.to_string();
    let last = end.pop().expect("a prefix");
    end.push(char::from(last as u8 + 1));
    end
}

/// The changes seen so far, shared by the heartbeat (which writes it) and the store (which
/// reads it).
#[derive(Clone, Default)]
pub struct CatalogWatch {
    generation: Arc<AtomicU64>,
}

impl CatalogWatch {
    /// How many different digests the heartbeat has seen (the first one counts: 1 once it read
    /// the catalog, 0 before).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// The heartbeat's side: the last digest it saw.
pub struct Observer {
    watch: CatalogWatch,
    last: Option<Option<String>>,
}

impl Observer {
    pub fn new(watch: CatalogWatch) -> Observer {
        Observer { watch, last: None }
    }

    /// The digest a beat read: a change from the last one counts.
    pub fn saw(&mut self, digest: Option<String>) {
        if self.last.as_ref() != Some(&digest) {
            self.last = Some(digest);
            self.watch.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_different_digest_counts_once() {
        let watch = CatalogWatch::default();
        let mut observer = Observer::new(watch.clone());
        assert_eq!(watch.generation(), 0);
        observer.saw(None);
        observer.saw(None);
        assert_eq!(watch.generation(), 1, "an empty catalog, seen twice");
        observer.saw(Some("a".into()));
        observer.saw(Some("a".into()));
        observer.saw(None);
        assert_eq!(watch.generation(), 3);
        assert!(digest_query().contains("key < 'catalog0'"));
    }
}
