//! The operators' `dead-letters` subcommand of a service binary (here notifications): list the
//! events a consumer gave up on, replay one through the service's projection once the cause is
//! fixed, and refuse to replay it twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use dw_proto::distribution::v1 as distribution;
use dw_testkit::TestDb;
use integration_tests::binary;
use prost::Message as _;

fn dead_letters(db: &TestDb, args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    let output = Command::new(binary("notifications").unwrap())
        .arg("dead-letters")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("DW_JWT_SECRET", "dead-letters-test-secret-0123456789")
        .env("RUST_LOG", "warn")
        .env("DW_LOG_FORMAT", "json")
        .output()
        .unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|value| value.get("id").is_some())
        .collect();
    (output.status.success(), lines, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_once_through_the_projection() {
    let db = TestDb::create(&notifications::MIGRATOR).await.unwrap();
    // A task assignment the distribution consumer gave up on (say the database was read-only).
    let event_id = uuid::Uuid::now_v7();
    let task_id = uuid::Uuid::now_v7();
    let payload = distribution::TaskAssigned {
        task_id: task_id.to_string(),
        agent_id: "ana".into(),
        department_id: "support".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let headers = serde_json::json!({
        "ce-id": event_id.to_string(),
        "ce-type": "dw.distribution.v1.TaskAssigned",
        "ce-time": chrono::Utc::now().to_rfc3339(),
        "ce-source": "task-distribution",
        "ce-subject": format!("task:acme:{task_id}"),
        "dw-tenant": "acme",
        "dw-stream-version": "2",
    });
    let insert = "INSERT INTO dead_letters (consumer, stream, stream_sequence, subject, event_id, event_type, \
                  tenant_id, headers, payload, error, deliveries) \
                  VALUES ($1, 'DW_DISTRIBUTION', $2, 'dw.distribution.acme.task.assigned', $3, \
                  'dw.distribution.v1.TaskAssigned', 'acme', $4, $5, 'cannot execute INSERT in a read-only transaction', 5) \
                  RETURNING id";
    let id: i64 = sqlx::query_scalar(insert)
        .bind("notifications-distribution")
        .bind(7_i64)
        .bind(event_id.to_string())
        .bind(&headers)
        .bind(&payload)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    // And one of a consumer this service does not have.
    let stranger: i64 = sqlx::query_scalar(insert)
        .bind("someone-else")
        .bind(8_i64)
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&headers)
        .bind(&payload)
        .fetch_one(&db.pool)
        .await
        .unwrap();

    let (ok, listed, stderr) = dead_letters(&db, &["list"]);
    assert!(ok, "{stderr}");
    let ids: Vec<i64> = listed.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [id, stranger]);
    assert_eq!(listed[0]["event_type"], "dw.distribution.v1.TaskAssigned");
    assert_eq!(listed[0]["error"], "cannot execute INSERT in a read-only transaction");
    let (_, filtered, _) = dead_letters(&db, &["list", "--consumer", "notifications-distribution"]);
    assert_eq!(filtered.len(), 1);

    // Wrong arguments change nothing and say the usage.
    let (ok, _, stderr) = dead_letters(&db, &["replay", "seven"]);
    assert!(!ok && stderr.contains("usage"), "{stderr}");

    // Replayed through notifications' projection: ana is told of the task.
    let (ok, replayed, stderr) = dead_letters(&db, &["replay", &id.to_string()]);
    assert!(ok, "{stderr}");
    assert_eq!(replayed, [serde_json::json!({"id": id, "consumer": "notifications-distribution", "replayed": true})]);
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM agent_notifications WHERE tenant_id = 'acme' AND agent_id = 'ana'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(kinds, ["task_assigned"]);

    // Not twice: the second replay fails and applies nothing.
    let (ok, again, _) = dead_letters(&db, &["replay", &id.to_string()]);
    assert!(!ok);
    assert_eq!(again[0]["replayed"], false);
    // The stranger cannot be replayed here and stays pending.
    let (ok, all, _) = dead_letters(&db, &["replay", "--all"]);
    assert!(!ok);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["id"], stranger);
    assert!(all[0]["error"].as_str().unwrap().contains("no consumer"), "{all:?}");
    let notified: i64 =
        sqlx::query_scalar("SELECT count(*) FROM agent_notifications").fetch_one(&db.pool).await.unwrap();
    assert_eq!(notified, 1);
    let (_, pending, _) = dead_letters(&db, &["list"]);
    assert_eq!(pending.iter().map(|l| l["id"].as_i64().unwrap()).collect::<Vec<_>>(), [stranger]);
}
