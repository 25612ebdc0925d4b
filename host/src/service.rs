//! The service core: takes stanzas from client sessions (or from the server a component link
//! leads to), stamps and routes them, hands the MUC's to the plugin runtime, and delivers what
//! comes back. Sockets, if any, live outside it.
//!
//! Nothing leaves before it is safe to: every stanza the core produces waits in the outbox until
//! [`Service::flush`] has made the writes behind it durable (group commit), then leaves in the
//! order it was produced.

use std::sync::Arc;
use std::time::Instant;

use jid::{FullJid, Jid};
use minidom::rxml::{xml_ncname, Namespace};
use minidom::Element;
use tokio::sync::mpsc::UnboundedSender;

use crate::adhoc;
use crate::core_event::Gauges;
use crate::extensions::{Call, Change, Entry};
use crate::message_rate::{MessageRate, MessageRateLimit};
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::router::{Destination, Router, SessionSink};
use crate::runtime::{Fault, Inbound, MucBackend, PluginRuntime, Status};
use crate::server;
use crate::stanza_error::{error_reply, error_reply_saying, DefinedCondition, ErrorType};
use crate::storage::lease::Fenced;
use crate::storage::{Storage, StorageError, Tier, Transaction};

/// The core around a MUC backend: the plugin component, or (for measuring what WebAssembly
/// costs) the same logic linked natively.
pub struct Service<M: MucBackend = PluginRuntime> {
    pub router: Router,
    pub muc: M,
    outbox: Vec<Outbound>,
    metrics: Option<Arc<Metrics>>,
    /// Where the host's own commands on the MUC service go (hot swap), instead of the plugin.
    host_commands: Option<UnboundedSender<Element>>,
    /// The per-occupant message rate in rooms, if limited.
    message_rate: Option<MessageRate>,
    /// Handing the MUC the server's answers to its requests to accounts (see `deliver_all`).
    answering_for_accounts: bool,
    /// Another instance sharing the store upgraded the data to this plugin version: this one
    /// refuses stanzas and fires no timers until a swap brings it to that version.
    pub(crate) data_upgraded_to: Option<String>,
}

impl<M: MucBackend> Service<M> {
    pub fn new(router: Router, muc: M) -> Service<M> {
        Service {
            router,
            muc,
            outbox: Vec::new(),
            metrics: None,
            host_commands: None,
            message_rate: None,
            answering_for_accounts: false,
            data_upgraded_to: None,
        }
    }

    /// Refuses messages to a room (or its occupants) beyond `limit` per sender and room (None:
    /// no limit, as a new service).
    pub fn limit_message_rate(&mut self, limit: Option<MessageRateLimit>) {
        self.message_rate = limit.map(MessageRate::new);
    }

    /// Diverts the host's ad-hoc commands (see [`crate::adhoc`]) to `commands`.
    pub fn with_host_commands(mut self, commands: UnboundedSender<Element>) -> Service<M> {
        self.host_commands = Some(commands);
        self
    }

    /// A stanza the host itself sends (the answer to one of its commands), in order with the rest.
    pub fn send_from_host(&mut self, stanza: Element) {
        self.outbox.push(stanza.into());
    }

    /// An iq the host asks the MUC as the server itself (a web page showing a room): the MUC's
    /// answer to it, kept from the outbox (it is for no session); anything else the call sent
    /// is delivered as usual. None while this instance may not call the MUC, or when the call
    /// failed.
    pub fn ask_muc(&mut self, mut iq: Element) -> Option<Element> {
        if self.data_upgraded_to.is_some() {
            return None;
        }
        let from = self.router.domain().to_string();
        iq.set_attr(Namespace::NONE, xml_ncname!("from").into(), from.as_str());
        let to = iq.attr("to").unwrap_or_default().to_string();
        let outbound = self
            .muc
            .handle_stanza(Inbound {
                stanza: &iq,
                from: &from,
                to: &to,
            })
            .ok()?;
        let id = iq.attr("id");
        let (answers, others): (Vec<Outbound>, Vec<Outbound>) =
            outbound.into_iter().partition(|stanza| {
                let answer = stanza.element();
                stanza.name() == "iq"
                    && stanza.to().is_some_and(|to| to.as_str() == from)
                    && answer.attr("id") == id
            });
        self.deliver_all(others);
        answers.into_iter().next().map(|answer| answer.element())
    }

    /// Counts plugin calls, faults and deliveries into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Service<M> {
        self.metrics = Some(metrics);
        self
    }

    /// Makes every write so far durable, then delivers what waited for it, in order. Returns
    /// how many durable keys the sync wrote. On an error nothing of the batch is delivered: the
    /// disk failed (stop serving), or another instance took one of its rooms (`Fenced`).
    pub fn flush(&mut self) -> anyhow::Result<usize> {
        let now_ms = self.muc.now_ms();
        let synced = {
            let storage = self.muc.storage_mut();
            // Expiry between batches, in the batch's disk transaction.
            if let Err(error) = storage.expire_archive(now_ms) {
                tracing::warn!(%error, "expiring archived messages failed; retrying later");
            }
            let synced = match storage.sync() {
                Ok(synced) => synced,
                Err(error) => {
                    // The batch is not in the database: nothing of it may leave.
                    self.outbox.clear();
                    if let Some(Fenced {
                        upgraded_to: Some(version),
                        ..
                    }) = error.downcast_ref::<Fenced>()
                    {
                        self.data_upgraded_to = Some(version.clone());
                    }
                    return Err(error);
                }
            };
            storage.evict_idle();
            synced
        };
        for stanza in std::mem::take(&mut self.outbox) {
            if let Some(metrics) = &self.metrics {
                metrics.stanza_out(stanza.name());
            }
            if !self.router.deliver(stanza) {
                tracing::debug!("a stanza found no session; dropped");
            }
        }
        // Another instance sharing the store may have installed or removed an extension.
        if let Some((extensions, storage)) = self.muc.extensions_and_store() {
            extensions.follow_catalog(storage.held_mut());
        }
        Ok(synced)
    }

    /// Installs or removes a room extension between two stanzas: the catalog's writes commit
    /// with the next flush, and the owners' notices leave after them.
    pub fn change_extensions(&mut self, change: Change) -> Result<String, String> {
        let now_ms = self.muc.now_ms();
        let (extensions, storage) = self
            .muc
            .extensions_and_store()
            .ok_or("this service runs no room extensions")?;
        let mut txn = Transaction::default();
        let mut call = Call::new(storage, &mut txn, now_ms).ok_or("the store is not here")?;
        let message = extensions
            .change(change, &mut call)
            .map_err(|error| format!("{error:#}"))?;
        storage
            .held_mut()
            .apply(txn.writes)
            .map_err(|error| format!("storing the catalog: {error:#}"))?;
        self.deliver_all(txn.outbound);
        Ok(message)
    }

    /// The installed room extensions, each with why it did not load, if it did not.
    pub fn extension_list(&self) -> Vec<(Entry, Option<String>)> {
        self.muc
            .extensions()
            .map(|extensions| extensions.list())
            .unwrap_or_default()
    }

    /// The rooms and occupants in memory (keys as `wit/STORAGE.md` lays them out), for a
    /// metrics scrape.
    pub fn gauges(&self) -> Gauges {
        gauges_of(self.muc.storage())
    }

    /// What `ctl status` shows: the plugin, and the instances sharing the store.
    pub fn status(&mut self) -> Status {
        let mut status = self.muc.status();
        status.cluster = self
            .muc
            .storage_mut()
            .members()
            .map(|members| members.map_err(|error| format!("{error:#}")));
        status
    }

    /// Whether a failed flush may be retried (see [`Storage::is_server`]).
    pub fn store_is_server(&self) -> bool {
        self.muc.storage().is_server()
    }

    /// When the plugin's next timer is due (ms since the Unix epoch), if it has one.
    pub fn next_timer(&self) -> Option<u64> {
        self.muc.storage().next_timer()
    }

    /// Where plugin calls, faults and deliveries are counted, if anywhere.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_deref()
    }

    /// Stanzas waiting for the next flush.
    pub fn pending(&self) -> usize {
        self.outbox.len()
    }

    pub fn connect(&mut self, jid: FullJid, sink: Box<dyn SessionSink>) {
        self.connect_session(jid, 0, sink);
    }

    /// A session the network names by `id`: see [`Service::disconnect_session`]. Returns the
    /// presences it sent the rooms (for [`Service::presence_again`]).
    pub fn connect_session(
        &mut self,
        jid: FullJid,
        id: u64,
        sink: Box<dyn SessionSink>,
    ) -> Vec<Element> {
        let presences = self.router.bind_session(jid.clone(), id, sink);
        for presence in &presences {
            self.send_to_muc(&jid, presence.clone());
        }
        presences
    }

    /// The session ended: the rooms it was in hear an unavailable presence from it.
    pub fn disconnect(&mut self, jid: &FullJid) {
        self.disconnect_session(jid, 0);
    }

    /// Session `id` ended; if a newer session took its JID over, that one stays. Returns the
    /// presences it sent the rooms (for [`Service::presence_again`]).
    pub fn disconnect_session(&mut self, jid: &FullJid, id: u64) -> Vec<Element> {
        let presences = self.router.unbind_session(jid, id);
        for presence in &presences {
            self.send_to_muc(jid, presence.clone());
        }
        presences
    }

    /// A presence a session's start or end sent the rooms, sent again after the batch it was in
    /// failed: the router, which the failure did not undo, has the session bound or gone already.
    pub fn presence_again(&mut self, from: &FullJid, presence: Element) {
        self.send_to_muc(from, presence);
    }

    /// One stanza from a bound client session. Its `from` is what the session authenticated as,
    /// whatever the client wrote (RFC 6120 §8.1.2.1).
    pub fn from_client(&mut self, from: &FullJid, mut stanza: Element) {
        stanza.set_attr(
            Namespace::NONE,
            xml_ncname!("from").into(),
            from.to_string(),
        );
        let to = match stanza.attr("to").map(Jid::new) {
            None => None,
            Some(Ok(to)) => Some(to),
            Some(Err(_)) => {
                return self.reply_error(
                    &stanza,
                    ErrorType::Modify,
                    DefinedCondition::JidMalformed,
                );
            }
        };
        match self.router.destination(to.as_ref()) {
            Destination::Muc => {
                if stanza.name() == "presence" {
                    let to = to.as_ref().expect("a MUC destination has a 'to'");
                    self.router.note_directed_presence(from, to, &stanza);
                }
                self.send_to_muc(from, stanza);
            }
            Destination::Server => {
                let replies = server::handle(
                    self.router.domain(),
                    self.router.muc_domain(),
                    from,
                    !self.router.is_guest(from),
                    &stanza,
                );
                self.outbox.extend(replies.into_iter().map(Outbound::from));
            }
            // An iq to a bare JID is for the server to answer on the account's behalf (RFC
            // 6120 §10.5.3.1), and this server keeps nothing per account (no vCards, no
            // private storage).
            Destination::User(to) if stanza.name() == "iq" && to.resource().is_none() => {
                if matches!(stanza.attr("type"), Some("get") | Some("set")) {
                    self.reply_error(
                        &stanza,
                        ErrorType::Cancel,
                        DefinedCondition::ServiceUnavailable,
                    );
                }
            }
            Destination::User(to) => {
                if self.router.is_reachable(&to) {
                    self.outbox.push(stanza.into());
                } else if stanza.name() != "presence" {
                    self.reply_error(
                        &stanza,
                        ErrorType::Cancel,
                        DefinedCondition::ServiceUnavailable,
                    );
                }
            }
            Destination::Unroutable => self.reply_error(
                &stanza,
                ErrorType::Cancel,
                DefinedCondition::RemoteServerNotFound,
            ),
        }
    }

    /// One stanza from the server a component link leads to: its `from` is the server's word
    /// (XEP-0114), and only the MUC domain is served here.
    pub fn from_component(&mut self, stanza: Element) {
        let from = stanza.attr("from").and_then(|from| Jid::new(from).ok());
        let to = stanza.attr("to").and_then(|to| Jid::new(to).ok());
        match (from, to) {
            (Some(from), Some(to)) if to.domain().as_str() == self.router.muc_domain() => {
                self.send_to_muc_as(&from.to_string(), stanza)
            }
            (Some(_), Some(_)) => {
                self.reply_error(&stanza, ErrorType::Cancel, DefinedCondition::ItemNotFound)
            }
            _ => self.reply_error(&stanza, ErrorType::Modify, DefinedCondition::JidMalformed),
        }
    }

    /// Runs the plugin's due timers and delivers what they send.
    pub fn run_due_timers(&mut self) {
        if self.data_upgraded_to.is_some() {
            return;
        }
        for (_, outcome) in self.muc.run_due_timers() {
            if let Ok(outbound) = outcome {
                self.deliver_all(outbound);
            }
        }
    }

    /// The service is stopping: the plugin says goodbye to occupants.
    pub fn shutdown(&mut self) {
        if let Ok(outbound) = self.muc.on_shutdown() {
            self.deliver_all(outbound);
        }
    }

    fn send_to_muc(&mut self, from: &FullJid, stanza: Element) {
        self.send_to_muc_as(&from.to_string(), stanza)
    }

    fn send_to_muc_as(&mut self, from: &str, stanza: Element) {
        if let Some(commands) = &self.host_commands {
            if adhoc::is_host_command(&stanza, self.router.muc_domain()) {
                let _ = commands.send(stanza);
                return;
            }
        }
        if let Some(version) = &self.data_upgraded_to {
            let text =
                format!("this service is being upgraded to {version}: try again in a moment");
            self.reply_error_saying(
                &stanza,
                ErrorType::Wait,
                DefinedCondition::ServiceUnavailable,
                Some(&text),
            );
            return;
        }
        let to = stanza.attr("to").unwrap_or_default().to_string();
        if let Some(limit) = self.over_message_rate(from, &to, &stanza) {
            if let Some(metrics) = &self.metrics {
                metrics.messages_over_rate.inc();
            }
            let text = format!(
                "too many messages: at most {} a second to one room, after a burst of {}; wait a moment",
                limit.per_second, limit.burst
            );
            self.reply_error_saying(
                &stanza,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                Some(&text),
            );
            return;
        }
        let started = Instant::now();
        let outcome = self.muc.handle_stanza(Inbound {
            stanza: &stanza,
            from,
            to: &to,
        });
        if let Some(metrics) = &self.metrics {
            metrics.plugin_calls.inc();
            metrics
                .plugin_call_seconds
                .observe(started.elapsed().as_secs_f64());
            if let Err(fault) = &outcome {
                metrics.plugin_faults.inc();
                if matches!(fault, Fault::OverBudget(_)) {
                    metrics.plugin_budget_hits.inc();
                }
            }
        }
        match outcome {
            Ok(outbound) => self.deliver_all(outbound),
            Err(Fault::OverBudget(_)) => self.reply_error(
                &stanza,
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
            ),
            Err(Fault::StoreLimit(refused)) => self.refuse_over_store_limit(&stanza, refused),
            Err(_) => self.reply_error(
                &stanza,
                ErrorType::Cancel,
                DefinedCondition::InternalServerError,
            ),
        }
    }

    /// The limit `stanza` is over, if it is a message to a room or an occupant one too many.
    fn over_message_rate(
        &mut self,
        from: &str,
        to: &str,
        stanza: &Element,
    ) -> Option<MessageRateLimit> {
        let rate = self.message_rate.as_mut()?;
        // Errors are never answered (RFC 6120 §8.3.1): not refused either.
        if stanza.name() != "message" || stanza.attr("type") == Some("error") {
            return None;
        }
        // The same room however its address is written.
        let room = Jid::new(to).ok()?.to_bare();
        room.node()?;
        let now_ms = self.muc.now_ms();
        (!rate.allow(from, room.as_str(), now_ms)).then(|| rate.limit())
    }

    /// What a MUC call sent: to the outbox, the MUC's requests to accounts answered.
    pub fn deliver_all(&mut self, outbound: Vec<Outbound>) {
        let mut for_accounts = Vec::new();
        for stanza in outbound {
            match self.request_to_an_account(&stanza) {
                Some(request) => for_accounts.push(request),
                None => self.outbox.push(stanza),
            }
        }
        // The MUC's iq requests to a local user's bare JID (an occupant's vCard, asked through
        // the room) are the server's to answer for the account (RFC 6120 §10.5.3.1), as a
        // client's are: this server keeps nothing per account. The answer goes back to the MUC
        // after what the call sent; an answer's own call gets no such answers (no loop).
        if self.answering_for_accounts {
            return;
        }
        self.answering_for_accounts = true;
        for request in for_accounts {
            let account = request.attr("to").unwrap_or_default().to_string();
            self.send_to_muc_as(
                &account,
                error_reply(
                    &request,
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                ),
            );
        }
        self.answering_for_accounts = false;
    }

    /// `stanza`, if it is an iq request to a local account's bare JID.
    fn request_to_an_account(&self, stanza: &Outbound) -> Option<Element> {
        let to = stanza.to()?;
        let local = self.router.is_local(to.domain().as_str());
        if stanza.name() != "iq" || !local || to.node().is_none() || to.resource().is_some() {
            return None;
        }
        let request = stanza.element();
        matches!(request.attr("type"), Some("get" | "set")).then_some(request)
    }

    /// Bounces `stanza` to its sender with a stanza error, unless it is an error itself.
    fn reply_error(&mut self, stanza: &Element, type_: ErrorType, condition: DefinedCondition) {
        self.reply_error_saying(stanza, type_, condition, None)
    }

    fn reply_error_saying(
        &mut self,
        stanza: &Element,
        type_: ErrorType,
        condition: DefinedCondition,
        text: Option<&str>,
    ) {
        // Errors are never answered, nor iq results (RFC 6120 §8.2.3).
        let is_result = stanza.name() == "iq" && stanza.attr("type") == Some("result");
        if stanza.attr("type") == Some("error") || is_result {
            return;
        }
        let reply = error_reply_saying(stanza, type_, condition, text);
        self.outbox.push(reply.into());
    }

    /// A stanza the MUC logic could not store: too large a key or value is the request's
    /// fault (`not-acceptable`), too much written at once a limit of the moment.
    fn refuse_over_store_limit(&mut self, stanza: &Element, refused: StorageError) {
        let (type_, condition, why) = match &refused {
            StorageError::TooLarge(why) => {
                (ErrorType::Modify, DefinedCondition::NotAcceptable, why)
            }
            StorageError::QuotaExceeded(why) => {
                (ErrorType::Wait, DefinedCondition::ResourceConstraint, why)
            }
        };
        let text = format!("The service cannot store this: {why}");
        self.reply_error_saying(stanza, type_, condition, Some(&text))
    }
}

/// The rooms and occupants `storage` holds in memory.
fn gauges_of(storage: &Storage) -> Gauges {
    let rooms = [Tier::Durable, Tier::Volatile]
        .into_iter()
        .flat_map(|tier| storage.resident(tier, "room/"))
        .filter(|(key, _)| key.ends_with("/config"))
        .count();
    let occupants = storage
        .resident(Tier::Volatile, "room/")
        .filter(|(key, _)| key.contains("/occupant/"))
        .count();
    Gauges {
        rooms: rooms as u64,
        occupants: occupants as u64,
        leases: storage.lease_counts(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauges_count_rooms_and_occupants_in_memory() {
        let mut storage = Storage::in_memory();
        let mut txn = Transaction::default();
        for key in ["room/a@muc/config", "room/a@muc/history/1"] {
            txn.put(Tier::Durable, key.into(), b"{}".to_vec()).unwrap();
        }
        for key in [
            "room/b@muc/config",
            "room/b@muc/occupant/x",
            "room/b@muc/occupant/y",
        ] {
            txn.put(Tier::Volatile, key.into(), b"{}".to_vec()).unwrap();
        }
        storage.apply(txn.writes).unwrap();
        assert_eq!(
            gauges_of(&storage),
            Gauges {
                rooms: 2,
                occupants: 2,
                leases: None
            }
        );
    }
}
