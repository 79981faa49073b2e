//! One session's state: its queue, subscriptions, held connect and expiry.
//!
//! Each session has its own small lock, taken for a push or a drain and never across an await,
//! so publishes to different sessions never contend. Lock order, everywhere in the crate: the
//! sessions map, then a session, then the subscription index or the browser counters; never
//! the other way round.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bayeux_message::{ChannelName, ClientId, EncodedMessage, Message};
use serde_json::Value;

use crate::ack::{AckNumbering, AckQueue};
use crate::config::{EngineConfig, PublishRate, QueueFullPolicy, TransportKind};
use crate::extension::Extension;
use crate::ids::BrowserId;
use crate::stats::EngineStats;

/// A server session, shared between the engine, the subscription index and held connects.
pub struct Session {
    id: ClientId,
    browser: Option<BrowserId>,
    /// The client has presented `browser` back: from then on an HTTP request must carry it.
    /// A client that keeps no cookies never does, and is found by its `clientId` alone.
    cookie_bound: AtomicBool,
    created_at: Instant,
    state: Mutex<SessionState>,
    /// Extensions of this session only (run after the server's on the way in, before them
    /// on the way out). Rarely used, so kept out of the hot state's lock.
    extensions: RwLock<Vec<Arc<dyn Extension>>>,
    has_extensions: AtomicBool,
    /// How acknowledged batches are numbered, should the client ask for them.
    numbering: AckNumbering,
}

pub(crate) struct SessionState {
    pub(crate) queue: VecDeque<Queued>,
    /// Subscription names, each with the log position from which it counts (0 on one node):
    /// a session taken over by another node is sent only what it was subscribed to then.
    pub(crate) subscriptions: HashMap<ChannelName, u64>,
    pub(crate) hold: Option<HoldSlot>,
    /// Set by the first `/meta/connect`: the first one is always answered at once.
    pub(crate) connected: bool,
    /// Removed, or moved to another node: nothing is queued for it any more.
    pub(crate) removed: bool,
    /// When the session expires if no connect is held.
    pub(crate) expire_at: Instant,
    /// Nesting depth of requests being processed for this session: while above zero, a queued
    /// message does not wake the held connect, because the request's response may carry it.
    pub(crate) batch_depth: u32,
    /// The next connect reply carries full advice.
    pub(crate) readvise: bool,
    /// The last connect reply told the client it shares its browser with another poller.
    pub(crate) multiple_clients: bool,
    /// Effective `interval`, including the client's transient advice.
    pub(crate) interval: Duration,
    pub(crate) next_ticket: u64,
    pub(crate) dropped: u64,
    /// The websocket connection that pushes this session's deliveries as they are queued.
    pub(crate) pusher: Option<PusherSlot>,
    /// Set when the client asked for acknowledged delivery (the `ack` extension).
    pub(crate) ack: Option<AckQueue>,
    pub(crate) attributes: HashMap<String, Value>,
    /// The user the session is associated with (presence).
    pub(crate) user: Option<Arc<str>>,
    /// Set for a local (server-side) session: deliveries go to it at once, and the session
    /// never expires.
    pub(crate) sink: Option<LocalSink>,
    /// When queued lazy messages must go out at the latest.
    pub(crate) flush_at: Option<Instant>,
    /// The transport of the session's last request, for metrics.
    pub(crate) transport: TransportKind,
    /// The publish rate limiter's bucket: tokens left, as of when.
    pub(crate) publish_tokens: (f64, Option<Instant>),
    /// Log position of the last message handed to the client (a cluster's checkpoint).
    pub(crate) sent_through: u64,
    /// The session moved to another node: a held connect is answered with advice to retry
    /// (there), not to stop.
    pub(crate) moved: bool,
    /// Something a checkpoint records changed since the last one was taken (subscriptions,
    /// attributes, ack).
    pub(crate) dirty: bool,
    /// The checkpoint position moved since the last one was taken.
    pub(crate) position_moved: bool,
    /// When the last checkpoint of this session was taken.
    pub(crate) checkpointed_at: Option<Instant>,
    /// Requests of this session being processed on this node (a cluster does not move a
    /// session away in the middle of one).
    pub(crate) in_use: u32,
}

/// A message waiting in a session's queue.
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    /// Its position in the shared log; 0 on a single node.
    pub(crate) position: u64,
    pub(crate) message: EncodedMessage,
}

/// Where a local session's deliveries go.
pub type LocalSink = Arc<dyn Fn(&EncodedMessage) + Send + Sync>;

/// The connection attached to push a session's deliveries.
pub(crate) struct PusherSlot {
    pub(crate) connection: u64,
    pub(crate) waker: Option<Waker>,
}

/// The `/meta/connect` a session has outstanding.
pub(crate) struct HoldSlot {
    pub(crate) ticket: u64,
    /// What the answer echoes of the held connect: its `id` and `ext`. Kept apart rather than
    /// as the whole message, which costs a map node (about 600 bytes) per idle client.
    pub(crate) id: Option<Value>,
    pub(crate) ext: Option<Value>,
    pub(crate) deadline: Instant,
    pub(crate) released: bool,
    /// Released because something was queued (not by a removal, a move, a newer connect):
    /// its answer may wait the flush window.
    pub(crate) for_delivery: bool,
    pub(crate) waker: Option<Waker>,
    /// The browser whose held-connect count this hold takes part in.
    pub(crate) browser: Option<BrowserId>,
}

impl HoldSlot {
    /// Lets the waiter answer this hold: something was queued for it.
    pub(crate) fn release_for_delivery(&mut self) {
        if !self.released {
            self.for_delivery = true;
        }
        self.release();
    }

    /// The held connect as its answer and the extensions' reply hooks see it (`channel`,
    /// `clientId`, `id`, `ext`).
    pub(crate) fn request(&self, client_id: &ClientId) -> Message {
        let mut request = Message::new()
            .with("channel", "/meta/connect")
            .with("clientId", client_id.as_str());
        if let Some(id) = &self.id {
            request = request.with("id", id.clone());
        }
        if let Some(ext) = &self.ext {
            request = request.with("ext", ext.clone());
        }
        request
    }

    /// Lets the waiter of this hold answer it.
    pub(crate) fn release(&mut self) {
        self.released = true;
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl Session {
    /// A session whose checkpoint starts at log position `position` (0 on a single node).
    pub(crate) fn new(
        id: ClientId,
        browser: Option<BrowserId>,
        cookie_bound: bool,
        created_at: Instant,
        expire_at: Instant,
        numbering: AckNumbering,
        position: u64,
    ) -> Self {
        Self {
            id,
            browser,
            cookie_bound: AtomicBool::new(cookie_bound),
            created_at,
            numbering,
            extensions: RwLock::new(Vec::new()),
            has_extensions: AtomicBool::new(false),
            state: Mutex::new(SessionState {
                queue: VecDeque::new(),
                subscriptions: HashMap::new(),
                hold: None,
                connected: false,
                removed: false,
                expire_at,
                batch_depth: 0,
                readvise: false,
                multiple_clients: false,
                interval: Duration::ZERO,
                next_ticket: 0,
                dropped: 0,
                pusher: None,
                ack: None,
                attributes: HashMap::new(),
                user: None,
                sink: None,
                flush_at: None,
                publish_tokens: (0.0, None),
                transport: TransportKind::LongPolling,
                sent_through: position,
                moved: false,
                dirty: false,
                position_moved: false,
                checkpointed_at: None,
                in_use: 0,
            }),
        }
    }

    /// The session's `clientId`.
    pub fn client_id(&self) -> &ClientId {
        &self.id
    }

    /// The browser cookie the session was handshaken with (HTTP transports only).
    pub fn browser(&self) -> Option<&BrowserId> {
        self.browser.as_ref()
    }

    /// Whether the client has presented its browser cookie back, binding the session to it.
    pub fn cookie_bound(&self) -> bool {
        self.cookie_bound.load(Ordering::Relaxed)
    }

    /// Binds the session to its cookie, once; the next checkpoint records it.
    pub(crate) fn bind_cookie(&self) {
        if !self.cookie_bound() && !self.cookie_bound.swap(true, Ordering::Relaxed) {
            self.lock().dirty = true;
        }
    }

    /// Messages waiting to be sent.
    pub fn queue_len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Messages dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// When the session was created (engine time).
    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    /// The transport of the session's last request.
    pub fn transport(&self) -> TransportKind {
        self.lock().transport
    }

    /// The channels and patterns the session subscribes to.
    pub fn subscriptions(&self) -> Vec<ChannelName> {
        let mut subs: Vec<_> = self.lock().subscriptions.keys().cloned().collect();
        subs.sort();
        subs
    }

    /// Queues a message, then wakes whoever sends it: the websocket pusher when one is
    /// attached, else the held connect (unless a request of this session is in progress and
    /// its response may carry the message).
    ///
    /// A lazy message (`flush_by` set) wakes nobody: it waits for the next wake-up, or for
    /// the sweep that finds `flush_by` passed. Returns false when the queue overflowed under
    /// `QueueFullPolicy::Disconnect`: the caller removes the session.
    pub(crate) fn enqueue(
        &self,
        msg: EncodedMessage,
        position: u64,
        config: &EngineConfig,
        stats: &EngineStats,
        flush_by: Option<Instant>,
    ) -> bool {
        let Some(msg) = self.outgoing(msg) else {
            return true;
        };
        let mut st = self.lock();
        if st.removed {
            return true;
        }
        if let Some(sink) = st.sink.clone() {
            // A local session: hand the message to the application, outside the lock.
            drop(st);
            sink(&msg);
            return true;
        }
        if st.queue.len() >= config.max_queue.max(1) {
            st.dropped += 1;
            EngineStats::count(&stats.dropped_queue_full);
            match config.queue_full_policy {
                QueueFullPolicy::Disconnect => return false,
                QueueFullPolicy::DropOldest => {
                    st.queue.pop_front();
                }
            }
        }
        st.queue.push_back(Queued {
            position,
            message: msg,
        });
        if let Some(flush_by) = flush_by {
            st.flush_at = Some(st.flush_at.map_or(flush_by, |at| at.min(flush_by)));
            return true;
        }
        let batching = st.batch_depth > 0;
        let deliver_only = st.deliver_only(config);
        let st = &mut *st;
        match (st.pusher.as_mut(), st.hold.as_mut()) {
            (Some(pusher), _) if !deliver_only => {
                if let Some(waker) = pusher.waker.take() {
                    waker.wake();
                }
            }
            (_, Some(hold)) if !batching => hold.release_for_delivery(),
            _ => {}
        }
        true
    }

    /// Runs this session's own outgoing hooks, if it has any, on a message for it.
    fn outgoing(&self, msg: EncodedMessage) -> Option<EncodedMessage> {
        let extensions = self.extensions();
        if extensions.is_empty() {
            return Some(msg);
        }
        let mut decoded = msg.decode();
        for ext in extensions.iter().rev() {
            if !ext.outgoing(&mut decoded) {
                return None;
            }
        }
        Some(decoded.encode())
    }

    /// Polls whether the hold `ticket` may be answered: released, superseded or gone.
    /// Whether the hold `ticket` was released by a delivery (and is still this session's).
    pub(crate) fn hold_released_for_delivery(&self, ticket: u64) -> bool {
        self.lock()
            .hold
            .as_ref()
            .is_some_and(|slot| slot.ticket == ticket && slot.released && slot.for_delivery)
    }

    pub(crate) fn poll_hold(&self, ticket: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.lock();
        match st.hold.as_mut() {
            Some(slot) if slot.ticket == ticket && !slot.released => {
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Adds an extension for this session only: its `incoming` hook sees this session's
    /// messages after the server's extensions, its `outgoing_reply` and `outgoing` hooks see
    /// replies and deliveries to this session before the server's (each delivery then costs a
    /// decode and an encode for this session).
    pub fn add_extension(&self, extension: Arc<dyn Extension>) {
        self.extensions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(extension);
        self.has_extensions.store(true, Ordering::Release);
    }

    /// This session's own extensions (empty for almost every session).
    pub(crate) fn extensions(&self) -> Vec<Arc<dyn Extension>> {
        if !self.has_extensions.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.extensions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A value the application attached to the session (credentials, user name, ...).
    pub fn attribute(&self, key: &str) -> Option<Value> {
        self.lock().attributes.get(key).cloned()
    }

    /// Attaches a value to the session, replacing any under the same key.
    pub fn set_attribute(&self, key: impl Into<String>, value: impl Into<Value>) {
        let mut st = self.lock();
        st.attributes.insert(key.into(), value.into());
        // In a cluster, attributes travel with the session's record.
        st.dirty = true;
    }

    /// Associates the session with a user (Seti's `associate`): call it from the security
    /// policy's `can_handshake` once the credentials are checked; the user comes online with
    /// the session. Later, use `Server::associate`.
    pub fn set_user(&self, user: impl Into<Arc<str>>) {
        let mut st = self.lock();
        st.user = Some(user.into());
        // In a cluster, the user travels with the session's record.
        st.dirty = true;
    }

    /// The user the session is associated with.
    pub fn user(&self) -> Option<Arc<str>> {
        self.lock().user.clone()
    }

    /// Removes a value attached to the session.
    pub fn remove_attribute(&self, key: &str) -> Option<Value> {
        let mut st = self.lock();
        st.dirty = true;
        st.attributes.remove(key)
    }

    /// Takes one publish from the session's allowance under `rate` (always true without one).
    pub(crate) fn take_publish_token(&self, now: Instant, rate: Option<PublishRate>) -> bool {
        let Some(rate) = rate else {
            return true;
        };
        let capacity = f64::from(rate.messages.max(1));
        let mut st = self.lock();
        let (tokens, since) = st.publish_tokens;
        let refill = since.map_or(capacity, |since| {
            let elapsed = now.saturating_duration_since(since).as_secs_f64();
            elapsed / rate.per.as_secs_f64().max(f64::MIN_POSITIVE) * capacity
        });
        let tokens = (tokens + refill).min(capacity);
        let allowed = tokens >= 1.0;
        st.publish_tokens = (if allowed { tokens - 1.0 } else { tokens }, Some(now));
        allowed
    }

    /// True for a local (server-side) session.
    pub fn is_local(&self) -> bool {
        self.lock().sink.is_some()
    }

    /// True once the client asked for acknowledged delivery.
    pub fn is_ack_enabled(&self) -> bool {
        self.lock().ack.is_some()
    }

    /// Messages sent with acknowledged delivery and not acknowledged yet.
    pub fn unacknowledged(&self) -> usize {
        self.lock().ack.as_ref().map_or(0, AckQueue::len)
    }

    pub(crate) fn enable_ack(&self) {
        let mut st = self.lock();
        if st.ack.is_none() {
            st.ack = Some(AckQueue::new(self.numbering, st.sent_through));
            st.dirty = true;
        }
    }

    pub(crate) fn acknowledge(&self, batch: u64) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(ack) = st.ack.as_mut() else {
            return;
        };
        if ack.acknowledge(batch) {
            st.position_moved = true;
        }
        if self.numbering == AckNumbering::Positions {
            // Batches are log positions: what is queued at or before the acknowledged one
            // reached the client already, through the node that had the session before.
            while st.queue.front().is_some_and(|q| q.position <= batch) {
                st.queue.pop_front();
            }
        }
    }

    pub(crate) fn ack_batch_sent(&self) -> Option<u64> {
        self.lock().ack.as_ref().and_then(AckQueue::sent_batch)
    }

    pub(crate) fn is_hold_pending(&self, ticket: u64) -> bool {
        matches!(&self.lock().hold, Some(slot) if slot.ticket == ticket && !slot.released)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        // A panic while holding this lock leaves plain data behind, still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionState {
    /// Sends queued lazy messages now, if their time has come: wakes the pusher, else
    /// releases the held connect.
    pub(crate) fn flush_lazy(&mut self, now: Instant, config: &EngineConfig) {
        if self.flush_at.is_none_or(|at| at > now) || self.batch_depth > 0 {
            return;
        }
        self.flush_at = None;
        let deliver_only = self.deliver_only(config);
        match (self.pusher.as_mut(), self.hold.as_mut()) {
            (Some(pusher), _) if !deliver_only => {
                if let Some(waker) = pusher.waker.take() {
                    waker.wake();
                }
            }
            (_, Some(hold)) => hold.release_for_delivery(),
            _ => {}
        }
    }

    /// Deliveries only with connect replies: never piggy-backed, never pushed.
    pub(crate) fn deliver_only(&self, config: &EngineConfig) -> bool {
        config.meta_connect_deliver_only || self.ack.is_some()
    }

    /// The deliveries a connect reply carries: the queue, or with acknowledged delivery
    /// everything not acknowledged yet, numbered as a new batch.
    pub(crate) fn drain_for_connect(&mut self) -> Vec<EncodedMessage> {
        if self.ack.is_none() {
            return self.drain_queue();
        }
        self.flush_at = None;
        self.note_sent();
        let fresh = self.queue.drain(..);
        let ack = self.ack.as_mut().expect("checked just above");
        ack.send(fresh)
    }

    /// Everything queued, in order, now handed to the client.
    pub(crate) fn drain_queue(&mut self) -> Vec<EncodedMessage> {
        self.flush_at = None;
        self.note_sent();
        self.queue.drain(..).map(|q| q.message).collect()
    }

    /// Records that the queue is about to be handed to the client.
    fn note_sent(&mut self) {
        if let Some(last) = self.queue.back() {
            if last.position > self.sent_through {
                self.sent_through = last.position;
                // With ack, the checkpoint is what the client acknowledged, not what was sent.
                if self.ack.is_none() {
                    self.position_moved = true;
                }
            }
        }
    }

    /// Pushes expiry back after a non-connect message: `max(expire_at, now + maxInterval)`.
    pub(crate) fn touch(&mut self, now: Instant, max_interval: Duration) {
        if self.hold.is_none() {
            self.expire_at = self.expire_at.max(now + max_interval);
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
