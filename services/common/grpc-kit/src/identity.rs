//! Who signs the bearer tokens a service accepts: the company's OpenID Connect provider (its JWKS
//! fetched, cached and refreshed here) or, for local development and tests only, a shared HS256
//! secret.
//!
//! The JWKS is fetched at start-up (retried with backoff, like Postgres and NATS), refreshed in
//! the background every `DW_JWT_JWKS_REFRESH_SECONDS`, and refreshed early when a token names a
//! key id the cache does not know — at most once per `DW_JWT_JWKS_MIN_REFRESH_SECONDS`, so that
//! tokens with random key ids cannot make the service hammer the provider. A refresh that fails
//! keeps the keys already cached. The early refresh is asynchronous, so it runs in
//! [`KeyRefreshLayer`] before the (synchronous) [`crate::AuthInterceptor`] verifies.

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use dw_auth::{AuthError, JwtVerifier, KeySet, OidcSettings, OidcVerifier, Principal};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};
use tracing::{info, warn};

use crate::config::redact_url;
use crate::startup::StartupError;

/// The largest JWKS document read (providers publish a few keys: a few kilobytes).
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How tokens are verified (`DW_JWT_JWKS_URL` or `DW_JWT_SECRET`; deploy/README.md).
#[derive(Clone)]
#[allow(clippy::large_enum_variant, reason = "one per service, read once at start-up")]
pub enum IdentityConfig {
    /// HS256 with one shared secret: local development and tests. Whoever holds the secret can
    /// mint a token of any role for any tenant.
    SharedSecret(SecretString),
    /// The identity provider's tokens, verified against its JWKS.
    Oidc(OidcConfig),
    /// Neither is configured: a service does not serve so, but its one-off commands (`migrate`,
    /// `dead-letters`, `quarantine`) verify no token and need none.
    Unset,
}

impl std::fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SharedSecret(secret) => f.debug_tuple("SharedSecret").field(secret).finish(),
            Self::Oidc(oidc) => f.debug_tuple("Oidc").field(oidc).finish(),
            Self::Unset => f.write_str("Unset"),
        }
    }
}

/// The identity provider: where its keys are and what its tokens must say.
#[derive(Clone)]
pub struct OidcConfig {
    pub jwks_url: String,
    pub settings: OidcSettings,
    /// The background refresh period (`DW_JWT_JWKS_REFRESH_SECONDS`, 300).
    pub refresh_interval: Duration,
    /// The shortest time between two refreshes caused by unknown key ids
    /// (`DW_JWT_JWKS_MIN_REFRESH_SECONDS`, 10).
    pub min_refresh_interval: Duration,
    /// How long one fetch of the JWKS may take.
    pub fetch_timeout: Duration,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("jwks_url", &redact_url(&self.jwks_url))
            .field("issuer", &self.settings.issuer)
            .field("audience", &self.settings.audience)
            .field("claims", &self.settings.claims)
            .field("refresh_interval", &self.refresh_interval)
            .field("min_refresh_interval", &self.min_refresh_interval)
            .finish()
    }
}

impl OidcConfig {
    /// The provider at `jwks_url` with `settings` and the default refresh periods.
    pub fn new(jwks_url: impl Into<String>, settings: OidcSettings) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            settings,
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether a JWKS URL may be fetched: HTTPS, or HTTP to this host only (tests, a sidecar). Keys
/// fetched in clear text from elsewhere could be replaced on the way, and with them every token.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("has no host")?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("must be https:// (http:// only to localhost)".into()),
    }
}

/// Why a JWKS fetch gave no keys (the keys already cached stay in use).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("jwks request failed: {0}")]
    Http(String),
    #[error("jwks answered HTTP {0}")]
    Status(u16),
    #[error("jwks document larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Keys(#[from] dw_auth::JwksError),
}

/// The provider's current keys and how to fetch them again.
pub struct JwksCache {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the last fetch caused by an unknown key id started; held while one runs, so that
    /// concurrent requests wait for it rather than start their own.
    last_early_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_refresh_interval: Duration,
}

impl JwksCache {
    pub fn new(config: &OidcConfig) -> Result<Self, String> {
        check_jwks_url(&config.jwks_url)?;
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            url: config.jwks_url.clone(),
            client,
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_early_fetch: tokio::sync::Mutex::new(None),
            min_refresh_interval: config.min_refresh_interval,
        })
    }

    /// The keys cached now.
    pub fn keys(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Fetches the JWKS and, when it has usable keys, replaces the cached ones.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let keys = self.fetch().await?;
        let kids = keys.key_ids().join(",");
        let changed = {
            let mut cached = match self.keys.write() {
                Ok(cached) => cached,
                Err(poisoned) => poisoned.into_inner(),
            };
            let changed = cached.key_ids() != keys.key_ids();
            *cached = Arc::new(keys);
            changed
        };
        if changed {
            info!(kids, "identity provider keys loaded");
        }
        Ok(())
    }

    /// Refreshes because a token names `kid`, unless the key is known by now or the last such
    /// refresh was less than the minimum interval ago. A failure is logged; the cache stays.
    pub async fn refresh_for(&self, kid: &str) {
        if self.keys().contains(kid) {
            return;
        }
        let mut last = self.last_early_fetch.lock().await;
        // A refresh that ran while this one waited may have brought the key.
        if self.keys().contains(kid) || last.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.refresh().await {
            warn!(%error, url = %redact_url(&self.url), "jwks refresh for an unknown key id failed");
        }
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let mut response = self
            .client
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Http(e.without_url().to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let (keys, skipped) = KeySet::parse(&body)?;
        for reason in skipped {
            warn!(reason, "jwks key skipped");
        }
        Ok(keys)
    }
}

/// Verifies bearer tokens the way the configuration says.
#[allow(clippy::large_enum_variant, reason = "one per service, behind an Arc")]
pub enum TokenVerifier {
    SharedSecret(JwtVerifier),
    Oidc { cache: Arc<JwksCache>, verifier: OidcVerifier },
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SharedSecret(verifier) => f.debug_tuple("SharedSecret").field(verifier).finish(),
            Self::Oidc { cache, verifier } => {
                f.debug_struct("Oidc").field("keys", &cache.keys()).field("settings", verifier.settings()).finish()
            }
        }
    }
}

impl TokenVerifier {
    /// The verifier of `identity`: for a provider, once its JWKS answered with usable keys
    /// (retried with backoff until then, or until `cancel`).
    pub async fn connect(identity: &IdentityConfig, cancel: &CancellationToken) -> Result<Self, StartupError> {
        let oidc = match identity {
            IdentityConfig::SharedSecret(secret) => {
                let verifier = JwtVerifier::new(secret.expose_secret().as_bytes())
                    .map_err(|e| StartupError::Identity(e.to_string()))?;
                return Ok(Self::SharedSecret(verifier));
            }
            IdentityConfig::Oidc(oidc) => oidc,
            IdentityConfig::Unset => {
                return Err(StartupError::Identity(
                    "no token issuer: set DW_JWT_JWKS_URL with DW_JWT_ISSUER and DW_JWT_AUDIENCE (or, for \
                     development, DW_JWT_SECRET)"
                        .into(),
                ));
            }
        };
        let cache = Arc::new(
            JwksCache::new(oidc).map_err(|reason| StartupError::Identity(format!("DW_JWT_JWKS_URL {reason}")))?,
        );
        let mut backoff = Duration::from_millis(100);
        loop {
            match cache.refresh().await {
                Ok(()) => break,
                Err(error) => warn!(
                    %error,
                    url = %redact_url(&oidc.jwks_url),
                    backoff_ms = backoff.as_millis() as u64,
                    "identity provider keys not available yet"
                ),
            }
            crate::startup::pause(cancel, &mut backoff, "the identity provider's jwks").await?;
        }
        Ok(Self::Oidc { cache, verifier: OidcVerifier::new(oidc.settings.clone()) })
    }

    /// Verifies `token` (without `Bearer `) at unix time `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        match self {
            Self::SharedSecret(verifier) => verifier.verify(token, now),
            Self::Oidc { cache, verifier } => verifier.verify(&cache.keys(), token, now),
        }
    }

    /// The provider's key cache (none for a shared secret).
    pub fn jwks(&self) -> Option<&Arc<JwksCache>> {
        match self {
            Self::SharedSecret(_) => None,
            Self::Oidc { cache, .. } => Some(cache),
        }
    }
}

/// Refreshes the cache every `interval` until `cancel`; a failed refresh keeps the cached keys.
pub async fn keep_keys_fresh(cache: Arc<JwksCache>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = cache.refresh().await {
            warn!(%error, url = %redact_url(&cache.url), "jwks refresh failed, keeping the cached keys");
        }
    }
}

/// Before a call reaches the interceptor: when its token names a key id the provider's cache
/// does not know, waits for a (rate-limited) refresh, so that a key the provider just rotated in
/// verifies on the first call that uses it.
#[derive(Clone)]
pub struct KeyRefreshLayer {
    verifier: Arc<TokenVerifier>,
}

impl KeyRefreshLayer {
    pub fn new(verifier: Arc<TokenVerifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for KeyRefreshLayer {
    type Service = KeyRefreshService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyRefreshService { inner, verifier: self.verifier.clone() }
    }
}

#[derive(Clone)]
pub struct KeyRefreshService<S> {
    inner: S,
    verifier: Arc<TokenVerifier>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for KeyRefreshService<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let unknown_kid = self.verifier.jwks().and_then(|cache| {
            let header = request.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?;
            let kid = dw_auth::oidc::token_key_id(dw_auth::bearer_token(header).ok()?)?;
            (!cache.keys().contains(&kid)).then(|| (cache.clone(), kid))
        });
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if let Some((cache, kid)) = unknown_kid {
                cache.refresh_for(&kid).await;
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::check_jwks_url;

    #[test]
    fn keys_come_over_https_or_from_this_host() {
        for ok in [
            "https://login.microsoftonline.com/x/discovery/v2.0/keys",
            "http://127.0.0.1:8080/certs",
            "http://localhost/certs",
            "http://[::1]:9/certs",
        ] {
            assert!(check_jwks_url(ok).is_ok(), "{ok}");
        }
        for refused in
            ["http://keycloak.identity.svc:8080/certs", "ftp://example.com/keys", "not a url", "http://10.0.0.1/"]
        {
            assert!(check_jwks_url(refused).is_err(), "{refused}");
        }
    }
}
