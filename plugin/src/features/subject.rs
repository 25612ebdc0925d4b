//! The subject (XEP-0045 §8.1): sent to every joiner after the history (empty when unset), and
//! changed by moderators, or by participants too when `changesubject` is on.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::muc::user::Role;
use xmpp_parsers::ns;

use crate::config::{FieldSpec, Kind};
use crate::event::{Groupchat, Joined, Refusal, RoomFeature};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::host::{Fault, Host};
use crate::occupant::Occupant;
use crate::room::{Room, Subject};

pub use crate::rules::subject::is_change;

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_changesubject",
    label: "Allow occupants to change the subject",
    kind: Kind::Boolean(false),
};

pub fn may_change(room: &Room, role: &Role) -> bool {
    match role {
        Role::Moderator => true,
        Role::Participant => FIELD.flag(&room.config),
        _ => false,
    }
}

pub struct ChangeSubject;

impl RoomFeature for ChangeSubject {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn check_groupchat(
        &self,
        room: &Room,
        sender: &Occupant,
        message: &Element,
    ) -> Option<Refusal> {
        (is_change(message) && !may_change(room, &sender.role())).then_some(Refusal {
            type_: ErrorType::Auth,
            condition: DefinedCondition::Forbidden,
            text: None,
        })
    }

    /// A subject change is kept on the room's record before anyone hears of it.
    fn store_groupchat(&self, host: &mut dyn Host, message: &Groupchat) -> Result<(), Fault> {
        // Room extensions say bodies only: a subject change always has an occupant behind it.
        let (true, Some(sender)) = (message.changes_subject, message.sender) else {
            return Ok(());
        };
        let text = message
            .message
            .get_child("subject", ns::JABBER_CLIENT)
            .map(Element::text)
            .unwrap_or_default();
        let mut room = message.room.clone();
        room.subject = (!text.is_empty()).then(|| Subject {
            text,
            by: sender.occupant.nick.clone(),
        });
        room.save(host)
    }

    /// The subject comes last in the join state (XEP-0045 §7.2.15).
    fn joined(&self, host: &mut dyn Host, joined: &Joined) -> Result<(), Fault> {
        host.send(self::message(joined.room, joined.to))
    }
}

/// The subject message every joiner gets after the history: empty when none is set, from the
/// nickname that set it otherwise.
pub fn message(room: &Room, to: &str) -> Element {
    let mut subject = Element::builder("subject", ns::JABBER_CLIENT);
    let from = match &room.subject {
        Some(current) => {
            subject = subject.append(current.text.as_str());
            format!("{}/{}", room.jid, current.by)
        }
        None => room.jid.clone(),
    };
    Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "groupchat")
        .attr(xml_ncname!("from").into(), from)
        .attr(xml_ncname!("to").into(), to)
        .append(subject.build())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_subject_changes_the_subject() {
        let message = |children: &str| -> Element {
            format!("<message xmlns='jabber:client' type='groupchat'>{children}</message>")
                .parse()
                .unwrap()
        };
        assert!(is_change(&message("<subject>Hi</subject>")));
        assert!(
            is_change(&message("<subject/>")),
            "an empty subject clears it"
        );
        assert!(!is_change(&message(
            "<subject>Hi</subject><body>there</body>"
        )));
        assert!(!is_change(&message(
            "<subject>Hi</subject><thread>t1</thread>"
        )));
        assert!(!is_change(&message("<body>there</body>")));
    }

    #[test]
    fn moderators_always_participants_when_allowed_visitors_never() {
        let mut room = Room::new_locked("r@muc.example");
        assert!(may_change(&room, &Role::Moderator));
        assert!(!may_change(&room, &Role::Participant));
        room.config.insert(FIELD.var.into(), true.into());
        assert!(may_change(&room, &Role::Participant));
        assert!(!may_change(&room, &Role::Visitor));
    }
}
