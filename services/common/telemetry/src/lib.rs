//! Telemetry for every service: JSON logs through `tracing`, OpenTelemetry spans exported over
//! OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace-context propagation helpers so
//! one trace follows a request from gRPC metadata through NATS headers into consumers.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use opentelemetry::Context as OtelContext;

pub mod http_client;
pub mod json_log;

/// For [`http_client_span!`]: the `tracing` its expansion names.
#[doc(hidden)]
pub use tracing as __tracing;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("otlp exporter: {0}")]
    Exporter(String),
    #[error("{name} {path}: {reason}")]
    TlsFile { name: &'static str, path: String, reason: String },
    #[error("tracing subscriber: {0}")]
    Subscriber(String),
}

/// Flushes and shuts the tracer provider down when dropped.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Where logs go and in which shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `DW_LOG_FORMAT=pretty` for humans; JSON otherwise.
    pub fn from_env() -> Self {
        match std::env::var("DW_LOG_FORMAT").as_deref() {
            Ok("pretty") | Ok("text") => Self::Pretty,
            _ => Self::Json,
        }
    }
}

/// Installs the global subscriber: env-filtered logs (`RUST_LOG`, default `info`), an OpenTelemetry
/// layer (spans always carry trace ids; exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set)
/// and the W3C trace-context propagator.
pub fn init(service_name: &'static str, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = resource(service_name, &|name| std::env::var(name).ok());
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let endpoint_set = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_ok_and(|v| !v.trim().is_empty());
    if endpoint_set {
        let exporter = otlp_exporter(None, &|name| std::env::var(name).ok())?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(service_name);
    // Spans feed traces whatever the log level: trace context must propagate even when
    // `RUST_LOG=warn` silences the logs. So each layer has its own filter.
    let otel_filter = Targets::new()
        .with_default(Level::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("sqlx", LevelFilter::WARN)
        .with_target("async_nats", LevelFilter::WARN);
    let otel_layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(otel_filter);
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));

    let registry = tracing_subscriber::registry().with(otel_layer);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(json_log::fields())
                    .event_format(json_log::TracedJson::new())
                    .with_filter(log_filter),
            )
            .try_init(),
        LogFormat::Pretty => {
            registry.with(tracing_subscriber::fmt::layer().compact().with_filter(log_filter)).try_init()
        }
    };
    result.map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// Spans with W3C trace ids and nothing else (no log output, no export): for a test process that
/// checks what a service in it sends (a `traceparent` on its requests).
pub fn init_spans_only(service_name: &'static str) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name));
    tracing_subscriber::registry()
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// The version every span's resource names: the crates of the workspace share one version
/// (`dw_build_info` on `/metrics` shows the same).
pub const SERVICE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The OpenTelemetry resource of a service, from the OTel variables that `env` gives, as the
/// specification orders them: `service.name` is `OTEL_SERVICE_NAME`, else the `service.name` of
/// `OTEL_RESOURCE_ATTRIBUTES`, else `default_name` (the service's own name: a deployment renames
/// a service without a rebuild, so code never overrides the variable); `service.version` is
/// [`SERVICE_VERSION`] unless `OTEL_RESOURCE_ATTRIBUTES` names one; the other attributes of
/// `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`) and the SDK's `telemetry.sdk.*` are kept.
pub fn resource(default_name: &str, env: &dyn Fn(&str) -> Option<String>) -> opentelemetry_sdk::Resource {
    use opentelemetry::KeyValue;

    let attributes: Vec<KeyValue> = env("OTEL_RESOURCE_ATTRIBUTES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| KeyValue::new(key.to_owned(), value.to_owned()))
        .collect();
    let named = |key: &str| attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
    let service_name = env("OTEL_SERVICE_NAME")
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| named("service.name"))
        .unwrap_or_else(|| default_name.to_owned());
    let service_version = named("service.version").unwrap_or_else(|| SERVICE_VERSION.to_owned());
    opentelemetry_sdk::Resource::builder_empty()
        .with_detector(Box::new(opentelemetry_sdk::resource::TelemetryResourceDetector))
        .with_attributes(attributes)
        .with_service_name(service_name)
        .with_attribute(KeyValue::new("service.version", service_version))
        .build()
}

/// The first of `names` that `env` gives, not blank (the signal-specific variable before the
/// general one, as the OTel specification orders them).
fn first_set(env: &dyn Fn(&str) -> Option<String>, names: [&'static str; 2]) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|name| env(name).filter(|value| !value.trim().is_empty()).map(|value| (name, value)))
}

/// The OTLP/gRPC span exporter to `endpoint`, or to the one the OTel variables name. An https://
/// collector is checked against `OTEL_EXPORTER_OTLP_CERTIFICATE` (a PEM CA file; the system's
/// roots without it), and gets a client certificate from `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
/// and `OTEL_EXPORTER_OTLP_CLIENT_KEY` when both are set (each also as `…_TRACES_…`), as the OTel
/// specification names them; opentelemetry-otlp 0.33 reads the endpoint but not these.
pub fn otlp_exporter(
    endpoint: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};

    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    let target = match endpoint {
        Some(endpoint) => {
            builder = builder.with_endpoint(endpoint);
            Some(endpoint.to_owned())
        }
        None => {
            first_set(env, ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]).map(|(_, url)| url)
        }
    };
    let https = target.is_some_and(|url| url.trim().to_ascii_lowercase().starts_with("https://"));
    if https {
        builder = builder.with_tls_config(otlp_tls(env)?);
    }
    builder.build().map_err(|e| TelemetryError::Exporter(e.to_string()))
}

fn otlp_tls(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig, TelemetryError> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};

    let read = |(name, path): (&'static str, String)| {
        std::fs::read(&path).map_err(|e| TelemetryError::TlsFile { name, path, reason: e.to_string() })
    };
    let ca = first_set(env, ["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"]);
    let mut config = match ca {
        Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    let cert =
        first_set(env, ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"]);
    let key = first_set(env, ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"]);
    match (cert, key) {
        (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(read(cert)?, read(key)?)),
        (None, None) => {}
        (Some((name, path)), None) | (None, Some((name, path))) => {
            return Err(TelemetryError::TlsFile {
                name,
                path,
                reason: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together".into(),
            });
        }
    }
    Ok(config)
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct TraceparentExtractor<'a>(&'a str);

impl Extractor for TraceparentExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The W3C `traceparent` of `span`, when it belongs to a valid trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut MapCarrier(&mut fields));
    fields.remove("traceparent")
}

/// The `traceparent` of the current span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The trace id (32 hex digits) of `span`, when it has one.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// Makes `span` a child of the remote span named by `traceparent` (ignored when malformed).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let context = TraceContextPropagator::new().extract(&TraceparentExtractor(traceparent));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Makes `span` a child of the remote span carried in HTTP/gRPC headers (`traceparent`).
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_through_a_span() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::with_default(subscriber, || {
            let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let span = tracing::info_span!("child");
            set_parent_from_traceparent(&span, remote);
            let own = traceparent_of(&span).unwrap();
            assert!(own.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
            assert!(!own.contains("00f067aa0ba902b7"), "child has its own span id");
            assert_eq!(trace_id_of(&span).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        });
    }

    fn attribute(resource: &opentelemetry_sdk::Resource, key: &'static str) -> Option<String> {
        resource.get(&opentelemetry::Key::from_static_str(key)).map(|value| value.to_string())
    }

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn the_service_name_is_the_default_without_otel_service_name() {
        let resource = resource("notifications", &env_of(&[]));
        assert_eq!(attribute(&resource, "service.name").as_deref(), Some("notifications"));
        assert_eq!(attribute(&resource, "service.version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(attribute(&resource, "telemetry.sdk.name").as_deref(), Some("opentelemetry"));
    }

    #[test]
    fn otel_service_name_wins_over_the_code_and_the_resource_attributes() {
        let env = env_of(&[
            ("OTEL_SERVICE_NAME", "notifications-eu"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,deployment.environment.name=prod"),
        ]);
        let resource = resource("notifications", &env);
        assert_eq!(attribute(&resource, "service.name").as_deref(), Some("notifications-eu"));
        assert_eq!(attribute(&resource, "service.version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(attribute(&resource, "deployment.environment.name").as_deref(), Some("prod"));
    }

    #[test]
    fn resource_attributes_name_the_service_when_otel_service_name_is_blank() {
        let env = env_of(&[
            ("OTEL_SERVICE_NAME", " "),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name = dw-notifications , service.version=2.0.0-rc1,broken"),
        ]);
        let resource = resource("notifications", &env);
        assert_eq!(attribute(&resource, "service.name").as_deref(), Some("dw-notifications"));
        assert_eq!(attribute(&resource, "service.version").as_deref(), Some("2.0.0-rc1"), "the deployment's own");
    }

    #[test]
    fn malformed_traceparent_is_ignored() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");
        let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("root");
            set_parent_from_traceparent(&span, "garbage");
            assert!(traceparent_of(&span).is_some(), "span starts its own trace");
        });
    }
}
