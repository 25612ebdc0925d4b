//! Guests (XEP-0175: users without an account, at the host's guest domain): they enter only
//! where the service lets them (`guest-rooms`: public rooms, or none), never create a room
//! (nobody could own it once the guest is gone), and members-only rooms refuse them already
//! (a guest is nobody's member).

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::event::{GuestRooms, Joiner, Muc, Refusal, RoomFeature};
use crate::room::public::is_public;
use crate::room::Room;

pub struct Guests;

impl RoomFeature for Guests {
    fn check_join(&self, room: &Room, joiner: &Joiner) -> Option<Refusal> {
        let text = match joiner.guest? {
            GuestRooms::Nowhere => "Guests may not enter rooms here: log in with an account",
            GuestRooms::Public if !is_public(room) => {
                "Guests may enter only public rooms here: log in with an account to enter this one"
            }
            GuestRooms::Public => return None,
        };
        Some(not_allowed(text))
    }
}

/// Why `bare_jid` may not create a room, if it is a guest's.
pub fn refuse_creation(muc: &Muc, bare_jid: &str) -> Option<Refusal> {
    muc.is_guest(bare_jid)
        .then(|| not_allowed("Guests may not create rooms: log in with an account"))
}

fn not_allowed(text: &'static str) -> Refusal {
    Refusal {
        type_: ErrorType::Cancel,
        condition: DefinedCondition::NotAllowed,
        text: Some(text),
    }
}

#[cfg(test)]
mod tests {
    use minidom::Element;
    use xmpp_parsers::ns;

    use super::*;
    use crate::event::Settings;
    use crate::memory_host::MemoryHost;
    use crate::room::public;
    use crate::rules::members_only;

    const GUEST: &str = "3f2a9c@guest.example.org/web";
    const ROOM: &str = "lounge@muc.example.org";

    fn service(guest_rooms: GuestRooms) -> Muc {
        Muc::new(Settings {
            service: "muc.example.org".into(),
            guest_domain: Some("guest.example.org".into()),
            guest_rooms,
            ..Settings::default()
        })
    }

    fn join(host: &mut MemoryHost, muc: &Muc, from: &str, room: &str, nick: &str) -> Vec<Element> {
        host.exchange(
            muc,
            &format!(
                "<presence xmlns='jabber:client' from='{from}' to='{room}/{nick}' id='j'>\
                 <x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ),
        )
    }

    /// The condition and text of the refusal `sent` starts with, if it does.
    fn refusal(sent: &[Element]) -> Option<(String, String)> {
        let error = sent.first()?.get_child("error", ns::JABBER_CLIENT)?;
        let condition = error.children().next()?.name().to_string();
        let text = error.get_child("text", ns::XMPP_STANZAS).map(|t| t.text());
        Some((condition, text.unwrap_or_default()))
    }

    /// An unlocked room made by an account, with `fields` set.
    fn room_made(host: &mut MemoryHost, muc: &Muc, fields: &[(&str, bool)]) {
        join(host, muc, "owner@example.org/desk", ROOM, "owner");
        let mut room = Room::load(host, ROOM).unwrap().unwrap();
        room.locked = false;
        for (var, on) in fields {
            room.config.insert((*var).into(), (*on).into());
        }
        room.save(host).unwrap();
    }

    #[test]
    fn guests_enter_public_rooms_only_and_members_only_ones_never() {
        let muc = service(GuestRooms::Public);
        for (fields, refused) in [
            (vec![], None),
            (vec![(public::FIELD.var, false)], Some("not-allowed")),
            (
                vec![(members_only::FIELD.var, true)],
                Some("registration-required"),
            ),
        ] {
            let mut host = MemoryHost::default();
            room_made(&mut host, &muc, &fields);
            let sent = join(&mut host, &muc, GUEST, ROOM, "visitor");
            let got = refusal(&sent);
            assert_eq!(got.as_ref().map(|(c, _)| c.as_str()), refused, "{fields:?}");
            if refused == Some("not-allowed") {
                assert!(got.unwrap().1.contains("only public rooms"));
            }
            // An account is not held to the guests' rule.
            let sent = join(&mut host, &muc, "friend@example.org/x", ROOM, "friend");
            let expected = refused.filter(|&c| c == "registration-required");
            assert_eq!(refusal(&sent).map(|(c, _)| c), expected.map(String::from));
        }
    }

    #[test]
    fn with_guest_rooms_none_guests_enter_nowhere() {
        let muc = service(GuestRooms::Nowhere);
        let mut host = MemoryHost::default();
        room_made(&mut host, &muc, &[]);
        let (condition, text) = refusal(&join(&mut host, &muc, GUEST, ROOM, "v")).unwrap();
        assert_eq!(condition, "not-allowed");
        assert!(text.contains("may not enter rooms"), "{text}");
    }

    #[test]
    fn a_guest_creates_no_room() {
        let muc = service(GuestRooms::Public);
        let mut host = MemoryHost::default();
        let (condition, text) = refusal(&join(&mut host, &muc, GUEST, ROOM, "v")).unwrap();
        assert_eq!(condition, "not-allowed");
        assert!(text.contains("may not create rooms"), "{text}");
        assert!(Room::load(&mut host, ROOM).unwrap().is_none());
        // Without a guest domain, the same JID is just someone's.
        let muc = Muc::new(Settings::default());
        assert!(refuse_creation(&muc, "3f2a9c@guest.example.org").is_none());
        assert!(refusal(&join(&mut host, &muc, GUEST, ROOM, "v")).is_none());
    }
}
