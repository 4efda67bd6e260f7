//! The identity provider's keys as a service sees them: fetched at start-up (waiting for the
//! provider), refreshed when a token names a new key (rate-limited), kept when the provider
//! fails; and every bad token refused with a reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use dw_auth::{AuthError, Role};
use dw_grpc_kit::identity::{IdentityConfig, OidcConfig, TokenVerifier, keep_keys_fresh};
use dw_testkit::idp::{FakeIdp, TestKey};
use jsonwebtoken::{Algorithm, Header};
use tokio_util::sync::CancellationToken;

fn now() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since_epoch.as_secs()).unwrap()
}

fn config(idp: &FakeIdp, min_refresh: Duration) -> IdentityConfig {
    let mut oidc = OidcConfig::new(idp.jwks_url(), idp.settings());
    oidc.min_refresh_interval = min_refresh;
    IdentityConfig::Oidc(oidc)
}

async fn connect(idp: &FakeIdp, min_refresh: Duration) -> TokenVerifier {
    TokenVerifier::connect(&config(idp, min_refresh), &CancellationToken::new()).await.unwrap()
}

/// What a call with `token` goes through: the refresh layer's step, then the interceptor's.
async fn verify(verifier: &TokenVerifier, token: &str) -> Result<dw_auth::Principal, AuthError> {
    if let (Some(cache), Some(kid)) = (verifier.jwks(), dw_auth::oidc::token_key_id(token)) {
        cache.refresh_for(&kid).await;
    }
    verifier.verify(token, now())
}

#[tokio::test]
async fn start_up_waits_for_the_provider_and_then_verifies_its_tokens() {
    let idp = FakeIdp::start(&[TestKey::Rsa1, TestKey::EcP256, TestKey::Ed25519]).await;
    idp.set_down(true);
    let identity = config(&idp, Duration::from_secs(10));
    let connecting = tokio::spawn(async move { TokenVerifier::connect(&identity, &CancellationToken::new()).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!connecting.is_finished(), "no keys yet: still waiting");
    assert!(idp.fetches() >= 2, "retried");
    idp.set_down(false);
    let verifier = tokio::time::timeout(Duration::from_secs(5), connecting).await.unwrap().unwrap().unwrap();
    for key in [TestKey::Rsa1, TestKey::EcP256, TestKey::Ed25519] {
        let principal = verify(&verifier, &idp.token(key, "acme", "ana", &[Role::Agent])).await.unwrap();
        assert_eq!((principal.subject(), principal.tenant().as_str()), ("ana", "acme"));
        assert_eq!(principal.roles(), &[Role::Agent], "offline_access is not a role of ours");
    }
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_on_its_first_token_while_the_old_one_keeps_working() {
    let idp = FakeIdp::start(&[TestKey::Rsa1]).await;
    let verifier = connect(&idp, Duration::from_millis(200)).await;
    let old = idp.token(TestKey::Rsa1, "acme", "ana", &[Role::Agent]);
    assert!(verify(&verifier, &old).await.is_ok());

    // The provider publishes the next key, then signs with it.
    idp.publish(&[TestKey::Rsa1, TestKey::Rsa2]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new = idp.token(TestKey::Rsa2, "acme", "ana", &[Role::Agent]);
    assert!(verify(&verifier, &new).await.is_ok(), "refreshed on the unknown kid");
    assert!(verify(&verifier, &old).await.is_ok(), "the old key is still published");

    // The old key is retired: its tokens stop verifying once the cache is refreshed.
    idp.publish(&[TestKey::Rsa2]);
    verifier.jwks().unwrap().refresh().await.unwrap();
    assert_eq!(verify(&verifier, &old).await.unwrap_err(), AuthError::UnknownKey("rsa-1".into()));
    assert!(verify(&verifier, &new).await.is_ok());
}

#[tokio::test]
async fn random_key_ids_cause_at_most_one_fetch_per_interval() {
    let idp = FakeIdp::start(&[TestKey::EcP256]).await;
    let verifier = Arc::new(connect(&idp, Duration::from_secs(60)).await);
    let fetches = idp.fetches();
    let mut attempts = Vec::new();
    for n in 0..50 {
        let verifier = verifier.clone();
        let header = Header { kid: Some(format!("random-{n}")), ..Header::new(Algorithm::ES256) };
        let token = TestKey::EcP256.sign_with_header(header, &idp.claims("acme", "ana", &[Role::Agent]));
        attempts.push(tokio::spawn(async move { verify(&verifier, &token).await }));
    }
    for attempt in attempts {
        assert!(matches!(attempt.await.unwrap(), Err(AuthError::UnknownKey(_))));
    }
    assert_eq!(idp.fetches(), fetches + 1, "one refresh for fifty unknown key ids");
}

#[tokio::test]
async fn a_failing_provider_leaves_the_cached_keys_in_use() {
    let idp = FakeIdp::start(&[TestKey::Rsa1]).await;
    let verifier = connect(&idp, Duration::from_millis(1)).await;
    let cache = verifier.jwks().unwrap().clone();
    let stop = CancellationToken::new();
    let refresher = tokio::spawn(keep_keys_fresh(cache.clone(), Duration::from_millis(50), stop.clone()));
    idp.set_down(true);
    let fetches = idp.fetches();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(idp.fetches() > fetches, "the background refresh kept trying");
    assert!(cache.refresh().await.is_err());
    assert!(verify(&verifier, &idp.token(TestKey::Rsa1, "acme", "ana", &[Role::Agent])).await.is_ok());
    stop.cancel();
    refresher.await.unwrap();
}

#[tokio::test]
async fn wrong_issuer_audience_key_algorithm_and_claims_are_refused_with_their_reason() {
    let idp = FakeIdp::start(&[TestKey::Rsa1, TestKey::EcP256]).await;
    let verifier = connect(&idp, Duration::from_secs(60)).await;
    let valid = || idp.claims("acme", "ana", &[Role::Agent]);
    let refused = |claims: serde_json::Value| TestKey::Rsa1.sign(&claims);

    let mut claims = valid();
    claims["iss"] = "https://someone-else.example.com".into();
    assert_eq!(verify(&verifier, &refused(claims)).await, Err(AuthError::WrongIssuer));
    let mut claims = valid();
    claims["aud"] = "another-application".into();
    assert_eq!(verify(&verifier, &refused(claims)).await, Err(AuthError::WrongAudience));
    let mut claims = valid();
    claims["exp"] = (now() - 3600).into();
    assert_eq!(verify(&verifier, &refused(claims)).await, Err(AuthError::Expired));
    let mut claims = valid();
    claims.as_object_mut().unwrap().remove("tenant");
    assert_eq!(verify(&verifier, &refused(claims)).await, Err(AuthError::MissingClaim { claim: "tenant".into() }));
    let mut claims = valid();
    claims.as_object_mut().unwrap().remove("realm_access");
    let missing_roles = verify(&verifier, &refused(claims)).await.unwrap_err();
    assert_eq!(missing_roles.to_string(), "token has no realm_access.roles claim");

    // A key the provider does not publish, under its own kid and under a published one.
    assert_eq!(
        verify(&verifier, &idp.token(TestKey::Rsa2, "acme", "ana", &[Role::Agent])).await,
        Err(AuthError::UnknownKey("rsa-2".into()))
    );
    let impostor =
        TestKey::Rsa2.sign_with_header(Header { kid: Some("rsa-1".into()), ..Header::new(Algorithm::RS256) }, &valid());
    assert_eq!(verify(&verifier, &impostor).await, Err(AuthError::BadSignature));
    // The EC key's kid on an RSA signature: the key decides the algorithm.
    let confused = TestKey::Rsa1
        .sign_with_header(Header { kid: Some("ec-p256".into()), ..Header::new(Algorithm::RS256) }, &valid());
    assert!(matches!(verify(&verifier, &confused).await, Err(AuthError::AlgorithmMismatch { .. })));
}
