//! Counters of what the engine did, for operators (exported by `bayeux-server` as Prometheus
//! metrics). Relaxed atomics: one uncontended increment per event, no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::listener::RemovalReason;

/// Running totals since the engine started.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Successful handshakes.
    pub handshakes: AtomicU64,
    /// `/meta/connect` requests processed.
    pub connects: AtomicU64,
    /// Messages accepted for publishing (clients and server code).
    pub publishes: AtomicU64,
    /// Messages queued for a session (one per receiving session).
    pub deliveries: AtomicU64,
    /// Messages dropped because a session's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Failed replies, by the first digit group of their error code (see [`REFUSAL_CODES`]).
    pub refusals: [AtomicU64; REFUSAL_CODES.len()],
    /// Sessions removed, by reason (see [`REMOVAL_REASONS`]).
    pub removals: [AtomicU64; REMOVAL_REASONS.len()],
    /// Websocket frames received (counted by the websocket transport).
    pub frames_in: AtomicU64,
    /// Websocket frames sent (counted by the websocket transport).
    pub frames_out: AtomicU64,
}

/// The error codes refusals are counted under; anything else counts as `other`.
pub const REFUSAL_CODES: [&str; 8] = ["400", "402", "403", "404", "405", "429", "503", "other"];

/// The removal reasons, as labels.
pub const REMOVAL_REASONS: [&str; 4] = ["disconnect", "drained", "queue_full", "timeout"];

impl EngineStats {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refusal(&self, error: &str) {
        let code = error.split(':').next().unwrap_or_default();
        let index = REFUSAL_CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(REFUSAL_CODES.len() - 1);
        Self::count(&self.refusals[index]);
    }

    pub(crate) fn count_removal(&self, reason: RemovalReason) {
        let index = match reason {
            RemovalReason::Disconnect => 0,
            RemovalReason::Drained => 1,
            RemovalReason::QueueFull => 2,
            RemovalReason::Timeout => 3,
        };
        Self::count(&self.removals[index]);
    }

    /// Counts one websocket frame received.
    pub fn frame_in(&self) {
        Self::count(&self.frames_in);
    }

    /// Counts websocket frames sent.
    pub fn frames_out(&self, frames: u64) {
        self.frames_out.fetch_add(frames, Ordering::Relaxed);
    }
}

/// A snapshot of the sessions, taken at scrape time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionCensus {
    /// Live sessions by the transport of their last request: websocket, long-polling,
    /// callback-polling, local.
    pub by_transport: [u64; 4],
    /// Sessions with a `/meta/connect` held.
    pub holding: u64,
    /// Queue lengths, for a histogram.
    pub queue_lengths: Vec<u64>,
}
