//! Room extensions: the host's sandboxed, per-room components (`muc:plugin/extensions`). This
//! module is where the MUC logic calls them: it describes the room, asks for a verdict on a
//! message or a join, tells them of arrivals, departures and ticks, and broadcasts what they say
//! (from `room/nick`, kept in the archive like any groupchat message). The host decides which
//! extensions run and contains their faults; the logic only obeys verdicts.

use std::collections::BTreeMap;

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use xmpp_parsers::muc::user::Affiliation;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::affiliation;
use crate::errors;
use crate::event::Groupchat;
use crate::features::{self, naming, whois};
use crate::host::{
    Envelope, Fault, HookEvent, Host, OccupantView, RoomView, Said, TickRequest, Verdict,
};
use crate::occupant::{Occupant, Shown};
use crate::room::Room;

const TICK_PREFIX: &str = "extension-tick/";
/// XEP-0071: a second rendering of the body, which filters would not see.
const XHTML_IM: &str = "http://jabber.org/protocol/xhtml-im";

/// The room a tick timer is for.
pub fn tick_room(key: &str) -> Option<&str> {
    key.strip_prefix(TICK_PREFIX)
}

/// The room as extensions see it, with every occupant's affiliation read in one scan.
pub fn view(host: &mut dyn Host, room: &Room, occupants: Vec<Shown>) -> Result<RoomView, Fault> {
    Ok(view_and_affiliations(host, room, occupants)?.0)
}

/// The view, and the scan of the room's affiliations it was made from (by bare JID).
fn view_and_affiliations(
    host: &mut dyn Host,
    room: &Room,
    occupants: Vec<Shown>,
) -> Result<(RoomView, BTreeMap<String, Affiliation>), Fault> {
    let affiliations = affiliation::all(host, &room.jid)?;
    let owners = affiliations
        .iter()
        .filter(|(_, affiliation)| **affiliation == Affiliation::Owner)
        .map(|(jid, _)| jid.clone())
        .collect();
    let occupants = occupants
        .into_iter()
        .map(|o| OccupantView {
            role: o.role(),
            affiliation: affiliations
                .get(&o.bare_jid)
                .cloned()
                .unwrap_or(Affiliation::None),
            nick: o.nick,
            bare_jid: o.bare_jid,
        })
        .collect();
    let view = RoomView {
        jid: room.jid.clone(),
        name: naming::display_name(room),
        subject: room.subject.as_ref().map(|s| s.text.clone()),
        non_anonymous: whois::is_non_anonymous(&room.config),
        owners,
        occupants,
    };
    Ok((view, affiliations))
}

pub fn occupant_view(occupant: &Occupant, affiliation: Affiliation) -> OccupantView {
    OccupantView {
        nick: occupant.nick.clone(),
        role: occupant.role(),
        affiliation,
        bare_jid: occupant.bare_jid.clone(),
    }
}

/// Runs a groupchat message with a body through the room's extensions (when they are active):
/// `Err` holds a refusal's text; otherwise the body may have been rewritten in `message`, and
/// what the extensions say is returned, to broadcast after it.
pub fn filter_message(
    host: &mut dyn Host,
    room: &Room,
    occupants: Vec<Shown>,
    sender: &Occupant,
    message: &mut Element,
) -> Result<Result<Vec<Said>, String>, Fault> {
    let Some(body) = message
        .get_child("body", ns::JABBER_CLIENT)
        .map(Element::text)
    else {
        return Ok(Ok(Vec::new()));
    };
    // What the extensions judge is what everyone reads: one body, no other rendering of it.
    let mut first_body = true;
    crate::xml::retain_children(message, |child| {
        let is_body = child.is("body", ns::JABBER_CLIENT);
        let keep = (!is_body || first_body) && !child.is("html", XHTML_IM);
        first_body &= !is_body;
        keep
    });
    // The sender's affiliation is in the scan the view needs anyway.
    let (view, affiliations) = view_and_affiliations(host, room, occupants)?;
    let affiliation = affiliations
        .get(&sender.bare_jid)
        .cloned()
        .unwrap_or(Affiliation::None);
    let sender = occupant_view(sender, affiliation);
    let outcome = host.extension_hook(&view, HookEvent::Message { sender, body });
    schedule(host, &room.jid, outcome.next_tick);
    match outcome.verdict {
        Verdict::Refuse(why) => {
            // What they said still reaches the room (a warning with the refusal, typically).
            say(host, room, outcome.said)?;
            return Ok(Err(why));
        }
        Verdict::Rewrite(body) => {
            if let Some(old) = message.get_child_mut("body", ns::JABBER_CLIENT) {
                *old = Element::builder("body", ns::JABBER_CLIENT)
                    .append(body)
                    .build();
            }
        }
        Verdict::Pass => {}
    }
    Ok(Ok(outcome.said))
}

/// Asks the room's extensions whether `joiner` may enter (or take a new nickname); a refusal
/// is answered here (`not-allowed` with their reason) and gives `true`.
pub fn refuse_join(
    host: &mut dyn Host,
    request: &Envelope,
    room: &Room,
    occupants: &[Occupant],
    joiner: OccupantView,
) -> Result<bool, Fault> {
    if !host.extensions_active(&room.jid) {
        return Ok(false);
    }
    let view = view(host, room, occupants.iter().map(Shown::from).collect())?;
    let outcome = host.extension_hook(&view, HookEvent::Join(joiner));
    schedule(host, &room.jid, outcome.next_tick);
    say(host, room, outcome.said)?;
    let Verdict::Refuse(why) = outcome.verdict else {
        return Ok(false);
    };
    let (type_, condition) = (ErrorType::Cancel, DefinedCondition::NotAllowed);
    errors::reply(host, request, "presence", type_, condition, Some(&why))?;
    Ok(true)
}

/// Tells the room's extensions of an arrival or a departure, and broadcasts what they say. `occupants` is the room after the event.
pub fn notify(
    host: &mut dyn Host,
    room: &Room,
    occupants: &[Occupant],
    event: HookEvent,
) -> Result<(), Fault> {
    if !host.extensions_active(&room.jid) {
        return Ok(());
    }
    hook(
        host,
        room,
        occupants.iter().map(Shown::from).collect(),
        event,
    )
}

/// One event through the room's extensions, and what they say broadcast.
fn hook(
    host: &mut dyn Host,
    room: &Room,
    occupants: Vec<Shown>,
    event: HookEvent,
) -> Result<(), Fault> {
    let view = view(host, room, occupants)?;
    let outcome = host.extension_hook(&view, event);
    schedule(host, &room.jid, outcome.next_tick);
    say(host, room, outcome.said)
}

/// A tick timer came due: the room's extensions get their tick.
pub fn on_tick(host: &mut dyn Host, room_jid: &str) -> Result<(), Fault> {
    let Some(room) = Room::load(host, room_jid)? else {
        return Ok(());
    };
    if !host.extensions_active(room_jid) {
        return Ok(());
    }
    let occupants = Occupant::all_shown(host, room_jid)?;
    hook(host, &room, occupants, HookEvent::Tick)
}

/// The owners' form submission, for the extensions' fields: whether anything changed, or why a
/// value is refused.
pub fn configure(
    host: &mut dyn Host,
    room: &Room,
    submitted: &[(String, Vec<String>)],
) -> Result<Result<bool, String>, Fault> {
    let occupants = Occupant::all_shown(host, &room.jid)?;
    let view = view(host, room, occupants)?;
    Ok(match host.configure_extensions(&view, submitted) {
        Ok(configured) => {
            schedule(host, &room.jid, configured.next_tick);
            Ok(configured.changed)
        }
        Err(why) => Err(why),
    })
}

/// The room is gone: the host forgets its extensions' choices and storage, and its tick stops.
pub fn forget(host: &mut dyn Host, room_jid: &str) {
    host.forget_extensions(room_jid);
    host.cancel_timer(&format!("{TICK_PREFIX}{room_jid}"));
}

/// Sends what extensions said, each from `room/nick`, through the groupchat pipeline after its
/// check (stamp, store, broadcast), as an occupant's message goes but from no occupant.
pub fn say(host: &mut dyn Host, room: &Room, said: Vec<Said>) -> Result<(), Fault> {
    for Said { nick, body } in said {
        let mut message = Element::builder("message", ns::JABBER_CLIENT)
            .attr(xml_ncname!("type").into(), "groupchat")
            .append(
                Element::builder("body", ns::JABBER_CLIENT)
                    .append(body)
                    .build(),
            )
            .build();
        message.set_attr(
            Namespace::NONE,
            xml_ncname!("from").into(),
            format!("{}/{nick}", room.jid),
        );
        let stanza_id = host.unique_id();
        features::relay_groupchat(host, &mut Groupchat::unsent(room, stanza_id, message))?;
    }
    Ok(())
}

/// Keeps the room's tick timer where the host asked for it.
fn schedule(host: &mut dyn Host, room_jid: &str, next_tick: TickRequest) {
    let key = format!("{TICK_PREFIX}{room_jid}");
    match next_tick {
        TickRequest::Keep => {}
        TickRequest::At(at) => host.set_timer(&key, at),
        TickRequest::Stop => host.cancel_timer(&key),
    }
}
