//! The operator's path: the `agent-sessions` binary driven by the `dwctl` binary — demo seed, a
//! full agent day, `day info`, and the day's events read back with `dwctl events tail`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use dw_testkit::{TestDb, TestNamespace};
use integration_tests::{Process, binary, free_port, run_ok, wait_for_port};

const SECRET: &str = "integration-secret-of-enough-length";

#[tokio::test]
async fn a_full_day_driven_by_dwctl() {
    let db = TestDb::create(&agent_sessions::MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("dwctl");
    let (grpc_port, metrics_port) = (free_port().unwrap(), free_port().unwrap());
    let _service = Process::spawn(
        Command::new(binary("agent-sessions").unwrap())
            .env("DW_JWT_SECRET", SECRET)
            .env("DATABASE_URL", &db.url)
            .env("NATS_URL", dw_testkit::nats_url())
            .env("GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
            .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("DW_STREAM_NAME", &namespace.stream_name)
            .env("DW_SUBJECT_PREFIX", &namespace.subject_prefix)
            .env("RUST_LOG", "warn"),
    )
    .unwrap();
    wait_for_port(grpc_port).await.unwrap();

    let dwctl = binary("dwctl").unwrap();
    let addr = format!("http://127.0.0.1:{grpc_port}");
    let base = |args: &[&str]| {
        let mut command = Command::new(&dwctl);
        command
            .env_remove("DW_TOKEN")
            .env("DW_JWT_SECRET", SECRET)
            .env("DW_AGENT_SESSIONS_ADDR", &addr)
            .env("NATS_URL", dw_testkit::nats_url())
            .args(args);
        command
    };
    run_ok(&mut base(&["demo", "seed", "--tenant", "demo"])).unwrap();
    // Seeding twice is harmless.
    run_ok(&mut base(&["demo", "seed", "--tenant", "demo"])).unwrap();

    let as_ana = |args: &[&str]| {
        let mut command = base(&["--tenant", "demo", "--sub", "ana", "--role", "agent"]);
        command.args(args);
        command
    };
    run_ok(&mut as_ana(&["day", "start"])).unwrap();
    run_ok(&mut as_ana(&["day", "notify-exit", "--reason", "meeting"])).unwrap();
    run_ok(&mut as_ana(&["day", "start-break", "--reason", "lunch"])).unwrap();
    // Ending a break needs confirmation; without it nothing is sent.
    let unconfirmed = as_ana(&["day", "end-break"]).output().unwrap();
    assert!(!unconfirmed.status.success());
    run_ok(&mut as_ana(&["day", "end-break", "--confirm"])).unwrap();
    // The demo tenant has break reasons: a break without one is refused, saying why.
    let without_reason = as_ana(&["day", "start-break"]).output().unwrap();
    assert!(!without_reason.status.success());
    let said = String::from_utf8_lossy(&without_reason.stderr);
    assert!(said.contains("BREAK_REASON_REQUIRED") || said.contains("break reasons"), "{said}");
    // A second break is left open: ending the day closes it.
    run_ok(&mut as_ana(&["day", "start-break", "--reason", "coffee"])).unwrap();
    run_ok(&mut as_ana(&["day", "end"])).unwrap();

    let info = run_ok(&mut as_ana(&["--json", "day", "info"])).unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let day = &info["days"][0];
    assert_eq!(info["status"], "AGENT_STATUS_OFF");
    assert!(day["endedAt"].is_string(), "{info}");
    let breaks = day["breaks"].as_array().unwrap();
    assert_eq!(breaks.len(), 2);
    assert_eq!(breaks[0]["reasonLabel"], "Lunch");
    assert!(breaks.iter().all(|b| b["endedAt"].is_string()));
    let exits = day["exits"].as_array().unwrap();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0]["reasonId"], "meeting");
    assert_eq!(exits[0]["closeCause"], "EXIT_CLOSE_CAUSE_BREAK_STARTED");
    let departments: Vec<&str> = info["departmentIds"].as_array().unwrap().iter().filter_map(|d| d.as_str()).collect();
    assert_eq!(departments, ["sales", "support"]);

    // The day's events, decoded from JetStream.
    let tail = run_ok(&mut base(&[
        "--json",
        "events",
        "tail",
        "--stream",
        &namespace.stream_name,
        "--subject",
        &format!("{}.demo.serviceday.>", namespace.subject_prefix),
        "--from-start",
        "--limit",
        "8",
    ]))
    .unwrap();
    let stdout = String::from_utf8(tail.stdout).unwrap();
    let types: Vec<String> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| event["type"].as_str().map(|t| t.trim_start_matches("dw.agentsessions.v1.").to_owned()))
        .collect();
    assert_eq!(
        types,
        [
            "ServiceDayStarted",
            "ExitNotified",
            "ExitClosed",
            "BreakStarted",
            "BreakEnded",
            "BreakStarted",
            "BreakEnded",
            "ServiceDayEnded"
        ],
        "{stdout}"
    );
}
