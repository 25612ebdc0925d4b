//! The server side of SCRAM (RFC 5802, RFC 7677) without channel binding.
//!
//! Hand-written on the RustCrypto primitives: rsasl, the one crate with a SCRAM server, reports
//! unknown users at once, compares keys in variable time and brings a second digest family.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use jid::{BareJid, DomainRef};

use super::accounts::Accounts;
use super::credentials::{ScramCredential, ScramHash};
use super::step::{SaslFailure, Step};

/// Random bytes in the server's half of the nonce (24 base64 characters).
const SERVER_NONCE_BYTES: usize = 18;

/// What the server remembers between its first message and the client's final one.
pub(super) struct AwaitingClientFinal {
    /// None when the username is no valid localpart: treated as an unknown user.
    jid: Option<BareJid>,
    known: bool,
    credential: ScramCredential,
    authzid: Option<String>,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl AwaitingClientFinal {
    /// The account the client-first message named, when it is a valid one.
    pub(super) fn account(&self) -> Option<&BareJid> {
        self.jid.as_ref()
    }
}

pub(super) fn new_server_nonce() -> Result<String, SaslFailure> {
    let mut bytes = [0; SERVER_NONCE_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| SaslFailure::TemporaryAuthFailure)?;
    Ok(BASE64.encode(bytes))
}

/// Reads the client-first message and answers with the server-first one. An unknown user gets a
/// decoy credential so that this answer does not tell; the proof fails later.
pub(super) fn receive_client_first(
    hash: ScramHash,
    domain: &DomainRef,
    message: &[u8],
    accounts: &Accounts,
    server_nonce: &str,
) -> Result<(AwaitingClientFinal, Vec<u8>), SaslFailure> {
    let message = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    let (gs2_flag, after_flag) = message
        .split_once(',')
        .ok_or(SaslFailure::MalformedRequest)?;
    // "y": the client could bind the channel but thinks we cannot, which is true; "p=" asks for
    // binding, which only the -PLUS mechanisms (not offered) do.
    if gs2_flag != "n" && gs2_flag != "y" {
        return Err(SaslFailure::MalformedRequest);
    }
    let (authzid, client_first_bare) = after_flag
        .split_once(',')
        .ok_or(SaslFailure::MalformedRequest)?;
    let authzid = match authzid {
        "" => None,
        field => Some(attribute(field, "a=").and_then(decode_saslname)?),
    };
    let gs2_header = &message[..message.len() - client_first_bare.len()];

    let mut attributes = client_first_bare.split(',');
    let username = attributes.next().unwrap_or_default();
    // A mandatory extension ("m=") we do not know must fail the exchange.
    let username = decode_saslname(attribute(username, "n=")?)?;
    let client_nonce = attribute(attributes.next().unwrap_or_default(), "r=")?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(is_nonce_char) {
        return Err(SaslFailure::MalformedRequest);
    }

    let jid = domain.with_node_str(&username).ok();
    let stored = match &jid {
        Some(jid) => accounts
            .credential(jid, hash)
            .map_err(|_| SaslFailure::TemporaryAuthFailure)?,
        None => None,
    };
    let known = stored.is_some();
    let credential = stored.unwrap_or_else(|| accounts.decoy_credential(hash, &username));

    let nonce = format!("{client_nonce}{server_nonce}");
    let server_first = format!(
        "r={nonce},s={},i={}",
        BASE64.encode(&credential.salt),
        credential.iterations
    );
    let reply = server_first.clone().into_bytes();
    let state = AwaitingClientFinal {
        jid,
        known,
        credential,
        authzid,
        gs2_header: gs2_header.to_owned(),
        client_first_bare: client_first_bare.to_owned(),
        server_first,
        nonce,
    };
    Ok((state, reply))
}

/// Reads the client-final message: checks the channel-binding echo, the nonce and the proof,
/// then the authzid; success carries the server-final message (`v=`) as additional data.
pub(super) fn receive_client_final(state: AwaitingClientFinal, message: &[u8]) -> Step {
    match check_client_final(state, message) {
        Ok(step) => step,
        Err(failure) => Step::Failure(failure),
    }
}

fn check_client_final(state: AwaitingClientFinal, message: &[u8]) -> Result<Step, SaslFailure> {
    let message = std::str::from_utf8(message).map_err(|_| SaslFailure::MalformedRequest)?;
    // The proof is the last attribute, and the AuthMessage covers everything before it.
    let (without_proof, proof) = message
        .rsplit_once(",p=")
        .ok_or(SaslFailure::MalformedRequest)?;
    let proof = BASE64
        .decode(proof)
        .map_err(|_| SaslFailure::MalformedRequest)?;
    let mut attributes = without_proof.split(',');
    let channel_binding = attribute(attributes.next().unwrap_or_default(), "c=")?;
    let channel_binding = BASE64
        .decode(channel_binding)
        .map_err(|_| SaslFailure::MalformedRequest)?;
    let nonce = attribute(attributes.next().unwrap_or_default(), "r=")?;
    if proof.len() != state.credential.hash.output_len() {
        return Err(SaslFailure::MalformedRequest);
    }
    // A different gs2 header here than in the first message would be a downgrade.
    if channel_binding != state.gs2_header.as_bytes() || nonce != state.nonce {
        return Err(SaslFailure::NotAuthorized);
    }

    let auth_message = format!(
        "{},{},{without_proof}",
        state.client_first_bare, state.server_first
    );
    let proven = state
        .credential
        .verify_proof(auth_message.as_bytes(), &proof);
    let jid = match state.jid {
        Some(jid) if proven && state.known => jid,
        _ => return Err(SaslFailure::NotAuthorized),
    };
    if let Some(authzid) = state.authzid {
        if BareJid::new(&authzid).ok().as_ref() != Some(&jid) {
            return Err(SaslFailure::InvalidAuthzid);
        }
    }
    let server_signature = state.credential.server_signature(auth_message.as_bytes());
    let server_final = format!("v={}", BASE64.encode(server_signature));
    Ok(Step::Success {
        jid,
        additional_data: Some(server_final.into_bytes()),
    })
}

fn attribute<'a>(field: &'a str, name: &str) -> Result<&'a str, SaslFailure> {
    field
        .strip_prefix(name)
        .ok_or(SaslFailure::MalformedRequest)
}

/// RFC 5802 saslname: "," and "=" travel as "=2C" and "=3D"; any other "=" is malformed.
fn decode_saslname(encoded: &str) -> Result<String, SaslFailure> {
    let mut decoded = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        decoded.push(match rest.get(at + 1..at + 3) {
            Some("2C") => ',',
            Some("3D") => '=',
            _ => return Err(SaslFailure::MalformedRequest),
        });
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    if decoded.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(decoded)
}

/// RFC 5802 "printable": visible ASCII except ",".
fn is_nonce_char(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && byte != b','
}

#[cfg(test)]
mod tests {
    use super::*;
    use jid::DomainPart;

    fn domain() -> DomainPart {
        DomainPart::new("example.org").unwrap().into_owned()
    }

    /// The accounts of both RFC examples: user "user", password "pencil", their salts.
    fn rfc_accounts() -> Accounts {
        let accounts = Accounts::in_memory();
        let salt = |text| BASE64.decode(text).unwrap();
        let sha1 =
            ScramCredential::derive(ScramHash::Sha1, "pencil", salt("QSXCR+Q6sek8bf92"), 4096);
        let sha256 = ScramCredential::derive(
            ScramHash::Sha256,
            "pencil",
            salt("W22ZaJ0SNY7soEsUEjb6gQ=="),
            4096,
        );
        let user = BareJid::new("user@example.org").unwrap();
        assert!(accounts.store(&user, &sha1, &sha256, false).unwrap());
        accounts
    }

    /// Plays an RFC example with its fixed nonces: every server message must match byte for byte.
    fn check_rfc_example(hash: ScramHash, messages: [&str; 6]) {
        let [client_first, server_nonce, server_first, client_final, server_final, _] = messages;
        let accounts = rfc_accounts();
        let (state, reply) = receive_client_first(
            hash,
            &domain(),
            client_first.as_bytes(),
            &accounts,
            server_nonce,
        )
        .unwrap();
        assert_eq!(String::from_utf8(reply).unwrap(), server_first);
        match receive_client_final(state, client_final.as_bytes()) {
            Step::Success {
                jid,
                additional_data,
            } => {
                assert_eq!(jid.as_str(), "user@example.org");
                assert_eq!(additional_data.unwrap(), server_final.as_bytes());
            }
            other => panic!("expected success, got {other:?}"),
        }
    }

    #[test]
    fn rfc_5802_scram_sha_1_example() {
        check_rfc_example(
            ScramHash::Sha1,
            [
                "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "3rfcNHYJY1ZVvWVs7j",
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
                "",
            ],
        );
    }

    #[test]
    fn rfc_7677_scram_sha_256_example() {
        check_rfc_example(
            ScramHash::Sha256,
            [
                "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
                "",
            ],
        );
    }

    #[test]
    fn saslnames_decode_their_escapes_only() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        for bad in ["", "a=", "a=2", "a=2c", "a=41", "=3"] {
            assert_eq!(
                decode_saslname(bad),
                Err(SaslFailure::MalformedRequest),
                "{bad}"
            );
        }
    }

    fn first(message: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        let accounts = rfc_accounts();
        receive_client_first(ScramHash::Sha256, &domain(), message, &accounts, "sn")
            .map(|(_, reply)| reply)
    }

    #[test]
    fn client_first_variants() {
        assert!(first(b"n,,n=user,r=abc").is_ok());
        assert!(first(b"y,,n=user,r=abc").is_ok());
        assert!(first(b"n,a=user@example.org,n=user,r=abc").is_ok());
        assert!(first(b"n,,n=user,r=abc,x=ignored-extension").is_ok());
        for malformed in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"p=tls-unique,,n=user,r=abc",
            b"p=tls-exporter,,n=user,r=abc",
            b"x,,n=user,r=abc",
            b"n,user,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=user",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,r=abc,n=user",
            b"n,,n=us=er,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=\xff,r=abc",
        ] {
            assert_eq!(
                first(malformed),
                Err(SaslFailure::MalformedRequest),
                "{}",
                String::from_utf8_lossy(malformed)
            );
        }
    }

    #[test]
    fn unknown_users_get_a_stable_salt_like_a_real_one() {
        let accounts = rfc_accounts();
        let reply = |user: &str| {
            let message = format!("n,,n={user},r=abc");
            let (_, reply) = receive_client_first(
                ScramHash::Sha256,
                &domain(),
                message.as_bytes(),
                &accounts,
                "sn",
            )
            .unwrap();
            String::from_utf8(reply).unwrap()
        };
        assert_eq!(reply("nobody"), reply("nobody"));
        assert_ne!(reply("nobody"), reply("someone"));
        assert!(reply("nobody").ends_with("==,i=4096"));
        // Not a valid localpart at all: still no early answer.
        assert!(reply("a@b").starts_with("r=abcsn,s="));
    }

    fn final_with(client_final: &str) -> Step {
        let accounts = rfc_accounts();
        let (state, _) = receive_client_first(
            ScramHash::Sha1,
            &domain(),
            b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            &accounts,
            "3rfcNHYJY1ZVvWVs7j",
        )
        .unwrap();
        receive_client_final(state, client_final.as_bytes())
    }

    #[test]
    fn client_final_variants() {
        let nonce = "fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let proof = "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
        let wrong_proof = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let failure = |message: String| match final_with(&message) {
            Step::Failure(failure) => failure,
            other => panic!("{message}: expected a failure, got {other:?}"),
        };
        use SaslFailure::*;
        assert_eq!(
            failure(format!("c=biws,r={nonce},p={wrong_proof}")),
            NotAuthorized
        );
        // The header echoed back must be the one sent ("y,," is not "n,,").
        assert_eq!(
            failure(format!("c=eSws,r={nonce},p={proof}")),
            NotAuthorized
        );
        assert_eq!(
            failure(format!("c=biws,r={nonce}x,p={proof}")),
            NotAuthorized
        );
        for malformed in [
            String::new(),
            "garbage".into(),
            format!("c=biws,r={nonce}"),
            format!("c=biws,r={nonce},p="),
            format!("c=biws,r={nonce},p=!!!"),
            format!("c=biws,r={nonce},p=AAAA"),
            format!("c=!!,r={nonce},p={proof}"),
            format!("r={nonce},c=biws,p={proof}"),
            format!("c=biws,p={proof}"),
            format!(",p={proof}"),
        ] {
            assert_eq!(failure(malformed), MalformedRequest);
        }
        assert!(matches!(
            final_with(&format!("c=biws,r={nonce},p={proof}")),
            Step::Success { .. }
        ));
    }
}
