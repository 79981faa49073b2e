//! Channel history: the recent messages of chosen channels, each with a replay id, so that a
//! client back from a long absence asks for what it missed instead of starting from nothing.
//!
//! The wire shape is Salesforce's Streaming API (the Bayeux deployment most integrations
//! know): the handshake reply says `ext.replay: true`; a `/meta/subscribe` carries
//! `ext.replay: {"/chan": id}` with `-1` (new messages only, the default), `-2` (everything
//! retained) or an id (what came after it); each message of a channel with history carries its
//! id ([`ReplayIdShape`]).
//!
//! Replay ids are log positions in a cluster, so they mean the same on every node. On one node
//! they count up from a start the driver picks ([`Engine::start_replay_ids_at`](crate::Engine::start_replay_ids_at): the wall clock
//! in microseconds), so ids handed out before a restart are older than anything after it and
//! are refused as unknown rather than silently taken for newer ones.
//!
//! Each channel's history has its own lock. A publish on the channel holds it while it takes
//! its id, records the message and queues it for the subscribers; a subscribe that replays
//! holds it while it subscribes and queues the retained messages. So a replaying subscriber
//! gets every message once, in id order, with no gap between the replayed and the new ones.
//! Lock order: a channel's history, then sessions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bayeux_message::{ChannelName, EncodedMessage, Refusal};
use dashmap::DashMap;
use serde_json::{Map, Value};

/// Where a delivered message carries its replay id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayIdShape {
    /// `ext.replayId`: `data` stays exactly as published, whatever its type (the default).
    #[default]
    Ext,
    /// `data.event.replayId`, as Salesforce's Streaming API sends it, for clients written
    /// for Salesforce. Only for object `data`; other data gets the `ext` shape.
    Event,
}

impl ReplayIdShape {
    /// The shape's name in the configuration (`ext`, `event`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ext => "ext",
            Self::Event => "event",
        }
    }

    /// The shape called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ext" => Some(Self::Ext),
            "event" => Some(Self::Event),
            _ => None,
        }
    }
}

/// How much history a channel keeps: messages beyond `max_count`, or older than `max_age`,
/// are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The most messages kept.
    pub max_count: usize,
    /// The age after which a message is dropped; `None`: kept until `max_count` pushes it out.
    pub max_age: Option<Duration>,
    /// Where deliveries carry their replay id.
    pub shape: ReplayIdShape,
}

impl Retention {
    /// Keeps the last `max_count` messages, with no age limit, ids in `ext`.
    pub fn count(max_count: usize) -> Self {
        Self {
            max_count,
            max_age: None,
            shape: ReplayIdShape::Ext,
        }
    }

    /// Drops messages older than `max_age` too.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Puts the replay id where `shape` says.
    pub fn shape(mut self, shape: ReplayIdShape) -> Self {
        self.shape = shape;
        self
    }
}

/// What a subscriber asks of a channel's history (`ext.replay` of `/meta/subscribe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    /// `-2`: every message retained.
    Retained,
    /// An id: the messages after it. Refused when messages after it were dropped already.
    After(u64),
}

impl ReplayFrom {
    /// Reads one value of the `ext.replay` map: `Ok(None)` for `-1` (new messages only).
    pub(crate) fn parse(value: &Value) -> Result<Option<Self>, Refusal> {
        match value.as_i64() {
            Some(-1) => Ok(None),
            Some(-2) => Ok(Some(Self::Retained)),
            Some(id) if id >= 0 => Ok(Some(Self::After(id as u64))),
            _ => Err(Refusal::ReplayIdInvalid(value.to_string())),
        }
    }

    /// The value as the client wrote it, for error strings.
    fn describe(self) -> String {
        match self {
            Self::Retained => "-2".to_owned(),
            Self::After(id) => id.to_string(),
        }
    }
}

/// One retained message.
struct Retained {
    id: u64,
    at: Instant,
    message: EncodedMessage,
}

/// The history of one channel.
pub(crate) struct ChannelHistory {
    retention: Retention,
    messages: VecDeque<Retained>,
    /// Every message of the channel with a greater id is in `messages` (or still to come):
    /// the id of the last one dropped, or where this history began.
    complete_after: u64,
}

impl ChannelHistory {
    /// Records a message with id `id` and returns it as subscribers get it: with its id.
    pub(crate) fn record(
        &mut self,
        id: u64,
        at: Instant,
        message: &EncodedMessage,
    ) -> EncodedMessage {
        let stamped = stamp(message, id, self.retention.shape);
        self.messages.push_back(Retained {
            id,
            at,
            message: stamped.clone(),
        });
        while self.messages.len() > self.retention.max_count {
            self.drop_oldest();
        }
        self.expire(at);
        stamped
    }

    /// The message with id `id` as it was delivered, if still retained.
    pub(crate) fn get(&self, id: u64) -> Option<EncodedMessage> {
        let index = self.messages.binary_search_by_key(&id, |m| m.id).ok()?;
        Some(self.messages[index].message.clone())
    }

    /// The retained messages `from` asks for with ids up to `through`, oldest first; refused
    /// when some it asks for were dropped.
    pub(crate) fn replay(
        &mut self,
        now: Instant,
        from: ReplayFrom,
        through: u64,
    ) -> Result<Vec<(u64, EncodedMessage)>, Refusal> {
        self.expire(now);
        let after = match from {
            ReplayFrom::Retained => 0,
            ReplayFrom::After(id) if id < self.complete_after => {
                return Err(Refusal::ReplayIdInvalid(from.describe()));
            }
            ReplayFrom::After(id) => id,
        };
        Ok(self
            .messages
            .iter()
            .filter(|m| m.id > after && m.id <= through)
            .map(|m| (m.id, m.message.clone()))
            .collect())
    }

    /// The retained messages `from` asks for with ids up to `through`, oldest first, without
    /// refusing: what was dropped is left out.
    pub(crate) fn after(
        &mut self,
        now: Instant,
        from: ReplayFrom,
        through: u64,
    ) -> Vec<EncodedMessage> {
        self.expire(now);
        let after = match from {
            ReplayFrom::Retained => 0,
            ReplayFrom::After(id) => id,
        };
        self.messages
            .iter()
            .filter(|m| m.id > after && m.id <= through)
            .map(|m| m.message.clone())
            .collect()
    }

    /// The message with id `id` as subscribers get it: as retained, or stamped anew when it
    /// was dropped already.
    pub(crate) fn stamped(&self, id: u64, message: &EncodedMessage) -> EncodedMessage {
        self.get(id)
            .unwrap_or_else(|| stamp(message, id, self.retention.shape))
    }

    /// Whether `from` can be served.
    pub(crate) fn check(&mut self, now: Instant, from: ReplayFrom) -> Result<(), Refusal> {
        self.replay(now, from, 0).map(|_| ())
    }

    fn expire(&mut self, now: Instant) {
        let Some(max_age) = self.retention.max_age else {
            return;
        };
        while self
            .messages
            .front()
            .is_some_and(|m| now.saturating_duration_since(m.at) > max_age)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(dropped) = self.messages.pop_front() {
            self.complete_after = self.complete_after.max(dropped.id);
        }
    }
}

/// The histories of every channel that has one.
pub(crate) struct History {
    /// Retention by channel or pattern (`/chat/**`), looked up with subscription keys.
    rules: DashMap<String, Retention>,
    /// Whether `rules` has any: the one check a publish pays when no channel keeps history
    /// (a `DashMap`'s emptiness costs a look at every shard).
    enabled: AtomicBool,
    channels: DashMap<ChannelName, Arc<Mutex<ChannelHistory>>>,
    /// The next replay id on one node.
    next_id: AtomicU64,
    /// Ids up to this one are unknown here: before this node's history began.
    floor: AtomicU64,
}

impl Default for History {
    fn default() -> Self {
        Self {
            rules: DashMap::new(),
            enabled: AtomicBool::new(false),
            channels: DashMap::new(),
            next_id: AtomicU64::new(1),
            floor: AtomicU64::new(0),
        }
    }
}

impl History {
    pub(crate) fn configure(&self, channel: &ChannelName, retention: Retention) {
        self.rules.insert(channel.as_str().to_owned(), retention);
        self.enabled.store(true, Ordering::Release);
    }

    /// Whether any channel keeps history.
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The retention of a concrete channel: its own rule, else the nearest pattern's.
    pub(crate) fn retention(&self, channel: &ChannelName) -> Option<Retention> {
        if !self.is_enabled() || channel.is_wildcard() {
            return None;
        }
        channel.find_subscribers_key(|key| self.rules.get(key).map(|r| *r))
    }

    /// The history of `channel`, created on first use; `None` when it keeps none.
    pub(crate) fn channel(&self, channel: &ChannelName) -> Option<Arc<Mutex<ChannelHistory>>> {
        if !self.is_enabled() {
            return None;
        }
        if let Some(found) = self.channels.get(channel) {
            return Some(Arc::clone(&found));
        }
        let retention = self.retention(channel)?;
        let complete_after = self.floor.load(Ordering::Acquire);
        let entry = self.channels.entry(channel.clone()).or_insert_with(|| {
            Arc::new(Mutex::new(ChannelHistory {
                retention,
                messages: VecDeque::new(),
                complete_after,
            }))
        });
        Some(Arc::clone(&entry))
    }

    /// Takes the next replay id (one node).
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Ids up to `floor` are unknown to this history; one node's ids count on from there.
    /// Forgets everything recorded.
    pub(crate) fn start_at(&self, floor: u64) {
        self.floor.store(floor, Ordering::Release);
        self.next_id.store(floor + 1, Ordering::Relaxed);
        self.channels.clear();
    }
}

/// Locks a channel's history; a panic elsewhere while it was held leaves it usable.
pub(crate) fn lock(history: &Mutex<ChannelHistory>) -> MutexGuard<'_, ChannelHistory> {
    history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `message` with its replay id where `shape` puts it. Done once per message, not per
/// subscriber.
fn stamp(message: &EncodedMessage, id: u64, shape: ReplayIdShape) -> EncodedMessage {
    let mut decoded = message.decode();
    let map = decoded.as_map_mut();
    let event_shape = shape == ReplayIdShape::Event
        && matches!(map.get("data"), Some(Value::Object(data))
            if data.get("event").is_none_or(Value::is_object));
    if event_shape {
        if let Some(Value::Object(data)) = map.get_mut("data") {
            let event = data
                .entry("event")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(event) = event {
                event.insert("replayId".into(), Value::from(id));
            }
        }
    } else {
        let ext = map
            .entry("ext")
            .or_insert_with(|| Value::Object(Map::new()));
        if !ext.is_object() {
            *ext = Value::Object(Map::new());
        }
        if let Value::Object(ext) = ext {
            ext.insert("replayId".into(), Value::from(id));
        }
    }
    decoded.encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bayeux_message::Message;

    fn message(json: &str) -> EncodedMessage {
        EncodedMessage::from_json_text(json)
    }

    fn history(retention: Retention, floor: u64) -> ChannelHistory {
        ChannelHistory {
            retention,
            messages: VecDeque::new(),
            complete_after: floor,
        }
    }

    #[test]
    fn ids_go_in_ext_by_default_and_leave_data_alone() {
        let stamped = stamp(
            &message(r#"{"channel":"/a","data":"text"}"#),
            7,
            ReplayIdShape::Ext,
        );
        assert_eq!(
            stamped.as_str(),
            r#"{"channel":"/a","data":"text","ext":{"replayId":7}}"#
        );
        let kept = stamp(
            &message(r#"{"channel":"/a","data":{},"ext":{"k":1}}"#),
            8,
            ReplayIdShape::Ext,
        );
        assert_eq!(
            kept.as_str(),
            r#"{"channel":"/a","data":{},"ext":{"k":1,"replayId":8}}"#
        );
    }

    #[test]
    fn the_event_shape_is_salesforces_for_object_data_only() {
        let stamped = stamp(
            &message(r#"{"channel":"/a","data":{"payload":{"x":1}}}"#),
            9,
            ReplayIdShape::Event,
        );
        let decoded: Message = stamped.decode();
        assert_eq!(
            decoded.data().unwrap()["event"]["replayId"],
            Value::from(9u64)
        );
        assert_eq!(decoded.data().unwrap()["payload"]["x"], Value::from(1));
        let text = stamp(
            &message(r#"{"channel":"/a","data":5}"#),
            10,
            ReplayIdShape::Event,
        );
        assert_eq!(
            text.as_str(),
            r#"{"channel":"/a","data":5,"ext":{"replayId":10}}"#
        );
    }

    #[test]
    fn count_retention_drops_the_oldest_and_refuses_ids_before_them() {
        let now = Instant::now();
        let mut h = history(Retention::count(2), 0);
        for id in [3, 5, 9] {
            h.record(id, now, &message(r#"{"channel":"/a","data":1}"#));
        }
        let ids =
            |r: Vec<(u64, EncodedMessage)>| r.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(
            ids(h.replay(now, ReplayFrom::Retained, u64::MAX).unwrap()),
            [5, 9]
        );
        assert_eq!(
            ids(h.replay(now, ReplayFrom::After(3), u64::MAX).unwrap()),
            [5, 9]
        );
        assert_eq!(
            ids(h.replay(now, ReplayFrom::After(4), u64::MAX).unwrap()),
            [5, 9]
        );
        assert_eq!(
            ids(h.replay(now, ReplayFrom::After(5), 8).unwrap()),
            Vec::<u64>::new()
        );
        assert_eq!(ids(h.replay(now, ReplayFrom::After(5), 9).unwrap()), [9]);
        assert_eq!(
            h.replay(now, ReplayFrom::After(2), u64::MAX)
                .unwrap_err()
                .error(),
            "400::The replayId {2} you provided was invalid.  Please provide a valid ID, -2 to \
             replay all events, or -1 to replay only new events."
        );
        assert!(h.get(5).is_some());
        assert!(h.get(3).is_none());
    }

    #[test]
    fn age_retention_drops_old_messages_and_ids_before_the_floor_are_unknown() {
        let start = Instant::now();
        let mut h = history(Retention::count(10).max_age(Duration::from_secs(60)), 100);
        assert!(h.check(start, ReplayFrom::After(99)).is_err());
        assert!(h.check(start, ReplayFrom::After(100)).is_ok());
        h.record(101, start, &message(r#"{"channel":"/a","data":1}"#));
        h.record(
            102,
            start + Duration::from_secs(30),
            &message(r#"{"channel":"/a","data":2}"#),
        );
        let later = start + Duration::from_secs(61);
        let kept = h.replay(later, ReplayFrom::Retained, u64::MAX).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, 102);
        assert!(h.check(later, ReplayFrom::After(100)).is_err());
        assert!(h.check(later, ReplayFrom::After(101)).is_ok());
    }

    #[test]
    fn replay_values_follow_salesforce() {
        assert_eq!(ReplayFrom::parse(&Value::from(-1)), Ok(None));
        assert_eq!(
            ReplayFrom::parse(&Value::from(-2)),
            Ok(Some(ReplayFrom::Retained))
        );
        assert_eq!(
            ReplayFrom::parse(&Value::from(12)),
            Ok(Some(ReplayFrom::After(12)))
        );
        assert_eq!(
            ReplayFrom::parse(&Value::from("x")).unwrap_err().error(),
            "400::The replayId {\"x\"} you provided was invalid.  Please provide a valid ID, \
             -2 to replay all events, or -1 to replay only new events."
        );
        assert!(ReplayFrom::parse(&Value::from(-3)).is_err());
    }

    #[test]
    fn rules_match_the_nearest_pattern() {
        let history = History::default();
        assert!(history
            .channel(&ChannelName::parse("/chat/a").unwrap())
            .is_none());
        history.configure(
            &ChannelName::parse("/chat/**").unwrap(),
            Retention::count(5),
        );
        history.configure(
            &ChannelName::parse("/chat/vip").unwrap(),
            Retention::count(50),
        );
        let retention = |c: &str| history.retention(&ChannelName::parse(c).unwrap());
        assert_eq!(retention("/chat/a/b").map(|r| r.max_count), Some(5));
        assert_eq!(retention("/chat/vip").map(|r| r.max_count), Some(50));
        assert_eq!(retention("/news"), None);
        assert_eq!(retention("/chat/*"), None);
    }
}
