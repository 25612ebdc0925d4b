//! One SASL exchange on one client connection (RFC 6120 §6): which mechanisms are offered, and
//! the steps from `<auth/>` to `<success/>` or `<failure/>`. Bytes in and out are decoded; base64
//! on the wire is the caller's.

use jid::{BareJid, DomainPart};

use super::accounts::Accounts;
use super::credentials::ScramHash;
use super::step::{SaslFailure, Step};
use super::{anonymous, plain, scram};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256,
    ScramSha1,
    Plain,
    /// Guests (RFC 4505, XEP-0175), when the service has a guest domain.
    Anonymous,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
            Mechanism::Anonymous => "ANONYMOUS",
        }
    }

    /// Mechanism names are case-sensitive (RFC 4422 §3.1).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        [
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
            Mechanism::Anonymous,
        ]
        .into_iter()
        .find(|mechanism| mechanism.name() == name)
    }
}

#[derive(Clone, Debug)]
pub struct AuthPolicy {
    /// The domain whose localparts are the usernames.
    pub domain: String,
    /// Whether the stream is encrypted.
    pub tls: bool,
    /// Tests only: any password is accepted for any local JID, as Prosody's mod_auth_insecure.
    pub insecure: bool,
    /// Where ANONYMOUS logs guests in; None: no guests, ANONYMOUS is not offered.
    pub guest_domain: Option<String>,
    /// Whether the stream may log accounts in: not a stream opened to the guest domain, which
    /// has no accounts and offers ANONYMOUS only.
    pub accounts: bool,
}

/// Mechanisms to advertise, in preference order. PLAIN only over TLS, since it sends the
/// password; in insecure mode only PLAIN, since SCRAM needs a stored credential to work.
/// ANONYMOUS last, under the same rule as the others: over TLS or in insecure mode (where a
/// stream without TLS gets as far as SASL).
pub fn offered(policy: &AuthPolicy) -> Vec<Mechanism> {
    let mut offered = if !policy.accounts {
        Vec::new()
    } else if policy.insecure {
        vec![Mechanism::Plain]
    } else if policy.tls {
        vec![
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ]
    } else {
        vec![Mechanism::ScramSha256, Mechanism::ScramSha1]
    };
    if policy.guest_domain.is_some() && (policy.tls || policy.insecure) {
        offered.push(Mechanism::Anonymous);
    }
    offered
}

pub struct SaslExchange {
    state: State,
    /// The account the client named, once it has (and when it names a valid one).
    account: Option<BareJid>,
}

enum State {
    AwaitingPlain {
        domain: DomainPart,
        insecure: bool,
    },
    /// The trace message; the domain is the guest domain.
    AwaitingAnonymous(DomainPart),
    AwaitingClientFirst(ScramHash, DomainPart),
    AwaitingClientFinal(Box<scram::AwaitingClientFinal>),
    Finished,
}

impl SaslExchange {
    /// `<auth mechanism=...>` with its decoded initial response (None when absent, Some(empty)
    /// for "="). PLAIN or ANONYMOUS refused for want of TLS fails with EncryptionRequired; a
    /// mechanism not offered otherwise, or unknown, with InvalidMechanism (ANONYMOUS without a
    /// guest domain too).
    pub fn start(
        mechanism: &str,
        initial: Option<&[u8]>,
        policy: &AuthPolicy,
        accounts: &Accounts,
    ) -> (SaslExchange, Step) {
        let mut exchange = SaslExchange {
            state: State::Finished,
            account: None,
        };
        let mechanism = match Mechanism::from_name(mechanism) {
            Some(mechanism) if offered(policy).contains(&mechanism) => mechanism,
            Some(Mechanism::Plain) if policy.accounts && !policy.tls => {
                return (exchange, Step::Failure(SaslFailure::EncryptionRequired))
            }
            Some(Mechanism::Anonymous) if policy.guest_domain.is_some() && !policy.tls => {
                return (exchange, Step::Failure(SaslFailure::EncryptionRequired))
            }
            _ => return (exchange, Step::Failure(SaslFailure::InvalidMechanism)),
        };
        let domain = match (mechanism, &policy.guest_domain) {
            (Mechanism::Anonymous, Some(guests)) => guests,
            _ => &policy.domain,
        };
        // A configured domain that is no valid domain is the server's fault, not the client's.
        let Ok(domain) = DomainPart::new(domain) else {
            return (exchange, Step::Failure(SaslFailure::TemporaryAuthFailure));
        };
        let domain = domain.into_owned();
        exchange.state = match mechanism {
            Mechanism::Plain => State::AwaitingPlain {
                domain,
                insecure: policy.insecure,
            },
            Mechanism::ScramSha256 => State::AwaitingClientFirst(ScramHash::Sha256, domain),
            Mechanism::ScramSha1 => State::AwaitingClientFirst(ScramHash::Sha1, domain),
            Mechanism::Anonymous => State::AwaitingAnonymous(domain),
        };
        let step = match (initial, mechanism) {
            (Some(initial), _) => exchange.respond(initial, accounts),
            // ANONYMOUS's trace is optional (RFC 4505 §2): a client that sends none (Strophe,
            // under Converse.js) is not asked for one.
            (None, Mechanism::Anonymous) => exchange.respond(&[], accounts),
            // No initial response: an empty challenge asks for it.
            (None, _) => Step::Challenge(Vec::new()),
        };
        (exchange, step)
    }

    /// A decoded `<response/>`. After success or failure the exchange is over, and any further
    /// response is a MalformedRequest.
    pub fn respond(&mut self, data: &[u8], accounts: &Accounts) -> Step {
        let (state, step) = match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitingPlain { domain, insecure } => {
                let (named, step) = plain::authenticate(data, &domain, insecure, accounts);
                self.account = named;
                (State::Finished, step)
            }
            State::AwaitingAnonymous(guest_domain) => (
                State::Finished,
                anonymous::authenticate(data, &guest_domain),
            ),
            State::AwaitingClientFirst(hash, domain) => {
                let reply = scram::new_server_nonce().and_then(|server_nonce| {
                    scram::receive_client_first(hash, &domain, data, accounts, &server_nonce)
                });
                match reply {
                    Ok((awaiting, server_first)) => {
                        self.account = awaiting.account().cloned();
                        (
                            State::AwaitingClientFinal(Box::new(awaiting)),
                            Step::Challenge(server_first),
                        )
                    }
                    Err(failure) => (State::Finished, Step::Failure(failure)),
                }
            }
            State::AwaitingClientFinal(awaiting) => (
                State::Finished,
                scram::receive_client_final(*awaiting, data),
            ),
            State::Finished => (
                State::Finished,
                Step::Failure(SaslFailure::MalformedRequest),
            ),
        };
        self.state = state;
        step
    }

    /// The account the client named (PLAIN's authcid, SCRAM's username), once it has, when it
    /// is a valid one: what the failed-authentication throttle counts against.
    pub fn account(&self) -> Option<&BareJid> {
        self.account.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine;

    use super::*;

    const DOMAIN: &str = "example.org";

    const GUESTS: &str = "guest.example.org";

    fn policy(tls: bool, insecure: bool) -> AuthPolicy {
        AuthPolicy {
            domain: DOMAIN.into(),
            tls,
            insecure,
            guest_domain: None,
            accounts: true,
        }
    }

    /// `policy` on a service with guests; `accounts` false: a stream to the guest domain.
    fn with_guests(tls: bool, insecure: bool, accounts: bool) -> AuthPolicy {
        AuthPolicy {
            guest_domain: Some(GUESTS.into()),
            accounts,
            ..policy(tls, insecure)
        }
    }

    fn secure() -> AuthPolicy {
        policy(true, false)
    }

    fn jid(local: &str) -> BareJid {
        BareJid::new(&format!("{local}@{DOMAIN}")).unwrap()
    }

    fn accounts() -> Accounts {
        let accounts = Accounts::in_memory();
        accounts.add(&jid("alice"), "pencil").unwrap();
        accounts
    }

    fn failure(step: Step) -> SaslFailure {
        match step {
            Step::Failure(failure) => failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn success_jid(step: Step) -> BareJid {
        match step {
            Step::Success { jid, .. } => jid,
            other => panic!("expected success, got {other:?}"),
        }
    }

    /// A SCRAM client written from RFC 5802 §3, to drive whole exchanges.
    struct ScramClient {
        hash: ScramHash,
        password: &'static str,
        gs2_header: String,
        client_first_bare: String,
        client_nonce: String,
    }

    impl ScramClient {
        fn new(hash: ScramHash, username: &str, password: &'static str) -> Self {
            Self::with_header(hash, "n,,", username, password)
        }

        fn with_header(hash: ScramHash, gs2: &str, username: &str, password: &'static str) -> Self {
            let client_nonce = "a-client-nonce-0123456789".to_string();
            ScramClient {
                hash,
                password,
                gs2_header: gs2.to_string(),
                client_first_bare: format!("n={username},r={client_nonce}"),
                client_nonce,
            }
        }

        fn mechanism(&self) -> &'static str {
            match self.hash {
                ScramHash::Sha1 => "SCRAM-SHA-1",
                ScramHash::Sha256 => "SCRAM-SHA-256",
            }
        }

        fn client_first(&self) -> Vec<u8> {
            format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
        }

        /// The client-final message, and the server-final message the server must answer with.
        fn client_final(&self, server_first: &[u8]) -> (Vec<u8>, Vec<u8>) {
            let server_first = std::str::from_utf8(server_first).unwrap();
            let mut attributes = server_first.split(',');
            let nonce = attributes.next().unwrap().strip_prefix("r=").unwrap();
            let salt = attributes.next().unwrap().strip_prefix("s=").unwrap();
            let iterations = attributes.next().unwrap().strip_prefix("i=").unwrap();
            assert!(nonce.starts_with(&self.client_nonce) && nonce.len() > self.client_nonce.len());
            let salt = BASE64.decode(salt).unwrap();
            let iterations: u32 = iterations.parse().unwrap();

            let mut salted = vec![0; self.hash.output_len()];
            match self.hash {
                ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(
                    self.password.as_bytes(),
                    &salt,
                    iterations,
                    &mut salted,
                ),
                ScramHash::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                    self.password.as_bytes(),
                    &salt,
                    iterations,
                    &mut salted,
                ),
            }
            let without_proof = format!("c={},r={nonce}", BASE64.encode(&self.gs2_header));
            let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
            let client_key = self.hash.hmac(&salted, b"Client Key");
            let stored_key = self.hash.hash(&client_key);
            let client_signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
            let proof: Vec<u8> = client_key
                .iter()
                .zip(&client_signature)
                .map(|(key, signature)| key ^ signature)
                .collect();
            let server_key = self.hash.hmac(&salted, b"Server Key");
            let server_signature = self.hash.hmac(&server_key, auth_message.as_bytes());
            (
                format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes(),
                format!("v={}", BASE64.encode(server_signature)).into_bytes(),
            )
        }

        /// Runs the whole exchange (with the client-first as initial response or not).
        fn run(&self, accounts: &Accounts, initial_response: bool) -> Step {
            let client_first = self.client_first();
            let (mut exchange, step) = if initial_response {
                SaslExchange::start(self.mechanism(), Some(&client_first), &secure(), accounts)
            } else {
                let (mut exchange, step) =
                    SaslExchange::start(self.mechanism(), None, &secure(), accounts);
                assert_eq!(step, Step::Challenge(Vec::new()));
                let step = exchange.respond(&client_first, accounts);
                (exchange, step)
            };
            let Step::Challenge(server_first) = step else {
                panic!("expected the server-first challenge, got {step:?}");
            };
            let (client_final, expected_server_final) = self.client_final(&server_first);
            let step = exchange.respond(&client_final, accounts);
            if let Step::Success {
                additional_data, ..
            } = &step
            {
                assert_eq!(additional_data.as_ref(), Some(&expected_server_final));
            }
            // The exchange is over either way.
            assert_eq!(
                exchange.respond(b"", accounts),
                Step::Failure(SaslFailure::MalformedRequest)
            );
            step
        }
    }

    #[test]
    fn offers_scram_first_and_plain_only_over_tls() {
        let names =
            |policy| -> Vec<_> { offered(&policy).into_iter().map(Mechanism::name).collect() };
        assert_eq!(
            names(policy(true, false)),
            ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
        );
        assert_eq!(
            names(policy(false, false)),
            ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        );
        assert_eq!(names(policy(true, true)), ["PLAIN"]);
        assert_eq!(names(policy(false, true)), ["PLAIN"]);
        for mechanism in [
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ] {
            assert_eq!(Mechanism::from_name(mechanism.name()), Some(mechanism));
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    }

    #[test]
    fn anonymous_is_offered_only_with_a_guest_domain_and_under_the_same_rules() {
        let names =
            |policy| -> Vec<_> { offered(&policy).into_iter().map(Mechanism::name).collect() };
        assert_eq!(
            names(with_guests(true, false, true)),
            ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "ANONYMOUS"]
        );
        assert_eq!(
            names(with_guests(false, true, true)),
            ["PLAIN", "ANONYMOUS"]
        );
        // Without TLS (and not insecure) nothing may authenticate, a guest included.
        assert_eq!(
            names(with_guests(false, false, true)),
            ["SCRAM-SHA-256", "SCRAM-SHA-1"]
        );
        // A stream to the guest domain: guests only.
        assert_eq!(names(with_guests(true, false, false)), ["ANONYMOUS"]);
        assert_eq!(names(with_guests(false, false, false)), Vec::<&str>::new());
        assert!(!names(secure()).contains(&"ANONYMOUS"));
        assert_eq!(
            Mechanism::from_name("ANONYMOUS"),
            Some(Mechanism::Anonymous)
        );
    }

    fn anonymous(trace: Option<&[u8]>, policy: &AuthPolicy) -> Step {
        let accounts = accounts();
        // Without an initial response too, no challenge: the trace is optional.
        let (exchange, step) = SaslExchange::start("ANONYMOUS", trace, policy, &accounts);
        assert_eq!(exchange.account(), None, "a guest is no account");
        step
    }

    #[test]
    fn anonymous_logs_in_a_fresh_unguessable_jid_at_the_guest_domain() {
        let mut seen = std::collections::BTreeSet::new();
        for trace in [
            None,
            Some(&b""[..]),
            Some(b"juliet@example.com"),
            Some("é".repeat(255).as_bytes()),
        ] {
            for policy in [
                with_guests(true, false, true),
                with_guests(false, true, false),
            ] {
                let jid = success_jid(anonymous(trace, &policy));
                assert_eq!(jid.domain().as_str(), GUESTS);
                let localpart = jid.node().expect("a localpart").as_str().to_string();
                assert_eq!(localpart.len(), 32, "{localpart}");
                assert!(localpart.chars().all(|c| c.is_ascii_hexdigit()));
                assert!(seen.insert(localpart), "a JID given twice");
            }
        }
    }

    #[test]
    fn anonymous_is_refused_without_guests_tls_or_a_well_formed_trace() {
        let too_long = "x".repeat(256);
        for (trace, policy, expected) in [
            (None, secure(), SaslFailure::InvalidMechanism),
            (
                Some(&b"x"[..]),
                policy(true, true),
                SaslFailure::InvalidMechanism,
            ),
            (
                None,
                with_guests(false, false, true),
                SaslFailure::EncryptionRequired,
            ),
            (
                Some(too_long.as_bytes()),
                with_guests(true, false, true),
                SaslFailure::MalformedRequest,
            ),
            (
                Some(b"\xff\xfe"),
                with_guests(true, false, false),
                SaslFailure::MalformedRequest,
            ),
        ] {
            assert_eq!(failure(anonymous(trace, &policy)), expected, "{trace:?}");
        }
        // A stream to the guest domain logs no account in.
        let accounts = accounts();
        for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
            let (_, step) = SaslExchange::start(
                mechanism,
                Some(b"\0alice\0pencil"),
                &with_guests(true, false, false),
                &accounts,
            );
            assert_eq!(failure(step), SaslFailure::InvalidMechanism, "{mechanism}");
        }
    }

    #[test]
    fn failure_conditions_are_rfc_6120_names() {
        for (failure, name) in [
            (SaslFailure::NotAuthorized, "not-authorized"),
            (SaslFailure::MalformedRequest, "malformed-request"),
            (SaslFailure::TemporaryAuthFailure, "temporary-auth-failure"),
            (SaslFailure::InvalidAuthzid, "invalid-authzid"),
        ] {
            let element = minidom::Element::from(xmpp_parsers::sasl::Failure {
                defined_condition: failure.condition(),
                texts: Default::default(),
            });
            assert!(element.children().any(|c| c.name() == name), "{name}");
        }
    }

    #[test]
    fn scram_exchanges_succeed_for_both_hashes() {
        let accounts = accounts();
        for hash in [ScramHash::Sha256, ScramHash::Sha1] {
            for initial_response in [true, false] {
                let client = ScramClient::new(hash, "alice", "pencil");
                assert_eq!(
                    success_jid(client.run(&accounts, initial_response)),
                    jid("alice")
                );
            }
            // "y,,": the client could bind the channel but sees no -PLUS offered.
            let client = ScramClient::with_header(hash, "y,,", "alice", "pencil");
            assert_eq!(success_jid(client.run(&accounts, true)), jid("alice"));
        }
    }

    #[test]
    fn scram_username_is_nodeprepped_and_escaped() {
        let accounts = accounts();
        let client = ScramClient::new(ScramHash::Sha256, "ALICE", "pencil");
        assert_eq!(success_jid(client.run(&accounts, true)), jid("alice"));

        accounts.add(&jid("o=k"), "pencil").unwrap();
        let client = ScramClient::new(ScramHash::Sha1, "o=3Dk", "pencil");
        assert_eq!(success_jid(client.run(&accounts, true)), jid("o=k"));
    }

    #[test]
    fn scram_wrong_password_is_not_authorized() {
        let accounts = accounts();
        for hash in [ScramHash::Sha256, ScramHash::Sha1] {
            let client = ScramClient::new(hash, "alice", "crayon");
            assert_eq!(
                failure(client.run(&accounts, true)),
                SaslFailure::NotAuthorized
            );
        }
    }

    #[test]
    fn scram_unknown_user_fails_only_at_the_proof() {
        let accounts = accounts();
        for hash in [ScramHash::Sha256, ScramHash::Sha1] {
            // `run` requires the server-first challenge before it sends a proof.
            let client = ScramClient::new(hash, "nobody", "pencil");
            assert_eq!(
                failure(client.run(&accounts, true)),
                SaslFailure::NotAuthorized
            );
            let client = ScramClient::new(hash, "not@localpart", "pencil");
            assert_eq!(
                failure(client.run(&accounts, false)),
                SaslFailure::NotAuthorized
            );
        }
    }

    #[test]
    fn scram_authzid_must_be_the_authenticated_jid() {
        let accounts = accounts();
        accounts.add(&jid("bob"), "crayon").unwrap();
        let own = ScramClient::with_header(
            ScramHash::Sha256,
            "n,a=alice@example.org,",
            "alice",
            "pencil",
        );
        assert_eq!(success_jid(own.run(&accounts, true)), jid("alice"));
        let other =
            ScramClient::with_header(ScramHash::Sha256, "n,a=bob@example.org,", "alice", "pencil");
        assert_eq!(
            failure(other.run(&accounts, true)),
            SaslFailure::InvalidAuthzid
        );
        // With the wrong password the authzid tells nothing.
        let guess =
            ScramClient::with_header(ScramHash::Sha1, "n,a=bob@example.org,", "alice", "chalk");
        assert_eq!(
            failure(guess.run(&accounts, true)),
            SaslFailure::NotAuthorized
        );
    }

    #[test]
    fn scram_channel_binding_is_refused() {
        let accounts = accounts();
        let (_, step) = SaslExchange::start(
            "SCRAM-SHA-256",
            Some(b"p=tls-exporter,,n=alice,r=abc"),
            &secure(),
            &accounts,
        );
        assert_eq!(failure(step), SaslFailure::MalformedRequest);
        let (_, step) = SaslExchange::start("SCRAM-SHA-256-PLUS", None, &secure(), &accounts);
        assert_eq!(failure(step), SaslFailure::InvalidMechanism);
    }

    fn plain(message: &[u8], policy: &AuthPolicy, accounts: &Accounts) -> Step {
        SaslExchange::start("PLAIN", Some(message), policy, accounts).1
    }

    #[test]
    fn plain_checks_the_password() {
        let accounts = accounts();
        assert_eq!(
            success_jid(plain(b"\0alice\0pencil", &secure(), &accounts)),
            jid("alice")
        );
        // The username is a localpart (nodeprep folds case); the password is SASLprepped
        // (a soft hyphen maps to nothing).
        let prepped = "\0Alice\0pen\u{00AD}cil".as_bytes();
        assert_eq!(
            success_jid(plain(prepped, &secure(), &accounts)),
            jid("alice")
        );
        for rejected in [
            &b"\0alice\0crayon"[..],
            b"\0alice\0Pencil",
            b"\0nobody\0pencil",
            b"\0alice@example.org\0pencil",
            b"\0alice\0pencil\x07",
        ] {
            let step = plain(rejected, &secure(), &accounts);
            assert_eq!(failure(step), SaslFailure::NotAuthorized);
        }
    }

    #[test]
    fn the_exchange_names_the_account_tried_whatever_the_outcome() {
        let accounts = accounts();
        for (message, named) in [
            (&b"\0alice\0crayon"[..], Some(jid("alice"))),
            (&b"\0Alice\0pencil"[..], Some(jid("alice"))),
            (&b"\0nobody\0pencil"[..], Some(jid("nobody"))),
            (&b"\0alice@example.org\0pencil"[..], None),
            (&b"no separators"[..], None),
        ] {
            let (exchange, _) = SaslExchange::start("PLAIN", Some(message), &secure(), &accounts);
            assert_eq!(exchange.account(), named.as_ref(), "{message:?}");
        }
        let (exchange, step) = SaslExchange::start(
            "SCRAM-SHA-256",
            Some(b"n,,n=nobody,r=abc"),
            &secure(),
            &accounts,
        );
        assert!(matches!(step, Step::Challenge(_)));
        assert_eq!(exchange.account(), Some(&jid("nobody")));
    }

    #[test]
    fn plain_without_initial_response_asks_for_it() {
        let accounts = accounts();
        let (mut exchange, step) = SaslExchange::start("PLAIN", None, &secure(), &accounts);
        assert_eq!(step, Step::Challenge(Vec::new()));
        let step = exchange.respond(b"\0alice\0pencil", &accounts);
        assert_eq!(
            step,
            Step::Success {
                jid: jid("alice"),
                additional_data: None
            }
        );
    }

    #[test]
    fn plain_authzid_must_be_the_authenticated_jid() {
        let accounts = accounts();
        let own = plain(b"alice@example.org\0alice\0pencil", &secure(), &accounts);
        assert_eq!(success_jid(own), jid("alice"));
        let other = plain(b"bob@example.org\0alice\0pencil", &secure(), &accounts);
        assert_eq!(failure(other), SaslFailure::InvalidAuthzid);
        let full = plain(
            b"alice@example.org/res\0alice\0pencil",
            &secure(),
            &accounts,
        );
        assert_eq!(failure(full), SaslFailure::InvalidAuthzid);
        let guess = plain(b"bob@example.org\0alice\0crayon", &secure(), &accounts);
        assert_eq!(failure(guess), SaslFailure::NotAuthorized);
    }

    #[test]
    fn plain_without_tls_is_encryption_required() {
        let accounts = accounts();
        let step = plain(b"\0alice\0pencil", &policy(false, false), &accounts);
        assert_eq!(failure(step), SaslFailure::EncryptionRequired);
    }

    #[test]
    fn insecure_mode_accepts_any_password_for_any_local_user() {
        let accounts = accounts();
        for tls in [false, true] {
            let insecure = policy(tls, true);
            let step = plain(b"\0alice\0anything", &insecure, &accounts);
            assert_eq!(success_jid(step), jid("alice"));
            let step = plain(b"\0stranger\0x", &insecure, &accounts);
            assert_eq!(success_jid(step), jid("stranger"));
            let step = plain(b"\0not@local\0x", &insecure, &accounts);
            assert_eq!(failure(step), SaslFailure::NotAuthorized);
            let step = plain(b"bob@example.org\0alice\0x", &insecure, &accounts);
            assert_eq!(failure(step), SaslFailure::InvalidAuthzid);
            let (_, step) = SaslExchange::start("SCRAM-SHA-256", None, &insecure, &accounts);
            assert_eq!(failure(step), SaslFailure::InvalidMechanism);
        }
    }

    #[test]
    fn unknown_mechanisms_and_bad_configuration() {
        let accounts = accounts();
        for name in ["", "DIGEST-MD5", "plain", "SCRAM-SHA-512", "EXTERNAL"] {
            let (_, step) = SaslExchange::start(name, None, &secure(), &accounts);
            assert_eq!(failure(step), SaslFailure::InvalidMechanism, "{name}");
        }
        let broken = AuthPolicy {
            domain: "not a domain@".into(),
            ..secure()
        };
        let (_, step) = SaslExchange::start("PLAIN", Some(b"\0alice\0pencil"), &broken, &accounts);
        assert_eq!(failure(step), SaslFailure::TemporaryAuthFailure);
    }

    #[test]
    fn malformed_plain_messages() {
        let accounts = accounts();
        for malformed in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0alice\0",
            b"\0\0pencil",
            b"\0alice\0pencil\0",
            b"\0al\xffice\0pencil",
        ] {
            let step = plain(malformed, &secure(), &accounts);
            assert_eq!(
                failure(step),
                SaslFailure::MalformedRequest,
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn empty_initial_responses_are_malformed() {
        let accounts = accounts();
        for mechanism in ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"] {
            let (_, step) = SaslExchange::start(mechanism, Some(b""), &secure(), &accounts);
            assert_eq!(failure(step), SaslFailure::MalformedRequest, "{mechanism}");
        }
    }

    /// Arbitrary bytes at every step end the exchange with a failure, never a panic.
    #[test]
    fn arbitrary_input_never_panics() {
        let accounts = accounts();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..3000 {
            let biased = round % 2 == 0;
            let mechanism = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"][round % 3];
            let first = noise(&mut seed, biased);
            let (mut exchange, step) =
                SaslExchange::start(mechanism, Some(&first), &secure(), &accounts);
            if let Step::Challenge(_) = step {
                let step = exchange.respond(&noise(&mut seed, biased), &accounts);
                assert!(matches!(step, Step::Failure(_)), "{step:?}");
            }
            // Prefixes of a valid client-first, then arbitrary client-finals.
            let client_first = format!("n,,n=alice,r=nonce{round}");
            let cut = (xorshift(&mut seed) as usize) % (client_first.len() + 1);
            let (mut exchange, _) = SaslExchange::start(
                "SCRAM-SHA-1",
                Some(&client_first.as_bytes()[..cut]),
                &secure(),
                &accounts,
            );
            let mut tail = b"c=biws,r=".to_vec();
            tail.extend(noise(&mut seed, biased));
            assert!(matches!(
                exchange.respond(&tail, &accounts),
                Step::Failure(_)
            ));
        }
    }

    /// Reproducible noise without a dependency.
    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Up to 40 bytes: any bytes, or `biased` towards SCRAM and PLAIN syntax.
    fn noise(seed: &mut u64, biased: bool) -> Vec<u8> {
        const ALPHABET: &[u8] = b"nyp=,a\0rcsvi=2C3D\xff\xc3\xa9biwsalice0+/";
        let len = (xorshift(seed) % 40) as usize;
        (0..len)
            .map(|_| {
                let random = xorshift(seed);
                if biased {
                    ALPHABET[(random % ALPHABET.len() as u64) as usize]
                } else {
                    random as u8
                }
            })
            .collect()
    }
}
