//! Bearer-token authentication for every Digital Workspace RPC: the validated [`Principal`]
//! (subject, tenant, roles), tokens of the company's OpenID Connect provider verified against
//! its JWKS ([`oidc`], with the claim layout of [`claims`]), and the shared-secret HS256 tokens of
//! local development and tests ([`JwtVerifier`], development-token minting).
//!
//! The tenant of a request comes from the token only, never from a request body.

pub mod claims;
pub mod oidc;

pub use claims::{ClaimMapping, ClaimPath, RoleMap};
pub use oidc::{JwksError, KeySet, OidcSettings, OidcVerifier};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    #[error("bad token signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("invalid claim {claim}: {reason}")]
    InvalidClaim { claim: &'static str, reason: String },
    #[error("signing secret must be at least {MIN_SECRET_LEN} bytes")]
    WeakSecret,
    #[error("token has no {claim} claim")]
    MissingClaim { claim: String },
    #[error("invalid claim {claim}: {reason}")]
    BadClaim { claim: String, reason: String },
    #[error("token issuer (iss) is not the configured identity provider")]
    WrongIssuer,
    #[error("token audience (aud) does not name this platform")]
    WrongAudience,
    #[error("token header has no key id (kid)")]
    MissingKeyId,
    #[error("token key id {0:?} is not in the identity provider's key set")]
    UnknownKey(String),
    #[error("token algorithm {token} is not the algorithm of its key ({key})")]
    AlgorithmMismatch { token: String, key: String },
}

pub use dw_ids::TenantId;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Manager,
    Service,
}

impl Role {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "agent" => Some(Self::Agent),
            "manager" => Some(Self::Manager),
            "service" => Some(Self::Service),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Manager => "manager",
            Self::Service => "service",
        }
    }
}

/// The claims carried by a token, as on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// An authenticated caller: valid by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: String,
    tenant: TenantId,
    roles: Vec<Role>,
}

impl Principal {
    pub fn new(subject: String, tenant: TenantId, roles: Vec<Role>) -> Self {
        Self { subject, tenant, roles }
    }

    /// Agent or service id (`sub`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// Verifies HS256 bearer tokens with one shared secret.
#[derive(Clone)]
pub struct JwtVerifier {
    secret: Vec<u8>,
    leeway_seconds: i64,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier").field("secret", &"<redacted>").finish()
    }
}

impl JwtVerifier {
    pub fn new(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::WeakSecret);
        }
        Ok(Self { secret: secret.to_vec(), leeway_seconds: LEEWAY_SECONDS })
    }

    /// Verifies `token` (without the `Bearer ` prefix) at unix time `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("expected three dot-separated parts"));
        };
        let header_bytes =
            URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| AuthError::Malformed("header is not base64url"))?;
        let header: Header =
            serde_json::from_slice(&header_bytes).map_err(|_| AuthError::Malformed("header is not JSON"))?;
        if header.alg != "HS256" {
            return Err(AuthError::UnsupportedAlgorithm);
        }
        let signature =
            URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| AuthError::Malformed("signature is not base64url"))?;
        let mut mac = self.mac();
        mac.update(header_b64.as_bytes());
        mac.update(b".");
        mac.update(claims_b64.as_bytes());
        mac.verify_slice(&signature).map_err(|_| AuthError::BadSignature)?;

        let claims_bytes =
            URL_SAFE_NO_PAD.decode(claims_b64).map_err(|_| AuthError::Malformed("claims are not base64url"))?;
        let claims: Claims = serde_json::from_slice(&claims_bytes)
            .map_err(|_| AuthError::Malformed("claims are not JSON with sub, tenant and exp"))?;
        // Saturating: a signed `exp` or `nbf` near the ends of i64 must not overflow.
        if claims.exp.saturating_add(self.leeway_seconds) < now {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf.saturating_sub(self.leeway_seconds) > now) {
            return Err(AuthError::NotYetValid);
        }
        principal_from_claims(claims)
    }

    /// Signs `claims` (used by `dwctl token`, the demo seed and tests).
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header { alg: "HS256".into(), typ: Some("JWT".into()) };
        let header_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let claims_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(header_b64.as_bytes());
        mac.update(b".");
        mac.update(claims_b64.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header_b64}.{claims_b64}.{signature}")
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        match HmacSha256::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("hmac accepts any key length"),
        }
    }
}

fn principal_from_claims(claims: Claims) -> Result<Principal, AuthError> {
    let subject = claims.sub.trim();
    if subject.is_empty() || subject.len() > 128 || subject.chars().any(char::is_control) {
        return Err(AuthError::InvalidClaim { claim: "sub", reason: "must be 1-128 printable characters".into() });
    }
    let tenant =
        TenantId::parse(&claims.tenant).map_err(|reason| AuthError::InvalidClaim { claim: "tenant", reason })?;
    let mut roles = Vec::with_capacity(claims.roles.len());
    for role in &claims.roles {
        let parsed = Role::parse(role)
            .ok_or_else(|| AuthError::InvalidClaim { claim: "roles", reason: format!("unknown role {role:?}") })?;
        roles.push(parsed);
    }
    Ok(Principal::new(subject.to_owned(), tenant, roles))
}

/// Extracts the token from an `authorization` header value.
pub fn bearer_token(header_value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header_value.trim().split_once(' ').ok_or(AuthError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token.trim())
}

/// Mints a token for `sub` in `tenant` with `roles`, valid for `ttl_seconds` from `now`.
pub fn mint(verifier: &JwtVerifier, sub: &str, tenant: &str, roles: &[Role], now: i64, ttl_seconds: i64) -> String {
    let claims = Claims {
        sub: sub.to_owned(),
        tenant: tenant.to_owned(),
        roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
        exp: now + ttl_seconds,
        iat: Some(now),
        nbf: None,
    };
    verifier.sign(&claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret-of-sufficient-length";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(SECRET).unwrap()
    }

    #[test]
    fn minted_token_verifies_to_its_principal() {
        let token = mint(&verifier(), "agent-1", "acme", &[Role::Agent], 1_000, 60);
        let principal = verifier().verify(&token, 1_010).unwrap();
        assert_eq!(principal.subject(), "agent-1");
        assert_eq!(principal.tenant().as_str(), "acme");
        assert!(principal.has_role(Role::Agent));
        assert!(!principal.has_role(Role::Manager));
    }

    #[test]
    fn token_signed_with_another_secret_is_rejected() {
        let other = JwtVerifier::new(b"another-secret-of-enough-length").unwrap();
        let token = mint(&other, "agent-1", "acme", &[Role::Agent], 1_000, 60);
        assert_eq!(verifier().verify(&token, 1_000), Err(AuthError::BadSignature));
    }

    #[test]
    fn tampered_claims_are_rejected() {
        let token = mint(&verifier(), "agent-1", "acme", &[Role::Agent], 1_000, 60);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"agent-1","tenant":"acme","roles":["manager"],"exp":2000}"#);
        let token = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(verifier().verify(&token, 1_000), Err(AuthError::BadSignature));
    }

    #[test]
    fn expired_token_is_rejected() {
        let token = mint(&verifier(), "agent-1", "acme", &[Role::Agent], 1_000, 60);
        assert_eq!(verifier().verify(&token, 2_000), Err(AuthError::Expired));
    }

    #[test]
    fn times_at_the_ends_of_i64_do_not_overflow() {
        let claims = |exp, nbf| Claims { sub: "a".into(), tenant: "acme".into(), roles: vec![], exp, iat: None, nbf };
        let far_future = verifier().sign(&claims(i64::MAX, None));
        assert!(verifier().verify(&far_future, 1_000).is_ok());
        let far_past = verifier().sign(&claims(i64::MIN, None));
        assert_eq!(verifier().verify(&far_past, 1_000), Err(AuthError::Expired));
        let never_valid = verifier().sign(&claims(i64::MAX, Some(i64::MAX)));
        assert_eq!(verifier().verify(&never_valid, 1_000), Err(AuthError::NotYetValid));
        let nbf_min = verifier().sign(&claims(i64::MAX, Some(i64::MIN)));
        assert!(verifier().verify(&nbf_min, 1_000).is_ok());
    }

    #[test]
    fn alg_none_is_rejected() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"a","tenant":"acme","roles":[],"exp":9999999999}"#);
        let token = format!("{header}.{claims}.");
        assert_eq!(verifier().verify(&token, 1_000), Err(AuthError::UnsupportedAlgorithm));
    }

    #[test]
    fn bad_tenant_and_unknown_role_are_rejected() {
        let token = mint(&verifier(), "agent-1", "Acme.Corp", &[Role::Agent], 1_000, 60);
        assert!(matches!(verifier().verify(&token, 1_000), Err(AuthError::InvalidClaim { claim: "tenant", .. })));
        let claims = Claims {
            sub: "a".into(),
            tenant: "acme".into(),
            roles: vec!["root".into()],
            exp: 2_000,
            iat: None,
            nbf: None,
        };
        let token = verifier().sign(&claims);
        assert!(matches!(verifier().verify(&token, 1_000), Err(AuthError::InvalidClaim { claim: "roles", .. })));
    }

    #[test]
    fn weak_secret_and_garbage_are_rejected() {
        assert_eq!(JwtVerifier::new(b"short").err(), Some(AuthError::WeakSecret));
        assert!(matches!(verifier().verify("not-a-token", 0), Err(AuthError::Malformed(_))));
        assert_eq!(bearer_token("Basic abc"), Err(AuthError::MissingToken));
        assert_eq!(bearer_token("Bearer abc"), Ok("abc"));
    }
}
