//! Calling the services as a client does in tests: bearer tokens, authenticated requests and
//! fresh request ids.

use dw_auth::{JwtVerifier, Role};

/// A bearer token for `sub` in `tenant` with `roles`, valid for an hour, signed with `secret`.
/// Panics on a secret the verifier refuses: a test's own constant.
pub fn token(secret: &str, tenant: &str, sub: &str, roles: &[Role]) -> String {
    #[allow(clippy::expect_used)]
    let verifier = JwtVerifier::new(secret.as_bytes()).expect("a test secret of at least 16 bytes");
    dw_auth::mint(&verifier, sub, tenant, roles, chrono::Utc::now().timestamp(), 3600)
}

/// `body` with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A fresh request id.
pub fn rid() -> String {
    uuid::Uuid::now_v7().to_string()
}
