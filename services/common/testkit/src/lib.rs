//! Test support: each test gets its own randomly named Postgres database (migrated) and its own
//! JetStream stream/subject namespace, against the real servers (`DW_TEST_DATABASE_URL`,
//! `DW_TEST_NATS_URL`; local defaults). `make test` drops leftover `dwtest_*` databases first.
//! [`metrics`] reads a running service's `/metrics`; [`idp`] is a fake OpenID Connect provider.

pub mod bench;
pub mod idp;
pub mod metrics;
pub mod rpc;

pub use rpc::{authed, rid, token};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::str::FromStr;

pub fn admin_database_url() -> String {
    std::env::var("DW_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn nats_url() -> String {
    std::env::var("DW_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A short random token, unique per call: for database names, stream names and subject prefixes.
pub fn unique_suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// A fresh database, migrated with the given migrator.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    pub name: String,
}

impl TestDb {
    pub async fn create(migrator: &Migrator) -> anyhow::Result<Self> {
        let admin_url = admin_database_url();
        let name = format!("dwtest_{}", unique_suffix());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
        admin.close().await?;
        let options = PgConnectOptions::from_str(&admin_url)?.database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new().max_connections(20).connect_with(options).await?;
        migrator.run(&pool).await?;
        Ok(Self { pool, url, name })
    }
}

/// A unique JetStream namespace: stream name and subject prefix no other test shares.
#[derive(Debug, Clone)]
pub struct TestNamespace {
    pub stream_name: String,
    pub subject_prefix: String,
}

impl TestNamespace {
    pub fn new(label: &str) -> Self {
        let suffix = unique_suffix();
        Self {
            stream_name: format!("TEST_{}_{}", label.to_uppercase().replace(['-', '.'], "_"), suffix),
            subject_prefix: format!("test.{label}.{suffix}"),
        }
    }
}

pub async fn connect_nats() -> anyhow::Result<async_nats::Client> {
    Ok(async_nats::connect(nats_url()).await?)
}

/// A real IANA zone whose calendar date differs from UTC's at `now` (UTC+14 from 10:00 UTC,
/// UTC−11 before): a test that creates something now in a tenant of that zone sees the local
/// date, and code that still used UTC's date would fail it at any hour of the run.
pub fn zone_with_another_date_than_utc(now: chrono::DateTime<chrono::Utc>) -> &'static str {
    use chrono::Timelike;
    if now.hour() >= 11 { "Pacific/Kiritimati" } else { "Pacific/Pago_Pago" }
}

/// Gives this test process what a service binary has: spans with W3C trace ids (nothing is
/// exported), so that the requests a service makes in the test carry a `traceparent`. Idempotent.
pub fn traced() {
    static TELEMETRY: std::sync::OnceLock<Option<dw_telemetry::TelemetryGuard>> = std::sync::OnceLock::new();
    TELEMETRY.get_or_init(|| dw_telemetry::init_spans_only("test").ok());
}

/// Whether `value` is a W3C `traceparent` of a sampled trace (`00-<trace id>-<span id>-01`);
/// the span id when it is.
pub fn traceparent_span_id(value: &str) -> Option<&str> {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        ["00", trace, span, "01"] if hex(trace, 32) && hex(span, 16) => Some(*span),
        _ => None,
    }
}

/// A free port on 127.0.0.1 for a process (or server) the test starts and that binds it itself.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`, 32768–60999 by default):
/// a port from that range can be taken, between this call and the bind of the process it is
/// for, as the local port of one of the many outgoing connections the tests open meanwhile,
/// and that process then dies at its bind. Never the same port twice in one test process.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const LOWEST: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next().and_then(|low| low.parse::<u32>().ok()))
        .unwrap_or(32_768);
    if ephemeral_low > LOWEST + 1_000 {
        let span = ephemeral_low - LOWEST;
        // Test processes running side by side start at different places.
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let step = NEXT.fetch_add(1, Ordering::Relaxed);
            let Ok(port) = u16::try_from(LOWEST + (start + step.wrapping_mul(97)) % span) else { continue };
            let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if given.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
