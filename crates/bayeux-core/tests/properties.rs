//! Model-based property test of the engine on a virtual clock.
//!
//! Random sequences of handshakes, subscribes, publishes, connects, held-connect completions,
//! time steps, sweeps and disconnects run against the engine and against a small model of what
//! the protocol promises; after every step the two must agree. Not for wire details (exact
//! replies, advice): the scenario tests in `src/tests.rs` cover those.
//!
//! The model leaves out what these runs never reach: queue overflow (`max_queue` is far above
//! what a run queues), `maxSessionsPerBrowser` (each session has a browser of its own), lazy
//! channels, acknowledged delivery, websocket pushers and shutdown. The other caps (sessions,
//! subscriptions, channels, publish rate) stay at defaults far above what a run reaches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bayeux_core::{
    BrowserId, Engine, EngineConfig, Hold, HoldEnd, RequestContext, SequentialIds, TransportKind,
};
use bayeux_message::{ChannelName, EncodedMessage, Message};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(20);
const INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(10);
/// Most sessions alive at once.
const MAX_SESSIONS: usize = 5;
/// Most sessions a run creates.
const MAX_CREATED: usize = 10;
/// Concrete channels publishes go to.
const CHANNELS: [&str; 5] = ["/a", "/a/b", "/a/b/c", "/b", "/b/a"];
/// Names sessions subscribe to: the channels, and patterns overlapping them.
const SUBSCRIPTIONS: [&str; 11] = [
    "/a", "/a/b", "/a/b/c", "/b", "/b/a", "/*", "/**", "/a/*", "/a/**", "/a/b/*", "/b/*",
];
/// `interval` advice a connect may carry (milliseconds).
const ADVICE_INTERVALS: [Option<u64>; 3] = [None, Some(0), Some(2_500)];

/// One step of a run. Session and hold numbers pick among those that exist (modulo).
#[derive(Clone, Debug)]
enum Op {
    /// Forget a held connect, as a driver does when its waiter goes away.
    AbandonHold {
        hold: usize,
    },
    /// Advance the virtual clock.
    Advance {
        millis: u64,
    },
    /// Advance to when a session is due to expire, or 1 ms before, and sweep: the boundary.
    AdvanceToDue {
        session: usize,
        early: bool,
    },
    /// Subscribe and publish in one request.
    Batch {
        session: usize,
        name: usize,
        channel: usize,
    },
    /// Answer a held connect.
    CompleteHold {
        hold: usize,
    },
    Connect {
        session: usize,
        timeout_zero: bool,
        interval: usize,
    },
    Disconnect {
        session: usize,
    },
    Handshake,
    Publish {
        session: usize,
        channel: usize,
    },
    /// A publish by the server itself (`Engine::publish`).
    ServerPublish {
        channel: usize,
    },
    Subscribe {
        session: usize,
        name: usize,
    },
    Sweep,
    Unsubscribe {
        session: usize,
        name: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let session = 0..MAX_CREATED;
    let name = 0..SUBSCRIPTIONS.len();
    let channel = 0..CHANNELS.len();
    prop_oneof![
        1 => any::<usize>().prop_map(|hold| Op::AbandonHold { hold }),
        3 => prop_oneof![0..2_000u64, 2_000..12_000u64, 12_000..35_000u64]
            .prop_map(|millis| Op::Advance { millis }),
        1 => (session.clone(), any::<bool>())
            .prop_map(|(session, early)| Op::AdvanceToDue { session, early }),
        1 => (session.clone(), name.clone(), channel.clone())
            .prop_map(|(session, name, channel)| Op::Batch { session, name, channel }),
        3 => any::<usize>().prop_map(|hold| Op::CompleteHold { hold }),
        4 => (session.clone(), prop::bool::weighted(0.25), 0..ADVICE_INTERVALS.len()).prop_map(
            |(session, timeout_zero, interval)| Op::Connect { session, timeout_zero, interval }
        ),
        1 => session.clone().prop_map(|session| Op::Disconnect { session }),
        2 => Just(Op::Handshake),
        4 => (session.clone(), channel.clone())
            .prop_map(|(session, channel)| Op::Publish { session, channel }),
        1 => channel.prop_map(|channel| Op::ServerPublish { channel }),
        4 => (session.clone(), name.clone())
            .prop_map(|(session, name)| Op::Subscribe { session, name }),
        2 => Just(Op::Sweep),
        1 => (session, name).prop_map(|(session, name)| Op::Unsubscribe { session, name }),
    ]
}

/// Naive wildcard matching of a subscription name against a concrete channel.
fn matches(pattern: &str, channel: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix("/**") {
        channel.starts_with(&format!("{prefix}/"))
    } else if let Some(prefix) = pattern.strip_suffix("/*") {
        channel
            .strip_prefix(&format!("{prefix}/"))
            .is_some_and(|rest| !rest.contains('/'))
    } else {
        pattern == channel
    }
}

/// The held connect a session has outstanding, as the model sees it.
#[derive(Debug)]
struct ModelHold {
    /// Which `Hold` value it is (see `World::holds`).
    id: u64,
    deadline: Instant,
    /// Something asked for an early answer: a delivery queued outside the session's own
    /// requests, or the session's removal.
    released: bool,
}

/// A session as the model sees it.
#[derive(Debug)]
struct Client {
    cid: String,
    ctx: RequestContext,
    alive: bool,
    connected: bool,
    subscriptions: BTreeSet<&'static str>,
    /// Sequence numbers queued for the session and not delivered yet.
    pending: VecDeque<u64>,
    /// The newest connect, while it is held and neither answered nor abandoned.
    hold: Option<ModelHold>,
    /// Effective `interval` of the last connect.
    interval: Duration,
    /// When the session expires if no connect is held.
    expire_at: Instant,
    last_delivered: Option<u64>,
}

impl Client {
    /// Bayeux: a session expires `interval + maxInterval` after its last connect reply, and
    /// never while a connect is held (until that connect's deadline plus the same grace).
    fn due(&self) -> Instant {
        match &self.hold {
            Some(hold) => hold.deadline + self.interval + MAX_INTERVAL,
            None => self.expire_at,
        }
    }

    /// A message other than a connect keeps an idle session alive for `maxInterval` more
    /// (documented on `SessionState::touch`, tested by `other_messages_extend_expiry_...`).
    fn touch(&mut self, now: Instant) {
        if self.hold.is_none() {
            self.expire_at = self.expire_at.max(now + MAX_INTERVAL);
        }
    }

    fn subscribed_to(&self, channel: &str) -> bool {
        self.alive && self.subscriptions.iter().any(|s| matches(s, channel))
    }
}

/// The engine, its clock, and the model it is checked against.
struct World {
    engine: Engine,
    now: Instant,
    clients: Vec<Client>,
    /// `Hold` values not consumed yet: client index, model id, the hold.
    holds: Vec<(usize, u64, Hold)>,
    next_hold: u64,
    /// Channel of each publish, by sequence number.
    published: Vec<&'static str>,
    next_message_id: u64,
}

/// What a response carries: deliveries (sequence number and channel), then replies.
struct Response {
    deliveries: Vec<(u64, String)>,
    replies: Vec<Value>,
}

fn response(messages: &[EncodedMessage]) -> Result<Response, TestCaseError> {
    let mut out = Response {
        deliveries: Vec::new(),
        replies: Vec::new(),
    };
    for msg in messages {
        let value: Value = serde_json::from_str(msg.as_str()).expect("engine emits JSON");
        if value.get("successful").is_some() {
            out.replies.push(value);
            continue;
        }
        prop_assert!(
            out.replies.is_empty(),
            "delivery after a reply: {:?}",
            messages
        );
        let seq = value["data"]["seq"].as_u64();
        let channel = value["channel"].as_str();
        let (Some(seq), Some(channel)) = (seq, channel) else {
            return Err(TestCaseError::fail(format!("unexpected message {value}")));
        };
        out.deliveries.push((seq, channel.to_owned()));
    }
    Ok(out)
}

fn successful(reply: &Value) -> bool {
    reply["successful"] == json!(true)
}

impl World {
    fn new() -> Self {
        let config = EngineConfig {
            timeout: TIMEOUT,
            interval: INTERVAL,
            max_interval: MAX_INTERVAL,
            // Far above what a run can queue, so drop-oldest never applies: the model does
            // not model overflow.
            max_queue: 1_000_000,
            ..EngineConfig::default()
        };
        Self {
            engine: Engine::new(config, Box::new(SequentialIds::default())),
            now: Instant::now(),
            clients: Vec::new(),
            holds: Vec::new(),
            next_hold: 0,
            published: Vec::new(),
            next_message_id: 0,
        }
    }

    fn send(&mut self, client: usize, batch: Vec<Value>) -> (Vec<EncodedMessage>, Option<Hold>) {
        let batch = batch
            .into_iter()
            .map(|mut value| {
                self.next_message_id += 1;
                value["id"] = json!(self.next_message_id.to_string());
                if let Some(c) = self.clients.get(client) {
                    value["clientId"] = json!(c.cid);
                }
                Message::from_map(value.as_object().expect("object").clone())
            })
            .collect();
        let ctx = match self.clients.get(client) {
            Some(c) => c.ctx.clone(),
            None => context(client),
        };
        let outcome = self
            .engine
            .handle(self.now, &ctx, batch)
            .expect("well-formed request");
        (outcome.messages, outcome.hold)
    }

    /// Takes delivered messages off the model's queue of `client`: they must come in publish
    /// order and be what the model queued, each once; `all` when the response must carry
    /// everything queued (a connect reply).
    fn receive(
        &mut self,
        client: usize,
        deliveries: &[(u64, String)],
        all: bool,
    ) -> Result<(), TestCaseError> {
        let c = &mut self.clients[client];
        for (seq, channel) in deliveries {
            prop_assert_eq!(channel.as_str(), self.published[*seq as usize]);
            prop_assert!(
                c.last_delivered.is_none_or(|last| last < *seq),
                "{} got {} after {:?}",
                c.cid,
                seq,
                c.last_delivered
            );
            c.last_delivered = Some(*seq);
            prop_assert_eq!(
                c.pending.pop_front(),
                Some(*seq),
                "{} got an unexpected delivery",
                &c.cid
            );
        }
        if all {
            prop_assert!(
                c.pending.is_empty(),
                "{} connect reply left {:?} undelivered",
                &c.cid,
                &c.pending
            );
        }
        Ok(())
    }

    /// Queues publish `seq` on `channel` in the model, as the engine does on publish: for
    /// every live session subscribed through any matching name, waking its held connect
    /// unless the session is `publisher` (its own response carries the message).
    fn route(&mut self, channel: &'static str, publisher: Option<usize>) -> (u64, usize) {
        let seq = self.published.len() as u64;
        self.published.push(channel);
        let mut count = 0;
        for (i, c) in self.clients.iter_mut().enumerate() {
            if c.subscribed_to(channel) {
                c.pending.push_back(seq);
                count += 1;
                if let Some(hold) = c.hold.as_mut() {
                    hold.released |= publisher != Some(i);
                }
            }
        }
        (seq, count)
    }

    fn remove(&mut self, client: usize) {
        let c = &mut self.clients[client];
        c.alive = false;
        c.pending.clear();
        c.subscriptions.clear();
        if let Some(hold) = c.hold.as_mut() {
            hold.released = true;
        }
    }

    /// The client a step acts on: mostly a live one, sometimes any (removed ones included).
    fn pick(&self, session: usize) -> Option<usize> {
        let alive: Vec<usize> = (0..self.clients.len())
            .filter(|&i| self.clients[i].alive)
            .collect();
        if session < MAX_CREATED * 3 / 4 && !alive.is_empty() {
            Some(alive[session % alive.len()])
        } else {
            (!self.clients.is_empty()).then(|| session % self.clients.len())
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::AbandonHold { hold } => {
                if self.holds.is_empty() {
                    return Ok(());
                }
                let (client, id, hold) = self.holds.remove(hold % self.holds.len());
                self.engine.abandon_hold(self.now, &hold);
                let c = &mut self.clients[client];
                if let Some(h) = c.hold.take_if(|h| h.id == id) {
                    // As if the connect had been answered at its deadline.
                    c.expire_at = h.deadline.max(self.now) + c.interval + MAX_INTERVAL;
                }
            }
            Op::Advance { millis } => self.now += Duration::from_millis(millis),
            Op::AdvanceToDue { session, early } => {
                let Some(client) = self.pick(session) else {
                    return Ok(());
                };
                let early = if early {
                    Duration::from_millis(1)
                } else {
                    Duration::ZERO
                };
                self.now = self.now.max(self.clients[client].due() - early);
                self.apply(&Op::Sweep)?;
            }
            Op::Batch {
                session,
                name,
                channel,
            } => {
                let Some(client) = self.pick(session) else {
                    return Ok(());
                };
                let (name, channel) = (SUBSCRIPTIONS[name], CHANNELS[channel]);
                let alive = self.clients[client].alive;
                let mut seq = None;
                if alive {
                    let c = &mut self.clients[client];
                    c.touch(self.now);
                    c.subscriptions.insert(name);
                    seq = Some(self.route(channel, Some(client)).0);
                }
                let (messages, hold) = self.send(
                    client,
                    vec![
                        json!({"channel": "/meta/subscribe", "subscription": name}),
                        json!({"channel": channel, "data": {"seq": seq}}),
                    ],
                );
                prop_assert!(hold.is_none());
                let r = response(&messages)?;
                prop_assert_eq!(r.replies.len(), 2);
                prop_assert!(r.replies.iter().all(|reply| successful(reply) == alive));
                self.receive(client, &r.deliveries, false)?;
            }
            Op::CompleteHold { hold } => {
                if self.holds.is_empty() {
                    return Ok(());
                }
                let (client, id, hold) = self.holds.remove(hold % self.holds.len());
                let end = self.engine.complete_hold(self.now, hold);
                let now = self.now;
                let c = &mut self.clients[client];
                let current = c.hold.take_if(|h| h.id == id).is_some();
                match end {
                    HoldEnd::Superseded => prop_assert!(!current, "current hold superseded"),
                    HoldEnd::Reply(messages) => {
                        prop_assert!(current, "stale hold answered");
                        let r = response(&messages)?;
                        prop_assert_eq!(r.replies.len(), 1);
                        prop_assert_eq!(&r.replies[0]["channel"], "/meta/connect");
                        if c.alive {
                            c.expire_at = now + c.interval + MAX_INTERVAL;
                            self.receive(client, &r.deliveries, true)?;
                        } else {
                            prop_assert!(r.deliveries.is_empty());
                            prop_assert_eq!(&r.replies[0]["advice"]["reconnect"], "none");
                        }
                    }
                    #[allow(unreachable_patterns)]
                    other => prop_assert!(false, "unknown hold end {:?}", other),
                }
            }
            Op::Connect {
                session,
                timeout_zero,
                interval,
            } => {
                let Some(client) = self.pick(session) else {
                    return Ok(());
                };
                let interval = ADVICE_INTERVALS[interval];
                let mut msg = json!({"channel": "/meta/connect", "connectionType": "long-polling"});
                if timeout_zero {
                    msg["advice"]["timeout"] = json!(0);
                }
                if let Some(interval) = interval {
                    msg["advice"]["interval"] = json!(interval);
                }
                let (messages, hold) = self.send(client, vec![msg]);
                let r = response(&messages)?;
                let now = self.now;
                let c = &mut self.clients[client];
                if !c.alive {
                    prop_assert!(hold.is_none());
                    prop_assert!(r.deliveries.is_empty());
                    prop_assert_eq!(r.replies.len(), 1);
                    prop_assert!(!successful(&r.replies[0]));
                    return Ok(());
                }
                // Only the newest connect is live: an older held one is superseded.
                c.hold = None;
                c.interval = interval.map_or(INTERVAL, Duration::from_millis);
                // Bayeux: the first connect, a connect with `timeout: 0` and a connect that
                // finds messages queued are answered at once; any other is held.
                let now_answered = !c.connected || timeout_zero || !c.pending.is_empty();
                c.connected = true;
                if now_answered {
                    prop_assert!(hold.is_none(), "connect held: {:?}", c);
                    prop_assert_eq!(r.replies.len(), 1);
                    prop_assert!(successful(&r.replies[0]));
                    c.expire_at = now + c.interval + MAX_INTERVAL;
                    self.receive(client, &r.deliveries, true)?;
                } else {
                    prop_assert!(messages.is_empty(), "held connect answered: {:?}", messages);
                    let Some(hold) = hold else {
                        return Err(TestCaseError::fail("connect not held"));
                    };
                    prop_assert_eq!(hold.deadline(), now + TIMEOUT);
                    self.next_hold += 1;
                    c.hold = Some(ModelHold {
                        id: self.next_hold,
                        deadline: hold.deadline(),
                        released: false,
                    });
                    self.holds.push((client, self.next_hold, hold));
                }
            }
            Op::Disconnect { session } => {
                let Some(client) = self.pick(session) else {
                    return Ok(());
                };
                let alive = self.clients[client].alive;
                let (messages, hold) =
                    self.send(client, vec![json!({"channel": "/meta/disconnect"})]);
                prop_assert!(hold.is_none());
                let r = response(&messages)?;
                prop_assert_eq!(r.replies.len(), 1);
                prop_assert_eq!(successful(&r.replies[0]), alive);
                self.receive(client, &r.deliveries, false)?;
                if alive {
                    self.remove(client);
                }
            }
            Op::Handshake => {
                let alive = self.clients.iter().filter(|c| c.alive).count();
                if alive >= MAX_SESSIONS || self.clients.len() >= MAX_CREATED {
                    return Ok(());
                }
                let client = self.clients.len();
                let (messages, hold) = self.send(
                    client,
                    vec![json!({"channel": "/meta/handshake", "version": "1.0"})],
                );
                prop_assert!(hold.is_none());
                let r = response(&messages)?;
                prop_assert!(r.deliveries.is_empty());
                prop_assert_eq!(r.replies.len(), 1);
                prop_assert!(successful(&r.replies[0]));
                let cid = r.replies[0]["clientId"]
                    .as_str()
                    .expect("clientId")
                    .to_owned();
                self.clients.push(Client {
                    cid,
                    ctx: context(client),
                    alive: true,
                    connected: false,
                    subscriptions: BTreeSet::new(),
                    pending: VecDeque::new(),
                    hold: None,
                    // A new session's first grace uses the configured interval.
                    interval: INTERVAL,
                    expire_at: self.now + INTERVAL + MAX_INTERVAL,
                    last_delivered: None,
                });
            }
            Op::Publish { session, channel } => {
                let Some(client) = self.pick(session) else {
                    return Ok(());
                };
                let channel = CHANNELS[channel];
                let alive = self.clients[client].alive;
                let mut seq = None;
                if alive {
                    self.clients[client].touch(self.now);
                    seq = Some(self.route(channel, Some(client)).0);
                }
                let (messages, hold) = self.send(
                    client,
                    vec![json!({"channel": channel, "data": {"seq": seq}})],
                );
                prop_assert!(hold.is_none());
                let r = response(&messages)?;
                prop_assert_eq!(r.replies.len(), 1);
                prop_assert_eq!(successful(&r.replies[0]), alive);
                self.receive(client, &r.deliveries, false)?;
            }
            Op::ServerPublish { channel } => {
                let channel = CHANNELS[channel];
                let (seq, expected) = self.route(channel, None);
                let name = ChannelName::parse(channel).expect("valid channel");
                let count = self.engine.publish(self.now, &name, json!({"seq": seq}));
                prop_assert_eq!(count, Ok(expected));
            }
            Op::Subscribe { session, name } | Op::Unsubscribe { session, name } => {
                let Some(client) = self.pick(session) else {
                    return Ok(());
                };
                let subscribe = matches!(op, Op::Subscribe { .. });
                let name = SUBSCRIPTIONS[name];
                let c = &mut self.clients[client];
                let alive = c.alive;
                if alive {
                    c.touch(self.now);
                    if subscribe {
                        c.subscriptions.insert(name);
                    } else {
                        c.subscriptions.remove(name);
                    }
                }
                let meta = if subscribe {
                    "/meta/subscribe"
                } else {
                    "/meta/unsubscribe"
                };
                let (messages, hold) =
                    self.send(client, vec![json!({"channel": meta, "subscription": name})]);
                prop_assert!(hold.is_none());
                let r = response(&messages)?;
                prop_assert_eq!(r.replies.len(), 1);
                prop_assert_eq!(successful(&r.replies[0]), alive);
                self.receive(client, &r.deliveries, false)?;
            }
            Op::Sweep => {
                let now = self.now;
                let due: Vec<usize> = (0..self.clients.len())
                    .filter(|&i| self.clients[i].alive && self.clients[i].due() <= now)
                    .collect();
                let removed = self.engine.sweep(now).removed;
                prop_assert_eq!(removed, due.len());
                for client in due {
                    self.remove(client);
                }
            }
        }
        Ok(())
    }

    /// What must hold after every step: the same live sessions (none removed early or late),
    /// the same subscriptions, and held connects pending exactly when nothing released them.
    fn check(&self) -> Result<(), TestCaseError> {
        let alive = self.clients.iter().filter(|c| c.alive).count();
        prop_assert_eq!(self.engine.session_count(), alive);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &self.clients {
            let session = self.engine.session(&c.cid);
            prop_assert_eq!(session.is_some(), c.alive, "{} alive", &c.cid);
            let Some(session) = session else { continue };
            let subscriptions: Vec<String> = session
                .subscriptions()
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect();
            let expected: Vec<&str> = c.subscriptions.iter().copied().collect();
            prop_assert_eq!(subscriptions, expected);
            for name in &c.subscriptions {
                *counts.entry(name).or_default() += 1;
            }
        }
        let index: Vec<(String, usize)> = self
            .engine
            .subscriptions()
            .counts()
            .into_iter()
            .map(|(name, n)| (name.as_str().to_owned(), n))
            .collect();
        let expected: Vec<(String, usize)> = counts
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect();
        prop_assert_eq!(index, expected);
        for (client, id, hold) in &self.holds {
            let c = &self.clients[*client];
            let pending = c.hold.as_ref().is_some_and(|h| h.id == *id && !h.released);
            prop_assert_eq!(hold.is_pending(), pending, "hold {} of {}", id, &c.cid);
        }
        Ok(())
    }

    /// Ends the run: every live session connects with `timeout: 0` (and must receive all it
    /// is owed), then all disconnect or all expire; nothing may be left behind.
    fn finish(&mut self, disconnect: bool) -> Result<(), TestCaseError> {
        for session in 0..self.clients.len() {
            if self.clients[session].alive {
                self.apply(&Op::Connect {
                    session,
                    timeout_zero: true,
                    interval: 0,
                })?;
            }
        }
        if disconnect {
            for session in 0..self.clients.len() {
                self.apply(&Op::Disconnect { session })?;
            }
        } else {
            let longest = Duration::from_millis(
                ADVICE_INTERVALS
                    .iter()
                    .flatten()
                    .max()
                    .copied()
                    .unwrap_or(0),
            );
            self.apply(&Op::Advance {
                millis: (TIMEOUT + INTERVAL.max(longest) + MAX_INTERVAL).as_millis() as u64,
            })?;
            self.apply(&Op::Sweep)?;
        }
        while !self.holds.is_empty() {
            self.apply(&Op::CompleteHold { hold: 0 })?;
        }
        self.check()?;
        prop_assert_eq!(self.engine.session_count(), 0);
        prop_assert!(self.engine.subscriptions().is_empty());
        prop_assert_eq!(self.engine.browsers_holding(), 0);
        Ok(())
    }
}

/// Each session in a browser of its own, so `maxSessionsPerBrowser` never applies.
fn context(client: usize) -> RequestContext {
    RequestContext::new(TransportKind::LongPolling)
        .with_browser(Some(BrowserId::new(format!("browser{client}"))))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random runs never panic, and the engine agrees with the model after every step:
    /// (a) each publish reaches every session subscribed (through any matching name) when it
    /// was published and alive when it drains, exactly once, and no other; a connect reply
    /// carries everything queued; (b) each session receives in publish order; (c) a sweep
    /// removes exactly the sessions past `interval + maxInterval` since their last connect
    /// reply (or other message) with no connect held, or past a held connect's deadline plus
    /// that grace, and nothing removes them earlier; (d) once all sessions are disconnected
    /// or expired, no session, subscription or browser slot is left.
    #[test]
    fn engine_agrees_with_the_model(
        handshakes in 1..=MAX_SESSIONS,
        ops in prop::collection::vec(op(), 1..100),
        disconnect in any::<bool>(),
    ) {
        let mut world = World::new();
        for _ in 0..handshakes {
            world.apply(&Op::Handshake)?;
        }
        for op in &ops {
            world.apply(op)?;
            world.check()?;
        }
        world.finish(disconnect)?;
    }
}
