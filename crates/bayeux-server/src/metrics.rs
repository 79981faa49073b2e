//! Prometheus (OpenMetrics) metrics of a server: what the engine counted, a census of the
//! sessions taken at scrape time, and how long requests take to process.
//!
//! Rendered by [`crate::Server::render_metrics`]; `bayeux-actix` mounts it at `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use bayeux_core::{TransportKind, REFUSAL_CODES, REMOVAL_REASONS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::cluster::Cluster;
use crate::server::Inner;

/// The transport label of request timings: an array, not a `Vec`, so that looking up the
/// histogram of a request allocates nothing.
type TransportLabel = [(&'static str, &'static str); 1];

/// The server's registry and the metrics recorded on the request path.
pub(crate) struct Metrics {
    registry: Registry,
    request_seconds: Family<TransportLabel, Histogram>,
}

impl Metrics {
    pub(crate) fn new(server: Weak<Inner>) -> Self {
        let mut registry = Registry::with_prefix("bayeux");
        let request_seconds = Family::<TransportLabel, Histogram>::new_with_constructor(|| {
            // 20 µs .. ~0.3 s: engine processing of one request, holds excluded.
            Histogram::new(exponential_buckets(0.000_02, 2.0, 15))
        });
        registry.register(
            "request_processing_seconds",
            "Time to process one request's batch (a held connect's wait not included)",
            request_seconds.clone(),
        );
        registry.register_collector(Box::new(EngineCollector(server)));
        Self {
            registry,
            request_seconds,
        }
    }

    pub(crate) fn observe_request(&self, transport: TransportKind, took: Duration) {
        self.request_seconds
            .get_or_create(&[("transport", transport.name())])
            .observe(took.as_secs_f64());
    }

    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One metric family with one label: a `(name, help, type)` and a value per label value.
fn labelled(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    label: &'static str,
    values: impl IntoIterator<Item = (&'static str, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (value_label, value) in values {
        let labels = vec![(label, value_label)];
        let sample = family.encode_family(&labels)?;
        match kind {
            MetricType::Gauge => ConstGauge::new(value as i64).encode(sample)?,
            _ => ConstCounter::new(value).encode(sample)?,
        }
    }
    Ok(())
}

/// The cluster driver's gauges and counters.
fn encode_cluster(
    encoder: &mut DescriptorEncoder,
    cluster: &Cluster,
) -> Result<(), std::fmt::Error> {
    let stats = &cluster.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let gauges = [
        (
            "backplane_up",
            "1 while the backplane answers and the log is being read, else 0",
            i64::from(cluster.is_up()),
        ),
        (
            "backplane_lag_microseconds",
            "Age of the newest log record when this node applied it",
            load(&stats.last_lag_micros) as i64,
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = ConstGauge::new(value);
        gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
    }
    let counters = [
        (
            "backplane_appends",
            "Records appended to the shared log",
            load(&stats.appended),
        ),
        (
            "backplane_append_failures",
            "Records the shared log refused (their requests failed)",
            load(&stats.append_failures),
        ),
        (
            "backplane_records_read",
            "Records read from the shared log",
            load(&stats.read),
        ),
        (
            "backplane_lag_microseconds_sum",
            "Summed age of the log records when applied (divide by records read)",
            load(&stats.lag_micros),
        ),
        (
            "backplane_reconnects",
            "Times the backplane answered again after being unreachable",
            load(&stats.reconnects),
        ),
        (
            "backplane_checkpoints",
            "Session records written to the registry",
            load(&stats.checkpoints),
        ),
        (
            "backplane_replayed_records",
            "Log records replayed for sessions taken over",
            load(&stats.replayed),
        ),
        (
            "sessions_handed_over",
            "Sessions this node let go of to another node (hand-over, drain, stop)",
            load(&stats.released),
        ),
        (
            "orphan_sessions_removed",
            "Sessions of dead nodes this node removed",
            load(&stats.orphans_removed),
        ),
    ];
    for (name, help, value) in counters {
        let counter = ConstCounter::new(value);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    labelled(
        encoder,
        (
            "takeovers",
            "Sessions taken over from another node, by how: it handed them over, it was dead \
             or had released them, or it did not answer in time",
            MetricType::Counter,
        ),
        "how",
        [
            ("handoff", load(&stats.takeovers_handoff)),
            ("orphan", load(&stats.takeovers_orphan)),
            ("timeout", load(&stats.takeovers_timeout)),
        ],
    )
}

/// Reads the engine's counters and takes the session census on each scrape.
#[derive(Debug)]
struct EngineCollector(Weak<Inner>);

const TRANSPORTS: [&str; 4] = ["websocket", "long-polling", "callback-polling", "local"];
const QUEUE_BUCKETS: [u64; 7] = [0, 1, 10, 100, 1_000, 10_000, 100_000];

impl Collector for EngineCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.0.upgrade() else {
            return Ok(());
        };
        let engine = &inner.engine;
        let stats = engine.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);

        let counters = [
            (
                "handshakes",
                "Successful handshakes",
                load(&stats.handshakes),
            ),
            (
                "connects",
                "/meta/connect requests processed",
                load(&stats.connects),
            ),
            (
                "publishes",
                "Messages accepted for publishing",
                load(&stats.publishes),
            ),
            (
                "deliveries",
                "Messages queued for a session, one per receiver",
                load(&stats.deliveries),
            ),
            (
                "websocket_frames_in",
                "Websocket frames received",
                load(&stats.frames_in),
            ),
            (
                "websocket_frames_out",
                "Websocket frames sent",
                load(&stats.frames_out),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }

        let rate_limited = REFUSAL_CODES
            .iter()
            .position(|c| *c == "429")
            .expect("429 is counted");
        labelled(
            &mut encoder,
            (
                "dropped_messages",
                "Messages dropped, by reason",
                MetricType::Counter,
            ),
            "reason",
            [
                ("queue_full", load(&stats.dropped_queue_full)),
                ("rate_limit", load(&stats.refusals[rate_limited])),
            ],
        )?;
        labelled(
            &mut encoder,
            (
                "refusals",
                "Failed replies, by error code",
                MetricType::Counter,
            ),
            "code",
            REFUSAL_CODES
                .iter()
                .copied()
                .zip(stats.refusals.iter().map(load)),
        )?;
        labelled(
            &mut encoder,
            (
                "sessions_removed",
                "Sessions removed, by reason (disconnect, expiry, ...)",
                MetricType::Counter,
            ),
            "reason",
            REMOVAL_REASONS
                .iter()
                .copied()
                .zip(stats.removals.iter().map(load)),
        )?;

        let census = engine.census();
        labelled(
            &mut encoder,
            (
                "sessions",
                "Live sessions, by the transport of their last request",
                MetricType::Gauge,
            ),
            "transport",
            TRANSPORTS.iter().copied().zip(census.by_transport),
        )?;
        let holding = ConstGauge::new(census.holding as i64);
        holding.encode(encoder.encode_descriptor(
            "held_connects",
            "Sessions with a /meta/connect held",
            None,
            holding.metric_type(),
        )?)?;

        if let Some(cluster) = &inner.cluster {
            encode_cluster(&mut encoder, cluster)?;
        }

        // Queue depths as a histogram: how many sessions have at most N messages waiting.
        let mut buckets: Vec<(f64, u64)> = QUEUE_BUCKETS.iter().map(|b| (*b as f64, 0)).collect();
        buckets.push((f64::INFINITY, 0));
        let mut sum = 0.0;
        for len in &census.queue_lengths {
            sum += *len as f64;
            if let Some(bucket) = buckets.iter_mut().find(|(bound, _)| *len as f64 <= *bound) {
                bucket.1 += 1;
            }
        }
        // Per-bucket counts: the encoder makes them cumulative, as OpenMetrics wants.
        let mut histogram = encoder.encode_descriptor(
            "queue_depth",
            "Messages waiting per session, at scrape time",
            None,
            MetricType::Histogram,
        )?;
        histogram.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum,
            census.queue_lengths.len() as u64,
            &buckets,
            None,
        )?;
        Ok(())
    }
}
