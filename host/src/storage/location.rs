//! Where the store lives: SQLite in the data directory (the embedded default), or a PostgreSQL
//! database that several instances can share (`--store postgres://...`).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The SQLite file under the data directory: the plugin's store (and the bundled server's
/// accounts).
pub const SQLITE_FILE: &str = "muc.sqlite3";

#[derive(Clone)]
pub enum StoreLocation {
    /// [`SQLITE_FILE`] in this directory.
    Sqlite(PathBuf),
    Postgres(postgres::Config),
}

impl StoreLocation {
    /// `url` (`postgres://` or `postgresql://`) when given, else SQLite in `data`.
    pub fn new(data: &Path, url: Option<&str>) -> Result<StoreLocation> {
        let Some(url) = url else {
            return Ok(StoreLocation::Sqlite(data.to_path_buf()));
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!(
                "the store must be a postgres:// URL (without one: SQLite in the data directory)"
            );
        }
        let config = url
            .parse::<postgres::Config>()
            .context("the store's PostgreSQL URL")?;
        Ok(StoreLocation::Postgres(config))
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// For logs: never the password.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(dir) => write!(f, "{}", dir.join(SQLITE_FILE).display()),
            StoreLocation::Postgres(config) => {
                let hosts: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .map(|host| match host {
                        postgres::config::Host::Tcp(name) => name.clone(),
                        postgres::config::Host::Unix(path) => path.display().to_string(),
                    })
                    .collect();
                write!(
                    f,
                    "PostgreSQL database {} on {} as {}",
                    config.get_dbname().unwrap_or("(the user's)"),
                    hosts.join(","),
                    config.get_user().unwrap_or("(the system user)")
                )
            }
        }
    }
}
