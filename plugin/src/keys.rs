//! The storage layout (version 3), specified in `wit/STORAGE.md`. Every key the plugin uses is
//! made here, so the layout can be read in one place.

use sha2::{Digest, Sha256};

/// Durable key holding the layout version, as decimal text.
pub const LAYOUT: &str = "meta/layout";
pub const LAYOUT_VERSION: u32 = 3;
/// The layout that added the room indexes (`public-room/`, `created-room/`).
pub const ROOM_INDEXES_SINCE: u32 = 2;
/// The layout that keeps the join history in the archive, not in `room/ROOM/history/`.
pub const ARCHIVE_SINCE: u32 = 3;

/// The room record (configuration, lock, subject): durable for persistent rooms, volatile for
/// temporary ones.
pub fn room(room: &str) -> String {
    format!("room/{room}/config")
}

/// A user's affiliation with a room (durable).
pub fn affiliation(room: &str, bare_jid: &str) -> String {
    format!("room/{room}/affiliation/{bare_jid}")
}

/// An occupant, by nickname (volatile).
pub fn occupant(room: &str, nick: &str) -> String {
    format!("room/{room}/occupant/{nick}")
}

/// Prefix of every occupant of a room (volatile).
pub fn occupants(room: &str) -> String {
    format!("room/{room}/occupant/")
}

/// Which nickname a client session (full JID) holds in a room (volatile).
pub fn session(room: &str, full_jid: &str) -> String {
    format!("{}{full_jid}", sessions(room))
}

pub fn sessions(room: &str) -> String {
    format!("room/{room}/session/")
}

/// Prefix of everything stored about a room, in either tier.
pub fn everything(room: &str) -> String {
    format!("room/{room}/")
}

/// Durable key holding the secret that makes occupant ids unlinkable across services.
pub const OCCUPANT_ID_SECRET: &str = "meta/occupant-id-secret";

/// Prefix of a room's affiliations (durable).
pub fn affiliations(room: &str) -> String {
    format!("room/{room}/affiliation/")
}

/// The room's vCard (XEP-0054), its avatar (durable).
pub fn vcard(room: &str) -> String {
    format!("room/{room}/vcard")
}

/// The hats (XEP-0317) a user wears in a room (durable).
pub fn hats(room: &str, bare_jid: &str) -> String {
    format!("room/{room}/hats/{bare_jid}")
}

/// Who reserved a nickname in a room (durable): the bare JID, as plain UTF-8.
pub fn reserved_nick(room: &str, nick: &str) -> String {
    format!("room/{room}/nick/{nick}")
}

/// Prefix of the public room list: `public-room/ROOM`, the room's display name (plain UTF-8),
/// in the room record's tier, for each public room that is not locked.
pub const PUBLIC_ROOMS: &str = "public-room/";

pub fn public_room(room: &str) -> String {
    format!("{PUBLIC_ROOMS}{room}")
}

/// How many `public-room/` keys the tier holds (decimal text), kept in step with them.
pub const PUBLIC_ROOM_COUNT: &str = "meta/public-room-count";

/// Prefix of every user's created rooms: `created-room/USER/ROOM`, an empty value in the room
/// record's tier for each room the user created that still exists.
pub const CREATED_ROOMS: &str = "created-room/";

/// Prefix of the rooms a user created. The user's bare JID goes in hashed (SHA-256, hex), so
/// the key stays short.
pub fn rooms_created_by(bare_jid: &str) -> String {
    let hash: String = Sha256::digest(bare_jid.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{CREATED_ROOMS}{hash}/")
}

pub fn room_created_by(bare_jid: &str, room: &str) -> String {
    format!("{}{room}", rooms_created_by(bare_jid))
}

/// Prefix of the IQs an occupant asked that the room forwarded and that await their reply
/// (volatile): `room/ROOM/iq-forward/NICKHASH/`, NICKHASH the lowercase hex SHA-256 of the
/// asker's nickname (a nickname may hold `/`, which would make one nick's prefix another's).
pub fn iq_forwards(room: &str, nick: &str) -> String {
    let hash: String = Sha256::digest(nick.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("{}{hash}/", room_iq_forwards(room))
}

/// Prefix of every forwarded IQ awaiting its reply in the room, whoever asked.
pub fn room_iq_forwards(room: &str) -> String {
    format!("room/{room}/iq-forward/")
}

/// One forwarded IQ, by the id the room gave it.
pub fn iq_forward(room: &str, nick: &str, id: &str) -> String {
    format!("{}{id}", iq_forwards(room, nick))
}
