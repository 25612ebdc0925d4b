//! The server side of PLAIN (RFC 4616): `authzid NUL authcid NUL password`, checked against the
//! stored SCRAM-SHA-256 credential.

use jid::{BareJid, DomainRef};

use super::accounts::Accounts;
use super::credentials::{prepare_password, ScramHash};
use super::step::{SaslFailure, Step};

/// In insecure mode any password is accepted for any valid local username. Also the account the
/// message names, when it names a valid one, whatever the outcome.
pub(super) fn authenticate(
    message: &[u8],
    domain: &DomainRef,
    insecure: bool,
    accounts: &Accounts,
) -> (Option<BareJid>, Step) {
    let (named, checked) = match parse(message) {
        Ok((authzid, username, password)) => {
            let jid = domain.with_node_str(username).ok();
            let checked = check(authzid, username, password, jid.clone(), insecure, accounts);
            (jid, checked)
        }
        Err(failure) => (None, Err(failure)),
    };
    let step = match checked {
        Ok(jid) => Step::Success {
            jid,
            additional_data: None,
        },
        Err(failure) => Step::Failure(failure),
    };
    (named, step)
}

/// `(authzid, username, password)`.
fn parse(message: &[u8]) -> Result<(&str, &str, &str), SaslFailure> {
    let message = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let mut fields = message.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    if username.is_empty() || password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok((authzid, username, password))
}

fn check(
    authzid: &str,
    username: &str,
    password: &str,
    jid: Option<BareJid>,
    insecure: bool,
    accounts: &Accounts,
) -> Result<BareJid, SaslFailure> {
    if !insecure {
        check_password(jid.as_ref(), username, password, accounts)?;
    }
    let jid = jid.ok_or(SaslFailure::NotAuthorized)?;
    if !authzid.is_empty() && BareJid::new(authzid).ok().as_ref() != Some(&jid) {
        return Err(SaslFailure::InvalidAuthzid);
    }
    Ok(jid)
}

/// Derives the key even for an unknown user (against its decoy), so the time taken does not tell.
fn check_password(
    jid: Option<&BareJid>,
    username: &str,
    password: &str,
    accounts: &Accounts,
) -> Result<(), SaslFailure> {
    let stored = match jid {
        Some(jid) => accounts
            .credential(jid, ScramHash::Sha256)
            .map_err(|_| SaslFailure::TemporaryAuthFailure)?,
        None => None,
    };
    let known = stored.is_some();
    let credential =
        stored.unwrap_or_else(|| accounts.decoy_credential(ScramHash::Sha256, username));
    let prepared = prepare_password(password).ok_or(SaslFailure::NotAuthorized)?;
    if credential.matches_password(&prepared) && known {
        Ok(())
    } else {
        Err(SaslFailure::NotAuthorized)
    }
}
