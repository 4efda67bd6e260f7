//! agent-sessions behind an OpenID Connect provider (a fake one on 127.0.0.1): its tokens work,
//! across a key rotation; forged, misaddressed and shared-secret tokens are UNAUTHENTICATED; a
//! token without a role of ours is PERMISSION_DENIED.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{SECRET, TestService, authed, rid};
use dw_auth::Role;
use dw_grpc_kit::identity::{IdentityConfig, OidcConfig};
use dw_proto::agentsessions::v1 as pb;
use dw_testkit::idp::{FakeIdp, TestKey};
use jsonwebtoken::{Algorithm, Header};
use tonic::Code;

async fn start(idp: &FakeIdp) -> TestService {
    let mut oidc = OidcConfig::new(idp.jwks_url(), idp.settings());
    oidc.refresh_interval = Duration::from_millis(300);
    oidc.min_refresh_interval = Duration::from_millis(100);
    TestService::start_with(move |config| config.identity = IdentityConfig::Oidc(oidc)).await
}

async fn my_state(service: &TestService, token: &str) -> Result<pb::AgentDayState, tonic::Status> {
    service.day().get_my_state(authed(token, pb::GetMyStateRequest {})).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn the_providers_tokens_work_across_a_key_rotation() {
    let idp = FakeIdp::start(&[TestKey::Rsa1, TestKey::EcP256]).await;
    let service = start(&idp).await;
    let manager = idp.token(TestKey::EcP256, "acme", "manager-1", &[Role::Manager]);
    let register = pb::RegisterAgentRequest { request_id: rid(), agent_id: "ana".into(), display_name: "Ana".into() };
    service.admin().register_agent(authed(&manager, register)).await.unwrap();
    let old = idp.token(TestKey::Rsa1, "acme", "ana", &[Role::Agent]);
    my_state(&service, &old).await.unwrap();

    // The provider publishes its next key and starts signing with it: the first call with the
    // new kid succeeds (the service refreshes its keys), and old-kid tokens keep working.
    idp.publish(&[TestKey::Rsa1, TestKey::Rsa2, TestKey::EcP256]);
    let new = idp.token(TestKey::Rsa2, "acme", "ana", &[Role::Agent]);
    for _ in 0..3 {
        my_state(&service, &new).await.unwrap();
        my_state(&service, &old).await.unwrap();
    }

    // The old key is retired: after the next background refresh its tokens are refused.
    idp.publish(&[TestKey::Rsa2, TestKey::EcP256]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        my_state(&service, &new).await.unwrap();
        match my_state(&service, &old).await {
            Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(_) => panic!("the retired key still verifies"),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                assert!(status.message().contains("rsa-1"), "{}", status.message());
                break;
            }
        }
    }
    service.stop().await;
}

#[tokio::test]
async fn forged_misaddressed_and_shared_secret_tokens_are_unauthenticated() {
    let idp = FakeIdp::start(&[TestKey::Rsa1]).await;
    let service = start(&idp).await;
    let valid = idp.claims("acme", "ana", &[Role::Agent]);
    let mut wrong_issuer = valid.clone();
    wrong_issuer["iss"] = "https://evil.example.com/realms/dw".into();
    let mut wrong_audience = valid.clone();
    wrong_audience["aud"] = "another-application".into();
    let mut no_tenant = valid.clone();
    no_tenant.as_object_mut().unwrap().remove("tenant");
    let refused = [
        // Signed with a key the provider does not publish, under a published kid.
        (
            TestKey::Rsa2
                .sign_with_header(Header { kid: Some("rsa-1".into()), ..Header::new(Algorithm::RS256) }, &valid),
            "signature",
        ),
        // A kid nobody publishes (after one refresh).
        (TestKey::Rsa2.sign(&valid), "key set"),
        (TestKey::Rsa1.sign(&wrong_issuer), "issuer"),
        (TestKey::Rsa1.sign(&wrong_audience), "audience"),
        (TestKey::Rsa1.sign(&no_tenant), "tenant"),
        // The development secret is not used once a JWKS is configured.
        (dw_testkit::token(SECRET, "acme", "ana", &[Role::Agent]), "algorithm"),
    ];
    for (token, reason) in refused {
        let status = my_state(&service, &token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{reason}: {status:?}");
        assert!(status.message().contains(reason), "{reason}: {}", status.message());
    }

    let no_role = idp.token(TestKey::Rsa1, "acme", "ana", &[]);
    let status = my_state(&service, &no_role).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    service.stop().await;
}
