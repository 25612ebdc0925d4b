//! `muc#admin` (XEP-0045 §8, §9, §10): changing affiliations and roles (kick, ban, voice,
//! moderator, membership...) and reading the lists. Every item of a request is checked, with
//! [`permissions::check`], before any is applied: a request changes all it names or nothing.

use minidom::rxml::xml_ncname;
use minidom::Element;
use xmpp_parsers::muc::user::{Affiliation, Role, Status};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::affiliation;
use crate::announce::Presence;
use crate::errors;
use crate::event::{ChangedBy, Core, Groupchat, Inbound, Muc};
use crate::extensions;
use crate::features::{self, member_list, moderated, registration, whois};
use crate::host::{Fault, HookEvent, Host};
use crate::occupant::{self, role_name, Occupant};
use crate::permissions::{self, Actor, Change, Refusal, Target};
use crate::presence;
use crate::room::Room;
use crate::rules::members_only;

pub const NS: &str = "http://jabber.org/protocol/muc#admin";

/// The occupant changes features ask for ([`Core`]), made as `muc#admin` makes them.
pub struct Changes;

impl Core for Changes {
    fn change_role(
        &self,
        host: &mut dyn Host,
        room: &Room,
        occupant: Occupant,
        affiliation: Affiliation,
        role: Role,
        reason: Option<String>,
        by: ChangedBy,
    ) -> Result<(), Fault> {
        change_role(host, room, occupant, affiliation, role, reason, by)
    }

    fn announce_affiliation(
        &self,
        host: &mut dyn Host,
        room: &Room,
        bare_jid: &str,
        occupants: Vec<Occupant>,
        new: Affiliation,
        reason: Option<String>,
        by: ChangedBy,
    ) -> Result<(), Fault> {
        announce_affiliation(host, room, bare_jid, occupants, new, reason, by)
    }

    fn relay_from_room(
        &self,
        host: &mut dyn Host,
        room: &Room,
        message: Element,
    ) -> Result<(), Fault> {
        let stanza_id = host.unique_id();
        features::relay_groupchat(host, &mut Groupchat::unsent(room, stanza_id, message))
    }
}

/// One `<item/>` of a request.
struct Request {
    /// The user's bare JID, and their occupants in the room (none if absent).
    bare_jid: String,
    occupants: Vec<Occupant>,
    change: Change,
    reason: Option<String>,
    /// A nickname to reserve for the user, named beside a jid (XEP-0045 §7.10).
    reserve_nick: Option<String>,
}

pub fn handle(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    query: &Element,
) -> Result<(), Fault> {
    let error = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "iq", type_, condition, None)
    };
    let room_jid = inbound.to.to_bare().to_string();
    let Some(room) = Room::load(host, &room_jid)? else {
        return error(host, ErrorType::Cancel, DefinedCondition::ItemNotFound);
    };
    let me = Occupant::of_session(host, &room_jid, &inbound.from.to_string())?;
    let actor = Actor {
        affiliation: muc.affiliation(host, &room_jid, &inbound.from.to_bare().to_string())?,
        role: me.as_ref().map_or(Role::None, Occupant::role),
    };
    match inbound.envelope.type_.as_deref() {
        Some("get") => list(host, inbound, &room, &actor, query),
        Some("set") => {
            let requests = match parse(host, &room, query)? {
                Ok(requests) => requests,
                Err((type_, condition)) => return error(host, type_, condition),
            };
            for request in &requests {
                let target = target(muc, host, &room, request)?;
                if let Err(refusal) = permissions::check(&actor, &target, &request.change) {
                    let (type_, condition) = match refusal {
                        Refusal::NotAllowed => (ErrorType::Cancel, DefinedCondition::NotAllowed),
                        Refusal::LastOwner => (ErrorType::Cancel, DefinedCondition::Conflict),
                        Refusal::NotInRoom => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
                    };
                    return error(host, type_, condition);
                }
            }
            let by = me.map(|occupant| (occupant.nick, inbound.from.to_string()));
            for request in requests {
                apply(muc, host, &room, request, by.clone())?;
            }
            host.send(errors::result(inbound.envelope, None))
        }
        _ => error(host, ErrorType::Modify, DefinedCondition::BadRequest),
    }
}

/// The items of a set request, or the error the whole request gets.
fn parse(
    host: &mut dyn Host,
    room: &Room,
    query: &Element,
) -> Result<Result<Vec<Request>, (ErrorType, DefinedCondition)>, Fault> {
    let bad = Err((ErrorType::Modify, DefinedCondition::BadRequest));
    let mut requests = Vec::new();
    for item in query.children().filter(|c| c.is("item", NS)) {
        let change = match (item.attr("affiliation"), item.attr("role")) {
            (Some(a), None) => match a.parse::<Affiliation>() {
                Ok(affiliation) => Change::Affiliation(affiliation),
                Err(_) => return Ok(bad),
            },
            (None, Some(r)) => match r.parse::<Role>() {
                Ok(role) => Change::Role(role),
                Err(_) => return Ok(bad),
            },
            _ => return Ok(bad),
        };
        let all = Occupant::all(host, &room.jid)?;
        let (bare_jid, occupants) = match (item.attr("jid"), item.attr("nick")) {
            (Some(jid), _) => match jid::Jid::new(jid) {
                Ok(jid) => {
                    let bare = jid.to_bare().to_string();
                    let present = all.into_iter().filter(|o| o.bare_jid == bare).collect();
                    (bare, present)
                }
                Err(_) => return Ok(Err((ErrorType::Modify, DefinedCondition::JidMalformed))),
            },
            (None, Some(nick)) => match all.into_iter().find(|o| o.nick == nick) {
                Some(occupant) => (occupant.bare_jid.clone(), vec![occupant]),
                None => return Ok(Err((ErrorType::Cancel, DefinedCondition::ItemNotFound))),
            },
            (None, None) => return Ok(bad),
        };
        let reason = item.get_child("reason", NS).map(Element::text);
        let reserve_nick = match (&change, item.attr("jid"), item.attr("nick")) {
            (Change::Affiliation(_), Some(_), Some(nick)) => Some(nick.to_string()),
            _ => None,
        };
        requests.push(Request {
            bare_jid,
            occupants,
            change,
            reason,
            reserve_nick,
        });
    }
    if requests.is_empty() {
        return Ok(bad);
    }
    Ok(Ok(requests))
}

fn target(muc: &Muc, host: &mut dyn Host, room: &Room, request: &Request) -> Result<Target, Fault> {
    let affiliation = muc.affiliation(host, &room.jid, &request.bare_jid)?;
    let owners = affiliation::list(host, &room.jid, &Affiliation::Owner)?;
    Ok(Target {
        last_owner: affiliation == Affiliation::Owner && owners.len() == 1,
        role: request.occupants.first().map_or(Role::None, Occupant::role),
        affiliation,
    })
}

fn apply(
    muc: &Muc,
    host: &mut dyn Host,
    room: &Room,
    request: Request,
    by: Option<(String, String)>,
) -> Result<(), Fault> {
    match request.change {
        Change::Affiliation(new) => {
            if let Some(nick) = &request.reserve_nick {
                evict_holder(host, room, nick, &request.bare_jid)?;
            }
            affiliation::set(
                host,
                &room.jid,
                &request.bare_jid,
                new.clone(),
                request.reason.clone(),
            )?;
            if let Some(nick) = &request.reserve_nick {
                registration::reserve(host, &room.jid, &request.bare_jid, nick)?;
            }
            announce_affiliation(
                host,
                room,
                &request.bare_jid,
                request.occupants,
                new,
                request.reason,
                by,
            )
        }
        Change::Role(Role::None) => {
            for occupant in request.occupants {
                let affiliation = muc.affiliation(host, &room.jid, &occupant.bare_jid)?;
                remove(
                    host,
                    room,
                    &occupant,
                    affiliation,
                    Status::Kicked,
                    request.reason.clone(),
                    by.clone(),
                )?;
            }
            Ok(())
        }
        Change::Role(role) => {
            for occupant in request.occupants {
                let affiliation = muc.affiliation(host, &room.jid, &occupant.bare_jid)?;
                change_role(
                    host,
                    room,
                    occupant,
                    affiliation,
                    role.clone(),
                    request.reason.clone(),
                    by.clone(),
                )?;
            }
            Ok(())
        }
    }
}

/// Tells the room of a user's new affiliation: their occupants' new presence (or their removal,
/// when banned or no longer admitted), or a notice if they are not in the room.
pub fn announce_affiliation(
    host: &mut dyn Host,
    room: &Room,
    bare_jid: &str,
    occupants: Vec<Occupant>,
    new: Affiliation,
    reason: Option<String>,
    by: Option<(String, String)>,
) -> Result<(), Fault> {
    if occupants.is_empty() {
        return notify_absent(host, room, bare_jid, &new, reason);
    }
    let removal = match new {
        Affiliation::Outcast => Some(Status::Banned),
        _ if !members_only::admits(room, &new) => Some(Status::RemovalFromRoom),
        _ => None,
    };
    for occupant in occupants {
        match &removal {
            Some(status) => remove(
                host,
                room,
                &occupant,
                new.clone(),
                status.clone(),
                reason.clone(),
                by.clone(),
            )?,
            None => {
                let role = moderated::default_role(room, &new);
                change_role(
                    host,
                    room,
                    occupant,
                    new.clone(),
                    role,
                    reason.clone(),
                    by.clone(),
                )?;
            }
        }
    }
    Ok(())
}

/// Someone else holding a nickname being reserved is kicked (307), as Prosody does.
fn evict_holder(host: &mut dyn Host, room: &Room, nick: &str, owner: &str) -> Result<(), Fault> {
    match Occupant::load(host, &room.jid, nick)? {
        Some(holder) if holder.bare_jid != owner => {
            let affiliation = affiliation::get(host, &room.jid, &holder.bare_jid)?;
            let reason = Some("This nickname is reserved".to_string());
            remove(
                host,
                room,
                &holder,
                affiliation,
                Status::Kicked,
                reason,
                None,
            )
        }
        _ => Ok(()),
    }
}

/// The occupant stays, with a new role (or affiliation): everyone sees the new presence.
pub fn change_role(
    host: &mut dyn Host,
    room: &Room,
    mut occupant: Occupant,
    affiliation: Affiliation,
    role: Role,
    reason: Option<String>,
    by: Option<(String, String)>,
) -> Result<(), Fault> {
    occupant.role = role_name(&role).to_string();
    occupant.save(host, &room.jid)?;
    let others = Occupant::all(host, &room.jid)?;
    let mut shown = Presence::of(&occupant, affiliation, presence::stored_payload(&occupant));
    shown.reason = reason;
    shown.actor = by;
    shown.broadcast(host, room, &others)
}

/// The occupant is removed (kicked 307, banned 301, no longer a member 321): everyone, the
/// occupant included, sees them leave.
pub fn remove(
    host: &mut dyn Host,
    room: &Room,
    occupant: &Occupant,
    affiliation: Affiliation,
    status: Status,
    reason: Option<String>,
    by: Option<(String, String)>,
) -> Result<(), Fault> {
    occupant.remove(host, &room.jid);
    let others = Occupant::all(host, &room.jid)?;
    let left = extensions::occupant_view(occupant, affiliation.clone());
    let mut gone = Presence::departure(occupant, affiliation, Vec::new());
    gone.statuses.push(status);
    gone.reason = reason;
    gone.actor = by;
    gone.broadcast(host, room, &others)?;
    features::left(host, room, occupant)?;
    extensions::notify(host, room, &others, HookEvent::Left(left))
}

/// A user not in the room had their affiliation changed: those who may see real JIDs are told
/// (as Prosody does).
fn notify_absent(
    host: &mut dyn Host,
    room: &Room,
    bare_jid: &str,
    new: &Affiliation,
    reason: Option<String>,
) -> Result<(), Fault> {
    let mut item = Element::builder("item", ns::MUC_USER)
        .attr(xml_ncname!("jid").into(), bare_jid)
        .attr(xml_ncname!("affiliation").into(), affiliation::name(new));
    if let Some(reason) = reason {
        item = item.append(
            Element::builder("reason", ns::MUC_USER)
                .append(reason)
                .build(),
        );
    }
    let mut x = Element::builder("x", ns::MUC_USER);
    if *new == Affiliation::Outcast {
        x = x.append(
            Element::builder("status", ns::MUC_USER)
                .attr(xml_ncname!("code").into(), "301")
                .build(),
        );
    }
    let notice = Element::builder("message", ns::JABBER_CLIENT)
        .attr(xml_ncname!("from").into(), room.jid.as_str())
        .append(x.append(item.build()).build())
        .build();
    let occupants = Occupant::all(host, &room.jid)?;
    let seeing: Vec<&Occupant> = occupants
        .iter()
        .filter(|o| whois::sees_real_jids(room, &o.role()))
        .collect();
    let recipients = occupant::sessions(&seeing);
    if recipients.is_empty() {
        return Ok(());
    }
    host.broadcast(notice, &recipients)
}

/// The owner, admin, member or outcast list, or the occupants with a role.
fn list(
    host: &mut dyn Host,
    inbound: &Inbound,
    room: &Room,
    actor: &Actor,
    query: &Element,
) -> Result<(), Fault> {
    let refuse = |host: &mut dyn Host, type_, condition| {
        errors::reply(host, inbound.envelope, "iq", type_, condition, None)
    };
    let Some(item) = query.get_child("item", NS) else {
        return refuse(host, ErrorType::Modify, DefinedCondition::BadRequest);
    };
    let mut items = Vec::new();
    match (
        item.attr("affiliation").map(str::parse::<Affiliation>),
        item.attr("role").map(str::parse::<Role>),
    ) {
        (Some(Ok(wanted)), None) if wanted != Affiliation::None => {
            if !member_list::may_read(room, &actor.affiliation, &actor.role, &wanted) {
                return refuse(host, ErrorType::Auth, DefinedCondition::Forbidden);
            }
            for (jid, record) in affiliation::list(host, &room.jid, &wanted)? {
                let mut entry = Element::builder("item", NS)
                    .attr(
                        xml_ncname!("affiliation").into(),
                        affiliation::name(&wanted),
                    )
                    .attr(xml_ncname!("jid").into(), jid);
                if let Some(nick) = record.nick {
                    entry = entry.attr(xml_ncname!("nick").into(), nick);
                }
                if let Some(reason) = record.reason {
                    entry = entry.append(Element::builder("reason", NS).append(reason).build());
                }
                items.push(entry.build());
            }
        }
        (None, Some(Ok(wanted))) if wanted != Role::None => {
            if actor.role != Role::Moderator {
                return refuse(host, ErrorType::Auth, DefinedCondition::Forbidden);
            }
            for occupant in Occupant::all(host, &room.jid)?
                .into_iter()
                .filter(|o| o.role() == wanted)
            {
                let mut entry = Element::builder("item", NS)
                    .attr(xml_ncname!("role").into(), role_name(&wanted))
                    .attr(xml_ncname!("nick").into(), occupant.nick.as_str());
                if let Some(session) = occupant.sessions.first() {
                    entry = entry.attr(xml_ncname!("jid").into(), session.full_jid.as_str());
                }
                items.push(entry.build());
            }
        }
        _ => return refuse(host, ErrorType::Modify, DefinedCondition::BadRequest),
    }
    let query = Element::builder("query", NS).append_all(items).build();
    host.send(errors::result(inbound.envelope, Some(query)))
}
