//! The consumers' metrics: lag, applied, unknown types, dead letters, projection lag.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

/// Consumer metrics, registered once per process and shared by its consumers.
#[derive(Clone)]
pub struct ConsumerMetrics {
    pub(super) lag: Family<ConsumerLabels, Gauge>,
    pub(super) applied: Family<ConsumerLabels, Counter>,
    pub(super) unknown: Family<ConsumerLabels, Counter>,
    pub(super) dead_letters: Family<ConsumerLabels, Counter>,
    pub(super) projection_lag: Family<ConsumerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            lag: Family::default(),
            applied: Family::default(),
            unknown: Family::default(),
            dead_letters: Family::default(),
            projection_lag: Family::default(),
        };
        registry.register(
            "dw_consumer_lag",
            "Messages in the stream not yet delivered to the consumer",
            metrics.lag.clone(),
        );
        registry.register("dw_consumer_events_applied", "Events applied to a projection", metrics.applied.clone());
        registry.register(
            "dw_consumer_unknown_events",
            "Events skipped because their type is not in the consumer's contract",
            metrics.unknown.clone(),
        );
        registry.register(
            "dw_dead_letters",
            "Events given up on and stored in dead_letters",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "dw_projection_lag_seconds",
            "Time between an event's commit and its projection, last event",
            metrics.projection_lag.clone(),
        );
        metrics
    }

    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }
}
