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
        ("DW_WHATSAPP_APP_SECRET", "marker-whatsapp-app-secret"),
        ("DW_WHATSAPP_VERIFY_TOKEN", "marker-whatsapp-verify-token"),
        ("DW_SMS_WEBHOOK_SECRET", "marker-sms-webhook-secret"),
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
