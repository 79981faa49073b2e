//! The engine: takes a batch of messages with the time, returns what to send and what to hold.
//!
//! The engine never reads the clock and never waits. A `/meta/connect` that must wait comes
//! back as a [`Hold`]; the driver awaits it (see [`Hold::poll_released`]) or its deadline, then
//! calls [`Engine::complete_hold`] for the reply. Sessions live in a sharded map and each has its
//! own lock, so the engine is shared by reference between all request handlers.
//!
//! This file holds the engine's state and the path of one batch; the other parts of the engine
//! live beside it by concern: `meta` (the meta channels), `publish` (publishing and fan-out),
//! [`hold`](crate::hold) (held connects and websocket pushers), `lifecycle` (expiry, removal,
//! drain), [`log`](crate::log) (entries and effects, for clusters) and
//! [`handover`](crate::handover) (moving sessions between nodes).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bayeux_message::{
    is_valid_message_id, ChannelName, ClientId, EncodedMessage, Message, Refusal, Reply,
};
use dashmap::DashMap;

use crate::channels::{ChannelListener, ChannelOptions, Channels};
use crate::config::{EngineConfig, TransportKind};
use crate::extension::Extension;
use crate::history::{History, Retention};
use crate::hold::Hold;
use crate::ids::{BrowserId, IdSource};
use crate::listener::SessionListener;
use crate::log::{Effect, Gate, LogMode, Pending};
use crate::presence::{ClusterPresence, Presence, PresenceListener};
use crate::registry::ChannelRegistry;
use crate::security::{AllowAll, Authorizer, HttpInfo, SecurityPolicy};
use crate::service::{MessageListener, Service};
use crate::session::Session;
use crate::stats::{EngineStats, SessionCensus};
use crate::subscriptions::SubscriptionIndex;

/// Least `interval` advised to clients while the server shuts down.
pub const SHUTDOWN_RETRY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a request comes from.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The transport that carried the request.
    pub transport: TransportKind,
    /// The browser cookie an HTTP request presented (none if it carried none).
    pub browser: Option<BrowserId>,
    /// The session a websocket connection is bound to (by its handshake or a resume).
    pub bound_session: Option<ClientId>,
    /// Only the bound session may be used (`ws.requireHandshakePerConnection`): a new
    /// connection cannot resume a session by presenting its `clientId`.
    pub require_bound_session: bool,
    /// The HTTP request (headers, peer), for the security policy's `can_handshake`, filled only
    /// when one is installed ([`Engine::has_security_policy`]). The HTTP transports fill it
    /// for a batch with a handshake only; a websocket, for every batch (from its upgrade
    /// request, copied once).
    pub http: Option<Arc<HttpInfo>>,
    /// The request came over HTTP/2 or later, whose connections multiplex requests:
    /// `http2_max_sessions_per_browser` applies instead of `max_sessions_per_browser`.
    pub multiplexed: bool,
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
            multiplexed: false,
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
    /// The browser cookie given to that session when the request presented none: the HTTP
    /// transport sets it.
    pub new_browser: Option<BrowserId>,
    /// In [`LogMode::Shared`]: what the driver must carry out before sending `messages`,
    /// settling each with [`Engine::settle`]. Always empty on one node.
    pub effects: Vec<Effect>,
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

/// One message's part of the response.
#[derive(Default)]
struct Done {
    deliveries: Vec<EncodedMessage>,
    reply: Option<EncodedMessage>,
    hold: Option<Hold>,
    handshaken: Option<ClientId>,
    new_browser: Option<BrowserId>,
    /// What the reply waits for ([`LogMode::Shared`]).
    effects: Vec<Pending>,
    /// The request and its session, kept to answer it anew should an effect fail.
    gate: Option<(Message, Option<Arc<Session>>)>,
}

impl Done {
    fn reply(reply: EncodedMessage) -> Self {
        Self {
            reply: Some(reply),
            ..Self::default()
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
    /// An application policy replaced [`AllowAll`].
    custom_policy: bool,
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
    pub(crate) log_mode: LogMode,
    /// The log position of the last entry applied ([`LogMode::Shared`]).
    pub(crate) applied: AtomicU64,
    /// Channel history for replay (`ext.replay`).
    pub(crate) history: History,
    /// Users and their sessions: all of them on one node; in a cluster, those served here.
    pub(crate) presence: Presence,
    /// In a cluster: the users online on any node, as the shared log says.
    pub(crate) online: ClusterPresence,
    pub(crate) presence_listeners: Vec<Arc<dyn PresenceListener>>,
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
            custom_policy: false,
            authorizers: ChannelRegistry::default(),
            services: ChannelRegistry::default(),
            message_listeners: ChannelRegistry::default(),
            channels: Channels::default(),
            channel_listeners: Vec::new(),
            shutting_down: AtomicBool::new(false),
            drain: OnceLock::new(),
            stats: EngineStats::default(),
            next_connection: AtomicU64::new(1),
            log_mode: LogMode::Inline,
            applied: AtomicU64::new(0),
            history: History::default(),
            presence: Presence::default(),
            online: ClusterPresence::default(),
            presence_listeners: Vec::new(),
        }
    }

    /// Adds a listener told when users come online and go offline.
    pub fn with_presence_listener(mut self, listener: Arc<dyn PresenceListener>) -> Self {
        self.presence_listeners.push(listener);
        self
    }

    /// Whether presence listeners are registered.
    pub fn has_presence_listeners(&self) -> bool {
        !self.presence_listeners.is_empty()
    }

    /// Associates a session with `user` (one node; see [`crate::presence`]); a session
    /// associated with another user leaves it first. False when the session does not exist.
    pub fn associate(&self, client_id: &str, user: &str) -> bool {
        let Some(session) = self.session(client_id) else {
            return false;
        };
        let user: Arc<str> = Arc::from(user);
        let previous = {
            let mut st = session.lock();
            if st.removed {
                return false;
            }
            // In a cluster, the user travels with the session's record.
            st.dirty = true;
            st.user.replace(Arc::clone(&user))
        };
        if let Some(previous) = previous {
            if previous == user {
                return true;
            }
            self.user_session_ended(&previous, session.client_id());
        }
        self.user_session_started(&user, session.client_id());
        true
    }

    /// Ends a session's association with its user. False when it had none.
    pub fn dissociate(&self, client_id: &str) -> bool {
        let Some(session) = self.session(client_id) else {
            return false;
        };
        let Some(user) = ({
            let mut st = session.lock();
            st.dirty = true;
            st.user.take()
        }) else {
            return false;
        };
        self.user_session_ended(&user, session.client_id());
        true
    }

    /// The online users, sorted: on one node, those with a session; in a cluster, those the
    /// shared log says are online on any node.
    pub fn users_online(&self) -> Vec<String> {
        match self.log_mode {
            LogMode::Inline => self.presence.users(),
            LogMode::Shared => self.online.users(),
        }
    }

    /// Whether `user` is online (in a cluster: on any node).
    pub fn is_online(&self, user: &str) -> bool {
        match self.log_mode {
            LogMode::Inline => !self.presence.sessions_of(user).is_empty(),
            LogMode::Shared => self.online.is_online(user),
        }
    }

    /// The sessions of `user` (none when it is offline); in a cluster, those served here.
    pub fn sessions_of_user(&self, user: &str) -> Vec<ClientId> {
        self.presence.sessions_of(user)
    }

    /// In a cluster: the users online (with their versions) when this node starts reading
    /// the shared log, before it applies what follows.
    pub fn start_presence_at(&self, now: Instant, online: Vec<(String, u64)>) {
        self.online.reset(now, online);
    }

    /// Applies a presence change read from the shared log: tells the listeners, unless it
    /// is known or older than what is known.
    pub(crate) fn presence_changed(&self, now: Instant, user: &str, online: bool, version: u64) {
        if !self.online.change(now, user, online, version) {
            return;
        }
        for listener in &self.presence_listeners {
            if online {
                listener.joined(user);
            } else {
                listener.left(user);
            }
        }
    }

    /// The entry that delivers `message` to every session of `user` in a cluster (outgoing
    /// hooks applied); `None` when an extension dropped it.
    pub fn prepare_deliver_to_user(
        &self,
        user: &str,
        message: Message,
    ) -> Option<crate::log::Entry> {
        Some(crate::log::Entry::DeliverUser {
            user: user.to_owned(),
            message: self.outgoing_delivery(message)?,
        })
    }

    /// Sends `message` to every session of `user` (Seti's `deliver`), encoded once; returns
    /// how many sessions it was queued for (a single node: see `prepare_deliver_to_user`).
    pub fn deliver_to_user(&self, now: Instant, user: &str, message: Message) -> usize {
        if self.presence.sessions_of(user).is_empty() {
            return 0;
        }
        match self.prepare_deliver_to_user(user, message) {
            Some(entry) => self.apply_here(now, &entry),
            None => 0,
        }
    }

    /// A session of `user` started here. One node tells the listeners when the user just came
    /// online; a cluster only keeps its index (the registry decides, see `bayeux-server`).
    pub(crate) fn user_session_started(&self, user: &Arc<str>, client_id: &ClientId) {
        if self.presence.add(user, client_id) && self.log_mode == LogMode::Inline {
            for listener in &self.presence_listeners {
                listener.joined(user);
            }
        }
    }

    /// A session of `user` ended here (or moved away, in a cluster).
    pub(crate) fn user_session_ended(&self, user: &str, client_id: &ClientId) {
        if self.presence.remove(user, client_id) && self.log_mode == LogMode::Inline {
            for listener in &self.presence_listeners {
                listener.left(user);
            }
        }
    }

    /// Keeps history on a channel or on every channel a pattern (`/chat/**`) matches, for
    /// clients that ask to replay it (`ext.replay` on `/meta/subscribe`). The most specific
    /// rule applies. Set rules before the first publish.
    pub fn configure_history(&self, channel: &ChannelName, retention: Retention) {
        self.history.configure(channel, retention);
    }

    /// Whether any channel keeps history.
    pub fn history_enabled(&self) -> bool {
        self.history.is_enabled()
    }

    /// The history kept on a concrete channel, if any.
    pub fn history_retention(&self, channel: &ChannelName) -> Option<Retention> {
        self.history.retention(channel)
    }

    /// Where this engine's history begins: ids up to `floor` are unknown to it and refused;
    /// on one node, replay ids count on from `floor + 1` (the driver passes the wall clock in
    /// microseconds, so ids keep growing across restarts). In a cluster the ids are log
    /// positions and `floor` is the position before the first one this node holds. Forgets
    /// any history kept.
    pub fn start_replay_ids_at(&self, floor: u64) {
        self.history.start_at(floor);
    }

    /// Records a publish read from the shared log at `position` in its channel's history,
    /// without delivering it: how a node starting up fills its history with what was
    /// published before it ran. `at` is when it was appended. Call in log order, before
    /// reading the log for delivery.
    pub fn remember_history(&self, at: Instant, position: u64, entry: &crate::log::Entry) {
        if let crate::log::Entry::Publish {
            channel, message, ..
        } = entry
        {
            if let Some(history) = self.history.channel(channel) {
                crate::history::lock(&history).record(position, at, message);
            }
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
        self.custom_policy = true;
        self
    }

    /// Whether an application security policy is installed. Only a policy reads the HTTP
    /// request behind a handshake ([`RequestContext::http`]), so transports copy the request's
    /// headers only when this is true: without one, a websocket keeps no copy of its upgrade
    /// request for its whole life, and a handshake costs a dozen allocations less.
    pub fn has_security_policy(&self) -> bool {
        self.custom_policy
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
            let index = replies.len();
            let answered = done.reply.is_some();
            replies.extend(done.reply);
            if done.handshaken.is_some() {
                outcome.handshaken = done.handshaken;
                outcome.new_browser = done.new_browser;
            }
            if done.hold.is_some() {
                outcome.hold = done.hold;
            }
            for pending in done.effects {
                let gate = done
                    .gate
                    .as_ref()
                    .filter(|_| answered)
                    .map(|(request, session)| Gate {
                        index,
                        request: request.clone(),
                        session: session.clone(),
                    });
                outcome.effects.push(Effect::new(pending, gate));
            }
        }

        if let Some(session) = batched {
            let mut st = session.lock();
            st.batch_depth -= 1;
            if st.batch_depth == 0 && !st.queue.is_empty() {
                if self.piggy_back(ctx) && !st.deliver_only(&self.config) {
                    deliveries.extend(st.drain_queue());
                } else if let Some(slot) = st.hold.as_mut() {
                    slot.release_for_delivery();
                }
            }
        }
        // Replies follow the deliveries: the gates point past them.
        for effect in &mut outcome.effects {
            effect.shift_gate(deliveries.len());
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
        let own = session
            .as_deref()
            .map(Session::extensions)
            .unwrap_or_default();
        if !self
            .extensions
            .iter()
            .chain(&own)
            .all(|ext| ext.incoming(session.as_deref(), &mut msg))
        {
            let reply = Refusal::MessageDeleted.reply_to(&msg);
            return Done::reply(self.outgoing_reply(session.as_deref(), &msg, reply));
        }
        let mut effects = Vec::new();
        let step = match name.as_str() {
            "/meta/handshake" => self.handshake(now, ctx, &msg, &mut effects),
            "/meta/connect" => self.connect(now, ctx, &msg, alone),
            "/meta/disconnect" => Step::Reply(self.disconnect(ctx, &msg, &mut effects)),
            "/meta/subscribe" => Step::Reply(self.subscribe(now, ctx, &msg, &mut effects)),
            "/meta/unsubscribe" => Step::Reply(self.unsubscribe(now, ctx, &msg, &mut effects)),
            _ => {
                // The request is consumed by the publish: keep what a new reply needs first.
                let gate =
                    (self.log_mode == LogMode::Shared).then(|| (trimmed(&msg), session.clone()));
                let reply =
                    self.publish_request(now, ctx, &name, session.as_deref(), msg, &mut effects);
                return Done {
                    gate: gate.filter(|_| !effects.is_empty()),
                    effects,
                    ..Done::reply(reply)
                };
            }
        };
        // Outgoing hooks run here, after the handlers dropped every lock.
        let mut done = match step {
            Step::Reply(reply) => Done::reply(self.outgoing_reply(session.as_deref(), &msg, reply)),
            Step::Connect(deliveries, reply) => Done {
                deliveries,
                ..Done::reply(self.outgoing_reply(session.as_deref(), &msg, reply))
            },
            Step::Handshaken(new, reply) => {
                // Counted here, where every successful handshake passes.
                EngineStats::count(&self.stats.handshakes);
                let done = Done {
                    handshaken: Some(new.client_id().clone()),
                    new_browser: new.browser().filter(|_| ctx.browser.is_none()).cloned(),
                    ..Done::reply(self.outgoing_reply(Some(&new), &msg, reply))
                };
                if !effects.is_empty() {
                    return Done {
                        effects,
                        gate: Some((trimmed(&msg), Some(new))),
                        ..done
                    };
                }
                done
            }
            Step::Hold(hold) => Done {
                hold: Some(hold),
                ..Done::default()
            },
        };
        if !effects.is_empty() {
            done.gate = Some((trimmed(&msg), session));
            done.effects = effects;
        }
        done
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
    pub(crate) fn outgoing_delivery(&self, mut msg: Message) -> Option<EncodedMessage> {
        for ext in self.extensions.iter().rev() {
            if !ext.outgoing(&mut msg) {
                return None;
            }
        }
        Some(msg.encode())
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
}

/// The parts of a request its reply is made of (`id`, `channel`, `clientId`, `subscription`,
/// `ext`): enough to answer it anew, without keeping its data.
fn trimmed(msg: &Message) -> Message {
    let mut kept = Message::new();
    for key in ["id", "channel", "clientId", "subscription", "ext"] {
        if let Some(value) = msg.get(key) {
            kept = kept.with(key, value.clone());
        }
    }
    kept
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}
