//! The distribution journey as an operator runs it: the `agent-sessions` and `task-distribution`
//! binaries exchanging events over JetStream, driven by `dwctl`. An agent who starts the day gets
//! a created task on their `tasks watch` stream, gets no new one after notifying an exit, keeps
//! theirs through a break, and sees it re-queued to a colleague when their day ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dw_testkit::{TestDb, TestNamespace};
use integration_tests::{Process, binary, free_port, run_ok, wait_for_port};

const SECRET: &str = "integration-secret-of-enough-length";

struct Watch {
    _process: Process,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Watch {
    /// The next update of `kind` within 15 s (other updates are skipped).
    fn next(&self, kind: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let update = self.lines.recv_timeout(left).expect("an update within 15 s");
            if update["kind"] == kind {
                return update;
            }
        }
        panic!("no {kind} update");
    }

    /// What arrives within `wait` besides a repeat of a task the agent already has (the watch
    /// lists the open tasks after it subscribes, so one assigned meanwhile comes again as
    /// `KIND_CURRENT`: its documented contract), if anything (so a failure shows it).
    fn anything_within(&self, wait: Duration, known_task: &serde_json::Value) -> Option<serde_json::Value> {
        let deadline = std::time::Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let update = self.lines.recv_timeout(left).ok()?;
            if !(update["kind"] == "KIND_CURRENT" && update["task"]["taskId"] == *known_task) {
                return Some(update);
            }
        }
        None
    }
}

#[tokio::test]
async fn the_distribution_journey_with_dwctl() {
    let sessions_db = TestDb::create(&agent_sessions::MIGRATOR).await.unwrap();
    let distribution_db = TestDb::create(&task_distribution::MIGRATOR).await.unwrap();
    let sessions_ns = TestNamespace::new("jsessions");
    let distribution_ns = TestNamespace::new("jdistribution");
    let messaging_ns = TestNamespace::new("jmessaging");
    let ports: Vec<u16> = (0..4).map(|_| free_port().unwrap()).collect();
    let common = |command: &mut Command| {
        command
            .env("DW_JWT_SECRET", SECRET)
            .env("NATS_URL", dw_testkit::nats_url())
            .env("RUST_LOG", "warn")
            .env("DW_LOG_FORMAT", "pretty");
    };
    let mut sessions = Command::new(binary("agent-sessions").unwrap());
    common(&mut sessions);
    sessions
        .env("DATABASE_URL", &sessions_db.url)
        .env("GRPC_ADDR", format!("127.0.0.1:{}", ports[0]))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", ports[1]))
        .env("DW_STREAM_NAME", &sessions_ns.stream_name)
        .env("DW_SUBJECT_PREFIX", &sessions_ns.subject_prefix);
    let _sessions = Process::spawn(&mut sessions).unwrap();
    wait_for_port(ports[0]).await.unwrap();
    let mut distribution = Command::new(binary("task-distribution").unwrap());
    common(&mut distribution);
    distribution
        .env("DATABASE_URL", &distribution_db.url)
        .env("GRPC_ADDR", format!("127.0.0.1:{}", ports[2]))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", ports[3]))
        .env("DW_STREAM_NAME", &distribution_ns.stream_name)
        .env("DW_SUBJECT_PREFIX", &distribution_ns.subject_prefix)
        .env("DW_AGENT_SESSIONS_STREAM", &sessions_ns.stream_name)
        .env("DW_AGENT_SESSIONS_SUBJECT_PREFIX", &sessions_ns.subject_prefix)
        .env("DW_MESSAGING_STREAM", &messaging_ns.stream_name)
        .env("DW_MESSAGING_SUBJECT_PREFIX", &messaging_ns.subject_prefix);
    let _distribution = Process::spawn(&mut distribution).unwrap();
    wait_for_port(ports[2]).await.unwrap();

    let dwctl = binary("dwctl").unwrap();
    let as_user = |sub: &str, role: &str, args: &[&str]| {
        let mut command = Command::new(&dwctl);
        command
            .env_remove("DW_TOKEN")
            .env("DW_JWT_SECRET", SECRET)
            .env("DW_AGENT_SESSIONS_ADDR", format!("http://127.0.0.1:{}", ports[0]))
            .env("DW_TASK_DISTRIBUTION_ADDR", format!("http://127.0.0.1:{}", ports[2]))
            .args(["--tenant", "demo", "--sub", sub, "--role", role])
            .args(args);
        command
    };
    // The demo: ana (sales, support) and bruno (support), automatic distribution on.
    run_ok(&mut as_user("manager-1", "manager", &["demo", "seed"])).unwrap();
    let create = |client: &str, phone: &str| {
        let output = run_ok(&mut as_user(
            "crm-bot",
            "service",
            &[
                "--json",
                "tasks",
                "create",
                "--department",
                "support",
                "--channel",
                "whatsapp",
                "--client-name",
                client,
                "--phone",
                phone,
            ],
        ))
        .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let watch = |agent: &str| {
        let mut child = as_user(agent, "agent", &["--json", "tasks", "watch"]).stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && sender.send(value).is_err()
                {
                    break;
                }
            }
        });
        Watch { _process: Process(child), lines }
    };
    let wait_available = |agent: &'static str| {
        let pool = distribution_db.pool.clone();
        async move {
            for _ in 0..400 {
                let ready: Option<bool> = sqlx::query_scalar(
                    "SELECT day_open AND NOT on_break AND NOT exit_notified FROM agents WHERE tenant_id = 'demo' AND agent_id = $1",
                )
                .bind(agent)
                .fetch_optional(&pool)
                .await
                .unwrap();
                if ready == Some(true) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("{agent} never available to task-distribution");
        }
    };

    let ana_watch = watch("ana");
    let bruno_watch = watch("bruno");
    run_ok(&mut as_user("ana", "agent", &["day", "start"])).unwrap();
    wait_available("ana").await;

    // Ana starts the day: a created task reaches her stream.
    let first = create("Maria Souza", "+5511900000101");
    let assigned = ana_watch.next("KIND_ASSIGNED");
    assert_eq!(assigned["task"]["taskId"], first["taskId"]);
    assert_eq!(assigned["task"]["agentId"], "ana");

    // After notifying an exit she gets no new task (nobody else is working: it waits).
    run_ok(&mut as_user("ana", "agent", &["day", "notify-exit", "--reason", "meeting"])).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = create("João Pereira", "+5511900000102");
    assert_eq!(second["status"], "TASK_STATUS_QUEUED");
    let unexpected = ana_watch.anything_within(Duration::from_millis(500), &first["taskId"]);
    assert!(unexpected.is_none(), "no new task for ana: {unexpected:?}");

    // A break: she keeps the first task.
    run_ok(&mut as_user("ana", "agent", &["day", "start-break", "--reason", "lunch"])).unwrap();
    let mine = run_ok(&mut as_user("ana", "agent", &["--json", "tasks", "mine"])).unwrap();
    let mine: serde_json::Value = serde_json::from_slice(&mine.stdout).unwrap();
    assert_eq!(mine["tasks"][0]["taskId"], first["taskId"]);

    // Bruno starts: the waiting task goes to him. Ana's day ends: her task is re-queued to him.
    run_ok(&mut as_user("bruno", "agent", &["day", "start"])).unwrap();
    assert_eq!(bruno_watch.next("KIND_ASSIGNED")["task"]["taskId"], second["taskId"]);
    run_ok(&mut as_user("ana", "agent", &["day", "end"])).unwrap();
    assert_eq!(ana_watch.next("KIND_REQUEUED")["task"]["taskId"], first["taskId"]);
    assert_eq!(bruno_watch.next("KIND_ASSIGNED")["task"]["taskId"], first["taskId"]);

    // The protocols are found.
    let protocol = first["protocol"].as_str().unwrap();
    let found = run_ok(&mut as_user("bruno", "agent", &["--json", "tasks", "search", "--protocol", protocol])).unwrap();
    let found: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(found["tasks"][0]["agentId"], "bruno");

    // The operator's view of the first task in task-distribution's store (`events log`, its
    // ReadEvents RPC): created, assigned to ana, re-queued at her day's end, assigned to bruno.
    let task_stream = format!("task:{}", first["taskId"].as_str().unwrap());
    let history =
        run_ok(&mut as_user("sre-1", "manager", &["--json", "events", "log", "--stream", &task_stream])).unwrap();
    let history: Vec<serde_json::Value> =
        String::from_utf8(history.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let types: Vec<&str> = history.iter().map(|event| event["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"dw.distribution.v1.TaskCreated"), "{types:?}");
    assert!(types.contains(&"dw.distribution.v1.TaskRequeued"), "{types:?}");
    let versions: Vec<i64> = history.iter().map(|event| event["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>(), "the whole history, in order");
    let last = history.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["payload"]["agentId"].as_str()),
        (Some("dw.distribution.v1.TaskAssigned"), Some("bruno"))
    );
    assert!(
        history.iter().all(|event| event["streamId"] == format!("task:demo:{}", first["taskId"].as_str().unwrap()))
    );
    let text = run_ok(&mut as_user("sre-1", "manager", &["events", "log", "--stream", &task_stream])).unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains(" v1  dw.distribution.v1.TaskCreated\n"), "{text}");
    assert!(text.contains("\"agentId\": \"bruno\""), "{text}");

    // The tail of the store, one type: the newest two assignments, oldest of them first.
    let tail = run_ok(&mut as_user(
        "sre-1",
        "manager",
        &["--json", "events", "log", "--service", "task-distribution", "--tail", "2", "--type", "TaskAssigned"],
    ))
    .unwrap();
    let tail: Vec<serde_json::Value> =
        String::from_utf8(tail.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(tail.len(), 2);
    assert!(tail.iter().all(|event| event["type"] == "dw.distribution.v1.TaskAssigned"));
    assert!(tail[0]["globalPosition"].as_i64() < tail[1]["globalPosition"].as_i64());
    assert_eq!(tail[1]["payload"]["agentId"], "bruno");

    // An agent may not read the store.
    let denied = as_user("ana", "agent", &["events", "log", "--stream", &task_stream]).output().unwrap();
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("PERMISSION_DENIED"), "{denied:?}");
}
