//! What the core and the room features share: the inbound stanza, the service context, the
//! payload of each event the core fires, and the [`RoomFeature`] trait that answers them.
//!
//! A leaf: it imports plugin infrastructure (host, store records, configuration), never a
//! feature, the list of features or the core's modules, so a feature that imports it imports
//! nothing else of the core's.

use std::collections::BTreeMap;

use jid::Jid;
use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, Field};
use xmpp_parsers::muc::muc::History;
use xmpp_parsers::muc::user::{Affiliation, Role, Status};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::affiliation;
use crate::config::{Config, FieldSpec, Invalid};
use crate::host::{Envelope, Fault, Host, Tier};
use crate::occupant::Occupant;
use crate::room::Room;

/// Rooms one user may have created that still exist, when the host does not say.
pub const DEFAULT_MAX_ROOMS_PER_USER: u32 = 100;

#[derive(Clone, Debug)]
pub struct Settings {
    /// The MUC service's domain.
    pub service: String,
    /// Service administrators' bare JIDs: owners of every room.
    pub admins: Vec<String>,
    /// Rooms one user who is not an administrator may have created that still exist (the
    /// host's setting `max-rooms-per-user`); 0: no limit.
    pub max_rooms_per_user: u32,
    /// The domain of the host's guests, users without an account (the host's setting
    /// `guest-domain`); None: no guests.
    pub guest_domain: Option<String>,
    /// Which rooms guests may enter (the host's setting `guest-rooms`).
    pub guest_rooms: GuestRooms,
}

/// Which rooms guests may enter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GuestRooms {
    /// Public rooms (that do not refuse them otherwise: members-only, a password...).
    #[default]
    Public,
    /// None.
    Nowhere,
}

impl GuestRooms {
    /// The host's words for it: `public`, `none`.
    pub fn from_name(name: &str) -> Option<GuestRooms> {
        match name {
            "public" => Some(GuestRooms::Public),
            "none" => Some(GuestRooms::Nowhere),
            _ => None,
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            service: String::new(),
            admins: Vec::new(),
            max_rooms_per_user: DEFAULT_MAX_ROOMS_PER_USER,
            guest_domain: None,
            guest_rooms: GuestRooms::default(),
        }
    }
}

/// One instance's view of the service. Holds no room state: that lives in the host's store.
pub struct Muc {
    pub settings: Settings,
}

impl Muc {
    pub fn new(settings: Settings) -> Muc {
        Muc { settings }
    }

    pub fn is_service_admin(&self, bare_jid: &str) -> bool {
        self.settings.admins.iter().any(|admin| admin == bare_jid)
    }

    /// Whether `bare_jid` is a guest's: a session of the host's guest domain, with no account.
    pub fn is_guest(&self, bare_jid: &str) -> bool {
        let domain = bare_jid
            .rsplit_once('@')
            .map_or(bare_jid, |(_, domain)| domain);
        self.settings.guest_domain.as_deref() == Some(domain)
    }

    /// A user's affiliation with a room; service administrators own every room.
    pub fn affiliation(
        &self,
        host: &mut dyn Host,
        room: &str,
        bare_jid: &str,
    ) -> Result<Affiliation, Fault> {
        if self.is_service_admin(bare_jid) {
            return Ok(Affiliation::Owner);
        }
        affiliation::get(host, room, bare_jid)
    }

    /// [`Muc::affiliation`], from the room's affiliations read beforehand ([`affiliation::all`]).
    pub fn affiliation_in(
        &self,
        stored: &BTreeMap<String, Affiliation>,
        bare_jid: &str,
    ) -> Affiliation {
        if self.is_service_admin(bare_jid) {
            return Affiliation::Owner;
        }
        stored.get(bare_jid).cloned().unwrap_or(Affiliation::None)
    }
}

/// An inbound stanza, parsed once.
pub struct Inbound<'a> {
    pub envelope: &'a Envelope,
    pub element: Element,
    /// The sender, parsed and normalised.
    pub from: Jid,
    /// The addressee, parsed and normalised.
    pub to: Jid,
}

/// Who is asking to enter, as a join check sees them.
pub struct Joiner<'a> {
    pub affiliation: &'a Affiliation,
    /// The password the join carried, if any.
    pub password: Option<&'a str>,
    /// Occupants in the room now, the joiner excluded.
    pub occupant_count: usize,
    /// When the joiner is a guest: which rooms guests may enter.
    pub guest: Option<GuestRooms>,
}

/// A refused join or message: the error the sender gets.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub type_: ErrorType,
    pub condition: DefinedCondition,
    /// Why, when the condition alone would leave the sender guessing.
    pub text: Option<&'static str>,
}

/// A session that has just entered (or re-synchronised), after it got the occupants' presence
/// and its own.
pub struct Joined<'a> {
    pub room: &'a Room,
    /// Whom the join state is for: which real JIDs it may show depends on its role.
    #[expect(dead_code, reason = "no feature shows real JIDs in the join state yet")]
    pub occupant: &'a Occupant,
    /// The joining session's full JID: where what the event sends goes.
    pub to: &'a str,
    /// The `<history/>` the join asked for, if any.
    pub history: Option<&'a History>,
}

/// A groupchat message on its way through the pipeline: check, stamp, store, broadcast.
pub struct Groupchat<'a> {
    pub room: &'a Room,
    /// Who sent it. None: said by a room extension (from `room/nick`) or the room itself.
    pub sender: Option<Sender<'a>>,
    /// The room's id for this message (XEP-0359 `stanza-id`), made before the stamp stage.
    pub stanza_id: String,
    /// The sender's occupant id (XEP-0421), once the stamp stage set it.
    pub occupant_id: Option<String>,
    /// A subject change (XEP-0045 §8.1) rather than a message.
    pub changes_subject: bool,
    /// The message as the room relays it: from `room/nick`, no `to`.
    pub message: Element,
    /// `message` serialised, after the stamp stage: what is stored and broadcast.
    pub xml: String,
}

impl<'a> Groupchat<'a> {
    /// A message no occupant sent (a room extension's, the room's own), before the stamp stage.
    pub fn unsent(room: &'a Room, stanza_id: String, message: Element) -> Groupchat<'a> {
        Groupchat {
            room,
            sender: None,
            stanza_id,
            occupant_id: None,
            changes_subject: false,
            message,
            xml: String::new(),
        }
    }
}

/// The occupant behind a groupchat message, and which of its sessions sent it.
#[derive(Clone, Copy)]
pub struct Sender<'a> {
    /// Nickname, real bare JID, sessions, role.
    pub occupant: &'a Occupant,
    /// The sending session's full JID.
    pub session: &'a str,
}

/// An IQ to the room (`to` is `room/nick` for [`RoomFeature::occupant_iq`]) in a namespace a
/// feature claimed.
pub struct RoomIq<'a> {
    pub muc: &'a Muc,
    pub inbound: &'a Inbound<'a>,
    pub room: &'a Room,
    /// The IQ's payload, whose namespace routed it.
    pub query: &'a Element,
    pub core: &'a dyn Core,
}

/// An IQ request (`get` or `set`) from an occupant to an occupant (`room/nick`, itself included)
/// in a namespace no feature claims, once the core checked that both are in the room.
pub struct OccupantIq<'a> {
    pub inbound: &'a Inbound<'a>,
    pub room: &'a Room,
    /// The occupant the asking session is.
    pub sender: &'a Occupant,
    /// The occupant holding the nickname asked.
    pub target: &'a Occupant,
    /// The IQ's payload.
    pub query: &'a Element,
}

/// A message to the room that is neither groupchat nor an error (invitations, voice requests).
pub struct RoomMessage<'a> {
    pub muc: &'a Muc,
    pub inbound: &'a Inbound<'a>,
    pub room: &'a Room,
    pub core: &'a dyn Core,
}

/// A submitted configuration form, valid field by field, before or after it is saved.
pub struct ConfigSubmit<'a> {
    /// The room with the new configuration (saved, for [`RoomFeature::configured`]).
    pub room: &'a Room,
    /// Where the room's data lived before the change.
    pub before_tier: Tier,
    pub form: &'a DataForm,
    pub core: &'a dyn Core,
}

/// Who changed an affiliation or role: their nickname and full JID, when they are in the room.
pub type ChangedBy = Option<(String, String)>;

/// What a feature may ask the core to do on its behalf: announced occupant changes, which
/// only the core knows how to tell the room.
pub trait Core {
    /// The occupant stays with a new role (or affiliation): everyone sees its new presence.
    #[allow(clippy::too_many_arguments)]
    fn change_role(
        &self,
        host: &mut dyn Host,
        room: &Room,
        occupant: Occupant,
        affiliation: Affiliation,
        role: Role,
        reason: Option<String>,
        by: ChangedBy,
    ) -> Result<(), Fault>;

    /// Tells the room of a user's new affiliation (already stored): their occupants' new
    /// presence or removal, or a notice if they are absent.
    #[allow(clippy::too_many_arguments)]
    fn announce_affiliation(
        &self,
        host: &mut dyn Host,
        room: &Room,
        bare_jid: &str,
        occupants: Vec<Occupant>,
        new: Affiliation,
        reason: Option<String>,
        by: ChangedBy,
    ) -> Result<(), Fault>;

    /// Sends `message` (a groupchat message from the room's bare JID, without `to`) through
    /// the groupchat pipeline after its check: stamped with a stanza-id, archived, broadcast.
    fn relay_from_room(
        &self,
        host: &mut dyn Host,
        room: &Room,
        message: Element,
    ) -> Result<(), Fault>;
}

/// A room feature: its configuration fields and the events it answers. Every hook does nothing
/// by default; the core fires each event over `features::ALL`, in that list's order.
pub trait RoomFeature: Sync {
    /// The `muc#roomconfig` fields this feature owns.
    fn fields(&self) -> &'static [FieldSpec] {
        &[]
    }

    // Room life.

    /// A room was just made (locked, its creator its owner).
    fn created(&self, _host: &mut dyn Host, _room: &Room) -> Result<(), Fault> {
        Ok(())
    }

    /// A room is gone: its record and keys are deleted; what the feature keeps elsewhere goes.
    fn destroyed(&self, _host: &mut dyn Host, _room: &Room) -> Result<(), Fault> {
        Ok(())
    }

    // Occupants.

    /// A join this feature forbids (the first refusal in list order is the answer).
    fn check_join(&self, _room: &Room, _joiner: &Joiner) -> Option<Refusal> {
        None
    }

    /// Status codes on the joiner's own presence (XEP-0045 §7.2.2-7.2.12).
    fn join_statuses(&self, _room: &Room) -> Vec<Status> {
        Vec::new()
    }

    /// First after the joiner's own presence: the messages it missed (history).
    fn catch_up(&self, _host: &mut dyn Host, _joined: &Joined) -> Result<(), Fault> {
        Ok(())
    }

    /// Then, after every feature's catch-up: the rest of the join state (the subject).
    fn joined(&self, _host: &mut dyn Host, _joined: &Joined) -> Result<(), Fault> {
        Ok(())
    }

    /// Every presence the room shows of an occupant, once the core built it (for one audience):
    /// the feature adds what it owns there and removes what a client forged of it.
    fn stamp_presence(
        &self,
        _host: &mut dyn Host,
        _room: &Room,
        _occupant: &Occupant,
        _presence: &mut Element,
    ) -> Result<(), Fault> {
        Ok(())
    }

    /// An occupant's presence changed (status, show), already broadcast.
    fn presence_changed(
        &self,
        _host: &mut dyn Host,
        _room: &Room,
        _occupant: &Occupant,
    ) -> Result<(), Fault> {
        Ok(())
    }

    /// An occupant left (by itself, kicked, banned, or its client gone), already announced.
    fn left(&self, _host: &mut dyn Host, _room: &Room, _occupant: &Occupant) -> Result<(), Fault> {
        Ok(())
    }

    // The groupchat pipeline, in this order for each message.

    /// A message this feature refuses (voice, subject rights).
    fn check_groupchat(
        &self,
        _room: &Room,
        _sender: &Occupant,
        _message: &Element,
    ) -> Option<Refusal> {
        None
    }

    /// A message this feature refuses after reading the room's store or archive (a retraction
    /// or correction of someone else's message), with a text saying why. `occupant_id` is the
    /// sender's (XEP-0421).
    fn check_groupchat_stored(
        &self,
        _host: &mut dyn Host,
        _room: &Room,
        _occupant_id: &str,
        _message: &Element,
    ) -> Result<Option<(Refusal, &'static str)>, Fault> {
        Ok(None)
    }

    /// Adds (or replaces) elements of the message as relayed (stanza-id, occupant-id).
    fn stamp_groupchat(&self, _host: &mut dyn Host, _message: &mut Groupchat) -> Result<(), Fault> {
        Ok(())
    }

    /// Keeps what it needs of the stamped message (history, subject), before anyone gets it.
    fn store_groupchat(&self, _host: &mut dyn Host, _message: &Groupchat) -> Result<(), Fault> {
        Ok(())
    }

    /// The message has been sent to every occupant.
    fn broadcast_groupchat(&self, _host: &mut dyn Host, _message: &Groupchat) -> Result<(), Fault> {
        Ok(())
    }

    // Messages and IQs a feature claims.

    /// Whether this feature answers a non-groupchat message to the room.
    fn claims_room_message(&self, _message: &Element) -> bool {
        false
    }

    fn room_message(&self, _host: &mut dyn Host, _message: &RoomMessage) -> Result<(), Fault> {
        Ok(())
    }

    /// The payload namespaces of IQs to the room that this feature answers.
    fn room_iq_namespaces(&self) -> &'static [&'static str] {
        &[]
    }

    fn room_iq(&self, _host: &mut dyn Host, _iq: &RoomIq) -> Result<(), Fault> {
        Ok(())
    }

    /// The payload namespaces of IQs to an occupant (`room/nick`) that this feature answers.
    fn occupant_iq_namespaces(&self) -> &'static [&'static str] {
        &[]
    }

    fn occupant_iq(&self, _host: &mut dyn Host, _iq: &RoomIq, _nick: &str) -> Result<(), Fault> {
        Ok(())
    }

    /// Takes an [`OccupantIq`] in a namespace no feature claims (forwards it to the occupant's
    /// client); the first feature that takes it answers it, none: `service-unavailable`.
    fn unclaimed_occupant_iq(&self, _host: &mut dyn Host, _iq: &OccupantIq) -> Result<bool, Fault> {
        Ok(false)
    }

    /// A `result` or `error` IQ to an occupant (`room/nick`): whether it answered what this
    /// feature sent, and was dealt with. What no feature takes is dropped, never answered.
    fn occupant_iq_reply(
        &self,
        _host: &mut dyn Host,
        _reply: &Inbound,
        _nick: &str,
    ) -> Result<bool, Fault> {
        Ok(false)
    }

    // Configuration.

    /// Fields of the configuration form read from the store, after every feature's own fields.
    fn form_fields(&self, _host: &mut dyn Host, _room: &Room) -> Result<Vec<Field>, Fault> {
        Ok(Vec::new())
    }

    /// Refuses a submitted form this feature finds invalid beyond its fields' own parsing.
    fn validate_config(
        &self,
        _host: &mut dyn Host,
        _submit: &ConfigSubmit,
    ) -> Result<Result<(), Invalid>, Fault> {
        Ok(Ok(()))
    }

    /// The configuration is saved: act on it (move the data, apply lists, stop the lock).
    fn configured(&self, _host: &mut dyn Host, _submit: &ConfigSubmit) -> Result<(), Fault> {
        Ok(())
    }

    /// Status codes announcing a configuration change (XEP-0045 §10.2.1), beside 104.
    fn change_statuses(&self, _before: &Config, _after: &Config) -> Vec<Status> {
        Vec::new()
    }

    // Discovery.

    /// The ad-hoc commands (XEP-0050) the feature answers on the room, as (node, name): listed
    /// in the room's disco#items on the commands node.
    fn commands(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Features in the room's disco#info (`muc_*`, and the namespaces the feature answers).
    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        Vec::new()
    }

    /// Fields of the room's `muc#roominfo` form.
    fn room_info(&self, _room: &Room) -> Vec<Field> {
        Vec::new()
    }

    /// Fields of the room's `muc#roominfo` form read from the store, after every feature's own.
    fn stored_room_info(&self, _host: &mut dyn Host, _room: &Room) -> Result<Vec<Field>, Fault> {
        Ok(Vec::new())
    }
}
