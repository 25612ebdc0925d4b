//! Service-wide indexes of rooms, kept beside the room records (`wit/STORAGE.md`, layout 2) so
//! that a question about all rooms costs what its answer holds, not what the store holds: the
//! public room list (with a count per tier) and the rooms each user created.
//!
//! Each entry lives in its room record's tier, so a temporary room's entries vanish with it on a
//! restart. The room record's `save` and `delete` keep them in step; [`rebuild`] makes them
//! again from the room records. This module knows the indexes, not the record: the record
//! says what to index ([`IndexEntry`]).

use crate::host::{Fault, Host, Level, Tier};
use crate::keys;

const TIERS: [Tier; 2] = [Tier::Volatile, Tier::Durable];

/// What the indexes hold of one room.
pub struct IndexEntry {
    pub jid: String,
    /// The name it is listed under, when it is public (and unlocked).
    pub listed_as: Option<String>,
    /// The user it counts against.
    pub creator: Option<String>,
}

/// After a room's record was saved in `tier`: its list entry and its creator's entry.
pub fn room_saved(host: &mut dyn Host, room: &IndexEntry, tier: Tier) -> Result<(), Fault> {
    let entry = room
        .listed_as
        .as_ref()
        .map(|name| (tier, name.clone().into_bytes()));
    place_public(host, &room.jid, entry)?;
    if let Some(creator) = &room.creator {
        let key = keys::room_created_by(creator, &room.jid);
        place(host, &key, Some((tier, Vec::new())))?;
    }
    Ok(())
}

/// After a room was deleted: it is neither listed nor counted against its creator any more.
pub fn room_deleted(host: &mut dyn Host, room: &str, creator: Option<&str>) -> Result<(), Fault> {
    place_public(host, room, None)?;
    if let Some(creator) = creator {
        place(host, &keys::room_created_by(creator, room), None)?;
    }
    Ok(())
}

/// Up to `max` public rooms after the room JID `after`, in JID order: `(room JID, name)`. Reads
/// at most `max` entries of each tier.
pub fn public_rooms(host: &mut dyn Host, after: Option<&str>, max: usize) -> Vec<(String, String)> {
    if max == 0 {
        return Vec::new();
    }
    let start = after.map(keys::public_room);
    let limit = u32::try_from(max).unwrap_or(u32::MAX);
    let mut entries: Vec<(String, Vec<u8>)> = TIERS
        .iter()
        .flat_map(|&tier| host.scan(tier, keys::PUBLIC_ROOMS, start.as_deref(), limit))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.truncate(max);
    entries
        .into_iter()
        .map(|(key, name)| {
            let jid = key[keys::PUBLIC_ROOMS.len()..].to_string();
            (jid, String::from_utf8_lossy(&name).into_owned())
        })
        .collect()
}

/// How many rooms the public list holds.
pub fn public_room_count(host: &mut dyn Host) -> u64 {
    TIERS.iter().map(|&tier| count(host, tier)).sum()
}

/// How many of the rooms `bare_jid` created still exist, counting no further than `up_to`.
pub fn rooms_created(host: &mut dyn Host, bare_jid: &str, up_to: u32) -> usize {
    let prefix = keys::rooms_created_by(bare_jid);
    TIERS
        .iter()
        .map(|&tier| host.scan(tier, &prefix, None, up_to).len())
        .sum()
}

/// Makes both indexes again from the room records of both tiers (the migration from layout 1,
/// and a repair after an older plugin served the data without keeping them). Reads every room
/// once, in one scan per tier (as the room list did on every request before layout 2);
/// `read` says what to index of a stored record.
pub fn rebuild(
    host: &mut dyn Host,
    read: impl Fn(&[u8]) -> Result<IndexEntry, String>,
) -> Result<(), Fault> {
    for tier in TIERS {
        host.delete_prefix(tier, keys::PUBLIC_ROOMS);
        host.delete_prefix(tier, keys::CREATED_ROOMS);
        let mut listed: u64 = 0;
        for (key, bytes) in host.scan(tier, "room/", None, u32::MAX) {
            // Only `room/ROOM/config`: a nick or a resource may end in `/config` too.
            let Some(room_jid) = key
                .strip_prefix("room/")
                .and_then(|rest| rest.strip_suffix("/config"))
                .filter(|jid| !jid.contains('/'))
            else {
                continue;
            };
            let room = match read(&bytes) {
                Ok(room) if room.jid == room_jid => room,
                Ok(room) => {
                    let why = format!(
                        "room record {key} names {}, left out of the indexes",
                        room.jid
                    );
                    host.log(Level::Warn, &why);
                    continue;
                }
                Err(error) => {
                    let why =
                        format!("room record {key} unreadable, left out of the indexes: {error}");
                    host.log(Level::Warn, &why);
                    continue;
                }
            };
            if let Some(name) = room.listed_as {
                host.put(tier, &keys::public_room(&room.jid), name.into_bytes())?;
                listed += 1;
            }
            if let Some(creator) = &room.creator {
                host.put(tier, &keys::room_created_by(creator, &room.jid), Vec::new())?;
            }
        }
        let count = listed.to_string().into_bytes();
        host.put(tier, keys::PUBLIC_ROOM_COUNT, count)?;
    }
    Ok(())
}

/// Puts `room`'s list entry where `entry` says (a tier and the name), or nowhere, keeping each
/// tier's count in step.
fn place_public(
    host: &mut dyn Host,
    room: &str,
    entry: Option<(Tier, Vec<u8>)>,
) -> Result<(), Fault> {
    for (tier, change) in place(host, &keys::public_room(room), entry)? {
        let counted = count(host, tier).saturating_add_signed(change);
        host.put(
            tier,
            keys::PUBLIC_ROOM_COUNT,
            counted.to_string().into_bytes(),
        )?;
    }
    Ok(())
}

/// Keeps `key` in the one tier `entry` names, with its value, and in no other; returns the
/// tiers where the key appeared (+1) or went (-1). Reads before writing, so an unchanged index
/// costs no write.
fn place(
    host: &mut dyn Host,
    key: &str,
    entry: Option<(Tier, Vec<u8>)>,
) -> Result<Vec<(Tier, i64)>, Fault> {
    let mut changes = Vec::new();
    for tier in TIERS {
        let held = host.get(tier, key);
        match (&entry, held) {
            (Some((wanted, value)), held) if *wanted == tier => {
                if held.as_ref() != Some(value) {
                    host.put(tier, key, value.clone())?;
                }
                if held.is_none() {
                    changes.push((tier, 1));
                }
            }
            (_, Some(_)) => {
                host.delete(tier, key);
                changes.push((tier, -1));
            }
            (_, None) => {}
        }
    }
    Ok(changes)
}

fn count(host: &mut dyn Host, tier: Tier) -> u64 {
    host.get(tier, keys::PUBLIC_ROOM_COUNT)
        .and_then(|bytes| String::from_utf8(bytes).ok()?.parse().ok())
        .unwrap_or(0)
}
