//! `agent-sessions projections rebuild read-models` through the real binary: read models damaged
//! on purpose come back as the event store says, for one tenant or all, while reads keep
//! answering (never half-built) and commands keep landing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{SECRET, TestService, authed, rid, token};
use dw_auth::Role;
use dw_grpc_kit::fair_share::FairShareConfig;
use dw_proto::agentsessions::v1 as pb;
use sqlx::Row;

const TABLES: [&str; 8] = [
    "tenant_settings",
    "agents",
    "agent_departments",
    "agent_permissions",
    "agent_status",
    "service_days",
    "service_day_breaks",
    "service_day_exits",
];

/// Every read-model row as JSON text per table, sorted (without `updated_at`, which is the time
/// of the write).
async fn dump(url: &str) -> BTreeMap<&'static str, Vec<String>> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut tables = BTreeMap::new();
    for table in TABLES {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT (to_jsonb(t) - 'updated_at')::text AS row FROM {table} t ORDER BY 1"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        tables.insert(table, rows.iter().map(|r| r.get::<String, _>("row")).collect());
    }
    pool.close().await;
    tables
}

/// The dump without the rows of agents whose id starts with `late-` or of `tenant`.
fn without(dump: &BTreeMap<&'static str, Vec<String>>, needle: &str) -> BTreeMap<&'static str, Vec<String>> {
    dump.iter().map(|(t, rows)| (*t, rows.iter().filter(|r| !r.contains(needle)).cloned().collect())).collect()
}

/// Equal dumps, or a failure naming the rows only one side has.
fn assert_same(actual: &BTreeMap<&'static str, Vec<String>>, expected: &BTreeMap<&'static str, Vec<String>>) {
    for (table, rows) in expected {
        let got = &actual[table];
        let missing: Vec<&String> = rows.iter().filter(|r| !got.contains(r)).collect();
        let extra: Vec<&String> = got.iter().filter(|r| !rows.contains(r)).collect();
        assert!(missing.is_empty() && extra.is_empty(), "{table}: missing {missing:#?}\nextra {extra:#?}");
    }
}

/// A day for each agent: some on a break, some back from one, some ended.
async fn work_a_day(service: &TestService, tenant: &str, agents: &[String]) {
    let mut day = service.day();
    for (i, agent) in agents.iter().enumerate() {
        let agent_token = token(tenant, agent, &[Role::Agent]);
        let start = pb::StartServiceDayRequest { request_id: rid() };
        day.start_service_day(authed(&agent_token, start)).await.unwrap();
        if i % 2 == 0 {
            let pause = pb::StartBreakRequest { request_id: rid(), reason_id: "lunch".into() };
            day.start_break(authed(&agent_token, pause)).await.unwrap();
        }
        if i % 4 == 0 {
            let back = pb::EndBreakRequest { request_id: rid(), confirm: true };
            day.end_break(authed(&agent_token, back)).await.unwrap();
        }
        if i % 5 == 0 {
            let end = pb::EndServiceDayRequest { request_id: rid() };
            day.end_service_day(authed(&agent_token, end)).await.unwrap();
        }
    }
}

/// Damages every kind of row of `tenant`.
async fn corrupt(url: &str, tenant: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    for sql in [
        "UPDATE agents SET display_name = 'corrupted' WHERE tenant_id = $1",
        "UPDATE agent_status SET status = 'off', reason_id = NULL WHERE tenant_id = $1",
        "DELETE FROM service_day_breaks WHERE tenant_id = $1",
        "DELETE FROM agent_departments WHERE tenant_id = $1",
        "UPDATE tenant_settings SET ticket_workspace_url = 'https://evil.example' WHERE tenant_id = $1",
    ] {
        sqlx::query(sql).bind(tenant).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

/// Runs `agent-sessions projections <args>` on the test's database: (success, stdout, stderr).
async fn projections(service: &TestService, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-sessions"))
        .arg("projections")
        .args(args)
        .env("DW_JWT_SECRET", SECRET)
        .env("DATABASE_URL", &service.db.url)
        .env("NATS_URL", dw_testkit::nats_url())
        .env("DW_STREAM_NAME", &service.namespace.stream_name)
        .env("DW_SUBJECT_PREFIX", &service.namespace.subject_prefix)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damaged_read_models_are_rebuilt_from_the_store_while_reads_and_commands_go_on() {
    let service = TestService::start_with(|config| config.fair_share = FairShareConfig::unlimited()).await;
    let url = service.db.url.clone();
    let acme: Vec<String> = (0..24).map(|i| format!("agent-{i:02}")).collect();
    let late: Vec<String> = (0..6).map(|i| format!("late-{i}")).collect();
    let globex: Vec<String> = (0..8).map(|i| format!("g-{i}")).collect();
    let everyone: Vec<&str> = acme.iter().chain(&late).map(String::as_str).collect();
    service.seed("acme", &everyone, false).await;
    service.seed("globex", &globex.iter().map(String::as_str).collect::<Vec<_>>(), false).await;
    work_a_day(&service, "acme", &acme).await;
    work_a_day(&service, "globex", &globex).await;
    let healthy = dump(&url).await;
    assert!(healthy["service_day_breaks"].len() >= 12, "the day left breaks to damage: {healthy:?}");

    // The list names the read model and its tables; bad names are refused.
    let (ok, listed, _) = projections(&service, &["list"]).await;
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed["name"], "read-models");
    assert_eq!(listed["tables"].as_array().unwrap().len(), TABLES.len());
    let (ok, _, err) = projections(&service, &["rebuild", "nope"]).await;
    assert!(!ok && err.contains("read-models"), "{err}");
    let (ok, _, err) = projections(&service, &["rebuild", "read-models", "--tenant", "Not A Tenant"]).await;
    assert!(!ok && err.contains("--tenant"), "{err}");

    // One tenant: only its rows come back; the other's damage stays.
    corrupt(&url, "acme").await;
    corrupt(&url, "globex").await;
    let (ok, out, err) = projections(&service, &["rebuild", "read-models", "--tenant", "acme"]).await;
    assert!(ok, "{err}");
    let rebuilt: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(rebuilt["tenant"], "acme");
    assert!(rebuilt["events"].as_u64().unwrap() > 0, "{rebuilt}");
    let after_acme = dump(&url).await;
    assert_same(&without(&after_acme, "\"globex\""), &without(&healthy, "\"globex\""));
    assert_ne!(after_acme, healthy, "globex is still damaged");

    // All tenants, while managers read the statuses and late agents start their days.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let mut admin = service.admin();
        let manager = token("globex", "manager-1", &[Role::Manager]);
        tokio::spawn(async move {
            let (mut reads, mut damaged, mut mixed) = (0, 0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let request = pb::ListAgentStatusesRequest { page_size: 500, ..Default::default() };
                let statuses = admin.list_agent_statuses(authed(&manager, request)).await.unwrap().into_inner();
                let corrupted = statuses.agents.iter().filter(|a| a.display_name == "corrupted").count();
                match corrupted {
                    0 => {}
                    n if n == statuses.agents.len() => damaged += 1,
                    n => mixed.push(n),
                }
                reads += 1;
            }
            (reads, damaged, mixed)
        })
    };
    let commands = {
        let mut day = service.day();
        let late = late.clone();
        tokio::spawn(async move {
            for agent in &late {
                let agent_token = token("acme", agent, &[Role::Agent]);
                let start = pb::StartServiceDayRequest { request_id: rid() };
                day.start_service_day(authed(&agent_token, start)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let (ok, out, err) = projections(&service, &["rebuild", "read-models"]).await;
    assert!(ok, "{err}");
    commands.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let (reads, damaged, mixed) = reader.await.unwrap();
    assert!(reads > 0);
    assert!(mixed.is_empty(), "a read saw a half-built table: {mixed:?} damaged rows");
    let rebuilt: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(rebuilt["tenant"].is_null());
    assert!(rebuilt["rows"].as_i64().unwrap() > 0);
    eprintln!("rebuilt: {rebuilt}; {reads} reads during it ({damaged} before the swap)");

    let after = dump(&url).await;
    assert_same(&without(&after, "\"late-"), &without(&healthy, "\"late-"));
    for agent in &late {
        let needle = format!("\"agent_id\": \"{agent}\"");
        assert_eq!(after["service_days"].iter().filter(|r| r.contains(&needle)).count(), 1, "{agent}'s day");
        assert!(
            after["agent_status"].iter().any(|r| r.contains(&needle) && r.contains("\"status\": \"working\"")),
            "{agent} is working"
        );
    }
    // The list shows the latest rebuild's outcome.
    let (ok, listed, _) = projections(&service, &["list"]).await;
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    let last = &listed["last_rebuild"];
    assert_eq!(last["outcome"], "done", "{listed}");
    assert!(last["tenant"].is_null() && last["running"] == false, "{listed}");
    assert_eq!(last["events"], rebuilt["events"], "{listed}");
    // No shadow copy is left behind.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'dw_rebuild_%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    pool.close().await;
    service.stop().await;
}

/// The batched model applying each lane's events in chunks of `.0` (1: every event a batch of its
/// own, on top of what the previous ones wrote).
struct Chunked(usize);

static BATCHED: agent_sessions::projections::rebuild::ReadModels = agent_sessions::projections::rebuild::ReadModels;

impl dw_eventstore::rebuild::ReadModel for Chunked {
    fn name(&self) -> &'static str {
        BATCHED.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        BATCHED.tables()
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut sqlx::PgConnection,
        event: &'a dw_eventstore::RecordedEvent,
    ) -> dw_eventstore::rebuild::ApplyFuture<'a> {
        BATCHED.apply(conn, event)
    }

    fn lane_key(&self, event: &dw_eventstore::RecordedEvent) -> Option<String> {
        BATCHED.lane_key(event)
    }

    fn apply_batch<'a>(
        &'a self,
        conn: &'a mut sqlx::PgConnection,
        events: &'a [&'a dw_eventstore::RecordedEvent],
    ) -> Option<dw_eventstore::rebuild::ApplyFuture<'a>> {
        Some(Box::pin(async move {
            for chunk in events.chunks(self.0) {
                BATCHED.apply_batch(&mut *conn, chunk).expect("batched").await?;
            }
            Ok(())
        }))
    }
}

#[tokio::test]
async fn the_batched_rebuild_leaves_what_the_commands_wrote_with_every_kind_of_event() {
    use agent_sessions::projections::rebuild::{ReadModels, ReadModelsOneByOne};
    use dw_eventstore::rebuild::{ReadModel, rebuild};
    let service = TestService::start_with(|config| config.fair_share = FairShareConfig::unlimited()).await;
    let url = service.db.url.clone();
    let agents: Vec<String> = (0..6).map(|i| format!("agent-{i}")).collect();
    // Automatic distribution on: exits are offered.
    service.seed("acme", &agents.iter().map(String::as_str).collect::<Vec<_>>(), true).await;
    let manager = token("acme", "manager-1", &[Role::Manager]);
    let mut admin = service.admin();
    let mut day = service.day();
    for (i, agent) in agents.iter().enumerate() {
        // Memberships added, some removed, some of those added again.
        let link = |department: &str| pb::LinkDepartmentRequest {
            request_id: rid(),
            agent_id: agent.clone(),
            department_id: department.into(),
        };
        admin.link_department(authed(&manager, link("sales"))).await.unwrap();
        if i % 2 == 0 {
            let unlink = pb::UnlinkDepartmentRequest {
                request_id: rid(),
                agent_id: agent.clone(),
                department_id: "sales".into(),
            };
            admin.unlink_department(authed(&manager, unlink)).await.unwrap();
        }
        if i % 4 == 0 {
            admin.link_department(authed(&manager, link("sales"))).await.unwrap();
        }
        let grant = || pb::GrantPermissionRequest {
            request_id: rid(),
            agent_id: agent.clone(),
            permission: "protocols.search".into(),
        };
        admin.grant_permission(authed(&manager, grant())).await.unwrap();
        if i % 2 == 1 {
            let revoke = pb::RevokePermissionRequest {
                request_id: rid(),
                agent_id: agent.clone(),
                permission: "protocols.search".into(),
            };
            admin.revoke_permission(authed(&manager, revoke)).await.unwrap();
            admin.grant_permission(authed(&manager, grant())).await.unwrap();
        }

        // A day with exits notified, cancelled and closed by a break, breaks, and for some an end
        // and a second day.
        let agent_token = token("acme", agent, &[Role::Agent]);
        day.start_service_day(authed(&agent_token, pb::StartServiceDayRequest { request_id: rid() })).await.unwrap();
        let exit = || pb::NotifyExitRequest { request_id: rid(), reason_id: "meeting".into() };
        let pause = || pb::StartBreakRequest { request_id: rid(), reason_id: "lunch".into() };
        let back = || pb::EndBreakRequest { request_id: rid(), confirm: true };
        day.notify_exit(authed(&agent_token, exit())).await.unwrap();
        day.cancel_exit(authed(&agent_token, pb::CancelExitRequest { request_id: rid() })).await.unwrap();
        for _ in 0..=i % 3 {
            day.start_break(authed(&agent_token, pause())).await.unwrap();
            day.end_break(authed(&agent_token, back())).await.unwrap();
        }
        day.notify_exit(authed(&agent_token, exit())).await.unwrap();
        if i % 2 == 0 {
            day.start_break(authed(&agent_token, pause())).await.unwrap();
        }
        if i % 3 == 1 {
            day.end_service_day(authed(&agent_token, pb::EndServiceDayRequest { request_id: rid() })).await.unwrap();
            let start = pb::StartServiceDayRequest { request_id: rid() };
            day.start_service_day(authed(&agent_token, start)).await.unwrap();
        }
    }
    let healthy = dump(&url).await;
    assert!(healthy["service_day_exits"].len() >= 12 && healthy["agent_permissions"].len() == 6, "{healthy:?}");

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let models: [(&str, &dyn ReadModel, usize); 5] = [
        ("one by one", &ReadModelsOneByOne, 4),
        ("batched, 4 lanes", &ReadModels, 4),
        ("batched, 1 lane", &ReadModels, 1),
        ("batches of 1", &Chunked(1), 2),
        ("batches of 3", &Chunked(3), 1),
    ];
    for (what, model, lanes) in models {
        corrupt(&url, "acme").await;
        sqlx::query("DELETE FROM service_day_exits").execute(&pool).await.unwrap();
        sqlx::query("DELETE FROM agent_permissions").execute(&pool).await.unwrap();
        assert_ne!(dump(&url).await, healthy);
        rebuild(&pool, model, None, lanes, |_| {}).await.unwrap();
        let rebuilt = dump(&url).await;
        eprintln!("{what}");
        assert_same(&rebuilt, &healthy);
    }
    pool.close().await;
    service.stop().await;
}

/// A read holding one table while the rebuild swaps does not make the swap hold the others: a
/// read that then asks for another table gets it (the swap takes all its locks at once or none),
/// so the two can never deadlock and cost the reader its RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swap_waiting_for_one_table_holds_none_of_the_others() {
    use sqlx::Connection;
    let service = TestService::start_with(|config| config.fair_share = FairShareConfig::unlimited()).await;
    let agents: Vec<String> = (0..4).map(|i| format!("agent-{i:02}")).collect();
    service.seed("acme", &agents.iter().map(String::as_str).collect::<Vec<_>>(), false).await;
    work_a_day(&service, "acme", &agents).await;
    let url = service.db.url.clone();

    // A long read: its transaction holds agent_status until it commits.
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM agent_status").execute(&mut *held).await.unwrap();

    let rebuild = projections(&service, &["rebuild", "read-models"]);
    let reads = async {
        let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
        // The swap has begun taking its locks.
        let mut swapping = false;
        for _ in 0..600 {
            let locking: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LOCK TABLE%'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if locking > 0 {
                swapping = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(swapping, "the rebuild never reached its swap");
        // Meanwhile the other tables stay readable, and so does a second table in the long read.
        sqlx::query("SET lock_timeout = '500ms'").execute(&mut watcher).await.unwrap();
        for _ in 0..5 {
            for table in ["agents", "agent_departments", "tenant_settings", "service_days"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .execute(&mut watcher)
                    .await
                    .unwrap_or_else(|e| panic!("{table} was held while the swap waited: {e}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sqlx::query("SET LOCAL lock_timeout = '500ms'").execute(&mut *held).await.unwrap();
        sqlx::query("SELECT count(*) FROM agents").execute(&mut *held).await.expect("the long read's next table");
        held.commit().await.unwrap();
    };
    let ((ok, _, err), ()) = tokio::join!(rebuild, reads);
    assert!(ok, "the swap went through once the read ended: {err}");
}

/// A swap that found no free moment and queues for its tables never makes a read its deadlock
/// victim: a read that holds one table and then asks for another the queued swap took gets it,
/// because the swap lets go of all of them before the read's deadlock check runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_meeting_a_queued_swap_is_never_aborted_as_a_deadlock() {
    use sqlx::Connection;
    let service = TestService::start_with(|config| config.fair_share = FairShareConfig::unlimited()).await;
    let agents: Vec<String> = (0..4).map(|i| format!("agent-{i:02}")).collect();
    service.seed("acme", &agents.iter().map(String::as_str).collect::<Vec<_>>(), false).await;
    work_a_day(&service, "acme", &agents).await;
    let url = service.db.url.clone();

    // A long read holds agent_status (the last table the swap locks) until it commits.
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM agent_status").execute(&mut *held).await.unwrap();

    let rebuild = projections(&service, &["rebuild", "read-models"]);
    let reads = async {
        let mut watcher = sqlx::PgConnection::connect(&url).await.unwrap();
        // The swap gave up taking its locks at once and queues for them.
        let mut queued = false;
        for _ in 0..1200 {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND query LIKE 'LOCK TABLE%' AND query NOT LIKE '%NOWAIT' AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watcher)
            .await
            .unwrap();
            if waiting > 0 {
                queued = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(queued, "the swap never queued for its locks");
        // Past the swap's own deadlock check (Postgres' deadlock_timeout, 1 s, after it began to
        // wait): a cycle closed now is found by the read's check, and the read would be aborted.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Longer than deadlock_timeout, so a cycle would be found and broken.
        sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *held).await.unwrap();
        for table in ["agents", "tenant_settings", "agent_departments", "service_days"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .execute(&mut *held)
                .await
                .unwrap_or_else(|e| panic!("the long read's next table {table}: {e}"));
        }
        held.commit().await.unwrap();
    };
    let ((ok, _, err), ()) = tokio::join!(rebuild, reads);
    assert!(ok, "the swap went through once the read ended: {err}");
}
