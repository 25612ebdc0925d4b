//! Destroying a room (XEP-0045 §10.9): every occupant gets an unavailable presence carrying
//! `<destroy>` (with the reason and alternate venue, if any), and the room leaves storage.

use minidom::Element;
use xmpp_parsers::ns;

use crate::affiliation;
use crate::announce::Presence;
use crate::host::{Fault, Host};
use crate::occupant::Occupant;
use crate::presence::destroy_silently;
use crate::room::Room;

/// `destroy` is the `<destroy>` element to show occupants (in the `muc#user` namespace).
pub fn destroy(host: &mut dyn Host, room: &Room, destroy: Element) -> Result<(), Fault> {
    for occupant in Occupant::all(host, &room.jid)? {
        let affiliation = affiliation::get(host, &room.jid, &occupant.bare_jid)?;
        let mut gone = Presence::departure(&occupant, affiliation, Vec::new());
        gone.destroy = Some(destroy.clone());
        let sessions: Vec<String> = occupant.full_jids().map(str::to_string).collect();
        gone.to_own_sessions(host, room, &sessions, None)?;
        occupant.remove(host, &room.jid);
    }
    destroy_silently(host, room)
}

/// The `<destroy>` occupants see, from the owner's request (in `muc#owner`): the same reason and
/// alternate venue, in the `muc#user` namespace.
pub fn for_occupants(request: Option<&Element>) -> Element {
    let mut shown = Element::builder("destroy", ns::MUC_USER);
    if let Some(request) = request {
        if let Some(venue) = request.attr("jid") {
            shown = shown.attr(minidom::rxml::xml_ncname!("jid").into(), venue);
        }
        for child in request
            .children()
            .filter(|c| c.name() == "reason" || c.name() == "password")
        {
            shown = shown.append(
                Element::builder(child.name(), ns::MUC_USER)
                    .append(child.text())
                    .build(),
            );
        }
    }
    shown.build()
}
