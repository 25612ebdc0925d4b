//! Occupant presence as the room shows it, and sending it to each audience: the occupant's own
//! sessions (with 110 and their real JID), occupants who may see real JIDs, and the rest. One
//! broadcast per audience, so the boundary crossings do not grow with the room.

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::muc::user::{Affiliation, Item, Role, Status};
use xmpp_parsers::ns;

use crate::features::{self, occupant_id, presence_broadcast, whois};
use crate::host::{Fault, Host};
use crate::muc_user;
use crate::occupant::{sessions, Occupant};
use crate::room::Room;

/// One change of an occupant's presence.
#[derive(Clone)]
pub struct Presence<'a> {
    pub occupant: &'a Occupant,
    pub affiliation: Affiliation,
    /// The role on the item: the occupant's, or `none` when they leave the room.
    pub role: Role,
    pub unavailable: bool,
    /// Status codes everyone gets (303, 307, ...).
    pub statuses: Vec<Status>,
    /// Status codes only the occupant's own sessions get (201, 100, 170...), beside 110.
    pub self_statuses: Vec<Status>,
    /// The presence children to show (show, status...): the client's own.
    pub payload: Vec<Element>,
    /// The `nick` on the item (a nickname change, 303).
    pub new_nick: Option<String>,
    /// A child of `<x>` before the statuses (`<destroy>`), and a reason inside the item.
    pub destroy: Option<Element>,
    pub reason: Option<String>,
    /// Who made the change (kick, ban, affiliation or role change): nickname and real JID; the
    /// JID is shown only to those who may see real JIDs.
    pub actor: Option<(String, String)>,
}

impl<'a> Presence<'a> {
    pub fn of(
        occupant: &'a Occupant,
        affiliation: Affiliation,
        payload: Vec<Element>,
    ) -> Presence<'a> {
        Presence {
            occupant,
            affiliation,
            role: occupant.role(),
            unavailable: false,
            statuses: Vec::new(),
            self_statuses: Vec::new(),
            payload,
            new_nick: None,
            destroy: None,
            reason: None,
            actor: None,
        }
    }

    /// The occupant leaves the room: unavailable, role `none`.
    pub fn departure(
        occupant: &'a Occupant,
        affiliation: Affiliation,
        payload: Vec<Element>,
    ) -> Presence<'a> {
        Presence {
            role: Role::None,
            unavailable: true,
            ..Presence::of(occupant, affiliation, payload)
        }
    }

    /// The presence for one audience, without `to`.
    pub fn render(&self, room: &Room, show_jid: bool, own: bool, occupant_id: &str) -> Element {
        let mut item = Item::new(self.affiliation.clone(), self.role.clone());
        item.nick = self.new_nick.clone();
        if let Some(reason) = &self.reason {
            item = item.with_reason(reason.as_str());
        }
        if let Some((nick, jid)) = &self.actor {
            // The actor's real JID goes to others who may see real JIDs, never in the
            // occupant's own presence (XEP-0045 §8.2, example 77).
            let sees_actor = show_jid && !own;
            item.actor = actor(nick, sees_actor.then_some(jid.as_str()));
        }
        // Those who see real JIDs see every client of the occupant, newest first.
        let items: Vec<Item> = if show_jid {
            self.occupant
                .sessions
                .iter()
                .rev()
                .map(|session| Item {
                    jid: session.full_jid.parse().ok(),
                    ..item.clone()
                })
                .collect()
        } else {
            vec![item]
        };
        let mut statuses = self.statuses.clone();
        if own {
            statuses.extend(self.self_statuses.iter().cloned());
            statuses.push(Status::SelfPresence);
        }
        let mut x = muc_user::x(items, &statuses);
        if let Some(destroy) = &self.destroy {
            let children: Vec<Element> = x.children().cloned().collect();
            x = Element::builder("x", ns::MUC_USER)
                .append(destroy.clone())
                .append_all(children)
                .build();
        }
        let mut presence = Element::builder("presence", ns::JABBER_CLIENT)
            .attr(
                xml_ncname!("from").into(),
                format!("{}/{}", room.jid, self.occupant.nick),
            )
            .append_all(self.payload.iter().cloned())
            .append(x)
            .build();
        if self.unavailable {
            presence.set_attr(Namespace::NONE, xml_ncname!("type").into(), "unavailable");
        }
        occupant_id::stamp(&mut presence, occupant_id);
        presence
    }

    /// [`Presence::render`], then every feature's stamp (hats).
    pub fn shown(
        &self,
        host: &mut dyn Host,
        room: &Room,
        show_jid: bool,
        own: bool,
        occupant_id: &str,
    ) -> Result<Element, Fault> {
        let mut presence = self.render(room, show_jid, own, occupant_id);
        features::stamp_presence(host, room, self.occupant, &mut presence)?;
        Ok(presence)
    }

    /// Sends the presence to the occupant's own sessions and to `others`.
    pub fn broadcast(
        &self,
        host: &mut dyn Host,
        room: &Room,
        others: &[Occupant],
    ) -> Result<(), Fault> {
        let own: Vec<String> = self.occupant.full_jids().map(str::to_string).collect();
        self.to_own_sessions(host, room, &own, None)?;
        self.to_others(host, room, others)
    }

    /// The self-presence (110, real JID) to some of the occupant's sessions; a join's `id` is
    /// reflected so the client can match them up.
    pub fn to_own_sessions(
        &self,
        host: &mut dyn Host,
        room: &Room,
        sessions: &[String],
        id: Option<&str>,
    ) -> Result<(), Fault> {
        let occupant_id = occupant_id::of(host, &room.jid, self.occupant)?;
        let mut presence = self.shown(host, room, true, true, &occupant_id)?;
        if let Some(id) = id {
            presence.set_attr(Namespace::NONE, xml_ncname!("id").into(), id);
        }
        match sessions {
            [] => Ok(()),
            [one] => {
                presence.set_attr(Namespace::NONE, xml_ncname!("to").into(), one.as_str());
                host.send(presence)
            }
            many => host.broadcast(presence, many),
        }
    }

    /// The presence to every occupant in `others` but this one, each seeing the real JID or not
    /// as the room's `whois` says.
    pub fn to_others(
        &self,
        host: &mut dyn Host,
        room: &Room,
        others: &[Occupant],
    ) -> Result<(), Fault> {
        let id = occupant_id::of(host, &room.jid, self.occupant)?;
        let role = self.occupant.role();
        let (seeing, blind): (Vec<&Occupant>, Vec<&Occupant>) = others
            .iter()
            .filter(|other| other.nick != self.occupant.nick)
            .filter(|other| presence_broadcast::visible_to(room, &role, &other.role()))
            .partition(|other| whois::sees_real_jids(room, &other.role()));
        self.send_to(host, room, &sessions(&seeing), true, false, &id)?;
        self.send_to(host, room, &sessions(&blind), false, false, &id)
    }

    fn send_to(
        &self,
        host: &mut dyn Host,
        room: &Room,
        recipients: &[String],
        show_jid: bool,
        own: bool,
        occupant_id: &str,
    ) -> Result<(), Fault> {
        if recipients.is_empty() {
            return Ok(());
        }
        let presence = self.shown(host, room, show_jid, own, occupant_id)?;
        host.broadcast(presence, recipients)
    }
}

/// xmpp-parsers' `Actor` has no constructor: it is made from its element.
fn actor(nick: &str, jid: Option<&str>) -> Option<xmpp_parsers::muc::user::Actor> {
    let mut element =
        Element::builder("actor", ns::MUC_USER).attr(xml_ncname!("nick").into(), nick);
    if let Some(jid) = jid {
        element = element.attr(xml_ncname!("jid").into(), jid);
    }
    element.build().try_into().ok()
}

/// A client presence's children worth showing others: everything but the MUC join element and
/// ids the room sets itself.
pub fn payload(presence: &Element) -> Vec<Element> {
    presence
        .children()
        .filter(|child| !child.is("x", ns::MUC) && !child.is("occupant-id", occupant_id::NS))
        .cloned()
        .collect()
}
