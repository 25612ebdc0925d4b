//! Room features, one module each, and the list of them: [`ALL`]. A feature implements
//! [`RoomFeature`] (in `event.rs`) for the events it needs; the core fires each event through
//! the functions below, which visit [`ALL`] in order. A feature imports `event` (and `rules`,
//! and plugin infrastructure), never this list or another feature.

pub mod affiliation_lists;
pub mod archive;
pub mod avatar;
pub mod guests;
pub mod hats;
pub mod history;
pub mod invitations;
pub mod lock;
pub mod logging;
pub mod max_users;
pub mod member_list;
pub mod members_only;
pub mod moderated;
pub mod moderation;
pub mod naming;
pub mod occupant_id;
pub mod occupant_iqs;
pub mod outcasts;
pub mod password;
pub mod persistent;
pub mod presence_broadcast;
pub mod private_messages;
pub mod public;
pub mod registration;
pub mod stable_id;
pub mod subject;
pub mod voice_requests;
pub mod whois;

use minidom::Element;
use xmpp_parsers::data_forms::Field;
use xmpp_parsers::muc::user::Status;

use crate::config::{Config, FieldSpec, Invalid};
use crate::event::{
    ConfigSubmit, Groupchat, Inbound, Joined, Joiner, OccupantIq, Refusal, RoomFeature,
};
use crate::host::{Fault, Host, Tier};
use crate::keys;
use crate::occupant::Occupant;
use crate::room::Room;

/// Every feature. Their fields appear in the configuration form in this order, and every event
/// visits them in this order: where it matters, `members_only` refuses a guest before `guests`
/// does (`registration-required` says more), `stable_id` stamps before `occupant_id` (the
/// stanza-id first), `voice_requests` claims a message before `invitations`, `history` catches
/// a joiner up before `subject` sends the subject (a separate, later event).
pub const ALL: &[&dyn RoomFeature] = &[
    &naming::Naming,
    &persistent::Persistent,
    &public::Public,
    &moderated::Moderated,
    &members_only::MembersOnly,
    &guests::Guests,
    &password::Password,
    &max_users::MaxUsers,
    &outcasts::Outcasts,
    &whois::Whois,
    &presence_broadcast::PresenceBroadcast,
    &subject::ChangeSubject,
    &private_messages::AllowPm,
    &voice_requests::VoiceRequests,
    &invitations::Invitations,
    &member_list::MemberList,
    &logging::Logging,
    &history::History,
    &archive::Archive,
    &lock::Lock,
    &stable_id::StableId,
    &occupant_id::OccupantId,
    &moderation::Moderation,
    &registration::Registration,
    &affiliation_lists::AffiliationLists,
    &avatar::Avatar,
    &hats::Hats,
    &occupant_iqs::OccupantIqs,
];

/// The declaration of the configuration field `var`, if a feature owns one.
pub fn field(var: &str) -> Option<&'static FieldSpec> {
    ALL.iter()
        .flat_map(|feature| feature.fields().iter())
        .find(|spec| spec.var == var)
}

pub fn created(host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
    ALL.iter().try_for_each(|f| f.created(host, room))
}

pub fn destroyed(host: &mut dyn Host, room: &Room) -> Result<(), Fault> {
    ALL.iter().try_for_each(|f| f.destroyed(host, room))
}

/// The first refusal of a join, in list order.
pub fn check_join(room: &Room, joiner: &Joiner) -> Option<Refusal> {
    ALL.iter().find_map(|f| f.check_join(room, joiner))
}

pub fn join_statuses(room: &Room) -> Vec<Status> {
    ALL.iter().flat_map(|f| f.join_statuses(room)).collect()
}

/// What a joiner gets after its own presence: every feature's catch-up, then the rest.
pub fn join_state(host: &mut dyn Host, joined: &Joined) -> Result<(), Fault> {
    ALL.iter().try_for_each(|f| f.catch_up(host, joined))?;
    ALL.iter().try_for_each(|f| f.joined(host, joined))
}

pub fn presence_changed(
    host: &mut dyn Host,
    room: &Room,
    occupant: &Occupant,
) -> Result<(), Fault> {
    ALL.iter()
        .try_for_each(|f| f.presence_changed(host, room, occupant))
}

/// Every feature's additions to a presence the room shows of `occupant`.
pub fn stamp_presence(
    host: &mut dyn Host,
    room: &Room,
    occupant: &Occupant,
    presence: &mut Element,
) -> Result<(), Fault> {
    ALL.iter()
        .try_for_each(|f| f.stamp_presence(host, room, occupant, presence))
}

pub fn left(host: &mut dyn Host, room: &Room, occupant: &Occupant) -> Result<(), Fault> {
    ALL.iter().try_for_each(|f| f.left(host, room, occupant))
}

/// The first refusal of a groupchat message, in list order.
pub fn check_groupchat(room: &Room, sender: &Occupant, message: &Element) -> Option<Refusal> {
    ALL.iter()
        .find_map(|f| f.check_groupchat(room, sender, message))
}

/// The first refusal of a groupchat message that reads the store, in list order.
pub fn check_groupchat_stored(
    host: &mut dyn Host,
    room: &Room,
    occupant_id: &str,
    message: &Element,
) -> Result<Option<(Refusal, &'static str)>, Fault> {
    for feature in ALL {
        if let Some(refusal) = feature.check_groupchat_stored(host, room, occupant_id, message)? {
            return Ok(Some(refusal));
        }
    }
    Ok(None)
}

fn stamp_groupchat(host: &mut dyn Host, message: &mut Groupchat) -> Result<(), Fault> {
    ALL.iter()
        .try_for_each(|f| f.stamp_groupchat(host, message))
}

fn store_groupchat(host: &mut dyn Host, message: &Groupchat) -> Result<(), Fault> {
    ALL.iter()
        .try_for_each(|f| f.store_groupchat(host, message))
}

fn broadcast_groupchat(host: &mut dyn Host, message: &Groupchat) -> Result<(), Fault> {
    ALL.iter()
        .try_for_each(|f| f.broadcast_groupchat(host, message))
}

/// The pipeline after the check, for a message an occupant sent or a room extension said:
/// stamp, serialise once, store, send to every session in the room (from the session index:
/// one crossing whatever the size), then the broadcast stage.
pub fn relay_groupchat(host: &mut dyn Host, message: &mut Groupchat) -> Result<(), Fault> {
    stamp_groupchat(host, message)?;
    message.xml = String::from(&message.message);
    store_groupchat(host, message)?;
    host.broadcast_to_keys(
        &message.xml,
        Tier::Volatile,
        &keys::sessions(&message.room.jid),
    )?;
    broadcast_groupchat(host, message)
}

/// The feature that answers a non-groupchat message to the room, if one claims it.
pub fn room_message_owner(message: &Element) -> Option<&'static dyn RoomFeature> {
    ALL.iter().copied().find(|f| f.claims_room_message(message))
}

/// The feature that answers IQs to the room in `namespace`, if one claims it.
pub fn room_iq_owner(namespace: &str) -> Option<&'static dyn RoomFeature> {
    ALL.iter()
        .copied()
        .find(|f| f.room_iq_namespaces().contains(&namespace))
}

/// The feature that answers IQs to an occupant in `namespace`, if one claims it.
pub fn occupant_iq_owner(namespace: &str) -> Option<&'static dyn RoomFeature> {
    ALL.iter()
        .copied()
        .find(|f| f.occupant_iq_namespaces().contains(&namespace))
}

/// Hands an occupant's IQ to an occupant in an unclaimed namespace to the first feature that
/// takes it; false: none did.
pub fn unclaimed_occupant_iq(host: &mut dyn Host, iq: &OccupantIq) -> Result<bool, Fault> {
    for feature in ALL {
        if feature.unclaimed_occupant_iq(host, iq)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A `result` or `error` IQ to `room/nick`, for the feature whose request it answers; otherwise
/// dropped.
pub fn occupant_iq_reply(host: &mut dyn Host, reply: &Inbound, nick: &str) -> Result<(), Fault> {
    for feature in ALL {
        if feature.occupant_iq_reply(host, reply, nick)? {
            return Ok(());
        }
    }
    Ok(())
}

/// The configuration form's fields: every feature's own, then those read from the store.
pub fn form_fields(host: &mut dyn Host, room: &Room) -> Result<Vec<Field>, Fault> {
    let mut fields: Vec<Field> = ALL
        .iter()
        .flat_map(|feature| feature.fields().iter())
        .map(|spec| spec.render(&room.config))
        .collect();
    for feature in ALL {
        fields.extend(feature.form_fields(host, room)?);
    }
    Ok(fields)
}

/// The first feature's objection to a submitted form, in list order.
pub fn validate_config(
    host: &mut dyn Host,
    submit: &ConfigSubmit,
) -> Result<Result<(), Invalid>, Fault> {
    for feature in ALL {
        if let Err(invalid) = feature.validate_config(host, submit)? {
            return Ok(Err(invalid));
        }
    }
    Ok(Ok(()))
}

pub fn configured(host: &mut dyn Host, submit: &ConfigSubmit) -> Result<(), Fault> {
    ALL.iter().try_for_each(|f| f.configured(host, submit))
}

pub fn change_statuses(before: &Config, after: &Config) -> Vec<Status> {
    ALL.iter()
        .flat_map(|f| f.change_statuses(before, after))
        .collect()
}

pub fn commands() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    ALL.iter().flat_map(|f| f.commands())
}

pub fn disco_features(room: &Room) -> Vec<&'static str> {
    ALL.iter().flat_map(|f| f.disco_features(room)).collect()
}

pub fn room_info(room: &Room) -> Vec<Field> {
    ALL.iter().flat_map(|f| f.room_info(room)).collect()
}

/// The `muc#roominfo` fields read from the store.
pub fn stored_room_info(host: &mut dyn Host, room: &Room) -> Result<Vec<Field>, Fault> {
    let mut fields = Vec::new();
    for feature in ALL {
        fields.extend(feature.stored_room_info(host, room)?);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_and_claimed_namespace_has_one_owner() {
        let vars: Vec<&str> = ALL
            .iter()
            .flat_map(|f| f.fields().iter().map(|spec| spec.var))
            .collect();
        let room_namespaces: Vec<&str> = ALL
            .iter()
            .flat_map(|f| f.room_iq_namespaces().iter().copied())
            .collect();
        let occupant_namespaces: Vec<&str> = ALL
            .iter()
            .flat_map(|f| f.occupant_iq_namespaces().iter().copied())
            .collect();
        for list in [vars, room_namespaces, occupant_namespaces] {
            let mut unique = list.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), list.len(), "claimed twice: {list:?}");
        }
    }

    #[test]
    fn claimed_namespaces_route_to_their_feature() {
        let register = room_iq_owner(registration::NS).expect("registration claims its namespace");
        assert_eq!(register.room_iq_namespaces(), [registration::NS]);
        let mam = room_iq_owner(archive::NS).expect("the archive claims MAM");
        assert_eq!(mam.room_iq_namespaces(), [archive::NS]);
        assert!(room_iq_owner("urn:example:nobody").is_none());
    }
}
