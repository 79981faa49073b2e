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
use prometheus_client::registry::Registry;

use crate::server::Inner;

/// The transport label of request timings.
type TransportLabel = Vec<(&'static str, &'static str)>;

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
            .get_or_create(&vec![("transport", transport.name())])
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

        let dropped = ConstCounter::new(load(&stats.dropped_queue_full));
        let mut family = encoder.encode_descriptor(
            "dropped_messages",
            "Messages dropped, by reason",
            None,
            dropped.metric_type(),
        )?;
        dropped.encode(family.encode_family(&vec![("reason", "queue_full")])?)?;
        let rate_limited = ConstCounter::new(load(
            &stats.refusals[REFUSAL_CODES
                .iter()
                .position(|c| *c == "429")
                .expect("429 is counted")],
        ));
        rate_limited.encode(family.encode_family(&vec![("reason", "rate_limit")])?)?;

        let mut family = encoder.encode_descriptor(
            "refusals",
            "Failed replies, by error code",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (code, counter) in REFUSAL_CODES.iter().zip(&stats.refusals) {
            ConstCounter::new(load(counter))
                .encode(family.encode_family(&vec![("code", *code)])?)?;
        }

        let mut family = encoder.encode_descriptor(
            "sessions_removed",
            "Sessions removed, by reason (disconnect, expiry, ...)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, counter) in REMOVAL_REASONS.iter().zip(&stats.removals) {
            ConstCounter::new(load(counter))
                .encode(family.encode_family(&vec![("reason", *reason)])?)?;
        }

        let census = engine.census();
        let mut family = encoder.encode_descriptor(
            "sessions",
            "Live sessions, by the transport of their last request",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (transport, count) in TRANSPORTS.iter().zip(census.by_transport) {
            ConstGauge::new(count as i64)
                .encode(family.encode_family(&vec![("transport", *transport)])?)?;
        }
        let holding = ConstGauge::new(census.holding as i64);
        holding.encode(encoder.encode_descriptor(
            "held_connects",
            "Sessions with a /meta/connect held",
            None,
            holding.metric_type(),
        )?)?;

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
            prometheus_client::metrics::MetricType::Histogram,
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
