//! gRPC-Web on every gRPC port, so that an agent console in a browser calls the services
//! directly: `tonic-web` translates `application/grpc-web[-text][+proto]` requests (HTTP/1.1 or
//! HTTP/2) into gRPC, and a CORS layer answers the browsers' preflights.
//!
//! Which web origins may call is a deployment's decision (`DW_GRPC_WEB_ALLOWED_ORIGINS`, exact
//! origins such as `https://console.example.com`, comma-separated). Empty, gRPC-Web is still
//! served (to a same-origin console behind the ingress, or to tools), but no cross-origin page may
//! call. There is no wildcard: the callers send a bearer token, and a page of any origin that
//! could read the answers is what CORS exists to stop. Cookies are never involved, so CORS
//! credentials stay off.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{ConfigError, var};

/// The variable naming the origins allowed to call from a browser.
pub const ALLOWED_ORIGINS_VAR: &str = "DW_GRPC_WEB_ALLOWED_ORIGINS";

/// How long a browser may cache a preflight's answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The request headers a gRPC-Web client sends (grpc-web, connect-web, improbable-eng), plus
/// the W3C trace context so that a console's trace continues in the services.
const ALLOWED_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "accept",
    "traceparent",
    "tracestate",
];

/// The response headers a browser script may read: the status of a trailers-only answer and
/// its rich details (`google.rpc.Status`).
const EXPOSED_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// The web origins allowed to call the gRPC port from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcWebConfig {
    /// Exact origins (`scheme://host[:port]`, lower-case); empty: no cross-origin access.
    pub allowed_origins: Vec<String>,
}

impl GrpcWebConfig {
    /// `DW_GRPC_WEB_ALLOWED_ORIGINS`; unset or blank is no cross-origin access.
    pub fn from_env() -> Result<Self, ConfigError> {
        // The name spelled out: scripts/check-manifests.py finds the variables a service reads so.
        Self::parse(&var("DW_GRPC_WEB_ALLOWED_ORIGINS", ""))
            .map_err(|reason| ConfigError::Invalid { name: ALLOWED_ORIGINS_VAR, reason })
    }

    /// A comma-separated list of exact origins.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed_origins = Vec::new();
        for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let origin = parse_origin(item)?;
            if !allowed_origins.contains(&origin) {
                allowed_origins.push(origin);
            }
        }
        Ok(Self { allowed_origins })
    }

    /// The CORS layer of the gRPC port: preflights from an allowed origin get the allow headers,
    /// every other origin gets none (so its browser refuses the call).
    pub fn cors_layer(&self) -> CorsLayer {
        // Each origin was checked by `parse_origin`, so none fails here; skipping is the safe side.
        let origins: Vec<HeaderValue> =
            self.allowed_origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::POST])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(PREFLIGHT_MAX_AGE)
    }
}

/// One origin as a browser sends it: `http` or `https`, a host, an optional port, nothing else.
fn parse_origin(item: &str) -> Result<String, String> {
    if item == "*" || item.contains('*') {
        return Err(format!(
            "{item:?}: wildcards are not allowed (the callers send bearer tokens); list each origin, e.g. https://console.example.com"
        ));
    }
    let origin = item.to_ascii_lowercase();
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err(format!("{item:?} is not an origin like https://console.example.com"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("{item:?}: the scheme of a web origin is http or https"));
    }
    if authority.is_empty() {
        return Err(format!("{item:?} has no host"));
    }
    if let Some(extra) = authority.find(['/', '?', '#', '@']) {
        return Err(format!(
            "{item:?}: an origin is scheme://host[:port] only, without {:?} (a browser sends no path, user or trailing slash)",
            &authority[extra..=extra]
        ));
    }
    let port = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:8080`.
        Some(bracketed) => match bracketed.split_once(']') {
            Some((_, "")) => None,
            Some((_, after)) => Some(after.strip_prefix(':').unwrap_or(after)),
            None => return Err(format!("{item:?}: an IPv6 host is written [address]")),
        },
        None => authority.split_once(':').map(|(_, port)| port),
    };
    if let Some(port) = port.filter(|port| port.parse::<u16>().is_err()) {
        return Err(format!("{item:?}: {port:?} is not a port"));
    }
    let header_safe = origin.bytes().all(|b| b.is_ascii_graphic());
    if !header_safe {
        return Err(format!("{item:?}: an origin has no spaces or control characters"));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::GrpcWebConfig;

    #[test]
    fn exact_origins_are_kept_lower_case_and_once() {
        let config =
            GrpcWebConfig::parse(" https://Console.example.com , http://localhost:5173,https://console.example.com")
                .expect("valid origins");
        assert_eq!(config.allowed_origins, vec!["https://console.example.com", "http://localhost:5173"]);
        assert_eq!(GrpcWebConfig::parse("").expect("empty").allowed_origins, Vec::<String>::new());
        assert_eq!(GrpcWebConfig::parse("http://[::1]:8080").expect("ipv6").allowed_origins, vec!["http://[::1]:8080"]);
    }

    #[test]
    fn wildcards_paths_and_other_schemes_are_refused_with_the_reason() {
        for (bad, says) in [
            ("*", "wildcards"),
            ("https://*.example.com", "wildcards"),
            ("https://console.example.com/", "without \"/\""),
            ("https://console.example.com/app", "without \"/\""),
            ("console.example.com", "not an origin"),
            ("ftp://console.example.com", "http or https"),
            ("https://", "no host"),
            ("https://console.example.com:http", "not a port"),
            ("https://user@console.example.com", "without \"@\""),
        ] {
            let error = GrpcWebConfig::parse(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
