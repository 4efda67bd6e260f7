//! gRPC health (`grpc.health.v1`) and reflection, and a watcher that keeps health and readiness
//! in step with Postgres and NATS.

use std::time::Duration;

use sqlx::postgres::PgPool;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics_http::Readiness;

pub use tonic_health::server::health_reporter;

/// The standard health service's name, advertised next to the service's own.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The reflection service (v1 and v1alpha) for the given encoded descriptor sets, advertising
/// `service_names` and health (reflection advertises itself).
pub fn reflection_services(
    descriptor_sets: &[&'static [u8]],
    service_names: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for set in descriptor_sets {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    // Only what this port serves: the descriptor sets hold every context's services.
    for name in service_names.iter().copied().chain([HEALTH_SERVICE]) {
        v1 = v1.with_service_name(name);
        v1alpha = v1alpha.with_service_name(name);
    }
    Ok((v1.build_v1()?, v1alpha.build_v1alpha()?))
}

/// Every few seconds, checks Postgres and NATS; reports `SERVING` for `service_names` (and the
/// overall `""` service) only while both answer.
pub async fn watch_dependencies(
    reporter: HealthReporter,
    service_names: Vec<String>,
    pool: PgPool,
    nats: async_nats::Client,
    readiness: Readiness,
    cancel: CancellationToken,
) {
    let mut last: Option<bool> = None;
    loop {
        let postgres_ok = tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(&pool))
            .await
            .is_ok_and(|r| r.is_ok());
        let nats_ok = nats.connection_state() == async_nats::connection::State::Connected;
        let healthy = postgres_ok && nats_ok && !cancel.is_cancelled();
        if last != Some(healthy) {
            let status = if healthy { ServingStatus::Serving } else { ServingStatus::NotServing };
            for name in service_names.iter().map(String::as_str).chain([""]) {
                reporter.set_service_status(name, status).await;
            }
            readiness.set(healthy);
            tracing::info!(postgres_ok, nats_ok, serving = healthy, "health changed");
            last = Some(healthy);
        }
        tokio::select! {
            () = cancel.cancelled() => {
                for name in service_names.iter().map(String::as_str).chain([""]) {
                    reporter.set_service_status(name, ServingStatus::NotServing).await;
                }
                readiness.set(false);
                return;
            }
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
