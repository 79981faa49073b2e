//! [`Server`]: the engine plus a clock, timers and a background sweeper; in a cluster, also
//! the driver that carries the engine's effects to the backplane.

use std::fmt;
use std::future::{poll_fn, Future};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bayeux_core::{
    Action, Authorizer, ChannelListener, ChannelOptions, Engine, EngineConfig, Entry, Extension,
    Hold, HoldEnd, IdSource, LogMode, MessageListener, Outcome, PresenceListener, RemovalReason,
    RequestContext, RequestError, Retention, SecurityPolicy, Service, ServiceReply,
    SessionListener,
};
use bayeux_message::{ChannelName, ClientId, Message};
use futures::future::Either;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::backplane::{Backplane, LogRecord};
use crate::cluster::{Cluster, ClusterOptions};
use crate::ids::RandomIds;
use crate::local::LocalSession;
use crate::metrics::Metrics;

/// A running Bayeux server. Cheap to clone: all clones share one engine.
#[derive(Clone)]
pub struct Server {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    /// Set when the server is one node of a cluster.
    pub(crate) cluster: Option<Cluster>,
    /// Entries made by server code (publishes, deliveries), appended in order by a task.
    outbox: Option<mpsc::Sender<LogRecord>>,
    /// In a cluster: changes of sessions' users, carried out in order by a task.
    pub(crate) presence_changes: Option<crate::cluster::PresenceChanges>,
    metrics: Metrics,
}

impl Inner {
    /// The cluster driver.
    ///
    /// # Panics
    /// On a server that is not part of a cluster: only cluster tasks call it.
    pub(crate) fn cluster(&self) -> &Cluster {
        self.cluster
            .as_ref()
            .expect("cluster tasks run only on clustered servers")
    }
}

/// Why a server-side publish was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// Not a valid channel name.
    InvalidChannel(String),
    /// Meta, service and wildcard channels cannot be published to.
    NotBroadcast(String),
    /// Services live on `/service/...` channels.
    NotService(String),
    /// A clustered server has more unsent messages than it keeps while its backplane is
    /// unreachable.
    Unavailable,
}

/// Why a delivery to a user could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceError {
    /// Not a valid channel name, or not a broadcast or service channel.
    InvalidChannel(String),
    /// A clustered server has more unsent messages than it keeps while its backplane is
    /// unreachable.
    Unavailable,
}

impl fmt::Display for PresenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidChannel(name) => write!(f, "invalid channel name {name:?}"),
            Self::Unavailable => write!(f, "too many messages wait for the backplane"),
        }
    }
}

impl std::error::Error for PresenceError {}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidChannel(name) => write!(f, "invalid channel name {name:?}"),
            Self::NotBroadcast(name) => write!(f, "{name:?} is not a broadcast channel"),
            Self::NotService(name) => write!(f, "{name:?} is not a /service/ channel"),
            Self::Unavailable => write!(f, "backplane unavailable and outbox full"),
        }
    }
}

impl std::error::Error for PublishError {}

/// Messages from server code waiting for the backplane, at most.
const OUTBOX_CAPACITY: usize = 10_000;

impl Server {
    /// Starts building a server with CometD's default options.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Processes a request's batch. A held `/meta/connect` comes back in
    /// [`Outcome::hold`]: pass it to [`Server::wait_hold`].
    ///
    /// In a cluster, a batch for a session another node served first moves the session here
    /// (see `crate::cluster`), and the replies that depend on the shared log are final only
    /// once the log has what they confirm. On a single node the answer is ready at once: the
    /// future costs nothing more than the outcome it holds.
    pub fn handle<'a>(
        &'a self,
        ctx: &'a RequestContext,
        batch: Vec<Message>,
    ) -> impl Future<Output = Result<Outcome, RequestError>> + Send + 'a {
        // One span per request, with the fields an operator filters on.
        let first = batch.first();
        let span = tracing::debug_span!(
            "bayeux_request",
            transport = ctx.transport.name(),
            client_id = first.and_then(Message::client_id).unwrap_or(""),
            channel = first.and_then(Message::channel).unwrap_or(""),
            messages = batch.len(),
        );
        if self.inner.cluster.is_none() {
            let _entered = span.enter();
            return Either::Left(std::future::ready(self.process(ctx, batch)));
        }
        // Boxed: the cluster's future is large, and a held request's future would otherwise
        // carry its size inline.
        Either::Right(Box::pin(self.handle_clustered(ctx, batch).instrument(span)))
    }

    /// Runs a batch through the engine, recording its processing time.
    fn process(&self, ctx: &RequestContext, batch: Vec<Message>) -> Result<Outcome, RequestError> {
        let started = now();
        let outcome = self.inner.engine.handle(started, ctx, batch);
        self.inner
            .metrics
            .observe_request(ctx.transport, now().saturating_duration_since(started));
        let outcome = outcome?;
        if let Some(cid) = &outcome.handshaken {
            tracing::debug!(client_id = %cid, transport = ctx.transport.name(), "handshake");
        }
        Ok(outcome)
    }

    async fn handle_clustered(
        &self,
        ctx: &RequestContext,
        batch: Vec<Message>,
    ) -> Result<Outcome, RequestError> {
        // The session is served here, and stays here until this request is done (the guard).
        let mut _in_use = None;
        if !batch.is_empty() {
            match self.serve_session_of(ctx, &batch).await {
                Ok(guard) => _in_use = guard,
                Err(refusal) => {
                    return Ok(Outcome {
                        messages: self.inner.engine.refuse_batch(&batch, &refusal),
                        ..Outcome::default()
                    })
                }
            }
        }
        let mut outcome = self.process(ctx, batch)?;
        if !outcome.effects.is_empty() {
            self.carry_out(&mut outcome).await;
        }
        Ok(outcome)
    }

    /// Processes a batch of a local session, at once: its subscriptions apply here, and in a
    /// cluster its publishes go to the outbox, appended in order in the background.
    pub(crate) fn handle_local(
        &self,
        ctx: &RequestContext,
        batch: Vec<Message>,
    ) -> Result<Outcome, RequestError> {
        let mut outcome = self.inner.engine.handle(now(), ctx, batch)?;
        for effect in std::mem::take(&mut outcome.effects) {
            let queued = match &effect.action {
                Action::Append(entry) => self.send_to_outbox(entry.clone()).is_ok(),
                _ => false,
            };
            self.inner
                .engine
                .settle(effect, queued, &mut outcome.messages);
        }
        Ok(outcome)
    }

    /// Carries out a request's effects on the backplane, then settles each: consecutive
    /// appends go in one call.
    async fn carry_out(&self, outcome: &mut Outcome) {
        let cluster = self.inner.cluster();
        let backplane = &cluster.backplane;
        let effects = std::mem::take(&mut outcome.effects);
        let mut done = Vec::with_capacity(effects.len());
        let mut index = 0;
        while index < effects.len() {
            match &effects[index].action {
                Action::Append(_) => {
                    let records: Vec<LogRecord> = effects[index..]
                        .iter()
                        .map_while(|effect| match &effect.action {
                            Action::Append(entry) => Some(LogRecord::Entry(entry.clone())),
                            _ => None,
                        })
                        .collect();
                    let count = records.len();
                    let appended = backplane.append(records).await;
                    cluster.note(&appended);
                    let counter = match appended {
                        Ok(_) => &cluster.stats.appended,
                        Err(_) => &cluster.stats.append_failures,
                    };
                    counter.fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                    done.extend(std::iter::repeat_n(appended.is_ok(), count));
                    index += count;
                    continue;
                }
                Action::Register(cid) => {
                    let ok = match self.inner.engine.snapshot(cid.as_str()) {
                        Some(record) => {
                            let registered = backplane.register(&cluster.node, &record).await;
                            cluster.note(&registered);
                            registered.is_ok()
                        }
                        None => false,
                    };
                    done.push(ok);
                }
                Action::Unregister(cid) => {
                    let removed = backplane.remove(cid, Some(&cluster.node)).await;
                    cluster.note(&removed);
                    done.push(removed.is_ok());
                }
                other => {
                    tracing::error!(?other, "unknown effect");
                    done.push(false);
                }
            }
            index += 1;
        }
        for (effect, ok) in effects.into_iter().zip(done) {
            self.inner.engine.settle(effect, ok, &mut outcome.messages);
        }
    }

    /// Queues an entry made by server code for the log; `Unavailable` when the outbox is full.
    fn send_to_outbox(&self, entry: Entry) -> Result<(), PublishError> {
        let outbox = self
            .inner
            .outbox
            .as_ref()
            .expect("clustered servers have an outbox");
        outbox
            .try_send(LogRecord::Entry(entry))
            .map_err(|_| PublishError::Unavailable)
    }

    /// Waits until the held connect is released or reaches its deadline, then answers it.
    ///
    /// If this future is dropped first (the client went away), the hold is abandoned and the
    /// session starts its expiry countdown, so nothing leaks.
    pub async fn wait_hold(&self, hold: Hold) -> HoldEnd {
        let guard = AbandonOnDrop {
            engine: &self.inner.engine,
            hold: Some(hold),
        };
        let hold_ref = guard.hold.as_ref().expect("set just above");
        let client_id = hold_ref.client_id().clone();
        let deadline = tokio::time::Instant::from_std(hold_ref.deadline());
        tracing::trace!(%client_id, "connect held");
        tokio::select! {
            () = poll_fn(|cx| hold_ref.poll_released(cx)) => {
                let delay = hold_ref.flush_delay(self.inner.engine.config());
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
        }
        let hold = guard.disarm();
        let end = self.inner.engine.complete_hold(now(), hold);
        match &end {
            HoldEnd::Reply(messages) => {
                tracing::trace!(%client_id, messages = messages.len(), "connect answered");
            }
            HoldEnd::Superseded => tracing::debug!(%client_id, "connect superseded"),
        }
        end
    }

    /// Like [`Server::wait_hold`], unless `gone` completes first, or has completed by the time
    /// the hold ends: the client went away, so the hold is abandoned and `None` returned, with
    /// everything still queued for the session's next connect.
    pub async fn wait_hold_unless(
        &self,
        hold: Hold,
        gone: impl Future<Output = ()>,
    ) -> Option<HoldEnd> {
        let guard = AbandonOnDrop {
            engine: &self.inner.engine,
            hold: Some(hold),
        };
        let hold_ref = guard.hold.as_ref().expect("set just above");
        let deadline = tokio::time::Instant::from_std(hold_ref.deadline());
        let mut gone = std::pin::pin!(gone);
        tokio::select! {
            () = poll_fn(|cx| hold_ref.poll_released(cx)) => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = gone.as_mut() => {
                tracing::debug!(client_id = %hold_ref.client_id(), "held connect's client gone");
                return None;
            }
        }
        // Released by a delivery: more may come within the flush window, for the same answer.
        let delay = hold_ref.flush_delay(self.inner.engine.config());
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = gone.as_mut() => {
                    tracing::debug!(client_id = %hold_ref.client_id(), "held connect's client gone");
                    return None;
                }
            }
        }
        // Released: a last look before draining the queue into an answer nobody may read.
        if futures::poll!(gone.as_mut()).is_ready() {
            tracing::debug!(client_id = %hold_ref.client_id(), "held connect's client gone");
            return None;
        }
        let hold = guard.disarm();
        Some(self.inner.engine.complete_hold(now(), hold))
    }

    /// Publishes `data` on a broadcast channel to every subscriber.
    ///
    /// On one node the message is queued for them before this returns. In a cluster it is
    /// queued for the shared log and appended in order, retried while the backplane is
    /// unreachable; `Unavailable` once too many wait.
    pub fn publish(&self, channel: &str, data: Value) -> Result<(), PublishError> {
        let name = parse_channel(channel)?;
        let engine = &self.inner.engine;
        if engine.log_mode() == LogMode::Inline {
            return engine
                .publish(now(), &name, data)
                .map(|_| ())
                .map_err(|_| PublishError::NotBroadcast(channel.to_owned()));
        }
        match engine.prepare_publish(&name, data) {
            Ok(Some(entry)) => self.send_to_outbox(entry),
            Ok(None) => Ok(()),
            Err(_) => Err(PublishError::NotBroadcast(channel.to_owned())),
        }
    }

    /// Sends `data` on `channel` straight to one session (no subscription needed): a private
    /// message, or a late answer. Returns false when the session does not exist.
    ///
    /// In a cluster only the sessions this node serves are checked: a delivery to another is
    /// sent through the log to whichever node serves it, and dropped if none does.
    pub fn deliver(
        &self,
        client_id: &str,
        channel: &str,
        data: Value,
    ) -> Result<bool, PublishError> {
        let name = parse_channel(channel)?;
        let message = Message::new()
            .with("channel", name.as_str())
            .with("data", data);
        self.deliver_message(client_id, message)
    }

    fn deliver_message(&self, client_id: &str, message: Message) -> Result<bool, PublishError> {
        let engine = &self.inner.engine;
        if engine.log_mode() == LogMode::Inline {
            return Ok(engine.deliver(now(), client_id, message));
        }
        match engine.prepare_deliver(ClientId::new(client_id), message) {
            Some(entry) => self.send_to_outbox(entry).map(|()| true),
            None => Ok(true),
        }
    }

    /// Associates a session with `user` (Seti's `associate`); the user comes online with its
    /// first session and goes offline when its last one ends. A session associated with
    /// another user leaves that one. Returns false when the session does not exist (in a
    /// cluster: is not served by this node). A security policy can do the same at handshake
    /// with [`Session::set_user`](bayeux_core::Session::set_user).
    pub fn associate(&self, client_id: &str, user: &str) -> bool {
        if !self.inner.engine.associate(client_id, user) {
            return false;
        }
        self.tell_cluster_user(client_id, Some(Arc::from(user)));
        true
    }

    /// Ends a session's association with its user; false when it had none (in a cluster:
    /// or is not served by this node).
    pub fn dissociate(&self, client_id: &str) -> bool {
        if !self.inner.engine.dissociate(client_id) {
            return false;
        }
        self.tell_cluster_user(client_id, None);
        true
    }

    /// In a cluster, has the registry count the session's new user (or none).
    fn tell_cluster_user(&self, client_id: &str, user: Option<Arc<str>>) {
        if let Some(changes) = &self.inner.presence_changes {
            let _ = changes.send((ClientId::new(client_id), user));
        }
    }

    /// The online users, sorted: those with at least one live session, in a cluster on any
    /// node (as of the last presence change this node has read from the log).
    pub fn users_online(&self) -> Vec<String> {
        self.inner.engine.users_online()
    }

    /// Whether `user` has a live session (in a cluster: on any node).
    pub fn is_online(&self, user: &str) -> bool {
        self.inner.engine.is_online(user)
    }

    /// The live sessions of `user` served by this node.
    pub fn sessions_of_user(&self, user: &str) -> Vec<ClientId> {
        self.inner.engine.sessions_of_user(user)
    }

    /// Sends `data` on `channel` to every session of `user`, wherever it is subscribed or
    /// not (Seti's `deliver`); the message is encoded once. Returns whether the user is online
    /// (false: nothing was sent).
    ///
    /// In a cluster the message goes through the shared log to every node that serves a
    /// session of the user, like [`Server::publish`].
    pub fn deliver_to_user(
        &self,
        user: &str,
        channel: &str,
        data: Value,
    ) -> Result<bool, PresenceError> {
        let name = ChannelName::parse(channel)
            .ok()
            .filter(|n| !n.is_wildcard() && n.kind() != bayeux_message::ChannelKind::Meta)
            .ok_or_else(|| PresenceError::InvalidChannel(channel.to_owned()))?;
        let message = Message::new()
            .with("channel", name.as_str())
            .with("data", data);
        let engine = &self.inner.engine;
        if engine.log_mode() == LogMode::Inline {
            return Ok(engine.deliver_to_user(now(), user, message) > 0);
        }
        if !engine.is_online(user) {
            return Ok(false);
        }
        if let Some(entry) = engine.prepare_deliver_to_user(user, message) {
            self.send_to_outbox(entry)
                .map_err(|_| PresenceError::Unavailable)?;
        }
        Ok(true)
    }

    /// Answers a remote call later (from another task): a delivery to the caller with the
    /// call's `id`, as [`ServiceReply`] returned by a service would. Returns false when the
    /// session does not exist (in a cluster, see [`Server::deliver`]).
    pub fn answer_remote_call(
        &self,
        client_id: &str,
        channel: &str,
        id: Value,
        answer: ServiceReply,
    ) -> Result<bool, PublishError> {
        let name = parse_channel(channel)?;
        let (successful, data) = match answer {
            ServiceReply::Success(data) => (true, data),
            ServiceReply::Failure(data) => (false, data),
        };
        let message = Message::new()
            .with("channel", name.as_str())
            .with("id", id)
            .with("data", data)
            .with("successful", successful);
        self.deliver_message(client_id, message)
    }

    /// Registers a service on a `/service/...` channel or pattern: it receives what clients
    /// publish there, and its reply answers their `remoteCall`.
    pub fn service(
        &self,
        channel: &str,
        service: impl Service + 'static,
    ) -> Result<(), PublishError> {
        let name = parse_channel(channel)?;
        if name.kind() != bayeux_message::ChannelKind::Service {
            return Err(PublishError::NotService(channel.to_owned()));
        }
        self.inner.engine.add_service(name, Arc::new(service));
        Ok(())
    }

    /// Registers an authorizer on a channel or pattern (`/chat/**`).
    pub fn authorizer(
        &self,
        channel: &str,
        authorizer: impl Authorizer + 'static,
    ) -> Result<(), PublishError> {
        let name = parse_channel(channel)?;
        self.inner.engine.add_authorizer(name, Arc::new(authorizer));
        Ok(())
    }

    /// Registers a listener that sees (and may change or refuse) each message published on a
    /// channel or pattern.
    pub fn message_listener(
        &self,
        channel: &str,
        listener: impl MessageListener + 'static,
    ) -> Result<(), PublishError> {
        let name = parse_channel(channel)?;
        self.inner
            .engine
            .add_message_listener(name, Arc::new(listener));
        Ok(())
    }

    /// Sets a channel's options (persistent, `broadcastToPublisher`), creating it if needed.
    pub fn configure_channel(
        &self,
        channel: &str,
        options: ChannelOptions,
    ) -> Result<(), PublishError> {
        let name = parse_channel(channel)?;
        self.inner.engine.configure_channel(&name, options);
        Ok(())
    }

    /// A new local session: server code that subscribes and publishes like a client.
    pub fn local_session(&self, id_hint: &str) -> LocalSession {
        LocalSession::new(self.clone(), id_hint)
    }

    /// Disconnects a session; its held connect is answered with `reconnect: none`. False
    /// when no such session exists (in a cluster: on any node).
    pub async fn disconnect(&self, client_id: &str) -> bool {
        let engine = &self.inner.engine;
        let Some(cluster) = &self.inner.cluster else {
            return engine.disconnect_session(client_id);
        };
        let cid = ClientId::new(client_id);
        if engine.session(client_id).is_some_and(|s| s.is_local()) {
            return engine.disconnect_session(client_id);
        }
        // Whoever removes it from the registry tells the listeners; the node serving it drops
        // it when it reads the removal in the log.
        let removed = cluster.backplane.remove(&cid, None).await;
        cluster.note(&removed);
        if removed != Ok(true) {
            return false;
        }
        if !engine.remove(client_id, RemovalReason::Disconnect) {
            engine.tell_removed(&cid, RemovalReason::Disconnect);
            let entry = LogRecord::Entry(Entry::Remove { session: cid });
            let appended = cluster.backplane.append(vec![entry]).await;
            cluster.note(&appended);
        }
        true
    }

    /// Stops: every held connect is released with advice to reconnect, and later connects are
    /// answered at once. In a cluster, every session is also handed over (its exact record
    /// written for the node its client reaches next). Call before stopping the HTTP server,
    /// so that no held request is cut.
    pub async fn shutdown(&self) {
        self.inner.engine.shutdown();
        if self.inner.cluster.is_some() {
            crate::cluster::release_all(&self.inner).await;
        }
    }

    /// The server's metrics in the Prometheus text format (OpenMetrics): counters of
    /// handshakes, connects, publishes, deliveries, refusals by code, dropped messages by
    /// reason, removals by reason and websocket frames; gauges of sessions by transport and
    /// held connects; histograms of queue depth and request processing time.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// True once [`Server::shutdown`] has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.engine.is_shutting_down()
    }

    /// Starts draining this node: new handshakes are refused with `503::draining` and advice
    /// to handshake again (a load balancer then sends them elsewhere), and held connects are
    /// answered the same way, spread over `window`, their sessions removed. Wait for
    /// [`Server::session_count`] to reach zero (or a deadline), then shut down.
    ///
    /// In a cluster the sessions are handed over instead, each at its moment in the window:
    /// its held connect is answered with advice to reconnect at once, and the node its client
    /// reaches next continues it, same `clientId`, nothing lost.
    pub fn drain(&self, window: Duration) {
        tracing::info!(window_ms = window.as_millis() as u64, "draining");
        self.inner.engine.drain(now(), window);
    }

    /// True while the node takes new clients: neither draining nor shutting down, and in a
    /// cluster, with its backplane reachable.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down()
            && !self.inner.engine.is_draining()
            && self.inner.cluster.as_ref().is_none_or(Cluster::is_up)
    }

    /// Whether this server is one node of a cluster, and if so whether its backplane answers.
    pub fn backplane_status(&self) -> BackplaneStatus {
        match &self.inner.cluster {
            None => BackplaneStatus::None,
            Some(cluster) if cluster.is_up() => BackplaneStatus::Up,
            Some(_) => BackplaneStatus::Down,
        }
    }

    /// This node's id in its cluster (`name#incarnation`); `None` on a single node.
    pub fn node_id(&self) -> Option<&crate::backplane::NodeId> {
        self.inner.cluster.as_ref().map(|c| &c.node)
    }

    /// The backplane this server shares with the other nodes of its cluster.
    pub fn backplane(&self) -> Option<&Arc<dyn Backplane>> {
        self.inner.cluster.as_ref().map(|c| &c.backplane)
    }

    /// The cluster driver's counters; `None` on a single node.
    pub fn cluster_stats(&self) -> Option<&crate::cluster::ClusterStats> {
        self.inner.cluster.as_ref().map(|c| &c.stats)
    }

    /// Messages queued for all sessions, waiting for their clients to collect them.
    pub fn queued_messages(&self) -> u64 {
        self.inner.engine.census().queue_lengths.iter().sum()
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.inner.engine.session_count()
    }

    /// The engine, for inspection (subscription counts, sessions).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("sessions", &self.session_count())
            .finish()
    }
}

/// Parses a channel name given by application code.
fn parse_channel(channel: &str) -> Result<ChannelName, PublishError> {
    ChannelName::parse(channel).map_err(|_| PublishError::InvalidChannel(channel.to_owned()))
}

/// The engine's clock: Tokio's, so that tests with paused time move it too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Abandons the hold if the waiting future is dropped before it could answer.
struct AbandonOnDrop<'a> {
    engine: &'a Engine,
    hold: Option<Hold>,
}

impl AbandonOnDrop<'_> {
    fn disarm(mut self) -> Hold {
        self.hold.take().expect("disarmed once")
    }
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(hold) = &self.hold {
            self.engine.abandon_hold(now(), hold);
        }
    }
}

/// Whether a server's backplane answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackplaneStatus {
    /// Unreachable: requests that need it are refused with `503::backplane_unavailable`.
    Down,
    /// A single node: no backplane.
    None,
    /// Reachable.
    Up,
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    backplane: Option<Arc<dyn Backplane>>,
    cluster_options: ClusterOptions,
    config: EngineConfig,
    sweep_period: Duration,
    ids: Box<dyn IdSource>,
    listeners: Vec<Arc<dyn SessionListener>>,
    extensions: Vec<Arc<dyn Extension>>,
    policy: Option<Arc<dyn SecurityPolicy>>,
    channel_listeners: Vec<Arc<dyn ChannelListener>>,
    history: Vec<(ChannelName, Retention)>,
    presence_listeners: Vec<Arc<dyn PresenceListener>>,
    presence_channel: Option<ChannelName>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            backplane: None,
            cluster_options: ClusterOptions::default(),
            config: EngineConfig::default(),
            sweep_period: Duration::from_millis(997),
            ids: Box::new(RandomIds),
            listeners: vec![Arc::new(LogSessions)],
            extensions: Vec::new(),
            policy: None,
            channel_listeners: Vec::new(),
            history: Vec::new(),
            presence_listeners: Vec::new(),
            presence_channel: None,
        }
    }
}

impl ServerBuilder {
    /// Makes the server one node of a cluster that shares `backplane` (Redis, with
    /// `bayeux-redis`): any node serves any session, and sessions outlive their node.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// Options of the node in its cluster (name, heartbeat, checkpoints, ...).
    pub fn cluster_options(mut self, options: ClusterOptions) -> Self {
        self.cluster_options = options;
        self
    }

    /// Engine options (timeout, interval, maxInterval, ...).
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// How often expired sessions are looked for (`sweepPeriod`, 997 ms).
    pub fn sweep_period(mut self, period: Duration) -> Self {
        self.sweep_period = period;
        self
    }

    /// Replaces the source of session and browser ids (tests use predictable ones).
    pub fn ids(mut self, ids: impl IdSource + 'static) -> Self {
        self.ids = Box::new(ids);
        self
    }

    /// Adds a listener told of sessions added and removed.
    pub fn session_listener(mut self, listener: impl SessionListener + 'static) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Replaces the security policy (by default everything the protocol allows is allowed).
    pub fn policy(mut self, policy: impl SecurityPolicy + 'static) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// Adds an extension (incoming hooks in the order added, outgoing ones in reverse).
    pub fn extension(mut self, extension: impl Extension + 'static) -> Self {
        self.extensions.push(Arc::new(extension));
        self
    }

    /// Adds a listener told of channels added and removed.
    pub fn channel_listener(mut self, listener: impl ChannelListener + 'static) -> Self {
        self.channel_listeners.push(Arc::new(listener));
        self
    }

    /// Keeps history on `channel`, or on every channel the pattern matches (`/chat/**`), for
    /// clients that come back and ask for what they missed (`ext.replay` on `/meta/subscribe`,
    /// Salesforce's shape; see docs/replay.md). The most specific rule applies; channels no
    /// rule matches keep none.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use bayeux_server::{ChannelName, Retention, Server};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let server = Server::builder()
    ///     .history(
    ///         ChannelName::parse("/chat/**").unwrap(),
    ///         Retention::count(1000).max_age(Duration::from_secs(3600)),
    ///     )
    ///     .build();
    /// # }
    /// ```
    pub fn history(mut self, channel: ChannelName, retention: Retention) -> Self {
        self.history.push((channel, retention));
        self
    }

    /// Adds a listener told when users come online and go offline (see [`Server::associate`]).
    pub fn presence_listener(mut self, listener: impl PresenceListener + 'static) -> Self {
        self.presence_listeners.push(Arc::new(listener));
        self
    }

    /// Publishes presence events on `channel` (e.g. `/presence`): `{"user": "alice",
    /// "online": true}` when a user comes online, `false` when it goes offline. Subscribers
    /// and authorizers treat it as any broadcast channel.
    pub fn presence_channel(mut self, channel: ChannelName) -> Self {
        self.presence_channel = Some(channel);
        self
    }

    /// Calls `f` with the id of every new session.
    pub fn on_session_added(self, f: impl Fn(&ClientId) + Send + Sync + 'static) -> Self {
        self.session_listener(OnAdded(f))
    }

    /// Calls `f` with the id of every removed session and the reason.
    pub fn on_session_removed(
        self,
        f: impl Fn(&ClientId, RemovalReason) + Send + Sync + 'static,
    ) -> Self {
        self.session_listener(OnRemoved(f))
    }

    /// Builds the server and starts its sweeper.
    ///
    /// # Panics
    /// Outside a Tokio runtime (actix-web's runtime is one).
    pub fn build(self) -> Server {
        let engine = self
            .listeners
            .into_iter()
            .fold(Engine::new(self.config, self.ids), Engine::with_listener);
        let mut engine = self
            .extensions
            .into_iter()
            .fold(engine, Engine::with_extension);
        if let Some(policy) = self.policy {
            engine = engine.with_policy(policy);
        }
        let mut engine = self
            .channel_listeners
            .into_iter()
            .fold(engine, Engine::with_channel_listener);
        for (channel, retention) in &self.history {
            engine.configure_history(channel, *retention);
        }
        // Presence events are published by the server itself, which exists only once the
        // engine is built: the listener gets it through `server_cell`.
        let server_cell: Arc<OnceLock<Weak<Inner>>> = Arc::default();
        // In a cluster the node that sees a user come or go publishes the event, through the
        // log; every node's listeners hear of it there.
        let presence_changes = match (&self.backplane, self.presence_channel.clone()) {
            (None, Some(channel)) => {
                engine = engine.with_presence_listener(Arc::new(PresenceEvents {
                    server: Arc::clone(&server_cell),
                    channel,
                }));
                None
            }
            (None, None) => None,
            (Some(_), channel) => {
                let (tx, rx) = mpsc::unbounded_channel();
                engine = engine.with_listener(Arc::new(crate::cluster::PresenceTracker {
                    server: Arc::clone(&server_cell),
                    changes: tx.clone(),
                }));
                Some((tx, rx, channel))
            }
        };
        for listener in self.presence_listeners {
            engine = engine.with_presence_listener(listener);
        }
        let (cluster, outbox) = match self.backplane {
            Some(backplane) => {
                let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
                let cluster = Cluster::new(backplane, self.cluster_options);
                (Some((cluster, rx)), Some(tx))
            }
            None => (None, None),
        };
        let (cluster, outbox_rx) = match cluster {
            Some((cluster, rx)) => {
                engine = engine.with_log_mode(LogMode::Shared);
                (Some(cluster), Some(rx))
            }
            None => {
                // Replay ids grow across restarts: an id from before one is older than any
                // after it, so it is refused as unknown, not taken for a newer one. (The
                // reader of a cluster starts its history from the log instead.)
                let micros = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                engine.start_replay_ids_at(micros);
                (None, None)
            }
        };
        let inner = Arc::new_cyclic(|weak| Inner {
            engine,
            cluster,
            outbox,
            presence_changes: presence_changes.as_ref().map(|(tx, _, _)| tx.clone()),
            metrics: Metrics::new(weak.clone()),
        });
        let weak = Arc::downgrade(&inner);
        let _ = server_cell.set(weak.clone());
        tokio::spawn(sweep(weak.clone(), self.sweep_period));
        if let Some(outbox) = outbox_rx {
            tracing::info!(node = %inner.cluster().node, "clustered");
            tokio::spawn(crate::cluster::run_reader(weak.clone()));
            tokio::spawn(crate::cluster::run_upkeep(weak.clone()));
            if let Some((_, rx, channel)) = presence_changes {
                tokio::spawn(crate::cluster::run_presence(weak.clone(), rx, channel));
            }
            tokio::spawn(crate::cluster::run_outbox(weak, outbox));
        }
        Server { inner }
    }
}

/// Removes expired sessions every `period`, until the server is dropped.
async fn sweep(inner: Weak<Inner>, period: Duration) {
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let swept = inner.engine.sweep(now());
        if inner.cluster.is_some() {
            crate::cluster::after_sweep(&inner, swept).await;
        }
    }
}

/// Publishes presence changes on the presence channel.
struct PresenceEvents {
    server: Arc<OnceLock<Weak<Inner>>>,
    channel: ChannelName,
}

impl PresenceEvents {
    fn publish(&self, user: &str, online: bool) {
        let Some(inner) = self.server.get().and_then(Weak::upgrade) else {
            return;
        };
        let data = serde_json::json!({"user": user, "online": online});
        if let Err(refusal) = inner.engine.publish(now(), &self.channel, data) {
            tracing::warn!(channel = %self.channel, error = %refusal.error(), "presence event not published");
        }
    }
}

impl PresenceListener for PresenceEvents {
    fn joined(&self, user: &str) {
        self.publish(user, true);
    }

    fn left(&self, user: &str) {
        self.publish(user, false);
    }
}

struct LogSessions;

impl SessionListener for LogSessions {
    fn session_added(&self, client_id: &ClientId) {
        tracing::info!(client_id = %client_id, "session added");
    }

    fn session_removed(&self, client_id: &ClientId, reason: RemovalReason) {
        tracing::info!(client_id = %client_id, ?reason, "session removed");
    }
}

struct OnAdded<F>(F);

impl<F: Fn(&ClientId) + Send + Sync> SessionListener for OnAdded<F> {
    fn session_added(&self, client_id: &ClientId) {
        (self.0)(client_id);
    }
}

struct OnRemoved<F>(F);

impl<F: Fn(&ClientId, RemovalReason) + Send + Sync> SessionListener for OnRemoved<F> {
    fn session_removed(&self, client_id: &ClientId, reason: RemovalReason) {
        (self.0)(client_id, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bayeux_core::{BrowserId, TransportKind};
    use bayeux_message::parse_batch;
    use serde_json::json;

    use super::*;

    fn ctx() -> RequestContext {
        RequestContext::new(TransportKind::LongPolling).with_browser(Some(BrowserId::new("b")))
    }

    async fn send(server: &Server, body: serde_json::Value) -> Outcome {
        let batch = parse_batch(body.to_string().as_bytes()).expect("valid");
        server.handle(&ctx(), batch).await.expect("accepted")
    }

    async fn connected(server: &Server) -> String {
        let outcome = send(server, json!([{"channel": "/meta/handshake", "id": "1"}])).await;
        let cid = outcome.handshaken.expect("handshake").to_string();
        send(
            server,
            json!([{"channel": "/meta/connect", "id": "2", "clientId": cid}]),
        )
        .await;
        cid
    }

    #[tokio::test(start_paused = true)]
    async fn held_connect_is_answered_at_timeout() {
        let server = Server::builder().build();
        let cid = connected(&server).await;
        let outcome = send(
            &server,
            json!([{"channel": "/meta/connect", "id": "3", "clientId": cid}]),
        )
        .await;
        let started = tokio::time::Instant::now();
        let HoldEnd::Reply(messages) = server.wait_hold(outcome.hold.expect("held")).await else {
            panic!("not superseded");
        };
        let held = started.elapsed();
        assert!(
            held >= Duration::from_secs(20) && held <= Duration::from_millis(20_002),
            "{held:?}"
        );
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].decode().into_map(),
            json!({"channel": "/meta/connect", "id": "3", "successful": true})
                .as_object()
                .unwrap()
                .clone()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_waiter_abandons_the_hold_and_the_session_expires() {
        let removed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&removed);
        let server = Server::builder()
            .on_session_removed(move |cid, reason| {
                seen.lock().unwrap().push((cid.to_string(), reason))
            })
            .build();
        let cid = connected(&server).await;
        let outcome = send(
            &server,
            json!([{"channel": "/meta/connect", "id": "3", "clientId": cid}]),
        )
        .await;
        let waiting = server.wait_hold(outcome.hold.expect("held"));
        // The client goes away one second into the hold: the handler future is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(1), waiting).await;
        assert_eq!(server.engine().browsers_holding(), 0);
        // It expires as if the connect had been answered at its deadline (20 s) and the client
        // then stopped polling for maxInterval (10 s).
        tokio::time::sleep(Duration::from_secs(28)).await;
        assert_eq!(server.session_count(), 1);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(server.session_count(), 0);
        assert_eq!(*removed.lock().unwrap(), [(cid, RemovalReason::Timeout)]);
    }

    #[tokio::test]
    async fn local_sessions_subscribe_and_publish_like_clients() {
        let server = Server::builder().build();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let bot = server.local_session("bot");
        assert!(bot.client_id().as_str().starts_with("bot_"));
        bot.subscribe("/room/*", move |msg| {
            log.lock()
                .unwrap()
                .push(msg.data().cloned().unwrap_or_default());
        })
        .expect("subscribed");
        let other = server.local_session("other");
        other.publish("/room/a", json!("hi")).expect("published");
        assert_eq!(server.publish("/room/b", json!(2)), Ok(()));
        assert_eq!(*seen.lock().unwrap(), [json!("hi"), json!(2)]);
        assert_eq!(
            other.publish("/meta/x", json!(1)),
            Err(crate::LocalError(
                "403:denied_by_security_policy:channel_create_denied".into()
            ))
        );
        assert_eq!(
            other.subscribe("/meta/connect", |_| {}),
            Err(crate::LocalError(
                "403:denied_by_security_policy:subscribe_denied".into()
            ))
        );
        bot.disconnect();
        assert_eq!(server.publish("/room/c", json!(3)), Ok(()));
        assert_eq!(server.session_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn local_sessions_never_expire() {
        let server = Server::builder().build();
        let _bot = server.local_session("bot");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(server.session_count(), 1);
    }

    #[tokio::test]
    async fn publish_from_rust_validates_the_channel() {
        let server = Server::builder().build();
        assert_eq!(server.publish("/news", json!(1)), Ok(()));
        assert_eq!(
            server.publish("news", json!(1)),
            Err(PublishError::InvalidChannel("news".into()))
        );
        assert_eq!(
            server.publish("/meta/connect", json!(1)),
            Err(PublishError::NotBroadcast("/meta/connect".into()))
        );
    }
}
