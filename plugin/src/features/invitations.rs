//! Mediated invitations and declines (XEP-0045 §7.8.2, §7.8.3). An occupant invites through the
//! room, which relays the invitation with the room's password; in a members-only room only
//! those who may add members (admins and owners, or anyone when `allowinvites` is on) may invite,
//! and the invitee becomes a member. A decline is relayed back to the inviter.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::muc::user::{Affiliation, Role};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::affiliation;
use crate::config::{FieldSpec, Kind};
use crate::errors;
use crate::event::{Inbound, Muc};
use crate::event::{RoomFeature, RoomMessage};
use crate::host::{Fault, Host};
use crate::occupant::Occupant;
use crate::room::Room;
use crate::rules::{members_only, password};

pub const FIELD: FieldSpec = FieldSpec {
    var: "muc#roomconfig_allowinvites",
    label: "Allow occupants to invite others into a members-only room",
    kind: Kind::Boolean(false),
};

const CONFERENCE: &str = "jabber:x:conference";

/// Whether `inviter` may invite into `room`.
pub fn may_invite(room: &Room, inviter: &Affiliation, role: &Role) -> bool {
    let in_room = *role != Role::None;
    let manages_members = matches!(inviter, Affiliation::Owner | Affiliation::Admin);
    in_room && (!members_only::is_members_only(room) || manages_members || FIELD.flag(&room.config))
}

/// Handles an `<x xmlns='muc#user'>` with `<invite/>`s or a `<decline/>`.
pub fn handle(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    room: &Room,
    x: &Element,
) -> Result<(), Fault> {
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "message", type_, condition, None)
    };
    if let Some(decline) = x.get_child("decline", ns::MUC_USER) {
        return relay_decline(host, inbound, room, decline);
    }
    let Some(inviter) = Occupant::of_session(host, &room.jid, &inbound.from.to_string())? else {
        return refuse(host, ErrorType::Modify, DefinedCondition::NotAcceptable);
    };
    let inviter_affiliation = muc.affiliation(host, &room.jid, &inviter.bare_jid)?;
    if !may_invite(room, &inviter_affiliation, &inviter.role()) {
        return refuse(host, ErrorType::Auth, DefinedCondition::Forbidden);
    }
    let invites: Vec<&Element> = x
        .children()
        .filter(|c| c.is("invite", ns::MUC_USER))
        .collect();
    let mut invitees = Vec::new();
    for invite in &invites {
        match invite.attr("to").map(jid::Jid::new) {
            Some(Ok(to)) => invitees.push((
                to,
                invite.get_child("reason", ns::MUC_USER).map(Element::text),
            )),
            _ => return refuse(host, ErrorType::Modify, DefinedCondition::JidMalformed),
        }
    }
    for (invitee, reason) in invitees {
        let bare = invitee.to_bare().to_string();
        if members_only::is_members_only(room)
            && affiliation::get(host, &room.jid, &bare)? == Affiliation::None
        {
            affiliation::set(host, &room.jid, &bare, Affiliation::Member, None)?;
        }
        host.send(invitation(
            inbound,
            room,
            &inviter,
            &invitee.to_string(),
            reason.unwrap_or_default(),
        ))?;
    }
    Ok(())
}

/// The invitation as the invitee gets it: from the room, naming the inviter's occupant JID,
/// with the password and, for clients that only know XEP-0249, a direct invitation.
fn invitation(
    inbound: &Inbound,
    room: &Room,
    inviter: &Occupant,
    to: &str,
    reason: String,
) -> Element {
    let from = format!("{}/{}", room.jid, inviter.nick);
    let mut x = Element::builder("x", ns::MUC_USER).append(
        Element::builder("invite", ns::MUC_USER)
            .attr(xml_ncname!("from").into(), from.as_str())
            .append(
                Element::builder("reason", ns::MUC_USER)
                    .append(reason)
                    .build(),
            )
            .build(),
    );
    if let Some(secret) = password::secret(room) {
        x = x.append(
            Element::builder("password", ns::MUC_USER)
                .append(secret)
                .build(),
        );
    }
    let mut message = Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("from").into(), room.jid.as_str())
        .attr(xml_ncname!("to").into(), to);
    if let Some(id) = &inbound.envelope.id {
        message = message.attr(xml_ncname!("id").into(), id.as_str());
    }
    message
        .append(x.build())
        .append(
            Element::builder("body", ns::JABBER_CLIENT)
                .append(format!("{from} invited you to the room {}", room.jid))
                .build(),
        )
        .append(
            Element::builder("x", CONFERENCE)
                .attr(xml_ncname!("jid").into(), room.jid.as_str())
                .build(),
        )
        .build()
}

/// XEP-0045 §7.8.3: the room passes the decline on to the inviter, from the invitee's bare JID.
fn relay_decline(
    host: &mut dyn Host,
    inbound: &Inbound,
    room: &Room,
    decline: &Element,
) -> Result<(), Fault> {
    let Some(Ok(to)) = decline.attr("to").map(jid::Jid::new) else {
        return errors::reply(
            host,
            inbound.envelope,
            "message",
            ErrorType::Modify,
            DefinedCondition::JidMalformed,
            None,
        );
    };
    let reason = decline
        .get_child("reason", ns::MUC_USER)
        .map(Element::text)
        .unwrap_or_default();
    let message = Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("from").into(), room.jid.as_str())
        .attr(xml_ncname!("to").into(), to.to_string())
        .append(
            Element::builder("x", ns::MUC_USER)
                .append(
                    Element::builder("decline", ns::MUC_USER)
                        .attr(
                            xml_ncname!("from").into(),
                            inbound.from.to_bare().to_string(),
                        )
                        .append(
                            Element::builder("reason", ns::MUC_USER)
                                .append(reason)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    host.send(message)
}

pub struct Invitations;

impl RoomFeature for Invitations {
    fn fields(&self) -> &'static [FieldSpec] {
        &[FIELD]
    }

    fn claims_room_message(&self, message: &Element) -> bool {
        message.get_child("x", ns::MUC_USER).is_some_and(|x| {
            x.has_child("invite", ns::MUC_USER) || x.has_child("decline", ns::MUC_USER)
        })
    }

    fn room_message(&self, host: &mut dyn Host, message: &RoomMessage) -> Result<(), Fault> {
        let Some(x) = message.inbound.element.get_child("x", ns::MUC_USER) else {
            return Ok(());
        };
        handle(message.muc, host, message.inbound, message.room, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_invite() {
        let mut room = Room::new_locked("r@muc.example");
        assert!(may_invite(&room, &Affiliation::None, &Role::Participant));
        assert!(
            !may_invite(&room, &Affiliation::Owner, &Role::None),
            "only from inside the room"
        );
        room.config
            .insert(members_only::FIELD.var.into(), true.into());
        assert!(!may_invite(&room, &Affiliation::Member, &Role::Participant));
        assert!(may_invite(&room, &Affiliation::Admin, &Role::Moderator));
        room.config.insert(FIELD.var.into(), true.into());
        assert!(may_invite(&room, &Affiliation::Member, &Role::Participant));
    }
}
