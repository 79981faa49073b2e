//! Long-polling wire conformance: checklist items C1..C54 and C76 of PROTOCOL.md section 9, plus
//! bad-input robustness.
//!
//! Every test starts its own `bayeuxd` (see `support::server`) with small timeouts, speaks raw
//! HTTP/1.1 to it and compares whole reply objects with `json!`; only truly variable fields
//! (clientId, cookie values, supported transports) are checked by rule instead of by value. Where
//! the contract (`/tmp/contract.md`) picks among behaviours PROTOCOL.md leaves open, the contract
//! wins. Timing checks use wide tolerances (0.9x..1.5x of the configured value) so that a loaded
//! machine does not make them flaky.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::http::{self, Request};
use support::{
    assert_handshake_reply, assert_messages, check_client_id, Client, TestServer, Witness,
};

/// Anything answered within this is "immediate" (the configured hold is always much longer).
const IMMEDIATE: Duration = Duration::from_millis(1000);

/// How long a request must stay unanswered before the tests believe the server holds it.
const HELD: Duration = Duration::from_millis(250);

/// Upper bound for "woken promptly" (the checklist says 100 ms; generous for loaded machines).
const WAKE: Duration = Duration::from_millis(500);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Asserts `elapsed` lies within `[lo, hi]`.
#[track_caller]
fn assert_within(elapsed: Duration, lo: Duration, hi: Duration, what: &str) {
    assert!(
        elapsed >= lo && elapsed <= hi,
        "{what}: took {elapsed:?}, expected between {lo:?} and {hi:?}"
    );
}

/// The plain successful connect reply (no advice).
fn connect_reply(id: &str) -> Value {
    json!({"id": id, "channel": "/meta/connect", "successful": true})
}

/// A successful connect reply carrying the full advice.
fn connect_reply_advised(id: &str, timeout: u64, interval: u64) -> Value {
    json!({
        "id": id,
        "channel": "/meta/connect",
        "successful": true,
        "advice": {"reconnect": "retry", "interval": interval, "timeout": timeout},
    })
}

/// `msgs` with the `advice` of the first connect reply removed, after checking it is exactly the
/// full advice.
///
/// Java advises in the handshake reply and then only "when something changed", so the first
/// connect without client advice gets no advice from Java; PROTOCOL.md 4.2 reads as if it should.
/// Both are harmless to the JS client, so either is accepted.
#[track_caller]
fn without_full_advice(msgs: &[Value], timeout: u64, interval: u64) -> Vec<Value> {
    let mut msgs = msgs.to_vec();
    for msg in &mut msgs {
        if msg["channel"] == json!("/meta/connect") {
            if let Some(advice) = msg.as_object_mut().and_then(|m| m.remove("advice")) {
                assert_eq!(
                    advice,
                    handshake_advice(timeout, interval),
                    "connect advice, when present, must be the full advice"
                );
            }
        }
    }
    msgs
}

/// The full advice of a successful handshake reply.
fn handshake_advice(timeout: u64, interval: u64) -> Value {
    json!({"reconnect": "retry", "interval": interval, "timeout": timeout})
}

/// The reply to a `/meta/connect` for a session the server does not know.
fn unknown_connect(id: &str) -> Value {
    json!({
        "id": id,
        "channel": "/meta/connect",
        "successful": false,
        "error": "402::session_unknown",
        "advice": {"reconnect": "handshake", "interval": 0},
    })
}

/// Percent-encodes `s` for an `application/x-www-form-urlencoded` body.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A POST with an arbitrary body and Content-Type, sent with `client`'s cookie.
async fn post_raw(
    client: &Client,
    suffix: &str,
    content_type: &str,
    body: &[u8],
) -> http::Response {
    let req = Request::new("POST", &client.url(suffix))
        .header("Content-Type", content_type)
        .body(body.to_vec());
    client.send(req).await
}

// ---------------------------------------------------------------------------------------------
// C1..C8: envelopes, ids and the handshake

/// C1: every response body is a JSON array, for every meta channel, publishes and failures.
#[tokio::test]
async fn c1_every_response_body_is_a_json_array() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::new(&server);
    let hs = c
        .post_to(
            "/handshake",
            "1".into(),
            &json!([Client::handshake_message("1")]),
        )
        .await;
    c.set_client_id(hs.ok()[0]["clientId"].as_str().expect("clientId"));
    let mut exchanges = vec![hs];
    exchanges.push(c.connect_with_advice(json!({"timeout": 0})).await);
    exchanges.push(c.subscribe(json!("/c1")).await);
    exchanges.push(c.publish("/c1", json!("x")).await);
    exchanges.push(c.connect().await);
    exchanges.push(c.unsubscribe(json!("/c1")).await);
    exchanges.push(c.disconnect().await);
    exchanges.push(c.connect().await); // fails: 402, still an array
    for ex in &exchanges {
        // Client::exchange already asserted "non-empty array of objects" for every 200.
        ex.ok();
        let content_type = ex.response.header("Content-Type").unwrap_or_default();
        assert!(
            content_type
                .to_ascii_lowercase()
                .starts_with("application/json"),
            "reply Content-Type should be application/json, got {content_type:?}"
        );
        let text = ex.response.text();
        assert!(
            text.trim_start().starts_with('['),
            "body is not an array: {text}"
        );
    }
}

/// C1 (input side): a single bare message object is accepted as a one-message batch, and the
/// reply is still an array.
#[tokio::test]
async fn c1_bare_object_request_gets_an_array_reply() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = Client::new(&server);
    let ex = c
        .post_to("/handshake", "1".into(), &Client::handshake_message("1"))
        .await;
    let msgs = ex.ok();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let cid = assert_handshake_reply(&msgs[0], "1", handshake_advice(3000, 0));
    c.set_client_id(&cid);
    let msg = c.connect_message("2", Some(json!({"timeout": 0})));
    let ex = c.post_to("/connect", "2".into(), &msg).await;
    assert_messages(ex.ok(), &[connect_reply_advised("2", 3000, 0)]);
}

/// C2: replies echo the request id as the identical string, including non-numeric and
/// zero-padded ids, and batch replies keep request order.
#[tokio::test]
async fn c2_replies_echo_the_request_id_as_the_identical_string() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::new(&server);
    let ex = c
        .post_to(
            "/handshake",
            "hs7".into(),
            &json!([Client::handshake_message("hs7")]),
        )
        .await;
    let cid = assert_handshake_reply(&ex.ok()[0], "hs7", handshake_advice(1000, 0));
    c.set_client_id(&cid);

    let msg = c.connect_message("0042", Some(json!({"timeout": 0})));
    let ex = c.post_to("/connect", String::new(), &json!([msg])).await;
    assert_messages(ex.ok(), &[connect_reply_advised("0042", 1000, 0)]);

    let batch = json!([
        {"id": "Sub1", "channel": "/meta/subscribe", "subscription": "/c2", "clientId": cid},
        {"id": "pub2", "channel": "/c2/other", "data": {"n": 1}, "clientId": cid},
        {"id": "x3", "channel": "/meta/unsubscribe", "subscription": "/c2", "clientId": cid},
    ]);
    let (status, msgs) = c.post(batch).await;
    assert_eq!(status, 200);
    assert_messages(
        &msgs,
        &[
            json!({"id": "Sub1", "channel": "/meta/subscribe", "subscription": "/c2", "successful": true}),
            json!({"id": "pub2", "channel": "/c2/other", "successful": true}),
            json!({"id": "x3", "channel": "/meta/unsubscribe", "subscription": "/c2", "successful": true}),
        ],
    );

    let (status, msgs) = c
        .post(json!([{"id": "D9", "channel": "/meta/disconnect", "clientId": cid}]))
        .await;
    assert_eq!(status, 200);
    assert_messages(
        &msgs,
        &[json!({"id": "D9", "channel": "/meta/disconnect", "successful": true})],
    );
}

/// C2: a request without `id` gets a reply without `id` (nothing to echo, nothing invented).
#[tokio::test]
async fn c2_reply_to_a_message_without_id_has_no_id() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::open(&server).await;
    let (status, msgs) = c
        .post(json!([{"channel": "/c2", "data": 1, "clientId": c.client_id()}]))
        .await;
    assert_eq!(status, 200);
    assert_messages(&msgs, &[json!({"channel": "/c2", "successful": true})]);
}

/// C3: every reply, successful or not, carries the request's channel and a boolean
/// `successful`.
#[tokio::test]
async fn c3_every_reply_carries_channel_and_boolean_successful() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::open(&server).await;
    let cid = c.client_id();
    let batch = json!([
        {"id": "1", "channel": "/meta/subscribe", "subscription": "/c3", "clientId": cid},
        {"id": "2", "channel": "/meta/subscribe", "clientId": cid},
        {"id": "3", "channel": "/c3/x", "data": 1, "clientId": cid},
        {"id": "4", "channel": "/meta/foo", "data": 1, "clientId": cid},
        {"id": "5", "channel": "/meta/unsubscribe", "subscription": "/c3", "clientId": cid},
        {"id": "6", "channel": "/c3/x", "data": 1, "clientId": "nosuchclientid0000000"},
    ]);
    let (status, msgs) = c.post(batch.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(msgs.len(), 6, "one reply per message: {msgs:?}");
    let expected_ok = [true, false, true, false, true, false];
    for ((reply, req), ok) in msgs
        .iter()
        .zip(batch.as_array().expect("array"))
        .zip(expected_ok)
    {
        assert_eq!(reply["id"], req["id"], "{reply}");
        assert_eq!(
            reply["channel"], req["channel"],
            "C3: reply channel: {reply}"
        );
        assert_eq!(reply["successful"], json!(ok), "C3: successful: {reply}");
    }
}

/// C4: the handshake reply is exactly the Java 8 shape: id, channel, successful, version,
/// minimumVersion, clientId, supportedConnectionTypes (with long-polling), advice.
#[tokio::test]
async fn c4_handshake_reply_has_client_id_version_and_connection_types() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = Client::new(&server);
    let ex = c
        .post_to(
            "/handshake",
            "1".into(),
            &json!([Client::handshake_message("1")]),
        )
        .await;
    let msgs = ex.ok();
    assert_eq!(
        msgs.len(),
        1,
        "handshake responses carry only the reply: {msgs:?}"
    );
    assert_handshake_reply(&msgs[0], "1", handshake_advice(3000, 0));
}

/// C5: a successful handshake reply advises `retry`, never `handshake`, with or without
/// `--handshake-reconnect`.
#[tokio::test]
async fn c5_handshake_reply_never_advises_handshake() {
    for flag in ["false", "true"] {
        let server = TestServer::start(&["--handshake-reconnect", flag]).await;
        let reply = Client::new(&server).handshake().await;
        assert_eq!(
            reply["advice"]["reconnect"],
            json!("retry"),
            "C5 (--handshake-reconnect {flag}): {reply}"
        );
    }
}

/// C6: the handshake advice is exactly `{reconnect:retry, interval, timeout}` with the
/// configured values (no maxInterval by default).
#[tokio::test]
async fn c6_handshake_advice_carries_configured_interval_and_timeout() {
    let server = TestServer::start(&["--timeout", "4321", "--interval", "250"]).await;
    let c = Client::new(&server);
    let reply = c.handshake().await;
    assert_handshake_reply(&reply, "1", handshake_advice(4321, 250));
}

/// C6 with `--handshake-reconnect true`: the handshake advice also carries `maxInterval`.
#[tokio::test]
async fn c6_handshake_reconnect_adds_max_interval_to_advice() {
    let server = TestServer::start(&[
        "--timeout",
        "3000",
        "--max-interval",
        "7000",
        "--handshake-reconnect",
        "true",
    ])
    .await;
    let reply = Client::new(&server).handshake().await;
    assert_handshake_reply(
        &reply,
        "1",
        json!({"reconnect": "retry", "interval": 0, "timeout": 3000, "maxInterval": 7000}),
    );
}

/// C7: handshakes (same browser or not) yield distinct alphanumeric clientIds of >= 16 chars.
#[tokio::test]
async fn c7_handshakes_yield_distinct_alphanumeric_client_ids() {
    let server = TestServer::start(&[]).await;
    let a = Client::new(&server);
    let b = a.tab();
    let c = Client::new(&server);
    let mut ids = Vec::new();
    for client in [&a, &b, &c, &a] {
        let reply = client.handshake().await;
        let cid = reply["clientId"].as_str().expect("clientId").to_string();
        check_client_id(&cid);
        assert!(!ids.contains(&cid), "C7: clientId {cid} handed out twice");
        ids.push(cid);
    }
}

/// C8: a handshake batched with another message fails the request with HTTP 500 and creates
/// no session (no clientId, no browser cookie); the server keeps working.
#[tokio::test]
async fn c8_handshake_batched_with_other_messages_is_rejected_with_500() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;

    let c = Client::new(&server);
    let body = json!([
        Client::handshake_message("1"),
        {"id": "2", "channel": "/c8", "data": {}},
    ]);
    let ex = c.post_to("/handshake", "1".into(), &body).await;
    assert_eq!(ex.status, 500, "C8: body {}", ex.response.text());
    assert!(
        !ex.response.text().contains("clientId"),
        "C8: {}",
        ex.response.text()
    );
    assert!(
        ex.response.headers_named("Set-Cookie").is_empty(),
        "C8: no session, so no browser cookie: {:?}",
        ex.response.headers
    );

    // Handshake last, after a message of a valid session.
    let d = Client::open(&server).await;
    let body = json!([
        {"id": "5", "channel": "/c8", "data": {}, "clientId": d.client_id()},
        Client::handshake_message("6"),
    ]);
    let ex = d.post_to("/", "6".into(), &body).await;
    assert_eq!(ex.status, 500, "C8: body {}", ex.response.text());
    assert!(
        !ex.response.text().contains("clientId"),
        "C8: {}",
        ex.response.text()
    );

    witness.assert_alive().await;
    // The valid session used in the rejected request is still alive.
    d.poll_now().await;
}

// ---------------------------------------------------------------------------------------------
// C9..C13: connect holding and advice

/// C9: the first connect after a handshake is answered at once even without
/// `advice:{timeout:0}`.
#[tokio::test]
async fn c9_first_connect_is_answered_immediately_without_advice_timeout() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let c = Client::new(&server);
    c.handshake().await;
    let ex = c.connect().await;
    assert!(
        ex.elapsed() < IMMEDIATE,
        "C9: first connect took {:?}",
        ex.elapsed()
    );
    assert_messages(
        &without_full_advice(ex.ok(), 5000, 0),
        &[connect_reply(&ex.id)],
    );
}

/// C10: a connect with `advice:{timeout:0}` is answered at once with the full advice, whose
/// timeout is the server's (not the client's transient 0); for the first and later connects.
#[tokio::test]
async fn c10_connect_with_timeout_zero_is_answered_immediately_with_full_advice() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let c = Client::new(&server);
    c.handshake().await;
    for round in 0..3 {
        let ex = c.connect_with_advice(json!({"timeout": 0})).await;
        assert!(
            ex.elapsed() < IMMEDIATE,
            "C10 round {round}: took {:?}",
            ex.elapsed()
        );
        assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 5000, 0)]);
    }
}

/// C11: a later connect with an empty queue is held for `timeout`, then answered successfully
/// (and without advice, C13).
#[tokio::test]
async fn c11_later_connect_is_held_for_timeout() {
    let server = TestServer::start(&["--timeout", "1500"]).await;
    let c = Client::open(&server).await;
    let ex = c.connect().await;
    assert_within(ex.elapsed(), ms(1350), ms(2250), "C11: held connect");
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
}

/// C12: a held connect is answered promptly when another client publishes to a channel the
/// session subscribes to; the response has the delivery, then the connect reply.
#[tokio::test]
async fn c12_held_connect_is_woken_by_a_publish() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c12/room")).await;
    let p = Client::open(&server).await;

    let mut held = s.start_connect().await;
    held.assert_pending_for(HELD).await;
    let published = Instant::now();
    p.publish_ok("/c12/room", json!({"n": 1})).await;
    let ex = held.finish().await;
    let woke = ex.finished - published;
    assert!(
        woke < WAKE,
        "C12: connect answered {woke:?} after the publish"
    );
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/c12/room", "data": {"n": 1}}),
            connect_reply(&ex.id),
        ],
    );
}

/// C13: only the first connect reply carries advice; later ones (held to timeout or woken by a
/// delivery) carry none.
#[tokio::test]
async fn c13_connect_replies_after_the_first_carry_no_advice() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::new(&server);
    s.handshake().await;
    let first = s.connect().await;
    assert_messages(
        &without_full_advice(first.ok(), 1000, 0),
        &[connect_reply(&first.id)],
    );
    s.subscribe_ok(json!("/c13")).await;

    let timed_out = s.connect().await;
    assert_messages(timed_out.ok(), &[connect_reply(&timed_out.id)]);

    let p = Client::open(&server).await;
    p.publish_ok("/c13", json!("hi")).await;
    let woken = s.connect().await;
    assert_messages(
        woken.ok(),
        &[
            json!({"channel": "/c13", "data": "hi"}),
            connect_reply(&woken.id),
        ],
    );

    let again = s.connect().await;
    assert_messages(again.ok(), &[connect_reply(&again.id)]);
}

// ---------------------------------------------------------------------------------------------
// C14..C20: unknown sessions, disconnect, expiry

/// C14: a connect with an unknown clientId gets 402::session_unknown with handshake advice,
/// with the browser cookie, without it, and with `advice:{timeout:0}`.
#[tokio::test]
async fn c14_connect_with_unknown_client_id_is_402_with_handshake_advice() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;

    let with_cookie = Client::new(&server);
    with_cookie.handshake().await;
    with_cookie.set_client_id("nosuchclient0000000000");
    let no_cookie = Client::new(&server);
    no_cookie.set_client_id("nosuchclient0000000000");
    for c in [&with_cookie, &no_cookie] {
        let ex = c.connect().await;
        assert!(
            ex.elapsed() < IMMEDIATE,
            "C14: a 402 is not held ({:?})",
            ex.elapsed()
        );
        assert_messages(ex.ok(), &[unknown_connect(&ex.id)]);
        let ex = c.connect_with_advice(json!({"timeout": 0})).await;
        assert_messages(ex.ok(), &[unknown_connect(&ex.id)]);
    }
    witness.assert_alive().await;
}

/// C15: subscribe, unsubscribe and publish with an unknown clientId get HTTP 200 and
/// 402::session_unknown (no advice; subscription echoed).
#[tokio::test]
async fn c15_subscribe_and_publish_with_unknown_client_id_are_402() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::new(&server);
    c.handshake().await;
    c.set_client_id("nosuchclient0000000000");

    let ex = c.subscribe(json!("/witness")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/subscribe", "subscription": "/witness",
            "successful": false, "error": "402::session_unknown",
        })],
    );
    let ex = c.unsubscribe(json!("/witness")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/unsubscribe", "subscription": "/witness",
            "successful": false, "error": "402::session_unknown",
        })],
    );
    let ex = c.publish("/witness", json!("forged")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/witness", "successful": false,
            "error": "402::session_unknown",
        })],
    );
    // The rejected publish must not have reached the subscriber: the witness gets only its own.
    witness.assert_alive().await;
}

/// C16: after `/meta/disconnect` every message with that clientId gets 402::session_unknown.
#[tokio::test]
async fn c16_messages_after_disconnect_are_402() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/c16")).await;
    let ex = c.disconnect().await;
    assert_messages(
        ex.ok(),
        &[json!({"id": ex.id, "channel": "/meta/disconnect", "successful": true})],
    );

    let ex = c.connect().await;
    assert_messages(ex.ok(), &[unknown_connect(&ex.id)]);
    let ex = c.subscribe(json!("/c16")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/subscribe", "subscription": "/c16",
            "successful": false, "error": "402::session_unknown",
        })],
    );
    let ex = c.publish("/c16", json!(1)).await;
    assert_messages(
        ex.ok(),
        &[
            json!({"id": ex.id, "channel": "/c16", "successful": false, "error": "402::session_unknown"}),
        ],
    );
    let ex = c.disconnect().await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/disconnect", "successful": false,
            "error": "402::session_unknown",
        })],
    );
}

/// C17: the disconnect reply is successful and a connect held for that session returns
/// promptly with `advice:{reconnect:"none"}`.
#[tokio::test]
async fn c17_disconnect_answers_the_held_connect_with_reconnect_none() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let c = Client::open(&server).await;
    let mut held = c.start_connect().await;
    held.assert_pending_for(HELD).await;

    let disconnected = Instant::now();
    let ex = c.disconnect().await;
    assert_messages(
        ex.ok(),
        &[json!({"id": ex.id, "channel": "/meta/disconnect", "successful": true})],
    );
    let ex = held.finish().await;
    let woke = ex.finished - disconnected;
    assert!(
        woke < WAKE,
        "C17: held connect answered {woke:?} after the disconnect"
    );
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/connect", "successful": true,
            "advice": {"reconnect": "none"},
        })],
    );
}

/// C18: a session whose client stops connecting is removed within
/// `interval + maxInterval + 1000` ms of its last connect reply, and not before maxInterval.
///
/// Any message refreshes a live session, so each probe uses a session of its own: session k is
/// probed once, `800 + 100 k` ms after its last connect reply.
#[tokio::test]
async fn c18_silent_session_expires_after_interval_plus_max_interval() {
    const MAX_INTERVAL: u64 = 1000;
    let server = TestServer::start(&[
        "--timeout",
        "1000",
        "--max-interval",
        "1000",
        "--sweep-period",
        "100",
    ])
    .await;
    let mut late = Vec::new();
    for _ in 0..18 {
        let c = Client::open(&server).await;
        late.push((c, Instant::now()));
    }
    let early = Client::open(&server).await;
    let early_at = Instant::now();

    // Not too early: alive at half of maxInterval.
    tokio::time::sleep_until((early_at + ms(MAX_INTERVAL / 2)).into()).await;
    let ex = early.connect_with_advice(json!({"timeout": 0})).await;
    let age = ex.started - early_at;
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 1000, 0)]);
    assert!(
        age < ms(MAX_INTERVAL),
        "probe came too late to be meaningful: {age:?}"
    );

    for (k, (c, last_reply)) in late.iter().enumerate() {
        tokio::time::sleep_until((*last_reply + ms(800 + 100 * k as u64)).into()).await;
        let ex = c.connect_with_advice(json!({"timeout": 0})).await;
        let age = ex.started - *last_reply;
        if ex.ok().last().map(|m| m["successful"] == json!(false)) == Some(true) {
            assert_messages(ex.ok(), &[unknown_connect(&ex.id)]);
            assert!(
                age >= ms(MAX_INTERVAL * 95 / 100),
                "C18: session expired only {age:?} after its last connect reply"
            );
            assert!(
                age <= ms(MAX_INTERVAL + 1000 + 300),
                "C18: session still alive until {age:?} after its last connect reply"
            );
            return;
        }
        assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 1000, 0)]);
        assert!(
            age <= ms(MAX_INTERVAL + 1000 + 300),
            "C18: session still alive {age:?} after its last connect reply"
        );
    }
    panic!("C18: no probed session had expired");
}

/// C19: a session is never expired while its connect is held, even when the hold is longer
/// than maxInterval.
#[tokio::test]
async fn c19_held_connect_keeps_the_session_alive() {
    let server = TestServer::start(&[
        "--timeout",
        "2000",
        "--max-interval",
        "500",
        "--sweep-period",
        "100",
    ])
    .await;
    let c = Client::open(&server).await;
    let ex = c.connect().await;
    assert_within(ex.elapsed(), ms(1800), ms(3000), "C19: held connect");
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
    let ex = c.connect_with_advice(json!({"timeout": 0})).await;
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 2000, 0)]);
}

/// C20: a non-connect message received after the last connect reply extends the expiry to
/// `now + maxInterval`; a control session that sends nothing expires meanwhile.
#[tokio::test]
async fn c20_non_connect_message_extends_session_expiry() {
    let server = TestServer::start(&[
        "--timeout",
        "1000",
        "--max-interval",
        "1500",
        "--sweep-period",
        "100",
    ])
    .await;
    let control = Client::open(&server).await;
    let c = Client::open(&server).await;
    let t0 = Instant::now();

    tokio::time::sleep_until((t0 + ms(1000)).into()).await;
    c.subscribe_ok(json!("/c20")).await;

    // 2000 ms: past the original expiry (1500 + sweep), before the extended one (2500).
    tokio::time::sleep_until((t0 + ms(2000)).into()).await;
    let ex = control.connect_with_advice(json!({"timeout": 0})).await;
    assert_messages(ex.ok(), &[unknown_connect(&ex.id)]);
    let ex = c.connect_with_advice(json!({"timeout": 0})).await;
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 1000, 0)]);
}

// ---------------------------------------------------------------------------------------------
// C21..C41: subscriptions and deliveries

/// C21: the subscribe reply echoes `subscription` verbatim: a string stays a string, an array
/// (even of one) stays an array.
#[tokio::test]
async fn c21_subscribe_reply_echoes_subscription_verbatim() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/c21")).await;
    c.subscribe_ok(json!(["/c21/a"])).await;
    c.subscribe_ok(json!(["/c21/b", "/c21/c/*"])).await;
}

/// C22: subscribing to an array of channels subscribes to all of them.
#[tokio::test]
async fn c22_subscribe_to_an_array_subscribes_to_all() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!(["/c22/a", "/c22/b/**"])).await;
    let p = Client::open(&server).await;
    p.publish_ok("/c22/a", json!(1)).await;
    p.publish_ok("/c22/b/x/y", json!(2)).await;
    p.publish_ok("/c22/c", json!(3)).await;
    assert_messages(
        &s.poll_now().await,
        &[
            json!({"channel": "/c22/a", "data": 1}),
            json!({"channel": "/c22/b/x/y", "data": 2}),
        ],
    );
}

/// C23: subscribe without `subscription` -> 403::subscription_missing.
#[tokio::test]
async fn c23_subscribe_without_subscription_is_403_subscription_missing() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    let ex = c
        .send_message(json!({"id": "5", "channel": "/meta/subscribe", "clientId": c.client_id()}))
        .await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": "5", "channel": "/meta/subscribe", "successful": false,
            "error": "403::subscription_missing",
        })],
    );
    let ex = c
        .send_message(json!({"id": "6", "channel": "/meta/unsubscribe", "clientId": c.client_id()}))
        .await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": "6", "channel": "/meta/unsubscribe", "successful": false,
            "error": "403::subscription_missing",
        })],
    );
    witness.assert_alive().await;
}

/// C24: subscribe to `/foo<bar` -> 403::subscription_invalid, subscription echoed.
#[tokio::test]
async fn c24_subscribe_to_invalid_channel_is_403_subscription_invalid() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    let ex = c.subscribe(json!("/foo<bar")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/subscribe", "subscription": "/foo<bar",
            "successful": false, "error": "403::subscription_invalid",
        })],
    );
    // Not a string nor an array of strings.
    let ex = c.subscribe(json!(42)).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/subscribe", "subscription": 42,
            "successful": false, "error": "403::subscription_invalid",
        })],
    );
    witness.assert_alive().await;
}

/// C25: remote subscribes to meta channels are denied by the security policy: existing ones
/// with subscribe_denied, unknown ones with create_denied (contract).
#[tokio::test]
async fn c25_subscribe_to_meta_channels_is_denied() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    for (channel, error) in [
        (
            "/meta/connect",
            "403:denied_by_security_policy:subscribe_denied",
        ),
        (
            "/meta/subscribe",
            "403:denied_by_security_policy:subscribe_denied",
        ),
        ("/meta/foo", "403:denied_by_security_policy:create_denied"),
    ] {
        let ex = c.subscribe(json!(channel)).await;
        assert_messages(
            ex.ok(),
            &[json!({
                "id": ex.id, "channel": "/meta/subscribe", "subscription": channel,
                "successful": false, "error": error,
            })],
        );
    }
    // The failed subscribes left no trace: the next connect of `c` is a plain poll.
    assert_messages(&c.poll_now().await, &[]);
    witness.assert_alive().await;
}

/// C26: subscribing to a service channel succeeds but records nothing: publishes to it (by
/// others or by the subscriber) are never delivered.
#[tokio::test]
async fn c26_service_channel_subscription_receives_no_broadcast() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/service/echo")).await;
    let p = Client::open(&server).await;
    p.publish_ok("/service/echo", json!({"n": 1})).await;
    // Own publish: no piggy-backed delivery either.
    s.publish_ok("/service/echo", json!({"n": 2})).await;
    let ex = s.connect().await;
    assert_within(
        ex.elapsed(),
        ms(900),
        ms(1500),
        "C26: nothing should wake the connect",
    );
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
    let ex = s.unsubscribe(json!("/service/echo")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/unsubscribe", "subscription": "/service/echo",
            "successful": true,
        })],
    );
}

/// C27: subscribing twice to the same channel succeeds and yields one delivery per publish.
#[tokio::test]
async fn c27_double_subscribe_yields_one_delivery() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c27")).await;
    s.subscribe_ok(json!("/c27")).await;
    let p = Client::open(&server).await;
    p.publish_ok("/c27", json!("once")).await;
    assert_messages(
        &s.poll_now().await,
        &[json!({"channel": "/c27", "data": "once"})],
    );
    assert_messages(&s.poll_now().await, &[]);
}

/// C28: a session subscribed to `/a/*`, `/a/**` and `/a/b` receives one copy of a publish on
/// `/a/b`.
#[tokio::test]
async fn c28_overlapping_wildcards_yield_one_delivery() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/a/*")).await;
    s.subscribe_ok(json!("/a/**")).await;
    s.subscribe_ok(json!("/a/b")).await;
    s.subscribe_ok(json!("/**")).await;
    let p = Client::open(&server).await;
    p.publish_ok("/a/b", json!({"x": 1})).await;
    assert_messages(
        &s.poll_now().await,
        &[json!({"channel": "/a/b", "data": {"x": 1}})],
    );
    assert_messages(&s.poll_now().await, &[]);
}

/// C29: `/a/*` matches exactly one more segment: `/a/b`, not `/a/b/c`, `/a` or `/ab`.
#[tokio::test]
async fn c29_single_wildcard_matches_one_segment() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/a/*")).await;
    let p = Client::open(&server).await;
    for channel in ["/a/b", "/a/b/c", "/a", "/ab", "/a/c"] {
        p.publish_ok(channel, json!(channel)).await;
    }
    assert_messages(
        &s.poll_now().await,
        &[
            json!({"channel": "/a/b", "data": "/a/b"}),
            json!({"channel": "/a/c", "data": "/a/c"}),
        ],
    );
}

/// C30: `/a/**` matches any depth below `/a`: `/a/b`, `/a/b/c`; not `/a`, `/ab`, `/ab/c`.
#[tokio::test]
async fn c30_deep_wildcard_matches_any_depth() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/a/**")).await;
    let p = Client::open(&server).await;
    for channel in ["/a/b", "/a", "/a/b/c", "/ab", "/ab/c", "/a/b/c/d"] {
        p.publish_ok(channel, json!(channel)).await;
    }
    assert_messages(
        &s.poll_now().await,
        &[
            json!({"channel": "/a/b", "data": "/a/b"}),
            json!({"channel": "/a/b/c", "data": "/a/b/c"}),
            json!({"channel": "/a/b/c/d", "data": "/a/b/c/d"}),
        ],
    );
}

/// C31: `/**` receives every broadcast channel and nothing from `/service/**` or meta
/// channels (including other clients' meta traffic).
#[tokio::test]
async fn c31_root_deep_wildcard_matches_broadcast_only() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/**")).await;
    s.subscribe_ok(json!("/*")).await;
    let p = Client::open(&server).await;
    p.subscribe_ok(json!("/c31/other")).await;
    p.publish_ok("/x", json!(1)).await;
    p.publish_ok("/service/x", json!(2)).await;
    p.publish_ok("/y/z", json!(3)).await;
    let ex = p.publish("/meta/foo", json!(4)).await;
    assert_eq!(ex.ok()[0]["successful"], json!(false), "{:?}", ex.messages);
    p.unsubscribe(json!("/c31/other")).await.ok();
    assert_messages(
        &s.poll_now().await,
        &[
            json!({"channel": "/x", "data": 1}),
            json!({"channel": "/y/z", "data": 3}),
        ],
    );
}

/// C32: deliveries carry the concrete channel, never the matching subscription pattern.
#[tokio::test]
async fn c32_deliveries_carry_the_concrete_channel() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c32/*")).await;
    s.subscribe_ok(json!("/c33/**")).await;
    let p = Client::open(&server).await;
    p.publish_ok("/c32/room", json!("a")).await;
    p.publish_ok("/c33/x/y", json!("b")).await;
    assert_messages(
        &s.poll_now().await,
        &[
            json!({"channel": "/c32/room", "data": "a"}),
            json!({"channel": "/c33/x/y", "data": "b"}),
        ],
    );
}

/// C33: broadcast deliveries carry neither the publisher's `id` nor its `clientId`.
#[tokio::test]
async fn c33_deliveries_carry_no_id_nor_client_id() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c33")).await;
    let p = Client::open(&server).await;
    let ex = p
        .send_message(
            json!({"id": "77", "channel": "/c33", "data": "d", "clientId": p.client_id()}),
        )
        .await;
    assert_messages(
        ex.ok(),
        &[json!({"id": "77", "channel": "/c33", "successful": true})],
    );
    let ex = s.connect().await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/c33", "data": "d"}),
            connect_reply(&ex.id),
        ],
    );
}

/// C34: deliveries preserve `data`, `ext`, `timestamp` and unknown top-level fields.
#[tokio::test]
async fn c34_deliveries_preserve_data_ext_and_unknown_fields() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c34")).await;
    let p = Client::open(&server).await;
    let data =
        json!({"a": [1, 2.5, {"b": null}], "s": "x\"y\\z", "t": true, "big": 9007199254740991u64});
    let ex = p
        .send_message(json!({
            "id": "3",
            "channel": "/c34",
            "clientId": p.client_id(),
            "data": data,
            "ext": {"custom": {"k": "v"}, "n": 1},
            "timestamp": "Tue, 03 Dec 2024 10:00:00 GMT",
            "x-extra": 42,
            "nested": {"z": [true, false]},
        }))
        .await;
    assert_messages(
        ex.ok(),
        &[json!({"id": "3", "channel": "/c34", "successful": true})],
    );
    assert_messages(
        &s.poll_now().await,
        &[json!({
            "channel": "/c34",
            "data": data,
            "ext": {"custom": {"k": "v"}, "n": 1},
            "timestamp": "Tue, 03 Dec 2024 10:00:00 GMT",
            "x-extra": 42,
            "nested": {"z": [true, false]},
        })],
    );
}

/// C35: a publish reply is exactly `{id, channel, successful:true}`: no `data`, no `clientId`,
/// even for a publish that carries `ext` and unknown fields.
#[tokio::test]
async fn c35_publish_reply_is_id_channel_successful_only() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let p = Client::open(&server).await;
    let ex = p
        .send_message(json!({
            "id": "9", "channel": "/c35", "clientId": p.client_id(),
            "data": {"payload": 1}, "ext": {"e": 1}, "extra": "x",
        }))
        .await;
    assert_messages(
        ex.ok(),
        &[json!({"id": "9", "channel": "/c35", "successful": true})],
    );
}

/// C36: publishing to an unknown `/meta/` channel is denied (channel_create_denied) and never
/// reaches a `/**` subscriber.
#[tokio::test]
async fn c36_publish_to_meta_channel_is_denied() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/**")).await;
    let p = Client::open(&server).await;
    let ex = p.publish("/meta/foo", json!("x")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/foo", "successful": false,
            "error": "403:denied_by_security_policy:channel_create_denied",
        })],
    );
    assert_messages(&s.poll_now().await, &[]);
    witness.assert_alive().await;
}

/// C37: invalid channel characters -> 405::channel_invalid; missing channel ->
/// 400::channel_missing; an id that is not 1+ alphanumerics -> 405::message_id_invalid (id
/// still echoed). Nothing is delivered.
#[tokio::test]
async fn c37_invalid_channel_missing_channel_and_invalid_id() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/**")).await;
    let p = Client::open(&server).await;
    let cid = p.client_id();

    let ex = p
        .send_message(json!({"id": "1", "channel": "/c37<x", "data": 1, "clientId": cid}))
        .await;
    assert_messages(
        ex.ok(),
        &[
            json!({"id": "1", "channel": "/c37<x", "successful": false, "error": "405::channel_invalid"}),
        ],
    );

    let ex = p
        .send_message(json!({"id": "2", "data": 1, "clientId": cid}))
        .await;
    let mut reply = ex.ok().to_vec();
    // A reply to a message without channel cannot echo one; tolerate an explicit null.
    if let Some(obj) = reply.first_mut().and_then(Value::as_object_mut) {
        if obj.get("channel") == Some(&Value::Null) {
            obj.remove("channel");
        }
    }
    assert_messages(
        &reply,
        &[json!({"id": "2", "successful": false, "error": "400::channel_missing"})],
    );

    for bad_id in ["a<b", "", "1 2", "x/y"] {
        let ex = p
            .send_message(json!({"id": bad_id, "channel": "/c37", "data": 1, "clientId": cid}))
            .await;
        assert_messages(
            ex.ok(),
            &[json!({
                "id": bad_id, "channel": "/c37", "successful": false,
                "error": "405::message_id_invalid",
            })],
        );
    }
    assert_messages(&s.poll_now().await, &[]);
    witness.assert_alive().await;
}

/// C38: a publisher subscribed to its own channel receives its own message
/// (broadcastToPublisher defaults to true).
#[tokio::test]
async fn c38_publisher_receives_its_own_message() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/c38")).await;
    let ex = c.publish("/c38", json!("mine")).await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/c38", "data": "mine"}),
            json!({"id": ex.id, "channel": "/c38", "successful": true}),
        ],
    );
}

/// C39: the unsubscribe reply echoes `subscription` (string or array) and deliveries stop.
#[tokio::test]
async fn c39_unsubscribe_echoes_subscription_and_stops_deliveries() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c39")).await;
    s.subscribe_ok(json!(["/c39/a", "/c39/b/*"])).await;
    s.subscribe_ok(json!("/c39/keep")).await;

    let ex = s.unsubscribe(json!("/c39")).await;
    assert_messages(
        ex.ok(),
        &[
            json!({"id": ex.id, "channel": "/meta/unsubscribe", "subscription": "/c39", "successful": true}),
        ],
    );
    let ex = s.unsubscribe(json!(["/c39/a", "/c39/b/*"])).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/unsubscribe", "subscription": ["/c39/a", "/c39/b/*"],
            "successful": true,
        })],
    );

    let p = Client::open(&server).await;
    for channel in ["/c39", "/c39/a", "/c39/b/x", "/c39/keep"] {
        p.publish_ok(channel, json!(channel)).await;
    }
    assert_messages(
        &s.poll_now().await,
        &[json!({"channel": "/c39/keep", "data": "/c39/keep"})],
    );
}

/// C40: unsubscribing from a channel the session is not subscribed to succeeds, whether the
/// channel exists (someone else subscribes) or not (contract: success, unlike Java's 400).
#[tokio::test]
async fn c40_unsubscribe_when_not_subscribed_succeeds() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let other = Client::open(&server).await;
    other.subscribe_ok(json!("/c40")).await;
    let c = Client::open(&server).await;
    for channel in ["/c40", "/c40/never/seen", "/c40/*"] {
        let ex = c.unsubscribe(json!(channel)).await;
        assert_messages(
            ex.ok(),
            &[json!({
                "id": ex.id, "channel": "/meta/unsubscribe", "subscription": channel,
                "successful": true,
            })],
        );
    }
    // The other session's subscription is untouched.
    c.publish_ok("/c40", json!(1)).await;
    assert_messages(
        &other.poll_now().await,
        &[json!({"channel": "/c40", "data": 1})],
    );
}

/// C41: messages published in order by one client (one per request, then a batch) reach a
/// subscriber that only sends `/meta/connect` in the same order, while it polls.
#[tokio::test]
async fn c41_deliveries_keep_publish_order() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c41")).await;
    let p = Client::open(&server).await;

    let publisher = tokio::spawn(async move {
        for n in 0..10 {
            p.publish_ok("/c41", json!({"n": n})).await;
        }
        let cid = p.client_id();
        let batch: Vec<Value> = (10..20)
            .map(|n| json!({"id": format!("b{n}"), "channel": "/c41", "data": {"n": n}, "clientId": cid}))
            .collect();
        let (status, msgs) = p.post(Value::Array(batch)).await;
        assert_eq!(status, 200);
        let want: Vec<Value> = (10..20)
            .map(|n| json!({"id": format!("b{n}"), "channel": "/c41", "successful": true}))
            .collect();
        assert_messages(&msgs, &want);
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < 20 && Instant::now() < deadline {
        let ex = s.connect().await;
        let mut msgs = ex.ok().to_vec();
        assert_eq!(msgs.pop(), Some(connect_reply(&ex.id)), "{:?}", ex.messages);
        got.extend(msgs);
    }
    publisher.await.expect("publisher task");
    let want: Vec<Value> = (0..20)
        .map(|n| json!({"channel": "/c41", "data": {"n": n}}))
        .collect();
    assert_messages(&got, &want);
}

// ---------------------------------------------------------------------------------------------
// C42..C50: long-polling specifics

/// C42: a publish whose publisher is subscribed returns the delivery inside the publish
/// response, before the reply, and does not wake the publisher's held connect.
#[tokio::test]
async fn c42_own_publish_is_piggybacked_and_does_not_wake_held_connect() {
    let server = TestServer::start(&["--timeout", "1500"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/c42")).await;
    let mut held = c.start_connect().await;
    held.assert_pending_for(HELD).await;

    let ex = c.publish("/c42", json!({"x": 1})).await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/c42", "data": {"x": 1}}),
            json!({"id": ex.id, "channel": "/c42", "successful": true}),
        ],
    );
    let connect = held.finish().await;
    assert_within(
        connect.elapsed(),
        ms(1350),
        ms(2250),
        "C42: held connect must not be woken",
    );
    assert_messages(connect.ok(), &[connect_reply(&connect.id)]);
}

/// C43: with `--meta-connect-deliver-only true` a publish response holds only the publish
/// reply; the delivery comes with the connect reply (the held one is woken at the end of the
/// publishing request, or the next one carries it).
#[tokio::test]
async fn c43_meta_connect_deliver_only_defers_deliveries_to_connect() {
    let server =
        TestServer::start(&["--timeout", "5000", "--meta-connect-deliver-only", "true"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/c43")).await;

    // Without a held connect: the next connect carries the delivery.
    let ex = c.publish("/c43", json!(1)).await;
    assert_messages(
        ex.ok(),
        &[json!({"id": ex.id, "channel": "/c43", "successful": true})],
    );
    let connect = c.connect().await;
    assert!(
        connect.elapsed() < IMMEDIATE,
        "C43: queued delivery must not be held"
    );
    assert_messages(
        connect.ok(),
        &[
            json!({"channel": "/c43", "data": 1}),
            connect_reply(&connect.id),
        ],
    );

    // With a held connect: the publish wakes it.
    let mut held = c.start_connect().await;
    held.assert_pending_for(HELD).await;
    let published = Instant::now();
    let ex = c.publish("/c43", json!(2)).await;
    assert_messages(
        ex.ok(),
        &[json!({"id": ex.id, "channel": "/c43", "successful": true})],
    );
    let connect = held.finish().await;
    let woke = connect.finished - published;
    assert!(
        woke < WAKE,
        "C43: held connect answered {woke:?} after the publish"
    );
    assert_messages(
        connect.ok(),
        &[
            json!({"channel": "/c43", "data": 2}),
            connect_reply(&connect.id),
        ],
    );
}

/// C44: a connect sent in the same POST as other messages is not held.
#[tokio::test]
async fn c44_connect_batched_with_other_messages_is_not_held() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let c = Client::open(&server).await;
    let cid = c.client_id();

    let (status, msgs) = c
        .post(json!([
            {"id": "s1", "channel": "/meta/subscribe", "subscription": "/c44", "clientId": cid},
            {"id": "c1", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": cid},
        ]))
        .await;
    assert_eq!(status, 200);
    assert_messages(
        &msgs,
        &[
            json!({"id": "s1", "channel": "/meta/subscribe", "subscription": "/c44", "successful": true}),
            connect_reply("c1"),
        ],
    );

    let started = Instant::now();
    let (status, msgs) = c
        .post(json!([
            {"id": "c2", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": cid},
            {"id": "p2", "channel": "/c44/other", "data": 1, "clientId": cid},
        ]))
        .await;
    assert!(
        started.elapsed() < IMMEDIATE,
        "C44: batched connect was held"
    );
    assert_eq!(status, 200);
    assert_messages(
        &msgs,
        &[
            connect_reply("c2"),
            json!({"id": "p2", "channel": "/c44/other", "successful": true}),
        ],
    );

    // A publish to its own channel plus a connect: the delivery and both replies, in order.
    let started = Instant::now();
    let (status, msgs) = c
        .post(json!([
            {"id": "p3", "channel": "/c44", "data": 3, "clientId": cid},
            {"id": "c3", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": cid},
        ]))
        .await;
    assert!(
        started.elapsed() < IMMEDIATE,
        "C44: batched connect was held"
    );
    assert_eq!(status, 200);
    assert_messages(
        &msgs,
        &[
            json!({"channel": "/c44", "data": 3}),
            json!({"id": "p3", "channel": "/c44", "successful": true}),
            connect_reply("c3"),
        ],
    );
}

/// C45: POSTs to `/cometd`, `/cometd/`, `/cometd/handshake`, `/cometd/connect`,
/// `/cometd/disconnect` and `/cometd/xyz` are handled identically; the message channel, not the
/// URL, decides what happens.
#[tokio::test]
async fn c45_any_path_under_mount_is_handled_identically() {
    let server = TestServer::start(&["--timeout", "2000"]).await;
    for suffix in ["", "/", "/handshake", "/connect", "/disconnect", "/xyz"] {
        let c = Client::new(&server);
        let ex = c
            .post_to(suffix, "1".into(), &json!([Client::handshake_message("1")]))
            .await;
        let cid = assert_handshake_reply(&ex.ok()[0], "1", handshake_advice(2000, 0));
        c.set_client_id(&cid);

        let msg = c.connect_message("2", Some(json!({"timeout": 0})));
        let ex = c.post_to(suffix, "2".into(), &json!([msg])).await;
        assert_messages(ex.ok(), &[connect_reply_advised("2", 2000, 0)]);

        let sub = json!({"id": "3", "channel": "/meta/subscribe", "subscription": "/c45", "clientId": cid});
        let ex = c.post_to(suffix, "3".into(), &json!([sub])).await;
        assert_messages(
            ex.ok(),
            &[
                json!({"id": "3", "channel": "/meta/subscribe", "subscription": "/c45", "successful": true}),
            ],
        );

        let publ = json!({"id": "4", "channel": "/c45", "data": suffix, "clientId": cid});
        let ex = c.post_to(suffix, "4".into(), &json!([publ])).await;
        assert_messages(
            ex.ok(),
            &[
                json!({"channel": "/c45", "data": suffix}),
                json!({"id": "4", "channel": "/c45", "successful": true}),
            ],
        );

        let disc = json!({"id": "5", "channel": "/meta/disconnect", "clientId": cid});
        let ex = c.post_to(suffix, "5".into(), &json!([disc])).await;
        assert_messages(
            ex.ok(),
            &[json!({"id": "5", "channel": "/meta/disconnect", "successful": true})],
        );
    }
}

/// C46: request bodies sent with `Transfer-Encoding: chunked` (no Content-Length), split at
/// arbitrary points, are accepted.
#[tokio::test]
async fn c46_chunked_request_body_is_accepted() {
    let server = TestServer::start(&["--timeout", "2000"]).await;
    let c = Client::new(&server);
    let chunked = |suffix: &str, body: Value| {
        let bytes = body.to_string().into_bytes();
        let (a, rest) = bytes.split_at(bytes.len() / 3);
        let (b, d) = rest.split_at(rest.len() / 2);
        Request::new("POST", &c.url(suffix))
            .header("Content-Type", "application/json;charset=UTF-8")
            .chunked(vec![a.to_vec(), b.to_vec(), d.to_vec()])
    };

    let ex = c
        .exchange(
            "1".into(),
            chunked("/handshake", json!([Client::handshake_message("1")])),
            None,
        )
        .await;
    let cid = assert_handshake_reply(&ex.ok()[0], "1", handshake_advice(2000, 0));
    c.set_client_id(&cid);

    let connect = c.connect_message("2", Some(json!({"timeout": 0})));
    let ex = c
        .exchange("2".into(), chunked("/connect", json!([connect])), None)
        .await;
    assert_messages(ex.ok(), &[connect_reply_advised("2", 2000, 0)]);

    let batch = json!([
        {"id": "3", "channel": "/meta/subscribe", "subscription": "/c46", "clientId": cid},
        {"id": "4", "channel": "/c46", "data": {"text": "chunked ".repeat(50)}, "clientId": cid},
    ]);
    let ex = c.exchange("3".into(), chunked("/", batch), None).await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/c46", "data": {"text": "chunked ".repeat(50)}}),
            json!({"id": "3", "channel": "/meta/subscribe", "subscription": "/c46", "successful": true}),
            json!({"id": "4", "channel": "/c46", "successful": true}),
        ],
    );
}

/// C47: `application/json` with and without a charset parameter is accepted, and multibyte
/// UTF-8 data round-trips unchanged to the publisher and to another subscriber.
#[tokio::test]
async fn c47_json_content_types_are_accepted_and_utf8_round_trips() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c47")).await;
    let c = Client::open(&server).await;
    let cid = c.client_id();
    let text = "héllo wörld ✓ 日本語 𝄞 😀 \u{0}\u{7f}";

    for (n, content_type) in [
        "application/json",
        "application/json;charset=UTF-8",
        "application/json; charset=utf-8",
    ]
    .into_iter()
    .enumerate()
    {
        let sub_id = format!("s{n}");
        let pub_id = format!("p{n}");
        let body = json!([
            {"id": sub_id, "channel": "/meta/subscribe", "subscription": "/c47", "clientId": cid},
            {"id": pub_id, "channel": "/c47", "data": {"text": text, "n": n}, "clientId": cid},
        ]);
        let resp = post_raw(&c, "/", content_type, body.to_string().as_bytes()).await;
        assert_eq!(resp.status, 200, "C47 {content_type}: {}", resp.text());
        let msgs: Value = serde_json::from_slice(&resp.body).expect("JSON reply");
        assert_messages(
            msgs.as_array().expect("array"),
            &[
                json!({"channel": "/c47", "data": {"text": text, "n": n}}),
                json!({"id": sub_id, "channel": "/meta/subscribe", "subscription": "/c47", "successful": true}),
                json!({"id": pub_id, "channel": "/c47", "successful": true}),
            ],
        );
    }
    assert_messages(
        &s.poll_now().await,
        &[
            json!({"channel": "/c47", "data": {"text": text, "n": 0}}),
            json!({"channel": "/c47", "data": {"text": text, "n": 1}}),
            json!({"channel": "/c47", "data": {"text": text, "n": 2}}),
        ],
    );
}

/// A Content-Type that is neither JSON, `text/plain` (which cross-origin clients use to avoid a
/// preflight) nor form-urlencoded gets HTTP 415 and is not processed.
#[tokio::test]
async fn c47_other_content_type_is_415() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    let body =
        json!([{"id": "9", "channel": "/witness", "data": "sneaky", "clientId": c.client_id()}]);
    let mut wrong = Vec::new();
    for content_type in [
        "application/xml",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
    ] {
        let resp = post_raw(&c, "/", content_type, body.to_string().as_bytes()).await;
        if resp.status != 415 {
            wrong.push(format!("{content_type} -> {} {}", resp.status, resp.text()));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected HTTP 415 for:\n  {}",
        wrong.join("\n  ")
    );
    // Nothing was published: the witness sees only its own message.
    witness.assert_alive().await;
}

/// `text/plain` and `text/json` bodies are read as JSON, like `application/json`.
#[tokio::test]
async fn c47_text_plain_and_text_json_are_accepted() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::open(&server).await;
    for (i, content_type) in ["text/plain", "text/plain;charset=UTF-8", "text/json"]
        .into_iter()
        .enumerate()
    {
        let id = format!("p{i}");
        let body =
            json!([{"id": id, "channel": "/elsewhere", "data": i, "clientId": c.client_id()}]);
        let resp = post_raw(&c, "/", content_type, body.to_string().as_bytes()).await;
        assert_eq!(resp.status, 200, "{content_type}: {}", resp.text());
        let msgs: Value = serde_json::from_slice(&resp.body).expect("JSON reply");
        assert_eq!(
            msgs,
            json!([{"id": id, "channel": "/elsewhere", "successful": true}]),
            "{content_type}"
        );
    }
}

/// Contract (and Bayeux spec): an `application/x-www-form-urlencoded` body with a `message`
/// parameter is accepted like a JSON body.
#[tokio::test]
async fn form_urlencoded_message_parameter_is_accepted() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::new(&server);
    let batch = json!([Client::handshake_message("1")]).to_string();
    let body = format!("message={}", form_encode(&batch));
    let resp = post_raw(
        &c,
        "/handshake",
        "application/x-www-form-urlencoded",
        body.as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let msgs: Value = serde_json::from_slice(&resp.body).expect("JSON reply");
    let cid = assert_handshake_reply(&msgs[0], "1", handshake_advice(1000, 0));
    c.set_client_id(&cid);
    c.first_connect().await;
}

/// C48: a malformed JSON body gets HTTP 400; the session that sent it is unaffected (its
/// subscription still delivers, its connects still work).
#[tokio::test]
async fn c48_malformed_json_is_400_and_session_survives() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/c48")).await;
    let cid = c.client_id();
    let truncated = format!(r#"[{{"id":"9","channel":"/meta/disconnect","clientId":"{cid}""#);
    let bodies: [&[u8]; 5] = [
        truncated.as_bytes(),
        b"{",
        b"not json",
        b"[{\"channel\":}]",
        b"[\"\xff\xfe\"]",
    ];
    for body in bodies {
        let resp = post_raw(&c, "/", "application/json;charset=UTF-8", body).await;
        assert_eq!(
            resp.status,
            400,
            "C48: body {:?} -> {}",
            String::from_utf8_lossy(body),
            resp.text()
        );
    }
    // The truncated disconnect was not processed: the session still works.
    let p = Client::open(&server).await;
    p.publish_ok("/c48", json!("still here")).await;
    let ex = c.connect().await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/c48", "data": "still here"}),
            connect_reply(&ex.id),
        ],
    );
}

/// C49: a body larger than `--max-message-size` gets HTTP 413 (contract) and nothing in it is
/// processed; a body just under the limit is fine.
#[tokio::test]
async fn c49_oversized_body_is_413_and_not_processed() {
    let server = TestServer::start(&["--timeout", "1000", "--max-message-size", "1024"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/c49")).await;
    let p = Client::open(&server).await;
    let cid = p.client_id();
    let message = |fill: usize| {
        json!([{"id": "1", "channel": "/c49", "data": "x".repeat(fill), "clientId": cid}])
            .to_string()
    };
    let overhead = message(0).len();

    let big = message(2048);
    let resp = post_raw(&p, "/", "application/json", big.as_bytes()).await;
    assert_eq!(resp.status, 413, "C49 (Content-Length): {}", resp.text());

    let bytes = big.into_bytes();
    let req = Request::new("POST", &p.url("/"))
        .header("Content-Type", "application/json")
        .chunked(bytes.chunks(300).map(<[u8]>::to_vec).collect());
    let resp = p.send(req).await;
    assert_eq!(resp.status, 413, "C49 (chunked): {}", resp.text());

    assert_messages(&s.poll_now().await, &[]);

    let small = message(1000 - overhead);
    assert!(small.len() <= 1024);
    let resp = post_raw(&p, "/", "application/json", small.as_bytes()).await;
    assert_eq!(
        resp.status,
        200,
        "C49: {} bytes is within the limit: {}",
        small.len(),
        resp.text()
    );
    assert_messages(
        &s.poll_now().await,
        &[json!({"channel": "/c49", "data": "x".repeat(1000 - overhead)})],
    );
}

/// C50: GET without a valid `jsonp` parameter, PUT and DELETE get HTTP 400 and are not
/// processed.
#[tokio::test]
async fn c50_get_without_jsonp_put_and_delete_are_400() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    let publish =
        json!([{"id": "1", "channel": "/witness", "data": "bad", "clientId": c.client_id()}]);
    let encoded = form_encode(&publish.to_string());
    for req in [
        Request::new("GET", &c.url("")),
        Request::new("GET", &c.url("/connect")),
        Request::new("GET", &format!("{}?message={encoded}", c.url("/"))),
        Request::new("PUT", &c.url("/"))
            .header("Content-Type", "application/json")
            .body(publish.to_string()),
        Request::new("DELETE", &c.url("/"))
            .header("Content-Type", "application/json")
            .body(publish.to_string()),
        Request::new("DELETE", &c.url("")),
    ] {
        let what = format!("{} {}", req.method, req.path);
        let resp = c.send(req).await;
        assert_eq!(resp.status, 400, "C50: {what} -> {}", resp.text());
    }
    witness.assert_alive().await;
}

// ---------------------------------------------------------------------------------------------
// C51..C54: browser cookie, session trust, multiple clients, duplicate connects

/// Splits a Set-Cookie header into `(name, value)` and its attributes.
fn parse_set_cookie(header: &str) -> ((String, String), Vec<String>) {
    let mut parts = header.split(';').map(str::trim);
    let pair = parts.next().unwrap_or_default();
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    let attrs = parts
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    ((name.to_string(), value.to_string()), attrs)
}

/// Asserts the response sets exactly one cookie `name` with attributes `Path=/; HttpOnly`, and
/// returns its value.
#[track_caller]
fn assert_browser_cookie(resp: &http::Response, name: &str) -> String {
    let cookies = resp.headers_named("Set-Cookie");
    assert_eq!(
        cookies.len(),
        1,
        "C51: exactly one Set-Cookie expected: {cookies:?}"
    );
    let ((cookie_name, value), attrs) = parse_set_cookie(cookies[0]);
    assert_eq!(cookie_name, name, "C51: {}", cookies[0]);
    assert!(
        !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"\",;\\".contains(&b)),
        "C51: bad cookie value in {}",
        cookies[0]
    );
    let mut attrs: Vec<String> = attrs.iter().map(|a| a.to_ascii_lowercase()).collect();
    attrs.sort();
    assert_eq!(
        attrs,
        ["httponly", "path=/"],
        "C51: cookie attributes of {}",
        cookies[0]
    );
    value
}

/// C51: a handshake without the browser cookie sets `BAYEUX_BROWSER=<v>; Path=/; HttpOnly`;
/// with the cookie present no Set-Cookie is sent, and the value keeps being honoured.
#[tokio::test]
async fn c51_handshake_sets_browser_cookie_once() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::new(&server);
    let ex = c
        .post_to(
            "/handshake",
            "1".into(),
            &json!([Client::handshake_message("1")]),
        )
        .await;
    let value = assert_browser_cookie(&ex.response, "BAYEUX_BROWSER");
    assert_eq!(c.cookie(), Some(value.clone()));
    c.set_client_id(ex.ok()[0]["clientId"].as_str().expect("clientId"));

    let ex = c.connect_with_advice(json!({"timeout": 0})).await;
    ex.ok();
    assert!(
        ex.response.headers_named("Set-Cookie").is_empty(),
        "{:?}",
        ex.response.headers
    );

    let tab = c.tab();
    let ex = tab
        .post_to(
            "/handshake",
            "1".into(),
            &json!([Client::handshake_message("1")]),
        )
        .await;
    ex.ok();
    assert!(
        ex.response.headers_named("Set-Cookie").is_empty(),
        "C51: cookie already present, no new Set-Cookie: {:?}",
        ex.response.headers
    );
    assert_eq!(tab.cookie(), Some(value));

    // Two browsers get two different cookies.
    let other = Client::new(&server);
    other.handshake().await;
    assert_ne!(
        other.cookie(),
        c.cookie(),
        "C51: browsers must get distinct cookies"
    );
}

/// C51 with `--browser-cookie-name`: the cookie has the configured name and is the one used to
/// find the session.
#[tokio::test]
async fn c51_browser_cookie_name_is_configurable() {
    let server =
        TestServer::start(&["--timeout", "1000", "--browser-cookie-name", "MYBROWSER"]).await;
    let c = Client::with_cookie_name(&server, "MYBROWSER");
    let ex = c
        .post_to(
            "/handshake",
            "1".into(),
            &json!([Client::handshake_message("1")]),
        )
        .await;
    assert_browser_cookie(&ex.response, "MYBROWSER");
    c.set_client_id(ex.ok()[0]["clientId"].as_str().expect("clientId"));
    let ex = c.connect_with_advice(json!({"timeout": 0})).await;
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 1000, 0)]);
}

/// C52: with trustClientSession=false (default) a valid clientId is unknown without the cookie
/// of the browser that handshook it, or with another browser's cookie.
#[tokio::test]
async fn c52_client_id_without_matching_cookie_is_unknown() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let owner = Client::open(&server).await;
    owner.subscribe_ok(json!("/c52")).await;
    let cid = owner.client_id();

    let thief = Client::new(&server);
    thief.handshake().await;
    thief.set_client_id(&cid);
    let no_cookie = Client::new(&server);
    no_cookie.set_client_id(&cid);
    for c in [&thief, &no_cookie] {
        let ex = c.connect_with_advice(json!({"timeout": 0})).await;
        assert_messages(ex.ok(), &[unknown_connect(&ex.id)]);
        let ex = c.publish("/c52", json!("forged")).await;
        assert_messages(
            ex.ok(),
            &[
                json!({"id": ex.id, "channel": "/c52", "successful": false, "error": "402::session_unknown"}),
            ],
        );
        let ex = c.disconnect().await;
        assert_messages(
            ex.ok(),
            &[json!({
                "id": ex.id, "channel": "/meta/disconnect", "successful": false,
                "error": "402::session_unknown",
            })],
        );
    }
    // The owner's session survived the forged disconnects and got nothing forged.
    assert_messages(&owner.poll_now().await, &[]);
}

/// C52 counterpart: with `--trust-client-session true` the clientId alone finds the session.
#[tokio::test]
async fn c52_trust_client_session_accepts_client_id_alone() {
    let server = TestServer::start(&["--timeout", "1000", "--trust-client-session", "true"]).await;
    let owner = Client::open(&server).await;
    owner.subscribe_ok(json!("/c52")).await;
    let no_cookie = Client::new(&server);
    no_cookie.set_client_id(&owner.client_id());
    let ex = no_cookie.connect_with_advice(json!({"timeout": 0})).await;
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 1000, 0)]);
    let other = Client::open(&server).await;
    other.publish_ok("/c52", json!(1)).await;
    assert_messages(
        &no_cookie.poll_now().await,
        &[json!({"channel": "/c52", "data": 1})],
    );
}

/// C53: two sessions with one cookie: while the first holds a connect, the second's connect is
/// answered at once with multiple-clients advice; the first's hold is undisturbed.
#[tokio::test]
async fn c53_second_tab_gets_multiple_clients_advice() {
    let server = TestServer::start(&["--timeout", "1500"]).await;
    let a = Client::open(&server).await;
    let b = a.tab();
    b.handshake().await;
    b.first_connect().await;

    let mut held = a.start_connect().await;
    held.assert_pending_for(HELD).await;
    let ex = b.connect().await;
    assert!(
        ex.elapsed() < IMMEDIATE,
        "C53: second tab's connect was held"
    );
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/connect", "successful": true,
            "advice": {"multiple-clients": true, "reconnect": "retry", "interval": 2000},
        })],
    );
    let first = held.finish().await;
    assert_within(first.elapsed(), ms(1350), ms(2250), "C53: first tab's hold");
    assert_messages(first.ok(), &[connect_reply(&first.id)]);
}

/// C53 with options: `--multi-session-interval` sets the advised interval, and
/// `--max-sessions-per-browser 2` lets two tabs hold at once.
#[tokio::test]
async fn c53_multiple_clients_limits_are_configurable() {
    let server = TestServer::start(&[
        "--timeout",
        "1500",
        "--multi-session-interval",
        "1234",
        "--max-sessions-per-browser",
        "2",
    ])
    .await;
    let a = Client::open(&server).await;
    let b = a.tab();
    b.handshake().await;
    b.first_connect().await;
    let c = a.tab();
    c.handshake().await;
    c.first_connect().await;

    let mut held_a = a.start_connect().await;
    held_a.assert_pending_for(HELD).await;
    let mut held_b = b.start_connect().await;
    held_b.assert_pending_for(HELD).await;
    let ex = c.connect().await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/connect", "successful": true,
            "advice": {"multiple-clients": true, "reconnect": "retry", "interval": 1234},
        })],
    );
    for held in [held_a, held_b] {
        let ex = held.finish().await;
        assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
    }
}

/// C53 bookkeeping: the per-browser hold count is released however a hold ends (timeout,
/// superseded by a duplicate connect, woken by a disconnect), so another tab may then hold.
#[tokio::test]
async fn c53_browser_hold_count_is_released_when_holds_end() {
    let server = TestServer::start(&["--timeout", "800"]).await;
    let a = Client::open(&server).await;
    let b = a.tab();
    b.handshake().await;
    b.first_connect().await;

    // 1. A's hold times out; then B may hold.
    let ex = a.connect().await;
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
    let mut held_b = b.start_connect().await;
    held_b.assert_pending_for(HELD).await;
    let ex = held_b.finish().await;
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);

    // 2. A's hold is superseded by A's next connect, which times out; then B may hold.
    let mut old = a.start_connect().await;
    old.assert_pending_for(HELD).await;
    let new = a.start_connect().await;
    assert_eq!(old.finish().await.status, 500);
    let ex = new.finish().await;
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
    let mut held_b = b.start_connect().await;
    held_b.assert_pending_for(HELD).await;
    let ex = held_b.finish().await;
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);

    // 3. A's hold is woken by A's disconnect; then B may hold.
    let mut held_a = a.start_connect().await;
    held_a.assert_pending_for(HELD).await;
    a.disconnect().await.ok();
    held_a.finish().await.ok();
    let mut held_b = b.start_connect().await;
    held_b.assert_pending_for(HELD).await;
    let ex = held_b.finish().await;
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
}

/// PROTOCOL 4.2 step 3: a non-zero `advice.timeout` in a connect overrides the hold time for
/// that connect only; the reply re-advises the server's own timeout, not the client's.
#[tokio::test]
async fn connect_advice_timeout_overrides_the_hold_for_that_connect() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = Client::open(&server).await;
    let ex = c.connect_with_advice(json!({"timeout": 600})).await;
    assert_within(
        ex.elapsed(),
        ms(540),
        ms(1500),
        "hold with client advice timeout 600",
    );
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 3000, 0)]);
    // The override was transient: the next plain connect is held for the server's timeout.
    let ex = c.connect().await;
    assert_within(
        ex.elapsed(),
        ms(2700),
        ms(4500),
        "hold after a transient override",
    );
    assert_messages(ex.ok(), &[connect_reply(&ex.id)]);
}

/// PROTOCOL 4.2: the advised interval is the effective one, including the client's transient
/// `advice.interval`.
#[tokio::test]
async fn connect_advice_interval_is_advised_back_as_the_effective_interval() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = Client::open(&server).await;
    let ex = c
        .connect_with_advice(json!({"timeout": 0, "interval": 300}))
        .await;
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 3000, 300)]);
}

/// Tabs of one browser are separate sessions: disconnecting one leaves the other subscribed.
#[tokio::test]
async fn disconnect_of_one_tab_leaves_the_other_tab_alive() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let a = Client::open(&server).await;
    let b = a.tab();
    b.handshake().await;
    b.first_connect().await;
    a.subscribe_ok(json!("/tabs")).await;
    b.subscribe_ok(json!("/tabs")).await;
    let ex = a.disconnect().await;
    assert_messages(
        ex.ok(),
        &[json!({"id": ex.id, "channel": "/meta/disconnect", "successful": true})],
    );
    let p = Client::open(&server).await;
    p.publish_ok("/tabs", json!(1)).await;
    assert_messages(
        &b.poll_now().await,
        &[json!({"channel": "/tabs", "data": 1})],
    );
    let ex = a.connect().await;
    assert_messages(ex.ok(), &[unknown_connect(&ex.id)]);
}

/// C54: a second connect for a session while one is held: the old request completes with HTTP
/// 500, the new one is processed normally (held, then answered).
#[tokio::test]
async fn c54_duplicate_connect_fails_the_held_one_with_500() {
    duplicate_connect(&[], 500).await;
}

/// C54 with `--duplicate-meta-connect-http-response-code 409`.
#[tokio::test]
async fn c54_duplicate_connect_status_is_configurable() {
    duplicate_connect(&["--duplicate-meta-connect-http-response-code", "409"], 409).await;
}

async fn duplicate_connect(args: &[&str], status: u16) {
    let mut all = vec!["--timeout", "1500"];
    all.extend_from_slice(args);
    let server = TestServer::start(&all).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/c54")).await;
    let mut old = c.start_connect().await;
    old.assert_pending_for(HELD).await;

    let mut new = c.start_connect().await;
    let superseded = Instant::now();
    // Not `finish()` first: the old one must complete while the new one stays held.
    new.assert_pending_for(HELD).await;
    let old = old.finish().await;
    assert_eq!(
        old.status,
        status,
        "C54: superseded connect body {:?}",
        old.response.text()
    );
    assert!(
        old.finished - superseded < WAKE,
        "C54: superseded connect answered {:?} after the new one",
        old.finished - superseded
    );

    let p = Client::open(&server).await;
    p.publish_ok("/c54", json!("to the live connect")).await;
    let new = new.finish().await;
    assert_messages(
        new.ok(),
        &[
            json!({"channel": "/c54", "data": "to the live connect"}),
            connect_reply(&new.id),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// C76: reload

/// C76: after a pause shorter than maxInterval (no disconnect), a connect with the old clientId
/// and `advice:{timeout:0}` succeeds at once with full advice, and subscriptions are intact.
#[tokio::test]
async fn c76_reload_resumes_session_with_subscriptions() {
    let server = TestServer::start(&["--timeout", "5000", "--max-interval", "3000"]).await;
    let old_page = Client::open(&server).await;
    old_page.subscribe_ok(json!("/c76")).await;

    tokio::time::sleep(ms(1000)).await;
    let new_page = old_page.tab();
    new_page.set_client_id(&old_page.client_id());
    let ex = new_page.connect_with_advice(json!({"timeout": 0})).await;
    assert!(ex.elapsed() < IMMEDIATE, "C76: resumed connect was held");
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 5000, 0)]);

    let p = Client::open(&server).await;
    p.publish_ok("/c76", json!("after reload")).await;
    let ex = new_page.connect().await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/c76", "data": "after reload"}),
            connect_reply(&ex.id),
        ],
    );
}

/// C76 while the old page's connect is still held: the new page's `timeout:0` connect
/// supersedes it (old gets 500) and is answered at once with full advice.
#[tokio::test]
async fn c76_reload_supersedes_the_held_connect() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let old_page = Client::open(&server).await;
    old_page.subscribe_ok(json!("/c76")).await;
    let mut held = old_page.start_connect().await;
    held.assert_pending_for(HELD).await;

    let new_page = old_page.tab();
    new_page.set_client_id(&old_page.client_id());
    let ex = new_page.connect_with_advice(json!({"timeout": 0})).await;
    assert!(ex.elapsed() < IMMEDIATE, "C76: resumed connect was held");
    assert_messages(ex.ok(), &[connect_reply_advised(&ex.id, 5000, 0)]);
    let old = held.finish().await;
    assert_eq!(
        old.status,
        500,
        "C76/C54: superseded connect: {}",
        old.response.text()
    );

    let p = Client::open(&server).await;
    p.publish_ok("/c76", json!(1)).await;
    assert_messages(
        &new_page.poll_now().await,
        &[json!({"channel": "/c76", "data": 1})],
    );
}

// ---------------------------------------------------------------------------------------------
// Contract options and lifecycle beyond the checklist

/// `--max-queue`: when a session's queue is full the oldest messages are dropped.
#[tokio::test]
async fn max_queue_drops_the_oldest_messages() {
    let server = TestServer::start(&["--timeout", "1000", "--max-queue", "3"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/q")).await;
    let p = Client::open(&server).await;
    for n in 0..5 {
        p.publish_ok("/q", json!(n)).await;
    }
    assert_messages(
        &s.poll_now().await,
        &[
            json!({"channel": "/q", "data": 2}),
            json!({"channel": "/q", "data": 3}),
            json!({"channel": "/q", "data": 4}),
        ],
    );
}

/// `--broadcast-to-publisher false`: a subscribed publisher does not get its own message,
/// other subscribers do.
#[tokio::test]
async fn broadcast_to_publisher_false_skips_the_publisher() {
    let server =
        TestServer::start(&["--timeout", "1000", "--broadcast-to-publisher", "false"]).await;
    let other = Client::open(&server).await;
    other.subscribe_ok(json!("/b")).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/b")).await;
    c.publish_ok("/b", json!("x")).await;
    assert_messages(&c.poll_now().await, &[]);
    assert_messages(
        &other.poll_now().await,
        &[json!({"channel": "/b", "data": "x"})],
    );
}

/// `--path`: the server mounts (and announces) the configured path, sub-paths included.
#[tokio::test]
async fn path_option_moves_the_mount_point() {
    let server = TestServer::start(&["--timeout", "1000", "--path", "/bayeux"]).await;
    assert_eq!(
        server.path(),
        "/bayeux",
        "listening line must announce the mount path"
    );
    let c = Client::new(&server);
    let reply = c.handshake().await; // POST /bayeux/handshake
    assert_handshake_reply(&reply, "1", handshake_advice(1000, 0));
    let ex = c
        .post_to(
            "/x/y",
            String::new(),
            &json!([c.connect_message("2", Some(json!({"timeout": 0})))]),
        )
        .await;
    assert_messages(ex.ok(), &[connect_reply_advised("2", 1000, 0)]);
}

/// `--config FILE`: options in a TOML file, camelCase keys.
#[tokio::test]
async fn config_file_sets_options_with_camel_case_keys() {
    let file =
        std::env::temp_dir().join(format!("bayeuxd-conformance-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "timeout = 2345\ninterval = 125\nmultiSessionInterval = 777\n",
    )
    .expect("write config file");
    let server = TestServer::start(&["--config", file.to_str().expect("utf-8 temp path")]).await;
    let _ = std::fs::remove_file(&file);
    let a = Client::new(&server);
    let reply = a.handshake().await;
    assert_handshake_reply(&reply, "1", handshake_advice(2345, 125));
    a.first_connect().await;
    let b = a.tab();
    b.handshake().await;
    b.first_connect().await;
    let mut held = a.start_connect().await;
    held.assert_pending_for(HELD).await;
    let ex = b.connect().await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/connect", "successful": true,
            "advice": {"multiple-clients": true, "reconnect": "retry", "interval": 777},
        })],
    );
    held.finish().await.ok();
}

/// Contract: on SIGTERM the server answers held connects (successfully, never advising
/// `handshake`, which the JS client cannot handle on a successful connect) and exits 0.
#[tokio::test]
async fn sigterm_answers_held_connects_and_exits_zero() {
    let mut server = TestServer::start(&["--timeout", "10000"]).await;
    let c = Client::open(&server).await;
    let mut held = c.start_connect().await;
    held.assert_pending_for(HELD).await;
    let status = server.terminate().await;
    assert!(
        status.success(),
        "bayeuxd exited with {status} after SIGTERM"
    );
    let ex = held.finish().await;
    assert!(
        ex.elapsed() < ms(9000),
        "held connect was not answered at shutdown"
    );
    let msgs = ex.ok();
    let reply = msgs.last().cloned().unwrap_or_default();
    assert_eq!(reply["id"], json!(ex.id), "{msgs:?}");
    assert_eq!(reply["channel"], json!("/meta/connect"), "{msgs:?}");
    assert_eq!(reply["successful"], json!(true), "{msgs:?}");
    assert_ne!(reply["advice"]["reconnect"], json!("handshake"), "{msgs:?}");
}

// ---------------------------------------------------------------------------------------------
// Bad input: each case is followed by proof that another live session still works.

/// An empty body is HTTP 400.
#[tokio::test]
async fn bad_input_empty_body_is_400() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::new(&server);
    for suffix in ["", "/handshake", "/connect"] {
        let resp = post_raw(&c, suffix, "application/json", b"").await;
        assert_eq!(
            resp.status,
            400,
            "empty body at {suffix:?}: {}",
            resp.text()
        );
    }
    let resp = post_raw(&c, "/", "application/json", b"  \r\n ").await;
    assert_eq!(resp.status, 400, "whitespace body: {}", resp.text());
    witness.assert_alive().await;
}

/// An empty batch `[]` is HTTP 400 (contract; Java answers 500).
#[tokio::test]
async fn bad_input_empty_batch_is_400() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::new(&server);
    let resp = post_raw(&c, "/", "application/json", b"[]").await;
    assert_eq!(resp.status, 400, "[]: {}", resp.text());
    witness.assert_alive().await;
}

/// JSON that is not a message or an array of messages is HTTP 400, and a batch with one
/// non-object element is rejected as a whole.
#[tokio::test]
async fn bad_input_json_that_is_not_a_message_is_400() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    let valid = json!({"id": "1", "channel": "/witness", "data": "bad", "clientId": c.client_id()});
    let bodies = [
        json!(5),
        json!("x"),
        json!([1]),
        json!(null),
        json!(true),
        json!([[]]),
        json!([valid.clone(), 1]),
        json!([valid, "x"]),
    ];
    for body in bodies {
        let resp = post_raw(&c, "/", "application/json", body.to_string().as_bytes()).await;
        assert_eq!(resp.status, 400, "body {body}: {}", resp.text());
    }
    // The valid message in the rejected batches was not published.
    witness.assert_alive().await;
}

/// A message without `channel` gets 400::channel_missing; the other messages of its batch are
/// processed normally.
#[tokio::test]
async fn bad_input_missing_channel_in_a_batch() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    let cid = c.client_id();
    let (status, mut msgs) = c
        .post(json!([
            {"id": "1", "data": "x", "clientId": cid},
            {"id": "2", "channel": "/bad/ok", "data": "y", "clientId": cid},
            {"id": "3"},
        ]))
        .await;
    assert_eq!(status, 200);
    for msg in &mut msgs {
        if let Some(obj) = msg.as_object_mut() {
            if obj.get("channel") == Some(&Value::Null) {
                obj.remove("channel");
            }
        }
    }
    assert_messages(
        &msgs,
        &[
            json!({"id": "1", "successful": false, "error": "400::channel_missing"}),
            json!({"id": "2", "channel": "/bad/ok", "successful": true}),
            json!({"id": "3", "successful": false, "error": "400::channel_missing"}),
        ],
    );
    witness.assert_alive().await;
}

/// Invalid channel names are rejected: publish -> 405::channel_invalid, subscribe ->
/// 403::subscription_invalid; nothing reaches a `/**` subscriber.
#[tokio::test]
async fn bad_input_invalid_channel_names_are_rejected() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let all = Client::open(&server).await;
    all.subscribe_ok(json!("/**")).await;
    let c = Client::open(&server).await;
    for name in [
        "/a//b", "/a/*/b", "foo", "/", "", "/a/**/b", "/a<b", "/a\"b",
    ] {
        let ex = c.publish(name, json!("x")).await;
        assert_messages(
            ex.ok(),
            &[
                json!({"id": ex.id, "channel": name, "successful": false, "error": "405::channel_invalid"}),
            ],
        );
        let ex = c.subscribe(json!(name)).await;
        assert_messages(
            ex.ok(),
            &[json!({
                "id": ex.id, "channel": "/meta/subscribe", "subscription": name,
                "successful": false, "error": "403::subscription_invalid",
            })],
        );
    }
    assert_messages(&all.poll_now().await, &[]);
    witness.assert_alive().await;
}

/// Publishing to a wildcard channel is rejected with 405::channel_invalid (contract) and to an
/// unknown meta channel with 403; nothing reaches subscribers of the matching patterns.
#[tokio::test]
async fn bad_input_publish_to_wildcard_or_meta_is_rejected() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!(["/a/*", "/a/**", "/**", "/*"])).await;
    let c = Client::open(&server).await;
    for name in ["/a/*", "/a/**", "/*", "/**"] {
        let ex = c.publish(name, json!("x")).await;
        assert_messages(
            ex.ok(),
            &[
                json!({"id": ex.id, "channel": name, "successful": false, "error": "405::channel_invalid"}),
            ],
        );
    }
    let ex = c.publish("/meta/foo", json!("x")).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": ex.id, "channel": "/meta/foo", "successful": false,
            "error": "403:denied_by_security_policy:channel_create_denied",
        })],
    );
    assert_messages(&s.poll_now().await, &[]);
    witness.assert_alive().await;
}

/// Raw garbage on the socket (not HTTP, or a broken request line) does not disturb the server.
#[tokio::test]
async fn bad_input_garbage_bytes_do_not_disturb_the_server() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    for bytes in [
        &b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n"[..],
        b"POST /cometd HTTP/1.1\r\nContent-Length: nope\r\n\r\n[]",
        b"POST /cometd HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        // Any outcome is fine (an error status, a closed connection, or the server waiting for
        // more bytes until we give up); only liveness matters.
        let _ = tokio::time::timeout(ms(1000), http::send_bytes(server.addr(), bytes, None)).await;
    }
    witness.assert_alive().await;
}

/// With `--flush-window-us`, a held connect released by a delivery waits that long, so that
/// what comes meanwhile goes in the same answer; without it, the first delivery is answered
/// alone, at once.
#[tokio::test]
async fn a_flush_window_gathers_the_deliveries_that_follow_the_first() {
    for (window_ms, answers) in [
        (0u64, vec![vec!["a"], vec!["b"]]),
        (300, vec![vec!["a", "b"]]),
    ] {
        let window = (window_ms * 1000).to_string();
        let server = TestServer::start(&["--flush-window-us", &window]).await;
        let subscriber = Client::open(&server).await;
        subscriber.subscribe_ok(json!("/flush")).await;
        let publisher = Client::open(&server).await;
        let mut got = Vec::new();
        let mut pending = subscriber.start_connect().await;
        pending.assert_pending_for(Duration::from_millis(100)).await;
        let started = Instant::now();
        publisher.publish_ok("/flush", json!("a")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        publisher.publish_ok("/flush", json!("b")).await;
        loop {
            let answer = pending.finish().await;
            let data: Vec<String> = answer
                .ok()
                .iter()
                .filter(|m| m["channel"] == "/flush")
                .map(|m| m["data"].as_str().unwrap_or_default().to_owned())
                .collect();
            got.push(data);
            if got.iter().map(Vec::len).sum::<usize>() == 2 {
                break;
            }
            pending = subscriber.start_connect().await;
        }
        assert_eq!(got, answers, "window {window_ms} ms");
        if window_ms > 0 {
            assert!(
                started.elapsed() >= Duration::from_millis(window_ms),
                "answered {:?} after the first delivery",
                started.elapsed()
            );
        }
    }
}
