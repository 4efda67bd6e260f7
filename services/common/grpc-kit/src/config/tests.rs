//! The environment parsing of the shared configuration: units, NATS secrets, redaction.

use super::{
    ConfigError, NatsAuth, connection_age, nats_credentials, nats_nkey, parse_age, parse_bytes, redact_url,
    stream_heartbeat,
};
use secrecy::SecretString;
use std::time::Duration;

#[test]
fn stream_ages_and_sizes_take_units_and_zero_is_no_limit() {
    assert_eq!(parse_age("0"), Ok(Duration::ZERO));
    assert_eq!(parse_age("3600"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
    assert!(parse_age("30 days").is_err() && parse_age("").is_err() && parse_age("-1").is_err());
    assert_eq!(parse_bytes("0"), Ok(None));
    assert_eq!(parse_bytes("4GiB"), Ok(Some(4 << 30)));
    assert_eq!(parse_bytes("1048576"), Ok(Some(1 << 20)));
    assert!(parse_bytes("4GB").is_err() && parse_bytes("lots").is_err());
}

#[test]
fn nats_secrets_are_checked_when_read_and_never_printed() {
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().unwrap();
    let auth = nats_nkey(SecretString::from(format!("{seed}\n"))).unwrap();
    let NatsAuth::Nkey { public_key, .. } = &auth else { panic!("{auth:?}") };
    assert_eq!(public_key, &pair.public_key());
    let printed = format!("{auth:?}");
    assert!(!printed.contains(&seed) && printed.contains(&pair.public_key()), "{printed}");
    assert!(nats_nkey(SecretString::from("SUnotaseed".to_owned())).is_err());

    let dir = std::env::temp_dir().join(format!("dw-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("user.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.c2ln\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        ),
    )
    .unwrap();
    let auth = nats_credentials(&creds).unwrap();
    let printed = format!("{auth:?}");
    assert!(!printed.contains(&seed) && !printed.contains("eyJhbGci"), "{printed}");
    std::fs::write(&creds, "not a creds file").unwrap();
    assert!(nats_credentials(&creds).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(redact_url("postgres://u:secret@host/db"), "postgres://u:***@host/db");
    assert_eq!(redact_url("postgres://u@host/db"), "postgres://u@host/db");
    assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
}

#[test]
fn a_max_connection_age_of_zero_turns_the_limit_off() {
    assert_eq!(connection_age(0, 0).unwrap(), None);
    let limit = connection_age(300, 30).unwrap().unwrap();
    assert_eq!((limit.max_age, limit.grace), (Duration::from_secs(300), Duration::from_secs(30)));
}

#[test]
fn a_grace_shorter_than_the_rpc_timeout_is_refused() {
    assert!(matches!(connection_age(300, 5), Err(ConfigError::Invalid { .. })));
}

#[test]
fn the_stream_heartbeat_stays_within_its_range() {
    assert_eq!(stream_heartbeat(15).unwrap(), Duration::from_secs(15));
    assert_eq!(stream_heartbeat(1).unwrap(), Duration::from_secs(1));
    for refused in [0, 301, 3600] {
        let Err(ConfigError::Invalid { name, reason }) = stream_heartbeat(refused) else { panic!("{refused}") };
        assert_eq!(name, "DW_STREAM_HEARTBEAT_SECS");
        assert!(reason.contains("between 1 and 300"), "{reason}");
    }
}

#[test]
fn an_event_log_url_needs_a_readable_service_token() {
    let mut upstream = super::Upstream::new("DW_AGENT_SESSIONS", "dw.agentsessions");
    assert!(matches!(upstream.backfill(), Ok(None)), "no URL: no backfill");
    upstream.event_log_url = Some("http://agent-sessions:50051".into());
    assert!(matches!(upstream.backfill(), Err(ConfigError::Missing(_))), "a URL without a token file");
    upstream.service_token_file = Some("/nonexistent/dw-service.token".into());
    let Err(ConfigError::Invalid { name, .. }) = upstream.backfill() else { panic!("an unreadable token file") };
    assert_eq!(name, "DW_SERVICE_TOKEN_FILE");
}
