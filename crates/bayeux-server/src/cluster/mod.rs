//! The cluster driver: runs a [`Server`](crate::Server) as one node of several that share a
//! [`Backplane`].
//!
//! - `reader`: reads the log in order and applies it to the engine; lets go of sessions
//!   another node takes, and adopts sessions released to this one.
//! - `takeover`: serving a request for a session another node served: claim its lease, wait
//!   for the former node to let go (or find it dead), adopt the record, replay the log.
//! - `upkeep`: heartbeats, checkpoints of changed sessions, expiry and drain hand-overs, and
//!   the clean-up of dead nodes by whichever node leads it.
//! - `outbox`: what server code publishes, appended in order in the background.
//! - `presence`: which users are online on any node, counted in the backplane's registry.
//!
//! The engine runs in [`LogMode::Shared`](bayeux_core::LogMode::Shared): a request's changes
//! come back as effects, which `carry_out` appends; they apply when the reader reads them.

mod outbox;
mod presence;
mod reader;
mod takeover;
mod upkeep;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bayeux_core::{Entry, SessionRecord};
use bayeux_message::ClientId;
use tokio::sync::oneshot;

use crate::backplane::{Backplane, BackplaneError, NodeId};

pub(crate) use outbox::run as run_outbox;
pub(crate) use presence::{run as run_presence, Changes as PresenceChanges, PresenceTracker};
pub(crate) use reader::run as run_reader;
pub(crate) use upkeep::{after_sweep, release_all, run as run_upkeep};

/// How a clustered server behaves; CometD has no equivalent, so the names are ours.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// The node's name, for logs and the admin API (default: host name and process id).
    pub node_name: String,
    /// How often the node renews its heartbeat.
    pub heartbeat: Duration,
    /// A node whose heartbeat is this old is dead: its sessions are taken over at once.
    pub node_ttl: Duration,
    /// How often the records of changed sessions are written to the registry. For a session
    /// without `ack`, it bounds what a takeover after a crash may deliver twice; each active
    /// such session costs one small Redis write per period.
    pub checkpoint_period: Duration,
    /// How often the record of a session with `ack` is written when only its acknowledged
    /// position moved (its client says what it has; the record only bounds how far back a
    /// takeover replays).
    pub ack_checkpoint_period: Duration,
    /// Longest wait for a live former node to let go of a session before taking it anyway.
    pub handoff_timeout: Duration,
    /// Log records kept in memory, so that taking a session over rarely reads the log.
    pub replay_buffer: usize,
    /// Log records older than this are trimmed (besides the backplane's own count limit).
    pub retention_age: Option<Duration>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            node_name: default_node_name(),
            heartbeat: Duration::from_millis(500),
            node_ttl: Duration::from_secs(2),
            checkpoint_period: Duration::from_secs(1),
            ack_checkpoint_period: Duration::from_secs(30),
            handoff_timeout: Duration::from_secs(3),
            replay_buffer: 10_000,
            retention_age: None,
        }
    }
}

impl ClusterOptions {
    /// Sets the node's name.
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = name.into();
        self
    }

    /// Sets how often changed session records are written.
    pub fn checkpoint_period(mut self, period: Duration) -> Self {
        self.checkpoint_period = period;
        self
    }

    /// Sets the age past which log records are trimmed.
    pub fn retention_age(mut self, age: Option<Duration>) -> Self {
        self.retention_age = age;
        self
    }

    /// Sets how often heartbeats are renewed and how old one may get before its node counts
    /// as dead.
    pub fn heartbeat(mut self, every: Duration, ttl: Duration) -> Self {
        self.heartbeat = every;
        self.node_ttl = ttl;
        self
    }
}

/// The host name and process id: unique among the processes of one machine.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

/// Counters of what the cluster driver does, for metrics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Records appended to the log.
    pub appended: AtomicU64,
    /// Appends that failed (their requests were refused).
    pub append_failures: AtomicU64,
    /// Records read from the log.
    pub read: AtomicU64,
    /// Times the backplane came back after being unreachable.
    pub reconnects: AtomicU64,
    /// Sessions taken over from a live node that let go of them.
    pub takeovers_handoff: AtomicU64,
    /// Sessions taken over from a dead node (or a released one: drained, stopped).
    pub takeovers_orphan: AtomicU64,
    /// Sessions taken over after their live node did not let go in time.
    pub takeovers_timeout: AtomicU64,
    /// Sessions this node let go of, for another node or on drain.
    pub released: AtomicU64,
    /// Session records written.
    pub checkpoints: AtomicU64,
    /// Log records replayed for sessions taken over.
    pub replayed: AtomicU64,
    /// Sessions of dead nodes removed by this node.
    pub orphans_removed: AtomicU64,
    /// Log records read, summed lag behind their append, in microseconds.
    pub lag_micros: AtomicU64,
    /// The newest lag seen, in microseconds.
    pub last_lag_micros: AtomicU64,
}

/// What the reader has applied, and the recent entries a takeover replays.
pub(crate) struct Applied {
    /// Position of the last record applied.
    pub(crate) position: u64,
    /// The newest entries, oldest first.
    pub(crate) recent: VecDeque<(u64, Entry)>,
    pub(crate) capacity: usize,
}

impl Applied {
    pub(crate) fn remember(&mut self, position: u64, entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        if self.recent.len() == self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((position, entry));
    }
}

/// A takeover waiting for the former node to release the session.
pub(crate) struct Expected {
    pub(crate) epoch: u64,
    /// The registry's record, should the former node no longer have the session.
    pub(crate) fallback: SessionRecord,
    pub(crate) adopted: oneshot::Sender<()>,
}

/// A takeover running here: `None` until it ends, then where it left the session (`None`
/// inside when the backplane failed).
pub(crate) type RunningTakeover = tokio::sync::watch::Receiver<Option<Option<takeover::Served>>>;

/// One node's part of a cluster.
pub(crate) struct Cluster {
    pub(crate) backplane: Arc<dyn Backplane>,
    pub(crate) node: NodeId,
    pub(crate) options: ClusterOptions,
    /// Held while applying log records and while adopting a session, so that a session is
    /// adopted at one exact position of the log.
    pub(crate) applied: tokio::sync::Mutex<Applied>,
    /// Set once the reader knows where the log starts for this node.
    pub(crate) started: AtomicBool,
    /// Whether the last backplane call succeeded.
    pub(crate) up: AtomicBool,
    /// When the backplane last failed a call.
    pub(crate) last_failure: Mutex<Option<tokio::time::Instant>>,
    /// Takeovers waiting for a release, by session.
    pub(crate) expected: Mutex<HashMap<ClientId, Expected>>,
    /// Takeovers running here, by session: later requests for the same session wait on them.
    /// The value is `None` until done, then `Some(None)` when it failed.
    pub(crate) running: Mutex<HashMap<ClientId, RunningTakeover>>,
    pub(crate) stats: ClusterStats,
}

impl Cluster {
    pub(crate) fn new(backplane: Arc<dyn Backplane>, options: ClusterOptions) -> Self {
        let node = NodeId::new(format!("{}#{}", options.node_name, incarnation()));
        Self {
            backplane,
            node,
            applied: tokio::sync::Mutex::new(Applied {
                position: 0,
                recent: VecDeque::new(),
                capacity: options.replay_buffer,
            }),
            options,
            started: AtomicBool::new(false),
            up: AtomicBool::new(false),
            last_failure: Mutex::new(None),
            expected: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            stats: ClusterStats::default(),
        }
    }

    /// True while the backplane answers and the reader has started.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed) && self.started.load(Ordering::Relaxed)
    }

    /// Notes a backplane call's outcome: logs the first failure, counts the recovery.
    pub(crate) fn note<T>(&self, result: &Result<T, BackplaneError>) {
        match result {
            Ok(_) => {
                if !self.up.swap(true, Ordering::Relaxed) && self.started.load(Ordering::Relaxed) {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(node = %self.node, "backplane reachable again");
                }
            }
            Err(error) => {
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now());
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(node = %self.node, %error, "backplane unreachable");
                }
            }
        }
    }

    /// Whether the backplane failed a call within `within`.
    pub(crate) fn failed_within(&self, within: Duration) -> bool {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < within)
    }

    /// Whether `node` lives, as far as heartbeats can tell (the call's outcome noted). Right
    /// after this node found the backplane unreachable, a missing heartbeat says nothing: an
    /// outage longer than `node_ttl` lets every heartbeat run out, the live nodes' too. This
    /// node's own last failure may be up to a heartbeat before the backplane came back, and
    /// another node's next beat up to a heartbeat after, so for `node_ttl + heartbeat` after
    /// a failure every node is presumed alive (a `node_ttl` shorter than two heartbeats would
    /// call live nodes dead anyway).
    pub(crate) async fn is_alive(&self, node: &NodeId) -> Result<bool, BackplaneError> {
        if self.failed_within(self.options.node_ttl + self.options.heartbeat) {
            return Ok(true);
        }
        let alive = self.backplane.is_alive(node).await;
        self.note(&alive);
        alive
    }

    pub(crate) fn expected(&self) -> MutexGuard<'_, HashMap<ClientId, Expected>> {
        self.expected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn running(&self) -> MutexGuard<'_, HashMap<ClientId, RunningTakeover>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A random suffix that tells this process from an earlier one of the same name.
fn incarnation() -> String {
    let mut bytes = [0u8; 4];
    // Without randomness the time still tells restarts apart.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
