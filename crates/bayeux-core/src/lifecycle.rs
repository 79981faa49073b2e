//! Sessions coming and going: local sessions, expiry sweeps, removal, shutdown and drain, and
//! the rules that find a request's session (browser cookie, bound websocket).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bayeux_message::{Advice, ClientId, Reconnect};

use crate::ack::AckNumbering;
use crate::config::{millis, TransportKind};
use crate::engine::{Engine, RequestContext, SHUTDOWN_RETRY_INTERVAL};
use crate::ids::BrowserId;
use crate::listener::RemovalReason;
use crate::log::LogMode;
use crate::session::{LocalSink, Session, SessionState};

/// How long a node remembers that a user went offline, in a cluster.
const FORGET_OFFLINE_AFTER: Duration = Duration::from_secs(600);

/// What one sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Sessions removed for not connecting in time (on one node).
    pub removed: usize,
    /// [`LogMode::Shared`]: sessions that stopped connecting, left in place. Remove them from
    /// the registry (once, cluster-wide), then with [`Engine::remove`].
    pub expired: Vec<ClientId>,
    /// [`LogMode::Shared`], draining: sessions whose moment to move to another node has come.
    /// Hand each over with [`Engine::release`].
    pub leaving: Vec<ClientId>,
}

impl Engine {
    /// Creates a local session: a server-side client, named `<id_hint>_<random>`, whose
    /// deliveries go to `sink` as they are published, and which never expires. It subscribes
    /// and publishes through [`Engine::handle`] with a [`TransportKind::Local`] context, under
    /// the same rules as remote clients (the security policy's handshake check excepted).
    /// In a cluster it stays on this node: its subscriptions apply here at once.
    pub fn create_local_session(
        &self,
        now: Instant,
        id_hint: &str,
        sink: LocalSink,
    ) -> Arc<Session> {
        let cid = ClientId::new(format!("{id_hint}_{}", self.ids.client_id()));
        let session = Arc::new(Session::new(
            cid.clone(),
            None,
            false,
            now,
            now,
            self.ack_numbering(),
            self.applied_position(),
        ));
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

    /// Removes sessions that stopped connecting (on one node; in a cluster, reports them),
    /// flushes lazy messages whose time has come, and removes channels unused for a few
    /// sweeps. Call it every sweep period.
    ///
    /// A session whose held connect was never answered nor abandoned (its waiter vanished)
    /// expires `interval + maxInterval` after that connect's deadline.
    pub fn sweep(&self, now: Instant) -> Sweep {
        let shared = self.log_mode == LogMode::Shared;
        if shared {
            // A presence change read this late after a newer one is taken as new: appends
            // are not delayed that long but by a backplane outage.
            if let Some(before) = now.checked_sub(FORGET_OFFLINE_AFTER) {
                self.online.forget_offline_before(before);
            }
        }
        let mut sweep = Sweep::default();
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
                    if shared {
                        sweep.leaving.push(entry.key().clone());
                    } else if let Some(slot) = st.hold.as_mut() {
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
        if shared {
            sweep.expired = expired.iter().map(|s| s.client_id().clone()).collect();
        } else {
            for session in &expired {
                self.remove_session(session, RemovalReason::Timeout);
            }
            sweep.removed = expired.len();
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
        sweep
    }

    /// Disconnects a session from the server side. Its held connect is answered with
    /// `reconnect: none`. Returns false when no such session exists.
    pub fn disconnect_session(&self, client_id: &str) -> bool {
        self.remove(client_id, RemovalReason::Disconnect)
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
    ///
    /// In a cluster ([`LogMode::Shared`]) sessions are not removed but handed over: the sweep
    /// reports each at its moment ([`Sweep::leaving`]) for the driver to release.
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

    /// Removes a session and tells the listeners.
    pub(crate) fn remove_session(&self, session: &Arc<Session>, reason: RemovalReason) {
        if !self.end_session(session) {
            return;
        }
        self.stats.count_removal(reason);
        for listener in &self.listeners {
            listener.session_removed(session.client_id(), reason);
        }
    }

    /// Removes a session without telling the listeners: it ended or lives on elsewhere.
    pub(crate) fn drop_session(&self, session: &Arc<Session>) {
        self.end_session(session);
    }

    /// Removes a session whose handshake failed after all: its listeners were never told.
    pub(crate) fn discard_session(&self, session: &Arc<Session>) {
        self.end_session(session);
    }

    /// Takes a session out of every index and releases its held connect; false when it had
    /// ended already.
    fn end_session(&self, session: &Arc<Session>) -> bool {
        self.sessions
            .remove_if(session.client_id(), |_, s| Arc::ptr_eq(s, session));
        let (subscriptions, user) = {
            let mut st = session.lock();
            if st.removed {
                return false;
            }
            st.removed = true;
            st.queue.clear();
            // The held connect stays in place so its waiter answers (`reconnect: none`, or
            // `retry` once moved); its browser slot is freed now, in case that waiter is gone.
            let browser = st.hold.as_mut().and_then(|slot| {
                slot.release();
                slot.browser.take()
            });
            if let Some(browser) = browser {
                self.release_browser_slot(&browser);
            }
            if let Some(pusher) = st.pusher.as_mut() {
                if let Some(waker) = pusher.waker.take() {
                    waker.wake();
                }
            }
            (std::mem::take(&mut st.subscriptions), st.user.clone())
        };
        for name in subscriptions.keys() {
            self.subscriptions.remove(name, session.client_id());
        }
        if let Some(browser) = session.browser() {
            self.uncount_browser_session(browser);
        }
        if let Some(user) = user {
            self.user_session_ended(&user, session.client_id());
        }
        true
    }

    /// Finds the session of `client_id`, if the request may act for it (see
    /// [`Engine::may_act_for`]). A request presenting the session's own cookie binds the
    /// session to it.
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
        if !self.may_act_for(&session, ctx) {
            return None;
        }
        if ctx.transport.is_http() && ctx.browser.is_some() {
            // Only the session's own cookie gets this far (or any, when trusting clients).
            if session.browser() == ctx.browser.as_ref() {
                session.bind_cookie();
            }
        }
        Some(session)
    }

    /// Whether a request may act for `session`. Always over websocket and locally. Over HTTP:
    /// with the browser cookie the session was handshaken with; or with no cookie at all, as
    /// long as the client never presented that cookie back (a client that keeps no cookies,
    /// which is then known by its `clientId` alone, like a websocket client); never with
    /// another browser's cookie. `trust_client_session` lifts the check.
    pub fn may_act_for(&self, session: &Session, ctx: &RequestContext) -> bool {
        if self.config.trust_client_session || !ctx.transport.is_http() {
            return true;
        }
        match &ctx.browser {
            Some(presented) => session.browser() == Some(presented),
            None => !session.cookie_bound(),
        }
    }

    pub(crate) fn piggy_back(&self, ctx: &RequestContext) -> bool {
        !self.config.meta_connect_deliver_only && ctx.transport != TransportKind::CallbackPolling
    }

    /// How the `ack` extension numbers batches here: by connect reply on one node, by log
    /// position in a cluster (so that any node knows what a client acknowledges).
    pub(crate) fn ack_numbering(&self) -> AckNumbering {
        match self.log_mode {
            LogMode::Inline => AckNumbering::Batches,
            LogMode::Shared => AckNumbering::Positions,
        }
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
    pub(crate) fn connect_advice(&self, st: &SessionState) -> Advice {
        let mut interval = st.interval;
        if self.shutting_down.load(Ordering::Relaxed) {
            interval = interval.max(SHUTDOWN_RETRY_INTERVAL);
        }
        self.full_advice(interval)
    }

    /// `reconnect: retry` with `interval`, the server's `timeout`, and `maxInterval` when
    /// `handshakeReconnect` is on: the advice of handshake and re-advised connect replies.
    pub(crate) fn full_advice(&self, interval: Duration) -> Advice {
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
