//! A fake OpenID Connect provider for tests: serves a JWKS on 127.0.0.1 (keys the test can
//! rotate, an outage it can switch on) and signs tokens with the committed test keys
//! (`services/common/testkit/keys/`, generated with openssl; never used anywhere else).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use dw_auth::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The audience the fake provider's tokens name.
pub const AUDIENCE: &str = "digital-workspace";

/// A test key pair. Its key id is its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKey {
    Rsa1,
    Rsa2,
    EcP256,
    Ed25519,
}

impl TestKey {
    pub fn kid(self) -> &'static str {
        match self {
            Self::Rsa1 => "rsa-1",
            Self::Rsa2 => "rsa-2",
            Self::EcP256 => "ec-p256",
            Self::Ed25519 => "ed25519",
        }
    }

    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::Rsa1 | Self::Rsa2 => Algorithm::RS256,
            Self::EcP256 => Algorithm::ES256,
            Self::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn private_pem(self) -> &'static str {
        match self {
            Self::Rsa1 => include_str!("../keys/rsa-1.pem"),
            Self::Rsa2 => include_str!("../keys/rsa-2.pem"),
            Self::EcP256 => include_str!("../keys/ec-p256.pem"),
            Self::Ed25519 => include_str!("../keys/ed25519.pem"),
        }
    }

    fn public_jwk(self) -> &'static str {
        match self {
            Self::Rsa1 => include_str!("../keys/rsa-1.public.json"),
            Self::Rsa2 => include_str!("../keys/rsa-2.public.json"),
            Self::EcP256 => include_str!("../keys/ec-p256.public.json"),
            Self::Ed25519 => include_str!("../keys/ed25519.public.json"),
        }
    }

    /// The public JWK as a provider publishes it (`kid`, `alg`, `use: sig`).
    pub fn jwk(self) -> Value {
        #[allow(clippy::expect_used)]
        let mut jwk: Value = serde_json::from_str(self.public_jwk()).expect("a committed test JWK");
        jwk["kid"] = json!(self.kid());
        jwk["alg"] = json!(format!("{:?}", self.algorithm()));
        jwk["use"] = json!("sig");
        jwk
    }

    /// Signs `claims` with this key, its `kid` in the header.
    pub fn sign(self, claims: &Value) -> String {
        self.sign_with_header(Header { kid: Some(self.kid().into()), ..Header::new(self.algorithm()) }, claims)
    }

    /// Signs `claims` with this key under `header` (for tokens that lie about their key).
    #[allow(clippy::expect_used)]
    pub fn sign_with_header(self, header: Header, claims: &Value) -> String {
        let pem = self.private_pem().as_bytes();
        let key = match self {
            Self::Rsa1 | Self::Rsa2 => EncodingKey::from_rsa_pem(pem),
            Self::EcP256 => EncodingKey::from_ec_pem(pem),
            Self::Ed25519 => EncodingKey::from_ed_pem(pem),
        }
        .expect("a committed test key");
        jsonwebtoken::encode(&header, claims, &key).expect("signing a test token")
    }
}

#[derive(Default)]
struct Published {
    keys: Mutex<Vec<TestKey>>,
    fetches: AtomicUsize,
    down: AtomicBool,
}

/// A JWKS endpoint on 127.0.0.1, stopped when dropped.
pub struct FakeIdp {
    addr: SocketAddr,
    published: Arc<Published>,
    stop: CancellationToken,
}

impl FakeIdp {
    /// Serves a JWKS publishing `keys`.
    #[allow(clippy::expect_used)]
    pub async fn start(keys: &[TestKey]) -> Self {
        let published = Arc::new(Published::default());
        if let Ok(mut current) = published.keys.lock() {
            *current = keys.to_vec();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake idp");
        let addr = listener.local_addr().expect("fake idp address");
        let router = axum::Router::new()
            .route("/realms/dw/protocol/openid-connect/certs", axum::routing::get(jwks))
            .with_state(published.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).with_graceful_shutdown(stopped.cancelled_owned()).await;
        });
        Self { addr, published, stop }
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/realms/dw/protocol/openid-connect/certs", self.addr)
    }

    pub fn issuer(&self) -> String {
        format!("http://{}/realms/dw", self.addr)
    }

    /// Publishes `keys` from now on (a rotation: add the new key, later drop the old one).
    pub fn publish(&self, keys: &[TestKey]) {
        if let Ok(mut current) = self.published.keys.lock() {
            *current = keys.to_vec();
        }
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    /// While down, the JWKS answers 503.
    pub fn set_down(&self, down: bool) {
        self.published.down.store(down, Ordering::SeqCst);
    }

    /// The claims of a valid token of this provider: Keycloak's layout (roles in
    /// `realm_access.roles`), valid for an hour.
    pub fn claims(&self, tenant: &str, sub: &str, roles: &[Role]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.issuer(),
            "aud": [AUDIENCE, "account"],
            "sub": sub,
            "tenant": tenant,
            "realm_access": {"roles": roles.iter().map(|role| role.as_str()).chain(["offline_access"]).collect::<Vec<_>>()},
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// A valid token for `sub` in `tenant` with `roles`, signed with `key`.
    pub fn token(&self, key: TestKey, tenant: &str, sub: &str, roles: &[Role]) -> String {
        key.sign(&self.claims(tenant, sub, roles))
    }

    /// The settings a service needs to accept this provider's tokens (Keycloak's layout).
    pub fn settings(&self) -> dw_auth::OidcSettings {
        dw_auth::OidcSettings {
            issuer: self.issuer(),
            audience: AUDIENCE.into(),
            #[allow(clippy::expect_used)]
            claims: dw_auth::ClaimMapping::parse("sub", "tenant", "realm_access.roles", "").expect("valid claim paths"),
            leeway_seconds: dw_auth::LEEWAY_SECONDS,
        }
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn jwks(State(published): State<Arc<Published>>) -> axum::response::Response {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    if published.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys: Vec<Value> =
        published.keys.lock().map(|keys| keys.iter().map(|key| key.jwk()).collect()).unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], json!({ "keys": keys }).to_string()).into_response()
}
