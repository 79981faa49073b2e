//! Entries: the changes to shared state that a request makes, and where they go.
//!
//! On a single node ([`LogMode::Inline`]) each entry is applied as soon as the request makes
//! it, exactly as if there were no log. In a cluster ([`LogMode::Shared`]) the engine applies
//! nothing shared while handling a request: it returns [`Effect`]s, the driver appends the
//! entries to the shared log (and records sessions in the registry), and every node applies
//! them with [`Engine::apply`] as it reads them back, in log order. Their replies are final
//! only once the driver has settled each effect ([`Engine::settle`]): a reply is never
//! `successful` for something the log does not hold.
//!
//! Not here: reading or writing any log; that is the driver's job (`bayeux-server`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bayeux_message::{ChannelName, ClientId, EncodedMessage, Message, Refusal};

use crate::engine::Engine;
use crate::history::{self, ReplayFrom};
use crate::listener::RemovalReason;
use crate::session::Session;

/// Where the engine's changes to shared state go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogMode {
    /// One node: every change applies as it is made.
    #[default]
    Inline,
    /// A cluster: changes are returned as [`Effect`]s for the driver to append to the shared
    /// log; they apply when read back from it, on every node, in log order.
    Shared,
}

/// A change to shared state: what a cluster's log carries.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Entry {
    /// A message for one session: a remote-call answer, or a server-side `deliver`.
    Deliver {
        /// The receiving session.
        to: ClientId,
        /// The message, encoded once, outgoing hooks applied.
        message: EncodedMessage,
    },
    /// A message for the subscribers of `channel`.
    Publish {
        /// The channel published on.
        channel: ChannelName,
        /// The message, encoded once, outgoing hooks applied.
        message: EncodedMessage,
        /// The publisher, when it must not receive its own message (`broadcastToPublisher`).
        skip: Option<ClientId>,
    },
    /// A session ended elsewhere (disconnected, expired, removed by an operator): the node
    /// serving it drops it without telling its listeners again.
    Remove {
        /// The session.
        session: ClientId,
    },
    /// A session subscribed to channels or patterns.
    Subscribe {
        /// The session.
        session: ClientId,
        /// What it subscribed to (broadcast channels and patterns only).
        channels: Vec<ChannelName>,
        /// The history to send it as it subscribes, per channel (`ext.replay`).
        replay: Vec<(ChannelName, ReplayFrom)>,
    },
    /// A user came online (its first session) or went offline (its last one ended), as the
    /// registry decided: every node tells its presence listeners. (Presence events for
    /// subscribers travel as an ordinary `Publish` beside it.)
    Presence {
        /// The user.
        user: String,
        /// Whether it is online now.
        online: bool,
        /// The backplane's version of this change: later changes have higher ones.
        version: u64,
    },
    /// A message for every session of a user, on whichever node serves it.
    DeliverUser {
        /// The user.
        user: String,
        /// The message, encoded once, outgoing hooks applied.
        message: EncodedMessage,
    },
    /// A session unsubscribed from channels or patterns.
    Unsubscribe {
        /// The session.
        session: ClientId,
        /// What it unsubscribed from.
        channels: Vec<ChannelName>,
    },
}

impl Entry {
    /// The one session this entry is about, if it is about one.
    pub fn session(&self) -> Option<&ClientId> {
        match self {
            Self::Deliver { to, .. } => Some(to),
            Self::Remove { session }
            | Self::Subscribe { session, .. }
            | Self::Unsubscribe { session, .. } => Some(session),
            Self::Publish { .. } | Self::Presence { .. } | Self::DeliverUser { .. } => None,
        }
    }
}

/// What a request in [`LogMode::Shared`] asks of the shared log or the session registry.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Append the entry to the log.
    Append(Entry),
    /// Record a session created by a handshake (see [`Engine::snapshot`]).
    Register(ClientId),
    /// Delete the session from the registry (`/meta/disconnect`).
    Unregister(ClientId),
}

/// One action for the driver to carry out, and what depends on it: a reply that is final only
/// once it succeeded, and listeners to tell. Hand it back to [`Engine::settle`].
#[derive(Debug)]
pub struct Effect {
    /// What to do.
    pub action: Action,
    followup: Followup,
    gate: Option<Gate>,
}

impl Effect {
    pub(crate) fn new(pending: Pending, gate: Option<Gate>) -> Self {
        Self {
            action: pending.action,
            followup: pending.followup,
            gate,
        }
    }

    pub(crate) fn shift_gate(&mut self, by: usize) {
        if let Some(gate) = self.gate.as_mut() {
            gate.index += by;
        }
    }
}

/// An action as a handler makes it, before the engine knows which reply it gates.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) action: Action,
    pub(crate) followup: Followup,
}

impl Pending {
    pub(crate) fn append(entry: Entry) -> Self {
        Self {
            action: Action::Append(entry),
            followup: Followup::Nothing,
        }
    }
}

/// What happens once an action succeeded.
#[derive(Debug)]
pub(crate) enum Followup {
    /// Tell the session listeners of a new session.
    Added(ClientId),
    Nothing,
    /// Remove the session here and tell the listeners.
    Removed(Arc<Session>, RemovalReason),
    /// Tell the listeners of new subscriptions.
    Subscribed(ClientId, Vec<ChannelName>),
    /// Tell the listeners of removed subscriptions.
    Unsubscribed(ClientId, Vec<ChannelName>),
}

/// The reply that waits for an action: where it is in the response, and what it answers.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) index: usize,
    /// The request, trimmed to what a reply is made of.
    pub(crate) request: Message,
    pub(crate) session: Option<Arc<Session>>,
}

/// What applying an entry left for the driver.
#[derive(Debug, Default)]
pub struct Applied {
    /// Sessions that received the message.
    pub receivers: usize,
    /// Sessions whose queue overflowed under `QueueFullPolicy::Disconnect` ([`LogMode::Shared`]
    /// only: on one node the engine removes them itself). Remove them from the registry, then
    /// with [`Engine::remove`].
    pub overflowed: Vec<ClientId>,
}

impl Engine {
    /// Sets where changes to shared state go (before sharing the engine).
    pub fn with_log_mode(mut self, mode: LogMode) -> Self {
        self.log_mode = mode;
        self
    }

    /// Where changes to shared state go.
    pub fn log_mode(&self) -> LogMode {
        self.log_mode
    }

    /// The log position of the last entry applied ([`LogMode::Shared`]; 0 on one node).
    pub fn applied_position(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Starts applying the shared log after `position` (where this node begins reading):
    /// sessions created from now on have their checkpoint there.
    pub fn start_at(&self, position: u64) {
        self.applied.fetch_max(position, Ordering::AcqRel);
    }

    /// Applies an entry read from the shared log at `position`, on this node: the message
    /// goes to the subscribers and sessions served here; subscriptions and removals change
    /// the sessions served here. Call it in log order, from one task.
    pub fn apply(&self, now: Instant, position: u64, entry: &Entry) -> Applied {
        let applied = self.apply_at(now, position, entry);
        self.applied.fetch_max(position, Ordering::AcqRel);
        applied
    }

    /// Applies an entry made on this single node, at once.
    pub(crate) fn apply_here(&self, now: Instant, entry: &Entry) -> usize {
        self.apply_at(now, 0, entry).receivers
    }

    fn apply_at(&self, now: Instant, position: u64, entry: &Entry) -> Applied {
        let (receivers, overflowed) = match entry {
            Entry::Publish {
                channel,
                message,
                skip,
            } => match self.history.channel(channel) {
                None => self.broadcast(now, channel, message, skip.as_ref(), position),
                Some(kept) => {
                    // Held while the message is queued: a replaying subscriber gets it either
                    // from the history or from the broadcast, never both, never neither.
                    let mut kept = history::lock(&kept);
                    let id = match self.log_mode {
                        LogMode::Inline => self.history.next_id(),
                        LogMode::Shared => position,
                    };
                    let stamped = kept.record(id, now, message);
                    self.broadcast(now, channel, &stamped, skip.as_ref(), position)
                }
            },
            Entry::Deliver { to, message } => match self.session(to.as_str()) {
                Some(session) => {
                    crate::stats::EngineStats::count(&self.stats.deliveries);
                    let kept =
                        session.enqueue(message.clone(), position, &self.config, &self.stats, None);
                    (1, if kept { Vec::new() } else { vec![session] })
                }
                None => (0, Vec::new()),
            },
            Entry::Subscribe {
                session,
                channels,
                replay,
            } => {
                if let Some(session) = self.session(session.as_str()) {
                    self.subscribe_replaying(now, &session, channels, replay, position, u64::MAX);
                }
                (0, Vec::new())
            }
            Entry::Unsubscribe { session, channels } => {
                if let Some(session) = self.session(session.as_str()) {
                    self.remove_subscriptions(&session, channels);
                }
                (0, Vec::new())
            }
            Entry::Remove { session } => {
                self.forget(session.as_str());
                (0, Vec::new())
            }
            Entry::Presence {
                user,
                online,
                version,
            } => {
                self.presence_changed(now, user, *online, *version);
                (0, Vec::new())
            }
            Entry::DeliverUser { user, message } => {
                let sessions = self
                    .presence
                    .sessions_of(user)
                    .into_iter()
                    .filter_map(|client_id| self.session(client_id.as_str()));
                self.enqueue_all(sessions, message, position, None)
            }
        };
        let overflowed = match self.log_mode {
            LogMode::Inline => {
                for session in &overflowed {
                    self.remove_session(session, RemovalReason::QueueFull);
                }
                Vec::new()
            }
            LogMode::Shared => overflowed.iter().map(|s| s.client_id().clone()).collect(),
        };
        Applied {
            receivers,
            overflowed,
        }
    }

    /// An entry a request made: applied now on one node, kept for the driver in a cluster.
    pub(crate) fn commit(&self, now: Instant, entry: Entry, effects: &mut Vec<Pending>) {
        match self.log_mode {
            LogMode::Inline => {
                self.apply_here(now, &entry);
            }
            LogMode::Shared => effects.push(Pending::append(entry)),
        }
    }

    /// Records subscriptions that count from log position `position`; returns those that are
    /// new.
    pub(crate) fn add_subscriptions(
        &self,
        session: &Arc<Session>,
        channels: &[ChannelName],
        position: u64,
    ) -> Vec<ChannelName> {
        let mut added = Vec::new();
        let mut st = session.lock();
        if st.removed {
            return added;
        }
        // The index is updated under the session lock, so a concurrent removal sees every
        // subscription it must undo.
        for name in channels {
            if !st.subscriptions.contains_key(name) {
                st.subscriptions.insert(name.clone(), position);
                self.subscriptions.add(name, session);
                added.push(name.clone());
            }
        }
        if !added.is_empty() {
            st.dirty = true;
        }
        added
    }

    /// Records subscriptions as [`Engine::add_subscriptions`] does, and queues for the session
    /// the history that `replay` asks of the new ones, with ids up to `through`: each channel
    /// under its history's lock, so that no publish slips between the replayed messages and
    /// the subscription. Returns the subscriptions that are new.
    pub(crate) fn subscribe_replaying(
        &self,
        now: Instant,
        session: &Arc<Session>,
        channels: &[ChannelName],
        replay: &[(ChannelName, ReplayFrom)],
        position: u64,
        through: u64,
    ) -> Vec<ChannelName> {
        if replay.is_empty() {
            return self.add_subscriptions(session, channels, position);
        }
        let (replayed, plain): (Vec<ChannelName>, Vec<ChannelName>) = channels
            .iter()
            .cloned()
            .partition(|name| replay.iter().any(|(asked, _)| asked == name));
        let mut added = self.add_subscriptions(session, &plain, position);
        for name in replayed {
            let from = replay
                .iter()
                .find(|(asked, _)| *asked == name)
                .map(|(_, from)| *from)
                .expect("partitioned by it");
            let Some(kept) = self.history.channel(&name) else {
                added.extend(self.add_subscriptions(session, &[name], position));
                continue;
            };
            let mut kept = history::lock(&kept);
            let fresh = self.add_subscriptions(session, std::slice::from_ref(&name), position);
            // A session taken over may come with the subscription this entry made (its former
            // node applied it) but not with the messages it replayed, which were in that node's
            // queue: the subscription's position says it is this entry's, so replay again.
            let made_here =
                position > 0 && session.lock().subscriptions.get(&name).copied() == Some(position);
            if fresh.is_empty() && !made_here {
                continue;
            }
            // Checked when the request came; what was dropped since cannot be sent.
            for message in kept.after(now, from, through) {
                session.enqueue(message, position, &self.config, &self.stats, None);
            }
            added.extend(fresh);
        }
        added
    }

    /// Removes subscriptions; returns those the session had.
    pub(crate) fn remove_subscriptions(
        &self,
        session: &Arc<Session>,
        channels: &[ChannelName],
    ) -> Vec<ChannelName> {
        let mut removed = Vec::new();
        let mut st = session.lock();
        for name in channels {
            if st.subscriptions.remove(name).is_some() {
                self.subscriptions.remove(name, session.client_id());
                removed.push(name.clone());
            }
        }
        if !removed.is_empty() {
            st.dirty = true;
        }
        removed
    }

    /// Completes an effect the driver carried out (`ok`) or could not: tells the listeners,
    /// or undoes what the request began and replaces the reply it gated, in `messages`, with
    /// `503::backplane_unavailable`.
    pub fn settle(&self, effect: Effect, ok: bool, messages: &mut [EncodedMessage]) {
        if ok {
            match effect.followup {
                Followup::Nothing => {}
                Followup::Added(cid) => {
                    for listener in &self.listeners {
                        listener.session_added(&cid);
                    }
                }
                Followup::Removed(session, reason) => self.remove_session(&session, reason),
                Followup::Subscribed(cid, names) => {
                    for name in &names {
                        for listener in &self.listeners {
                            listener.subscribed(&cid, name);
                        }
                    }
                }
                Followup::Unsubscribed(cid, names) => {
                    for name in &names {
                        for listener in &self.listeners {
                            listener.unsubscribed(&cid, name);
                        }
                    }
                }
            }
            return;
        }
        if let Action::Register(cid) = &effect.action {
            // The handshake failed after all: the session never existed.
            if let Some(session) = self.session(cid.as_str()) {
                self.discard_session(&session);
            }
        }
        if let Some(gate) = effect.gate {
            let reply = Refusal::BackplaneUnavailable.reply_to(&gate.request);
            if let Some(slot) = messages.get_mut(gate.index) {
                *slot = self.outgoing_reply(gate.session.as_deref(), &gate.request, reply);
            }
        }
    }
}
