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

/// CPU seconds (user + system) of this process and of every `postgres` and `nats-server`
/// process on the machine, from /proc (Linux; zeros elsewhere): what a bench's window cost,
/// beside what its raw shape cost ([`CpuTimes::minus`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub bench: f64,
    pub postgres: f64,
    pub nats: f64,
}

/// A process's command name and CPU seconds from its `/proc/<pid>/stat` line.
fn proc_cpu_seconds(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the command: state(0) ... utime(11) stime(12) cutime(13) cstime(14), in clock ticks
    // (USER_HZ = 100). The children's times count too: backends that exited during a window
    // (a raw shape's pool closes, autovacuum workers come and go) are in the postmaster's.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some((comm, (ticks(11)? + ticks(12)? + ticks(13)? + ticks(14)?) / 100.0))
}

impl CpuTimes {
    /// The CPU spent so far.
    pub fn now() -> Self {
        let mut times = Self::default();
        if let Some((_, seconds)) =
            std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(proc_cpu_seconds)
        {
            times.bench = seconds;
        }
        let Ok(entries) = std::fs::read_dir("/proc") else { return times };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            match proc_cpu_seconds(&stat) {
                Some((comm, seconds)) if comm == "postgres" => times.postgres += seconds,
                Some((comm, seconds)) if comm == "nats-server" => times.nats += seconds,
                _ => {}
            }
        }
        times
    }

    /// What was spent since `before`.
    pub fn minus(self, before: Self) -> Self {
        Self {
            bench: self.bench - before.bench,
            postgres: self.postgres - before.postgres,
            nats: self.nats - before.nats,
        }
    }

    /// All of it.
    pub fn total(self) -> f64 {
        self.bench + self.postgres + self.nats
    }

    /// What this (a window's spending) used of the machine over `wall`, this process named
    /// `process`: one line.
    pub fn usage(self, wall: Duration, process: &str) -> String {
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        let wall = wall.as_secs_f64().max(f64::EPSILON);
        let share = |s: f64| s / wall * 100.0;
        format!(
            "CPU in that window ({cores} cores, {wall:.1} s wall; 100% = one core): {process} {:.0}%, \
             postgres (all backends) {:.0}%, nats-server {:.0}%, total {:.0}% of {}%",
            share(self.bench),
            share(self.postgres),
            share(self.nats),
            share(self.total()),
            cores * 100
        )
    }
}
