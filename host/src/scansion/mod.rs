//! Scansion: the conversation-script format of Prosody's integration suite, and a runner for it.
//!
//! `script` parses a `.scs` file, `matcher` compares an expected stanza with a received one,
//! `runner` plays a script against a [`Harness`] (the in-process test host, or a real server).

pub mod matcher;
pub mod network;
pub mod runner;
pub mod script;

use std::time::Duration;

use minidom::Element;

/// Where scripts run: the in-process test host, or a real XMPP server over c2s.
/// Clients are named as in the script's `[Client]` blocks.
pub trait Harness {
    /// Logs `client` in as `jid` (bare or full; a full JID's resource is the one to bind) and
    /// returns the bound full JID.
    fn connect(&mut self, client: &str, jid: &str, password: &str) -> anyhow::Result<String>;
    /// Sends one stanza from `client` (its `from` is set by the server, not the script). Returns
    /// once the server has processed it, as far as the harness can tell.
    fn send(&mut self, client: &str, stanza: Element) -> anyhow::Result<()>;
    /// The next stanza delivered to `client`, waiting at most `wait` for one.
    fn next_stanza(&mut self, client: &str, wait: Duration) -> Option<Element>;
    /// Closes `client`'s session (the server treats it as a disconnect).
    fn disconnect(&mut self, client: &str) -> anyhow::Result<()>;
    /// Lets `duration` pass (our addition to scansion, for timers): a real server is waited
    /// for; the test host's virtual clock jumps, and the timers due run.
    fn wait(&mut self, duration: Duration) -> anyhow::Result<()> {
        std::thread::sleep(duration);
        Ok(())
    }
}
