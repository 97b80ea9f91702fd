//! Realtime's metrics, beside kit's HTTP ones: connections, subscriptions
//! and channels, commands by method and outcome with their latency,
//! recoveries, disconnects by reason, publications.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::hub::Hub;
use crate::protocol::Disconnect;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    method: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecoveredLabels {
    recovered: &'static str,
}

pub struct Metrics {
    pub connections: Gauge,
    commands: Family<CommandLabels, Counter>,
    latency: Family<CommandLabels, Histogram, fn() -> Histogram>,
    recoveries: Family<RecoveredLabels, Counter>,
    disconnects: Family<ReasonLabels, Counter>,
    pub rate_limited: Counter,
    pub publications: Counter,
    pub deliveries: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        fn buckets() -> Histogram {
            Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0])
        }
        Self {
            connections: Gauge::default(),
            commands: Family::default(),
            latency: Family::new_with_constructor(buckets),
            recoveries: Family::default(),
            disconnects: Family::default(),
            rate_limited: Counter::default(),
            publications: Counter::default(),
            deliveries: Counter::default(),
        }
    }
}

impl Metrics {
    /// A command handled: its method (`Request::method`), whether it
    /// succeeded, and how long it took.
    pub fn command(&self, method: &'static str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        let labels = CommandLabels { method, outcome: result };
        self.commands.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn recovery(&self, recovered: bool) {
        self.recoveries.get_or_create(&RecoveredLabels { recovered: if recovered { "yes" } else { "no" } }).inc();
    }

    pub fn disconnects(&self, reason: Disconnect) {
        self.disconnects.get_or_create(&ReasonLabels { reason: reason.reason() }).inc();
    }

    pub fn register(&self, registry: &mut Registry, hub: &Arc<Hub>) {
        registry.register("realtime_connections", "Open client connections", self.connections.clone());
        registry.register("realtime_commands", "Commands handled, by method and outcome", self.commands.clone());
        registry.register(
            "realtime_command_duration_seconds",
            "Time to handle a command, by method and outcome",
            self.latency.clone(),
        );
        registry.register(
            "realtime_recoveries",
            "Subscriptions that asked to recover, by whether every missed publication was delivered",
            self.recoveries.clone(),
        );
        registry.register("realtime_disconnects", "Connections the server closed, by reason", self.disconnects.clone());
        registry.register(
            "realtime_rate_limited",
            "Commands refused over the per-connection rate",
            self.rate_limited.clone(),
        );
        registry.register("realtime_publications", "Publications made to channels", self.publications.clone());
        registry.register("realtime_deliveries", "Publications queued to subscribers", self.deliveries.clone());
        registry.register_collector(Box::new(HubGauges(hub.clone())));
    }
}

/// Channels and subscriptions, read from the hub at each scrape.
#[derive(Debug)]
struct HubGauges(Arc<Hub>);

impl prometheus_client::collector::Collector for HubGauges {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let (channels, subscriptions) = self.0.counts();
        let gauge = |v: usize| {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
            g
        };
        for (name, help, value) in [
            ("realtime_channels", "Channels with subscribers or history", channels),
            ("realtime_subscriptions", "Subscriptions across channels", subscriptions),
        ] {
            let g = gauge(value);
            let metric = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(metric)?;
        }
        Ok(())
    }
}
