//! The control socket of a running `muc-host serve` (`muc-host ctl ...`): hot swap, rollback
//! and status. It is a Unix socket in `DATA/control/`, a directory only the service's user may
//! enter, so only that user (and root) can talk to it. One JSON request line, one JSON answer
//! line.
//!
//! A swap is compiled (or loaded from the compiled cache), checked against the contract,
//! instantiated and initialised here, off the core thread, while the old plugin keeps serving;
//! only the switch itself happens on the core thread, between two stanzas. One swap at a time: a
//! second request while one is under way is refused, not queued.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Mutex};

use crate::core::CoreEvent;
use crate::extensions::{Change, Entry, ExtensionCompiler, SharedExtensions};
use crate::inbox::Lane;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::runtime::{CompiledPlugin, PluginEngine, Preparer, Status};

#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Swap {
        path: PathBuf,
    },
    Rollback,
    Status,
    /// Install (or replace) a room extension; `rooms`: where owners may switch it on (all when
    /// absent).
    ExtAdd {
        path: PathBuf,
        rooms: Option<Vec<String>>,
    },
    ExtRemove {
        name: String,
    },
    ExtList,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Answer {
    pub ok: bool,
    pub message: String,
}

/// The socket's path under the data directory.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("control").join("muc-host.sock")
}

/// What every request shares.
pub struct Control {
    pub engine: Arc<PluginEngine>,
    pub preparer: Preparer,
    pub core: Lane,
    pub metrics: Arc<Metrics>,
    /// Held for the whole of a swap or rollback.
    pub swapping: Mutex<()>,
    pub extensions: SharedExtensions,
    /// Compiles new extensions off the core thread.
    pub compiler: ExtensionCompiler,
}

/// Binds the socket (replacing a stale one) with owner-only permissions.
pub fn bind(data: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data);
    let dir = path.parent().expect("the socket is in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if path.exists() {
        std::fs::remove_file(&path)?;
    }
    let (_dir, reachable) = reachable(&path)?;
    let listener =
        UnixListener::bind(&reachable).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A name for the socket at `path` short enough for `sun_path` (108 bytes): the path itself, or
/// the same file through an open handle on its directory (`/proc/self/fd/N/...`), kept open by
/// the returned file as long as the name is used.
fn reachable(path: &Path) -> Result<(Option<std::fs::File>, PathBuf)> {
    use std::os::fd::AsRawFd;
    if path.as_os_str().len() < 100 {
        return Ok((None, path.to_path_buf()));
    }
    let dir = path.parent().expect("the socket is in a directory");
    let handle = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let name = path.file_name().expect("the socket has a name");
    let short = Path::new("/proc/self/fd")
        .join(handle.as_raw_fd().to_string())
        .join(name);
    Ok((Some(handle), short))
}

/// Answers requests until the task is dropped.
pub async fn serve(listener: UnixListener, control: Arc<Control>) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                tokio::spawn(control.clone().answer(socket));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a control request failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

impl Control {
    async fn answer(self: Arc<Self>, socket: UnixStream) {
        let (read, mut write) = socket.into_split();
        let mut line = String::new();
        let answer = match BufReader::new(read).read_line(&mut line).await {
            Ok(_) => match serde_json::from_str::<Request>(&line) {
                Ok(request) => self.handle(request).await,
                Err(error) => refused(format!("not a request: {error}")),
            },
            Err(error) => refused(format!("reading the request: {error}")),
        };
        let mut text = serde_json::to_string(&answer).expect("an answer serialises");
        text.push('\n');
        let _ = write.write_all(text.as_bytes()).await;
    }

    pub async fn handle(&self, request: Request) -> Answer {
        let swapping = matches!(request, Request::Swap { .. } | Request::Rollback);
        let answer = self.answer_to(request).await;
        if swapping {
            let outcome = if answer.ok {
                OutcomeLabel::ok()
            } else {
                OutcomeLabel::refused()
            };
            self.metrics.swaps.get_or_create(&outcome).inc();
        }
        answer
    }

    async fn answer_to(&self, request: Request) -> Answer {
        match request {
            Request::Status => match self.status().await {
                Ok(status) => Answer {
                    ok: true,
                    message: describe_status(&status),
                },
                Err(error) => refused(error),
            },
            Request::Swap { path } => {
                let Ok(_swapping) = self.swapping.try_lock() else {
                    return refused("a swap is already in progress: try again when it has ended");
                };
                let engine = self.engine.clone();
                let compiled = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let compiled = engine.compile(&path);
                    (compiled, started.elapsed())
                })
                .await;
                match compiled {
                    Ok((Ok(plugin), took)) => {
                        tracing::info!(
                            hash = plugin.hash,
                            compile_ms = took.as_millis() as u64,
                            "new plugin compiled"
                        );
                        self.swap_to(plugin).await
                    }
                    Ok((Err(error), _)) => refused(format!("{error:#}")),
                    Err(error) => refused(format!("compiling: {error}")),
                }
            }
            Request::ExtAdd { path, rooms } => {
                let compiler = self
                    .extensions
                    .lock()
                    .expect("extensions lock")
                    .compiler()
                    .clone();
                // Compiled off the core thread, like a plugin swap; only the switch is on it.
                let compiled = tokio::task::spawn_blocking(move || {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    compiler.compile(&bytes)
                })
                .await;
                match compiled {
                    Ok(Ok(compiled)) => {
                        self.change_extensions(Change::Install {
                            compiled: Box::new(compiled),
                            rooms,
                        })
                        .await
                    }
                    Ok(Err(error)) => refused(format!("not installed: {error:#}")),
                    Err(error) => refused(format!("compiling: {error}")),
                }
            }
            Request::ExtRemove { name } => self.change_extensions(Change::Remove(name)).await,
            Request::ExtList => {
                // The core holds the lock through a room's hooks: wait for it off the workers.
                let extensions = self.extensions.clone();
                match tokio::task::spawn_blocking(move || {
                    extensions.lock().expect("extensions lock").list()
                })
                .await
                {
                    Ok(list) => Answer {
                        ok: true,
                        message: describe_catalog(&list),
                    },
                    Err(error) => refused(format!("listing: {error}")),
                }
            }
            Request::Rollback => {
                let Ok(_swapping) = self.swapping.try_lock() else {
                    return refused("a swap is already in progress: try again when it has ended");
                };
                let (reply, previous) = oneshot::channel();
                if self.core.send(CoreEvent::Previous { reply }).await.is_err() {
                    return refused("the service is stopping");
                }
                match previous.await {
                    Ok(Some(plugin)) => self.swap_to(plugin).await,
                    Ok(None) => refused("there is no previous plugin to roll back to"),
                    Err(_) => refused("the service is stopping"),
                }
            }
        }
    }

    /// Prepares `plugin` off the core thread, then has the core switch to it.
    async fn swap_to(&self, plugin: CompiledPlugin) -> Answer {
        let preparer = self.preparer.clone();
        let prepared = tokio::task::spawn_blocking(move || preparer.prepare(plugin)).await;
        let prepared = match prepared {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(error)) => {
                tracing::warn!(reason = %format!("{error:#}"), outcome = "refused", "plugin swap");
                return refused(format!(
                    "the new plugin failed to start, the old one serves on: {error:#}"
                ));
            }
            Err(error) => return refused(format!("preparing: {error}")),
        };
        let (reply, outcome) = oneshot::channel();
        let event = CoreEvent::Swap {
            prepared: Box::new(prepared),
            reply,
        };
        if self.core.send(event).await.is_err() {
            return refused("the service is stopping");
        }
        match outcome.await {
            Ok(Ok(report)) => Answer {
                ok: true,
                message: format!(
                    "swapped {} {} ({}) for {} {} ({}){}",
                    report.from.name,
                    report.from.version,
                    short(&report.from.hash),
                    report.to.name,
                    report.to.version,
                    short(&report.to.hash),
                    if report.upgraded {
                        "; the data was upgraded"
                    } else {
                        ""
                    }
                ),
            },
            Ok(Err(error)) => refused(error),
            Err(_) => refused("the service is stopping"),
        }
    }

    async fn change_extensions(&self, change: Change) -> Answer {
        let (reply, outcome) = oneshot::channel();
        let event = CoreEvent::Extensions {
            change: Box::new(change),
            reply,
        };
        if self.core.send(event).await.is_err() {
            return refused("the service is stopping");
        }
        match outcome.await {
            Ok(Ok(message)) => Answer { ok: true, message },
            Ok(Err(error)) => refused(error),
            Err(_) => refused("the service is stopping"),
        }
    }

    async fn status(&self) -> Result<Status, String> {
        let (reply, status) = oneshot::channel();
        self.core
            .send(CoreEvent::Status { reply })
            .await
            .map_err(|_| "the service is stopping".to_string())?;
        status
            .await
            .map_err(|_| "the service is stopping".to_string())
    }
}

/// Runs the XEP-0050 swap command for each iq the core diverts here; the answers go back
/// through the core, in order with everything else it sends.
pub async fn serve_commands(
    mut commands: tokio::sync::mpsc::UnboundedReceiver<minidom::Element>,
    control: Arc<Control>,
    admins: std::collections::BTreeSet<String>,
) {
    let admins = Arc::new(admins);
    while let Some(iq) = commands.recv().await {
        let (control, admins) = (control.clone(), admins.clone());
        tokio::spawn(async move {
            let answer = crate::adhoc::run(&control, &admins, iq).await;
            let _ = control.core.send(CoreEvent::FromHost(answer)).await;
        });
    }
}

/// `--watch-plugin`: swaps `path` in whenever its file changes and has stayed unchanged for a
/// second (so a half-written build is not taken).
pub async fn watch(path: PathBuf, control: Arc<Control>) {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| Ok((meta.modified()?, meta.len())))
            .ok()
    };
    let mut current = stamp(&path);
    let mut seen = current;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = stamp(&path);
        if now != seen {
            seen = now;
            continue;
        }
        if now.is_some() && now != current {
            let answer = control.handle(Request::Swap { path: path.clone() }).await;
            // Busy with another swap: try again on the next tick.
            if answer.ok || !answer.message.contains("in progress") {
                current = now;
            }
            tracing::info!(path = %path.display(), ok = answer.ok, message = answer.message, "plugin file changed");
        }
    }
}

fn refused(message: impl Into<String>) -> Answer {
    Answer {
        ok: false,
        message: message.into(),
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// `ext list`: one line per installed extension, saying why when it did not load.
pub fn describe_catalog(entries: &[(Entry, Option<String>)]) -> String {
    if entries.is_empty() {
        return "no room extensions installed".into();
    }
    entries
        .iter()
        .map(|(entry, broken)| {
            let mut line = format!(
                "{} {} ({}): {} [allowed in {}]",
                entry.name,
                entry.version,
                short(&entry.hash),
                entry.description,
                entry.allowed_rooms()
            );
            if let Some(why) = broken {
                line.push_str(&format!(" NOT LOADED: {why}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn describe_status(status: &Status) -> String {
    let info = &status.info;
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let mut text = format!(
        "plugin:        {}\nversion:       {}\ncontract:      {}\nsha256:        {}\nloaded since:  {} ms since the Unix epoch ({} s ago)\nstanzas:       {}\nfaults:        {}\ninstances:     {}",
        info.name,
        info.version,
        info.contract,
        info.hash,
        status.loaded_since_ms,
        now.saturating_sub(status.loaded_since_ms) / 1000,
        status.stats.calls,
        status.stats.faults,
        status.stats.instances_created,
    );
    if let Some(previous) = &status.previous {
        text.push_str(&format!(
            "\nprevious:      {} {} ({}), kept for rollback",
            previous.name,
            previous.version,
            short(&previous.hash)
        ));
    }
    text
}

/// `muc-host ctl`: sends one request to the service running on `data` and returns its answer.
pub fn request(data: &Path, request: &Request) -> Result<Answer> {
    use std::io::{BufRead, Write};
    let path = socket_path(data);
    let (_dir, reachable) = reachable(&path)
        .with_context(|| format!("is `muc-host serve --data {}` running?", data.display()))?;
    let mut socket = std::os::unix::net::UnixStream::connect(&reachable).with_context(|| {
        format!(
            "connecting to {} (is `muc-host serve --data {}` running, as this user?)",
            path.display(),
            data.display()
        )
    })?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    socket.write_all(line.as_bytes())?;
    let mut answer = String::new();
    std::io::BufReader::new(socket).read_line(&mut answer)?;
    serde_json::from_str(&answer).with_context(|| format!("the service answered {answer:?}"))
}
