//! Presence to `room/nick` (XEP-0045 §7.2-7.7): entering (and creating) a room, changing
//! presence or nickname, leaving.

use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use precis_profiles::precis_core::profile::PrecisFastInvocation;
use xmpp_parsers::muc::muc::Muc as JoinRequest;
use xmpp_parsers::muc::user::{Affiliation, Item, Role, Status};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::affiliation;
use crate::announce::{self, Presence};
use crate::errors;
use crate::event::{Inbound, Joined, Joiner, Muc, Refusal};
use crate::extensions;
use crate::features::{self, guests, presence_broadcast, registration};
use crate::host::{Fault, HookEvent, Host, OccupantView, Tier};
use crate::keys;
use crate::muc_user;
use crate::occupant::{role_name, Occupant, Session};
use crate::room::{persistent, Room};
use crate::room_index;

pub fn handle(muc: &Muc, host: &mut dyn Host, inbound: &Inbound, nick: &str) -> Result<(), Fault> {
    let room_jid = inbound.to.to_bare().to_string();
    let full_jid = inbound.from.to_string();
    let current = Occupant::of_session(host, &room_jid, &full_jid)?;
    // Joining or changing to a nickname: it must be a valid one (XEP-0045 §7.2.1, RFC 8266).
    if inbound.envelope.type_.is_none() && !valid_nick(nick) {
        return refuse(
            host,
            inbound,
            ErrorType::Modify,
            DefinedCondition::JidMalformed,
        );
    }
    let rejoin = inbound.element.has_child("x", ns::MUC);
    match (inbound.envelope.type_.as_deref(), current) {
        (None, None) => join(muc, host, inbound, &room_jid, nick),
        // A join from a client already in: it lost track, so it gets the join state again.
        (None, Some(occupant)) if occupant.nick == nick && rejoin => {
            resync(muc, host, inbound, &room_jid, occupant)
        }
        (None, Some(occupant)) if occupant.nick == nick => {
            update(host, inbound, &room_jid, occupant)
        }
        (Some("probe"), current) => probe(muc, host, inbound, &room_jid, current, nick),
        (None, Some(occupant)) => change_nick(muc, host, inbound, &room_jid, occupant, nick),
        (Some("unavailable"), Some(occupant)) => leave(host, inbound, &room_jid, occupant),
        // Presence errors are handled as ghosts by the service; other types mean nothing here.
        _ => Ok(()),
    }
}

fn join(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    room_jid: &str,
    nick: &str,
) -> Result<(), Fault> {
    let bare_jid = inbound.from.to_bare().to_string();
    let request = join_request(inbound);
    let existing = Room::load(host, room_jid)?;
    if existing.is_none() {
        if let Some(refusal) = guests::refuse_creation(muc, &bare_jid) {
            return refuse_saying(host, inbound, refusal);
        }
    }
    let (room, created) = match existing {
        Some(room) => (room, false),
        None => match over_room_cap(muc, host, &bare_jid) {
            Some(why) => {
                let (type_, condition) = (ErrorType::Cancel, DefinedCondition::NotAllowed);
                let envelope = inbound.envelope;
                return errors::reply(host, envelope, "presence", type_, condition, Some(&why));
            }
            None => (create(host, room_jid, &bare_jid)?, true),
        },
    };
    let affiliation = muc.affiliation(host, room_jid, &bare_jid)?;
    let others = Occupant::all(host, room_jid)?;
    let holder = others.iter().find(|o| o.nick == nick);
    let reserved_by_other =
        registration::reserved_by(host, room_jid, nick)?.is_some_and(|owner| owner != bare_jid);
    if reserved_by_other || holder.is_some_and(|o| o.bare_jid != bare_jid) {
        return refuse(host, inbound, ErrorType::Cancel, DefinedCondition::Conflict);
    }
    let joiner = Joiner {
        affiliation: &affiliation,
        password: request.as_ref().and_then(|r| r.password.as_deref()),
        occupant_count: others.iter().filter(|o| o.nick != nick).count(),
        guest: muc.is_guest(&bare_jid).then_some(muc.settings.guest_rooms),
    };
    if let Some(refusal) = features::check_join(&room, &joiner) {
        return refuse_saying(host, inbound, refusal);
    }
    let arriving = holder.is_none().then(|| {
        let role = features::moderated::default_role(&room, &affiliation);
        OccupantView {
            nick: nick.to_string(),
            role,
            affiliation: affiliation.clone(),
            bare_jid: bare_jid.clone(),
        }
    });
    if let Some(joiner) = arriving.clone() {
        if extensions::refuse_join(host, inbound.envelope, &room, &others, joiner)? {
            if created {
                // Nobody entered the room just made for this join: it goes.
                destroy_silently(host, &room)?;
            }
            return Ok(());
        }
    }
    let session = Session {
        full_jid: inbound.from.to_string(),
        presence_payload: announce::payload(&inbound.element)
            .iter()
            .map(String::from)
            .collect(),
    };
    let mut occupant = match holder {
        // Another client of the same user, under the same nickname (XEP-0045 §7.2.1).
        Some(existing) => {
            let mut occupant = existing.clone();
            occupant.sessions.push(session);
            occupant
        }
        None => Occupant {
            nick: nick.to_string(),
            bare_jid,
            role: role_name(&features::moderated::default_role(&room, &affiliation)).to_string(),
            sessions: vec![session],
            occupant_id: None,
        },
    };
    if occupant.occupant_id.is_none() {
        occupant.occupant_id = Some(features::occupant_id::id(
            host,
            room_jid,
            &occupant.bare_jid,
        )?);
    }
    occupant.save(host, room_jid)?;
    let mut presence = Presence::of(&occupant, affiliation, announce::payload(&inbound.element));
    if created {
        presence.self_statuses.push(Status::RoomHasBeenCreated);
    }
    send_join_state(
        muc,
        host,
        inbound,
        &room,
        &presence,
        &others,
        request.as_ref(),
    )?;
    presence.to_others(host, &room, &others)?;
    // Reading every occupant again is for extensions only.
    if let Some(joined) = arriving.filter(|_| host.extensions_active(room_jid)) {
        let everyone = Occupant::all(host, room_jid)?;
        extensions::notify(host, &room, &everyone, HookEvent::Joined(joined))?;
    }
    Ok(())
}

/// What a joining session gets, in XEP-0045 order: every other occupant's presence, its own
/// (with the join's `id`), the history it asked for, the subject.
fn send_join_state(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    room: &Room,
    presence: &Presence,
    others: &[Occupant],
    request: Option<&JoinRequest>,
) -> Result<(), Fault> {
    let occupant = presence.occupant;
    let joiner_sees_jids = features::whois::sees_real_jids(room, &occupant.role());
    let to = inbound.from.to_string();
    let visible = |other: &&Occupant| {
        other.nick != occupant.nick
            && presence_broadcast::visible_to(room, &other.role(), &occupant.role())
    };
    // Read once for all the others.
    let affiliations = affiliation::all(host, &room.jid)?;
    for other in others.iter().filter(visible) {
        let other_affiliation = muc.affiliation_in(&affiliations, &other.bare_jid);
        let id = features::occupant_id::of(host, &room.jid, other)?;
        let mut element = Presence::of(other, other_affiliation, stored_payload(other)).shown(
            host,
            room,
            joiner_sees_jids,
            false,
            &id,
        )?;
        element.set_attr(Namespace::NONE, xml_ncname!("to").into(), to.as_str());
        host.send(element)?;
    }
    if presence_broadcast::shows_absent_members(room) {
        for (nick, owner) in registration::reservations(host, &room.jid)? {
            if owner != occupant.bare_jid && !others.iter().any(|o| o.bare_jid == owner) {
                let mut element = absent(host, &room.jid, &nick, joiner_sees_jids)?;
                element.set_attr(Namespace::NONE, xml_ncname!("to").into(), to.as_str());
                host.send(element)?;
            }
        }
    }
    // The joiner's own presence says what the room is like (100, 170...).
    let mut own = presence.clone();
    own.self_statuses.extend(features::join_statuses(room));
    own.to_own_sessions(
        host,
        room,
        std::slice::from_ref(&to),
        inbound.envelope.id.as_deref(),
    )?;
    let joined = Joined {
        room,
        occupant,
        to: &to,
        history: request.and_then(|r| r.history.as_ref()),
    };
    features::join_state(host, &joined)
}

/// A client already in the room sent a join again (it lost state): it gets the join state,
/// others see nothing new.
fn resync(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    room_jid: &str,
    occupant: Occupant,
) -> Result<(), Fault> {
    let Some(room) = Room::load(host, room_jid)? else {
        return Ok(());
    };
    let request = join_request(inbound);
    let affiliation = muc.affiliation(host, room_jid, &occupant.bare_jid)?;
    let others = Occupant::all(host, room_jid)?;
    let presence = Presence::of(&occupant, affiliation, stored_payload(&occupant));
    send_join_state(
        muc,
        host,
        inbound,
        &room,
        &presence,
        &others,
        request.as_ref(),
    )
}

/// XEP-0045 §7.x (presence probes): an occupant may ask for another occupant's current presence,
/// or, for someone absent, an unavailable presence naming the member who reserved the nickname;
/// anyone else is refused.
fn probe(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    room_jid: &str,
    prober: Option<Occupant>,
    nick: &str,
) -> Result<(), Fault> {
    let (Some(prober), Some(room)) = (prober, Room::load(host, room_jid)?) else {
        return refuse(
            host,
            inbound,
            ErrorType::Cancel,
            DefinedCondition::NotAcceptable,
        );
    };
    let sees_jids = features::whois::sees_real_jids(&room, &prober.role());
    let mut reply = match Occupant::load(host, room_jid, nick)? {
        Some(probed) => {
            let affiliation = muc.affiliation(host, room_jid, &probed.bare_jid)?;
            let id = features::occupant_id::of(host, room_jid, &probed)?;
            Presence::of(&probed, affiliation, stored_payload(&probed))
                .shown(host, &room, sees_jids, false, &id)?
        }
        None => absent(host, room_jid, nick, sees_jids)?,
    };
    reply.set_attr(
        Namespace::NONE,
        xml_ncname!("to").into(),
        inbound.from.to_string(),
    );
    host.send(reply)
}

/// The unavailable presence of a nickname nobody holds now.
fn absent(
    host: &mut dyn Host,
    room_jid: &str,
    nick: &str,
    sees_jids: bool,
) -> Result<Element, Fault> {
    let mut item = Item::new(Affiliation::None, Role::None);
    let owner = registration::reserved_by(host, room_jid, nick)?;
    if let Some(owner) = &owner {
        item.affiliation = affiliation::get(host, room_jid, owner)?;
        item.nick = Some(nick.to_string());
    }
    let mut x = muc_user::x(vec![item], &[]);
    if let (Some(owner), true) = (owner, sees_jids) {
        // A bare JID: xmpp-parsers' item only holds full ones.
        if let Some(item) = x.get_child_mut("item", ns::MUC_USER) {
            item.set_attr(Namespace::NONE, xml_ncname!("jid").into(), owner);
        }
    }
    Ok(Element::builder("presence", ns::JABBER_CLIENT)
        .attr(xml_ncname!("type").into(), "unavailable")
        .attr(xml_ncname!("from").into(), format!("{room_jid}/{nick}"))
        .append(x)
        .build())
}

/// The `<x xmlns='muc'/>` of a join: password and history wanted.
fn join_request(inbound: &Inbound) -> Option<JoinRequest> {
    let x = inbound.element.get_child("x", ns::MUC)?;
    JoinRequest::try_from(x.clone()).ok()
}

/// Why `bare_jid` may not create one more room, if it may not: it already has the most rooms
/// one user may have created that still exist. Administrators are exempt. Reads at most the
/// cap's worth of keys.
fn over_room_cap(muc: &Muc, host: &mut dyn Host, bare_jid: &str) -> Option<String> {
    let cap = muc.settings.max_rooms_per_user;
    if cap == 0 || muc.is_service_admin(bare_jid) {
        return None;
    }
    (room_index::rooms_created(host, bare_jid, cap) >= cap as usize).then(|| {
        format!("You have created {cap} rooms, the most one user may have here: destroy one to create another")
    })
}

/// Creates a locked room with the creator as its owner (XEP-0045 §10.1.1), and the timer that
/// destroys it if it is never configured.
fn create(host: &mut dyn Host, room_jid: &str, creator: &str) -> Result<Room, Fault> {
    if host.get(Tier::Durable, keys::LAYOUT).is_none() {
        let version = keys::LAYOUT_VERSION.to_string().into_bytes();
        host.put(Tier::Durable, keys::LAYOUT, version)?;
    }
    let room = Room {
        creator: Some(creator.to_string()),
        ..Room::new_locked(room_jid)
    };
    room.save(host)?;
    affiliation::set(host, room_jid, creator, Affiliation::Owner, None)?;
    features::created(host, &room)?;
    Ok(room)
}

/// A status or `show` change: everyone, the occupant included, gets the new presence.
fn update(
    host: &mut dyn Host,
    inbound: &Inbound,
    room_jid: &str,
    mut occupant: Occupant,
) -> Result<(), Fault> {
    let Some(room) = Room::load(host, room_jid)? else {
        return Ok(());
    };
    let payload = announce::payload(&inbound.element);
    let full_jid = inbound.from.to_string();
    if let Some(session) = occupant
        .sessions
        .iter_mut()
        .find(|s| s.full_jid == full_jid)
    {
        session.presence_payload = payload.iter().map(String::from).collect();
    }
    occupant.save(host, room_jid)?;
    let affiliation = affiliation::get(host, room_jid, &occupant.bare_jid)?;
    let others = Occupant::all(host, room_jid)?;
    Presence::of(&occupant, affiliation, payload).broadcast(host, &room, &others)?;
    features::presence_changed(host, &room, &occupant)
}

/// XEP-0045 §7.6: the old nickname leaves with 303 naming the new one, then the new one arrives.
fn change_nick(
    muc: &Muc,
    host: &mut dyn Host,
    inbound: &Inbound,
    room_jid: &str,
    occupant: Occupant,
    nick: &str,
) -> Result<(), Fault> {
    let Some(room) = Room::load(host, room_jid)? else {
        return Ok(());
    };
    let reserved_by_other = registration::reserved_by(host, room_jid, nick)?
        .is_some_and(|owner| owner != occupant.bare_jid);
    if reserved_by_other || Occupant::load(host, room_jid, nick)?.is_some() {
        return refuse(host, inbound, ErrorType::Cancel, DefinedCondition::Conflict);
    }
    let affiliation = muc.affiliation(host, room_jid, &occupant.bare_jid)?;
    let others = Occupant::all(host, room_jid)?;
    // The room's extensions judge the new nickname as they would a join under it.
    let renamed_view = OccupantView {
        nick: nick.to_string(),
        ..extensions::occupant_view(&occupant, affiliation.clone())
    };
    if extensions::refuse_join(host, inbound.envelope, &room, &others, renamed_view)? {
        return Ok(());
    }
    // The old nickname goes unavailable with 303, keeping its role: the occupant stays.
    let mut leaving = Presence::of(&occupant, affiliation.clone(), stored_payload(&occupant));
    leaving.unavailable = true;
    leaving.statuses.push(Status::NewNick);
    leaving.new_nick = Some(nick.to_string());
    leaving.broadcast(host, &room, &others)?;
    occupant.remove(host, room_jid);
    let renamed = Occupant {
        nick: nick.to_string(),
        ..occupant
    };
    renamed.save(host, room_jid)?;
    let others = Occupant::all(host, room_jid)?;
    Presence::of(&renamed, affiliation, announce::payload(&inbound.element))
        .broadcast(host, &room, &others)
}

/// XEP-0045 §7.14: the occupant's sessions hear 110; everyone else the departure. A temporary
/// room is gone with its last occupant.
fn leave(
    host: &mut dyn Host,
    inbound: &Inbound,
    room_jid: &str,
    occupant: Occupant,
) -> Result<(), Fault> {
    let Some(room) = Room::load(host, room_jid)? else {
        return Ok(());
    };
    let full_jid = inbound.from.to_string();
    let affiliation = affiliation::get(host, room_jid, &occupant.bare_jid)?;
    let payload = announce::payload(&inbound.element);
    if occupant.sessions.len() > 1 {
        // One of several clients leaves: it hears it left, others see the user's remaining ones.
        let staying = remove_session(host, room_jid, &occupant, &full_jid)?;
        let gone = Presence::departure(&occupant, affiliation.clone(), payload);
        gone.to_own_sessions(host, &room, &[full_jid], None)?;
        let others = Occupant::all(host, room_jid)?;
        let remaining = Presence::of(&staying, affiliation, stored_payload(&staying));
        return remaining.to_others(host, &room, &others);
    }
    occupant.remove(host, room_jid);
    let others = Occupant::all(host, room_jid)?;
    let gone = extensions::occupant_view(&occupant, affiliation.clone());
    Presence::departure(&occupant, affiliation, payload).broadcast(host, &room, &others)?;
    features::left(host, &room, &occupant)?;
    if others.is_empty() && !persistent::is_persistent(&room) {
        destroy_silently(host, &room)?;
        return Ok(());
    }
    extensions::notify(host, &room, &others, HookEvent::Left(gone))
}

/// Drops one client session from a user who stays in the room under other sessions.
pub fn remove_session(
    host: &mut dyn Host,
    room_jid: &str,
    occupant: &Occupant,
    full_jid: &str,
) -> Result<Occupant, Fault> {
    let mut staying = occupant.clone();
    staying.sessions.retain(|s| s.full_jid != full_jid);
    host.delete(Tier::Volatile, &keys::session(room_jid, full_jid));
    staying.save(host, room_jid)?;
    Ok(staying)
}

/// Forgets an empty room, and what its features and extensions kept of it.
pub fn destroy_silently(host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
    room.delete(host)?;
    extensions::forget(host, &room.jid);
    features::destroyed(host, room)
}

/// XEP-0045 §7.2.1 with RFC 8266: a nickname must survive the PRECIS Nickname profile
/// unchanged (the JID's resourceprep already ran).
fn valid_nick(nick: &str) -> bool {
    matches!(precis_profiles::Nickname::enforce(nick), Ok(enforced) if enforced == nick)
}

pub fn stored_payload(occupant: &Occupant) -> Vec<minidom::Element> {
    occupant
        .sessions
        .first()
        .map(|s| {
            s.presence_payload
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn refuse(
    host: &mut dyn Host,
    inbound: &Inbound,
    type_: ErrorType,
    condition: DefinedCondition,
) -> Result<(), Fault> {
    errors::reply(host, inbound.envelope, "presence", type_, condition, None)
}

fn refuse_saying(host: &mut dyn Host, inbound: &Inbound, refusal: Refusal) -> Result<(), Fault> {
    let (type_, condition) = (refusal.type_, refusal.condition);
    errors::reply(
        host,
        inbound.envelope,
        "presence",
        type_,
        condition,
        refusal.text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::lock;
    use crate::host::{Envelope, StanzaKind};
    use crate::memory_host::MemoryHost;
    use crate::service::Settings;
    use xmpp_parsers::ns;

    fn join_presence(host: &mut MemoryHost, from: &str, to: &str) -> Vec<minidom::Element> {
        let envelope = Envelope {
            kind: StanzaKind::Presence,
            type_: None,
            from: from.into(),
            to: to.into(),
            id: Some("j1".into()),
        };
        let xml = format!(
            "<presence xmlns='jabber:client' from='{from}' to='{to}' id='j1'>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        );
        Muc::new(Settings::default())
            .handle_stanza(host, &envelope, &xml)
            .unwrap();
        host.take_sent()
    }

    #[test]
    fn first_presence_creates_a_locked_room_owned_by_its_creator() {
        let mut host = MemoryHost::default();
        let sent = join_presence(
            &mut host,
            "a@example.org/Spark",
            "room@conference.example.org/clientA",
        );
        assert_eq!(sent.len(), 2, "self-presence then subject");
        let own = &sent[0];
        assert_eq!(
            own.attr("from"),
            Some("room@conference.example.org/clientA")
        );
        assert_eq!(own.attr("to"), Some("a@example.org/Spark"));
        assert_eq!(own.attr("id"), Some("j1"));
        let x = own.get_child("x", ns::MUC_USER).unwrap();
        let codes: Vec<_> = x.children().filter_map(|c| c.attr("code")).collect();
        assert_eq!(codes, ["201", "110"]);
        let item = x.get_child("item", ns::MUC_USER).unwrap();
        assert_eq!(item.attr("affiliation"), Some("owner"));
        assert_eq!(item.attr("role"), Some("moderator"));
        assert_eq!(item.attr("jid"), Some("a@example.org/Spark"));
        assert!(sent[1].get_child("subject", ns::JABBER_CLIENT).is_some());
        assert!(host
            .timers
            .contains_key(&lock::timer_key("room@conference.example.org")));
        assert!(
            Room::load(&mut host, "room@conference.example.org")
                .unwrap()
                .unwrap()
                .locked
        );
    }

    #[test]
    fn a_locked_room_is_not_found_by_others_and_a_bad_nick_is_malformed() {
        let mut host = MemoryHost::default();
        join_presence(
            &mut host,
            "a@example.org/Spark",
            "room@conference.example.org/clientA",
        );
        let sent = join_presence(
            &mut host,
            "b@example.org/x",
            "room@conference.example.org/clientB",
        );
        assert_eq!(sent.len(), 1);
        let error = sent[0].get_child("error", ns::JABBER_CLIENT).unwrap();
        assert!(error.has_child("item-not-found", ns::XMPP_STANZAS));
        let sent = join_presence(
            &mut host,
            "b@example.org/x",
            "other@conference.example.org/two  spaces",
        );
        let error = sent[0].get_child("error", ns::JABBER_CLIENT).unwrap();
        assert!(error.has_child("jid-malformed", ns::XMPP_STANZAS));
    }

    #[test]
    fn nobody_changes_to_a_nickname_reserved_by_someone_else() {
        let mut host = MemoryHost::default();
        join_presence(
            &mut host,
            "a@example.org/Spark",
            "room@conference.example.org/clientA",
        );
        registration::reserve(
            &mut host,
            "room@conference.example.org",
            "b@example.org",
            "Taken",
        )
        .unwrap();
        let sent = join_presence(
            &mut host,
            "a@example.org/Spark",
            "room@conference.example.org/Taken",
        );
        let error = sent[0]
            .get_child("error", ns::JABBER_CLIENT)
            .expect("an error");
        assert!(error.has_child("conflict", ns::XMPP_STANZAS));
    }

    /// A presence of `type_` (None: available) from `from` to `to`, through a service whose
    /// users may each create `cap` rooms and whose administrator is `admin@example.org`.
    fn presence_capped(
        host: &mut MemoryHost,
        cap: u32,
        type_: Option<&str>,
        from: &str,
        to: &str,
    ) -> Vec<minidom::Element> {
        let envelope = Envelope {
            kind: StanzaKind::Presence,
            type_: type_.map(str::to_string),
            from: from.into(),
            to: to.into(),
            id: Some("p1".into()),
        };
        let type_attr = type_.map_or(String::new(), |t| format!(" type='{t}'"));
        let xml = format!(
            "<presence xmlns='jabber:client' from='{from}' to='{to}' id='p1'{type_attr}>\
             <x xmlns='http://jabber.org/protocol/muc'/></presence>"
        );
        let settings = Settings {
            admins: vec!["admin@example.org".into()],
            max_rooms_per_user: cap,
            ..Settings::default()
        };
        Muc::new(settings)
            .handle_stanza(host, &envelope, &xml)
            .unwrap();
        host.take_sent()
    }

    fn refusal(sent: &[minidom::Element]) -> Option<(String, String)> {
        let error = sent.first()?.get_child("error", ns::JABBER_CLIENT)?;
        let condition = error.children().next()?.name().to_string();
        let text = error.get_child("text", ns::XMPP_STANZAS).map(|t| t.text());
        Some((condition, text.unwrap_or_default()))
    }

    #[test]
    fn a_user_at_the_room_cap_may_not_create_another_until_one_goes() {
        let mut host = MemoryHost::default();
        let user = "u@example.org/r";
        for room in ["r1", "r2"] {
            let sent = presence_capped(
                &mut host,
                2,
                None,
                user,
                &format!("{room}@muc.example.org/u"),
            );
            assert_eq!(refusal(&sent), None, "{room} is within the cap");
        }
        let sent = presence_capped(&mut host, 2, None, user, "r3@muc.example.org/u");
        let (condition, text) = refusal(&sent).expect("a third room is refused");
        assert_eq!(condition, "not-allowed");
        assert!(text.contains("2 rooms"), "{text}");
        assert!(Room::load(&mut host, "r3@muc.example.org")
            .unwrap()
            .is_none());

        // Joining a room that exists is not creating one.
        presence_capped(
            &mut host,
            2,
            None,
            "o@example.org/r",
            "open@muc.example.org/o",
        );
        let open = "open@muc.example.org";
        let mut room = Room::load(&mut host, open).unwrap().unwrap();
        room.locked = false;
        room.save(&mut host).unwrap();
        let sent = presence_capped(&mut host, 2, None, user, "open@muc.example.org/u");
        assert_eq!(refusal(&sent), None);

        // Others and administrators are not counted against, nor limited by, this user's rooms.
        for (who, rooms) in [("other@example.org/r", 2), ("admin@example.org/r", 5)] {
            for i in 0..rooms {
                let to = format!("{}{i}@muc.example.org/x", who.split('@').next().unwrap());
                assert_eq!(
                    refusal(&presence_capped(&mut host, 2, None, who, &to)),
                    None
                );
            }
        }

        // The temporary room r1 vanishes when its last occupant leaves: a slot is free again.
        presence_capped(
            &mut host,
            2,
            Some("unavailable"),
            user,
            "r1@muc.example.org/u",
        );
        assert!(Room::load(&mut host, "r1@muc.example.org")
            .unwrap()
            .is_none());
        let sent = presence_capped(&mut host, 2, None, user, "r3@muc.example.org/u");
        assert_eq!(refusal(&sent), None, "the vanished room no longer counts");
        let sent = presence_capped(&mut host, 2, None, user, "r4@muc.example.org/u");
        assert_eq!(refusal(&sent).unwrap().0, "not-allowed");

        // No cap at all.
        let sent = presence_capped(&mut host, 0, None, user, "r4@muc.example.org/u");
        assert_eq!(refusal(&sent), None);
    }
}
