//! What operators watch, as OpenMetrics text for Prometheus (served at `/metrics` by `http`).

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::core_event::{CoreEvent, Gauges};
use crate::inbox::Lane;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

impl OutcomeLabel {
    pub fn ok() -> OutcomeLabel {
        OutcomeLabel {
            outcome: "swapped".into(),
        }
    }

    pub fn refused() -> OutcomeLabel {
        OutcomeLabel {
            outcome: "refused".into(),
        }
    }
}

pub struct Metrics {
    pub connections: Gauge,
    pub connections_opened: Counter,
    pub stanzas_in: Family<KindLabel, Counter>,
    pub stanzas_out: Family<KindLabel, Counter>,
    pub plugin_calls: Counter,
    pub plugin_faults: Counter,
    pub plugin_budget_hits: Counter,
    /// Messages refused for the per-occupant rate in rooms.
    pub messages_over_rate: Counter,
    pub plugin_call_seconds: Histogram,
    pub storage_batch_keys: Histogram,
    pub storage_sync_seconds: Histogram,
    pub swaps: Family<OutcomeLabel, Counter>,
    pub swap_pause_seconds: Histogram,
    /// Batches rolled back because another instance had taken one of their rooms.
    pub fencing_rejections: Counter,
    rooms: Gauge,
    occupants: Gauge,
    leases: Gauge,
    lease_takeovers: Counter,
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("muc");
        let seconds = || Histogram::new(exponential_buckets(0.000_01, 4.0, 10));
        let metrics = Metrics {
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            stanzas_in: Family::default(),
            stanzas_out: Family::default(),
            plugin_calls: Counter::default(),
            plugin_faults: Counter::default(),
            plugin_budget_hits: Counter::default(),
            messages_over_rate: Counter::default(),
            plugin_call_seconds: seconds(),
            storage_batch_keys: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            storage_sync_seconds: seconds(),
            swaps: Family::default(),
            swap_pause_seconds: seconds(),
            fencing_rejections: Counter::default(),
            rooms: Gauge::default(),
            occupants: Gauge::default(),
            leases: Gauge::default(),
            lease_takeovers: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Client connections open",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "Client connections accepted",
            metrics.connections_opened.clone(),
        );
        registry.register(
            "stanzas_in",
            "Stanzas received, by kind",
            metrics.stanzas_in.clone(),
        );
        registry.register(
            "stanzas_out",
            "Stanzas delivered, by kind",
            metrics.stanzas_out.clone(),
        );
        registry.register(
            "plugin_calls",
            "Calls into the MUC plugin",
            metrics.plugin_calls.clone(),
        );
        registry.register(
            "plugin_faults",
            "Plugin calls that trapped, failed or ran over budget",
            metrics.plugin_faults.clone(),
        );
        registry.register(
            "plugin_budget_hits",
            "Plugin calls stopped by the time budget or memory cap",
            metrics.plugin_budget_hits.clone(),
        );
        registry.register(
            "messages_over_rate",
            "Messages to rooms refused because their sender was over the message rate",
            metrics.messages_over_rate.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Time of one plugin call",
            metrics.plugin_call_seconds.clone(),
        );
        registry.register(
            "storage_batch_keys",
            "Durable keys written per group commit",
            metrics.storage_batch_keys.clone(),
        );
        registry.register(
            "storage_sync_seconds",
            "Time of one group commit",
            metrics.storage_sync_seconds.clone(),
        );
        registry.register(
            "swaps",
            "Hot swaps of the MUC plugin, by outcome",
            metrics.swaps.clone(),
        );
        registry.register(
            "swap_pause_seconds",
            "Time stanzas waited while a swap switched plugins",
            metrics.swap_pause_seconds.clone(),
        );
        registry.register(
            "rooms",
            "Rooms in memory: the non-persistent ones and the persistent ones in use",
            metrics.rooms.clone(),
        );
        registry.register(
            "occupants",
            "Occupants in all rooms",
            metrics.occupants.clone(),
        );
        registry.register(
            "leases",
            "Rooms whose lease this instance holds (several instances on one PostgreSQL store)",
            metrics.leases.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Room leases this instance took from another instance",
            metrics.lease_takeovers.clone(),
        );
        registry.register(
            "fencing_rejections",
            "Batches rolled back, and not sent, because another instance had taken one of their rooms",
            metrics.fencing_rejections.clone(),
        );
        Arc::new(Metrics {
            registry,
            ..metrics
        })
    }

    pub fn stanza_in(&self, kind: &str) {
        self.stanzas_in
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn stanza_out(&self, kind: &str) {
        self.stanzas_out
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    /// The OpenMetrics text, with the room and occupant counts the core gave for this scrape
    /// (none when it is stopping: the last ones stand).
    pub fn render(&self, gauges: Option<Gauges>) -> String {
        if let Some(gauges) = gauges {
            self.rooms.set(gauges.rooms as i64);
            self.occupants.set(gauges.occupants as i64);
            if let Some(leases) = gauges.leases {
                self.leases.set(leases.held as i64);
                let new = leases.takeovers.saturating_sub(self.lease_takeovers.get());
                self.lease_takeovers.inc_by(new);
            }
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String");
        text
    }

    /// The text for one scrape, with the gauges asked of the core through `core`.
    pub async fn scrape(&self, core: &Lane) -> String {
        self.render(gauges(core).await)
    }
}

/// The core's gauges, or none if it is stopping.
async fn gauges(core: &Lane) -> Option<Gauges> {
    let (reply, gauges) = tokio::sync::oneshot::channel();
    core.send(CoreEvent::Gauges { reply }).await.ok()?;
    gauges.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_family_with_the_gauges_the_core_gave() {
        let metrics = Metrics::new();
        metrics.stanza_in("message");
        metrics.plugin_call_seconds.observe(0.001);
        let text = metrics.render(Some(Gauges {
            rooms: 2,
            occupants: 3,
            leases: None,
        }));
        for line in [
            "muc_stanzas_in_total{kind=\"message\"} 1",
            "muc_rooms 2",
            "muc_occupants 3",
            "muc_plugin_call_seconds_count 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let later = metrics.render(None);
        assert!(
            later.contains("muc_rooms 2"),
            "without new gauges the last stand"
        );
    }
}
