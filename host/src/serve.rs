//! `muc-host serve`: the plugin runtime on a durable store, the core thread, the network side
//! (the client listener and the HTTP server, or the component link; metrics) and the control socket, until
//! SIGTERM or Ctrl-C.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::auth::Accounts;
use crate::clock::{Clock, SystemClock};
use crate::config::{HttpListen, Mode, ServeConfig};
use crate::control::{self, Answer, Control, Request};
use crate::core;
use crate::core_event::CoreEvent;
use crate::extensions::{Call, Change, ExtensionCompiler, Extensions};
use crate::http;
use crate::inbox::{Lanes, CONTROL_LANE, LINK_LANE};
use crate::lending::Place;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::runtime::{CompiledPlugin, MucBackend, PluginEngine, PluginRuntime, Preparer, Settings};
use crate::service::Service;
use crate::storage::{Storage, StoreLocation, Transaction};
use crate::swap::{self, Swapper};
use crate::xmpp::c2s::C2s;
use crate::xmpp::component::{self, Link, LinkSink};
use crate::xmpp::resumption::Resumption;
use crate::xmpp::tcp;
use crate::xmpp::tls;

/// How long stopping waits for sessions to write their last stanzas.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

/// The catalog's extensions, compiled, and those of `--extension-dir` installed (or replaced, when
/// the file changed) before anything is served.
fn load_extensions(config: &ServeConfig, storage: &mut Storage) -> Result<Extensions> {
    let compiler =
        ExtensionCompiler::new(Some(config.data.join("cache")), config.extension_limits)?;
    let mut extensions = Extensions::new(compiler.clone());
    extensions.load(storage);
    if let Some(dir) = &config.extension_dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the extension directory {}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
            .collect();
        files.sort();
        let mut txn = Transaction::default();
        for file in files {
            let bytes = std::fs::read(&file)?;
            let compiled = compiler
                .compile(&bytes)
                .with_context(|| format!("room extension {}", file.display()))?;
            let installed = extensions
                .list()
                .into_iter()
                .find(|(entry, broken)| entry.name == compiled.entry.name && broken.is_none());
            if installed.is_some_and(|(entry, _)| entry.hash == compiled.entry.hash) {
                continue;
            }
            extensions.install(compiled, &mut txn)?;
            tracing::info!(file = %file.display(), "room extension installed from the extension directory");
        }
        storage.apply(txn.writes)?;
        storage.sync()?;
    }
    for (entry, _) in extensions.list() {
        tracing::info!(
            extension = entry.name,
            version = entry.version,
            "room extension available"
        );
    }
    Ok(extensions)
}

/// `muc-host ext ...` with no service running on `data`: the same change, made on the store
/// directly. The owners of rooms that lose an extension cannot be told (nobody is connected).
pub fn change_extensions_offline(data: &Path, request: Request) -> Result<Answer> {
    let _lock = lock_data(data)?;
    // The offline change is made on the embedded store; a service on PostgreSQL is changed
    // through `ctl` while it runs.
    let mut storage = Place::holding(Storage::open(&StoreLocation::Sqlite(data.into()))?);
    if matches!(request, Request::ExtList) {
        let catalog: Vec<_> = Extensions::catalog(storage.held())
            .into_iter()
            .map(|entry| (entry, None))
            .collect();
        return Ok(Answer {
            ok: true,
            message: control::describe_catalog(&catalog),
        });
    }
    let compiler = ExtensionCompiler::new(Some(data.join("cache")), Default::default())?;
    let mut extensions = Extensions::new(compiler.clone());
    extensions.load(storage.held_mut());
    let change = match request {
        Request::ExtAdd {
            path,
            rooms,
            limits,
        } => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            Change::Install {
                compiled: Box::new(
                    compiler
                        .compile_asking(&bytes, limits)
                        .context("not installed")?,
                ),
                rooms,
            }
        }
        Request::ExtRemove { name } => Change::Remove(name),
        _ => anyhow::bail!("not an extension request"),
    };
    let mut txn = Transaction::default();
    let mut call =
        Call::new(&mut storage, &mut txn, SystemClock.now_ms()).context("opening the store")?;
    Ok(match extensions.change(change, &mut call) {
        Ok(message) => {
            storage.held_mut().apply(txn.writes)?;
            Answer { ok: true, message }
        }
        Err(error) => Answer {
            ok: false,
            message: format!("{error:#}"),
        },
    })
}

/// The SQLite file under the data directory: the plugin's store and the accounts.
pub fn database_file(data: &std::path::Path) -> PathBuf {
    data.join("muc.sqlite3")
}

/// `plugin_file` is the component `plugin` was compiled from (watched with `--watch-plugin`).
pub fn serve(
    config: ServeConfig,
    engine: Arc<PluginEngine>,
    plugin: CompiledPlugin,
    plugin_file: PathBuf,
) -> Result<()> {
    if config.insecure_auth {
        tracing::warn!("INSECURE AUTHENTICATION: any password is accepted for any account. For test suites only; never expose this service.");
    }
    let _lock = lock_data(&config.data)?;
    let mut storage = Storage::open(&config.store)?;
    tracing::info!(store = %config.store, "store opened");
    if let StoreLocation::Postgres(_) = config.store {
        // Another instance may serve rooms from this database: every room is leased.
        storage.join_cluster(&config.instance)?;
        tracing::info!(instance = config.instance, "serving rooms under leases");
    }
    storage.enable_group_commit();
    storage.set_idle_eviction(config.room_idle);
    storage.set_archive_retention(config.archive_retention);
    let extensions = load_extensions(&config, &mut storage)?;
    let compiler = extensions.compiler().clone();
    let settings = Settings {
        service: config.muc_domain.clone(),
        admins: config.admins.clone(),
        max_rooms_per_user: config.max_rooms_per_user,
        guest_domain: config.guest_domain.clone(),
        guest_rooms: config.guest_rooms,
        ..Settings::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let runtime = PluginRuntime::start(
        plugin,
        storage,
        Some(extensions),
        settings.clone(),
        clock.clone(),
    )?;
    let control = ControlParts {
        engine,
        preparer: runtime.preparer(),
        compiler,
        plugin_file,
    };
    #[cfg(feature = "native-plugin")]
    if config.native_plugin {
        tracing::warn!("the MUC logic runs linked in, unsandboxed: only for measuring what WebAssembly costs; swaps and room extensions are refused");
        // The component took the data over (and migrated it); it serves nothing now.
        let (storage, _) = runtime.into_parts();
        let native = crate::runtime::native::NativeRuntime::new(storage, settings, clock);
        return run(config, native, control);
    }
    run(config, runtime, control)
}

/// What the control socket works with, whichever runtime serves.
struct ControlParts {
    engine: Arc<PluginEngine>,
    preparer: Preparer,
    compiler: ExtensionCompiler,
    plugin_file: PathBuf,
}

/// Serves with `muc` as the MUC logic until a signal or the core's end.
fn run<M: MucBackend + Send + 'static>(
    config: ServeConfig,
    muc: M,
    parts: ControlParts,
) -> Result<()> {
    let ControlParts {
        engine,
        preparer,
        compiler,
        plugin_file,
    } = parts;
    let metrics = Metrics::new();
    let (lanes, core_inbox) = crate::inbox::inbox();
    let core_events = lanes.open(CONTROL_LANE);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    tokio.block_on(async {
        // The control socket exists before the listeners are announced, so that whoever waits
        // for the announcement can use `ctl` at once.
        let swapper = Arc::new(Swapper::new(
            engine,
            preparer,
            core_events.clone(),
            metrics.clone(),
        ));
        let control = Arc::new(Control {
            swapper: swapper.clone(),
            core: core_events.clone(),
            compiler,
        });
        tokio::spawn(control::serve(control::bind(&config.data)?, control));
        if config.watch_plugin {
            tokio::spawn(swap::watch(plugin_file, swapper.clone()));
        }
        let (router, network) = match &config.mode {
            Mode::Bundled { c2s } => {
                let listener = TcpListener::bind(c2s)
                    .await
                    .with_context(|| format!("listening on {c2s}"))?;
                announce("c2s", &listener)?;
                // The certificate names every domain a client may open a stream to.
                let mut served_domains = vec![config.domain.as_str(), config.muc_domain.as_str()];
                served_domains.extend(config.guest_domain.as_deref());
                let c2s = Arc::new(C2s {
                    domain: config.domain.clone(),
                    tls: tls::server_config(config.tls.as_ref(), &config.data, &served_domains)?,
                    accounts: Arc::new(Accounts::open(&database_file(&config.data))?),
                    auth_throttle: Default::default(),
                    insecure_auth: config.insecure_auth,
                    registration: config.registration,
                    guest_domain: config.guest_domain.clone(),
                    max_stanza_bytes: config.max_stanza_bytes,
                    read_rate: config.client_read_rate,
                    core: lanes.clone(),
                    metrics: metrics.clone(),
                    writers: Arc::new(()),
                    resumption: Resumption::new(config.resumption_timeout),
                });
                let writers = c2s.writers.clone();
                let http = serve_http(config.http, &config, &metrics, &lanes, &c2s).await?;
                let accepting = tokio::spawn(tcp::listen(listener, c2s));
                (
                    Router::new(&config.domain, &config.muc_domain)
                        .with_guest_domain(config.guest_domain.clone()),
                    Network::Listener {
                        accepting,
                        http,
                        writers,
                    },
                )
            }
            Mode::Component { server, secret } => {
                let (to_link, from_core) = tokio::sync::mpsc::unbounded_channel();
                let link = Link {
                    server: server.clone(),
                    secret: secret.clone(),
                    domain: config.muc_domain.clone(),
                    queue_bound: config.link_queue,
                    max_stanza_bytes: config.max_stanza_bytes,
                    core: lanes.open(LINK_LANE),
                    metrics: metrics.clone(),
                };
                let linked = tokio::spawn(component::run(link, from_core));
                (
                    Router::component(&config.muc_domain, Box::new(LinkSink(to_link))),
                    Network::Link(linked),
                )
            }
        };
        if let Some(address) = config.metrics {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("metrics on {address}"))?;
            announce("metrics", &listener)?;
            let router = http::metrics_only(metrics.clone(), lanes.open(CONTROL_LANE));
            tokio::spawn(http::serve(listener, router, None, None));
        }
        let (commands, diverted) = tokio::sync::mpsc::unbounded_channel();
        let admins = config.admins.iter().cloned().collect();
        tokio::spawn(swap::serve_commands(diverted, swapper, admins));
        let mut service = Service::new(router, muc)
            .with_metrics(metrics.clone())
            .with_host_commands(commands);
        service.limit_message_rate(config.room_message_rate);
        let core_metrics = metrics.clone();
        // If the core thread ends before it is told to (a bug), the service must not go on
        // accepting stanzas nobody handles: its end is watched like a signal.
        let (core_alive, core_ended) = tokio::sync::oneshot::channel::<()>();
        let core = std::thread::Builder::new()
            .name("muc-core".into())
            .spawn(move || {
                let _alive = core_alive;
                core::run(service, core_inbox, core_metrics)
            })?;
        tracing::info!(domain = config.muc_domain, "serving");

        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
            _ = core_ended => {
                tracing::error!("the core thread ended unexpectedly; stopping");
                anyhow::bail!("the core thread ended unexpectedly (see the log)");
            }
        }
        network.stop_accepting();
        let _ = core_events.send(CoreEvent::Shutdown).await;
        drop(core_events);
        drop(lanes);
        tokio::task::spawn_blocking(move || core.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the core thread panicked"))?;
        network.drain().await;
        Ok(())
    })
}

/// One service per data directory: a second one would overwrite the first's store and take
/// its control socket. The lock lasts as long as the returned file is open.
fn lock_data(data: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let path = data.join("lock");
    let file =
        std::fs::File::create(&path).with_context(|| format!("opening {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another muc-host serve is using {} (it holds {})",
            data.display(),
            path.display()
        )
    })?;
    Ok(file)
}

/// Starts bundled mode's HTTP server (none when the default address is taken), and its HTTPS
/// twin when asked for.
async fn serve_http(
    http: Option<HttpListen>,
    config: &ServeConfig,
    metrics: &Arc<Metrics>,
    lanes: &Lanes,
    c2s: &Arc<C2s>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut listeners = Vec::new();
    match http {
        None => {}
        Some(http) => match TcpListener::bind(http.address).await {
            Ok(listener) => listeners.push(("http", listener, None)),
            Err(error) if !http.required => {
                tracing::warn!(address = %http.address, %error, "the HTTP server's default address is taken: no WebSocket or discovery (give --http ADDR:PORT)");
            }
            Err(error) => return Err(error).with_context(|| format!("HTTP on {}", http.address)),
        },
    }
    if let Some(address) = config.https {
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("HTTPS on {address}"))?;
        listeners.push(("https", listener, Some(c2s.tls.clone())));
    }
    let origins = http::OriginPolicy {
        allowed: config.web_origins.clone(),
    };
    let web_client = http::WebClient::locate(config.web_client.as_deref())?;
    let mut servers = Vec::new();
    for (name, listener, tls) in listeners {
        announce(name, &listener)?;
        let site = http::Site {
            domain: config.domain.clone(),
            muc_domain: config.muc_domain.clone(),
            guest_domain: config.guest_domain.clone(),
            registration: config.registration,
            web_client: web_client.clone(),
            local: listener.local_addr()?,
            core: lanes.open(CONTROL_LANE),
        };
        let router = http::bundled(
            metrics.clone(),
            lanes.open(CONTROL_LANE),
            c2s.clone(),
            origins.clone(),
            site,
        );
        let server = http::serve(listener, router, config.client_read_rate, tls);
        servers.push(tokio::spawn(server));
    }
    Ok(servers)
}

/// Prints where a listener ended up (the port may have been 0), for operators and tests.
fn announce(what: &str, listener: &TcpListener) -> Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "{what} listening");
    println!("muc-host: {what} listening on {address}");
    std::io::stdout().flush()?;
    Ok(())
}

enum Network {
    Listener {
        accepting: tokio::task::JoinHandle<()>,
        /// The HTTP servers (HTTP, HTTPS), whose WebSocket connections are clients too.
        http: Vec<tokio::task::JoinHandle<()>>,
        writers: Arc<()>,
    },
    Link(tokio::task::JoinHandle<()>),
}

impl Network {
    fn stop_accepting(&self) {
        if let Network::Listener {
            accepting, http, ..
        } = self
        {
            accepting.abort();
            for server in http {
                server.abort();
            }
        }
    }

    /// Waits (a little) for the last stanzas, 332s included, to reach the sockets.
    async fn drain(self) {
        let deadline = Instant::now() + DRAIN_GRACE;
        match self {
            Network::Listener { writers, .. } => {
                // Ours, the listener's, and one per writer still flushing.
                while Arc::strong_count(&writers) > 2 && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Network::Link(link) => {
                let _ = tokio::time::timeout_at(deadline.into(), link).await;
            }
        }
    }
}
