//! What every `make bench` target prints with: knobs from the environment and latency
//! percentiles.

use std::time::Duration;

/// The knob `name` from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p` percentile (0.0–1.0) of `sorted` latencies; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A duration in milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p` percentile of `sorted` latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    ms(percentile(sorted, p))
}

/// `p50 … ms   p99 … ms   max … ms` of `sorted` latencies: how every benchmark prints them.
pub fn summary(sorted: &[Duration]) -> String {
    format!(
        "p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile_ms(sorted, 0.5),
        percentile_ms(sorted, 0.99),
        percentile_ms(sorted, 1.0)
    )
}

/// Waits for every worker of a load and gathers what they measured: each call's latency (all of
/// them, sorted) and how many calls failed. A worker that panicked is the error.
pub async fn gather(
    mut workers: tokio::task::JoinSet<(Vec<Duration>, u64)>,
) -> Result<(Vec<Duration>, u64), tokio::task::JoinError> {
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(result) = workers.join_next().await {
        let (mut measured, failed) = result?;
        latencies.append(&mut measured);
        errors += failed;
    }
    latencies.sort();
    Ok((latencies, errors))
}

/// One line of the table `make bench` prints at the end: a figure of `bench`, and when the bench
/// measured the raw limit of the same shape in the same run, that limit and the ratio
/// (`value ÷ raw` for rates, `raw ÷ value` for latencies: 1.00 is the limit, lower is further
/// from it). Appended to the file `DW_BENCH_SUMMARY` names (the Makefile sets it); a bench run
/// on its own prints only its own output.
pub fn record(bench: &str, figure: &str, value: f64, unit: &str, raw: Option<f64>) {
    let Ok(path) = std::env::var("DW_BENCH_SUMMARY") else {
        return;
    };
    let latency = unit == "ms";
    let (raw, ratio) = match raw {
        Some(raw) if raw > 0.0 && value > 0.0 => {
            (format!("{raw:.2}"), format!("{:.2}", if latency { raw / value } else { value / raw }))
        }
        _ => ("-".to_owned(), "-".to_owned()),
    };
    let line = format!("{bench:<14} {figure:<44} {value:>12.2} {unit:<10} {raw:>12} {ratio:>6}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
    if let Err(error) = written {
        eprintln!("bench summary {path}: {error}");
    }
}

/// The raw limit of a publish: `count` acked JetStream publishes of 256 bytes, one at a time, on
/// a stream of their own (deleted after); their latencies, sorted.
pub async fn acked_publish_latencies(js: &async_nats::jetstream::Context, count: usize) -> Vec<Duration> {
    let name = format!("RAW_{}", uuid::Uuid::now_v7().simple());
    let subject = format!("raw.{}", name.to_lowercase());
    let config = async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        ..Default::default()
    };
    let mut latencies = Vec::with_capacity(count);
    if js.create_stream(config).await.is_err() {
        return latencies;
    }
    for _ in 0..count {
        let started = std::time::Instant::now();
        let Ok(ack) = js.publish(subject.clone(), vec![7_u8; 256].into()).await else { break };
        if ack.await.is_err() {
            break;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let _ = js.delete_stream(&name).await;
    latencies
}
