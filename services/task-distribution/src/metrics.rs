//! task-distribution's domain metrics: how long tasks wait before an agent gets them (observed
//! where assignments are written) and the queues' depth and oldest wait (refreshed by a sampler
//! that reads the queued tasks of every tenant in one grouped query).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::domain::task::QueueWait;
use crate::projections::tasks::{self, QueueSample};

/// From immediate assignment to an hour in the queue.
const WAIT_BUCKETS: [f64; 16] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepartmentLabels {
    pub department: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub tenant: String,
    pub department: String,
}

#[derive(Clone)]
pub struct DistributionMetrics {
    assignment_latency: Family<DepartmentLabels, Histogram>,
    queue_depth: Family<QueueLabels, Gauge>,
    oldest_wait: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    create_groups: Family<GroupLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// `together`: created in one transaction; `alone`: the group could not be, each create ran
    /// by itself.
    pub outcome: &'static str,
}

impl DistributionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            assignment_latency: Family::new_with_constructor(|| Histogram::new(WAIT_BUCKETS)),
            queue_depth: Family::default(),
            oldest_wait: Family::default(),
            create_groups: Family::default(),
        };
        registry.register(
            "dw_task_create_groups",
            "Groups of CreateTask calls of one department that arrived while the previous group ran, by outcome \
             (together: decided and committed as one; alone: each then ran by itself)",
            metrics.create_groups.clone(),
        );
        registry.register(
            "dw_task_assignment_latency_seconds",
            "Time a task waited in its department's queue (since created, re-queued or transferred there) until \
             an agent got it (automatic assignment, claim or transfer to an agent), by department",
            metrics.assignment_latency.clone(),
        );
        registry.register(
            "dw_task_queue_depth",
            "Tasks waiting in the department's queue, sampled from the read model; every replica reports the \
             same value, aggregate with max()",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "dw_task_queue_oldest_wait_seconds",
            "How long the longest-waiting task of the department's queue has waited, sampled from the read model \
             (0 when the queue is empty); every replica reports the same value, aggregate with max()",
            metrics.oldest_wait.clone(),
        );
        metrics
    }

    /// Counts a group of creates of more than one ([`crate::app::create_batch`]).
    pub fn observe_create_group(&self, together: bool) {
        let outcome = if together { "together" } else { "alone" };
        self.create_groups.get_or_create(&GroupLabels { outcome }).inc();
    }

    /// Counts an assignment. Observed when it is written, inside its transaction: one that later
    /// rolls back (a database failure) and is retried can count the task twice.
    pub fn observe_assignment(&self, wait: Option<QueueWait>) {
        let Some(wait) = wait else {
            return;
        };
        // Event times come from the replicas' clocks: a skew must not make a wait negative.
        let seconds = wait.waited.to_std().map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let labels = DepartmentLabels { department: wait.department.to_string() };
        self.assignment_latency.get_or_create(&labels).observe(seconds);
    }

    /// Sets the queue gauges to `samples`; queues sampled before but absent now have drained and
    /// drop to 0 (kept, so a graph shows the drop rather than a stale last value).
    fn set_queues(&self, samples: &[QueueSample], known: &mut HashSet<QueueLabels>) {
        let mut current = HashSet::with_capacity(samples.len());
        for sample in samples {
            let labels = QueueLabels { tenant: sample.tenant.clone(), department: sample.department.clone() };
            self.queue_depth.get_or_create(&labels).set(sample.depth);
            self.oldest_wait.get_or_create(&labels).set(sample.oldest_wait_seconds);
            current.insert(labels);
        }
        for drained in known.difference(&current) {
            self.queue_depth.get_or_create(drained).set(0);
            self.oldest_wait.get_or_create(drained).set(0.0);
        }
        known.extend(current);
    }
}

/// Refreshes the queue gauges every `interval` until `cancel`. A failed sample keeps the previous
/// values (readiness reports the database) and is retried at the next tick.
pub async fn run_queue_sampler(
    pool: PgPool,
    metrics: DistributionMetrics,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut known = HashSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let sampled = match pool.acquire().await {
            Ok(mut conn) => tasks::queue_samples(&mut conn).await,
            Err(error) => Err(error),
        };
        match sampled {
            Ok(samples) => metrics.set_queues(&samples, &mut known),
            Err(error) => tracing::warn!(%error, "queue metrics sample failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(tenant: &str, department: &str, depth: i64, oldest: f64) -> QueueSample {
        QueueSample { tenant: tenant.into(), department: department.into(), depth, oldest_wait_seconds: oldest }
    }

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn drained_queues_drop_to_zero() {
        let mut registry = Registry::default();
        let metrics = DistributionMetrics::register(&mut registry);
        let mut known = HashSet::new();
        metrics.set_queues(&[sample("acme", "support", 2, 42.5), sample("acme", "sales", 1, 3.0)], &mut known);
        let text = encoded(&registry);
        assert!(text.contains(r#"dw_task_queue_depth{tenant="acme",department="support"} 2"#), "{text}");
        assert!(text.contains(r#"dw_task_queue_oldest_wait_seconds{tenant="acme",department="support"} 42.5"#));

        metrics.set_queues(&[sample("acme", "sales", 4, 9.0)], &mut known);
        let text = encoded(&registry);
        assert!(text.contains(r#"dw_task_queue_depth{tenant="acme",department="support"} 0"#), "{text}");
        assert!(text.contains(r#"dw_task_queue_oldest_wait_seconds{tenant="acme",department="support"} 0.0"#));
        assert!(text.contains(r#"dw_task_queue_depth{tenant="acme",department="sales"} 4"#));
    }
}
