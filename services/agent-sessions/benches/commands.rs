//! `make bench`: agent commands (break start/end pairs) through the real gRPC API, Postgres and
//! NATS, and the relay's commit → JetStream latency. Prints figures; asserts nothing.
//!
//! Knobs: `BENCH_AGENTS` (concurrent agents, default 64), `BENCH_SECONDS` (default 10).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{TestService, authed, rid, token};
use dw_auth::Role;
use dw_proto::agentsessions::v1 as pb;
use dw_testkit::bench::{env_or, gather, ms, percentile, summary};
use futures::StreamExt;

#[tokio::main]
async fn main() {
    let agents = env_or("BENCH_AGENTS", 64) as usize;
    let seconds = env_or("BENCH_SECONDS", 10);
    let service = TestService::start().await;
    let names: Vec<String> = (0..agents).map(|i| format!("agent-{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    service.seed("bench", &refs, true).await;
    for name in &names {
        let agent = token("bench", name, &[Role::Agent]);
        service
            .day()
            .start_service_day(authed(&agent, pb::StartServiceDayRequest { request_id: rid() }))
            .await
            .unwrap();
    }

    // Commit → JetStream delivery, measured from each event's ce-time.
    let js = async_nats::jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let stream = js.get_stream(&service.namespace.stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let propagation = tokio::spawn(async move {
        let mut lags = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(3), messages.next()).await {
            let Some(time) = message.headers.as_ref().and_then(|h| h.get("ce-time")) else { continue };
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(time.as_str()) {
                let lag = chrono::Utc::now().signed_duration_since(at).to_std().unwrap_or_default();
                lags.push(lag);
            }
        }
        lags
    });

    println!("agent-sessions command benchmark: {agents} agents, {seconds} s, break start/end pairs");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for name in names {
        let mut day = service.day();
        workers.spawn(async move {
            let agent = token("bench", &name, &[Role::Agent]);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                let start = day
                    .start_break(authed(&agent, pb::StartBreakRequest { request_id: rid(), reason_id: String::new() }))
                    .await;
                latencies.push(started.elapsed());
                errors += u64::from(start.is_err());
                let started = Instant::now();
                let end = day.end_break(authed(&agent, pb::EndBreakRequest { request_id: rid(), confirm: true })).await;
                latencies.push(started.elapsed());
                errors += u64::from(end.is_err());
            }
            (latencies, errors)
        });
    }
    let (latencies, errors) = gather(workers).await.unwrap();
    let commands = latencies.len();
    let rate = commands as f64 / seconds as f64;
    println!("commands        {commands} ({errors} errors)");
    println!("throughput      {rate:.0} commands/s");
    println!("latency         {}", summary(&latencies));
    let mut lags = propagation.await.unwrap();
    lags.sort();
    println!(
        "commit→jetstream p50 {:.2} ms   p99 {:.2} ms   ({} events observed)",
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.99)),
        lags.len()
    );
    service.stop().await;
}
