//! The bundled test host: a whole service in-process (routing core, plugin runtime, in-memory
//! store) with a virtual clock, driven by scansion scripts. No network, no server to start, and
//! nothing a script sees depends on timing: every stanza is fully handled before `send` returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use jid::{FullJid, Jid};
use minidom::Element;

use crate::clock::ManualClock;
use crate::extensions::{Compiled, ExtensionCompiler, Extensions};
use crate::router::{QueueSink, Router};
use crate::runtime::{CompiledPlugin, Limits, PluginRuntime, Settings};
use crate::scansion::Harness;
use crate::service::Service;
use crate::storage::Storage;

/// The addresses the conformance scripts expect (see shared/conformance/README.md).
pub const DOMAIN: &str = "localhost";
pub const MUC_DOMAIN: &str = "conference.localhost";
pub const ADMIN: &str = "admin@localhost";

/// Virtual time that passes with each stanza, so timestamps in a script are ordered.
const STANZA_INTERVAL_MS: u64 = 10;

pub struct TestHost {
    service: Service,
    clock: Arc<ManualClock>,
    clients: HashMap<String, (FullJid, QueueSink)>,
    resources_made: u32,
}

impl TestHost {
    /// A fresh service around `plugin`, with an empty store and the scripts' addresses.
    pub fn new(plugin: CompiledPlugin) -> Result<TestHost> {
        TestHost::with_limits(plugin, Limits::default())
    }

    pub fn with_limits(plugin: CompiledPlugin, limits: Limits) -> Result<TestHost> {
        let settings = Settings {
            service: MUC_DOMAIN.to_string(),
            admins: vec![ADMIN.to_string()],
            limits,
            ..Settings::default()
        };
        TestHost::with_settings(plugin, settings)
    }

    /// A fresh service with `extensions` (compiled by `compiler`) switched on in every room
    /// (with none, as `new`).
    pub fn with_extensions(
        plugin: CompiledPlugin,
        compiler: &ExtensionCompiler,
        extensions: &[Compiled],
    ) -> Result<TestHost> {
        let mut installed = Extensions::new(compiler.clone());
        for extension in extensions {
            installed.install_everywhere(extension.clone());
        }
        TestHost::with_installed_extensions(plugin, installed)
    }

    /// A fresh service whose rooms may use the extensions in `extensions` (reached afterwards
    /// through `service().muc`).
    pub fn with_installed_extensions(
        plugin: CompiledPlugin,
        extensions: Extensions,
    ) -> Result<TestHost> {
        let settings = Settings {
            service: MUC_DOMAIN.to_string(),
            admins: vec![ADMIN.to_string()],
            ..Settings::default()
        };
        TestHost::start(plugin, Some(extensions), settings)
    }

    pub fn with_settings(plugin: CompiledPlugin, settings: Settings) -> Result<TestHost> {
        TestHost::start(plugin, None, settings)
    }

    fn start(
        plugin: CompiledPlugin,
        extensions: Option<Extensions>,
        settings: Settings,
    ) -> Result<TestHost> {
        let clock = Arc::new(ManualClock::new());
        let muc = PluginRuntime::start(
            plugin,
            Storage::in_memory(),
            extensions,
            settings,
            clock.clone(),
        )?;
        Ok(TestHost {
            service: Service::new(Router::new(DOMAIN, MUC_DOMAIN), muc),
            clock,
            clients: HashMap::new(),
            resources_made: 0,
        })
    }

    pub fn service(&mut self) -> &mut Service {
        &mut self.service
    }

    /// Runs the timers due on the virtual clock and delivers what they sent.
    pub fn run_due_timers(&mut self) -> Result<()> {
        self.service.run_due_timers();
        self.service.flush()?;
        Ok(())
    }

    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    fn client(&self, client: &str) -> Result<&(FullJid, QueueSink)> {
        self.clients
            .get(client)
            .ok_or_else(|| anyhow!("{client} is not connected"))
    }
}

impl Harness for TestHost {
    fn connect(&mut self, client: &str, jid: &str, _password: &str) -> Result<String> {
        let jid = Jid::new(jid).with_context(|| format!("{client}'s JID '{jid}'"))?;
        let full = match jid.try_into_full() {
            Ok(full) => full,
            Err(bare) => {
                self.resources_made += 1;
                bare.with_resource_str(&format!("scansion{}", self.resources_made))?
            }
        };
        let sink = QueueSink::default();
        self.service.connect(full.clone(), Box::new(sink.clone()));
        self.service.flush()?;
        self.clients
            .insert(client.to_string(), (full.clone(), sink));
        Ok(full.to_string())
    }

    fn send(&mut self, client: &str, stanza: Element) -> Result<()> {
        let from = self.client(client)?.0.clone();
        self.clock.advance_ms(STANZA_INTERVAL_MS);
        self.service.from_client(&from, stanza);
        self.service.run_due_timers();
        self.service.flush()?;
        Ok(())
    }

    fn next_stanza(&mut self, client: &str, _wait: Duration) -> Option<Element> {
        self.clients.get(client)?.1.pop()
    }

    /// The virtual clock jumps; the timers it passes fire, in order.
    fn wait(&mut self, duration: Duration) -> Result<()> {
        self.clock.advance_ms(duration.as_millis() as u64);
        self.run_due_timers()
    }

    fn disconnect(&mut self, client: &str) -> Result<()> {
        let (jid, _) = self
            .clients
            .remove(client)
            .ok_or_else(|| anyhow!("{client} is not connected"))?;
        self.service.disconnect(&jid);
        self.service.flush()?;
        Ok(())
    }
}
