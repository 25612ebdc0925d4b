//! Accounts in SQLite: per account, a salted SCRAM credential for each hash, never the password.

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use jid::BareJid;
use rusqlite::{params, Connection, OptionalExtension};

use super::credentials::{prepare_password, ScramCredential, ScramHash};

/// Long enough to wait out the host's own commits on the same file, which are short.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS accounts (
    jid TEXT PRIMARY KEY,
    scram_sha1_salt BLOB NOT NULL,
    scram_sha1_iterations INTEGER NOT NULL,
    scram_sha1_stored_key BLOB NOT NULL,
    scram_sha1_server_key BLOB NOT NULL,
    scram_sha256_salt BLOB NOT NULL,
    scram_sha256_iterations INTEGER NOT NULL,
    scram_sha256_stored_key BLOB NOT NULL,
    scram_sha256_server_key BLOB NOT NULL
) WITHOUT ROWID";

pub struct Accounts {
    // Its own connection rather than the host's: authentication runs on connection tasks, not
    // inside the plugin's calls.
    connection: Mutex<Connection>,
    /// Keys the decoy credentials of unknown users; new on each open, which only matters to
    /// someone probing the same username across a restart.
    decoy_secret: [u8; 32],
}

#[derive(Debug)]
pub enum AccountError {
    Exists,
    /// The password has characters SASLprep prohibits, so no client could ever send it.
    InvalidPassword,
    Storage(anyhow::Error),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::Exists => write!(f, "the account already exists"),
            AccountError::InvalidPassword => {
                write!(f, "the password has characters SASLprep prohibits")
            }
            AccountError::Storage(error) => write!(f, "account storage: {error:#}"),
        }
    }
}

impl std::error::Error for AccountError {}

impl From<rusqlite::Error> for AccountError {
    fn from(error: rusqlite::Error) -> Self {
        AccountError::Storage(error.into())
    }
}

impl Accounts {
    /// Opens (creating if needed) the `accounts` table in the host's database file.
    pub fn open(db_file: &Path) -> anyhow::Result<Accounts> {
        let connection =
            Connection::open(db_file).with_context(|| format!("opening {}", db_file.display()))?;
        Self::with_connection(connection)
            .with_context(|| format!("accounts in {}", db_file.display()))
    }

    pub fn in_memory() -> Accounts {
        let connection = Connection::open_in_memory().expect("SQLite opens an in-memory database");
        Self::with_connection(connection).expect("an in-memory accounts table")
    }

    fn with_connection(connection: Connection) -> anyhow::Result<Accounts> {
        connection.busy_timeout(BUSY_TIMEOUT)?;
        // Same journal and durability as the host's connection: an added account is on disk.
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        connection.execute_batch(SCHEMA)?;
        let mut decoy_secret = [0; 32];
        getrandom::fill(&mut decoy_secret)
            .map_err(|error| anyhow::anyhow!("no random decoy secret: {error}"))?;
        Ok(Accounts {
            connection: Mutex::new(connection),
            decoy_secret,
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic elsewhere cannot leave the connection half-used: each statement is atomic.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the account; Err(AccountError::Exists) if it exists.
    pub fn add(&self, jid: &BareJid, password: &str) -> Result<(), AccountError> {
        let [sha1, sha256] = credentials_for(password)?;
        if self.store(jid, &sha1, &sha256, false)? {
            Ok(())
        } else {
            Err(AccountError::Exists)
        }
    }

    /// Sets the password, creating the account if it does not exist (what `--force` wants).
    pub fn set_password(&self, jid: &BareJid, password: &str) -> anyhow::Result<()> {
        let [sha1, sha256] = credentials_for(password)?;
        self.store(jid, &sha1, &sha256, true)?;
        Ok(())
    }

    pub fn exists(&self, jid: &BareJid) -> anyhow::Result<bool> {
        let found = self
            .connection()
            .query_row(
                "SELECT 1 FROM accounts WHERE jid = ?1",
                [jid.as_str()],
                |_| Ok(()),
            )
            .optional()?;
        Ok(found.is_some())
    }

    pub fn count(&self) -> anyhow::Result<u64> {
        let count: i64 =
            self.connection()
                .query_row("SELECT COUNT(*) FROM accounts", [], |row| row.get(0))?;
        Ok(count as u64)
    }

    /// Writes both credentials; false when the account exists and `replace` is false.
    pub(super) fn store(
        &self,
        jid: &BareJid,
        sha1: &ScramCredential,
        sha256: &ScramCredential,
        replace: bool,
    ) -> Result<bool, AccountError> {
        let verb = if replace {
            "INSERT OR REPLACE"
        } else {
            "INSERT OR IGNORE"
        };
        let written = self.connection().execute(
            &format!("{verb} INTO accounts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                jid.as_str(),
                sha1.salt,
                sha1.iterations,
                sha1.stored_key,
                sha1.server_key,
                sha256.salt,
                sha256.iterations,
                sha256.stored_key,
                sha256.server_key,
            ],
        )?;
        Ok(written == 1)
    }

    pub(super) fn credential(
        &self,
        jid: &BareJid,
        hash: ScramHash,
    ) -> anyhow::Result<Option<ScramCredential>> {
        let prefix = match hash {
            ScramHash::Sha1 => "scram_sha1",
            ScramHash::Sha256 => "scram_sha256",
        };
        let credential = self
            .connection()
            .query_row(
                &format!(
                    "SELECT {prefix}_salt, {prefix}_iterations, {prefix}_stored_key, \
                     {prefix}_server_key FROM accounts WHERE jid = ?1"
                ),
                [jid.as_str()],
                |row| {
                    Ok(ScramCredential {
                        hash,
                        salt: row.get(0)?,
                        iterations: row.get(1)?,
                        stored_key: row.get(2)?,
                        server_key: row.get(3)?,
                    })
                },
            )
            .optional()?;
        Ok(credential)
    }

    /// The stand-in credential for a username with no account (see [`ScramCredential::decoy`]).
    pub(super) fn decoy_credential(&self, hash: ScramHash, username: &str) -> ScramCredential {
        ScramCredential::decoy(hash, &self.decoy_secret, username)
    }
}

fn credentials_for(password: &str) -> Result<[ScramCredential; 2], AccountError> {
    let prepared = prepare_password(password).ok_or(AccountError::InvalidPassword)?;
    let generate = |hash| ScramCredential::generate(hash, &prepared).map_err(AccountError::Storage);
    Ok([generate(ScramHash::Sha1)?, generate(ScramHash::Sha256)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(text: &str) -> BareJid {
        BareJid::new(text).unwrap()
    }

    #[test]
    fn add_exists_count() {
        let accounts = Accounts::in_memory();
        assert_eq!(accounts.count().unwrap(), 0);
        assert!(!accounts.exists(&jid("alice@example.org")).unwrap());
        accounts.add(&jid("alice@example.org"), "pencil").unwrap();
        assert!(accounts.exists(&jid("alice@example.org")).unwrap());
        assert!(!accounts.exists(&jid("bob@example.org")).unwrap());
        assert!(matches!(
            accounts.add(&jid("alice@example.org"), "other"),
            Err(AccountError::Exists)
        ));
        accounts.add(&jid("bob@example.org"), "pencil").unwrap();
        assert_eq!(accounts.count().unwrap(), 2);
    }

    #[test]
    fn stores_a_credential_per_hash_with_its_own_salt() {
        let accounts = Accounts::in_memory();
        let alice = jid("alice@example.org");
        accounts.add(&alice, "pencil").unwrap();
        let sha1 = accounts
            .credential(&alice, ScramHash::Sha1)
            .unwrap()
            .unwrap();
        let sha256 = accounts
            .credential(&alice, ScramHash::Sha256)
            .unwrap()
            .unwrap();
        assert_eq!((sha1.iterations, sha256.iterations), (4096, 4096));
        assert_eq!((sha1.stored_key.len(), sha256.stored_key.len()), (20, 32));
        assert_ne!(sha1.salt, sha256.salt);
        assert!(sha1.matches_password("pencil") && sha256.matches_password("pencil"));
        let nobody = accounts.credential(&jid("nobody@example.org"), ScramHash::Sha1);
        assert!(nobody.unwrap().is_none());
    }

    #[test]
    fn set_password_replaces_or_creates() {
        let accounts = Accounts::in_memory();
        let alice = jid("alice@example.org");
        accounts.add(&alice, "pencil").unwrap();
        accounts.set_password(&alice, "crayon").unwrap();
        let sha256 = accounts
            .credential(&alice, ScramHash::Sha256)
            .unwrap()
            .unwrap();
        assert!(sha256.matches_password("crayon") && !sha256.matches_password("pencil"));
        accounts
            .set_password(&jid("bob@example.org"), "chalk")
            .unwrap();
        assert_eq!(accounts.count().unwrap(), 2);
    }

    #[test]
    fn a_password_saslprep_prohibits_is_refused() {
        let accounts = Accounts::in_memory();
        let result = accounts.add(&jid("alice@example.org"), "bell\u{0007}");
        assert!(matches!(result, Err(AccountError::InvalidPassword)));
        assert!(accounts
            .set_password(&jid("alice@example.org"), "bell\u{0007}")
            .is_err());
        assert_eq!(accounts.count().unwrap(), 0);
    }

    #[test]
    fn persists_across_reopen_and_never_stores_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("muc.sqlite3");
        let password = "correct horse battery staple";
        let alice = jid("alice@example.org");
        {
            let accounts = Accounts::open(&file).unwrap();
            accounts.add(&alice, password).unwrap();
            // Every stored byte of the row, the text columns included.
            let connection = accounts.connection();
            let mut statement = connection.prepare("SELECT * FROM accounts").unwrap();
            let columns = statement.column_count();
            let mut rows = statement.query([]).unwrap();
            let row = rows.next().unwrap().unwrap();
            for column in 0..columns {
                let bytes = match row.get_ref(column).unwrap() {
                    rusqlite::types::ValueRef::Text(bytes)
                    | rusqlite::types::ValueRef::Blob(bytes) => bytes.to_vec(),
                    other => format!("{other:?}").into_bytes(),
                };
                assert!(!contains(&bytes, password.as_bytes()), "column {column}");
            }
        }
        // The files themselves, the write-ahead log included in case it was not checkpointed.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!contains(&bytes, password.as_bytes()));
            assert!(!contains(&bytes, b"battery"));
        }
        let reopened = Accounts::open(&file).unwrap();
        assert!(reopened.exists(&alice).unwrap());
        assert_eq!(reopened.count().unwrap(), 1);
        let credential = reopened.credential(&alice, ScramHash::Sha256).unwrap();
        assert!(credential.unwrap().matches_password(password));
    }

    #[test]
    fn coexists_with_another_connection_on_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("muc.sqlite3");
        let accounts = Accounts::open(&file).unwrap();
        let other = Accounts::open(&file).unwrap();
        accounts.add(&jid("alice@example.org"), "pencil").unwrap();
        assert!(other.exists(&jid("alice@example.org")).unwrap());
        let mode: String = other
            .connection()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn accounts_and_exchanges_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Accounts>();
        shareable::<super::super::SaslExchange>();
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }
}
