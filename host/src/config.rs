//! `muc-host serve`'s settings: command-line flags over a TOML file over the embedded defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::extensions::{ExtensionLimits, MAX_CALL_BUDGET};
use crate::message_rate::MessageRateLimit;
use crate::runtime::GuestRooms;
use crate::storage::{Retention, StoreLocation};
use crate::xmpp::throttle::ReadRate;

/// Bytes a second a client connection is read at, after its burst: six times Prosody's
/// `mod_limits` c2s example (10 kB/s), far above what a person's client sends.
pub const CLIENT_BYTES_PER_SECOND: u64 = 64 * 1024;
pub const CLIENT_BURST_BYTES: u64 = 512 * 1024;
/// Messages a second one sender (full JID) may send one room and its occupants, after a burst:
/// a guard against floods, not chat etiquette (Prosody's `muc_rate_limit` community module uses
/// 0.5 a second; lower it for public rooms). More than twice what `tests/e2e/test_hot_swap.py`
/// sends per occupant.
pub const ROOM_MESSAGES_PER_SECOND: f64 = 20.0;
pub const ROOM_MESSAGE_BURST: u32 = 60;

/// The flags of `muc-host serve`; each may also be set in the `--config` file under the same
/// name (with `_` for `-`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags win over it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The XMPP domain served to clients in bundled mode [default: localhost].
    #[arg(long)]
    pub domain: Option<String>,
    /// The MUC service's domain [default: conference.DOMAIN].
    #[arg(long)]
    pub muc_domain: Option<String>,
    /// Client listener address (bundled mode) [default: 127.0.0.1:5222]; port 0 picks one.
    #[arg(long)]
    pub c2s: Option<SocketAddr>,
    /// The MUC plugin component [default: the one this repository builds].
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// A service administrator's bare JID (repeatable).
    #[arg(long = "admin")]
    pub admins: Vec<String>,
    /// Accept any password for any local JID. For test suites only.
    #[arg(long)]
    pub insecure_auth: bool,
    /// Let clients create accounts (XEP-0077 in-band registration).
    #[arg(long)]
    pub registration: bool,
    /// Guests without an account log in with SASL ANONYMOUS (XEP-0175) as someone at this
    /// domain, e.g. guest.localhost (bundled mode) [default: no guests].
    #[arg(long)]
    pub guest_domain: Option<String>,
    /// Which rooms guests may enter: `public` (rooms with muc#roomconfig_publicroom on, and not
    /// members-only) or `none` [default: public].
    #[arg(long, value_enum)]
    pub guest_rooms: Option<GuestRooms>,
    /// Component mode: the XMPP server's component port (XEP-0114), HOST:PORT.
    #[arg(long)]
    pub component: Option<String>,
    /// Component mode: the secret shared with the server.
    #[arg(long)]
    pub component_secret: Option<String>,
    /// Serve OpenMetrics text for Prometheus at http://ADDR/metrics (either mode; in bundled
    /// mode the HTTP server serves it too).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// The HTTP server (bundled mode): XMPP over WebSocket at /xmpp-websocket, XEP-0156
    /// discovery, /metrics [default: 127.0.0.1:5280, skipped with a warning if taken].
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// The same HTTP server over TLS, with the client listener's certificate (bundled mode)
    /// [default: none].
    #[arg(long)]
    pub https: Option<SocketAddr>,
    /// A web page origin allowed to use the WebSocket endpoint besides the server's own pages,
    /// e.g. https://chat.example.org; `*` allows every page (repeatable).
    #[arg(long = "web-origin")]
    pub web_origins: Vec<String>,
    /// The web client served at / by the HTTP server: a Converse.js release's dist/ directory
    /// [default: the one scripts/fetch-web-client unpacks under target/web-client/].
    #[arg(long)]
    pub web_client: Option<PathBuf>,
    /// TLS certificate chain (PEM) [default: a self-signed one made on first run].
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Largest stanza accepted, in bytes [default: 262144].
    #[arg(long)]
    pub max_stanza_bytes: Option<usize>,
    /// Stanzas kept for the component link while it is down [default: 10000].
    #[arg(long)]
    pub link_queue: Option<usize>,
    /// Bytes a second read from each client connection once its burst is spent; past it the
    /// reader pauses (TCP pushes back), nothing is dropped; 0: no limit [default: 65536].
    #[arg(long)]
    pub client_bytes_per_second: Option<u64>,
    /// Bytes a client connection may send at once before its rate applies [default: 524288].
    #[arg(long)]
    pub client_burst_bytes: Option<u64>,
    /// Messages a second one sender may send to one room and its occupants once its burst is
    /// spent; past it: `resource-constraint`; 0: no limit [default: 20].
    #[arg(long)]
    pub room_messages_per_second: Option<f64>,
    /// Messages one sender may send to one room at once before its rate applies [default: 60].
    #[arg(long)]
    pub room_message_burst: Option<u32>,
    /// Seconds a persistent room stays in memory with nobody in it and nothing sent to it; it is
    /// read from disk again on its next stanza [default: 600].
    #[arg(long)]
    pub room_idle_seconds: Option<u64>,
    /// Seconds a client session with stream management (XEP-0198) waits, after its connection
    /// dropped, for the client to resume it; its rooms see it leave only then. 0: resumption is
    /// not offered [default: 300].
    #[arg(long)]
    pub resumption_timeout: Option<u64>,
    /// Rooms one user (not a service administrator) may have created that still exist; 0: no
    /// limit [default: 100].
    #[arg(long)]
    pub max_rooms_per_user: Option<u32>,
    /// Delete archived messages older than this: a number and a unit, `s`, `m`, `h`, `d` or
    /// `w` (e.g. `30d`) [default: keep them].
    #[arg(long)]
    pub archive_max_age: Option<String>,
    /// Keep at most this many archived messages per room, deleting the oldest [default: all].
    #[arg(long)]
    pub archive_max_per_room: Option<u64>,
    /// The store: a PostgreSQL URL, `postgres://USER@HOST:PORT/DATABASE` (several instances may
    /// share it) [default: SQLite in the data directory]. In the file: `url` under `[store]`.
    #[arg(long)]
    pub store: Option<String>,
    /// This instance's name among those sharing a PostgreSQL store (room leases, logs, `ctl
    /// status`); a process started under the name of a running one replaces it [default:
    /// HOSTNAME:DATA, the absolute data directory]. In the file: `instance` under `[store]`.
    #[arg(long)]
    pub instance: Option<String>,
    /// Swap the plugin in whenever its file changes (as `ctl swap` would).
    #[arg(long)]
    pub watch_plugin: bool,
    /// Install every room extension (*.wasm) in this directory at start, allowed in every room.
    #[arg(long)]
    pub extension_dir: Option<PathBuf>,
    /// Faults after which a room extension is switched off in a room (default 3).
    #[arg(long)]
    pub extension_faults: Option<u32>,
    /// Time a room extension may take per hook call, in ms (default 50, at most 100), unless
    /// `ext add --call-ms` granted it other.
    #[arg(long)]
    pub extension_call_ms: Option<u64>,
    /// Memory of one room extension instance, in MiB (default 16), unless `ext add
    /// --memory-mib` granted it other.
    #[arg(long)]
    pub extension_memory_mib: Option<usize>,
    /// The most memory `ext add --memory-mib` may grant one extension's instances, in MiB
    /// (default 64).
    #[arg(long)]
    pub extension_max_memory_mib: Option<usize>,
    /// The most time `ext add --call-ms` may grant one extension's hook calls, in ms (default
    /// 100, at most 100).
    #[arg(long)]
    pub extension_max_call_ms: Option<u64>,
    /// Storage of one room extension in one room, in KiB (default 256).
    #[arg(long)]
    pub extension_storage_kib: Option<usize>,
    /// Messages a room extension may say in one room per minute (default 20).
    #[arg(long)]
    pub extension_messages_per_minute: Option<usize>,
    /// Run the MUC logic linked into this binary instead of the component: only to measure
    /// what WebAssembly costs (`bench/duel`). No sandbox, no hot swap, no room extensions.
    #[cfg(feature = "native-plugin")]
    #[arg(long)]
    pub native_plugin: bool,
}

/// The file form of [`ServeArgs`].
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data: Option<PathBuf>,
    domain: Option<String>,
    muc_domain: Option<String>,
    c2s: Option<SocketAddr>,
    plugin: Option<PathBuf>,
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    insecure_auth: bool,
    #[serde(default)]
    registration: bool,
    guest_domain: Option<String>,
    guest_rooms: Option<GuestRooms>,
    component: Option<String>,
    component_secret: Option<String>,
    metrics: Option<SocketAddr>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    #[serde(default)]
    web_origins: Vec<String>,
    web_client: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_stanza_bytes: Option<usize>,
    link_queue: Option<usize>,
    client_bytes_per_second: Option<u64>,
    client_burst_bytes: Option<u64>,
    room_messages_per_second: Option<f64>,
    room_message_burst: Option<u32>,
    room_idle_seconds: Option<u64>,
    resumption_timeout: Option<u64>,
    max_rooms_per_user: Option<u32>,
    archive_max_age: Option<String>,
    archive_max_per_room: Option<u64>,
    #[serde(default)]
    watch_plugin: bool,
    extension_dir: Option<PathBuf>,
    extension_faults: Option<u32>,
    extension_call_ms: Option<u64>,
    extension_memory_mib: Option<usize>,
    extension_max_memory_mib: Option<usize>,
    extension_max_call_ms: Option<u64>,
    extension_storage_kib: Option<usize>,
    extension_messages_per_minute: Option<usize>,
    store: Option<StoreSection>,
}

/// The config file's `[store]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    /// As `--store`.
    url: Option<String>,
    /// As `--instance`.
    instance: Option<String>,
}

/// How the service reaches its users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Its own client listener, serving `domain`.
    Bundled { c2s: SocketAddr },
    /// A component of an existing server (XEP-0114).
    Component { server: String, secret: String },
}

/// Where bundled mode's HTTP server listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpListen {
    pub address: SocketAddr,
    /// Given by the operator: not being able to listen there stops the start. The default
    /// address is only tried (another service may hold it; XMPP is served all the same).
    pub required: bool,
}

/// `*`, or a web origin as browsers write it (RFC 6454): scheme, host, maybe a port, no path.
fn is_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    origin == "*" || rest.is_some_and(|host| !host.is_empty() && !host.contains('/'))
}

pub const DEFAULT_HTTP: &str = "127.0.0.1:5280";

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data: PathBuf,
    pub store: StoreLocation,
    /// Its name among the instances sharing a PostgreSQL store.
    pub instance: String,
    pub domain: String,
    pub muc_domain: String,
    pub mode: Mode,
    pub plugin: Option<PathBuf>,
    pub admins: Vec<String>,
    pub insecure_auth: bool,
    pub registration: bool,
    /// Where guests (SASL ANONYMOUS) are; None: no guests.
    pub guest_domain: Option<String>,
    pub guest_rooms: GuestRooms,
    pub metrics: Option<SocketAddr>,
    /// None in component mode.
    pub http: Option<HttpListen>,
    /// HTTPS, bundled mode only.
    pub https: Option<SocketAddr>,
    /// Pages allowed to use the WebSocket endpoint besides the server's own.
    pub web_origins: Vec<String>,
    /// Given: Converse.js's dist/ directory; else the fetched one is looked for.
    pub web_client: Option<PathBuf>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_stanza_bytes: usize,
    pub link_queue: usize,
    /// None: no limit.
    pub client_read_rate: Option<ReadRate>,
    /// None: no limit.
    pub room_message_rate: Option<MessageRateLimit>,
    pub room_idle: std::time::Duration,
    /// How long a dropped client session may be resumed (zero: not offered).
    pub resumption_timeout: std::time::Duration,
    pub max_rooms_per_user: u32,
    pub archive_retention: Retention,
    pub watch_plugin: bool,
    pub extension_dir: Option<PathBuf>,
    pub extension_limits: ExtensionLimits,
    #[cfg(feature = "native-plugin")]
    pub native_plugin: bool,
}

impl ServeConfig {
    /// Merges flags, the config file they name, and the defaults. `data` is the global flag.
    pub fn resolve(args: ServeArgs, data: Option<PathBuf>) -> Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => load(path)?,
            None => ConfigFile::default(),
        };
        let domain = args
            .domain
            .or(file.domain)
            .unwrap_or_else(|| "localhost".into());
        let muc_domain = args
            .muc_domain
            .or(file.muc_domain)
            .unwrap_or_else(|| format!("conference.{domain}"));
        let mode = match args.component.or(file.component) {
            Some(server) => Mode::Component {
                server,
                secret: args
                    .component_secret
                    .or(file.component_secret)
                    .context("--component needs --component-secret")?,
            },
            None => Mode::Bundled {
                c2s: args
                    .c2s
                    .or(file.c2s)
                    .unwrap_or_else(|| "127.0.0.1:5222".parse().expect("a valid address")),
            },
        };
        let http = match (&mode, args.http.or(file.http)) {
            (Mode::Component { .. }, Some(_)) => {
                anyhow::bail!("--http serves bundled mode only (use --metrics with --component)")
            }
            (Mode::Component { .. }, None) => None,
            (Mode::Bundled { .. }, Some(address)) => Some(HttpListen {
                address,
                required: true,
            }),
            (Mode::Bundled { .. }, None) => Some(HttpListen {
                address: DEFAULT_HTTP.parse().expect("a valid address"),
                required: false,
            }),
        };
        let https = match (&mode, args.https.or(file.https)) {
            (Mode::Component { .. }, Some(_)) => {
                anyhow::bail!("--https serves bundled mode only")
            }
            (_, https) => https,
        };
        let mut web_origins = file.web_origins;
        web_origins.extend(args.web_origins);
        if let Some(bad) = web_origins.iter().find(|origin| !is_origin(origin)) {
            anyhow::bail!("web origin {bad:?}: write it as a browser does, e.g. https://chat.example.org (no path), or *");
        }
        let guest_domain = match (&mode, args.guest_domain.or(file.guest_domain)) {
            (Mode::Component { .. }, Some(_)) => {
                anyhow::bail!("--guest-domain serves bundled mode only (guests log in to the bundled listener)")
            }
            (_, Some(guests)) if guests == domain || guests == muc_domain => {
                anyhow::bail!(
                    "--guest-domain must differ from the service's domain and the MUC domain"
                )
            }
            (_, guests) => guests,
        };
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let defaults = ExtensionLimits::default();
        let extension_limits = ExtensionLimits {
            call_budget: args
                .extension_call_ms
                .or(file.extension_call_ms)
                .map_or(defaults.call_budget, Duration::from_millis)
                .min(MAX_CALL_BUDGET),
            memory_bytes: args
                .extension_memory_mib
                .or(file.extension_memory_mib)
                .map_or(defaults.memory_bytes, |mib| mib << 20),
            instances: defaults.instances,
            max_call_budget: args
                .extension_max_call_ms
                .or(file.extension_max_call_ms)
                .map_or(defaults.max_call_budget, Duration::from_millis)
                .min(MAX_CALL_BUDGET),
            max_memory_bytes: args
                .extension_max_memory_mib
                .or(file.extension_max_memory_mib)
                .map_or(defaults.max_memory_bytes, |mib| mib << 20),
            quota_bytes: args
                .extension_storage_kib
                .or(file.extension_storage_kib)
                .map_or(defaults.quota_bytes, |kib| kib << 10),
            messages_per_minute: args
                .extension_messages_per_minute
                .or(file.extension_messages_per_minute)
                .unwrap_or(defaults.messages_per_minute),
            faults_before_off: args
                .extension_faults
                .or(file.extension_faults)
                .unwrap_or(defaults.faults_before_off)
                .max(1),
        };
        anyhow::ensure!(
            extension_limits.memory_bytes <= extension_limits.max_memory_bytes
                && extension_limits.call_budget <= extension_limits.max_call_budget,
            "--extension-memory-mib and --extension-call-ms, the defaults, must be within \
             --extension-max-memory-mib and --extension-max-call-ms, the ceilings"
        );
        let client_read_rate = match args
            .client_bytes_per_second
            .or(file.client_bytes_per_second)
            .unwrap_or(CLIENT_BYTES_PER_SECOND)
        {
            0 => None,
            bytes_per_second => Some(ReadRate {
                bytes_per_second,
                burst_bytes: args
                    .client_burst_bytes
                    .or(file.client_burst_bytes)
                    .unwrap_or(CLIENT_BURST_BYTES)
                    .max(1),
            }),
        };
        let per_second = args
            .room_messages_per_second
            .or(file.room_messages_per_second)
            .unwrap_or(ROOM_MESSAGES_PER_SECOND);
        anyhow::ensure!(
            per_second >= 0.0 && per_second.is_finite(),
            "room_messages_per_second must be a number of at least 0"
        );
        let room_message_rate = (per_second > 0.0).then(|| MessageRateLimit {
            per_second,
            burst: args
                .room_message_burst
                .or(file.room_message_burst)
                .unwrap_or(ROOM_MESSAGE_BURST)
                .max(1),
        });
        let archive_retention = Retention {
            max_age: args
                .archive_max_age
                .or(file.archive_max_age)
                .map(|age| parse_age(&age).context("archive_max_age"))
                .transpose()?,
            max_per_room: args.archive_max_per_room.or(file.archive_max_per_room),
        };
        let mut admins = file.admins;
        admins.extend(args.admins);
        let data = data.or(file.data).unwrap_or_else(|| "data".into());
        let store_section = file.store.unwrap_or_default();
        let store_url = args.store.or(store_section.url);
        let store = StoreLocation::new(&data, store_url.as_deref()).context("store")?;
        let instance = match args.instance.or(store_section.instance) {
            Some(name) => name,
            None => default_instance_name(&data),
        };
        Ok(ServeConfig {
            data,
            store,
            instance,
            domain,
            muc_domain,
            mode,
            plugin: args.plugin.or(file.plugin),
            admins,
            insecure_auth: args.insecure_auth || file.insecure_auth,
            registration: args.registration || file.registration,
            guest_domain,
            guest_rooms: args.guest_rooms.or(file.guest_rooms).unwrap_or_default(),
            metrics: args.metrics.or(file.metrics),
            http,
            https,
            web_origins,
            web_client: args.web_client.or(file.web_client),
            tls,
            max_stanza_bytes: args
                .max_stanza_bytes
                .or(file.max_stanza_bytes)
                .unwrap_or(256 * 1024),
            link_queue: args.link_queue.or(file.link_queue).unwrap_or(10_000),
            client_read_rate,
            room_message_rate,
            resumption_timeout: std::time::Duration::from_secs(
                args.resumption_timeout
                    .or(file.resumption_timeout)
                    .unwrap_or(300),
            ),
            room_idle: args.room_idle_seconds.or(file.room_idle_seconds).map_or(
                crate::storage::DEFAULT_ROOM_IDLE,
                std::time::Duration::from_secs,
            ),
            max_rooms_per_user: args
                .max_rooms_per_user
                .or(file.max_rooms_per_user)
                .unwrap_or(crate::runtime::DEFAULT_MAX_ROOMS_PER_USER),
            archive_retention,
            watch_plugin: args.watch_plugin || file.watch_plugin,
            extension_dir: args.extension_dir.or(file.extension_dir),
            extension_limits,
            #[cfg(feature = "native-plugin")]
            native_plugin: args.native_plugin,
        })
    }
}

/// A duration as `30d`: a whole number and a unit (`s`, `m`, `h`, `d` or `w`).
fn parse_age(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text.len() - text.chars().last().map_or(0, char::len_utf8);
    let (number, unit) = text.split_at(split);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => anyhow::bail!("{text:?}: give a number and a unit (s, m, h, d or w), e.g. 30d"),
    };
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?}: {number:?} is not a whole number"))?;
    anyhow::ensure!(
        number > 0,
        "{text:?}: an age of 0 would delete every message"
    );
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .with_context(|| format!("{text:?} is too long"))
}

fn load(path: &Path) -> Result<ConfigFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in {}", path.display()))
}

/// HOSTNAME:DATA: stable across restarts of one installation, distinct between two.
fn default_instance_name(data: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let data = std::path::absolute(data).unwrap_or_else(|_| data.to_path_buf());
    format!("{host}:{}", data.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_bundled_localhost_service() {
        let config = ServeConfig::resolve(ServeArgs::default(), None).unwrap();
        assert_eq!(config.domain, "localhost");
        assert_eq!(config.muc_domain, "conference.localhost");
        assert_eq!(
            config.mode,
            Mode::Bundled {
                c2s: "127.0.0.1:5222".parse().unwrap()
            }
        );
        assert_eq!(
            config.http,
            Some(HttpListen {
                address: "127.0.0.1:5280".parse().unwrap(),
                required: false
            })
        );
        assert_eq!(config.data, PathBuf::from("data"));
        assert_eq!(config.max_stanza_bytes, 262_144);
        assert_eq!(config.max_rooms_per_user, 100);
        assert_eq!(
            config.client_read_rate,
            Some(ReadRate {
                bytes_per_second: 65_536,
                burst_bytes: 524_288
            })
        );
        assert_eq!(
            config.room_message_rate,
            Some(MessageRateLimit {
                per_second: 20.0,
                burst: 60
            })
        );
    }

    #[test]
    fn a_rate_of_zero_lifts_the_flood_limits() {
        let args = ServeArgs {
            client_bytes_per_second: Some(0),
            room_messages_per_second: Some(0.0),
            ..ServeArgs::default()
        };
        let config = ServeConfig::resolve(args, None).unwrap();
        assert_eq!(config.client_read_rate, None);
        assert_eq!(config.room_message_rate, None);
        let args = ServeArgs {
            room_messages_per_second: Some(-1.0),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(args, None).is_err());
    }

    #[test]
    fn flags_win_over_the_file_and_the_example_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("muc.toml");
        std::fs::write(&path, include_str!("../../muc-host.example.toml")).unwrap();
        let args = ServeArgs {
            config: Some(path),
            domain: Some("flag.example".into()),
            max_rooms_per_user: Some(3),
            ..ServeArgs::default()
        };
        let config = ServeConfig::resolve(args, None).unwrap();
        assert_eq!(config.domain, "flag.example");
        assert_eq!(config.max_rooms_per_user, 3);
        assert_eq!(config.muc_domain, "conference.example.org", "from the file");
        assert_eq!(config.admins, ["admin@example.org"]);
    }

    #[test]
    fn archives_are_kept_whole_unless_the_operator_bounds_them() {
        let config = ServeConfig::resolve(ServeArgs::default(), None).unwrap();
        assert!(config.archive_retention.keeps_everything());
        let args = ServeArgs {
            archive_max_age: Some("30d".into()),
            archive_max_per_room: Some(5000),
            ..ServeArgs::default()
        };
        let config = ServeConfig::resolve(args, None).unwrap();
        assert_eq!(
            config.archive_retention,
            Retention {
                max_age: Some(Duration::from_secs(30 * 86_400)),
                max_per_room: Some(5000),
            }
        );
        for (text, seconds) in [
            ("45s", 45),
            ("90m", 5400),
            ("12h", 43_200),
            ("2w", 1_209_600),
        ] {
            assert_eq!(
                parse_age(text).unwrap(),
                Duration::from_secs(seconds),
                "{text}"
            );
        }
        for bad in [
            "",
            "30",
            "d",
            "0d",
            "-1d",
            "1.5h",
            "3y",
            "99999999999999999w",
        ] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn guests_go_to_public_rooms_unless_the_file_or_a_flag_says_none() {
        let config = ServeConfig::resolve(ServeArgs::default(), None).unwrap();
        assert_eq!(
            (config.guest_domain, config.guest_rooms),
            (None, GuestRooms::Public)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guests.toml");
        std::fs::write(
            &path,
            "guest_domain = 'guest.localhost'\nguest_rooms = 'none'\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let config = ServeConfig::resolve(args, None).unwrap();
        assert_eq!(config.guest_domain.as_deref(), Some("guest.localhost"));
        assert_eq!(config.guest_rooms, GuestRooms::None);
        let args = ServeArgs {
            config: Some(path),
            guest_rooms: Some(GuestRooms::Public),
            ..ServeArgs::default()
        };
        assert_eq!(
            ServeConfig::resolve(args, None).unwrap().guest_rooms,
            GuestRooms::Public
        );
    }

    #[test]
    fn a_component_needs_its_secret_and_unknown_keys_are_refused() {
        let args = ServeArgs {
            component: Some("127.0.0.1:5347".into()),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(args, None).is_err());
        let args = ServeArgs {
            component: Some("127.0.0.1:5347".into()),
            component_secret: Some("s".into()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            ..ServeArgs::default()
        };
        assert!(
            ServeConfig::resolve(args, None).is_err(),
            "no HTTP server in component mode"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "domian = 'typo.example'\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(args, None).is_err());
    }

    #[test]
    fn web_origins_are_written_as_browsers_do_and_https_and_guests_are_bundled_only() {
        let origins = |origins: &[&str]| ServeArgs {
            web_origins: origins.iter().map(|o| o.to_string()).collect(),
            ..ServeArgs::default()
        };
        let resolved = ServeConfig::resolve(origins(&["https://chat.example.org", "*"]), None);
        assert_eq!(
            resolved.unwrap().web_origins,
            ["https://chat.example.org", "*"]
        );
        for bad in [
            "chat.example.org",
            "https://chat.example.org/",
            "https://",
            "ftp://x",
        ] {
            assert!(
                ServeConfig::resolve(origins(&[bad]), None).is_err(),
                "{bad}"
            );
        }
        let component = ServeArgs {
            component: Some("127.0.0.1:5347".into()),
            component_secret: Some("s".into()),
            ..ServeArgs::default()
        };
        for args in [
            ServeArgs {
                https: Some("127.0.0.1:0".parse().unwrap()),
                ..component.clone()
            },
            ServeArgs {
                guest_domain: Some("guest.localhost".into()),
                ..component.clone()
            },
        ] {
            assert!(ServeConfig::resolve(args, None).is_err());
        }
        let guests_at_home = ServeArgs {
            guest_domain: Some("localhost".into()),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(guests_at_home, None).is_err());
    }
}
