//! The stores the store tests run against: SQLite always, and PostgreSQL when
//! `MUC_TEST_POSTGRES` holds a connection URL, each test in a schema of its own (so tests run in
//! parallel), dropped after.

use super::StoreLocation;

/// The variable naming the PostgreSQL database the tests may use.
pub const POSTGRES_URL: &str = "MUC_TEST_POSTGRES";

/// A fresh, empty store, removed when dropped.
pub struct TestStore {
    pub location: StoreLocation,
    /// SQLite's directory.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL's server and the schema to drop.
    schema: Option<(postgres::Config, String)>,
}

impl TestStore {
    pub fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("a temporary directory");
        TestStore {
            location: StoreLocation::Sqlite(dir.path().to_path_buf()),
            _dir: Some(dir),
            schema: None,
        }
    }

    pub fn postgres(url: &str) -> TestStore {
        let server: postgres::Config = url.parse().expect("MUC_TEST_POSTGRES: a connection URL");
        let schema = format!("muc_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = server
            .connect(postgres::NoTls)
            .expect("MUC_TEST_POSTGRES: a reachable database");
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .expect("a test schema");
        let mut config = server.clone();
        config
            .options(&format!("-c search_path={schema}"))
            .application_name(&schema);
        TestStore {
            location: StoreLocation::Postgres(config),
            _dir: None,
            schema: Some((server, schema)),
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Some((server, schema)) = &self.schema else {
            return;
        };
        let dropped = server
            .connect(postgres::NoTls)
            .and_then(|mut admin| admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")));
        if let Err(error) = dropped {
            eprintln!("dropping the test schema {schema}: {error}");
        }
    }
}

/// Runs `test` on a fresh SQLite store, then on a fresh PostgreSQL one when the environment
/// names a server (else says it did not).
pub fn each_store(test: impl Fn(&StoreLocation)) {
    test(&TestStore::sqlite().location);
    match std::env::var(POSTGRES_URL) {
        Ok(url) if !url.is_empty() => test(&TestStore::postgres(&url).location),
        _ => eprintln!("PostgreSQL half not run: {POSTGRES_URL} names no server"),
    }
}

/// Runs `sql` on the store's database directly, beside the store's own connection.
pub fn execute(store: &StoreLocation, sql: &str) {
    match store {
        StoreLocation::Sqlite(dir) => {
            rusqlite::Connection::open(dir.join(super::location::SQLITE_FILE))
                .and_then(|connection| connection.execute_batch(sql))
                .expect("a statement on the test store")
        }
        StoreLocation::Postgres(config) => config
            .connect(postgres::NoTls)
            .and_then(|mut client| client.batch_execute(sql))
            .expect("a statement on the test store"),
    }
}

/// Ends the PostgreSQL sessions of the store's connections, as a server restart would.
pub fn terminate_sessions(config: &postgres::Config) {
    let name = config.get_application_name().expect("a test store's name");
    let mut admin = config.connect(postgres::NoTls).expect("a session");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .expect("sessions ended");
}
