//! `make bench`: fair share between tenants. Tenant B runs its normal load (agents taking and
//! ending breaks with a pause between commands) while tenant A floods the same replica with as
//! many commands as it can send. Prints B's latency alone, under A's flood with the per-tenant
//! limits on, and under the same flood with no limits (the machine's raw behaviour, for the
//! ratio), and what A got admitted. Asserts nothing.
//!
//! Tenant A's workers ignore `RetryInfo` and together attempt `BENCH_A_FLOOD_FACTOR` times the
//! tenant limit (paced, so that the flooding client, which shares this machine's cores, does not
//! itself become the load being measured).
//!
//! Knobs: `BENCH_SECONDS` per phase (default 8), `BENCH_B_AGENTS` (4), `BENCH_B_PAUSE_MS` (50),
//! `BENCH_A_WORKERS` (64), `BENCH_A_FLOOD_FACTOR` (10), `BENCH_TENANT_RATE` (mutations per second
//! per tenant, default 100), `BENCH_TENANT_BURST` (twice the rate), `BENCH_TENANT_MAX_IN_FLIGHT` (8).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{TestService, authed, rid, token};
use dw_auth::Role;
use dw_grpc_kit::fair_share::{FairShareConfig, Rate};
use dw_proto::agentsessions::v1 as pb;
use dw_proto::agentsessions::v1::service_day_service_client::ServiceDayServiceClient;
use dw_testkit::bench::{env_or, percentile_ms};
use tonic::Code;
use tonic::transport::Channel;

struct Knobs {
    seconds: u64,
    b_agents: usize,
    b_pause: Duration,
    a_workers: usize,
    /// Each A worker's pause between attempts.
    a_period: Duration,
}

/// One agent's break start/end pair as a command.
async fn command(day: &mut ServiceDayServiceClient<Channel>, agent: &str, on_break: bool) -> Result<(), tonic::Status> {
    if on_break {
        day.end_break(authed(agent, pb::EndBreakRequest { request_id: rid(), confirm: true })).await.map(|_| ())
    } else {
        day.start_break(authed(agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }))
            .await
            .map(|_| ())
    }
}

async fn start_days(service: &TestService, tenant: &str, agents: &[String]) {
    let refs: Vec<&str> = agents.iter().map(String::as_str).collect();
    service.seed(tenant, &refs, false).await;
    for name in agents {
        let agent = token(tenant, name, &[Role::Agent]);
        let mut day = service.day();
        // A limited tenant may be told to wait while seeding: wait and retry.
        while let Err(status) =
            day.start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() })).await
        {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// B's latencies over the phase; with `flood`, A's admitted and refused counts too.
async fn phase(service: &TestService, knobs: &Knobs, flood: bool) -> (Vec<Duration>, u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(knobs.seconds);
    let mut flooders = tokio::task::JoinSet::new();
    if flood {
        for worker in 0..knobs.a_workers {
            let mut day = service.day();
            let period = knobs.a_period;
            flooders.spawn(async move {
                let mut pace = tokio::time::interval(period);
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let agent = token("tenant-a", &format!("a-{worker:03}"), &[Role::Agent]);
                let (mut admitted, mut refused) = (0u64, 0u64);
                let mut on_break = false;
                while Instant::now() < deadline {
                    pace.tick().await;
                    match command(&mut day, &agent, on_break).await {
                        Ok(()) => {
                            admitted += 1;
                            on_break = !on_break;
                        }
                        Err(status) if status.code() == Code::ResourceExhausted => refused += 1,
                        Err(_) => on_break = !on_break,
                    }
                }
                (admitted, refused)
            });
        }
    }
    let mut normal = tokio::task::JoinSet::new();
    for index in 0..knobs.b_agents {
        let mut day = service.day();
        let pause = knobs.b_pause;
        normal.spawn(async move {
            let agent = token("tenant-b", &format!("b-{index:03}"), &[Role::Agent]);
            let mut latencies = Vec::new();
            let mut on_break = false;
            while Instant::now() < deadline {
                let started = Instant::now();
                let result = command(&mut day, &agent, on_break).await;
                latencies.push(started.elapsed());
                assert!(result.is_ok(), "B within its rate is never refused: {result:?}");
                on_break = !on_break;
                tokio::time::sleep(pause).await;
            }
            // End the phase off break, so the next one starts alike.
            if on_break {
                let _ = command(&mut day, &agent, true).await;
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(result) = normal.join_next().await {
        latencies.append(&mut result.unwrap());
    }
    let (mut admitted, mut refused) = (0, 0);
    while let Some(result) = flooders.join_next().await {
        let (a, r) = result.unwrap();
        admitted += a;
        refused += r;
    }
    latencies.sort();
    (latencies, admitted, refused)
}

async fn service(knobs: &Knobs, limits: FairShareConfig) -> TestService {
    let service = TestService::start_with(|config| config.fair_share = limits).await;
    let a: Vec<String> = (0..knobs.a_workers).map(|i| format!("a-{i:03}")).collect();
    let b: Vec<String> = (0..knobs.b_agents).map(|i| format!("b-{i:03}")).collect();
    start_days(&service, "tenant-a", &a).await;
    start_days(&service, "tenant-b", &b).await;
    service
}

fn line(label: &str, latencies: &[Duration]) -> f64 {
    let p99 = percentile_ms(latencies, 0.99);
    println!(
        "{label:<34} p50 {:>7.2} ms   p99 {:>7.2} ms   ({} commands)",
        percentile_ms(latencies, 0.50),
        p99,
        latencies.len()
    );
    p99
}

#[tokio::main]
async fn main() {
    let rate = env_or("BENCH_TENANT_RATE", 100) as f64;
    let flood_factor = env_or("BENCH_A_FLOOD_FACTOR", 10) as f64;
    let a_workers = env_or("BENCH_A_WORKERS", 64) as usize;
    let knobs = Knobs {
        seconds: env_or("BENCH_SECONDS", 8),
        b_agents: env_or("BENCH_B_AGENTS", 4) as usize,
        b_pause: Duration::from_millis(env_or("BENCH_B_PAUSE_MS", 50)),
        a_workers,
        a_period: Duration::from_secs_f64(a_workers as f64 / (flood_factor * rate)),
    };
    println!(
        "fair-share benchmark: tenant B {} agents (pause {} ms), tenant A {} workers attempting {:.0}/s \
         ({flood_factor:.0}x its limit), {} s per phase, limit {rate:.0} mutations/s per tenant",
        knobs.b_agents,
        knobs.b_pause.as_millis(),
        knobs.a_workers,
        flood_factor * rate,
        knobs.seconds
    );

    let burst = env_or("BENCH_TENANT_BURST", (rate * 2.0) as u64) as f64;
    let limited = FairShareConfig {
        mutations: Rate { per_second: rate, burst },
        max_in_flight_per_tenant: env_or("BENCH_TENANT_MAX_IN_FLIGHT", 8) as usize,
        ..FairShareConfig::unlimited()
    };
    let service_limited = service(&knobs, limited).await;
    let (alone, _, _) = phase(&service_limited, &knobs, false).await;
    let (flooded, admitted, refused) = phase(&service_limited, &knobs, true).await;
    service_limited.stop().await;

    let service_open = service(&knobs, FairShareConfig::unlimited()).await;
    let (unprotected, open_admitted, _) = phase(&service_open, &knobs, true).await;
    service_open.stop().await;

    let base = line("B alone", &alone);
    let with_limits = line("B under A's flood, limits on", &flooded);
    let without = line("B under A's flood, no limits", &unprotected);
    let figure = "tenant B p99 under A's flood (ref: B alone)";
    dw_testkit::bench::record("fair_share", figure, with_limits, "ms", Some(base));
    let seconds = knobs.seconds as f64;
    println!(
        "A with limits: {:.0} admitted/s (limit {rate:.0}, plus its burst), {:.0} refused/s; without limits: {:.0} \
         admitted/s",
        admitted as f64 / seconds,
        refused as f64 / seconds,
        open_admitted as f64 / seconds
    );
    println!(
        "B p99 growth under the flood: {:.2}x with limits (goal < 2x), {:.2}x without",
        with_limits / base.max(f64::EPSILON),
        without / base.max(f64::EPSILON)
    );
}
