//! Salted SCRAM credentials (RFC 5802 §3): what the server keeps instead of a password, and the
//! key arithmetic that checks a client against them.

use std::borrow::Cow;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// PBKDF2 iterations for new credentials: RFC 5802's recommended minimum, what clients expect.
pub const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
const ANY_KEY_LENGTH: &str = "HMAC accepts keys of any length";

/// The hash a SCRAM mechanism is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => <Hmac<Sha1> as KeyInit>::new_from_slice(key)
                .expect(ANY_KEY_LENGTH)
                .chain_update(data)
                .finalize()
                .into_bytes()
                .to_vec(),
            ScramHash::Sha256 => <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .expect(ANY_KEY_LENGTH)
                .chain_update(data)
                .finalize()
                .into_bytes()
                .to_vec(),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with this hash's HMAC, one output block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut salted = vec![0; self.output_len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut salted),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted)
            }
        }
        salted
    }

    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }
}

/// SASLprep (RFC 4013), which SCRAM and PLAIN apply to passwords; None for a password with
/// prohibited characters, which can never match.
pub fn prepare_password(password: &str) -> Option<Cow<'_, str>> {
    stringprep::saslprep(password).ok()
}

/// One account's credential for one hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredential {
    pub hash: ScramHash,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// From a password already prepared with [`prepare_password`].
    pub fn derive(
        hash: ScramHash,
        prepared_password: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Self {
        let salted = hash.salted_password(prepared_password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredential {
            hash,
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// With a fresh random salt.
    pub fn generate(hash: ScramHash, prepared_password: &str) -> anyhow::Result<Self> {
        let mut salt = vec![0; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|error| anyhow::anyhow!("no random salt: {error}"))?;
        Ok(Self::derive(hash, prepared_password, salt, ITERATIONS))
    }

    /// A stand-in for an account that does not exist, so that SCRAM's first round looks the same
    /// whether or not the user exists: its salt is the same on every attempt for one username
    /// (a changing salt would give the game away) yet unpredictable without `secret`.
    pub fn decoy(hash: ScramHash, secret: &[u8], username: &str) -> Self {
        let derive = |label: &str| hash.hmac(secret, format!("{label}\0{username}").as_bytes());
        ScramCredential {
            hash,
            salt: derive("salt")[..SALT_LEN].to_vec(),
            iterations: ITERATIONS,
            stored_key: derive("stored key"),
            server_key: derive("server key"),
        }
    }

    /// Whether `client_proof` proves knowledge of the password for `auth_message`: recovers the
    /// ClientKey from the proof and compares its hash with StoredKey, in constant time.
    pub fn verify_proof(&self, auth_message: &[u8], client_proof: &[u8]) -> bool {
        let client_signature = self.hash.hmac(&self.stored_key, auth_message);
        if client_proof.len() != client_signature.len() {
            return false;
        }
        let client_key: Vec<u8> = client_proof
            .iter()
            .zip(&client_signature)
            .map(|(proof, signature)| proof ^ signature)
            .collect();
        self.hash.hash(&client_key).ct_eq(&self.stored_key).into()
    }

    /// What the server proves itself with, sent as `v=` in the server-final message.
    pub fn server_signature(&self, auth_message: &[u8]) -> Vec<u8> {
        self.hash.hmac(&self.server_key, auth_message)
    }

    /// For PLAIN: whether the password yields this credential's StoredKey (constant time).
    pub fn matches_password(&self, prepared_password: &str) -> bool {
        let derived = Self::derive(
            self.hash,
            prepared_password,
            self.salt.clone(),
            self.iterations,
        );
        derived.stored_key.ct_eq(&self.stored_key).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_password_dependent() {
        let salt = b"0123456789abcdef".to_vec();
        let one = ScramCredential::derive(ScramHash::Sha256, "pencil", salt.clone(), 4096);
        let again = ScramCredential::derive(ScramHash::Sha256, "pencil", salt.clone(), 4096);
        let other = ScramCredential::derive(ScramHash::Sha256, "pen", salt, 4096);
        assert_eq!(one, again);
        assert_ne!(one.stored_key, other.stored_key);
        assert_eq!(one.stored_key.len(), 32);
        assert!(one.matches_password("pencil"));
        assert!(!one.matches_password("pen"));
    }

    #[test]
    fn generated_salts_differ() {
        let one = ScramCredential::generate(ScramHash::Sha1, "pencil").unwrap();
        let two = ScramCredential::generate(ScramHash::Sha1, "pencil").unwrap();
        assert_ne!(one.salt, two.salt);
        assert_eq!(one.stored_key.len(), 20);
    }

    #[test]
    fn decoys_are_stable_per_username_and_secret() {
        let decoy = |secret: &[u8], user| ScramCredential::decoy(ScramHash::Sha256, secret, user);
        assert_eq!(decoy(b"k", "alice"), decoy(b"k", "alice"));
        assert_ne!(decoy(b"k", "alice").salt, decoy(b"k", "bob").salt);
        assert_ne!(decoy(b"k", "alice").salt, decoy(b"j", "alice").salt);
        assert_eq!(decoy(b"k", "alice").salt.len(), SALT_LEN);
    }

    #[test]
    fn sasl_prep_maps_and_rejects() {
        // RFC 4013 §3 examples: soft hyphen is mapped to nothing, U+0007 is prohibited.
        assert_eq!(prepare_password("I\u{00AD}X").unwrap(), "IX");
        assert_eq!(prepare_password("\u{00AA}").unwrap(), "a");
        assert!(prepare_password("\u{0007}").is_none());
    }
}
