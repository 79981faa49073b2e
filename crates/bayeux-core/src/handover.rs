//! Moving a session between the nodes of a cluster: its record, taking one over, letting one go.
//!
//! A session's queue is never copied between nodes: everything queued for it is in the shared
//! log. What travels is a [`SessionRecord`]: who the session is, what it subscribes to (each
//! subscription with the log position it counts from), and the *checkpoint*, the log position
//! through which the client has what it must have (sent to it; acknowledged, with the `ack`
//! extension). The node taking a session over [`adopt`](Engine::adopt)s the record, then
//! [`replay`](Engine::replay)s the log after the checkpoint for that session alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bayeux_message::{ChannelName, ClientId, EncodedMessage, Message, Refusal};
use serde_json::{Map, Value};

use crate::ack::AckQueue;
use crate::engine::Engine;
use crate::history;
use crate::ids::BrowserId;
use crate::listener::RemovalReason;
use crate::log::Entry;
use crate::session::Session;

/// The outcome of [`Engine::release`].
#[derive(Debug)]
pub enum Release {
    /// A request of the session is being processed here: try again once it is done.
    Busy,
    /// Released: its record, exact as of now.
    Released(SessionRecord),
    /// Not served here.
    Unknown,
}

/// A session in use by a request being processed (see [`Engine::use_session`]).
#[derive(Debug)]
pub struct SessionInUse {
    session: Arc<Session>,
}

impl Drop for SessionInUse {
    fn drop(&mut self) {
        let mut st = self.session.lock();
        st.in_use = st.in_use.saturating_sub(1);
    }
}

/// What a cluster's session registry keeps of a session.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    /// The session's id.
    pub client_id: ClientId,
    /// The browser cookie it was given (HTTP transports).
    pub browser: Option<BrowserId>,
    /// Whether the client presented that cookie back: requests must then carry it.
    pub cookie_bound: bool,
    /// Whether the client asked for acknowledged delivery.
    pub ack: bool,
    /// Attributes the application attached to it (at handshake, typically).
    pub attributes: Map<String, Value>,
    /// Subscriptions, each with the log position it counts from.
    pub subscriptions: Vec<(ChannelName, u64)>,
    /// The checkpoint: the log position through which the client has what it must have.
    pub position: u64,
}

/// The key under which a session's user travels in its record's attributes.
const USER_ATTRIBUTE: &str = "bayeux.user";

impl Engine {
    /// The record of a session served here; `None` when there is no such session.
    pub fn snapshot(&self, client_id: &str) -> Option<SessionRecord> {
        let session = self.session(client_id)?;
        Some(self.record_of(&session))
    }

    /// Records of the sessions served here that changed since their last record was taken:
    /// what a periodic checkpoint writes. A change of subscriptions or attributes always
    /// counts; a moved checkpoint counts for sessions without `ack`, and for sessions with
    /// it once `ack_every` has passed since their last record (their client says what it has
    /// anyway: the record only bounds how far back a takeover replays).
    pub fn changed_records(&self, now: Instant, ack_every: Duration) -> Vec<SessionRecord> {
        self.sessions
            .iter()
            .filter(|entry| {
                let mut st = entry.value().lock();
                if st.sink.is_some() {
                    return false;
                }
                let position_due = st.position_moved
                    && (st.ack.is_none()
                        || st
                            .checkpointed_at
                            .is_none_or(|at| now.saturating_duration_since(at) >= ack_every));
                if !(st.dirty || position_due) {
                    return false;
                }
                st.dirty = false;
                st.position_moved = false;
                st.checkpointed_at = Some(now);
                true
            })
            .map(|entry| self.record_of(entry.value()))
            .collect()
    }

    fn record_of(&self, session: &Session) -> SessionRecord {
        let st = session.lock();
        let mut subscriptions: Vec<(ChannelName, u64)> = st
            .subscriptions
            .iter()
            .map(|(name, from)| (name.clone(), *from))
            .collect();
        subscriptions.sort();
        let position = match &st.ack {
            // The client tells which batch it has; until it does, what it acknowledged.
            Some(ack) => ack.acknowledged(),
            None => st.sent_through,
        };
        SessionRecord {
            client_id: session.client_id().clone(),
            browser: session.browser().cloned(),
            cookie_bound: session.cookie_bound(),
            ack: st.ack.is_some(),
            attributes: {
                let mut attributes: Map<String, Value> =
                    st.attributes.clone().into_iter().collect();
                // The user travels among the attributes, so that the registry's record format
                // stays as it is; `adopt` takes it back out.
                if let Some(user) = &st.user {
                    attributes.insert(USER_ATTRIBUTE.to_owned(), Value::from(&**user));
                }
                attributes
            },
            subscriptions,
            position,
        }
    }

    /// Lets another node take the session: returns its record and removes it here, without
    /// telling the listeners (it lives on). A held connect is answered with advice to retry
    /// at once, carrying nothing: what was queued is in the log, and the next node sends it.
    ///
    /// A session with a request being processed here is not released ([`Release::Busy`]),
    /// unless `force`: the caller tries again once the request is done.
    pub fn release(&self, client_id: &str, force: bool) -> Release {
        let Some(session) = self.session(client_id) else {
            return Release::Unknown;
        };
        {
            let mut st = session.lock();
            if st.in_use > 0 && !force {
                return Release::Busy;
            }
            // From here on no request can start using it (`use_session` refuses).
            st.moved = true;
        }
        let record = self.record_of(&session);
        self.drop_session(&session);
        Release::Released(record)
    }

    /// Marks a session as used by a request being processed here, so that it is not
    /// released to another node meanwhile; `None` when it is not served here. Dropping the
    /// guard ends the use.
    pub fn use_session(&self, client_id: &str) -> Option<SessionInUse> {
        let session = self.session(client_id)?;
        {
            let mut st = session.lock();
            if st.removed || st.moved {
                return None;
            }
            st.in_use += 1;
        }
        Some(SessionInUse { session })
    }

    /// Serves a session taken over from another node, as `record` describes it: no
    /// handshake, no listeners. Replay the log after `record.position` with
    /// [`Engine::replay`] before applying anything newer to it.
    pub fn adopt(&self, now: Instant, record: &SessionRecord) -> Arc<Session> {
        if let Some(existing) = self.session(record.client_id.as_str()) {
            return existing;
        }
        let expire_at = now + self.config.interval + self.config.max_interval;
        let session = Arc::new(Session::new(
            record.client_id.clone(),
            record.browser.clone(),
            record.cookie_bound,
            now,
            expire_at,
            self.ack_numbering(),
            record.position,
        ));
        {
            let mut st = session.lock();
            // It connected before, elsewhere: its next connect may be held.
            st.connected = true;
            st.interval = self.config.interval;
            st.attributes = record.attributes.clone().into_iter().collect();
            st.user = match st.attributes.remove(USER_ATTRIBUTE) {
                Some(Value::String(user)) => Some(Arc::from(user)),
                _ => None,
            };
            if record.ack {
                st.ack = Some(AckQueue::new(self.ack_numbering(), record.position));
            }
        }
        if let Some(browser) = &record.browser {
            // Counted like a handshake; a browser over its cap still keeps a moved session.
            let _ = self.count_browser_session(browser);
        }
        for (name, from) in &record.subscriptions {
            self.add_subscriptions(&session, std::slice::from_ref(name), *from);
        }
        self.sessions
            .insert(record.client_id.clone(), Arc::clone(&session));
        if let Some(user) = session.user() {
            self.presence.add(&user, session.client_id());
        }
        session
    }

    /// Applies a log entry at `position` to one session being taken over, as its former node
    /// would have: a message only if the session subscribed to it before it was published.
    pub fn replay(&self, now: Instant, session: &Arc<Session>, position: u64, entry: &Entry) {
        match entry {
            Entry::Publish {
                channel,
                message,
                skip,
            } => {
                if skip.as_ref() == Some(session.client_id()) {
                    return;
                }
                let subscribed = {
                    let st = session.lock();
                    channel
                        .find_subscribers_key(|key| {
                            st.subscriptions
                                .get(key)
                                .is_some_and(|from| *from < position)
                                .then_some(())
                        })
                        .is_some()
                };
                if subscribed {
                    let message = match self.history.channel(channel) {
                        Some(kept) => history::lock(&kept).stamped(position, message),
                        None => message.clone(),
                    };
                    let flush_by = self
                        .channels
                        .lazy_timeout(channel, self.config.max_lazy_timeout)
                        .map(|wait| now + wait);
                    session.enqueue(message, position, &self.config, &self.stats, flush_by);
                }
            }
            Entry::Deliver { to, message } if to == session.client_id() => {
                session.enqueue(message.clone(), position, &self.config, &self.stats, None);
            }
            Entry::DeliverUser { user, message }
                if session.user().as_deref() == Some(user.as_str()) =>
            {
                session.enqueue(message.clone(), position, &self.config, &self.stats, None);
            }
            Entry::Subscribe {
                session: cid,
                channels,
                replay,
            } if cid == session.client_id() => {
                // The history holds newer messages too: those reach it from the log.
                self.subscribe_replaying(now, session, channels, replay, position, position);
            }
            Entry::Unsubscribe {
                session: cid,
                channels,
            } if cid == session.client_id() => {
                self.remove_subscriptions(session, channels);
            }
            Entry::Remove { session: cid } if cid == session.client_id() => {
                self.drop_session(session);
            }
            _ => {}
        }
    }

    /// Removes a session that ended on another node, without telling the listeners (they
    /// were told there); its held connect is answered with `reconnect: none`. False when it
    /// is not served here.
    pub fn forget(&self, client_id: &str) -> bool {
        let Some(session) = self.session(client_id) else {
            return false;
        };
        self.drop_session(&session);
        true
    }

    /// Tells the listeners that a session served by no node any more (its node died) was
    /// removed, for `reason`: the node that removed it from the registry does.
    pub fn tell_removed(&self, client_id: &ClientId, reason: RemovalReason) {
        self.stats.count_removal(reason);
        for listener in &self.listeners {
            listener.session_removed(client_id, reason);
        }
    }

    /// Answers every message of a batch with `refusal`, outgoing hooks applied: a cluster's
    /// node that cannot serve the batch's session now (backplane down, draining).
    pub fn refuse_batch(&self, batch: &[Message], refusal: &Refusal) -> Vec<EncodedMessage> {
        batch
            .iter()
            .map(|msg| {
                let session = msg.client_id().and_then(|cid| self.session(cid));
                self.outgoing_reply(session.as_deref(), msg, refusal.reply_to(msg))
            })
            .collect()
    }

    /// Marks sessions as changed, so that the next [`Engine::changed_records`] includes them
    /// again (their last checkpoint could not be written).
    pub fn mark_changed(&self, client_ids: &[ClientId]) {
        for cid in client_ids {
            if let Some(session) = self.session(cid.as_str()) {
                session.lock().dirty = true;
            }
        }
    }

    /// Removes a session and tells the listeners, for `reason` (after the registry agreed,
    /// in a cluster). False when it is not served here.
    pub fn remove(&self, client_id: &str, reason: RemovalReason) -> bool {
        let Some(session) = self.session(client_id) else {
            return false;
        };
        self.remove_session(&session, reason);
        true
    }
}
