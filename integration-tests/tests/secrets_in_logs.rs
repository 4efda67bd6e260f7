//! No secret reaches a log: every service binary logs its whole configuration at start-up, so
//! each is started with marked secrets (from the environment and from `*_FILE` files) and its
//! output is searched for them. The binaries also answer `--help` and `--version`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use dw_testkit::TestDb;
use integration_tests::binary;

const SERVICES: [&str; 4] = ["agent-sessions", "task-distribution", "messaging-templates", "notifications"];

#[tokio::test]
async fn start_up_logs_show_the_configuration_but_no_secret() {
    let token_file = std::env::temp_dir().join(format!("dw-secret-{}", uuid::Uuid::now_v7()));
    std::fs::write(&token_file, "marker-sms-token-from-file\n").unwrap();
    let secrets = [
        ("DW_JWT_SECRET", "marker-jwt-secret-0123456789"),
        ("DW_WHATSAPP_ACCESS_TOKEN", "marker-whatsapp-access-token"),
        // base64 of "marker-provider-secrets-key-32b!" (32 bytes).
        ("DW_PROVIDER_SECRETS_KEY", "bWFya2VyLXByb3ZpZGVyLXNlY3JldHMta2V5LTMyYiE="),
    ];
    for service in SERVICES {
        // An empty database of its own: `migrate` applies the service's migrations.
        let db = TestDb::create(&sqlx::migrate::Migrator::DEFAULT).await.unwrap();
        // Trust authentication ignores the password, so it can be a marker too.
        let url_with_password = db.url.replacen("postgres://postgres@", "postgres://postgres:marker-db-password@", 1);
        assert_ne!(url_with_password, db.url, "the test database URL has the expected shape: {}", db.url);
        let output = Command::new(binary(service).unwrap())
            .arg("migrate")
            .env("DATABASE_URL", &url_with_password)
            .envs(secrets)
            .env("DW_SMS_AUTH_TOKEN_FILE", &token_file)
            .env("RUST_LOG", "info")
            .env("DW_LOG_FORMAT", "json")
            .output()
            .unwrap();
        let logs = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{service} migrate failed: {logs}");
        assert!(logs.contains("starting"), "{service} logs its configuration at start-up: {logs}");
        assert!(logs.contains("database_url"), "{service}: the configuration is in the start-up log: {logs}");
        for marker in
            secrets.iter().map(|(_, value)| *value).chain(["marker-db-password", "marker-sms-token-from-file"])
        {
            assert!(!logs.contains(marker), "{service} logged a secret ({marker}): {logs}");
        }
    }
    std::fs::remove_file(&token_file).ok();
}

/// messaging-templates encrypts the tenants' provider secrets under DW_PROVIDER_SECRETS_KEY:
/// without one (or with one that is not 32 bytes) it does not start, and says why without
/// repeating the value; from a file (`_FILE`) it does.
#[tokio::test]
async fn messaging_templates_needs_a_32_byte_provider_secrets_key() {
    let db = TestDb::create(&sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    let migrate = |key: Option<(&str, &str)>| {
        let mut command = Command::new(binary("messaging-templates").unwrap());
        command
            .arg("migrate")
            .env("DATABASE_URL", &db.url)
            .env("DW_JWT_SECRET", "marker-jwt-secret-0123456789")
            .env_remove("DW_PROVIDER_SECRETS_KEY")
            .env_remove("DW_PROVIDER_SECRETS_KEY_FILE")
            .env("DW_LOG_FORMAT", "json");
        if let Some((name, value)) = key {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    };
    let (started, text) = migrate(None);
    assert!(!started && text.contains("DW_PROVIDER_SECRETS_KEY is required"), "{text}");
    // 16 bytes ("short-key-16byte"), and text that is no base64.
    for short in ["c2hvcnQta2V5LTE2Ynl0ZQ==", "dw-local-provider-key"] {
        let (started, text) = migrate(Some(("DW_PROVIDER_SECRETS_KEY", short)));
        assert!(!started && text.contains("base64 of 32"), "{text}");
        assert!(!text.contains(short), "the refusal repeats the key: {text}");
    }
    let key_file = std::env::temp_dir().join(format!("dw-provider-key-{}", uuid::Uuid::now_v7()));
    std::fs::write(&key_file, "bWFya2VyLXByb3ZpZGVyLXNlY3JldHMta2V5LTMyYiE=\n").unwrap();
    let (started, text) = migrate(Some(("DW_PROVIDER_SECRETS_KEY_FILE", key_file.to_str().unwrap())));
    std::fs::remove_file(&key_file).ok();
    assert!(started, "{text}");
}

#[test]
fn every_binary_answers_help_and_version() {
    for service in SERVICES {
        let help = Command::new(binary(service).unwrap()).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(help.status.success(), "{service} --help");
        for subcommand in ["serve", "migrate", "dead-letters"] {
            assert!(text.contains(subcommand), "{service} --help lists {subcommand}: {text}");
        }
        let version = Command::new(binary(service).unwrap()).arg("--version").output().unwrap();
        assert!(version.status.success());
        assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    }
}

/// notifications reads its VAPID key from a file (`DW_VAPID_PRIVATE_KEY_FILE`) like every other
/// secret: a file holding no usable key stops it with the variable named and the value unsaid; a
/// file holding a key starts it.
#[tokio::test]
async fn notifications_reads_its_vapid_key_from_a_file() {
    use base64::Engine as _;
    let db = TestDb::create(&sqlx::migrate::Migrator::DEFAULT).await.unwrap();
    let dir = std::env::temp_dir().join(format!("dw-vapid-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let migrate = |key: &str| {
        let file = dir.join("vapid.key");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        let output = Command::new(binary("notifications").unwrap())
            .arg("migrate")
            .env("DATABASE_URL", &db.url)
            .env_remove("DW_VAPID_PRIVATE_KEY")
            .env("DW_VAPID_PRIVATE_KEY_FILE", &file)
            .env("DW_LOG_FORMAT", "json")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success(), text)
    };
    let (started, logs) = migrate("marker-vapid-not-a-key");
    assert!(!started, "a file without a usable key stops the service: {logs}");
    assert!(logs.contains("DW_VAPID_PRIVATE_KEY"), "the variable is named: {logs}");
    assert!(!logs.contains("marker-vapid-not-a-key"), "the value is not repeated: {logs}");
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let (started, logs) = migrate(&key);
    assert!(started, "a key from the file starts it: {logs}");
    assert!(!logs.contains(&key), "the key is not logged: {logs}");
    let _ = std::fs::remove_dir_all(&dir);
}
