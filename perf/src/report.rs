//! Measuring and reporting: the shared clock, live counters and the progress line, latency
//! histograms and their percentile summaries, machine facts for the JSON result.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Highest latency a histogram holds (one hour); larger values are clamped to it.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Significant digits: 0.1% value resolution.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// Wall-clock nanoseconds that never go backwards within a process: the Unix time at start plus
/// a monotonic elapsed time. Producers and consumers of one run share it, so end-to-end latency
/// is immune to clock steps; across processes it is as good as the hosts' clock sync.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let origin_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        Clock {
            origin: Instant::now(),
            origin_unix_ns,
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin_unix_ns + self.origin.elapsed().as_nanos() as u64
    }

    /// Sleeps until `target_ns` (returns at once if it has passed).
    pub fn sleep_until(&self, target_ns: u64) {
        let now = self.now_ns();
        if target_ns > now {
            std::thread::sleep(Duration::from_nanos(target_ns - now));
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Records a latency given in nanoseconds, at microsecond resolution (at least 1 µs).
pub fn record_latency_ns(histogram: &mut Histogram<u64>, latency_ns: u64) {
    histogram.saturating_record((latency_ns / 1000).clamp(1, LATENCY_US_MAX));
}

/// Counters every thread bumps, read by the progress line.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub produced_messages: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub produce_errors: AtomicU64,
    pub consumed_messages: AtomicU64,
    pub consumed_bytes: AtomicU64,
    /// Set by any thread that hit a fatal error: everyone stops early.
    pub failed: AtomicBool,
}

impl LiveStats {
    pub fn add_produced(&self, messages: u64, bytes: u64) {
        self.produced_messages
            .fetch_add(messages, Ordering::Relaxed);
        self.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn add_consumed(&self, messages: u64, bytes: u64) {
        self.consumed_messages
            .fetch_add(messages, Ordering::Relaxed);
        self.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Prints one progress line per interval on stderr until `stop` is set.
pub fn spawn_progress(
    stats: Arc<LiveStats>,
    stop: Arc<AtomicBool>,
    interval: Duration,
    clock: Clock,
    start_ns: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = (0u64, 0u64, 0u64, 0u64);
        let mut last_ns = clock.now_ns();
        while !stop.load(Ordering::Relaxed) {
            let tick_end = Instant::now() + interval;
            while Instant::now() < tick_end && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20).min(interval));
            }
            let now_ns = clock.now_ns();
            let seconds = (now_ns - last_ns) as f64 / 1e9;
            let current = (
                stats.produced_messages.load(Ordering::Relaxed),
                stats.produced_bytes.load(Ordering::Relaxed),
                stats.consumed_messages.load(Ordering::Relaxed),
                stats.consumed_bytes.load(Ordering::Relaxed),
            );
            let elapsed = now_ns.saturating_sub(start_ns) as f64 / 1e9;
            eprintln!(
                "[{elapsed:7.1}s] produced {:>10.0} msg/s {:>8.1} MB/s (total {}, errors {}) | consumed {:>10.0} msg/s {:>8.1} MB/s (total {})",
                (current.0 - last.0) as f64 / seconds,
                (current.1 - last.1) as f64 / seconds / 1e6,
                current.0,
                stats.produce_errors.load(Ordering::Relaxed),
                (current.2 - last.2) as f64 / seconds,
                (current.3 - last.3) as f64 / seconds / 1e6,
                current.2,
            );
            last = current;
            last_ns = now_ns;
        }
    })
}

/// Percentiles reported for every histogram, as (JSON key, percentile).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
];

/// Percentile summary in microseconds plus a curve for plots: points at 1 - 10^(-k/10)
/// (0%, 20.6%, ... 90%, ... 99%, ...) as far as the sample count resolves, and the maximum.
pub fn latency_json(histogram: &Histogram<u64>) -> Value {
    let mut summary = serde_json::Map::new();
    summary.insert("count".into(), json!(histogram.len()));
    if histogram.is_empty() {
        return Value::Object(summary);
    }
    for (key, percentile) in PERCENTILES {
        summary.insert(key.into(), json!(histogram.value_at_percentile(percentile)));
    }
    summary.insert("max".into(), json!(histogram.max()));
    summary.insert("min".into(), json!(histogram.min()));
    summary.insert("mean".into(), json!(round2(histogram.mean())));
    let mut curve = Vec::new();
    for step in 0..=60 {
        let percentile = 100.0 * (1.0 - 10f64.powf(-f64::from(step) / 10.0));
        if step > 0 && (100.0 - percentile) * histogram.len() as f64 / 100.0 < 1.0 {
            break;
        }
        curve.push(json!([
            round4(percentile),
            histogram.value_at_percentile(percentile)
        ]));
    }
    curve.push(json!([100.0, histogram.max()]));
    summary.insert("curve".into(), Value::Array(curve));
    Value::Object(summary)
}

/// One human line: `name p50 .. max` in milliseconds.
pub fn latency_line(name: &str, histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return format!("{name:<18} no samples");
    }
    let mut line = format!("{name:<18}");
    for (key, percentile) in PERCENTILES {
        let value_ms = histogram.value_at_percentile(percentile) as f64 / 1000.0;
        line.push_str(&format!(" {key} {value_ms:.3}"));
    }
    line.push_str(&format!(
        " max {:.3} ms ({} samples)",
        histogram.max() as f64 / 1000.0,
        histogram.len()
    ));
    line
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Messages and bytes over a measured window.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
}

impl Throughput {
    pub fn messages_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        }
    }
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
        } else {
            0.0
        }
    }
    pub fn to_json(&self) -> Value {
        json!({
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": round4(self.seconds),
            "messages_per_s": round2(self.messages_per_s()),
            "mb_per_s": round4(self.mb_per_s()),
        })
    }
}

/// nproc, kernel, CPU model: enough to tell machines apart in a result file.
pub fn machine_json() -> Value {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_default();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    json!({ "nproc": nproc, "kernel": kernel, "cpu_model": cpu_model, "hostname": hostname })
}

/// `SLUICE_GIT_COMMIT`, else `git rev-parse HEAD` in the current directory, else null.
pub fn git_commit() -> Value {
    if let Ok(commit) = std::env::var("SLUICE_GIT_COMMIT") {
        return json!(commit);
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| json!(String::from_utf8_lossy(&output.stdout).trim()))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_curve_follow_the_samples() {
        let mut histogram = new_histogram();
        for value_us in 1..=10_000u64 {
            record_latency_ns(&mut histogram, value_us * 1000);
        }
        let summary = latency_json(&histogram);
        assert_eq!(summary["count"], 10_000);
        let near = |key: &str, expected: f64| {
            let value = summary[key].as_u64().unwrap() as f64;
            assert!(
                (value - expected).abs() <= expected * 0.002,
                "{key}={value}"
            );
        };
        near("p50", 5000.0);
        near("p90", 9000.0);
        near("p99", 9900.0);
        near("p99_9", 9990.0);
        near("max", 10_000.0);
        let curve = summary["curve"].as_array().unwrap();
        assert_eq!(curve[0][0], 0.0);
        assert_eq!(curve.last().unwrap()[0], 100.0);
        // 10^4 samples resolve up to 99.99%, not 99.999%.
        let highest_before_max = curve[curve.len() - 2][0].as_f64().unwrap();
        assert!(
            (99.98..100.0).contains(&highest_before_max),
            "{highest_before_max}"
        );
        let values: Vec<u64> = curve
            .iter()
            .map(|point| point[1].as_u64().unwrap())
            .collect();
        assert!(values.windows(2).all(|pair| pair[0] <= pair[1]), "monotone");
    }

    #[test]
    fn sub_microsecond_and_huge_latencies_are_clamped() {
        let mut histogram = new_histogram();
        record_latency_ns(&mut histogram, 10);
        record_latency_ns(&mut histogram, u64::MAX);
        assert_eq!(histogram.min(), 1);
        assert!(histogram.max() >= LATENCY_US_MAX);
        assert_eq!(latency_json(&new_histogram())["count"], 0);
        assert!(latency_line("x", &histogram).contains("p99_99"));
    }

    #[test]
    fn throughput_handles_empty_windows() {
        let throughput = Throughput {
            messages: 1000,
            bytes: 2_000_000,
            seconds: 2.0,
        };
        assert_eq!(throughput.messages_per_s(), 500.0);
        assert_eq!(throughput.mb_per_s(), 1.0);
        assert_eq!(Throughput::default().messages_per_s(), 0.0);
    }
}
