//! The control socket of a running `muc-host serve` (`muc-host ctl ...`): hot swap, rollback,
//! status and the room extensions' catalog. It is a Unix socket in `DATA/control/`, a directory
//! only the service's user may enter, so only that user (and root) can talk to it. One JSON
//! request line, one JSON answer line. Swaps are [`crate::swap`]'s; everything else is asked of
//! the core thread through its events: this module never touches the store or the extensions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use crate::core_event::{CoreEvent, Reply};
use crate::extensions::{AskedLimits, Change, Entry, ExtensionCompiler};
use crate::inbox::Lane;
use crate::runtime::Status;
use crate::swap::{short, Swapper};

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
        /// Within the operator's ceilings; what it leaves out is the operator's default.
        #[serde(default)]
        limits: AskedLimits,
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
    pub swapper: Arc<Swapper>,
    pub core: Lane,
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
        let outcome = match request {
            Request::Status => self
                .ask(|reply| CoreEvent::Status { reply })
                .await
                .map(|status| describe_status(&status)),
            Request::Swap { path } => self.swapper.swap(path).await,
            Request::Rollback => self.swapper.rollback().await,
            Request::ExtAdd {
                path,
                rooms,
                limits,
            } => self.add_extension(path, rooms, limits).await,
            Request::ExtRemove { name } => self.change_extensions(Change::Remove(name)).await,
            Request::ExtList => self
                .ask(|reply| CoreEvent::ExtensionList { reply })
                .await
                .map(|list| describe_catalog(&list)),
        };
        match outcome {
            Ok(message) => Answer { ok: true, message },
            Err(message) => refused(message),
        }
    }

    /// Compiles the extension off the core thread, like a plugin swap; only the switch is on it.
    async fn add_extension(
        &self,
        path: PathBuf,
        rooms: Option<Vec<String>>,
        limits: AskedLimits,
    ) -> Result<String, String> {
        let compiler = self.compiler.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            compiler.compile_asking(&bytes, limits)
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
            Ok(Err(error)) => Err(format!("not installed: {error:#}")),
            Err(error) => Err(format!("compiling: {error}")),
        }
    }

    async fn change_extensions(&self, change: Change) -> Result<String, String> {
        let change = Box::new(change);
        self.ask(|reply| CoreEvent::Extensions { change, reply })
            .await?
    }

    /// Asks the core thread and waits for its answer.
    async fn ask<T>(&self, event: impl FnOnce(Reply<T>) -> CoreEvent) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        let stopping = || "the service is stopping".to_string();
        self.core.send(event(reply)).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())
    }
}

fn refused(message: impl Into<String>) -> Answer {
    Answer {
        ok: false,
        message: message.into(),
    }
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
                "{} {} ({}): {} [allowed in {}] [{}]",
                entry.name,
                entry.version,
                short(&entry.hash),
                entry.description,
                entry.allowed_rooms(),
                entry.limits
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
    match &status.cluster {
        None => {}
        Some(Err(error)) => text.push_str(&format!("\ncluster:       unknown ({error})")),
        Some(Ok(members)) => {
            text.push_str(&format!(
                "\ncluster:       {} instances on the PostgreSQL store",
                members.len()
            ));
            for member in members {
                text.push_str(&format!(
                    "\n  {}{}: {}, {} rooms, heartbeat {:.1} s ago",
                    member.name,
                    if member.this_one { " (this one)" } else { "" },
                    if member.alive { "alive" } else { "gone" },
                    member.rooms,
                    member.heartbeat_age_s
                ));
            }
        }
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
