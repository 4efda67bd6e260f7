//! `make bench`: template sends through the real gRPC API, Postgres, NATS and a fake WhatsApp
//! provider on 127.0.0.1: sends accepted per second, and the provider-side delivery rate (the
//! dispatcher handing messages over). Prints figures; asserts nothing.
//!
//! Knobs: `BENCH_SENDERS` (concurrent senders, default 32), `BENCH_SECONDS` (default 10),
//! `BENCH_DISPATCH_CONCURRENCY` (the service's `DW_DISPATCH_CONCURRENCY`; unset: its default, 8,
//! on a pool of its own), `BENCH_DB_POOL` (its `DW_DB_MAX_CONNECTIONS`, default 16) and
//! `BENCH_SEND_BACKLOG_LIMIT` (its `DW_SEND_BACKLOG_LIMIT`; unset: its default, 500; 0: none).
//! A sender refused because the tenant's backlog is full waits the advised delay, as a
//! well-behaved client does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Setup, authed, rid, token};
use dw_auth::Role;
use dw_proto::messaging::v1 as pb;
use dw_testkit::bench::{env_or, summary};
use tonic_types::StatusExt;

#[tokio::main]
async fn main() {
    let senders = env_or("BENCH_SENDERS", 32) as usize;
    let seconds = env_or("BENCH_SECONDS", 10);
    let mut setup = Setup::new().await;
    if let Ok(limit) = std::env::var("BENCH_SEND_BACKLOG_LIMIT") {
        setup.send_backlog_limit = limit.parse().expect("BENCH_SEND_BACKLOG_LIMIT: a number");
    }
    let dispatch_concurrency = std::env::var("BENCH_DISPATCH_CONCURRENCY").ok().and_then(|v| v.parse().ok());
    let pool_size = env_or("BENCH_DB_POOL", 16) as u32;
    let service = setup.start_with(true, dispatch_concurrency, Some(pool_size)).await;
    let manager = token("bench", "boss", Role::Manager);
    let content = pb::TemplateContent {
        language: "pt_BR".into(),
        category: pb::TemplateCategory::Utility as i32,
        body: "Olá {{1}}, seu pedido {{2}} saiu para entrega.".into(),
        ..Default::default()
    };
    let template = service
        .templates()
        .create_template(authed(
            &manager,
            pb::CreateTemplateRequest {
                request_id: rid(),
                channel: pb::Channel::Whatsapp as i32,
                name: "bench".into(),
                content: Some(content),
            },
        ))
        .await
        .unwrap()
        .into_inner();

    println!(
        "messaging-templates send benchmark: {senders} concurrent senders, {seconds} s, WhatsApp template, fake provider; \
         dispatcher concurrency {}, pool {pool_size}, send backlog limit {}",
        dispatch_concurrency.map_or_else(|| "default (8, its own pool)".to_owned(), |n: usize| n.to_string()),
        setup.send_backlog_limit
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..senders {
        let mut client = service.templates();
        let template_id = template.template_id.clone();
        let bearer = token("bench", "crm-bot", Role::Service);
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut refused) = (0u64, 0u64);
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let request = pb::SendTemplateRequest {
                    request_id: rid(),
                    template_id: template_id.clone(),
                    recipient: Some(pb::send_template_request::Recipient::Phone(format!("+5511{worker:03}{n:06}"))),
                    variables: vec!["Ana".into(), format!("P-{n}")],
                    ..Default::default()
                };
                let at = Instant::now();
                match client.send_template(authed(&bearer, request)).await {
                    Ok(_) => latencies.push(at.elapsed()),
                    // The tenant's backlog is full: wait as told, as a well-behaved sender does.
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        refused += 1;
                        let wait = status.get_details_retry_info().and_then(|info| info.retry_delay);
                        tokio::time::sleep(wait.unwrap_or(Duration::from_millis(500))).await;
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors, refused)
        });
    }
    let mut latencies = Vec::new();
    let (mut errors, mut refused) = (0, 0);
    for (worker_latencies, worker_errors, worker_refused) in workers.join_all().await {
        latencies.extend(worker_latencies);
        errors += worker_errors;
        refused += worker_refused;
    }
    latencies.sort();
    let accepted = latencies.len();
    let sending_window = started.elapsed();
    let during = setup.whatsapp.received().len();
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&setup.db.pool).await.unwrap_or(-1);
    println!(
        "sends accepted  {accepted} ({errors} errors, {refused} refused while the backlog was full) = {:.0}/s",
        accepted as f64 / sending_window.as_secs_f64()
    );
    println!("SendTemplate    {}", summary(&latencies));
    // The provider keeps receiving after the senders stop: measure until it has them all.
    let drain_deadline = Instant::now() + Duration::from_secs(120);
    while setup.whatsapp.received().len() < accepted && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = setup.whatsapp.received().len();
    let total = started.elapsed();
    println!(
        "provider side   {delivered} messages received in {:.1} s = {:.0}/s",
        total.as_secs_f64(),
        delivered as f64 / total.as_secs_f64()
    );
    let draining = (total - sending_window).as_secs_f64();
    println!(
        "                {during} while the senders ran ({:.0}/s), the other {} after, alone ({:.0}/s)",
        during as f64 / sending_window.as_secs_f64(),
        delivered - during.min(delivered),
        (delivered - during.min(delivered)) as f64 / draining.max(0.001)
    );
    println!("                (events waiting in the outbox when the senders stopped: {outbox})");
    let accepted_rate = accepted as f64 / sending_window.as_secs_f64();
    dw_testkit::bench::record("sends", "template sends accepted", accepted_rate, "/s", None);
    let handed = delivered as f64 / total.as_secs_f64();
    dw_testkit::bench::record("sends", "handed to the provider (ref: accepted)", handed, "/s", Some(accepted_rate));
    service.stop().await;
}
