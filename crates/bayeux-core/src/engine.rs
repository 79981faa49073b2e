//! The engine: takes a batch of messages with the time, returns what to send and what to hold.
//!
//! The engine never reads the clock and never waits. A `/meta/connect` that must wait comes
//! back as a [`Hold`]; the driver awaits it (see [`Hold::poll_released`]) or its deadline, then
//! calls [`Engine::complete_hold`] for the reply. Sessions live in a sharded map and each has its
//! own lock, so the engine is shared by reference between all request handlers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bayeux_message::{
    is_valid_message_id, Advice, ChannelKind, ChannelName, ClientId, EncodedMessage, Message,
    Reconnect, Refusal, Reply,
};
use dashmap::DashMap;
use serde_json::Value;

use crate::channels::{ChannelListener, ChannelOptions, Channels};
use crate::config::{millis, EngineConfig, TransportKind};
use crate::extension::Extension;
use crate::ids::{BrowserId, IdSource};
use crate::listener::{RemovalReason, SessionListener};
use crate::registry::ChannelRegistry;
use crate::security::{self, AllowAll, Authorizer, HttpInfo, Operation, SecurityPolicy};
use crate::service::{MessageListener, Service, ServiceReply, ServiceRequest};
use crate::session::{LocalSink, PusherSlot, Session};
use crate::stats::{EngineStats, SessionCensus};
use crate::subscriptions::SubscriptionIndex;

/// Least `interval` advised to clients while the server shuts down.
pub const SHUTDOWN_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a request comes from.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The transport that carried the request.
    pub transport: TransportKind,
    /// The browser cookie of an HTTP request.
    pub browser: Option<BrowserId>,
    /// The session a websocket connection is bound to (by its handshake or a resume).
    pub bound_session: Option<ClientId>,
    /// Only the bound session may be used (`ws.requireHandshakePerConnection`): a new
    /// connection cannot resume a session by presenting its `clientId`.
    pub require_bound_session: bool,
    /// The HTTP request (headers, peer), for the security policy.
    pub http: Option<Arc<HttpInfo>>,
}

impl RequestContext {
    /// A request over `transport` without a browser cookie.
    pub fn new(transport: TransportKind) -> Self {
        Self {
            transport,
            browser: None,
            bound_session: None,
            require_bound_session: false,
            http: None,
        }
    }

    /// Sets the browser cookie.
    pub fn with_browser(mut self, browser: Option<BrowserId>) -> Self {
        self.browser = browser;
        self
    }
}

/// What to do with a request's batch.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages to send now: queued deliveries first, then the replies in request order.
    pub messages: Vec<EncodedMessage>,
    /// A `/meta/connect` to answer later, through [`Engine::complete_hold`].
    pub hold: Option<Hold>,
    /// The session a successful handshake in this batch created.
    pub handshaken: Option<ClientId>,
}

/// A request the engine refuses as a whole (HTTP 400/500, websocket close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The batch held no message.
    Empty,
    /// A handshake must be alone in its request.
    HandshakeNotAlone,
}

/// How a held connect ended.
#[derive(Debug)]
pub enum HoldEnd {
    /// Send these messages: deliveries, then the connect reply.
    Reply(Vec<EncodedMessage>),
    /// A newer connect of the same session replaced this one; answer with an HTTP error.
    Superseded,
}

/// A `/meta/connect` being held. Await [`Hold::poll_released`] or the deadline, whichever is
/// first, then [`Engine::complete_hold`].
#[derive(Debug)]
pub struct Hold {
    session: Arc<Session>,
    ticket: u64,
    deadline: Instant,
}

impl Hold {
    pub(crate) fn new(session: Arc<Session>, ticket: u64, deadline: Instant) -> Self {
        Self {
            session,
            ticket,
            deadline,
        }
    }

    /// When the connect must be answered even if nothing happens.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The session holding.
    pub fn client_id(&self) -> &ClientId {
        self.session.client_id()
    }

    /// Ready once the connect should be answered early: a message was queued, the session was
    /// disconnected, a newer connect superseded this one, or the server is shutting down.
    pub fn poll_released(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.session.poll_hold(self.ticket, cx)
    }

    /// True while nothing has released the hold.
    pub fn is_pending(&self) -> bool {
        self.session.is_hold_pending(self.ticket)
    }
}

/// One message's part of the response.
#[derive(Default)]
struct Done {
    deliveries: Vec<EncodedMessage>,
    reply: Option<EncodedMessage>,
    hold: Option<Hold>,
    handshaken: Option<ClientId>,
}

impl Done {
    fn reply(reply: EncodedMessage) -> Self {
        Self {
            reply: Some(reply),
            ..Self::default()
        }
    }
}

/// A websocket connection's claim to push one session's deliveries. Dropping it detaches the
/// connection; queued messages then wait for the next `/meta/connect`.
#[derive(Debug)]
pub struct Pusher {
    session: Arc<Session>,
    connection: u64,
    deliver_only: bool,
}

impl Pusher {
    /// The session whose deliveries this connection pushes.
    pub fn client_id(&self) -> &ClientId {
        self.session.client_id()
    }

    /// Ready with the queued deliveries, in order, once there are some. Stays pending while
    /// deliveries go only with connect replies (`metaConnectDeliverOnly`), after another
    /// connection took the session over, or once the session is gone.
    pub fn poll_deliveries(&self, cx: &mut Context<'_>) -> Poll<Vec<EncodedMessage>> {
        if self.deliver_only {
            return Poll::Pending;
        }
        let mut st = self.session.lock();
        // Acknowledged delivery, enabled by the handshake, also means deliver-only.
        if st.removed.is_some() || st.ack.is_some() {
            return Poll::Pending;
        }
        let queue_ready = !st.queue.is_empty();
        match st.pusher.as_mut() {
            Some(slot) if slot.connection == self.connection => {
                if !queue_ready {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
            _ => return Poll::Pending,
        }
        st.flush_at = None;
        Poll::Ready(st.queue.drain(..).collect())
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        let mut st = self.session.lock();
        if st
            .pusher
            .as_ref()
            .is_some_and(|p| p.connection == self.connection)
        {
            st.pusher = None;
        }
    }
}

/// The protocol engine. Share it by reference (`Arc<Engine>`).
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) sessions: DashMap<ClientId, Arc<Session>>,
    pub(crate) subscriptions: SubscriptionIndex,
    /// Held connects per browser cookie, for `maxSessionsPerBrowser`.
    pub(crate) browsers: DashMap<BrowserId, u32>,
    /// Live sessions per browser cookie, for `maxBrowserSessions`.
    pub(crate) browser_sessions: DashMap<BrowserId, usize>,
    pub(crate) ids: Box<dyn IdSource>,
    pub(crate) listeners: Vec<Arc<dyn SessionListener>>,
    pub(crate) extensions: Vec<Arc<dyn Extension>>,
    pub(crate) policy: Arc<dyn SecurityPolicy>,
    pub(crate) authorizers: ChannelRegistry<dyn Authorizer>,
    pub(crate) services: ChannelRegistry<dyn Service>,
    pub(crate) message_listeners: ChannelRegistry<dyn MessageListener>,
    pub(crate) channels: Channels,
    pub(crate) channel_listeners: Vec<Arc<dyn ChannelListener>>,
    pub(crate) shutting_down: AtomicBool,
    /// Set once draining starts: when, and over how long clients are sent away.
    pub(crate) drain: OnceLock<(Instant, Duration)>,
    pub(crate) stats: EngineStats,
    pub(crate) next_connection: AtomicU64,
}

/// One message's effect, before outgoing extensions and encoding.
pub(crate) enum Step {
    Reply(Reply),
    /// Deliveries drained by an immediately answered connect, then its reply.
    Connect(Vec<EncodedMessage>, Reply),
    Handshaken(Arc<Session>, Reply),
    Hold(Hold),
}

impl Engine {
    /// An engine with `config` and ids from `ids`; add listeners and extensions before
    /// sharing it.
    pub fn new(config: EngineConfig, ids: Box<dyn IdSource>) -> Self {
        Self {
            config,
            sessions: DashMap::new(),
            subscriptions: SubscriptionIndex::default(),
            browsers: DashMap::new(),
            browser_sessions: DashMap::new(),
            ids,
            listeners: Vec::new(),
            extensions: Vec::new(),
            policy: Arc::new(AllowAll),
            authorizers: ChannelRegistry::default(),
            services: ChannelRegistry::default(),
            message_listeners: ChannelRegistry::default(),
            channels: Channels::default(),
            channel_listeners: Vec::new(),
            shutting_down: AtomicBool::new(false),
            drain: OnceLock::new(),
            stats: EngineStats::default(),
            next_connection: AtomicU64::new(1),
        }
    }

    /// Adds a session listener.
    pub fn with_listener(mut self, listener: Arc<dyn SessionListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Adds an extension; incoming hooks run in the order added, outgoing ones in reverse.
    pub fn with_extension(mut self, extension: Arc<dyn Extension>) -> Self {
        self.extensions.push(extension);
        self
    }

    /// Replaces the security policy (by default everything the protocol allows is allowed).
    pub fn with_policy(mut self, policy: Arc<dyn SecurityPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Adds a listener told of channels added and removed.
    pub fn with_channel_listener(mut self, listener: Arc<dyn ChannelListener>) -> Self {
        self.channel_listeners.push(listener);
        self
    }

    /// Sets a channel's options (persistent, `broadcastToPublisher`), creating it if needed.
    pub fn configure_channel(&self, channel: &ChannelName, options: ChannelOptions) {
        if self.channels.configure(channel, options) {
            self.channel_added(channel);
        }
    }

    /// The channels that exist, sorted.
    pub fn channels(&self) -> Vec<ChannelName> {
        self.channels.names()
    }

    /// Marks a channel as used, creating it (and telling the listeners) on first use, unless
    /// `maxChannels` exist already.
    pub(crate) fn use_channel(&self, channel: &ChannelName) -> Result<(), Refusal> {
        match self.channels.try_touch(channel, self.config.max_channels) {
            Ok(true) => {
                self.channel_added(channel);
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(()) => Err(Refusal::TooManyChannels),
        }
    }

    fn channel_added(&self, channel: &ChannelName) {
        for listener in &self.channel_listeners {
            listener.channel_added(channel);
        }
    }

    /// Adds an authorizer on a channel or pattern (`/chat/**`), for subscribes and publishes.
    pub fn add_authorizer(&self, channel: ChannelName, authorizer: Arc<dyn Authorizer>) {
        self.authorizers.add(channel, authorizer);
    }

    /// Adds a service on a `/service/...` channel or pattern; the most specific one answers.
    pub fn add_service(&self, channel: ChannelName, service: Arc<dyn Service>) {
        self.services.add(channel, service);
    }

    /// Adds a listener of the messages published on a channel or pattern.
    pub fn add_message_listener(&self, channel: ChannelName, listener: Arc<dyn MessageListener>) {
        self.message_listeners.add(channel, listener);
    }

    /// The options in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// A fresh browser cookie value.
    pub fn new_browser_id(&self) -> BrowserId {
        self.ids.browser_id()
    }

    /// Processes one request's batch, in order.
    pub fn handle(
        &self,
        now: Instant,
        ctx: &RequestContext,
        batch: Vec<Message>,
    ) -> Result<Outcome, RequestError> {
        let Some(first) = batch.first() else {
            return Err(RequestError::Empty);
        };
        let is_handshake = |m: &Message| m.channel() == Some("/meta/handshake");
        if batch.len() > 1 && batch.iter().any(is_handshake) {
            return Err(RequestError::HandshakeNotAlone);
        }
        // While a request that is not a connect runs, deliveries for its session collect in the
        // queue without waking the held connect: this response can carry them (piggy-back).
        let batched = match first.channel() {
            Some("/meta/connect") => None,
            _ => first
                .client_id()
                .and_then(|cid| self.find_session(cid, ctx)),
        };
        if let Some(session) = &batched {
            session.lock().batch_depth += 1;
        }

        let alone = batch.len() == 1;
        let mut outcome = Outcome::default();
        let mut deliveries = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for msg in batch {
            let done = self.handle_one(now, ctx, msg, alone);
            deliveries.extend(done.deliveries);
            replies.extend(done.reply);
            if done.handshaken.is_some() {
                outcome.handshaken = done.handshaken;
            }
            if done.hold.is_some() {
                outcome.hold = done.hold;
            }
        }

        if let Some(session) = batched {
            let mut st = session.lock();
            st.batch_depth -= 1;
            if st.batch_depth == 0 && !st.queue.is_empty() {
                if self.piggy_back(ctx) && !st.deliver_only(&self.config) {
                    st.flush_at = None;
                    deliveries.extend(st.queue.drain(..));
                } else if let Some(slot) = st.hold.as_mut() {
                    slot.release();
                }
            }
        }
        outcome.messages = deliveries;
        outcome.messages.extend(replies);
        Ok(outcome)
    }

    fn handle_one(
        &self,
        now: Instant,
        ctx: &RequestContext,
        mut msg: Message,
        alone: bool,
    ) -> Done {
        let Some(channel) = msg.channel() else {
            let reply = Refusal::ChannelMissing.reply_to(&msg);
            return Done::reply(self.outgoing_reply(None, &msg, reply));
        };
        if msg.id().is_some_and(|id| !is_valid_message_id(id)) {
            let reply = Refusal::MessageIdInvalid.reply_to(&msg);
            return Done::reply(self.outgoing_reply(None, &msg, reply));
        }
        let Ok(name) = ChannelName::parse(channel) else {
            let reply = Refusal::ChannelInvalid.reply_to(&msg);
            return Done::reply(self.outgoing_reply(None, &msg, reply));
        };
        let session = msg.client_id().and_then(|cid| self.session(cid));
        let session = session.as_deref();
        let own = session.map(Session::extensions).unwrap_or_default();
        if !self
            .extensions
            .iter()
            .chain(&own)
            .all(|ext| ext.incoming(session, &mut msg))
        {
            let reply = Refusal::MessageDeleted.reply_to(&msg);
            return Done::reply(self.outgoing_reply(session, &msg, reply));
        }
        let step = match name.as_str() {
            "/meta/handshake" => self.handshake(now, ctx, &msg),
            "/meta/connect" => self.connect(now, ctx, &msg, alone),
            "/meta/disconnect" => Step::Reply(self.disconnect(ctx, &msg)),
            "/meta/subscribe" => Step::Reply(self.subscribe(now, ctx, &msg)),
            "/meta/unsubscribe" => Step::Reply(self.unsubscribe(now, ctx, &msg)),
            _ => return Done::reply(self.publish_request(now, ctx, &name, session, msg)),
        };
        // Outgoing hooks run here, after the handlers dropped every lock.
        match step {
            Step::Reply(reply) => Done::reply(self.outgoing_reply(session, &msg, reply)),
            Step::Connect(deliveries, reply) => Done {
                deliveries,
                ..Done::reply(self.outgoing_reply(session, &msg, reply))
            },
            Step::Handshaken(new, reply) => {
                // Counted here, where every successful handshake passes.
                EngineStats::count(&self.stats.handshakes);
                Done {
                    handshaken: Some(new.client_id().clone()),
                    ..Done::reply(self.outgoing_reply(Some(&new), &msg, reply))
                }
            }
            Step::Hold(hold) => Done {
                hold: Some(hold),
                ..Done::default()
            },
        }
    }

    /// Runs the outgoing reply hooks, last registered first, and encodes the reply.
    pub(crate) fn outgoing_reply(
        &self,
        session: Option<&Session>,
        request: &Message,
        mut reply: Reply,
    ) -> EncodedMessage {
        let own = session.map(Session::extensions).unwrap_or_default();
        for ext in own.iter().rev().chain(self.extensions.iter().rev()) {
            ext.outgoing_reply(session, request, &mut reply);
        }
        if let Some(error) = reply.error.as_deref().filter(|_| !reply.successful) {
            self.stats.count_refusal(error);
        }
        reply.encode()
    }

    /// Runs the outgoing hooks on a message for subscribers and encodes it once; `None` when
    /// an extension dropped it.
    fn outgoing_delivery(&self, mut msg: Message) -> Option<EncodedMessage> {
        for ext in self.extensions.iter().rev() {
            if !ext.outgoing(&mut msg) {
                return None;
            }
        }
        Some(msg.encode())
    }

    /// A publish from a client; returns its encoded reply (outgoing hooks applied).
    fn publish_request(
        &self,
        now: Instant,
        ctx: &RequestContext,
        name: &ChannelName,
        named: Option<&Session>,
        mut msg: Message,
    ) -> EncodedMessage {
        let Some(session) = msg.client_id().and_then(|cid| self.find_session(cid, ctx)) else {
            return self.outgoing_reply(named, &msg, Refusal::SessionUnknown.reply_to(&msg));
        };
        session.lock().touch(now, self.config.max_interval);
        let refusal = match name.kind() {
            ChannelKind::Meta if name.is_protocol_meta() => Some(Refusal::PublishDenied),
            ChannelKind::Meta => Some(Refusal::ChannelCreateDenied),
            _ if name.is_wildcard() => Some(Refusal::ChannelInvalid),
            _ if msg.data().is_none() => Some(Refusal::DataMissing),
            _ if !session.take_publish_token(now, self.config.max_publish_rate) => {
                Some(Refusal::PublishRateExceeded)
            }
            _ => self
                .authorize(Operation::Publish, name, &session, &msg)
                .err(),
        };
        let refusal = refusal.or_else(|| self.use_channel(name).err());
        let refusal = refusal.or_else(|| {
            let listeners = self.message_listeners.matching(name);
            let kept = listeners
                .iter()
                .all(|l| l.on_message(Some(&session), name, &mut msg));
            (!kept).then_some(Refusal::MessageDeleted)
        });
        if let Some(refusal) = refusal {
            return self.outgoing_reply(Some(&session), &msg, refusal.reply_to(&msg));
        }
        // The reply is final before the message moves on to its receivers.
        let reply = self.outgoing_reply(Some(&session), &msg, Reply::success(&msg));
        EngineStats::count(&self.stats.publishes);
        match name.kind() {
            ChannelKind::Broadcast => {
                let map = msg.as_map_mut();
                // Deliveries never carry the publisher's id nor the request id (it could
                // collide with a pending remote call of the receiver).
                map.remove("id");
                map.remove("clientId");
                map.insert("channel".into(), Value::String(name.as_str().to_owned()));
                let to_publisher = self
                    .channels
                    .options(name)
                    .and_then(|o| o.broadcast_to_publisher)
                    .unwrap_or(self.config.broadcast_to_publisher);
                let skip = (!to_publisher).then(|| session.client_id());
                if let Some(delivery) = self.outgoing_delivery(msg) {
                    self.broadcast(now, name, &delivery, skip);
                }
            }
            ChannelKind::Service => self.call_service(&session, name, &msg),
            ChannelKind::Meta => {}
        }
        reply
    }

    /// Hands a service message to the most specific service; queues its answer, if any, for
    /// the caller as a remote-call result (same `channel` and `id`, result in `data`).
    fn call_service(&self, session: &Arc<Session>, channel: &ChannelName, msg: &Message) {
        let Some(service) = self.services.matching(channel).into_iter().next() else {
            return;
        };
        let request = ServiceRequest {
            session,
            channel,
            message: msg,
        };
        let Some(answer) = service.call(request) else {
            return;
        };
        let (successful, data) = match answer {
            ServiceReply::Success(data) => (true, data),
            ServiceReply::Failure(data) => (false, data),
        };
        let mut result = Message::new()
            .with("channel", channel.as_str())
            .with("data", data)
            .with("successful", successful);
        if let Some(id) = msg.id() {
            result = result.with("id", id.clone());
        }
        if let Some(encoded) = self.outgoing_delivery(result) {
            EngineStats::count(&self.stats.deliveries);
            if !session.enqueue(encoded, &self.config, &self.stats, None) {
                self.remove_session(session, RemovalReason::QueueFull);
            }
        }
    }

    /// Sends a message straight to one session (no subscription, no channel listener, no
    /// authorization): `channel` and `data`, plus `id` and `successful` when given (a late
    /// remote-call answer). Returns false when the session does not exist.
    pub fn deliver(&self, client_id: &str, message: Message) -> bool {
        let Some(session) = self.session(client_id) else {
            return false;
        };
        if let Some(encoded) = self.outgoing_delivery(message) {
            EngineStats::count(&self.stats.deliveries);
            if !session.enqueue(encoded, &self.config, &self.stats, None) {
                self.remove_session(&session, RemovalReason::QueueFull);
            }
        }
        true
    }

    /// Runs the security policy and the channel's authorizers.
    pub(crate) fn authorize(
        &self,
        operation: Operation,
        channel: &ChannelName,
        session: &Session,
        msg: &Message,
    ) -> Result<(), Refusal> {
        let authorizers = self.authorizers.matching(channel);
        security::check(
            &*self.policy,
            &authorizers,
            operation,
            channel,
            session,
            msg,
        )
    }

    /// Publishes `data` on a broadcast channel from the server itself; returns how many
    /// sessions it was queued for.
    pub fn publish(
        &self,
        now: Instant,
        channel: &ChannelName,
        data: Value,
    ) -> Result<usize, Refusal> {
        if channel.kind() != ChannelKind::Broadcast || channel.is_wildcard() {
            return Err(Refusal::ChannelInvalid);
        }
        let mut msg = Message::new()
            .with("channel", channel.as_str())
            .with("data", data);
        let listeners = self.message_listeners.matching(channel);
        if !listeners
            .iter()
            .all(|l| l.on_message(None, channel, &mut msg))
        {
            return Ok(0);
        }
        self.use_channel(channel)?;
        EngineStats::count(&self.stats.publishes);
        Ok(match self.outgoing_delivery(msg) {
            Some(delivery) => self.broadcast(now, channel, &delivery, None),
            None => 0,
        })
    }

    /// Queues one encoded message for every subscriber of `channel`: the same shared bytes for
    /// all of them.
    fn broadcast(
        &self,
        now: Instant,
        channel: &ChannelName,
        delivery: &EncodedMessage,
        skip: Option<&ClientId>,
    ) -> usize {
        let flush_by = self
            .channels
            .lazy_timeout(channel, self.config.max_lazy_timeout)
            .map(|wait| now + wait);
        let mut count = 0;
        let mut overflowed = Vec::new();
        for session in self.subscriptions.subscribers(channel) {
            if Some(session.client_id()) == skip {
                continue;
            }
            if !session.enqueue(delivery.clone(), &self.config, &self.stats, flush_by) {
                overflowed.push(session);
            }
            count += 1;
        }
        self.stats
            .deliveries
            .fetch_add(count as u64, Ordering::Relaxed);
        for session in &overflowed {
            self.remove_session(session, RemovalReason::QueueFull);
        }
        count
    }

    /// Answers a held connect: its queued deliveries, then its reply.
    pub fn complete_hold(&self, now: Instant, hold: Hold) -> HoldEnd {
        if self.drain_due(hold.session.client_id(), now) {
            return self.drain_hold(&hold);
        }
        let (request, mut messages, reply) = {
            let mut st = hold.session.lock();
            let slot = match st.hold.take() {
                Some(slot) if slot.ticket == hold.ticket => slot,
                other => {
                    st.hold = other;
                    return HoldEnd::Superseded;
                }
            };
            if let Some(browser) = &slot.browser {
                self.release_browser_slot(browser);
            }
            let mut reply = Reply::success(&slot.request);
            if st.removed.is_some() {
                reply.advice = Some(Advice::stop());
                (slot.request, Vec::new(), reply)
            } else {
                if std::mem::take(&mut st.readvise) || self.shutting_down.load(Ordering::Relaxed) {
                    reply.advice = Some(self.connect_advice(&st));
                }
                st.expire_at = now + st.interval + self.config.max_interval;
                (slot.request, st.drain_for_connect(), reply)
            }
        };
        messages.push(self.outgoing_reply(Some(&hold.session), &request, reply));
        HoldEnd::Reply(messages)
    }

    /// Answers a held connect of a draining server: `503::draining`, handshake elsewhere;
    /// the session is removed.
    fn drain_hold(&self, hold: &Hold) -> HoldEnd {
        // What is already queued goes out with the answer, ahead of it.
        let (request, mut messages) = {
            let mut st = hold.session.lock();
            match st.hold.take() {
                Some(slot) if slot.ticket == hold.ticket => {
                    if let Some(browser) = &slot.browser {
                        self.release_browser_slot(browser);
                    }
                    (slot.request, st.drain_for_connect())
                }
                other => {
                    st.hold = other;
                    return HoldEnd::Superseded;
                }
            }
        };
        self.remove_session(&hold.session, RemovalReason::Drained);
        let reply = Refusal::Draining.reply_to(&request);
        messages.push(self.outgoing_reply(Some(&hold.session), &request, reply));
        HoldEnd::Reply(messages)
    }

    /// Forgets a held connect whose waiter went away without an answer (client gone): the
    /// session then expires as if the connect had been answered at its deadline.
    pub fn abandon_hold(&self, now: Instant, hold: &Hold) {
        let mut st = hold.session.lock();
        if st
            .hold
            .as_ref()
            .is_some_and(|slot| slot.ticket == hold.ticket)
        {
            let slot = st.hold.take().expect("checked just above");
            if let Some(browser) = &slot.browser {
                self.release_browser_slot(browser);
            }
            // As if the connect had been answered at its deadline: a client that went away
            // mid-hold gets the same grace as one that stopped polling after a reply.
            st.expire_at = slot.deadline.max(now) + st.interval + self.config.max_interval;
        }
    }

    /// Creates a local session: a server-side client, named `<id_hint>_<random>`, whose
    /// deliveries go to `sink` as they are published, and which never expires. It subscribes
    /// and publishes through [`Engine::handle`] with a [`TransportKind::Local`] context, under
    /// the same rules as remote clients (the security policy's handshake check excepted).
    pub fn create_local_session(
        &self,
        now: Instant,
        id_hint: &str,
        sink: LocalSink,
    ) -> Arc<Session> {
        let cid = ClientId::new(format!("{id_hint}_{}", self.ids.client_id()));
        let session = Arc::new(Session::new(cid.clone(), None, now, now));
        {
            let mut st = session.lock();
            st.sink = Some(sink);
            st.connected = true;
        }
        self.sessions.insert(cid.clone(), Arc::clone(&session));
        for listener in &self.listeners {
            listener.session_added(&cid);
        }
        session
    }

    /// Attaches a websocket connection to push `client_id`'s deliveries as they are queued,
    /// replacing any connection attached before. `None` when the session does not exist.
    pub fn attach_pusher(&self, client_id: &str) -> Option<Pusher> {
        let session = self.session(client_id)?;
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        session.lock().pusher = Some(PusherSlot {
            connection,
            waker: None,
        });
        Some(Pusher {
            session,
            connection,
            deliver_only: self.config.meta_connect_deliver_only,
        })
    }

    /// Removes sessions that stopped connecting, and channels unused for a few sweeps;
    /// returns how many sessions. Call it every sweep period.
    ///
    /// A session whose held connect was never answered nor abandoned (its waiter vanished)
    /// expires `interval + maxInterval` after that connect's deadline.
    pub fn sweep(&self, now: Instant) -> usize {
        let expired: Vec<Arc<Session>> = self
            .sessions
            .iter()
            .filter(|entry| {
                let mut st = entry.value().lock();
                if st.sink.is_some() {
                    return false;
                }
                st.flush_lazy(now, &self.config);
                if self.drain_due(entry.key(), now) {
                    if let Some(slot) = st.hold.as_mut() {
                        slot.release();
                    }
                }
                let due = match &st.hold {
                    Some(slot) => slot.deadline + st.interval + self.config.max_interval,
                    None => st.expire_at,
                };
                now >= due
            })
            .map(|entry| Arc::clone(entry.value()))
            .collect();
        for session in &expired {
            self.remove_session(session, RemovalReason::Timeout);
        }
        let removed = self.channels.sweep(|name| {
            self.subscriptions.has_subscribers(name)
                || self.authorizers.contains(name)
                || self.services.contains(name)
                || self.message_listeners.contains(name)
        });
        for name in &removed {
            for listener in &self.channel_listeners {
                listener.channel_removed(name);
            }
        }
        expired.len()
    }

    /// Disconnects a session from the server side. Its held connect is answered with
    /// `reconnect: none`. Returns false when no such session exists.
    pub fn disconnect_session(&self, client_id: &str) -> bool {
        let Some(session) = self.sessions.get(client_id).map(|s| Arc::clone(s.value())) else {
            return false;
        };
        self.remove_session(&session, RemovalReason::Disconnect);
        true
    }

    /// Starts shutting down: every held connect is released now and answered with advice to
    /// reconnect; later connects are answered at once.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for entry in self.sessions.iter() {
            if let Some(slot) = entry.value().lock().hold.as_mut() {
                slot.release();
            }
        }
    }

    /// Starts draining: new handshakes are refused with `503::draining` and advice to
    /// handshake again (elsewhere); each held connect is answered the same way at a moment
    /// spread over `window` (so clients do not all move at once), and its session removed;
    /// connects arriving once their moment has passed likewise. Other messages keep working
    /// meanwhile. Call [`Engine::sweep`] regularly: it is what releases the held connects.
    pub fn drain(&self, now: Instant, window: Duration) {
        let _ = self.drain.set((now, window));
    }

    /// True once [`Engine::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// True once [`Engine::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.drain.get().is_some()
    }

    /// Whether the session's moment to leave a draining server has come.
    pub(crate) fn drain_due(&self, client_id: &ClientId, now: Instant) -> bool {
        let Some((started, window)) = self.drain.get() else {
            return false;
        };
        // A stable, well-spread offset per session within the window.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(client_id.as_str(), &mut hasher);
        let window_ms = millis(*window).max(1);
        let offset = std::hash::Hasher::finish(&hasher) % window_ms;
        now >= *started + Duration::from_millis(offset)
    }

    /// Running totals (handshakes, publishes, deliveries, refusals, ...).
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Counts live sessions by transport, held connects and queue lengths (walks every
    /// session: for metrics scrapes, not for the request path).
    pub fn census(&self) -> SessionCensus {
        let mut census = SessionCensus::default();
        for entry in self.sessions.iter() {
            let st = entry.value().lock();
            let index = match st.transport {
                TransportKind::WebSocket => 0,
                TransportKind::LongPolling => 1,
                TransportKind::CallbackPolling => 2,
                TransportKind::Local => 3,
            };
            census.by_transport[index] += 1;
            census.holding += u64::from(st.hold.is_some());
            census.queue_lengths.push(st.queue.len() as u64);
        }
        census
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Every live session, in no particular order (walks the whole map: for admin and
    /// inspection, not for the request path).
    pub fn all_sessions(&self) -> Vec<Arc<Session>> {
        self.sessions
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect()
    }

    /// A live session.
    pub fn session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.get(client_id).map(|s| Arc::clone(s.value()))
    }

    /// The subscription index (for counts and inspection).
    pub fn subscriptions(&self) -> &SubscriptionIndex {
        &self.subscriptions
    }

    /// Number of browsers with at least one held connect.
    pub fn browsers_holding(&self) -> usize {
        self.browsers.len()
    }

    pub(crate) fn remove_session(&self, session: &Arc<Session>, reason: RemovalReason) {
        self.sessions
            .remove_if(session.client_id(), |_, s| Arc::ptr_eq(s, session));
        let subscriptions = {
            let mut st = session.lock();
            if st.removed.is_some() {
                return;
            }
            st.removed = Some(reason);
            st.queue.clear();
            // The held connect stays in place so its waiter answers `reconnect: none`; its
            // browser slot is freed now, in case that waiter is gone.
            let browser = st.hold.as_mut().and_then(|slot| {
                slot.release();
                slot.browser.take()
            });
            if let Some(browser) = browser {
                self.release_browser_slot(&browser);
            }
            std::mem::take(&mut st.subscriptions)
        };
        for name in &subscriptions {
            self.subscriptions.remove(name, session.client_id());
        }
        if let Some(browser) = session.browser() {
            self.uncount_browser_session(browser);
        }
        self.stats.count_removal(reason);
        for listener in &self.listeners {
            listener.session_removed(session.client_id(), reason);
        }
    }

    /// Finds the session of `client_id`, if the request may act for it.
    ///
    /// Over HTTP a session is only found with the browser cookie it was handshaken with,
    /// unless `trust_client_session` is on: a leaked `clientId` alone is useless.
    pub(crate) fn find_session(
        &self,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Option<Arc<Session>> {
        if ctx.require_bound_session
            && ctx.bound_session.as_ref().map(ClientId::as_str) != Some(client_id)
        {
            return None;
        }
        let session = self
            .sessions
            .get(client_id)
            .map(|s| Arc::clone(s.value()))?;
        let trusted = self.config.trust_client_session
            || !ctx.transport.is_http()
            || (session.browser().is_some() && session.browser() == ctx.browser.as_ref());
        trusted.then_some(session)
    }

    fn piggy_back(&self, ctx: &RequestContext) -> bool {
        !self.config.meta_connect_deliver_only && ctx.transport != TransportKind::CallbackPolling
    }

    /// Counts one more session for `browser`, unless it has `maxBrowserSessions` already.
    pub(crate) fn count_browser_session(&self, browser: &BrowserId) -> bool {
        let mut count = self.browser_sessions.entry(browser.clone()).or_insert(0);
        if *count >= self.config.max_browser_sessions {
            return false;
        }
        *count += 1;
        true
    }

    fn uncount_browser_session(&self, browser: &BrowserId) {
        if let Some(mut count) = self.browser_sessions.get_mut(browser) {
            *count = count.saturating_sub(1);
        }
        self.browser_sessions
            .remove_if(browser, |_, count| *count == 0);
    }

    pub(crate) fn release_browser_slot(&self, browser: &BrowserId) {
        if let Some(mut count) = self.browsers.get_mut(browser) {
            *count = count.saturating_sub(1);
        }
        self.browsers.remove_if(browser, |_, count| *count == 0);
    }

    /// Full advice for a connect reply: the effective interval and the server's timeout.
    ///
    /// While shutting down, the interval is at least [`SHUTDOWN_RETRY_INTERVAL`]: released
    /// clients come back after the server is gone (and fail over or re-handshake) instead of
    /// spinning on immediate replies in the meantime.
    pub(crate) fn connect_advice(&self, st: &crate::session::SessionState) -> Advice {
        let mut interval = st.interval;
        if self.shutting_down.load(Ordering::Relaxed) {
            interval = interval.max(SHUTDOWN_RETRY_INTERVAL);
        }
        self.full_advice(interval)
    }

    /// `reconnect: retry` with `interval`, the server's `timeout`, and `maxInterval` when
    /// `handshakeReconnect` is on: the advice of handshake and re-advised connect replies.
    pub(crate) fn full_advice(&self, interval: std::time::Duration) -> Advice {
        Advice {
            reconnect: Some(Reconnect::Retry),
            interval: Some(millis(interval)),
            timeout: Some(millis(self.config.timeout)),
            max_interval: self
                .config
                .handshake_reconnect
                .then(|| millis(self.config.max_interval)),
            multiple_clients: None,
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}
