//! The server side of ANONYMOUS (RFC 4505, XEP-0175): whoever asks becomes a guest, a fresh JID
//! at the guest domain that belongs to no account and that nothing is kept about. The client's
//! trace message (an email address, a token, or nothing) is only checked for its form.

use jid::{BareJid, DomainRef};

use super::step::{SaslFailure, Step};

/// RFC 4505 §3: the trace message is at most 255 characters of UTF-8.
const MAX_TRACE_CHARS: usize = 255;

pub(super) fn authenticate(trace: &[u8], guest_domain: &DomainRef) -> Step {
    let well_formed =
        std::str::from_utf8(trace).is_ok_and(|trace| trace.chars().count() <= MAX_TRACE_CHARS);
    if !well_formed {
        return Step::Failure(SaslFailure::MalformedRequest);
    }
    Step::Success {
        jid: guest_jid(guest_domain),
        additional_data: None,
    }
}

/// A JID nobody can guess or has had: 122 random bits (a version 4 UUID) in hex.
fn guest_jid(domain: &DomainRef) -> BareJid {
    let localpart = uuid::Uuid::new_v4().simple().to_string();
    domain
        .with_node_str(&localpart)
        .expect("32 hex digits are a valid localpart")
}
