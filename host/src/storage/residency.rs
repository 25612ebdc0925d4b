//! Which rooms' durable keys are in memory: rooms are read from disk on first use and dropped
//! when idle (as ejabberd hibernates rooms), so 100,000 stored rooms cost what the active ones
//! do. A room's keys are all under `room/ROOM/` (`wit/STORAGE.md`); every other key stays in
//! memory from start-up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

/// How long an unused room stays in memory, unless the operator says otherwise.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);

/// The room part `room/ROOM/` of a key, for keys that belong to a room.
pub fn room_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("room/")?;
    let end = rest.find('/')?;
    Some(&key[..="room/".len() + end])
}

/// What a scan prefix covers.
#[derive(Debug, PartialEq, Eq)]
pub enum Span<'a> {
    /// Keys of one room only.
    Room(&'a str),
    /// Keys of any number of rooms (`room/`, or a prefix of it).
    Rooms,
    /// No room's keys.
    NoRoom,
}

pub fn span(prefix: &str) -> Span<'_> {
    match room_of(prefix) {
        Some(room) => Span::Room(room),
        None if "room/".starts_with(prefix) || prefix.starts_with("room/") => Span::Rooms,
        None => Span::NoRoom,
    }
}

#[derive(Default)]
pub struct Residency {
    /// Off for a store without a disk, where everything is in memory.
    lazy: bool,
    /// Rooms in memory, with when they were last used.
    used: HashMap<String, Instant>,
    idle: Duration,
    last_sweep: Option<Instant>,
    /// A read that failed: memory no longer tells the truth about that room.
    failed: Option<String>,
}

impl Residency {
    pub fn lazy() -> Residency {
        Residency {
            lazy: true,
            idle: DEFAULT_IDLE,
            ..Residency::default()
        }
    }

    pub fn is_lazy(&self) -> bool {
        self.lazy
    }

    /// True (and the room marked used) when the room need not be read from disk.
    pub fn touch(&mut self, room: &str) -> bool {
        if !self.lazy {
            return true;
        }
        match self.used.get_mut(room) {
            Some(used) => {
                *used = Instant::now();
                true
            }
            None => false,
        }
    }

    pub fn holds(&self, room: &str) -> bool {
        !self.lazy || self.used.contains_key(room)
    }

    pub fn insert(&mut self, room: &str) {
        self.used.insert(room.to_string(), Instant::now());
    }

    /// The room is to be read again on its next use.
    pub fn forget(&mut self, room: &str) {
        self.used.remove(room);
    }

    /// Reads may be trusted again: the rooms a failed read touched were forgotten.
    pub fn recover(&mut self) {
        self.failed = None;
    }

    /// The rooms in memory.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.used.keys().map(String::as_str)
    }

    pub fn count(&self) -> usize {
        self.used.len()
    }

    pub fn fail(&mut self, error: anyhow::Error) {
        tracing::error!(
            error = format!("{error:#}"),
            "reading the durable store failed"
        );
        self.failed.get_or_insert_with(|| format!("{error:#}"));
    }

    /// An error once a read has failed: from then on, nothing may be synced.
    pub fn check(&self) -> Result<()> {
        match &self.failed {
            Some(error) => Err(anyhow!("reading the durable store failed: {error}")),
            None => Ok(()),
        }
    }

    pub fn set_idle(&mut self, after: Duration) {
        self.idle = after;
    }

    /// Forgets, and returns, the rooms unused for the idle time that are not `busy`. Looks at
    /// most a few times per idle period, so that a busy service does not walk its rooms at every
    /// commit.
    pub fn idle(&mut self, busy: impl Fn(&str) -> bool) -> Vec<String> {
        let idle = self.idle;
        let now = Instant::now();
        let sweep_every = (idle / 4).min(Duration::from_secs(1));
        if !self.lazy || self.last_sweep.is_some_and(|last| now - last < sweep_every) {
            return Vec::new();
        }
        self.last_sweep = Some(now);
        let idle_rooms: Vec<String> = self
            .used
            .iter()
            .filter(|(room, used)| now - **used >= idle && !busy(room))
            .map(|(room, _)| room.clone())
            .collect();
        for room in &idle_rooms {
            self.used.remove(room);
        }
        idle_rooms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_belongs_to_the_room_its_path_names() {
        assert_eq!(
            room_of("room/a@c.example/config"),
            Some("room/a@c.example/")
        );
        assert_eq!(
            room_of("room/a@c.example/history/01"),
            Some("room/a@c.example/")
        );
        assert_eq!(room_of("room/a@c.example/"), Some("room/a@c.example/"));
        assert_eq!(room_of("room/a@c.example"), None);
        assert_eq!(room_of("meta/layout"), None);
        assert_eq!(room_of("rooms/x/y"), None);
    }

    #[test]
    fn a_prefix_spans_one_room_many_or_none() {
        assert_eq!(span("room/a@c/occupant/"), Span::Room("room/a@c/"));
        for many in ["", "r", "room", "room/", "room/a@c"] {
            assert_eq!(span(many), Span::Rooms, "{many}");
        }
        assert_eq!(span("meta/"), Span::NoRoom);
        assert_eq!(span("rooms"), Span::NoRoom);
    }
}
