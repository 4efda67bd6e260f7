//! Client spans of the HTTP calls a service makes (provider APIs, webhook deliveries, Web Push),
//! by the OpenTelemetry HTTP conventions: `otel.kind = "client"`, `http.request.method`,
//! `server.address` and `server.port`, then `http.response.status_code`, or `error.type` and an
//! error status when the call failed (a 4xx or 5xx answer is a failed call for a client). The
//! request carries the span's `traceparent`, so a receiver that traces continues the trace.
//!
//! ```text
//! let span = dw_telemetry::http_client_span!("webhook deliver", "POST", &url, attempt = 2);
//! let request = dw_telemetry::http_client::with_traceparent(request_headers, &span);
//! ...
//! dw_telemetry::http_client::record_status(&span, 503);
//! ```

/// A client span named `$name` (a literal) for a `$method` request to `$url`, with the
/// conventional fields declared (status fields filled later by [`record_status`] or
/// [`record_failure`]) and any extra `field = value` pairs.
#[macro_export]
macro_rules! http_client_span {
    ($name:literal, $method:expr, $url:expr $(, $($fields:tt)*)?) => {{
        let span = $crate::__tracing::info_span!(
            $name,
            otel.kind = "client",
            http.request.method = $method,
            server.address = $crate::__tracing::field::Empty,
            server.port = $crate::__tracing::field::Empty,
            http.response.status_code = $crate::__tracing::field::Empty,
            error.type = $crate::__tracing::field::Empty,
            otel.status_code = $crate::__tracing::field::Empty,
            $($($fields)*)?
        );
        $crate::http_client::record_server(&span, $url);
        span
    }};
}

/// Records the host and port of `url` (only those: a URL's path or query may hold a token).
pub fn record_server(span: &tracing::Span, url: &str) {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return;
    };
    if let Some(host) = uri.host() {
        span.record("server.address", host.trim_start_matches('[').trim_end_matches(']'));
    }
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    if let Some(port) = uri.port_u16().or(default_port) {
        span.record("server.port", port);
    }
}

/// The answer's status; 4xx and 5xx mark the span as an error (`error.type` = the status code).
pub fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 400 {
        span.record("error.type", status.to_string());
        span.record("otel.status_code", "ERROR");
    }
}

/// No answer: `error.type` says why (`timeout`, `connect`, `refused`, …) and the span is an error.
pub fn record_failure(span: &tracing::Span, error_type: &str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}

/// The `traceparent` header value an outgoing request of `span` carries.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    crate::traceparent_of(span)
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn a_client_span_has_a_traceparent_to_send_and_takes_its_outcome() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let url = "https://hooks.example.com/path?token=x";
            let span = crate::http_client_span!("test call", "POST", url, attempt = 1);
            super::record_status(&span, 503);
            super::record_failure(&span, "timeout");
            let traceparent = super::traceparent(&span).expect("a traceparent");
            assert!(traceparent.starts_with("00-") && traceparent.len() == 55, "{traceparent}");
        });
        // Without a subscriber the span is off and nothing is sent.
        let span = crate::http_client_span!("test call", "GET", "http://127.0.0.1:8080/");
        assert!(super::traceparent(&span).is_none());
    }
}
