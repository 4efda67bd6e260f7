//! The process metrics of the Prometheus convention (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, …), read from `/proc/self` at each scrape:
//! prometheus-client has no process collector, and a scrape is the only moment they are wanted.
//! Linux only: where `/proc` is absent (or a file does not parse) the metric is left out, never
//! reported as zero.

use std::path::{Path, PathBuf};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second of `/proc/<pid>/stat` times: the kernel's `USER_HZ`, 100 on every
/// architecture Linux containers run on (reading `sysconf(_SC_CLK_TCK)` would take `unsafe`).
const TICKS_PER_SECOND: f64 = 100.0;

/// Adds the process metrics to `registry`; they are read from `/proc/self` when scraped.
pub fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector { proc: PathBuf::from("/proc") }));
}

#[derive(Debug)]
struct ProcessCollector {
    /// `/proc`, or a copy of its files in tests.
    proc: PathBuf,
}

/// What one scrape found; `None` where it could not be read.
#[derive(Debug, Default, PartialEq)]
struct ProcessSample {
    cpu_seconds: Option<f64>,
    resident_memory_bytes: Option<u64>,
    virtual_memory_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
    threads: Option<u64>,
}

impl ProcessSample {
    fn read(proc: &Path) -> Self {
        let read = |file: &str| std::fs::read_to_string(proc.join(file)).ok();
        let stat = read("self/stat").and_then(|text| StatFields::parse(&text));
        let status = read("self/status").unwrap_or_default();
        let boot_time = read("stat").and_then(|text| boot_time_seconds(&text));
        let open_fds = std::fs::read_dir(proc.join("self/fd")).ok().map(|entries| entries.count() as u64);
        Self {
            cpu_seconds: stat.as_ref().map(|s| (s.user_ticks + s.system_ticks) as f64 / TICKS_PER_SECOND),
            resident_memory_bytes: status_kilobytes(&status, "VmRSS").map(|kb| kb * 1024),
            virtual_memory_bytes: stat.as_ref().map(|s| s.virtual_memory_bytes),
            open_fds,
            max_fds: read("self/limits").and_then(|text| max_open_files(&text)),
            start_time_seconds: stat
                .as_ref()
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / TICKS_PER_SECOND),
            threads: status_value(&status, "Threads"),
        }
    }
}

/// The fields of `/proc/self/stat` the metrics use.
#[derive(Debug, PartialEq)]
struct StatFields {
    user_ticks: u64,
    system_ticks: u64,
    start_ticks: u64,
    virtual_memory_bytes: u64,
}

impl StatFields {
    /// The command name (field 2) is in parentheses and may hold spaces and parentheses itself,
    /// so the fields are counted from the last `)`: field 3 (state) is the first after it.
    fn parse(text: &str) -> Option<Self> {
        let (_, after_name) = text.rsplit_once(')')?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Field n of proc(5) is fields[n - 3].
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            user_ticks: field(14)?,
            system_ticks: field(15)?,
            start_ticks: field(22)?,
            virtual_memory_bytes: field(23)?,
        })
    }
}

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the Unix epoch.
fn boot_time_seconds(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime")).and_then(|value| value.trim().parse().ok())
}

/// A `Key:   value` line of `/proc/self/status`, as a number.
fn status_value(status: &str, key: &str) -> Option<u64> {
    status_field(status, key)?.parse().ok()
}

/// A `Key:   1234 kB` line of `/proc/self/status`, in kilobytes.
fn status_kilobytes(status: &str, key: &str) -> Option<u64> {
    status_field(status, key)?.strip_suffix("kB")?.trim().parse().ok()
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key).then_some(value.trim())
    })
}

/// The soft limit of "Max open files" in `/proc/self/limits` (absent when unlimited).
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = ProcessSample::read(&self.proc);
        if let Some(seconds) = sample.cpu_seconds {
            encode(
                &mut encoder,
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                ConstCounter::new(seconds),
            )?;
        }
        let gauges: [(&str, &str, Option<f64>); 6] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                sample.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                sample.virtual_memory_bytes.map(|v| v as f64),
            ),
            ("process_open_fds", "Open file descriptors", sample.open_fds.map(|v| v as f64)),
            ("process_max_fds", "The limit of open file descriptors", sample.max_fds.map(|v| v as f64)),
            (
                "process_start_time_seconds",
                "When the process started, in seconds since the Unix epoch",
                sample.start_time_seconds,
            ),
            ("process_threads", "OS threads of the process", sample.threads.map(|v| v as f64)),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                encode(&mut encoder, name, help, ConstGauge::new(value))?;
            }
        }
        Ok(())
    }
}

fn encode(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let stat = "5666 (my (odd) name) S 5659 5659 3736 0 -1 4194304 105 0 0 0 250 130 0 0 20 0 7 0 388172 2998272 414 \
                    18446744073709551615 0 0";
        let fields = StatFields::parse(stat).unwrap();
        assert_eq!(
            fields,
            StatFields { user_ticks: 250, system_ticks: 130, start_ticks: 388172, virtual_memory_bytes: 2998272 }
        );
        assert_eq!(StatFields::parse("12 (truncated) S 1 2"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        let status = "Name:\tnotifications\nVmSize:\t  123456 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(status_kilobytes(status, "VmRSS"), Some(20480));
        assert_eq!(status_value(status, "Threads"), Some(9));
        assert_eq!(status_kilobytes(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(max_open_files("Max open files            unlimited            unlimited            files"), None);
        assert_eq!(boot_time_seconds("cpu  1 2 3\nbtime 1796104927\nprocesses 9\n"), Some(1796104927));
    }

    #[test]
    fn without_proc_nothing_is_exported() {
        let sample = ProcessSample::read(Path::new("/nonexistent/proc"));
        assert_eq!(sample, ProcessSample::default());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured_on_linux() {
        let sample = ProcessSample::read(Path::new("/proc"));
        assert!(sample.resident_memory_bytes.unwrap() > 0);
        assert!(sample.open_fds.unwrap() > 0);
        assert!(sample.cpu_seconds.unwrap() >= 0.0);
        let started = sample.start_time_seconds.unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(started <= now + 1.0 && started > now - 86_400.0 * 365.0, "{started} vs {now}");
    }
}
