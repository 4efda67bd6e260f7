//! `ProviderConfigService` against the real service: managers set and read their own tenant's
//! provider accounts; secrets go in, are stored encrypted, and never come out (not in answers,
//! events, snapshots or the idempotency table).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ACCOUNT_SID, PROVIDER_KEY, Setup, authed, rid, sms_account, token, whatsapp_account};
use dw_auth::Role;
use dw_grpc_kit::errors::{reason_of, violated_fields};
use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;
use messaging_templates::app::provider_config::ProviderAccounts;
use messaging_templates::provider_secrets::{ProviderSecretsKey, SecretField};
use prost::Message as _;
use secrecy::ExposeSecret as _;
use sqlx::Row;
use tonic::Code;

const APP_SECRET: &str = "marker-app-secret-4b1d";
const VERIFY: &str = "marker-verify-token-77";
const AUTH_TOKEN: &str = "marker-auth-token-9c3e";

fn set_request(request_id: &str) -> pb::SetProviderConfigRequest {
    pb::SetProviderConfigRequest {
        request_id: request_id.into(),
        whatsapp: Some(whatsapp_account("100000000000001", APP_SECRET, VERIFY)),
        sms: Some(sms_account(ACCOUNT_SID, AUTH_TOKEN)),
        ..Default::default()
    }
}

fn contains_any_secret(bytes: &[u8]) -> Option<&'static str> {
    [APP_SECRET, VERIFY, AUTH_TOKEN]
        .into_iter()
        .find(|secret| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
}

#[tokio::test]
async fn a_manager_sets_and_reads_the_accounts_but_never_a_secret() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let manager = token("acme", "boss", Role::Manager);
    let get = || authed(&manager, pb::GetProviderConfigRequest {});

    let never_set = service.providers().get_provider_config(get()).await.unwrap().into_inner();
    assert_eq!(never_set, pb::ProviderConfig::default(), "version 0, no channel");

    let set = service.providers().set_provider_config(authed(&manager, set_request("set-1"))).await.unwrap();
    let config = set.into_inner();
    let expected_whatsapp = pb::WhatsappProviderStatus {
        phone_number_id: "100000000000001".into(),
        has_app_secret: true,
        has_verify_token: true,
    };
    assert_eq!(config.whatsapp, Some(expected_whatsapp));
    assert_eq!(config.sms, Some(pb::SmsProviderStatus { account_sid: ACCOUNT_SID.into(), has_auth_token: true }));
    assert_eq!((config.version, config.updated_by.as_str()), (1, "boss"));
    assert_eq!(contains_any_secret(&config.encode_to_vec()), None);
    let read = service.providers().get_provider_config(get()).await.unwrap().into_inner();
    assert_eq!(read, config);
    assert_eq!(contains_any_secret(&read.encode_to_vec()), None);

    // A retry answers the first result and changes nothing; the same id with another body is refused.
    let retry = service.providers().set_provider_config(authed(&manager, set_request("set-1"))).await.unwrap();
    assert_eq!(retry.into_inner(), config);
    let mut other = set_request("set-1");
    other.sms = Some(sms_account(ACCOUNT_SID, "another-auth-token"));
    let status = service.providers().set_provider_config(authed(&manager, other)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some("REQUEST_ID_REUSED"));
    assert_eq!(service.providers().get_provider_config(get()).await.unwrap().into_inner().version, 1);

    // Removing a channel keeps the other.
    let remove = pb::SetProviderConfigRequest { request_id: rid(), remove_sms: true, ..Default::default() };
    let removed = service.providers().set_provider_config(authed(&manager, remove)).await.unwrap().into_inner();
    assert_eq!((removed.sms, removed.whatsapp.is_some(), removed.version), (None, true, 2));

    // Another tenant's manager sees only their own tenant's (nothing).
    let globex = token("globex", "boss", Role::Manager);
    let theirs = service.providers().get_provider_config(authed(&globex, pb::GetProviderConfigRequest {})).await;
    assert_eq!(theirs.unwrap().into_inner(), pb::ProviderConfig::default());
    service.stop().await;
}

#[tokio::test]
async fn only_managers_and_only_valid_settings() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    for role in [Role::Agent, Role::Service] {
        let caller = token("acme", "someone", role);
        let status = service.providers().set_provider_config(authed(&caller, set_request(&rid()))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?} sets: {status:?}");
        let get = authed(&caller, pb::GetProviderConfigRequest {});
        let status = service.providers().get_provider_config(get).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?} reads: {status:?}");
    }

    let manager = token("acme", "boss", Role::Manager);
    let bad = pb::SetProviderConfigRequest {
        request_id: rid(),
        whatsapp: Some(whatsapp_account("55-11", "short", VERIFY)),
        sms: Some(sms_account("AC123", &"x".repeat(257))),
        ..Default::default()
    };
    let status = service.providers().set_provider_config(authed(&manager, bad)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        violated_fields(&status),
        ["whatsapp.phone_number_id", "whatsapp.app_secret", "sms.account_sid", "sms.auth_token"]
    );
    assert!(!format!("{status:?}").contains("short"), "a violation does not repeat the secret");
    let nothing = pb::SetProviderConfigRequest { request_id: rid(), ..Default::default() };
    let status = service.providers().set_provider_config(authed(&manager, nothing)).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["whatsapp".to_owned()]));
    let both = pb::SetProviderConfigRequest { remove_whatsapp: true, ..set_request(&rid()) };
    let status = service.providers().set_provider_config(authed(&manager, both)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["remove_whatsapp"]);
    let no_id = pb::SetProviderConfigRequest { request_id: String::new(), ..set_request("") };
    let status = service.providers().set_provider_config(authed(&manager, no_id)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["request_id"]);
    let control = pb::SetProviderConfigRequest {
        request_id: rid(),
        sms: Some(sms_account(ACCOUNT_SID, "tab\there-token")),
        ..Default::default()
    };
    let status = service.providers().set_provider_config(authed(&manager, control)).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["sms.auth_token".to_owned()]));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM provider_configs").fetch_one(&setup.db.pool).await.unwrap();
    assert_eq!(stored, 0, "nothing refused was stored");
    service.stop().await;
}

#[tokio::test]
async fn the_secrets_are_stored_encrypted_and_nowhere_in_plaintext() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    let manager = token("acme", "boss", Role::Manager);
    service.providers().set_provider_config(authed(&manager, set_request(&rid()))).await.unwrap();

    let row = sqlx::query(
        "SELECT whatsapp_phone_number_id, whatsapp_app_secret, whatsapp_verify_token, sms_account_sid, sms_auth_token \
         FROM provider_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&setup.db.pool)
    .await
    .unwrap();
    let (phone_number_id, sid): (String, String) = (row.get("whatsapp_phone_number_id"), row.get("sms_account_sid"));
    assert_eq!((phone_number_id.as_str(), sid.as_str()), ("100000000000001", ACCOUNT_SID));
    let key = ProviderSecretsKey::from_bytes(&PROVIDER_KEY);
    let acme = TenantId::parse("acme").unwrap();
    for (column, field, secret) in [
        ("whatsapp_app_secret", SecretField::WhatsappAppSecret, APP_SECRET),
        ("whatsapp_verify_token", SecretField::WhatsappVerifyToken, VERIFY),
        ("sms_auth_token", SecretField::SmsAuthToken, AUTH_TOKEN),
    ] {
        let sealed: Vec<u8> = row.get(column);
        assert_eq!(contains_any_secret(&sealed), None, "{column} is not plaintext");
        assert_eq!(sealed.len(), 1 + 12 + secret.len() + 16, "{column}: format byte, nonce, ciphertext, tag");
        // It is the secret, under the deployment key, for this tenant and this field only.
        assert_eq!(key.open(&acme, field, &sealed).unwrap().expose_secret(), secret);
        assert!(key.open(&TenantId::parse("globex").unwrap(), field, &sealed).is_err());
    }

    // Nowhere else in the database either: every table's every row, as text.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(&setup.db.pool)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "idempotency_keys") && tables.iter().any(|t| t == "events"));
    for table in tables {
        // The table names come from the catalog, quoted.
        let dump: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM \"{table}\" t")))
            .fetch_all(&setup.db.pool)
            .await
            .unwrap();
        for row in dump {
            // bytea is printed as hex: look for the hex of each secret too.
            for secret in [APP_SECRET, VERIFY, AUTH_TOKEN] {
                let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
                assert!(!row.contains(secret) && !row.contains(&hex), "{table} holds a secret: {row}");
            }
        }
    }

    // The event says what changed, without a secret.
    let payload: Vec<u8> = sqlx::query_scalar("SELECT payload FROM events WHERE stream_id = 'providers:acme'")
        .fetch_one(&setup.db.pool)
        .await
        .unwrap();
    let event = pb::ProviderConfigChanged::decode(payload.as_slice()).unwrap();
    assert!(event.whatsapp_secrets_replaced && event.sms_secrets_replaced);
    assert_eq!((event.changed_by.as_str(), event.config.unwrap().version), ("boss", 1));
    service.stop().await;
}

/// Another replica (a second `ProviderAccounts` on the same database) keeps verifying with what it
/// read until its cache expires, then with the change: the bound a rotation takes everywhere.
#[tokio::test]
async fn another_replica_takes_a_change_within_its_cache_time() {
    let setup = Setup::new().await;
    let service = setup.start(false).await;
    // Long enough that the change below lands before it expires, even on a busy machine.
    let ttl = std::time::Duration::from_secs(2);
    let other_replica =
        ProviderAccounts::new(setup.db.pool.clone(), ProviderSecretsKey::from_bytes(&PROVIDER_KEY)).with_cache_ttl(ttl);
    let acme = TenantId::parse("acme").unwrap();
    let app_secret = |accounts: &ProviderAccounts| {
        let accounts = accounts.clone();
        let acme = acme.clone();
        async move {
            let read = accounts.accounts(&acme).await.unwrap();
            read.whatsapp.as_ref().map(|w| w.app_secret.secret().expose_secret().to_owned())
        }
    };
    assert_eq!(app_secret(&other_replica).await, None, "not configured yet (and cached so)");
    let manager = token("acme", "boss", Role::Manager);
    service.providers().set_provider_config(authed(&manager, set_request(&rid()))).await.unwrap();
    assert_eq!(app_secret(&other_replica).await, None, "still what it read");
    tokio::time::sleep(ttl).await;
    assert_eq!(app_secret(&other_replica).await.as_deref(), Some(APP_SECRET), "read again after its cache time");

    let mut rotated = set_request(&rid());
    rotated.whatsapp = Some(whatsapp_account("100000000000001", "marker-rotated-secret", VERIFY));
    service.providers().set_provider_config(authed(&manager, rotated)).await.unwrap();
    assert_eq!(app_secret(&other_replica).await.as_deref(), Some(APP_SECRET));
    tokio::time::sleep(ttl).await;
    assert_eq!(app_secret(&other_replica).await.as_deref(), Some("marker-rotated-secret"));
    service.stop().await;
}
