//! The service's stream is created with its configured limits, and a start never silently
//! reverts what an operator changed on it: the difference is reported (a warning and
//! `dw_stream_config_drift`) unless the configuration says to apply it. Real NATS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_nats::jetstream;
use dw_eventstore::outbox_relay::{OutboxRelay, RelayConfig, RelayMetrics, StreamSetup};
use dw_testkit::{TestDb, TestNamespace};
use prometheus_client::registry::Registry;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

fn drift_gauge(registry: &Registry) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    dw_testkit::metrics::sample(&text, "dw_stream_config_drift", &[]).expect("dw_stream_config_drift is exported")
}

#[tokio::test]
async fn a_limit_an_operator_changed_is_reported_not_reverted_unless_the_configuration_says_apply() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("streamcfg");
    let js = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let mut config = RelayConfig::new("test-service", &namespace.stream_name, &namespace.subject_prefix);
    config.max_age = Duration::from_secs(3600);
    config.max_bytes = Some(64 << 20);
    let mut registry = Registry::default();
    let metrics = RelayMetrics::register(&mut registry);
    let relay = |config: &RelayConfig| OutboxRelay::new(db.pool.clone(), js.clone(), config.clone(), metrics.clone());

    // Created with the configured limits.
    assert_eq!(relay(&config).ensure_stream().await.unwrap(), StreamSetup::Created);
    let info = js.get_stream(&namespace.stream_name).await.unwrap().get_info().await.unwrap();
    assert_eq!((info.config.max_age, info.config.max_bytes), (Duration::from_secs(3600), 64 << 20));
    assert_eq!(relay(&config).ensure_stream().await.unwrap(), StreamSetup::Unchanged);
    assert_eq!(drift_gauge(&registry), 0.0);

    // An operator keeps events for two hours instead: a restart reports it and leaves it.
    let mut operators = info.config.clone();
    operators.max_age = Duration::from_secs(7200);
    js.update_stream(operators).await.unwrap();
    let StreamSetup::Drifted(drift) = relay(&config).ensure_stream().await.unwrap() else {
        panic!("a drift is reported");
    };
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].setting, "max_age");
    assert_eq!(drift[0].to_string(), "max_age: configured 3600s, stream has 7200s");
    let info = js.get_stream(&namespace.stream_name).await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(7200), "not reverted");
    assert_eq!(drift_gauge(&registry), 1.0);

    // Told to apply (DW_STREAM_APPLY_CONFIG=true): the configuration wins.
    let mut applying = config.clone();
    applying.apply_config = true;
    assert!(matches!(relay(&applying).ensure_stream().await.unwrap(), StreamSetup::Updated(_)));
    let info = js.get_stream(&namespace.stream_name).await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(drift_gauge(&registry), 0.0);
    assert_eq!(relay(&config).ensure_stream().await.unwrap(), StreamSetup::Unchanged);
    js.delete_stream(&namespace.stream_name).await.unwrap();
}
