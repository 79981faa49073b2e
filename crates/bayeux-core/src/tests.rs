//! Engine scenarios on a virtual clock: time moves only when a test moves it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bayeux_message::{ClientId, EncodedMessage, Message};
use serde_json::{json, Value};

use crate::{
    BrowserId, Engine, EngineConfig, Hold, HoldEnd, RemovalReason, RequestContext, RequestError,
    SequentialIds, SessionListener, TransportKind,
};

struct Harness {
    engine: Engine,
    now: Instant,
    events: Arc<Mutex<Vec<String>>>,
    next_id: u64,
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
}

fn msg(value: Value) -> Message {
    Message::from_map(
        value
            .as_object()
            .expect("test messages are objects")
            .clone(),
    )
}

fn values(messages: &[EncodedMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| serde_json::from_str(m.as_str()).expect("engine emits JSON"))
        .collect()
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(tune: impl FnOnce(&mut EngineConfig)) -> Self {
        let mut config = EngineConfig {
            timeout: Duration::from_secs(20),
            max_interval: Duration::from_secs(10),
            ..EngineConfig::default()
        };
        tune(&mut config);
        let events = Arc::new(Mutex::new(Vec::new()));
        let listener = Arc::new(Recorder(Arc::clone(&events)));
        Self {
            engine: Engine::new(config, Box::new(SequentialIds::default()))
                .with_listener(listener)
                .with_extension(Arc::new(crate::AckExtension)),
            now: Instant::now(),
            events,
            next_id: 0,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    fn ctx(browser: &str) -> RequestContext {
        RequestContext::new(TransportKind::LongPolling).with_browser(Some(BrowserId::new(browser)))
    }

    fn send(&mut self, browser: &str, batch: Vec<Value>) -> (Vec<Value>, Option<Hold>) {
        let batch = batch.into_iter().map(msg).collect();
        let outcome = self
            .engine
            .handle(self.now, &Self::ctx(browser), batch)
            .expect("valid request");
        (values(&outcome.messages), outcome.hold)
    }

    fn handshake_in(&mut self, browser: &str) -> String {
        let id = self.id();
        let (replies, _) = self.send(
            browser,
            vec![json!({"channel": "/meta/handshake", "id": id, "version": "1.0"})],
        );
        replies[0]["clientId"]
            .as_str()
            .expect("clientId")
            .to_owned()
    }

    /// Handshake plus the first (immediate) connect, in browser `b-<n>` of its own.
    fn client(&mut self) -> String {
        let browser = format!("b-{}", self.next_id);
        let cid = self.handshake_in(&browser);
        let (replies, hold) = self.connect(&cid, Some(json!({"timeout": 0})));
        assert!(hold.is_none() && replies[0]["successful"] == json!(true));
        cid
    }

    fn browser_of(&self, cid: &str) -> String {
        let session = self.engine.session(cid).expect("live session");
        session.browser().expect("HTTP session").as_str().to_owned()
    }

    fn connect(&mut self, cid: &str, advice: Option<Value>) -> (Vec<Value>, Option<Hold>) {
        let id = self.id();
        let mut m = json!({"channel": "/meta/connect", "id": id, "clientId": cid, "connectionType": "long-polling"});
        if let Some(advice) = advice {
            m["advice"] = advice;
        }
        let browser = self.browser_of(cid);
        self.send(&browser, vec![m])
    }

    fn hold(&mut self, cid: &str) -> Hold {
        let (replies, hold) = self.connect(cid, None);
        assert_eq!(replies, Vec::<Value>::new());
        hold.expect("connect should hold")
    }

    fn request(&mut self, cid: &str, mut batch: Vec<Value>) -> Vec<Value> {
        for m in &mut batch {
            m["clientId"] = json!(cid);
            if m.get("id").is_none() {
                m["id"] = json!(self.id());
            }
        }
        let browser = self.browser_of(cid);
        let (replies, hold) = self.send(&browser, batch);
        assert!(hold.is_none());
        replies
    }

    fn subscribe(&mut self, cid: &str, channel: &str) {
        let replies = self.request(
            cid,
            vec![json!({"channel": "/meta/subscribe", "subscription": channel})],
        );
        assert_eq!(
            replies.last().expect("reply")["successful"],
            json!(true),
            "{replies:?}"
        );
    }

    fn publish(&mut self, cid: &str, channel: &str, data: Value) -> Vec<Value> {
        self.request(cid, vec![json!({"channel": channel, "data": data})])
    }

    fn complete(&mut self, hold: Hold) -> Vec<Value> {
        match self.engine.complete_hold(self.now, hold) {
            HoldEnd::Reply(messages) => values(&messages),
            HoldEnd::Superseded => panic!("hold was superseded"),
        }
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

#[test]
fn handshake_reply_has_the_shape_the_js_client_needs() {
    let mut h = Harness::new();
    let (replies, hold) = h.send(
        "b",
        vec![
            json!({"channel": "/meta/handshake", "id": "1", "version": "1.0",
        "supportedConnectionTypes": ["long-polling"]}),
        ],
    );
    assert!(hold.is_none());
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/handshake", "id": "1", "successful": true, "version": "1.0",
            "minimumVersion": "1.0", "clientId": "c1",
            "supportedConnectionTypes": ["websocket", "long-polling", "callback-polling"],
            "advice": {"reconnect": "retry", "interval": 0, "timeout": 20000}})
        ]
    );
    assert_eq!(h.events(), ["added c1"]);
}

#[test]
fn handshake_with_other_messages_is_refused_whole() {
    let h = Harness::new();
    let batch = vec![
        msg(json!({"channel": "/meta/handshake", "id": "1"})),
        msg(json!({"channel": "/a", "id": "2", "data": 1})),
    ];
    let err = h
        .engine
        .handle(h.now, &Harness::ctx("b"), batch)
        .expect_err("refused");
    assert_eq!(err, RequestError::HandshakeNotAlone);
    assert_eq!(h.engine.session_count(), 0);
}

#[test]
fn first_connect_is_answered_at_once_with_full_advice() {
    let mut h = Harness::new();
    let cid = h.handshake_in("b");
    let (replies, hold) = h.connect(&cid, None);
    assert!(hold.is_none());
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "id": "2", "successful": true,
            "advice": {"reconnect": "retry", "interval": 0, "timeout": 20000}})
        ]
    );
}

#[test]
fn held_connect_wakes_on_publish_and_carries_the_delivery() {
    let mut h = Harness::new();
    let sub = h.client();
    let publisher = h.client();
    h.subscribe(&sub, "/chat/*");
    let hold = h.hold(&sub);
    assert!(hold.is_pending());
    assert_eq!(hold.deadline(), h.now + Duration::from_secs(20));
    let replies = h.publish(&publisher, "/chat/room", json!({"text": "hi"}));
    assert_eq!(
        replies,
        [json!({"channel": "/chat/room", "id": "7", "successful": true})]
    );
    assert!(!hold.is_pending());
    let id = hold_id(&h, &hold);
    assert_eq!(
        h.complete(hold),
        [
            json!({"channel": "/chat/room", "data": {"text": "hi"}}),
            json!({"channel": "/meta/connect", "id": id, "successful": true})
        ]
    );
}

fn hold_id(h: &Harness, hold: &Hold) -> String {
    let session = h.engine.session(hold.client_id().as_str()).expect("live");
    let st = session.lock();
    st.hold
        .as_ref()
        .expect("held")
        .id
        .as_ref()
        .and_then(Value::as_str)
        .expect("id")
        .to_owned()
}

#[test]
fn held_connect_is_answered_at_deadline_without_advice() {
    let mut h = Harness::new();
    let cid = h.client();
    let hold = h.hold(&cid);
    h.advance(Duration::from_secs(20));
    assert!(
        hold.is_pending(),
        "the driver owns the timer; the engine only names the deadline"
    );
    assert_eq!(
        h.complete(hold),
        [json!({"channel": "/meta/connect", "id": "3", "successful": true})]
    );
}

#[test]
fn connect_with_timeout_zero_is_immediate_and_readvises() {
    let mut h = Harness::new();
    let cid = h.client();
    let (replies, hold) = h.connect(&cid, Some(json!({"timeout": 0, "interval": 500})));
    assert!(hold.is_none());
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "id": "3", "successful": true,
            "advice": {"reconnect": "retry", "interval": 500, "timeout": 20000}})
        ]
    );
}

#[test]
fn client_timeout_shortens_but_never_lengthens_the_hold() {
    let mut h = Harness::new();
    let cid = h.client();
    let (_, hold) = h.connect(&cid, Some(json!({"timeout": 5000})));
    assert_eq!(
        hold.expect("held").deadline(),
        h.now + Duration::from_secs(5)
    );
    let (_, hold) = h.connect(&cid, Some(json!({"timeout": 90000})));
    assert_eq!(
        hold.expect("held").deadline(),
        h.now + Duration::from_secs(20)
    );
}

#[test]
fn newer_connect_supersedes_the_held_one() {
    let mut h = Harness::new();
    let cid = h.client();
    let old = h.hold(&cid);
    let new = h.hold(&cid);
    assert!(!old.is_pending());
    assert!(matches!(
        h.engine.complete_hold(h.now, old),
        HoldEnd::Superseded
    ));
    assert!(new.is_pending());
    assert_eq!(
        h.complete(new),
        [json!({"channel": "/meta/connect", "id": "4", "successful": true})]
    );
    assert_eq!(h.engine.browsers_holding(), 0);
}

#[test]
fn disconnect_releases_the_held_connect_with_reconnect_none() {
    let mut h = Harness::new();
    let cid = h.client();
    let hold = h.hold(&cid);
    let replies = h.request(&cid, vec![json!({"channel": "/meta/disconnect"})]);
    assert_eq!(
        replies,
        [json!({"channel": "/meta/disconnect", "id": "4", "successful": true})]
    );
    assert!(!hold.is_pending());
    assert_eq!(
        h.complete(hold),
        [
            json!({"channel": "/meta/connect", "id": "3", "successful": true, "advice": {"reconnect": "none"}})
        ]
    );
    let browser = format!("b-{}", 0);
    let (replies, _) = h.send(
        &browser,
        vec![json!({"channel": "/meta/connect", "id": "9", "clientId": cid})],
    );
    assert_eq!(replies[0]["error"], json!("402::session_unknown"));
    assert_eq!(h.events(), ["added c1", "removed c1 Disconnect"]);
}

#[test]
fn unknown_session_on_connect_advises_handshake() {
    let mut h = Harness::new();
    let (replies, _) = h.send(
        "b",
        vec![json!({"channel": "/meta/connect", "id": "1", "clientId": "nope"})],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "id": "1", "successful": false, "error": "402::session_unknown",
            "advice": {"reconnect": "handshake", "interval": 0}})
        ]
    );
}

#[test]
fn session_is_only_found_with_its_browser_cookie() {
    let mut h = Harness::new();
    let cid = h.client();
    let (replies, _) = h.send(
        "someone-else",
        vec![json!({"channel": "/a", "id": "1", "clientId": cid, "data": 1})],
    );
    assert_eq!(replies[0]["error"], json!("402::session_unknown"));

    let mut trusting = Harness::with(|c| c.trust_client_session = true);
    let cid = trusting.client();
    let (replies, _) = trusting.send(
        "someone-else",
        vec![json!({"channel": "/a", "id": "1", "clientId": cid, "data": 1})],
    );
    assert_eq!(
        replies,
        [json!({"channel": "/a", "id": "1", "successful": true})]
    );
}

#[test]
fn client_without_cookies_is_found_by_client_id_until_it_presents_its_cookie() {
    let mut h = Harness::new();
    let no_cookie = RequestContext::new(TransportKind::LongPolling);
    let send = |h: &mut Harness, ctx: &RequestContext, m: Value| {
        let outcome = h.engine.handle(h.now, ctx, vec![msg(m)]).expect("valid");
        (values(&outcome.messages), outcome.new_browser)
    };
    let handshake = json!({"channel": "/meta/handshake", "id": "1", "version": "1.0"});
    let (replies, given) = send(&mut h, &no_cookie, handshake.clone());
    let cid = replies[0]["clientId"].as_str().unwrap().to_owned();
    let given = given.expect("a cookie for the client");
    assert_eq!(h.browser_of(&cid), given.as_str());
    let publish =
        |n: u32| json!({"channel": "/a", "id": n.to_string(), "clientId": cid, "data": n});
    let ok = |n: u32| vec![json!({"channel": "/a", "id": n.to_string(), "successful": true})];
    let refused = |replies: &[Value]| replies[0]["error"] == json!("402::session_unknown");

    // It never sent the cookie back: its clientId is enough, another browser's cookie is not.
    assert_eq!(send(&mut h, &no_cookie, publish(2)).0, ok(2));
    assert!(refused(
        &send(&mut h, &Harness::ctx("someone-else"), publish(3)).0
    ));
    // Once it presents its cookie, the cookie is required.
    assert_eq!(
        send(&mut h, &Harness::ctx(given.as_str()), publish(4)).0,
        ok(4)
    );
    assert!(h.engine.session(&cid).unwrap().cookie_bound());
    assert!(refused(&send(&mut h, &no_cookie, publish(5)).0));

    // A client presenting a cookie at handshake is bound to it at once, and given none.
    let (replies, given) = send(&mut h, &Harness::ctx("mine"), handshake);
    assert_eq!(given, None);
    let cid = replies[0]["clientId"].as_str().unwrap().to_owned();
    let m = json!({"channel": "/a", "id": "6", "clientId": cid, "data": 6});
    assert!(refused(&send(&mut h, &no_cookie, m.clone()).0));
    assert_eq!(send(&mut h, &Harness::ctx("mine"), m.clone()).0, ok(6));

    // trustClientSession lifts the check.
    let mut trusting = Harness::with(|c| c.trust_client_session = true);
    let cid = trusting.client();
    let m = json!({"channel": "/a", "id": "7", "clientId": cid, "data": 7});
    assert_eq!(send(&mut trusting, &no_cookie, m).0, ok(7));
}

#[test]
fn silent_session_expires_after_interval_plus_max_interval() {
    let mut h = Harness::new();
    let cid = h.client();
    h.advance(Duration::from_millis(9_999));
    assert_eq!(h.engine.sweep(h.now).removed, 0);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.engine.sweep(h.now).removed, 1);
    assert!(h.engine.session(&cid).is_none());
    assert_eq!(h.events(), ["added c1", "removed c1 Timeout"]);
}

#[test]
fn held_session_never_expires_while_held() {
    let mut h = Harness::new();
    let cid = h.client();
    let hold = h.hold(&cid);
    h.advance(Duration::from_secs(20));
    assert_eq!(h.engine.sweep(h.now).removed, 0);
    h.complete(hold);
    h.advance(Duration::from_secs(10));
    assert_eq!(h.engine.sweep(h.now).removed, 1);
}

#[test]
fn abandoned_hold_expires_after_its_deadline_plus_grace() {
    let mut h = Harness::new();
    let cid = h.client();
    let _lost = h.hold(&cid);
    h.advance(Duration::from_secs(29));
    assert_eq!(h.engine.sweep(h.now).removed, 0);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.engine.sweep(h.now).removed, 1);
    assert_eq!(
        h.engine.browsers_holding(),
        0,
        "removal frees the browser slot too"
    );
}

#[test]
fn other_messages_extend_expiry_by_max_interval() {
    let mut h = Harness::new();
    let cid = h.client();
    h.advance(Duration::from_secs(8));
    h.subscribe(&cid, "/x");
    h.advance(Duration::from_secs(9));
    assert_eq!(h.engine.sweep(h.now).removed, 0);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.engine.sweep(h.now).removed, 1);
    assert!(
        h.engine.subscriptions().is_empty(),
        "expiry removes the subscriptions too"
    );
}

#[test]
fn overlapping_subscriptions_get_one_copy() {
    let mut h = Harness::new();
    let cid = h.client();
    let other = h.client();
    for pattern in ["/a/*", "/a/**", "/a/b", "/**"] {
        h.subscribe(&cid, pattern);
    }
    h.subscribe(&cid, "/a/b");
    h.publish(&other, "/a/b", json!(1));
    let replies = h.publish(&other, "/a/b/c", json!(2));
    assert_eq!(replies.len(), 1);
    let (replies, _) = h.connect(&cid, Some(json!({"timeout": 0})));
    let data: Vec<_> = replies.iter().filter_map(|m| m.get("data")).collect();
    assert_eq!(data, [&json!(1), &json!(2)]);
}

#[test]
fn wildcards_match_as_cometd_defines() {
    let mut h = Harness::new();
    let one = h.client();
    let all = h.client();
    let publisher = h.client();
    h.subscribe(&one, "/w/*");
    h.subscribe(&all, "/w/**");
    for channel in ["/w", "/w/a", "/w/a/b", "/wx/a"] {
        h.publish(&publisher, channel, json!(channel));
    }
    let channels = |h: &mut Harness, cid: &str| {
        let (replies, _) = h.connect(cid, Some(json!({"timeout": 0})));
        replies
            .iter()
            .filter_map(|m| m.get("data").cloned())
            .collect::<Vec<_>>()
    };
    assert_eq!(channels(&mut h, &one), [json!("/w/a")]);
    assert_eq!(channels(&mut h, &all), [json!("/w/a"), json!("/w/a/b")]);
}

#[test]
fn deliveries_strip_id_and_client_id_and_keep_other_fields() {
    let mut h = Harness::new();
    let sub = h.client();
    let publisher = h.client();
    h.subscribe(&sub, "/x");
    h.request(
        &publisher,
        vec![json!({"channel": "/x", "data": {"k": [1, "é"]}, "ext": {"e": 1}, "custom": true})],
    );
    let (replies, _) = h.connect(&sub, Some(json!({"timeout": 0})));
    assert_eq!(
        replies[0],
        json!({"channel": "/x", "data": {"k": [1, "é"]}, "ext": {"e": 1}, "custom": true})
    );
}

#[test]
fn own_publish_is_piggy_backed_and_does_not_wake_the_hold() {
    let mut h = Harness::new();
    let cid = h.client();
    let hold = h.hold(&cid);
    let replies = h.request(
        &cid,
        vec![
            json!({"channel": "/meta/subscribe", "id": "10", "subscription": "/foo/*"}),
            json!({"channel": "/foo/bar", "id": "11", "data": {"x": 1}}),
        ],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/foo/bar", "data": {"x": 1}}),
            json!({"channel": "/meta/subscribe", "id": "10", "subscription": "/foo/*", "successful": true}),
            json!({"channel": "/foo/bar", "id": "11", "successful": true})
        ]
    );
    assert!(hold.is_pending());
}

#[test]
fn meta_connect_deliver_only_wakes_the_hold_instead() {
    let mut h = Harness::with(|c| c.meta_connect_deliver_only = true);
    let cid = h.client();
    h.subscribe(&cid, "/foo");
    let hold = h.hold(&cid);
    let replies = h.publish(&cid, "/foo", json!(1));
    assert_eq!(
        replies,
        [json!({"channel": "/foo", "id": "5", "successful": true})]
    );
    assert!(!hold.is_pending());
    assert_eq!(
        h.complete(hold),
        [
            json!({"channel": "/foo", "data": 1}),
            json!({"channel": "/meta/connect", "id": "4", "successful": true})
        ]
    );
}

#[test]
fn order_is_kept_per_session() {
    let mut h = Harness::new();
    let sub = h.client();
    let publisher = h.client();
    h.subscribe(&sub, "/n");
    for i in 0..200 {
        h.publish(&publisher, "/n", json!(i));
    }
    let (replies, _) = h.connect(&sub, Some(json!({"timeout": 0})));
    let data: Vec<_> = replies
        .iter()
        .filter_map(|m| m.get("data").cloned())
        .collect();
    assert_eq!(data, (0..200).map(|i| json!(i)).collect::<Vec<_>>());
}

#[test]
fn full_queue_drops_the_oldest() {
    let mut h = Harness::with(|c| c.max_queue = 3);
    let sub = h.client();
    let publisher = h.client();
    h.subscribe(&sub, "/n");
    for i in 0..5 {
        h.publish(&publisher, "/n", json!(i));
    }
    assert_eq!(h.engine.session(&sub).expect("live").dropped(), 2);
    let (replies, _) = h.connect(&sub, Some(json!({"timeout": 0})));
    let data: Vec<_> = replies
        .iter()
        .filter_map(|m| m.get("data").cloned())
        .collect();
    assert_eq!(data, [json!(2), json!(3), json!(4)]);
}

#[test]
fn second_poller_of_a_browser_gets_multiple_clients_advice() {
    let mut h = Harness::new();
    let a = h.handshake_in("shared");
    let b = h.handshake_in("shared");
    h.connect(&a, Some(json!({"timeout": 0})));
    h.connect(&b, Some(json!({"timeout": 0})));
    let _held = h.hold(&a);
    let (replies, hold) = h.connect(&b, None);
    assert!(hold.is_none());
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "id": "6", "successful": true,
            "advice": {"multiple-clients": true, "reconnect": "retry", "interval": 2000}})
        ]
    );
}

#[test]
fn over_http2_a_browser_holds_as_many_connects_as_http2_max_sessions_per_browser() {
    let connect = |cid: &str, id: &str| {
        msg(
            json!({"channel": "/meta/connect", "id": id, "clientId": cid, "connectionType": "long-polling"}),
        )
    };
    for (limit, third_held) in [(-1, true), (2, false)] {
        let mut h = Harness::with(|c| c.http2_max_sessions_per_browser = limit);
        let h2 = RequestContext {
            multiplexed: true,
            ..Harness::ctx("shared")
        };
        let tabs: Vec<String> = (0..3).map(|_| h.handshake_in("shared")).collect();
        for cid in &tabs {
            h.connect(cid, Some(json!({"timeout": 0})));
        }
        let mut holds = Vec::new();
        for (n, cid) in tabs.iter().enumerate() {
            let outcome = h
                .engine
                .handle(h.now, &h2, vec![connect(cid, &format!("h{n}"))])
                .unwrap();
            holds.push(outcome.hold);
            if n < 2 {
                assert!(holds[n].is_some(), "tab {n} is held over HTTP/2");
            } else {
                assert_eq!(holds[n].is_some(), third_held, "limit {limit}");
                if !third_held {
                    assert_eq!(
                        values(&outcome.messages)[0]["advice"]["multiple-clients"],
                        json!(true)
                    );
                }
            }
        }
        // HTTP/1.1 connects of the same browser count the HTTP/2 ones: one is allowed, and
        // the browser already holds two or three.
        let fourth = h.handshake_in("shared");
        h.connect(&fourth, Some(json!({"timeout": 0})));
        let (replies, hold) = h.connect(&fourth, None);
        assert!(hold.is_none(), "limit {limit}");
        assert_eq!(replies[0]["advice"]["multiple-clients"], json!(true));
    }
}

#[test]
fn broadcast_to_publisher_can_be_turned_off() {
    let mut h = Harness::with(|c| c.broadcast_to_publisher = false);
    let cid = h.client();
    h.subscribe(&cid, "/x");
    let replies = h.publish(&cid, "/x", json!(1));
    assert_eq!(
        replies,
        [json!({"channel": "/x", "id": "4", "successful": true})]
    );
}

#[test]
fn refusals_use_cometd_error_strings() {
    let mut h = Harness::new();
    let cid = h.client();
    let cases = [
        (
            json!({"channel": "/meta/subscribe"}),
            "403::subscription_missing",
        ),
        (
            json!({"channel": "/meta/subscribe", "subscription": "/foo<bar"}),
            "403::subscription_invalid",
        ),
        (
            json!({"channel": "/meta/subscribe", "subscription": 5}),
            "403::subscription_invalid",
        ),
        (
            json!({"channel": "/meta/subscribe", "subscription": "/meta/connect"}),
            "403:denied_by_security_policy:subscribe_denied",
        ),
        (
            json!({"channel": "/meta/subscribe", "subscription": "/meta/foo"}),
            "403:denied_by_security_policy:create_denied",
        ),
        (
            json!({"channel": "/meta/unsubscribe", "subscription": "/meta/foo"}),
            "403::unsubscribe_failed",
        ),
        (
            json!({"channel": "/meta/foo", "data": 1}),
            "403:denied_by_security_policy:channel_create_denied",
        ),
        (
            json!({"channel": "/meta/subscribe/", "data": 1, "subscription": 1}),
            "403::subscription_invalid",
        ),
        (
            json!({"channel": "/a/*", "data": 1}),
            "405::channel_invalid",
        ),
        (json!({"channel": "/a<", "data": 1}), "405::channel_invalid"),
        (
            json!({"channel": "/a", "data": 1, "id": "<"}),
            "405::message_id_invalid",
        ),
        (json!({"channel": 5, "data": 1}), "400::channel_missing"),
        (json!({"data": 1}), "400::channel_missing"),
        (json!({"channel": "/a"}), "400::data_missing"),
    ];
    for (request, error) in cases {
        let replies = h.request(&cid, vec![request.clone()]);
        assert_eq!(replies.len(), 1, "{request}");
        assert_eq!(replies[0]["successful"], json!(false), "{request}");
        assert_eq!(replies[0]["error"], json!(error), "{request}");
    }
}

#[test]
fn subscribe_array_and_service_channels() {
    let mut h = Harness::new();
    let cid = h.client();
    let replies = h.request(
        &cid,
        vec![
            json!({"channel": "/meta/subscribe", "id": "s", "subscription": ["/a", "/service/x"]}),
        ],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/subscribe", "id": "s", "subscription": ["/a", "/service/x"], "successful": true})
        ]
    );
    assert_eq!(
        h.engine.session(&cid).expect("live").subscriptions(),
        [bayeux_message::ChannelName::parse("/a").unwrap()]
    );
}

#[test]
fn unsubscribe_stops_deliveries_and_frees_the_index() {
    let mut h = Harness::new();
    let cid = h.client();
    h.subscribe(&cid, "/x");
    h.request(
        &cid,
        vec![json!({"channel": "/meta/unsubscribe", "subscription": "/x"})],
    );
    assert!(h.engine.subscriptions().is_empty());
    let replies = h.publish(&cid, "/x", json!(1));
    assert_eq!(replies.len(), 1, "no delivery piggy-backed");
}

#[test]
fn shutdown_releases_holds_with_advice() {
    let mut h = Harness::new();
    let cid = h.client();
    let hold = h.hold(&cid);
    h.engine.shutdown();
    assert!(!hold.is_pending());
    assert_eq!(
        h.complete(hold),
        [
            json!({"channel": "/meta/connect", "id": "3", "successful": true,
            "advice": {"reconnect": "retry", "interval": 1000, "timeout": 20000}})
        ]
    );
    // A connect arriving during shutdown is answered at once, with the same back-off advice.
    let (replies, hold) = h.connect(&cid, None);
    assert!(hold.is_none());
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "id": "4", "successful": true,
            "advice": {"reconnect": "retry", "interval": 1000, "timeout": 20000}})
        ]
    );
}

#[test]
fn server_publish_reaches_subscribers() {
    let mut h = Harness::new();
    let cid = h.client();
    h.subscribe(&cid, "/news/**");
    let channel = bayeux_message::ChannelName::parse("/news/today").unwrap();
    assert_eq!(h.engine.publish(h.now, &channel, json!("hello")), Ok(1));
    let (replies, _) = h.connect(&cid, Some(json!({"timeout": 0})));
    assert_eq!(
        replies[0],
        json!({"channel": "/news/today", "data": "hello"})
    );
}

fn ws() -> RequestContext {
    RequestContext::new(TransportKind::WebSocket)
}

fn ws_send(h: &Harness, ctx: &RequestContext, batch: Vec<Value>) -> (Vec<Value>, Option<Hold>) {
    let batch = batch.into_iter().map(msg).collect();
    let outcome = h.engine.handle(h.now, ctx, batch).expect("valid request");
    (values(&outcome.messages), outcome.hold)
}

fn poll_pusher(pusher: &crate::Pusher) -> Option<Vec<Value>> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match pusher.poll_deliveries(&mut cx) {
        std::task::Poll::Ready(messages) => Some(values(&messages)),
        std::task::Poll::Pending => None,
    }
}

#[test]
fn websocket_pushes_deliveries_while_the_connect_stays_held() {
    let mut h = Harness::new();
    let (replies, _) = ws_send(
        &h,
        &ws(),
        vec![json!({"channel": "/meta/handshake", "id": "1"})],
    );
    let cid = replies[0]["clientId"].as_str().expect("cid").to_owned();
    let pusher = h.engine.attach_pusher(&cid).expect("live session");
    assert_eq!(poll_pusher(&pusher), None);
    ws_send(
        &h,
        &ws(),
        vec![
            json!({"channel": "/meta/subscribe", "id": "2", "clientId": cid, "subscription": "/x"}),
            json!({"channel": "/meta/connect", "id": "3", "clientId": cid, "advice": {"timeout": 0}}),
        ],
    );
    // Over websocket a connect is held even when it shares its frame with other messages.
    let (replies, hold) = ws_send(
        &h,
        &ws(),
        vec![
            json!({"channel": "/meta/connect", "id": "4", "clientId": cid}),
            json!({"channel": "/y", "id": "5", "clientId": cid, "data": 0}),
        ],
    );
    assert_eq!(
        replies,
        [json!({"channel": "/y", "id": "5", "successful": true})]
    );
    let hold = hold.expect("held");
    let other = h.client();
    h.publish(&other, "/x", json!(1));
    assert!(hold.is_pending(), "a push does not answer the held connect");
    assert_eq!(
        poll_pusher(&pusher),
        Some(vec![json!({"channel": "/x", "data": 1})])
    );
    assert_eq!(poll_pusher(&pusher), None);
    h.advance(Duration::from_secs(20));
    assert_eq!(
        h.complete(hold),
        [json!({"channel": "/meta/connect", "id": "4", "successful": true})]
    );
}

#[test]
fn detached_websocket_leaves_deliveries_for_the_next_connect() {
    let mut h = Harness::new();
    let (replies, _) = ws_send(
        &h,
        &ws(),
        vec![json!({"channel": "/meta/handshake", "id": "1"})],
    );
    let cid = replies[0]["clientId"].as_str().expect("cid").to_owned();
    let pusher = h.engine.attach_pusher(&cid).expect("live session");
    ws_send(
        &h,
        &ws(),
        vec![
            json!({"channel": "/meta/subscribe", "id": "2", "clientId": cid, "subscription": "/x"}),
        ],
    );
    drop(pusher);
    let other = h.client();
    h.publish(&other, "/x", json!(1));
    let resumed = h.engine.attach_pusher(&cid).expect("live session");
    assert_eq!(
        poll_pusher(&resumed),
        Some(vec![json!({"channel": "/x", "data": 1})])
    );
}

#[test]
fn meta_connect_deliver_only_holds_pushes_back_for_the_connect() {
    let mut h = Harness::with(|c| c.meta_connect_deliver_only = true);
    let (replies, _) = ws_send(
        &h,
        &ws(),
        vec![json!({"channel": "/meta/handshake", "id": "1"})],
    );
    let cid = replies[0]["clientId"].as_str().expect("cid").to_owned();
    let pusher = h.engine.attach_pusher(&cid).expect("live session");
    ws_send(
        &h,
        &ws(),
        vec![
            json!({"channel": "/meta/subscribe", "id": "2", "clientId": cid, "subscription": "/x"}),
            json!({"channel": "/meta/connect", "id": "3", "clientId": cid}),
        ],
    );
    let (_, hold) = ws_send(
        &h,
        &ws(),
        vec![json!({"channel": "/meta/connect", "id": "4", "clientId": cid})],
    );
    let hold = hold.expect("held");
    let other = h.client();
    h.publish(&other, "/x", json!(1));
    assert_eq!(poll_pusher(&pusher), None);
    assert!(!hold.is_pending());
    assert_eq!(
        h.complete(hold),
        [
            json!({"channel": "/x", "data": 1}),
            json!({"channel": "/meta/connect", "id": "4", "successful": true})
        ]
    );
}

#[test]
fn bound_connection_cannot_act_for_another_session() {
    let mut h = Harness::new();
    let (replies, _) = ws_send(
        &h,
        &ws(),
        vec![json!({"channel": "/meta/handshake", "id": "1"})],
    );
    let cid = replies[0]["clientId"].as_str().expect("cid").to_owned();
    let mut strict = ws();
    strict.require_bound_session = true;
    let (replies, _) = ws_send(
        &h,
        &strict,
        vec![json!({"channel": "/meta/connect", "id": "2", "clientId": cid})],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "id": "2", "successful": false, "error": "402::session_unknown",
            "advice": {"reconnect": "handshake", "interval": 0}})
        ]
    );
    strict.bound_session = Some(ClientId::new(cid.as_str()));
    let (replies, _) = ws_send(
        &h,
        &strict,
        vec![json!({"channel": "/meta/connect", "id": "3", "clientId": cid})],
    );
    assert_eq!(replies[0]["successful"], json!(true));
    let _ = h.id();
}

#[test]
fn connect_over_a_transport_not_allowed_is_refused() {
    let mut h = Harness::with(|c| c.transports = vec![TransportKind::LongPolling]);
    let cid = h.handshake_in("b");
    let browser = h.browser_of(&cid);
    let (replies, _) = h.send(
        &browser,
        vec![
            json!({"channel": "/meta/connect", "id": "2", "clientId": cid,
        "connectionType": "callback-polling"}),
        ],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/connect", "id": "2", "successful": false,
            "error": "400::connection_type_unsupported", "advice": {"reconnect": "handshake", "interval": 0}})
        ]
    );
}

/// Connect with `ext.ack`, returning the deliveries' data and the reply's `ext.ack`.
fn ack_connect(
    h: &mut Harness,
    cid: &str,
    acked: u64,
    advice: Option<Value>,
) -> (Vec<Value>, Option<Value>, Option<Hold>) {
    let id = h.id();
    let mut m =
        json!({"channel": "/meta/connect", "id": id, "clientId": cid, "ext": {"ack": acked}});
    if let Some(advice) = advice {
        m["advice"] = advice;
    }
    let browser = h.browser_of(cid);
    let (replies, hold) = h.send(&browser, vec![m]);
    let data = replies
        .iter()
        .filter_map(|m| m.get("data").cloned())
        .collect();
    let ack = replies.last().and_then(|r| r.pointer("/ext/ack").cloned());
    (data, ack, hold)
}

#[test]
fn ack_is_enabled_only_by_a_boolean_true() {
    let mut h = Harness::new();
    for (asked, granted) in [
        (json!(true), Some(json!({"ack": true}))),
        (json!("true"), None),
        (json!(false), None),
    ] {
        let (replies, _) = h.send(
            "b",
            vec![json!({"channel": "/meta/handshake", "id": "1", "ext": {"ack": asked}})],
        );
        assert_eq!(replies[0].get("ext").cloned(), granted, "{asked}");
    }
}

#[test]
fn ack_numbers_connect_replies_and_resends_what_was_not_acknowledged() {
    let mut h = Harness::new();
    let (replies, _) = h.send(
        "ack",
        vec![json!({"channel": "/meta/handshake", "id": "1", "ext": {"ack": true}})],
    );
    let cid = replies[0]["clientId"].as_str().expect("cid").to_owned();
    h.subscribe(&cid, "/a");
    let publisher = h.client();

    let (data, ack, _) = ack_connect(&mut h, &cid, 0, Some(json!({"timeout": 0})));
    assert_eq!((data, ack), (vec![], Some(json!(1))));
    h.publish(&publisher, "/a", json!(1));
    h.publish(&publisher, "/a", json!(2));
    let (data, ack, _) = ack_connect(&mut h, &cid, 1, None);
    assert_eq!((data, ack), (vec![json!(1), json!(2)], Some(json!(2))));

    // The response carrying batch 2 is lost: the client still acknowledges batch 1 only, and
    // its connect is answered at once with batch 2 again, then what came since.
    h.publish(&publisher, "/a", json!(3));
    let (data, ack, hold) = ack_connect(&mut h, &cid, 1, Some(json!({"timeout": 0})));
    assert!(hold.is_none());
    assert_eq!(
        (data, ack),
        (vec![json!(1), json!(2), json!(3)], Some(json!(3)))
    );

    // Everything acknowledged: the next connect holds, and carries only new messages.
    let (data, _, hold) = ack_connect(&mut h, &cid, 3, None);
    assert_eq!(data, Vec::<Value>::new());
    let hold = hold.expect("nothing to resend: held");
    h.publish(&publisher, "/a", json!(4));
    let replies = h.complete(hold);
    assert_eq!(replies[0]["data"], json!(4));
    assert_eq!(replies[1].pointer("/ext/ack"), Some(&json!(4)));
    assert_eq!(h.engine.session(&cid).expect("live").unacknowledged(), 1);
}

#[test]
fn ack_sessions_get_deliveries_only_with_connect_replies() {
    let mut h = Harness::new();
    let (replies, _) = h.send(
        "ack",
        vec![json!({"channel": "/meta/handshake", "id": "1", "ext": {"ack": true}})],
    );
    let cid = replies[0]["clientId"].as_str().expect("cid").to_owned();
    h.subscribe(&cid, "/a");
    ack_connect(&mut h, &cid, 0, Some(json!({"timeout": 0})));
    let (_, _, hold) = ack_connect(&mut h, &cid, 1, None);
    let hold = hold.expect("held");
    let replies = h.publish(&cid, "/a", json!("own"));
    assert_eq!(replies.len(), 1, "no piggy-backed delivery: {replies:?}");
    assert!(!hold.is_pending(), "the held connect carries it instead");
    assert_eq!(h.complete(hold)[0]["data"], json!("own"));
}

struct Deleter;

impl crate::Extension for Deleter {
    fn incoming(&self, _: Option<&crate::Session>, message: &mut Message) -> bool {
        message.channel() != Some("/censored")
    }

    fn outgoing(&self, message: &mut Message) -> bool {
        message.as_map_mut().insert("stamped".into(), json!(true));
        true
    }
}

#[test]
fn extensions_can_delete_and_modify_messages() {
    let mut h = Harness::new();
    h.engine = Engine::new(
        h.engine.config().clone(),
        Box::new(SequentialIds::default()),
    )
    .with_extension(Arc::new(Deleter));
    let cid = h.client();
    h.subscribe(&cid, "/ok");
    let replies = h.publish(&cid, "/censored", json!(1));
    assert_eq!(
        replies,
        [
            json!({"channel": "/censored", "id": "4", "successful": false, "error": "404::message_deleted"})
        ]
    );
    let replies = h.publish(&cid, "/ok", json!(2));
    assert_eq!(
        replies[0],
        json!({"channel": "/ok", "data": 2, "stamped": true})
    );
}

struct TokenPolicy;

impl crate::SecurityPolicy for TokenPolicy {
    fn can_handshake(
        &self,
        session: &crate::Session,
        _: &RequestContext,
        message: &Message,
    ) -> bool {
        let token = message
            .ext()
            .and_then(|e| e.get("token"))
            .and_then(Value::as_str);
        match token {
            Some("admin") | Some("user") => {
                session.set_attribute("role", token.unwrap_or_default());
                true
            }
            _ => false,
        }
    }

    fn can_publish(
        &self,
        session: &crate::Session,
        channel: &bayeux_message::ChannelName,
        _: &Message,
    ) -> bool {
        !channel.as_str().starts_with("/announce")
            || session.attribute("role") == Some(json!("admin"))
    }
}

fn secured() -> Harness {
    let mut h = Harness::new();
    h.engine = Engine::new(
        h.engine.config().clone(),
        Box::new(SequentialIds::default()),
    )
    .with_policy(Arc::new(TokenPolicy));
    h
}

#[test]
fn transports_are_told_to_copy_request_headers_only_for_an_application_policy() {
    assert!(!Harness::new().engine.has_security_policy());
    assert!(secured().engine.has_security_policy());
}

fn handshake_with_token(h: &mut Harness, token: &str) -> Value {
    let (replies, _) = h.send(
        &format!("b-{token}"),
        vec![json!({"channel": "/meta/handshake", "id": "1", "ext": {"token": token}})],
    );
    replies[0].clone()
}

#[test]
fn policy_refuses_handshakes_with_advice_to_stop() {
    let mut h = secured();
    assert_eq!(
        handshake_with_token(&mut h, "nobody"),
        json!({"channel": "/meta/handshake", "id": "1", "successful": false,
               "error": "403::handshake_denied", "advice": {"reconnect": "none"}})
    );
    assert_eq!(h.engine.session_count(), 0);
    assert_eq!(
        handshake_with_token(&mut h, "user")["successful"],
        json!(true)
    );
}

#[test]
fn policy_and_authorizers_decide_publishes_and_subscribes() {
    use crate::{Authorization, Operation};
    let mut h = secured();
    let user = handshake_with_token(&mut h, "user")["clientId"]
        .as_str()
        .expect("cid")
        .to_owned();
    let admin = handshake_with_token(&mut h, "admin")["clientId"]
        .as_str()
        .expect("cid")
        .to_owned();
    let replies = h.publish(&user, "/announce/x", json!(1));
    assert_eq!(
        replies[0]["error"],
        json!("403:denied_by_security_policy:publish_denied")
    );
    assert_eq!(
        h.publish(&admin, "/announce/x", json!(1))[0]["successful"],
        json!(true)
    );

    let staff_only =
        |_: Operation, _: &bayeux_message::ChannelName, session: &crate::Session, _: &Message| {
            if session.attribute("role") == Some(json!("admin")) {
                Authorization::Grant
            } else {
                Authorization::Deny("staff_only".into())
            }
        };
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    h.engine
        .add_authorizer(channel("/staff/**"), Arc::new(staff_only));
    let refuse = h.request(
        &user,
        vec![json!({"channel": "/meta/subscribe", "subscription": "/staff/room"})],
    );
    assert_eq!(refuse[0]["error"], json!("403:staff_only:subscribe_denied"));
    assert_eq!(refuse[0]["subscription"], json!("/staff/room"));
    // Subscribing to a pattern is checked against the authorizers of the pattern's ancestors.
    let refuse = h.request(
        &user,
        vec![json!({"channel": "/meta/subscribe", "subscription": "/staff/*"})],
    );
    assert_eq!(refuse[0]["error"], json!("403:staff_only:subscribe_denied"));
    h.subscribe(&admin, "/staff/room");

    // An authorizer that only ignores grants nothing.
    let ignore = |_: Operation,
                  _: &bayeux_message::ChannelName,
                  _: &crate::Session,
                  _: &Message| Authorization::Ignore;
    h.engine.add_authorizer(channel("/quiet"), Arc::new(ignore));
    let refuse = h.publish(&admin, "/quiet", json!(1));
    assert_eq!(
        refuse[0]["error"],
        json!("403:denied_by_not_granting:publish_denied")
    );
}

#[test]
fn services_answer_remote_calls_with_the_request_id() {
    use crate::{ServiceReply, ServiceRequest};
    let mut h = Harness::new();
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    let echo = |req: ServiceRequest<'_>| Some(ServiceReply::Success(req.data().clone()));
    let fail = |_: ServiceRequest<'_>| Some(ServiceReply::Failure(json!({"reason": "nope"})));
    h.engine
        .add_service(channel("/service/echo"), Arc::new(echo));
    h.engine
        .add_service(channel("/service/fail/**"), Arc::new(fail));
    let cid = h.client();
    let replies = h.request(
        &cid,
        vec![json!({"channel": "/service/echo", "id": "77", "data": {"x": 1}})],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/service/echo", "id": "77", "data": {"x": 1}, "successful": true}),
            json!({"channel": "/service/echo", "id": "77", "successful": true})
        ]
    );
    let replies = h.request(
        &cid,
        vec![json!({"channel": "/service/fail/deep", "id": "78", "data": null})],
    );
    assert_eq!(
        replies[0],
        json!({"channel": "/service/fail/deep", "id": "78", "data": {"reason": "nope"}, "successful": false})
    );
    // No service: a plain publish reply, nothing else.
    let replies = h.request(
        &cid,
        vec![json!({"channel": "/service/none", "id": "79", "data": 1})],
    );
    assert_eq!(
        replies,
        [json!({"channel": "/service/none", "id": "79", "successful": true})]
    );
}

#[test]
fn message_listeners_modify_or_refuse_publishes() {
    let mut h = Harness::new();
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    let censor =
        |_: Option<&crate::Session>, _: &bayeux_message::ChannelName, msg: &mut Message| {
            if msg.data() == Some(&json!("bad")) {
                return false;
            }
            msg.as_map_mut().insert("checked".into(), json!(true));
            true
        };
    h.engine
        .add_message_listener(channel("/chat/*"), Arc::new(censor));
    let cid = h.client();
    h.subscribe(&cid, "/chat/room");
    let refused = h.publish(&cid, "/chat/room", json!("bad"));
    assert_eq!(
        refused,
        [
            json!({"channel": "/chat/room", "id": "4", "successful": false, "error": "404::message_deleted"})
        ]
    );
    let replies = h.publish(&cid, "/chat/room", json!("good"));
    assert_eq!(
        replies[0],
        json!({"channel": "/chat/room", "data": "good", "checked": true})
    );
    assert_eq!(
        h.engine
            .publish(h.now, &channel("/chat/room"), json!("bad")),
        Ok(0)
    );
}

#[test]
fn deliver_reaches_one_session_without_a_subscription() {
    let mut h = Harness::new();
    let cid = h.client();
    let other = h.client();
    let msg = Message::new()
        .with("channel", "/private")
        .with("data", "psst");
    assert!(h.engine.deliver(h.now, &cid, msg.clone()));
    assert!(!h.engine.deliver(h.now, "nobody", msg));
    let (replies, _) = h.connect(&cid, Some(json!({"timeout": 0})));
    assert_eq!(replies[0], json!({"channel": "/private", "data": "psst"}));
    let (replies, _) = h.connect(&other, Some(json!({"timeout": 0})));
    assert_eq!(replies.len(), 1, "only the connect reply: {replies:?}");
}

#[test]
fn subscription_listeners_hear_new_subscriptions_only() {
    let mut h = Harness::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    struct Subs(Arc<Mutex<Vec<String>>>);
    impl SessionListener for Subs {
        fn subscribed(&self, _: &ClientId, channel: &bayeux_message::ChannelName) {
            self.0.lock().unwrap().push(format!("+{channel}"));
        }
        fn unsubscribed(&self, _: &ClientId, channel: &bayeux_message::ChannelName) {
            self.0.lock().unwrap().push(format!("-{channel}"));
        }
    }
    h.engine = Engine::new(
        h.engine.config().clone(),
        Box::new(SequentialIds::default()),
    )
    .with_listener(Arc::new(Subs(Arc::clone(&events))));
    let cid = h.client();
    h.subscribe(&cid, "/a");
    h.subscribe(&cid, "/a");
    h.subscribe(&cid, "/service/x");
    h.request(
        &cid,
        vec![json!({"channel": "/meta/unsubscribe", "subscription": "/a"})],
    );
    assert_eq!(*events.lock().unwrap(), ["+/a", "-/a"]);
}

struct ChannelLog(Arc<Mutex<Vec<String>>>);

impl crate::ChannelListener for ChannelLog {
    fn channel_added(&self, channel: &bayeux_message::ChannelName) {
        self.0.lock().unwrap().push(format!("+{channel}"));
    }
    fn channel_removed(&self, channel: &bayeux_message::ChannelName) {
        self.0.lock().unwrap().push(format!("-{channel}"));
    }
}

#[test]
fn channels_come_with_use_and_go_after_three_idle_sweeps() {
    let mut h = Harness::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    h.engine = Engine::new(
        h.engine.config().clone(),
        Box::new(SequentialIds::default()),
    )
    .with_channel_listener(Arc::new(ChannelLog(Arc::clone(&log))));
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    h.engine.configure_channel(
        &channel("/kept"),
        crate::ChannelOptions {
            persistent: true,
            ..Default::default()
        },
    );
    let cid = h.client();
    h.subscribe(&cid, "/a/*");
    h.publish(&cid, "/a/b", json!(1));
    h.publish(&cid, "/a/b", json!(2));
    assert_eq!(*log.lock().unwrap(), ["+/kept", "+/a/*", "+/a/b"]);
    assert_eq!(
        h.engine.channels(),
        [channel("/a/*"), channel("/a/b"), channel("/kept")]
    );

    // `/a/b` has no subscriber of its own: gone after three sweeps. `/a/*` has one.
    for _ in 0..2 {
        h.engine.sweep(h.now);
    }
    assert_eq!(h.engine.channels().len(), 3);
    h.engine.sweep(h.now);
    assert_eq!(h.engine.channels(), [channel("/a/*"), channel("/kept")]);

    // Once its subscriber leaves, the pattern goes too; the persistent channel stays.
    h.request(
        &cid,
        vec![json!({"channel": "/meta/unsubscribe", "subscription": "/a/*"})],
    );
    for _ in 0..3 {
        h.engine.sweep(h.now);
    }
    assert_eq!(h.engine.channels(), [channel("/kept")]);
    assert_eq!(
        *log.lock().unwrap(),
        ["+/kept", "+/a/*", "+/a/b", "-/a/b", "-/a/*"]
    );
}

#[test]
fn broadcast_to_publisher_per_channel() {
    let mut h = Harness::new();
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    h.engine.configure_channel(
        &channel("/quiet"),
        crate::ChannelOptions {
            broadcast_to_publisher: Some(false),
            ..Default::default()
        },
    );
    let cid = h.client();
    h.subscribe(&cid, "/quiet");
    h.subscribe(&cid, "/loud");
    assert_eq!(
        h.publish(&cid, "/quiet", json!(1)).len(),
        1,
        "not echoed to its publisher"
    );
    assert_eq!(
        h.publish(&cid, "/loud", json!(2)).len(),
        2,
        "echoed, as the server default says"
    );
}

#[test]
fn lazy_messages_wait_for_a_flush_or_their_timeout() {
    let mut h = Harness::with(|c| c.max_lazy_timeout = Duration::from_secs(5));
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    let lazy = crate::ChannelOptions {
        lazy: true,
        lazy_timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    h.engine.configure_channel(&channel("/ticks/**"), lazy);
    let cid = h.client();
    let publisher = h.client();
    h.subscribe(&cid, "/ticks/*");
    h.subscribe(&cid, "/news");
    let hold = h.hold(&cid);
    h.publish(&publisher, "/ticks/a", json!(1));
    assert!(hold.is_pending(), "a lazy message wakes nobody");
    h.advance(Duration::from_millis(1_999));
    h.engine.sweep(h.now);
    assert!(hold.is_pending());
    h.advance(Duration::from_millis(1));
    h.engine.sweep(h.now);
    assert!(!hold.is_pending(), "flushed once its lazy timeout passed");
    let replies = h.complete(hold);
    assert_eq!(replies[0], json!({"channel": "/ticks/a", "data": 1}));

    // A non-lazy message flushes the lazy ones queued before it, in order.
    let hold = h.hold(&cid);
    h.publish(&publisher, "/ticks/b", json!(2));
    assert!(hold.is_pending());
    h.publish(&publisher, "/news", json!(3));
    assert!(!hold.is_pending());
    let data: Vec<_> = h
        .complete(hold)
        .iter()
        .filter_map(|m| m.get("data").cloned())
        .collect();
    assert_eq!(data, [json!(2), json!(3)]);
}

#[test]
fn lazy_timeout_is_capped_by_max_lazy_timeout() {
    let mut h = Harness::with(|c| c.max_lazy_timeout = Duration::from_secs(1));
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    let lazy = crate::ChannelOptions {
        lazy: true,
        lazy_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    };
    h.engine.configure_channel(&channel("/slowly"), lazy);
    let cid = h.client();
    h.subscribe(&cid, "/slowly");
    let hold = h.hold(&cid);
    h.engine
        .publish(h.now, &channel("/slowly"), json!(1))
        .expect("broadcast");
    h.advance(Duration::from_secs(1));
    h.engine.sweep(h.now);
    assert!(!hold.is_pending());
}

struct Shout;

impl crate::Extension for Shout {
    fn incoming(&self, _: Option<&crate::Session>, message: &mut Message) -> bool {
        message.channel() != Some("/hushed")
    }

    fn outgoing_reply(
        &self,
        _: Option<&crate::Session>,
        _: &Message,
        reply: &mut bayeux_message::Reply,
    ) {
        reply.extra.insert("shout".into(), json!(true));
    }

    fn outgoing(&self, message: &mut Message) -> bool {
        if let Some(Value::String(text)) = message.as_map_mut().get_mut("data") {
            *text = text.to_uppercase();
        }
        true
    }
}

#[test]
fn session_extensions_see_only_their_session() {
    let mut h = Harness::new();
    let loud = h.client();
    let quiet = h.client();
    h.engine
        .session(&loud)
        .expect("live")
        .add_extension(Arc::new(Shout));
    h.subscribe(&loud, "/x");
    h.subscribe(&quiet, "/x");
    let replies = h.publish(&quiet, "/x", json!("hi"));
    assert_eq!(
        replies[0],
        json!({"channel": "/x", "data": "hi"}),
        "the quiet one's copy"
    );
    let (replies, _) = h.connect(&loud, Some(json!({"timeout": 0})));
    assert_eq!(replies[0], json!({"channel": "/x", "data": "HI"}));
    assert_eq!(replies[1]["shout"], json!(true));
    let replies = h.publish(&loud, "/hushed", json!(1));
    assert_eq!(replies[0]["error"], json!("404::message_deleted"));
}

#[test]
fn max_sessions_refuses_handshakes_with_advice_to_come_back() {
    let mut h = Harness::with(|c| c.max_sessions = 2);
    h.client();
    h.client();
    let (replies, _) = h.send("b", vec![json!({"channel": "/meta/handshake", "id": "1"})]);
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/handshake", "id": "1", "successful": false, "error": "503::too_many_sessions",
                "advice": {"reconnect": "handshake", "interval": 5000}})
        ]
    );
}

#[test]
fn max_browser_sessions_counts_live_sessions_per_cookie() {
    let mut h = Harness::with(|c| c.max_browser_sessions = 2);
    let first = h.handshake_in("same");
    h.handshake_in("same");
    let (replies, _) = h.send(
        "same",
        vec![json!({"channel": "/meta/handshake", "id": "3"})],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/handshake", "id": "3", "successful": false,
                "error": "403::too_many_browser_sessions", "advice": {"reconnect": "none"}})
        ]
    );
    h.handshake_in("other");
    // A session that leaves frees its place.
    h.request(&first, vec![json!({"channel": "/meta/disconnect"})]);
    let (replies, _) = h.send(
        "same",
        vec![json!({"channel": "/meta/handshake", "id": "4"})],
    );
    assert_eq!(replies[0]["successful"], json!(true));
}

#[test]
fn max_subscriptions_per_session() {
    let mut h = Harness::with(|c| c.max_subscriptions = 2);
    let cid = h.client();
    h.subscribe(&cid, "/a");
    h.subscribe(&cid, "/a");
    h.subscribe(&cid, "/service/free");
    let replies = h.request(
        &cid,
        vec![json!({"channel": "/meta/subscribe", "subscription": ["/b", "/c"]})],
    );
    assert_eq!(replies[0]["error"], json!("403::too_many_subscriptions"));
    assert_eq!(
        h.engine.session(&cid).expect("live").subscriptions().len(),
        1,
        "all or nothing"
    );
    h.subscribe(&cid, "/b");
}

#[test]
fn max_channels_refuses_creating_one_more() {
    let mut h = Harness::with(|c| c.max_channels = 2);
    let cid = h.client();
    h.subscribe(&cid, "/a");
    h.publish(&cid, "/b", json!(1));
    let replies = h.publish(&cid, "/c", json!(1));
    assert_eq!(replies[0]["error"], json!("403::too_many_channels"));
    let replies = h.request(
        &cid,
        vec![json!({"channel": "/meta/subscribe", "subscription": "/d"})],
    );
    assert_eq!(replies[0]["error"], json!("403::too_many_channels"));
    assert_eq!(
        h.publish(&cid, "/a", json!(2)).len(),
        2,
        "existing channels still work"
    );
}

#[test]
fn publish_rate_limit_is_a_token_bucket() {
    let mut h = Harness::with(|c| {
        c.max_publish_rate = Some(crate::PublishRate {
            messages: 3,
            per: Duration::from_secs(1),
        });
    });
    let cid = h.client();
    let results: Vec<_> = (0..4)
        .map(|i| h.publish(&cid, "/x", json!(i))[0]["successful"].clone())
        .collect();
    assert_eq!(
        results,
        [json!(true), json!(true), json!(true), json!(false)]
    );
    assert_eq!(
        h.publish(&cid, "/x", json!(9))[0]["error"],
        json!("429::publish_rate_exceeded")
    );
    h.advance(Duration::from_millis(340));
    assert_eq!(
        h.publish(&cid, "/x", json!(10))[0]["successful"],
        json!(true),
        "one token back"
    );
    assert_eq!(
        h.publish(&cid, "/x", json!(11))[0]["successful"],
        json!(false)
    );
}

#[test]
fn queue_overflow_can_disconnect_the_session() {
    let mut h = Harness::with(|c| {
        c.max_queue = 2;
        c.queue_full_policy = crate::QueueFullPolicy::Disconnect;
    });
    let slow = h.client();
    let publisher = h.client();
    h.subscribe(&slow, "/n");
    for i in 0..3 {
        h.publish(&publisher, "/n", json!(i));
    }
    assert!(h.engine.session(&slow).is_none());
    assert!(
        h.events().contains(&format!("removed {slow} QueueFull")),
        "{:?}",
        h.events()
    );
    assert!(h.engine.subscriptions().is_empty());
}

#[test]
fn client_advised_interval_is_capped_at_max_interval() {
    let mut h = Harness::new();
    let cid = h.client();
    let (replies, _) = h.connect(&cid, Some(json!({"timeout": 0, "interval": 1e300})));
    assert_eq!(replies[0]["advice"]["interval"], json!(10_000));
    // The session still expires: after interval + maxInterval, both capped.
    h.advance(Duration::from_secs(20));
    assert_eq!(h.engine.sweep(h.now).removed, 1);
}

#[test]
fn draining_sends_clients_away_spread_over_the_window() {
    let mut h = Harness::new();
    let clients: Vec<String> = (0..20).map(|_| h.client()).collect();
    let holds: Vec<Hold> = clients.iter().map(|cid| h.hold(cid)).collect();
    h.engine.drain(h.now, Duration::from_secs(10));
    let (replies, _) = h.send(
        "new",
        vec![json!({"channel": "/meta/handshake", "id": "x"})],
    );
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/handshake", "id": "x", "successful": false, "error": "503::draining",
                "advice": {"reconnect": "handshake", "interval": 1000}})
        ]
    );
    // Released a few at a time as the window passes, all of them by its end.
    let mut released_at = Vec::new();
    for second in 0..=10 {
        h.engine.sweep(h.now);
        released_at.push(holds.iter().filter(|hold| !hold.is_pending()).count());
        h.advance(Duration::from_secs(1));
        let _ = second;
    }
    assert_eq!(*released_at.last().expect("swept"), 20);
    assert!(released_at[0] < 20, "not all at once: {released_at:?}");
    for hold in holds {
        let replies = h.complete(hold);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0]["successful"], json!(false));
        assert_eq!(replies[0]["error"], json!("503::draining"));
        assert_eq!(
            replies[0]["advice"],
            json!({"reconnect": "handshake", "interval": 1000})
        );
    }
    assert_eq!(h.engine.session_count(), 0);
    assert_eq!(
        h.events().iter().filter(|e| e.ends_with("Drained")).count(),
        20
    );
}

#[test]
fn draining_hands_over_what_was_queued_with_the_answer() {
    let mut h = Harness::new();
    let channel = |raw: &str| bayeux_message::ChannelName::parse(raw).expect("valid");
    let lazy = crate::ChannelOptions {
        lazy: true,
        ..Default::default()
    };
    h.engine.configure_channel(&channel("/slow"), lazy);
    let cid = h.client();
    h.subscribe(&cid, "/slow");
    let hold = h.hold(&cid);
    h.engine
        .publish(h.now, &channel("/slow"), json!("queued"))
        .expect("broadcast");
    assert!(hold.is_pending(), "lazy: still queued");
    h.engine.drain(h.now, Duration::from_millis(1));
    h.advance(Duration::from_millis(1));
    h.engine.sweep(h.now);
    let replies = h.complete(hold);
    assert_eq!(replies[0], json!({"channel": "/slow", "data": "queued"}));
    assert_eq!(replies[1]["error"], json!("503::draining"));
}

#[test]
fn draining_hands_over_the_queue_to_a_late_connect_too() {
    let mut h = Harness::new();
    let cid = h.client();
    let publisher = h.client();
    h.subscribe(&cid, "/q");
    for n in 0..3 {
        h.publish(&publisher, "/q", json!(n));
    }
    h.engine.drain(h.now, Duration::from_millis(1));
    h.advance(Duration::from_millis(1));
    let (replies, hold) = h.connect(&cid, None);
    assert!(hold.is_none());
    let data: Vec<_> = replies
        .iter()
        .filter_map(|m| m.get("data").cloned())
        .collect();
    assert_eq!(data, [json!(0), json!(1), json!(2)]);
    assert_eq!(replies[3]["error"], json!("503::draining"));
    assert!(h.engine.session(&cid).is_none());
}

// ---- Channel history and replay (`ext.replay`) ----

fn with_history(rules: &[(&str, crate::Retention)]) -> Harness {
    let h = Harness::new();
    for (pattern, retention) in rules {
        h.engine.configure_history(
            &bayeux_message::ChannelName::parse(pattern).unwrap(),
            *retention,
        );
    }
    h.engine.start_replay_ids_at(1000);
    h
}

impl Harness {
    fn subscribe_replaying(&mut self, cid: &str, channel: &str, from: Value) -> Vec<Value> {
        self.request(
            cid,
            vec![
                json!({"channel": "/meta/subscribe", "subscription": channel,
                        "ext": {"replay": {channel: from}}}),
            ],
        )
    }

    /// Subscribes with `ext.replay`; returns the deliveries that came with the reply (the
    /// replayed messages ride on it) and the reply.
    fn replay(&mut self, cid: &str, channel: &str, from: Value) -> (Vec<Value>, Value) {
        let mut replies = self.subscribe_replaying(cid, channel, from);
        let reply = replies.pop().expect("reply");
        (replies, reply)
    }

    /// What an immediate connect hands the session.
    fn drain(&mut self, cid: &str) -> Vec<Value> {
        let (mut replies, hold) = self.connect(cid, Some(json!({"timeout": 0})));
        assert!(hold.is_none());
        replies.pop();
        replies
    }
}

fn replay_ids(deliveries: &[Value]) -> Vec<u64> {
    deliveries
        .iter()
        .map(|d| d["ext"]["replayId"].as_u64().expect("replay id"))
        .collect()
}

#[test]
fn history_channels_number_their_messages_and_the_handshake_says_replay() {
    let mut h = with_history(&[("/chat/**", crate::Retention::count(10))]);
    let (replies, _) = h.send(
        "b",
        vec![json!({"channel": "/meta/handshake", "id": "1", "version": "1.0"})],
    );
    assert_eq!(replies[0]["ext"], json!({"replay": true}));
    let a = h.client();
    let p = h.client();
    h.subscribe(&a, "/chat/room");
    h.subscribe(&a, "/news");
    h.publish(&p, "/chat/room", json!("one"));
    h.publish(&p, "/news", json!("plain"));
    h.publish(&p, "/chat/room", json!({"text": "two"}));
    let got = h.drain(&a);
    assert_eq!(
        got,
        [
            json!({"channel": "/chat/room", "data": "one", "ext": {"replayId": 1001}}),
            json!({"channel": "/news", "data": "plain"}),
            json!({"channel": "/chat/room", "data": {"text": "two"}, "ext": {"replayId": 1002}}),
        ]
    );
}

#[test]
fn no_history_means_no_replay_in_the_handshake() {
    let mut h = Harness::new();
    let (replies, _) = h.send(
        "b",
        vec![json!({"channel": "/meta/handshake", "id": "1", "version": "1.0"})],
    );
    assert_eq!(replies[0].get("ext"), None);
}

#[test]
fn a_subscriber_replays_what_it_asks_for_then_gets_new_messages_once() {
    let mut h = with_history(&[("/chat/**", crate::Retention::count(3))]);
    let publisher = h.client();
    for n in 1..=5 {
        h.publish(&publisher, "/chat/room", json!(n));
    }
    // Kept: 1003, 1004, 1005.
    let all = h.client();
    let (replayed, reply) = h.replay(&all, "/chat/room", json!(-2));
    assert_eq!(reply["successful"], json!(true));
    assert_eq!(replay_ids(&replayed), [1003, 1004, 1005]);
    assert_eq!(replayed[0]["data"], json!(3));
    h.publish(&publisher, "/chat/room", json!(6));
    assert_eq!(replay_ids(&h.drain(&all)), [1006]);

    let after = h.client();
    let (replayed, _) = h.replay(&after, "/chat/room", json!(1004));
    assert_eq!(replay_ids(&replayed), [1005, 1006]);

    let fresh = h.client();
    let (replayed, _) = h.replay(&fresh, "/chat/room", json!(-1));
    assert_eq!(replayed, Vec::<Value>::new());

    // The last id dropped is still a valid place to start from; one before it is not.
    let edge = h.client();
    let (replayed, _) = h.replay(&edge, "/chat/room", json!(1003));
    assert_eq!(replay_ids(&replayed), [1004, 1005, 1006]);
    let late = h.client();
    let replies = h.subscribe_replaying(&late, "/chat/room", json!(1002));
    assert_eq!(
        replies.last().unwrap()["error"],
        json!("400::The replayId {1002} you provided was invalid.  Please provide a valid ID, -2 to replay all events, or -1 to replay only new events.")
    );
    assert_eq!(replies.last().unwrap()["successful"], json!(false));
    // Refused as a whole: not subscribed.
    h.publish(&publisher, "/chat/room", json!(7));
    assert_eq!(h.drain(&late), Vec::<Value>::new());
}

#[test]
fn replay_refusals_name_the_problem() {
    let mut h = with_history(&[("/chat/**", crate::Retention::count(3))]);
    let a = h.client();
    // Ids from before this history began (a restart) are unknown.
    let replies = h.subscribe_replaying(&a, "/chat/x", json!(999));
    assert_eq!(replies.last().unwrap()["successful"], json!(false));
    // A channel that keeps nothing: an id cannot be served, "everything" is nothing.
    let replies = h.subscribe_replaying(&a, "/news", json!(1000));
    assert!(replies.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("400::The replayId {1000}"));
    let replies = h.subscribe_replaying(&a, "/news", json!(-2));
    assert_eq!(replies.last().unwrap()["successful"], json!(true));
    let replies = h.subscribe_replaying(&a, "/chat/*", json!(-2));
    assert_eq!(
        replies.last().unwrap()["error"],
        json!("400::replay_not_supported_on_patterns")
    );
    let replies = h.subscribe_replaying(&a, "/chat/y", json!("soon"));
    assert!(replies.last().unwrap()["error"]
        .as_str()
        .unwrap()
        .starts_with("400::The replayId {\"soon\"}"));
}

#[test]
fn age_retention_drops_old_messages() {
    let mut h = with_history(&[(
        "/chat/**",
        crate::Retention::count(100).max_age(Duration::from_secs(60)),
    )]);
    let p = h.client();
    h.publish(&p, "/chat/a", json!("old"));
    h.advance(Duration::from_secs(45));
    h.publish(&p, "/chat/a", json!("new"));
    h.advance(Duration::from_secs(30));
    let s = h.client();
    let (got, _) = h.replay(&s, "/chat/a", json!(-2));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"], json!("new"));
    let other = h.client();
    let replies = h.subscribe_replaying(&other, "/chat/a", json!(1000));
    assert_eq!(replies.last().unwrap()["successful"], json!(false));
}

#[test]
fn the_event_shape_puts_the_id_where_salesforce_does() {
    let mut h = with_history(&[(
        "/topic/**",
        crate::Retention::count(10).shape(crate::ReplayIdShape::Event),
    )]);
    let a = h.client();
    let p = h.client();
    h.subscribe(&a, "/topic/orders");
    h.publish(&p, "/topic/orders", json!({"payload": {"n": 1}}));
    assert_eq!(
        h.drain(&a),
        [json!({"channel": "/topic/orders",
                "data": {"payload": {"n": 1}, "event": {"replayId": 1001}}})]
    );
}

// ---- Presence ----

struct PresenceLog(Arc<Mutex<Vec<String>>>);

impl crate::PresenceListener for PresenceLog {
    fn joined(&self, user: &str) {
        self.0.lock().unwrap().push(format!("joined {user}"));
    }
    fn left(&self, user: &str) {
        self.0.lock().unwrap().push(format!("left {user}"));
    }
}

#[test]
fn users_come_online_with_their_first_session_and_leave_with_their_last() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut h = Harness::new();
    h.engine = std::mem::replace(
        &mut h.engine,
        Engine::new(EngineConfig::default(), Box::new(SequentialIds::default())),
    )
    .with_presence_listener(Arc::new(PresenceLog(Arc::clone(&log))));
    let (a, b, c) = (h.client(), h.client(), h.client());
    assert!(h.engine.associate(&a, "alice"));
    assert!(h.engine.associate(&b, "alice"));
    assert!(h.engine.associate(&c, "bob"));
    assert!(!h.engine.associate("nobody", "bob"));
    assert_eq!(h.engine.users_online(), ["alice", "bob"]);
    assert_eq!(h.engine.sessions_of_user("alice").len(), 2);

    // One message, to every session of the user, whatever it subscribed to.
    let n = h.engine.deliver_to_user(
        h.now,
        "alice",
        msg(json!({"channel": "/whisper", "data": "psst"})),
    );
    assert_eq!(n, 2);
    for cid in [&a, &b] {
        assert_eq!(
            h.drain(cid),
            [json!({"channel": "/whisper", "data": "psst"})]
        );
    }
    assert_eq!(h.drain(&c), Vec::<Value>::new());
    assert_eq!(
        h.engine.deliver_to_user(
            h.now,
            "carol",
            msg(json!({"channel": "/whisper", "data": 1}))
        ),
        0
    );

    // Disconnect of one of two sessions: still online. Expiry of the last: offline.
    h.request(&a, vec![json!({"channel": "/meta/disconnect"})]);
    assert_eq!(h.engine.users_online(), ["alice", "bob"]);
    h.advance(Duration::from_secs(60));
    h.engine.sweep(h.now);
    assert_eq!(h.engine.users_online(), Vec::<String>::new());
    // Re-association moves a session between users; dissociation ends it.
    let d = h.client();
    assert!(h.engine.associate(&d, "carol"));
    assert!(h.engine.associate(&d, "dave"));
    assert!(h.engine.dissociate(&d));
    assert!(!h.engine.dissociate(&d));
    let mut events = log.lock().unwrap().clone();
    // One sweep expired alice's and bob's last sessions, in no set order.
    events[2..4].sort();
    assert_eq!(
        events,
        [
            "joined alice",
            "joined bob",
            "left alice",
            "left bob",
            "joined carol",
            "left carol",
            "joined dave",
            "left dave"
        ]
    );
}
