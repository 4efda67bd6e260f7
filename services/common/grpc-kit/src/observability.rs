//! A tower layer around every gRPC route: one server span per RPC (child of the caller's
//! `traceparent`, when sent) and the RPC rate/error/latency metrics.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};
use tracing::Instrument;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone)]
pub struct RpcMetrics {
    requests: Family<RpcLabels, Counter>,
    duration: Family<MethodLabels, Histogram>,
}

impl RpcMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RpcLabels, Counter>::default();
        let duration = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        registry.register("dw_rpc_requests", "gRPC requests handled, by method and status code", requests.clone());
        registry.register(
            "dw_rpc_duration_seconds",
            "gRPC request latency until response headers, by method",
            duration.clone(),
        );
        Self { requests, duration }
    }
}

#[derive(Clone)]
pub struct RpcLayer {
    metrics: RpcMetrics,
    in_flight: Arc<AtomicUsize>,
}

impl RpcLayer {
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics, in_flight: Arc::default() }
    }

    /// Counts the RPCs in flight (until their response headers) in `counter`, for load shedding.
    pub fn counting_in(mut self, counter: Arc<AtomicUsize>) -> Self {
        self.in_flight = counter;
        self
    }
}

/// One RPC in flight: counted while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService { inner, metrics: self.metrics.clone(), in_flight: self.in_flight.clone() }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: RpcMetrics,
    in_flight: Arc<AtomicUsize>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<http::Request<B>> for RpcService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        request.extensions_mut().insert(crate::access::RpcPath(method.clone()));
        let is_probe = method.starts_with("/grpc.health.") || method.starts_with("/grpc.reflection.");
        let span = if is_probe {
            tracing::Span::none()
        } else {
            let (service, rpc) = method.trim_start_matches('/').split_once('/').unwrap_or((method.as_str(), ""));
            tracing::info_span!(
                "grpc request",
                otel.name = %method.trim_start_matches('/'),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %rpc,
                rpc.response.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            )
        };
        dw_telemetry::set_parent_from_headers(&span, request.headers());
        // Every log line written while serving the call carries its trace ids.
        dw_telemetry::json_log::record_trace_ids(&span);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let in_flight = (!is_probe).then(|| InFlight::start(&self.in_flight));
        // The interceptor leaves the admitted call of a tenant here; it ends with this future.
        let slot = crate::fair_share::CallSlot::default();
        request.extensions_mut().insert(slot.clone());
        Box::pin(async move {
            let _in_flight = in_flight;
            let started = Instant::now();
            let result = inner.call(request).instrument(span.clone()).await;
            slot.release();
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(grpc_code_name)
                    .unwrap_or("OK"),
                Err(_) => "INTERNAL",
            };
            span.record("rpc.response.status_code", code);
            if is_server_error(code) {
                // Per the OpenTelemetry gRPC conventions a server span is an error only for the
                // server's own failures; a refused request (INVALID_ARGUMENT, NOT_FOUND, …) is not.
                span.record("otel.status_code", "ERROR");
            }
            if !is_probe {
                metrics.requests.get_or_create(&RpcLabels { method: method.clone(), code: code.to_owned() }).inc();
                metrics.duration.get_or_create(&MethodLabels { method }).observe(started.elapsed().as_secs_f64());
            }
            result
        })
    }
}

/// The status codes that are the server's failure, not the caller's.
fn is_server_error(code: &str) -> bool {
    matches!(code, "UNKNOWN" | "DEADLINE_EXCEEDED" | "UNIMPLEMENTED" | "INTERNAL" | "UNAVAILABLE" | "DATA_LOSS")
}

/// The database pool as Prometheus sees it, refreshed every two seconds: connections open, idle,
/// in use, and the pool's size.
pub fn watch_pool(
    pool: sqlx::PgPool,
    registry: &mut Registry,
    cancel: tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    use prometheus_client::metrics::gauge::Gauge;
    let connections = Family::<PoolLabels, Gauge>::default();
    let max = Gauge::<i64>::default();
    registry.register(
        "dw_db_pool_connections",
        "Postgres connections of the pool by state (idle, in_use); in_use near dw_db_pool_max_connections means callers wait for one",
        connections.clone(),
    );
    registry.register("dw_db_pool_max_connections", "The Postgres pool's size (DW_DB_MAX_CONNECTIONS)", max.clone());
    async move {
        loop {
            let size = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX);
            connections.get_or_create(&PoolLabels { state: "idle".into() }).set(idle);
            connections.get_or_create(&PoolLabels { state: "in_use".into() }).set((size - idle).max(0));
            max.set(i64::from(pool.options().get_max_connections()));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
            }
        }
    }
}

/// `dw_rebuild_*{read_model}`: the latest rebuild of each read model of the service's database
/// (`<service> projections rebuild`, which records its progress there wherever it runs), read
/// every 10 s.
pub fn watch_rebuilds(
    pool: sqlx::PgPool,
    registry: &mut Registry,
    cancel: tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    use prometheus_client::metrics::gauge::Gauge;
    type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
    let events = Family::<RebuildLabels, Gauge>::default();
    let remaining = Family::<RebuildLabels, Gauge>::default();
    let rate = Family::<RebuildLabels, FloatGauge>::default();
    let running = Family::<RebuildLabels, Gauge>::default();
    let failed = Family::<RebuildLabels, Gauge>::default();
    registry.register(
        "dw_rebuild_events",
        "Events the latest rebuild of the read model applied so far",
        events.clone(),
    );
    registry.register(
        "dw_rebuild_remaining",
        "Store positions the running rebuild of the read model has still to read (0 when finished)",
        remaining.clone(),
    );
    registry.register("dw_rebuild_events_per_second", "The latest rebuild's rate since its start", rate.clone());
    registry.register(
        "dw_rebuild_running",
        "1 while a rebuild of the read model records progress (a killed one drops to 0 after two minutes)",
        running.clone(),
    );
    registry.register(
        "dw_rebuild_failed",
        "1 when the latest rebuild of the read model failed (the live tables were left as they were)",
        failed.clone(),
    );
    async move {
        loop {
            match dw_eventstore::rebuild::statuses(&pool).await {
                Ok(statuses) => {
                    for status in statuses {
                        let labels = RebuildLabels { read_model: status.read_model };
                        events.get_or_create(&labels).set(status.events);
                        remaining.get_or_create(&labels).set(status.remaining);
                        rate.get_or_create(&labels).set(status.events_per_second);
                        running.get_or_create(&labels).set(i64::from(status.running));
                        let has_failed = status.outcome.is_some_and(|o| o.starts_with("failed"));
                        failed.get_or_create(&labels).set(i64::from(has_failed));
                    }
                }
                Err(error) => tracing::debug!(%error, "rebuild progress not read"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebuildLabels {
    pub read_model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: String,
}

/// `dw_build_info{service, version} 1`: what runs where.
pub fn register_build_info(registry: &mut Registry, service: &str) {
    use prometheus_client::metrics::gauge::Gauge;
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct BuildLabels {
        service: String,
        version: String,
    }
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels { service: service.to_owned(), version: env!("CARGO_PKG_VERSION").to_owned() })
        .set(1);
    registry.register("dw_build_info", "The service and version this process runs (always 1)", info);
}

fn grpc_code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "CANCELLED",
        "2" => "UNKNOWN",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::is_server_error;

    #[test]
    fn only_the_servers_own_failures_make_an_error_span() {
        for code in ["UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"] {
            assert!(is_server_error(code), "{code}");
        }
        for code in [
            "OK",
            "CANCELLED",
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNAUTHENTICATED",
        ] {
            assert!(!is_server_error(code), "{code}");
        }
    }
}
