//! Room features, one module each. A feature declares its configuration fields and hooks into
//! the core's events: a join (may refuse, may add self-presence statuses), a configuration change
//! (may add status codes to the 104 notice), disco#info (features and `muc#roominfo` fields).
//! The core walks [`ALL`] at each event; a feature is read in one file.

pub mod affiliation_lists;
pub mod archive;
pub mod history;
pub mod invitations;
pub mod lock;
pub mod logging;
pub mod max_users;
pub mod member_list;
pub mod members_only;
pub mod moderated;
pub mod naming;
pub mod occupant_id;
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

use xmpp_parsers::data_forms::Field;
use xmpp_parsers::muc::user::{Affiliation, Status};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::config::{Config, FieldSpec};
use crate::room::Room;

/// Who is asking to enter, as a join check sees them.
pub struct Joiner<'a> {
    pub affiliation: &'a Affiliation,
    /// The password the join carried, if any.
    pub password: Option<&'a str>,
    /// Occupants in the room now, the joiner excluded.
    pub occupant_count: usize,
}

/// A refused join: the error the joiner gets.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub type_: ErrorType,
    pub condition: DefinedCondition,
}

pub trait RoomFeature: Sync {
    /// The `muc#roomconfig` fields this feature owns.
    fn fields(&self) -> &'static [FieldSpec] {
        &[]
    }

    /// A join this feature forbids.
    fn check_join(&self, _room: &Room, _joiner: &Joiner) -> Option<Refusal> {
        None
    }

    /// Status codes on the joiner's own presence (XEP-0045 §7.2.2-7.2.12).
    fn join_statuses(&self, _room: &Room) -> Vec<Status> {
        Vec::new()
    }

    /// Status codes announcing a configuration change (XEP-0045 §10.2.1), beside 104.
    fn change_statuses(&self, _before: &Config, _after: &Config) -> Vec<Status> {
        Vec::new()
    }

    /// Features in the room's disco#info (`muc_*`, and the namespaces the feature answers).
    fn disco_features(&self, _room: &Room) -> Vec<&'static str> {
        Vec::new()
    }

    /// Fields of the room's `muc#roominfo` form.
    fn room_info(&self, _room: &Room) -> Vec<Field> {
        Vec::new()
    }
}

/// Every feature, in the order their fields appear in the configuration form.
pub const ALL: &[&dyn RoomFeature] = &[
    &naming::Naming,
    &persistent::Persistent,
    &public::Public,
    &moderated::Moderated,
    &members_only::MembersOnly,
    &password::Password,
    &max_users::MaxUsers,
    &outcasts::Outcasts,
    &whois::Whois,
    &presence_broadcast::PresenceBroadcast,
    &subject::ChangeSubject,
    &private_messages::AllowPm,
    &invitations::Invitations,
    &member_list::MemberList,
    &logging::Logging,
    &history::History,
    &archive::Archive,
    &lock::Lock,
    &occupant_id::OccupantId,
    &stable_id::StableId,
    &registration::Registration,
];

/// The declaration of the configuration field `var`, if a feature owns one.
pub fn field(var: &str) -> Option<&'static FieldSpec> {
    ALL.iter()
        .flat_map(|feature| feature.fields().iter())
        .find(|spec| spec.var == var)
}
