//! What a run measures: latency histograms, per-publisher sequence tracking, and process CPU and
//! memory from `/proc`.
//!
//! Each task records into its own [`Recorder`] (no locks or atomics per delivery) and the
//! recorders are merged when the run ends. Times are nanoseconds since the generator's
//! [`Epoch`], shared by publishers and subscribers of the one process, so latency needs no clock
//! synchronisation.

use std::time::{Duration, Instant};

/// The generator's time origin; every timestamp in a message is nanoseconds since it.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(Instant);

impl Epoch {
    /// Starts the clock.
    pub fn start() -> Epoch {
        Epoch(Instant::now())
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Sub-buckets per power of two: values are kept to within 1/64 (about 1.6 %).
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Values below this are stored exactly.
const LINEAR: u64 = 2 * SUB as u64;
const BUCKETS: usize = LINEAR as usize + (64 - SUB_BITS as usize - 1) * SUB;

/// A log-linear histogram of nanosecond values with fixed memory and O(1) recording.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1), to within the bucket precision; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return lower_bound(i).min(self.max);
            }
        }
        self.max
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    LINEAR as usize + (exp - SUB_BITS - 1) as usize * SUB + sub
}

fn lower_bound(i: usize) -> u64 {
    if (i as u64) < LINEAR {
        return i as u64;
    }
    let k = i - LINEAR as usize;
    let exp = (k / SUB) as u32 + SUB_BITS + 1;
    let sub = (k % SUB) as u64;
    (SUB as u64 + sub) << (exp - SUB_BITS)
}

/// Which sequence numbers of each publisher one subscriber has seen, for duplicates.
#[derive(Clone, Default)]
pub struct Seen {
    per_publisher: Vec<Vec<u64>>,
}

impl Seen {
    /// Marks `(publisher, seq)` as seen; false if it had been seen already.
    pub fn mark(&mut self, publisher: u32, seq: u64) -> bool {
        let p = publisher as usize;
        if self.per_publisher.len() <= p {
            self.per_publisher.resize_with(p + 1, Vec::new);
        }
        let bits = &mut self.per_publisher[p];
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let fresh = bits[word] & (1 << bit) == 0;
        bits[word] |= 1 << bit;
        fresh
    }
}

/// What one task observed.
#[derive(Clone, Default)]
pub struct Recorder {
    /// Delivery latency (send to receipt), ns.
    pub latency: Histogram,
    /// Deliveries seen for the first time.
    pub delivered: u64,
    /// Deliveries of a message this subscriber had already received.
    pub duplicates: u64,
    /// Session-level failures (failed meta replies, broken connections, failed publishes).
    pub errors: u64,
    /// The first failure's text.
    pub first_error: Option<String>,
}

impl Recorder {
    /// Records a delivery of `(publisher, seq)` sent at `sent_ns`, received at `now_ns`, for a
    /// subscriber whose history is `seen`.
    pub fn delivery(
        &mut self,
        seen: &mut Seen,
        publisher: u32,
        seq: u64,
        sent_ns: u64,
        now_ns: u64,
    ) {
        if seen.mark(publisher, seq) {
            self.delivered += 1;
            self.latency.record(now_ns.saturating_sub(sent_ns));
        } else {
            self.duplicates += 1;
        }
    }

    /// Records a failure.
    pub fn error(&mut self, why: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why.to_string());
        }
    }

    /// Adds another recorder's observations.
    pub fn merge(&mut self, other: &Recorder) {
        self.latency.merge(&other.latency);
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// CPU time and memory of a process, read from `/proc`.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Resident set size in KiB.
    pub rss_kib: u64,
    /// When the sample was taken.
    pub at: Instant,
}

impl ProcSample {
    /// Samples process `pid`, or this process when `None`; `None` if it cannot be read.
    pub fn take(pid: Option<u32>) -> Option<ProcSample> {
        let dir = match pid {
            Some(pid) => format!("/proc/{pid}"),
            None => "/proc/self".to_string(),
        };
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split_ascii_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_ascii_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Some(ProcSample {
            // USER_HZ is 100 on every Linux architecture this runs on.
            cpu: Duration::from_millis((utime + stime) * 10),
            rss_kib,
            at: Instant::now(),
        })
    }

    /// The sum of samples of several processes (a cluster of servers); `None` if any cannot
    /// be read, or if there is none.
    pub fn take_all(pids: &[u32]) -> Option<ProcSample> {
        let mut total: Option<ProcSample> = None;
        for pid in pids {
            let sample = ProcSample::take(Some(*pid))?;
            total = Some(match total {
                None => sample,
                Some(sum) => ProcSample {
                    cpu: sum.cpu + sample.cpu,
                    rss_kib: sum.rss_kib + sample.rss_kib,
                    at: sample.at,
                },
            });
        }
        total
    }

    /// CPU used between `earlier` and this sample, as a percentage of one core.
    pub fn cpu_percent_since(&self, earlier: &ProcSample) -> f64 {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        if wall <= 0.0 {
            return 0.0;
        }
        100.0 * self.cpu.saturating_sub(earlier.cpu).as_secs_f64() / wall
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_precision() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [(0.5, 50_000_000.0), (0.99, 99_000_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000_000);
        assert_eq!(h.quantile(1.0), lower_bound(index(100_000_000)));
    }

    #[test]
    fn small_values_are_exact_and_buckets_are_ordered() {
        for v in 0..LINEAR {
            assert_eq!(lower_bound(index(v)), v);
        }
        for v in [LINEAR, 1000, 123_456, u64::MAX / 3] {
            assert!(lower_bound(index(v)) <= v);
            assert!(lower_bound(index(v) + 1) > v);
        }
    }

    #[test]
    fn duplicates_are_counted_once_seen() {
        let (mut r, mut seen) = (Recorder::default(), Seen::default());
        r.delivery(&mut seen, 3, 200, 0, 10);
        r.delivery(&mut seen, 3, 200, 0, 10);
        r.delivery(&mut seen, 0, 200, 0, 10);
        assert_eq!((r.delivered, r.duplicates), (2, 1));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = ProcSample::take(None).expect("/proc/self is readable");
        assert!(s.rss_kib > 0);
    }
}
