//! The service is stopping (XEP-0045 status 332): every occupant of every room is told, on
//! each of its sessions, that it is out of the room because the service is going away.

use std::collections::BTreeSet;

use xmpp_parsers::muc::user::Status;

use crate::affiliation;
use crate::announce::Presence;
use crate::host::{Fault, Host, Tier};
use crate::occupant::Occupant;
use crate::room::Room;

pub fn remove_everyone(host: &mut dyn Host) -> Result<(), Fault> {
    for room_jid in occupied_rooms(host) {
        let Some(room) = Room::load(host, &room_jid)? else {
            continue;
        };
        for occupant in Occupant::all(host, &room.jid)? {
            let affiliation = affiliation::get(host, &room.jid, &occupant.bare_jid)?;
            let mut gone = Presence::departure(&occupant, affiliation, Vec::new());
            gone.statuses.push(Status::ServiceShutdown);
            let sessions: Vec<String> = occupant.full_jids().map(str::to_string).collect();
            gone.to_own_sessions(host, &room, &sessions, None)?;
            occupant.remove(host, &room.jid);
        }
    }
    Ok(())
}

/// Rooms with occupants: `room/ROOM/occupant/NICK` keys in the volatile tier.
fn occupied_rooms(host: &mut dyn Host) -> BTreeSet<String> {
    host.scan(Tier::Volatile, "room/", None, u32::MAX)
        .into_iter()
        .filter_map(|(key, _)| {
            let mut parts = key.splitn(4, '/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("room"), Some(room), Some("occupant")) => Some(room.to_string()),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::host::Host;
    use crate::host::{Envelope, StanzaKind, Tier};
    use crate::memory_host::MemoryHost;
    use crate::service::{Muc, Settings};

    #[test]
    fn every_occupant_of_every_room_gets_332_on_each_session_and_leaves() {
        let muc = Muc::new(Settings {
            service: "conference.localhost".into(),
            ..Settings::default()
        });
        let mut host = MemoryHost::default();
        for (user, room) in [
            ("a@localhost/1", "one"),
            ("a@localhost/2", "one"),
            ("b@localhost/1", "two"),
        ] {
            let to = format!("{room}@conference.localhost/nick{}", &user[..1]);
            let envelope = Envelope {
                kind: StanzaKind::Presence,
                type_: None,
                from: user.into(),
                to: to.clone(),
                id: None,
            };
            let xml = format!("<presence xmlns='jabber:client' to='{to}'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
            muc.handle_stanza(&mut host, &envelope, &xml).unwrap();
        }
        host.sent.clear();
        muc.on_shutdown(&mut host).unwrap();
        let told: Vec<String> = host.sent.iter().map(String::from).collect();
        assert_eq!(told.len(), 3, "{told:?}");
        for presence in &told {
            assert!(presence.contains("type='unavailable'"), "{presence}");
            assert!(
                presence.contains("code='332'") && presence.contains("code='110'"),
                "{presence}"
            );
        }
        assert!(host
            .sent
            .iter()
            .any(|p| p.attr("to") == Some("a@localhost/2")));
        assert!(host
            .scan(Tier::Volatile, "room/", None, u32::MAX)
            .iter()
            .all(|(key, _)| !key.contains("/occupant/")));
    }
}
