//! What one step of a SASL exchange answers (RFC 6120 §6): the words every mechanism and the
//! exchange around them share, so the mechanisms need not know the exchange.

use jid::BareJid;
use xmpp_parsers::sasl::DefinedCondition;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `<challenge/>` with these bytes and wait for a `<response/>`.
    Challenge(Vec<u8>),
    /// Send `<success/>`, with the additional data if any (SCRAM's server-final message).
    Success {
        jid: BareJid,
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>` with this condition; the exchange is over.
    Failure(SaslFailure),
}

/// RFC 6120 §6.5 failure conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslFailure {
    Aborted,
    EncryptionRequired,
    IncorrectEncoding,
    /// The authzid is not the authenticated JID (checked only once the password is proven).
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The condition inside `<failure/>`.
    pub fn condition(self) -> DefinedCondition {
        match self {
            SaslFailure::Aborted => DefinedCondition::Aborted,
            SaslFailure::EncryptionRequired => DefinedCondition::EncryptionRequired,
            SaslFailure::IncorrectEncoding => DefinedCondition::IncorrectEncoding,
            SaslFailure::InvalidAuthzid => DefinedCondition::InvalidAuthzid,
            SaslFailure::InvalidMechanism => DefinedCondition::InvalidMechanism,
            SaslFailure::MalformedRequest => DefinedCondition::MalformedRequest,
            SaslFailure::NotAuthorized => DefinedCondition::NotAuthorized,
            SaslFailure::TemporaryAuthFailure => DefinedCondition::TemporaryAuthFailure,
        }
    }
}
