//! The five meta channels: handshake, connect, disconnect, subscribe, unsubscribe.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bayeux_message::{
    Advice, ChannelKind, ChannelName, Message, Reconnect, Refusal, Reply, BAYEUX_VERSION,
};
use serde_json::{Map, Value};

use crate::config::{millis, TransportKind};
use crate::engine::{Engine, RequestContext, Step};
use crate::history::{self, ReplayFrom};
use crate::hold::Hold;
use crate::listener::RemovalReason;
use crate::log::{Action, Entry, Followup, LogMode, Pending};
use crate::security::Operation;
use crate::session::{HoldSlot, Session};
use crate::stats::EngineStats;

impl Engine {
    /// `/meta/handshake`: a new session, every time. In a cluster it exists once the registry
    /// has it (an effect), and only then are the listeners told.
    pub(crate) fn handshake(
        &self,
        now: Instant,
        ctx: &RequestContext,
        msg: &Message,
        effects: &mut Vec<Pending>,
    ) -> Step {
        let cid = self.ids.client_id();
        // Until its first connect, a session lives as long as after a connect reply.
        let expire_at = now + self.config.interval + self.config.max_interval;
        if self.is_draining() {
            return Step::Reply(Refusal::Draining.reply_to(msg));
        }
        if self.sessions.len() >= self.config.max_sessions {
            return Step::Reply(Refusal::TooManySessions.reply_to(msg));
        }
        // A client over HTTP without a cookie is given one; a client that presents its
        // cookie at handshake is bound to it at once.
        let browser = match &ctx.browser {
            Some(presented) => Some(presented.clone()),
            None if ctx.transport.is_http() => Some(self.ids.browser_id()),
            None => None,
        };
        let session = Arc::new(Session::new(
            cid.clone(),
            browser.clone(),
            ctx.browser.is_some(),
            now,
            expire_at,
            self.ack_numbering(),
            self.applied_position(),
        ));
        session.lock().transport = ctx.transport;
        if !self.policy.can_handshake(&session, ctx, msg) {
            return Step::Reply(Refusal::HandshakeDenied.reply_to(msg));
        }
        if let Some(browser) = &browser {
            if !self.count_browser_session(browser) {
                return Step::Reply(Refusal::TooManyBrowserSessions.reply_to(msg));
            }
        }
        self.sessions.insert(cid.clone(), Arc::clone(&session));
        match self.log_mode {
            LogMode::Inline => {
                for listener in &self.listeners {
                    listener.session_added(&cid);
                }
                if let Some(user) = session.user() {
                    self.user_session_started(&user, &cid);
                }
            }
            LogMode::Shared => {
                if let Some(user) = session.user() {
                    self.user_session_started(&user, &cid);
                }
                effects.push(Pending {
                    action: Action::Register(cid.clone()),
                    followup: Followup::Added(cid.clone()),
                })
            }
        }
        let reply = Reply {
            client_id: Some(cid.clone()),
            version: Some(BAYEUX_VERSION),
            minimum_version: Some(BAYEUX_VERSION),
            supported_connection_types: Some(
                self.config
                    .transports
                    .iter()
                    .map(|t| t.name().to_owned())
                    .collect(),
            ),
            advice: Some(self.full_advice(self.config.interval)),
            // Said whether or not the client asked: Salesforce's replay extension waits for
            // it before sending replay ids, and asks nothing itself.
            ext: self
                .history
                .is_enabled()
                .then(|| Map::from_iter([("replay".to_owned(), Value::Bool(true))])),
            ..Reply::success(msg)
        };
        Step::Handshaken(session, reply)
    }

    /// `/meta/connect`: answered now, or held until a delivery, a disconnect or the timeout.
    pub(crate) fn connect(
        &self,
        now: Instant,
        ctx: &RequestContext,
        msg: &Message,
        alone: bool,
    ) -> Step {
        let Some(session) = msg.client_id().and_then(|cid| self.find_session(cid, ctx)) else {
            return Step::Reply(Refusal::SessionUnknown.reply_to(msg));
        };
        let connection_type = msg.get("connectionType").and_then(Value::as_str);
        if let Some(name) = connection_type {
            let allowed =
                TransportKind::from_name(name).is_some_and(|t| self.config.transports.contains(&t));
            if !allowed {
                return Step::Reply(Refusal::ConnectionTypeUnsupported.reply_to(msg));
            }
        }
        if self.log_mode == LogMode::Inline && self.drain_due(session.client_id(), now) {
            // Sent elsewhere, with what was queued for it handed over first.
            let queued = {
                let mut st = session.lock();
                if let Some(mut old) = st.hold.take() {
                    old.release();
                    if let Some(browser) = &old.browser {
                        self.release_browser_slot(browser);
                    }
                }
                st.drain_for_connect()
            };
            self.remove_session(&session, RemovalReason::Drained);
            return Step::Connect(queued, Refusal::Draining.reply_to(msg));
        }
        EngineStats::count(&self.stats.connects);
        let mut st = session.lock();
        if st.removed {
            return Step::Reply(Refusal::SessionUnknown.reply_to(msg));
        }
        st.transport = ctx.transport;
        // Only the newest connect of a session is live (a reload, or a client that gave up on
        // the previous one): the older waiter is told it was superseded.
        if let Some(mut old) = st.hold.take() {
            old.release();
            if let Some(browser) = &old.browser {
                self.release_browser_slot(browser);
            }
        }
        let first = !std::mem::replace(&mut st.connected, true);
        if first || msg.advice().is_some() {
            st.readvise = true;
        }
        // Client advice is transient: it applies to this connect only.
        // Capped at maxInterval: a client must not advise itself a session that never expires.
        st.interval = msg
            .advice_millis("interval")
            .map_or(self.config.interval, |ms| {
                Duration::from_millis(ms).min(self.config.max_interval.max(self.config.interval))
            });
        let timeout = msg
            .advice_millis("timeout")
            .map_or(self.config.timeout, |t| {
                Duration::from_millis(t).min(self.config.timeout)
            });

        let answer_now = first
            || timeout.is_zero()
            || !st.queue.is_empty()
            || st.ack.as_ref().is_some_and(|ack| ack.needs_resend())
            || (ctx.transport.is_http() && !alone)
            || self.shutting_down.load(Ordering::Relaxed);
        let mut browser_slot = None;
        if !answer_now && ctx.transport.is_http() {
            if let Some(browser) = &ctx.browser {
                if !self.take_browser_slot(browser, ctx.multiplexed) {
                    return self.multiple_clients_reply(now, &mut st, msg);
                }
                browser_slot = Some(browser.clone());
            }
        }
        if answer_now {
            let mut reply = Reply::success(msg);
            let shutting_down = self.shutting_down.load(Ordering::Relaxed);
            let readvise = std::mem::take(&mut st.readvise);
            if readvise || std::mem::take(&mut st.multiple_clients) || shutting_down {
                reply.advice = Some(self.connect_advice(&st));
            }
            st.expire_at = now + st.interval + self.config.max_interval;
            return Step::Connect(st.drain_for_connect(), reply);
        }

        st.next_ticket += 1;
        let ticket = st.next_ticket;
        if std::mem::take(&mut st.multiple_clients) {
            // Leaving multiple-clients mode: re-advise so the client drops the long interval.
            st.readvise = true;
        }
        let deadline = now + timeout;
        st.hold = Some(HoldSlot {
            ticket,
            id: msg.id().cloned(),
            ext: msg.get("ext").cloned(),
            deadline,
            released: false,
            for_delivery: false,
            waker: None,
            browser: browser_slot,
        });
        drop(st);
        Step::Hold(Hold::new(session, ticket, deadline))
    }

    /// Counts one more held connect for `browser`, unless it already has its maximum.
    /// Counts one more held connect for `browser`, unless it has as many as allowed. Counted
    /// even when unlimited: HTTP/1.1 and HTTP/2 connects of one browser share the count, and
    /// each release takes one off.
    fn take_browser_slot(&self, browser: &crate::ids::BrowserId, multiplexed: bool) -> bool {
        let max = if multiplexed {
            self.config.http2_max_sessions_per_browser
        } else {
            self.config.max_sessions_per_browser
        };
        let mut count = self.browsers.entry(browser.clone()).or_insert(0);
        if max >= 0 && *count >= max.unsigned_abs() {
            return false;
        }
        *count += 1;
        true
    }

    fn multiple_clients_reply(
        &self,
        now: Instant,
        st: &mut crate::session::SessionState,
        msg: &Message,
    ) -> Step {
        st.multiple_clients = true;
        let poll = self.config.multi_session_interval;
        st.expire_at = now + poll + self.config.max_interval;
        let mut reply = Reply::success(msg);
        reply.advice = Some(if poll.is_zero() {
            reply.successful = false;
            Advice::stop()
        } else {
            Advice {
                reconnect: Some(Reconnect::Retry),
                interval: Some(millis(poll)),
                multiple_clients: Some(true),
                ..Advice::default()
            }
        });
        Step::Connect(st.drain_for_connect(), reply)
    }

    /// `/meta/disconnect`: removes the session and releases its held connect (in a cluster,
    /// once the registry forgot it).
    pub(crate) fn disconnect(
        &self,
        ctx: &RequestContext,
        msg: &Message,
        effects: &mut Vec<Pending>,
    ) -> Reply {
        let Some(session) = msg.client_id().and_then(|cid| self.find_session(cid, ctx)) else {
            return Refusal::SessionUnknown.reply_to(msg);
        };
        if self.log_mode == LogMode::Shared && !session.is_local() {
            effects.push(Pending {
                action: Action::Unregister(session.client_id().clone()),
                followup: Followup::Removed(session, RemovalReason::Disconnect),
            });
        } else {
            self.remove_session(&session, RemovalReason::Disconnect);
        }
        Reply::success(msg)
    }

    /// `/meta/subscribe`: all channels of `subscription`, or none of them.
    pub(crate) fn subscribe(
        &self,
        now: Instant,
        ctx: &RequestContext,
        msg: &Message,
        effects: &mut Vec<Pending>,
    ) -> Reply {
        let Some(session) = msg.client_id().and_then(|cid| self.find_session(cid, ctx)) else {
            return Refusal::SessionUnknown.reply_to(msg);
        };
        let names = match subscription_names(msg) {
            Ok(names) => names,
            Err(refusal) => return refusal.reply_to(msg),
        };
        for name in &names {
            if name.kind() == ChannelKind::Meta {
                let refusal = if name.is_protocol_meta() || name.is_wildcard() {
                    Refusal::SubscribeDenied
                } else {
                    Refusal::CreateDenied
                };
                return refusal.reply_to(msg);
            }
        }
        for name in &names {
            if let Err(refusal) = self.authorize(Operation::Subscribe, name, &session, msg) {
                return refusal.reply_to(msg);
            }
        }
        // Channels are created (within `maxChannels`) before anything is recorded, so a
        // refusal leaves no half-done subscription behind.
        for name in &names {
            if let Err(refusal) = self.use_channel(name) {
                return refusal.reply_to(msg);
            }
        }
        // Service channels answer the subscribe but record nothing: their messages are never
        // broadcast.
        let broadcast: Vec<ChannelName> = names
            .into_iter()
            .filter(|n| n.kind() == ChannelKind::Broadcast)
            .collect();
        let fresh: Vec<ChannelName> = {
            let mut st = session.lock();
            if st.removed {
                return Refusal::SessionUnknown.reply_to(msg);
            }
            st.touch(now, self.config.max_interval);
            let fresh: Vec<ChannelName> = broadcast
                .iter()
                .filter(|n| !st.subscriptions.contains_key(*n))
                .cloned()
                .collect();
            if st.subscriptions.len() + fresh.len() > self.config.max_subscriptions {
                return Refusal::TooManySubscriptions.reply_to(msg);
            }
            fresh
        };
        let replay = match self.replay_requests(now, msg, &fresh) {
            Ok(replay) => replay,
            Err(refusal) => return refusal.reply_to(msg),
        };
        if self.applies_here(&session) {
            let added = self.subscribe_replaying(
                now,
                &session,
                &fresh,
                &replay,
                self.applied_position(),
                u64::MAX,
            );
            for name in &added {
                for listener in &self.listeners {
                    listener.subscribed(session.client_id(), name);
                }
            }
        } else if !broadcast.is_empty() {
            effects.push(Pending {
                action: Action::Append(Entry::Subscribe {
                    session: session.client_id().clone(),
                    channels: broadcast,
                    replay,
                }),
                followup: Followup::Subscribed(session.client_id().clone(), fresh),
            });
        }
        subscription_reply(msg)
    }

    /// `/meta/unsubscribe`: succeeds whether or not the session was subscribed.
    pub(crate) fn unsubscribe(
        &self,
        now: Instant,
        ctx: &RequestContext,
        msg: &Message,
        effects: &mut Vec<Pending>,
    ) -> Reply {
        let Some(session) = msg.client_id().and_then(|cid| self.find_session(cid, ctx)) else {
            return Refusal::SessionUnknown.reply_to(msg);
        };
        let names = match subscription_names(msg) {
            Ok(names) => names,
            Err(refusal) => return refusal.reply_to(msg),
        };
        if names.iter().any(|n| n.kind() == ChannelKind::Meta) {
            return Refusal::UnsubscribeFailed.reply_to(msg);
        }
        let held: Vec<ChannelName> = {
            let mut st = session.lock();
            st.touch(now, self.config.max_interval);
            names
                .iter()
                .filter(|n| st.subscriptions.contains_key(*n))
                .cloned()
                .collect()
        };
        if self.applies_here(&session) {
            let removed = self.remove_subscriptions(&session, &names);
            for name in &removed {
                for listener in &self.listeners {
                    listener.unsubscribed(session.client_id(), name);
                }
            }
        } else {
            effects.push(Pending {
                action: Action::Append(Entry::Unsubscribe {
                    session: session.client_id().clone(),
                    channels: names,
                }),
                followup: Followup::Unsubscribed(session.client_id().clone(), held),
            });
        }
        subscription_reply(msg)
    }

    /// What `ext.replay` asks of the channels `fresh` subscribes to (`-1` and channels not
    /// subscribed here are left out); refused when something asked cannot be served.
    fn replay_requests(
        &self,
        now: Instant,
        msg: &Message,
        fresh: &[ChannelName],
    ) -> Result<Vec<(ChannelName, ReplayFrom)>, Refusal> {
        let Some(Value::Object(asked)) = msg.ext().and_then(|ext| ext.get("replay")) else {
            return Ok(Vec::new());
        };
        let mut replay = Vec::new();
        for name in fresh {
            let Some(value) = asked.get(name.as_str()) else {
                continue;
            };
            let Some(from) = ReplayFrom::parse(value)? else {
                continue;
            };
            if name.is_wildcard() {
                return Err(Refusal::Denied(Cow::Borrowed(
                    "400::replay_not_supported_on_patterns",
                )));
            }
            match self.history.channel(name) {
                Some(history) => history::lock(&history).check(now, from)?,
                // Nothing is kept on this channel: "everything retained" is nothing.
                None if from == ReplayFrom::Retained => continue,
                None => return Err(Refusal::ReplayIdInvalid(value.to_string())),
            }
            replay.push((name.clone(), from));
        }
        Ok(replay)
    }

    /// Whether a session's subscriptions change at once, here: on one node, and for local
    /// sessions, which never leave their node.
    fn applies_here(&self, session: &Session) -> bool {
        self.log_mode == LogMode::Inline || session.is_local()
    }
}

fn subscription_reply(msg: &Message) -> Reply {
    Reply {
        subscription: msg.subscription().cloned(),
        ..Reply::success(msg)
    }
}

/// Reads `subscription`: one channel name or a non-empty array of them.
fn subscription_names(msg: &Message) -> Result<Vec<ChannelName>, Refusal> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| ChannelName::parse(s).ok())
            .ok_or(Refusal::SubscriptionInvalid)
    };
    match msg.subscription() {
        None | Some(Value::Null) => Err(Refusal::SubscriptionMissing),
        Some(Value::Array(items)) if items.is_empty() => Err(Refusal::SubscriptionInvalid),
        Some(Value::Array(items)) => items.iter().map(parse).collect(),
        Some(single) => Ok(vec![parse(single)?]),
    }
}
