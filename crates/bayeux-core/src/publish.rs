//! Publishing: checks on a client's publish, services, messages from the server itself, and
//! the fan-out of one encoded message to every subscriber.
//!
//! A publish ends as an [`Entry`]: applied at once on a single node, or appended to the shared
//! log by the driver of a cluster and applied on every node when read back from it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bayeux_message::{ChannelKind, ChannelName, ClientId, EncodedMessage, Message, Refusal, Reply};
use serde_json::Value;

use crate::engine::{Engine, RequestContext};
use crate::log::{Entry, Pending};
use crate::security::{self, Operation};
use crate::service::{ServiceReply, ServiceRequest};
use crate::session::Session;
use crate::stats::EngineStats;

impl Engine {
    /// A publish from a client; returns its encoded reply (outgoing hooks applied).
    pub(crate) fn publish_request(
        &self,
        now: Instant,
        ctx: &RequestContext,
        name: &ChannelName,
        named: Option<&Session>,
        mut msg: Message,
        effects: &mut Vec<Pending>,
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
                let skip = (!to_publisher).then(|| session.client_id().clone());
                if let Some(message) = self.outgoing_delivery(msg) {
                    let entry = Entry::Publish {
                        channel: name.clone(),
                        message,
                        skip,
                    };
                    self.commit(now, entry, effects);
                }
            }
            ChannelKind::Service => {
                if let Some(entry) = self.call_service(&session, name, &msg) {
                    self.commit(now, entry, effects);
                }
            }
            ChannelKind::Meta => {}
        }
        reply
    }

    /// Hands a service message to the most specific service; its answer, if any, becomes a
    /// delivery to the caller as a remote-call result (same `channel` and `id`, result in
    /// `data`).
    fn call_service(
        &self,
        session: &Arc<Session>,
        channel: &ChannelName,
        msg: &Message,
    ) -> Option<Entry> {
        let service = self.services.matching(channel).into_iter().next()?;
        let request = ServiceRequest {
            session,
            channel,
            message: msg,
        };
        let (successful, data) = match service.call(request)? {
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
        Some(Entry::Deliver {
            to: session.client_id().clone(),
            message: self.outgoing_delivery(result)?,
        })
    }

    /// Sends a message straight to one session (no subscription, no channel listener, no
    /// authorization): `channel` and `data`, plus `id` and `successful` when given (a late
    /// remote-call answer). Returns false when the session does not exist here.
    ///
    /// On a single node; a cluster's driver appends [`Engine::prepare_deliver`]'s entry
    /// instead, which reaches the session on whichever node serves it.
    pub fn deliver(&self, now: Instant, client_id: &str, message: Message) -> bool {
        let Some(session) = self.session(client_id) else {
            return false;
        };
        if let Some(entry) = self.prepare_deliver(session.client_id().clone(), message) {
            self.apply_here(now, &entry);
        }
        true
    }

    /// The entry that delivers `message` to `to`, outgoing hooks applied; `None` when an
    /// extension dropped it.
    pub fn prepare_deliver(&self, to: ClientId, message: Message) -> Option<Entry> {
        Some(Entry::Deliver {
            to,
            message: self.outgoing_delivery(message)?,
        })
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
    /// sessions it was queued for. On a single node; a cluster's driver appends
    /// [`Engine::prepare_publish`]'s entry instead.
    pub fn publish(
        &self,
        now: Instant,
        channel: &ChannelName,
        data: Value,
    ) -> Result<usize, Refusal> {
        Ok(match self.prepare_publish(channel, data)? {
            Some(entry) => self.apply_here(now, &entry),
            None => 0,
        })
    }

    /// The entry that publishes `data` on a broadcast channel from the server itself: the
    /// message listeners and outgoing hooks have run, the channel exists. `None` when a
    /// listener or an extension dropped the message.
    pub fn prepare_publish(
        &self,
        channel: &ChannelName,
        data: Value,
    ) -> Result<Option<Entry>, Refusal> {
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
            return Ok(None);
        }
        self.use_channel(channel)?;
        EngineStats::count(&self.stats.publishes);
        Ok(self.outgoing_delivery(msg).map(|message| Entry::Publish {
            channel: channel.clone(),
            message,
            skip: None,
        }))
    }

    /// Queues one encoded message, at log position `position`, for every subscriber of
    /// `channel` but `skip`: the same shared bytes for all of them. Returns how many it was
    /// queued for, and the sessions whose queue overflowed with the `Disconnect` policy.
    pub(crate) fn broadcast(
        &self,
        now: Instant,
        channel: &ChannelName,
        delivery: &EncodedMessage,
        skip: Option<&ClientId>,
        position: u64,
    ) -> (usize, Vec<Arc<Session>>) {
        let flush_by = self
            .channels
            .lazy_timeout(channel, self.config.max_lazy_timeout)
            .map(|wait| now + wait);
        let receivers = self
            .subscriptions
            .subscribers(channel)
            .into_iter()
            .filter(|session| Some(session.client_id()) != skip);
        self.enqueue_all(receivers, delivery, position, flush_by)
    }

    /// Queues one encoded message for each of `sessions`; returns how many, and those whose
    /// queue overflowed under the `disconnect` policy.
    pub(crate) fn enqueue_all(
        &self,
        sessions: impl IntoIterator<Item = Arc<Session>>,
        delivery: &EncodedMessage,
        position: u64,
        flush_by: Option<Instant>,
    ) -> (usize, Vec<Arc<Session>>) {
        let mut count = 0;
        let mut overflowed = Vec::new();
        for session in sessions {
            if !session.enqueue(
                delivery.clone(),
                position,
                &self.config,
                &self.stats,
                flush_by,
            ) {
                overflowed.push(session);
            }
            count += 1;
        }
        self.stats
            .deliveries
            .fetch_add(count as u64, Ordering::Relaxed);
        (count, overflowed)
    }
}
