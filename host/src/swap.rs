//! Hot swap of the MUC logic, whole: compiling the new component (or loading it from the
//! compiled cache) and instantiating it off the core thread while the old plugin serves; the
//! switch between two stanzas on the core thread, where the new plugin's `init` and `describe`
//! run (they may read the store, which only the core holds); rollback to
//! the plugin kept from the last swap; one swap at a time; the log line and the metrics;
//! `--watch-plugin`; and the XEP-0050 command that asks for a swap from an XMPP client. The
//! control socket, the ad-hoc command and the core call it; it looks only down.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use minidom::Element;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::adhoc::{self, Action};
use crate::core_event::CoreEvent;
use crate::inbox::Lane;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::runtime::{CompiledPlugin, MucBackend, PluginEngine, Prepared, Preparer, SwapReport};
use crate::service::Service;

/// The refusal of a swap asked for while another is under way.
pub const BUSY: &str = "a swap is already in progress: try again when it has ended";
const STOPPING: &str = "the service is stopping";

/// Swaps for a running service: what preparing a plugin needs, and the way to its core.
pub struct Swapper {
    engine: Arc<PluginEngine>,
    preparer: Preparer,
    core: Lane,
    metrics: Arc<Metrics>,
    /// Held for the whole of a swap or rollback.
    swapping: Mutex<()>,
}

impl Swapper {
    pub fn new(
        engine: Arc<PluginEngine>,
        preparer: Preparer,
        core: Lane,
        metrics: Arc<Metrics>,
    ) -> Swapper {
        Swapper {
            engine,
            preparer,
            core,
            metrics,
            swapping: Mutex::new(()),
        }
    }

    /// Swaps the component at `path` in; the answer says what replaced what, or why not.
    pub async fn swap(&self, path: PathBuf) -> Result<String, String> {
        let outcome = match self.swapping.try_lock() {
            Ok(_swapping) => self.compile_and_swap(path).await,
            Err(_) => Err(BUSY.to_string()),
        };
        self.count(outcome)
    }

    /// Swaps back to the plugin the last swap replaced.
    pub async fn rollback(&self) -> Result<String, String> {
        let outcome = match self.swapping.try_lock() {
            Ok(_swapping) => self.swap_back().await,
            Err(_) => Err(BUSY.to_string()),
        };
        self.count(outcome)
    }

    fn count(&self, outcome: Result<String, String>) -> Result<String, String> {
        let label = match outcome {
            Ok(_) => OutcomeLabel::ok(),
            Err(_) => OutcomeLabel::refused(),
        };
        self.metrics.swaps.get_or_create(&label).inc();
        outcome
    }

    async fn compile_and_swap(&self, path: PathBuf) -> Result<String, String> {
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
            Ok((Err(error), _)) => Err(format!("{error:#}")),
            Err(error) => Err(format!("compiling: {error}")),
        }
    }

    async fn swap_back(&self) -> Result<String, String> {
        let (reply, previous) = oneshot::channel();
        self.core
            .send(CoreEvent::Previous { reply })
            .await
            .map_err(|_| STOPPING)?;
        match previous.await {
            Ok(Some(plugin)) => self.swap_to(plugin).await,
            Ok(None) => Err("there is no previous plugin to roll back to".into()),
            Err(_) => Err(STOPPING.into()),
        }
    }

    /// Instantiates `plugin` off the core thread, then has the core switch to it.
    async fn swap_to(&self, plugin: CompiledPlugin) -> Result<String, String> {
        let preparer = self.preparer.clone();
        let prepared = match tokio::task::spawn_blocking(move || preparer.prepare(plugin)).await {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(error)) => {
                tracing::warn!(reason = %format!("{error:#}"), outcome = "refused", "plugin swap");
                return Err(format!(
                    "the new plugin failed to start, the old one serves on: {error:#}"
                ));
            }
            Err(error) => return Err(format!("preparing: {error}")),
        };
        let (reply, outcome) = oneshot::channel();
        let event = CoreEvent::Swap {
            prepared: Box::new(prepared),
            reply,
        };
        self.core.send(event).await.map_err(|_| STOPPING)?;
        let report = outcome.await.map_err(|_| STOPPING)??;
        Ok(format!(
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
        ))
    }
}

impl<M: MucBackend> Service<M> {
    /// The switch itself, on the core thread between two stanzas: stanzas arriving meanwhile
    /// wait in the inbox, in order, for the new plugin. What its upgrade sent waits for the next
    /// flush like any other stanza.
    pub fn swap(&mut self, prepared: Prepared) -> Result<SwapReport, String> {
        let started = Instant::now();
        let to_hash = prepared.hash().to_string();
        let from = self.muc.status().info;
        let outcome = self.muc.swap(prepared);
        let pause = started.elapsed();
        if let Some(metrics) = self.metrics() {
            metrics.swap_pause_seconds.observe(pause.as_secs_f64());
        }
        match outcome {
            Ok((report, outbound)) => {
                tracing::info!(
                    from = report.from.version,
                    from_hash = report.from.hash,
                    to = report.to.version,
                    to_hash = report.to.hash,
                    upgraded = report.upgraded,
                    pause_us = pause.as_micros() as u64,
                    outcome = "swapped",
                    "plugin swap"
                );
                self.deliver_all(outbound);
                // Whatever version the data is in now, this plugin took it over.
                self.data_upgraded_to = None;
                Ok(report)
            }
            Err(error) => {
                tracing::warn!(
                    from = from.version,
                    to_hash,
                    pause_us = pause.as_micros() as u64,
                    outcome = "refused",
                    reason = %error,
                    "plugin swap"
                );
                Err(error)
            }
        }
    }
}

/// `--watch-plugin`: swaps `path` in whenever its file changes and has stayed unchanged for a
/// second (so a half-written build is not taken).
pub async fn watch(path: PathBuf, swapper: Arc<Swapper>) {
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
            let outcome = swapper.swap(path.clone()).await;
            // Busy with another swap: try again on the next tick.
            if outcome.as_ref().err().map(String::as_str) != Some(BUSY) {
                current = now;
            }
            let (ok, message) = match outcome {
                Ok(message) => (true, message),
                Err(message) => (false, message),
            };
            tracing::info!(path = %path.display(), ok, message, "plugin file changed");
        }
    }
}

/// Runs the XEP-0050 swap command (see [`crate::adhoc`]) for each iq the core diverts here; the
/// answers go back through the core, in order with everything else it sends.
pub async fn serve_commands(
    mut commands: mpsc::UnboundedReceiver<Element>,
    swapper: Arc<Swapper>,
    admins: BTreeSet<String>,
) {
    let admins = Arc::new(admins);
    while let Some(iq) = commands.recv().await {
        let (swapper, admins) = (swapper.clone(), admins.clone());
        tokio::spawn(async move {
            let answer = match adhoc::step(&admins, &iq) {
                adhoc::Step::Answer(answer) => answer,
                adhoc::Step::Run { action, session } => {
                    let outcome = match action {
                        Action::Swap(path) => swapper.swap(path).await,
                        Action::Rollback => swapper.rollback().await,
                    };
                    adhoc::completed(&iq, &session, outcome)
                }
            };
            let _ = swapper.core.send(CoreEvent::FromHost(answer)).await;
        });
    }
}

/// The first 12 hex digits of a hash, as the swap's answers show it.
pub fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
