//! The engine in a cluster ([`LogMode::Shared`]): two engines share a log kept by the test,
//! as two nodes share Redis. Requests return effects, the test appends them (or fails them,
//! as an unreachable backplane would), and each node applies the log in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bayeux_core::{
    AckExtension, Action, BrowserId, Engine, EngineConfig, Entry, Hold, HoldEnd, IdSource, LogMode,
    Release, RemovalReason, RequestContext, SessionListener, SessionRecord, TransportKind,
};
use bayeux_message::{ChannelName, ClientId, EncodedMessage, Message};
use serde_json::{json, Value};

/// Ids with a per-node prefix, so that two nodes never mint the same one.
struct PrefixedIds(&'static str, AtomicU64);

impl IdSource for PrefixedIds {
    fn client_id(&self) -> ClientId {
        ClientId::new(format!(
            "{}{}",
            self.0,
            self.1.fetch_add(1, Ordering::Relaxed) + 1
        ))
    }
    fn browser_id(&self) -> BrowserId {
        BrowserId::new(format!(
            "b{}{}",
            self.0,
            self.1.fetch_add(1, Ordering::Relaxed) + 1
        ))
    }
}

struct Recorder(Arc<Mutex<Vec<String>>>);

impl SessionListener for Recorder {
    fn session_added(&self, cid: &ClientId) {
        self.0.lock().unwrap().push(format!("added {cid}"));
    }
    fn session_removed(&self, cid: &ClientId, reason: RemovalReason) {
        self.0
            .lock()
            .unwrap()
            .push(format!("removed {cid} {reason:?}"));
    }
    fn subscribed(&self, cid: &ClientId, channel: &ChannelName) {
        self.0
            .lock()
            .unwrap()
            .push(format!("subscribed {cid} {channel}"));
    }
}

struct Node {
    engine: Engine,
    events: Arc<Mutex<Vec<String>>>,
    /// How far into the log this node has applied.
    read: usize,
}

struct Cluster {
    nodes: Vec<Node>,
    /// The shared log: entry `i` is at position `i + 1`.
    log: Vec<Entry>,
    registry: HashMap<ClientId, SessionRecord>,
    /// The backplane cannot be reached: every action fails.
    down: bool,
    now: Instant,
    next_id: u64,
}

fn msg(value: Value) -> Message {
    Message::from_map(value.as_object().expect("object").clone())
}

fn values(messages: &[EncodedMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| serde_json::from_str(m.as_str()).expect("JSON"))
        .collect()
}

impl Cluster {
    fn new() -> Self {
        let nodes = ["a", "b"]
            .into_iter()
            .map(|prefix| {
                let events = Arc::new(Mutex::new(Vec::new()));
                let config = EngineConfig {
                    timeout: Duration::from_secs(20),
                    max_interval: Duration::from_secs(10),
                    ..EngineConfig::default()
                };
                let engine = Engine::new(config, Box::new(PrefixedIds(prefix, AtomicU64::new(0))))
                    .with_listener(Arc::new(Recorder(Arc::clone(&events))))
                    .with_extension(Arc::new(AckExtension))
                    .with_log_mode(LogMode::Shared);
                Node {
                    engine,
                    events,
                    read: 0,
                }
            })
            .collect();
        Self {
            nodes,
            log: Vec::new(),
            registry: HashMap::new(),
            down: false,
            now: Instant::now(),
            next_id: 0,
        }
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Sends a batch to node `n` over long-polling in browser `browser`, carrying out its
    /// effects as a driver would; returns the messages of the response and the hold.
    fn send(&mut self, n: usize, browser: &str, batch: Vec<Value>) -> (Vec<Value>, Option<Hold>) {
        let ctx = RequestContext::new(TransportKind::LongPolling)
            .with_browser(Some(BrowserId::new(browser)));
        let batch = batch.into_iter().map(msg).collect();
        let mut outcome = self.nodes[n]
            .engine
            .handle(self.now, &ctx, batch)
            .expect("valid");
        for effect in std::mem::take(&mut outcome.effects) {
            let ok = self.perform(n, &effect.action);
            self.nodes[n]
                .engine
                .settle(effect, ok, &mut outcome.messages);
        }
        (values(&outcome.messages), outcome.hold)
    }

    fn perform(&mut self, n: usize, action: &Action) -> bool {
        if self.down {
            return false;
        }
        match action {
            Action::Append(entry) => self.log.push(entry.clone()),
            Action::Register(cid) => {
                let record = self.nodes[n].engine.snapshot(cid.as_str()).expect("live");
                self.registry.insert(cid.clone(), record);
            }
            Action::Unregister(cid) => {
                self.registry.remove(cid);
            }
            other => panic!("unexpected action {other:?}"),
        }
        true
    }

    /// Every node applies what it has not read of the log yet.
    fn sync(&mut self) {
        for node in &mut self.nodes {
            while node.read < self.log.len() {
                let position = node.read as u64 + 1;
                node.engine.apply(self.now, position, &self.log[node.read]);
                node.read += 1;
            }
        }
    }

    fn handshake(&mut self, n: usize, browser: &str, ext: Value) -> String {
        let id = self.id();
        let (replies, _) = self.send(
            n,
            browser,
            vec![json!({"channel": "/meta/handshake", "id": id, "version": "1.0", "ext": ext})],
        );
        assert_eq!(replies[0]["successful"], json!(true), "{replies:?}");
        let cid = replies[0]["clientId"]
            .as_str()
            .expect("clientId")
            .to_owned();
        // The first connect is answered at once.
        let (replies, hold) = self.connect(n, browser, &cid, None);
        assert!(hold.is_none() && replies.last().unwrap()["successful"] == json!(true));
        cid
    }

    fn connect(
        &mut self,
        n: usize,
        browser: &str,
        cid: &str,
        ack: Option<u64>,
    ) -> (Vec<Value>, Option<Hold>) {
        let id = self.id();
        let mut m = json!({"channel": "/meta/connect", "id": id, "clientId": cid,
            "connectionType": "long-polling"});
        if let Some(ack) = ack {
            m["ext"] = json!({"ack": ack});
        }
        self.send(n, browser, vec![m])
    }

    fn request(&mut self, n: usize, browser: &str, cid: &str, mut m: Value) -> Vec<Value> {
        m["clientId"] = json!(cid);
        m["id"] = json!(self.id());
        let (replies, hold) = self.send(n, browser, vec![m]);
        assert!(hold.is_none());
        replies
    }

    fn complete(&mut self, n: usize, hold: Hold) -> Vec<Value> {
        match self.nodes[n].engine.complete_hold(self.now, hold) {
            HoldEnd::Reply(messages) => values(&messages),
            HoldEnd::Superseded => panic!("superseded"),
        }
    }

    fn events(&self, n: usize) -> Vec<String> {
        self.nodes[n].events.lock().unwrap().clone()
    }
}

fn data_of(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m.get("data").is_some() && m.get("successful").is_none())
        .map(|m| m["data"].clone())
        .collect()
}

#[test]
fn a_publish_on_one_node_reaches_a_subscriber_on_the_other_once_the_log_has_it() {
    let mut c = Cluster::new();
    let sub = c.handshake(1, "x", json!({}));
    let replies = c.request(
        1,
        "x",
        &sub,
        json!({"channel": "/meta/subscribe", "subscription": "/chat/*"}),
    );
    assert_eq!(replies[0]["successful"], json!(true));
    // Not applied until read back from the log: the reply only says the log has it.
    assert_eq!(c.nodes[1].engine.subscriptions().len(), 0);
    assert_eq!(
        c.events(1),
        ["added a1", "subscribed a1 /chat/*"].map(|e| e.replace("a1", &sub))
    );
    c.sync();
    assert_eq!(c.nodes[1].engine.subscriptions().len(), 1);

    let publisher = c.handshake(0, "y", json!({}));
    let replies = c.request(
        0,
        "y",
        &publisher,
        json!({"channel": "/chat/1", "data": "hi"}),
    );
    assert_eq!(
        replies,
        [json!({"channel": "/chat/1", "id": "6", "successful": true})]
    );
    let hold = c.connect(1, "x", &sub, None).1.expect("held");
    assert!(hold.is_pending());
    c.sync();
    assert!(!hold.is_pending());
    let answer = c.complete(1, hold);
    assert_eq!(answer[0], json!({"channel": "/chat/1", "data": "hi"}));
    assert_eq!(c.log.len(), 2, "one entry per subscribe and per publish");
}

#[test]
fn an_unreachable_backplane_fails_the_request_and_nothing_happens() {
    let mut c = Cluster::new();
    let cid = c.handshake(0, "x", json!({}));
    c.down = true;
    let replies = c.request(0, "x", &cid, json!({"channel": "/chat", "data": 1}));
    assert_eq!(
        replies,
        [json!({"channel": "/chat", "id": "3", "successful": false,
            "error": "503::backplane_unavailable",
            "advice": {"reconnect": "retry", "interval": 1000}})]
    );
    let replies = c.request(
        0,
        "x",
        &cid,
        json!({"channel": "/meta/subscribe", "subscription": "/chat"}),
    );
    assert_eq!(replies[0]["error"], json!("503::backplane_unavailable"));
    assert_eq!(replies[0]["subscription"], json!("/chat"));
    // A handshake that the registry could not record never happened.
    let (replies, _) = c.send(
        0,
        "z",
        vec![json!({"channel": "/meta/handshake", "id": "9", "version": "1.0"})],
    );
    assert_eq!(replies[0]["error"], json!("503::backplane_unavailable"));
    assert_eq!(c.nodes[0].engine.session_count(), 1);
    assert_eq!(c.events(0), [format!("added {cid}")]);
    assert!(c.log.is_empty());
}

#[test]
fn disconnect_removes_the_session_once_the_registry_forgot_it() {
    let mut c = Cluster::new();
    let cid = c.handshake(0, "x", json!({}));
    assert!(c.registry.contains_key(cid.as_str()));
    let hold = c.connect(0, "x", &cid, None).1.expect("held");
    c.down = true;
    let replies = c.request(0, "x", &cid, json!({"channel": "/meta/disconnect"}));
    assert_eq!(replies[0]["error"], json!("503::backplane_unavailable"));
    assert!(hold.is_pending(), "still connected");
    c.down = false;
    let replies = c.request(0, "x", &cid, json!({"channel": "/meta/disconnect"}));
    assert_eq!(replies[0]["successful"], json!(true));
    assert!(!c.registry.contains_key(cid.as_str()));
    assert_eq!(
        c.complete(0, hold)[0]["advice"],
        json!({"reconnect": "none"})
    );
    assert_eq!(
        c.events(0),
        [format!("added {cid}"), format!("removed {cid} Disconnect")]
    );
}

#[test]
fn ack_batches_are_log_positions_in_a_cluster() {
    let mut c = Cluster::new();
    let cid = c.handshake(0, "x", json!({"ack": true}));
    c.request(
        0,
        "x",
        &cid,
        json!({"channel": "/meta/subscribe", "subscription": "/n"}),
    );
    c.sync();
    let publisher = c.handshake(1, "y", json!({}));
    for i in 0..3 {
        c.request(1, "y", &publisher, json!({"channel": "/n", "data": i}));
    }
    c.sync();
    let (replies, _) = c.connect(0, "x", &cid, Some(0));
    assert_eq!(data_of(&replies), [json!(0), json!(1), json!(2)]);
    // Entries 2, 3, 4 of the log: the batch is the position of the newest message in it.
    assert_eq!(replies.last().unwrap()["ext"], json!({"ack": 4}));
    // An empty reply repeats the number: it still says what the client has.
    let hold = c.connect(0, "x", &cid, Some(4)).1.expect("held");
    c.now += Duration::from_secs(20);
    let answer = c.complete(0, hold);
    assert_eq!(answer[0]["ext"], json!({"ack": 4}));
}

#[test]
fn a_released_session_is_taken_over_with_exactly_what_the_client_lacks() {
    let mut c = Cluster::new();
    let cid = c.handshake(0, "x", json!({"ack": true}));
    c.request(
        0,
        "x",
        &cid,
        json!({"channel": "/meta/subscribe", "subscription": "/n"}),
    );
    let publisher = c.handshake(1, "y", json!({}));
    for i in 0..4 {
        c.request(1, "y", &publisher, json!({"channel": "/n", "data": i}));
    }
    c.sync();
    // Node a sends 0..3 in one batch, numbered 5 (the position of 3). Its reply may or may not
    // reach the client; the next connect (acknowledging nothing) gets them all again.
    let (replies, _) = c.connect(0, "x", &cid, Some(0));
    assert_eq!(data_of(&replies), [json!(0), json!(1), json!(2), json!(3)]);
    let batch = replies.last().unwrap()["ext"]["ack"].as_u64().unwrap();
    assert_eq!(batch, 5);
    c.request(1, "y", &publisher, json!({"channel": "/n", "data": 4}));
    let hold = c.connect(0, "x", &cid, Some(0)).1;
    assert!(
        hold.is_none(),
        "unacknowledged messages are re-sent at once"
    );

    // The session moves: node a lets go with its record, node b adopts it and replays the log.
    c.sync();
    let Release::Released(record) = c.nodes[0].engine.release(&cid, false) else {
        panic!("served by a");
    };
    assert_eq!(record.position, 0, "the client acknowledged nothing yet");
    assert_eq!(
        record.subscriptions,
        [(ChannelName::parse("/n").unwrap(), 1)]
    );
    assert!(record.ack);
    let session = c.nodes[1].engine.adopt(c.now, &record);
    for (i, entry) in c.log.iter().enumerate() {
        let position = i as u64 + 1;
        if position > record.position {
            c.nodes[1].engine.replay(c.now, &session, position, entry);
        }
    }
    assert_eq!(c.nodes[0].engine.session(&cid).map(|_| ()), None);
    // The client got batch 5 after all: node b sends only what came after.
    let (replies, hold) = c.connect(1, "x", &cid, Some(5));
    assert!(hold.is_none());
    assert_eq!(data_of(&replies), [json!(4)]);
    assert_eq!(replies.last().unwrap()["ext"], json!({"ack": 6}));
    // Nothing was added or removed for the listeners: the session lives on.
    assert_eq!(c.events(1), [format!("added {publisher}")]);
}

#[test]
fn a_taken_over_session_without_ack_gets_what_was_queued_and_not_sent() {
    let mut c = Cluster::new();
    let cid = c.handshake(0, "x", json!({}));
    c.request(
        0,
        "x",
        &cid,
        json!({"channel": "/meta/subscribe", "subscription": "/n/**"}),
    );
    let publisher = c.handshake(1, "y", json!({}));
    c.request(
        1,
        "y",
        &publisher,
        json!({"channel": "/n/a", "data": "sent"}),
    );
    c.sync();
    let (replies, _) = c.connect(0, "x", &cid, None);
    assert_eq!(data_of(&replies), [json!("sent")]);
    let hold = c.connect(0, "x", &cid, None).1.expect("held");
    c.request(
        1,
        "y",
        &publisher,
        json!({"channel": "/n/b", "data": "queued"}),
    );
    // Applied on node a only, then the session moves before its connect is answered.
    let entry = c.log.last().unwrap().clone();
    let position = c.log.len() as u64;
    c.nodes[0].engine.apply(c.now, position, &entry);
    c.nodes[0].read = c.log.len();
    let Release::Released(record) = c.nodes[0].engine.release(&cid, false) else {
        panic!("served by a");
    };
    assert_eq!(record.position, 2, "the checkpoint: what was sent");
    let answer = c.complete(0, hold);
    assert_eq!(
        answer,
        [
            json!({"channel": "/meta/connect", "id": "8", "successful": true,
            "advice": {"reconnect": "retry", "interval": 0}})
        ],
        "moved: retry at once, elsewhere"
    );
    let session = c.nodes[1].engine.adopt(c.now, &record);
    for (i, entry) in c.log.clone().iter().enumerate() {
        let position = i as u64 + 1;
        if position > record.position {
            c.nodes[1].engine.replay(c.now, &session, position, entry);
        }
    }
    c.nodes[1].read = c.log.len();
    let (replies, _) = c.connect(1, "x", &cid, None);
    assert_eq!(data_of(&replies), [json!("queued")]);
}

#[test]
fn replay_skips_messages_from_before_a_subscription() {
    let mut c = Cluster::new();
    let cid = c.handshake(0, "x", json!({}));
    let publisher = c.handshake(1, "y", json!({}));
    c.request(
        1,
        "y",
        &publisher,
        json!({"channel": "/n", "data": "early"}),
    );
    c.request(
        0,
        "x",
        &cid,
        json!({"channel": "/meta/subscribe", "subscription": "/n"}),
    );
    c.request(1, "y", &publisher, json!({"channel": "/n", "data": "late"}));
    // Taken over from the registry's record (as after a crash): checkpoint 0, no
    // subscriptions yet; everything after it is replayed.
    let record = c.registry[cid.as_str()].clone();
    assert_eq!(record.position, 0);
    let session = c.nodes[1].engine.adopt(c.now, &record);
    for (i, entry) in c.log.clone().iter().enumerate() {
        c.nodes[1]
            .engine
            .replay(c.now, &session, i as u64 + 1, entry);
    }
    let (replies, _) = c.connect(1, "x", &cid, None);
    assert_eq!(data_of(&replies), [json!("late")]);
}

#[test]
fn a_remove_entry_ends_the_session_where_it_is_served_without_listeners() {
    let mut c = Cluster::new();
    let cid = c.handshake(0, "x", json!({}));
    let hold = c.connect(0, "x", &cid, None).1.expect("held");
    c.log.push(Entry::Remove {
        session: ClientId::new(cid.clone()),
    });
    c.sync();
    assert_eq!(
        c.complete(0, hold)[0]["advice"],
        json!({"reconnect": "none"})
    );
    assert_eq!(c.nodes[0].engine.session_count(), 0);
    assert_eq!(c.events(0), [format!("added {cid}")]);
}

#[test]
fn a_remote_call_answer_goes_through_the_log_to_the_caller() {
    let mut c = Cluster::new();
    c.nodes[0].engine.add_service(
        ChannelName::parse("/service/echo").unwrap(),
        Arc::new(|req: bayeux_core::ServiceRequest<'_>| {
            Some(bayeux_core::ServiceReply::Success(
                req.message.data().cloned().unwrap_or_default(),
            ))
        }),
    );
    let cid = c.handshake(0, "x", json!({}));
    let replies = c.request(
        0,
        "x",
        &cid,
        json!({"channel": "/service/echo", "data": "ping"}),
    );
    assert_eq!(replies.len(), 1, "the answer is not in the publish reply");
    assert!(matches!(c.log.as_slice(), [Entry::Deliver { .. }]));
    c.sync();
    let (replies, _) = c.connect(0, "x", &cid, None);
    assert_eq!(
        replies[0],
        json!({"channel": "/service/echo", "data": "ping", "successful": true, "id": "3"})
    );
}

#[test]
fn checkpoints_follow_what_a_takeover_needs() {
    let mut c = Cluster::new();
    let acking = c.handshake(0, "x", json!({"ack": true}));
    let plain = c.handshake(0, "y", json!({}));
    for (cid, browser) in [(&acking, "x"), (&plain, "y")] {
        c.request(
            0,
            browser,
            cid,
            json!({"channel": "/meta/subscribe", "subscription": "/n"}),
        );
    }
    c.sync();
    let minute = Duration::from_secs(60);
    let ids = |records: Vec<SessionRecord>| -> Vec<String> {
        let mut ids: Vec<String> = records.iter().map(|r| r.client_id.to_string()).collect();
        ids.sort();
        ids
    };
    let mut both = vec![acking.clone(), plain.clone()];
    both.sort();
    // New subscriptions: both records are due.
    assert_eq!(ids(c.nodes[0].engine.changed_records(c.now, minute)), both);
    assert_eq!(
        ids(c.nodes[0].engine.changed_records(c.now, minute)),
        Vec::<String>::new()
    );
    // A message sent to both: the plain session's checkpoint moved; the acking one's moves
    // only once acknowledged, and is written no more often than `ack_every`.
    let publisher = c.handshake(1, "z", json!({}));
    c.request(1, "z", &publisher, json!({"channel": "/n", "data": 1}));
    c.sync();
    c.connect(0, "y", &plain, None);
    let (replies, _) = c.connect(0, "x", &acking, Some(0));
    let batch = replies.last().unwrap()["ext"]["ack"].as_u64().unwrap();
    assert_eq!(
        ids(c.nodes[0].engine.changed_records(c.now, minute)),
        std::slice::from_ref(&plain)
    );
    c.now += Duration::from_millis(10);
    let hold = c.connect(0, "x", &acking, Some(batch)).1;
    assert!(hold.is_some());
    assert_eq!(
        ids(c.nodes[0].engine.changed_records(c.now, minute)),
        Vec::<String>::new()
    );
    c.now += minute;
    let records = c.nodes[0].engine.changed_records(c.now, minute);
    assert_eq!(ids(records.clone()), std::slice::from_ref(&acking));
    assert_eq!(records[0].position, batch, "what the client acknowledged");
}
