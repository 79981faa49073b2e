//! WebSocket wire conformance: checklist items C60..C68 of PROTOCOL.md section 9, the websocket
//! rules and options of the transports contract (`/tmp/contract-3.md`), and bad inputs.
//!
//! Every test starts its own `bayeuxd` and talks to `ws://127.0.0.1:PORT/cometd` with a raw
//! tokio-tungstenite client (`support::ws`) that returns every frame and close code as sent.
//! Replies are compared whole with `json!`. "Nothing else arrived" is proven by a bounded silence
//! on a socket whose only pending message is a connect held for much longer, or by a later
//! message that must come after anything queued before it. The only sleeps are where the
//! behaviour under test is the passing of time (session expiry).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::ws::{self, try_upgrade, ws_url, Frame, WsClient, WS_DEADLINE};
use support::{assert_handshake_reply, assert_messages, Client, TestServer, Witness};

/// Anything answered within this is "immediate" / "prompt" (C62 says 1 s).
const IMMEDIATE: Duration = Duration::from_millis(1000);

/// How long a socket must stay silent before the tests believe the connect is held.
const HELD: Duration = Duration::from_millis(250);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn connect_reply(id: &str) -> Value {
    json!({"id": id, "channel": "/meta/connect", "successful": true})
}

fn advice(timeout: u64) -> Value {
    json!({"reconnect": "retry", "interval": 0, "timeout": timeout})
}

fn connect_reply_advised(id: &str, timeout: u64) -> Value {
    json!({"id": id, "channel": "/meta/connect", "successful": true, "advice": advice(timeout)})
}

fn unknown_connect(id: &str) -> Value {
    json!({
        "id": id,
        "channel": "/meta/connect",
        "successful": false,
        "error": "402::session_unknown",
        "advice": {"reconnect": "handshake", "interval": 0},
    })
}

fn flatten(frames: Vec<Vec<Value>>) -> Vec<Value> {
    frames.into_iter().flatten().collect()
}

/// Asserts `got` holds exactly the messages of `want`, in any order.
#[track_caller]
fn assert_same_messages(got: &[Value], want: &[Value]) {
    let mut missing: Vec<Value> = want.to_vec();
    let mut extra = Vec::new();
    for m in got {
        match missing.iter().position(|w| w == m) {
            Some(i) => {
                missing.remove(i);
            }
            None => extra.push(m.clone()),
        }
    }
    assert!(
        missing.is_empty() && extra.is_empty(),
        "message mismatch (any order)\n  got:  {}\n  want: {}",
        Value::Array(got.to_vec()),
        Value::Array(want.to_vec())
    );
}

// ---------------------------------------------------------------------------------------------
// C60, C61: upgrade and handshake

/// C60: the upgrade at `/cometd` and `/cometd/` succeeds (101) and selects no subprotocol.
#[tokio::test]
async fn c60_upgrade_succeeds_without_subprotocol() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    for suffix in ["", "/"] {
        let mut ws = WsClient::open_at(server.addr(), server.path(), suffix, &[]).await;
        assert_eq!(
            ws.upgrade_header("Sec-WebSocket-Protocol"),
            None,
            "C60: upgrade at {suffix:?} must not select a subprotocol"
        );
        ws.handshake().await;
    }
}

/// C61: the handshake may be the first frame; the reply is one text frame holding an array with
/// exactly the handshake reply (transports in contract order), and nothing else is sent.
#[tokio::test]
async fn c61_handshake_as_first_frame_gets_one_array_text_frame() {
    let server = TestServer::start(&["--timeout", "4000"]).await;
    let mut ws = WsClient::open(&server).await;
    ws.send(&json!([WsClient::handshake_message("1")])).await;
    let frame = ws.next_frame(WS_DEADLINE).await;
    let text = match &frame {
        Frame::Text(text) => text.clone(),
        other => panic!("C61: expected a text frame, got {other:?}"),
    };
    assert!(
        text.trim_start().starts_with('['),
        "C61: not an array: {text}"
    );
    let msgs = ws::frame_messages(&frame);
    assert_eq!(msgs.len(), 1, "C61: {msgs:?}");
    assert_handshake_reply(&msgs[0], "1", advice(4000));
    assert_eq!(
        msgs[0]["supportedConnectionTypes"],
        json!(["websocket", "long-polling", "callback-polling"]),
        "contract: allowed transports in this order"
    );
    ws.assert_silent_for(HELD).await;

    // A bare handshake object (not in an array) is accepted too; the reply is still an array.
    let mut ws = WsClient::open(&server).await;
    ws.send(&WsClient::handshake_message("7")).await;
    let msgs = ws.recv(WS_DEADLINE).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_handshake_reply(&msgs[0], "7", advice(4000));
}

/// Two websocket handshakes get distinct clientIds; the first connect (timeout 0) is answered at
/// once with full advice (C10 over websocket).
#[tokio::test]
async fn first_connect_is_immediate_with_full_advice() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let mut a = WsClient::open(&server).await;
    let mut b = WsClient::open(&server).await;
    a.handshake().await;
    b.handshake().await;
    assert_ne!(a.client_id(), b.client_id());
    let started = Instant::now();
    let id = a.send_connect(Some(json!({"timeout": 0}))).await;
    let msgs = a.recv(IMMEDIATE).await;
    assert!(started.elapsed() < IMMEDIATE);
    assert_messages(&msgs, &[connect_reply_advised(&id, 5000)]);
}

// ---------------------------------------------------------------------------------------------
// C62..C64: replies, pushes, held connect

/// C62: with a connect held, subscribe, publish (not subscribed, and subscribed), unsubscribe
/// and disconnect each get their reply within 1 s; publish replies carry no `data`.
#[tokio::test]
async fn c62_every_message_gets_a_prompt_reply() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let mut ws = WsClient::connected(&server).await;
    let held = ws.send_connect(None).await;
    ws.assert_silent_for(HELD).await;

    let started = Instant::now();
    ws.subscribe_ok(json!("/c62")).await;
    assert!(
        started.elapsed() < IMMEDIATE,
        "C62: subscribe reply after {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    ws.publish_ok("/c62/other", json!({"x": 1})).await;
    assert!(
        started.elapsed() < IMMEDIATE,
        "C62: publish reply after {:?}",
        started.elapsed()
    );

    // Publishing to its own channel: the delivery and the reply, both prompt, the reply bare.
    let started = Instant::now();
    let id = ws.next_id();
    ws.send(
        &json!([{"id": id, "channel": "/c62", "data": {"own": true}, "clientId": ws.client_id()}]),
    )
    .await;
    let msgs = flatten(ws.recv_messages(2, IMMEDIATE).await);
    assert!(started.elapsed() < IMMEDIATE);
    assert_same_messages(
        &msgs,
        &[
            json!({"channel": "/c62", "data": {"own": true}}),
            json!({"id": id, "channel": "/c62", "successful": true}),
        ],
    );

    let started = Instant::now();
    let id = ws.peek_id();
    let msgs = ws
        .request(json!({"channel": "/meta/unsubscribe", "subscription": "/c62"}))
        .await;
    assert!(started.elapsed() < IMMEDIATE);
    assert_messages(
        &msgs,
        &[
            json!({"id": id, "channel": "/meta/unsubscribe", "subscription": "/c62", "successful": true}),
        ],
    );

    let started = Instant::now();
    let id = ws.peek_id();
    let msgs = ws.request(json!({"channel": "/meta/disconnect"})).await;
    assert!(
        started.elapsed() < IMMEDIATE,
        "C62: disconnect reply after {:?}",
        started.elapsed()
    );
    let disconnect: Vec<Value> = msgs
        .into_iter()
        .filter(|m| m["id"] != json!(held))
        .collect();
    assert_messages(
        &disconnect,
        &[json!({"id": id, "channel": "/meta/disconnect", "successful": true})],
    );
}

/// C63: a delivery is pushed in its own frame while the connect is held; the connect is not
/// answered by it and stays held.
#[tokio::test]
async fn c63_delivery_is_pushed_while_connect_is_held() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let mut sub = WsClient::connected(&server).await;
    sub.subscribe_ok(json!("/c63")).await;
    let _held = sub.send_connect(None).await;
    sub.assert_silent_for(HELD).await;

    let publisher = Client::open(&server).await;
    let started = Instant::now();
    publisher.publish_ok("/c63", json!({"n": 1})).await;
    let msgs = sub.recv(IMMEDIATE).await;
    assert!(
        started.elapsed() < IMMEDIATE,
        "C63: pushed after {:?}",
        started.elapsed()
    );
    assert_messages(&msgs, &[json!({"channel": "/c63", "data": {"n": 1}})]);

    let mut ws_publisher = WsClient::connected(&server).await;
    ws_publisher.publish_ok("/c63", json!({"n": 2})).await;
    let msgs = sub.recv(IMMEDIATE).await;
    assert_messages(&msgs, &[json!({"channel": "/c63", "data": {"n": 2}})]);
    // The connect is still held: nothing else comes.
    sub.assert_silent_for(HELD).await;
}

/// C64: the held connect is answered at `--timeout` with its id and no advice; the next one is
/// held again.
#[tokio::test]
async fn c64_held_connect_is_answered_at_timeout() {
    let server = TestServer::start(&["--timeout", "1500"]).await;
    let mut ws = WsClient::connected(&server).await;
    let started = Instant::now();
    let id = ws.send_connect(None).await;
    let msgs = ws.recv(ms(5000)).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= ms(1350) && elapsed <= ms(2500),
        "C64: held for {elapsed:?}, expected about 1500 ms"
    );
    assert_messages(&msgs, &[connect_reply(&id)]);
    let _next = ws.send_connect(None).await;
    ws.assert_silent_for(HELD).await;
}

/// C17 over websocket: a disconnect answers the held connect with `reconnect:none`; afterwards
/// the clientId is unknown, also on a new socket (C16).
#[tokio::test]
async fn disconnect_answers_held_connect_and_forgets_the_session() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let mut ws = WsClient::connected(&server).await;
    let cid = ws.client_id();
    let held = ws.send_connect(None).await;
    ws.assert_silent_for(HELD).await;
    let id = ws.next_id();
    ws.send(&json!([{"id": id, "channel": "/meta/disconnect", "clientId": cid}]))
        .await;
    let msgs = flatten(ws.recv_messages(2, IMMEDIATE).await);
    assert_same_messages(
        &msgs,
        &[
            json!({"id": held, "channel": "/meta/connect", "successful": true, "advice": {"reconnect": "none"}}),
            json!({"id": id, "channel": "/meta/disconnect", "successful": true}),
        ],
    );

    let mut again = WsClient::resume(&server, &cid).await;
    let id = again.send_connect(Some(json!({"timeout": 0}))).await;
    assert_messages(&again.recv(IMMEDIATE).await, &[unknown_connect(&id)]);
}

/// C14/C15 over websocket: an unknown clientId gets 402 on connect (with handshake advice),
/// subscribe and publish.
#[tokio::test]
async fn unknown_client_id_is_402() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let mut ws = WsClient::resume(&server, "nosuchclientid0000000000").await;
    let id = ws.send_connect(Some(json!({"timeout": 0}))).await;
    assert_messages(&ws.recv(IMMEDIATE).await, &[unknown_connect(&id)]);
    let id = ws.peek_id();
    let msgs = ws
        .request(json!({"channel": "/meta/subscribe", "subscription": "/x"}))
        .await;
    assert_messages(
        &msgs,
        &[json!({
            "id": id, "channel": "/meta/subscribe", "subscription": "/x",
            "successful": false, "error": "402::session_unknown",
        })],
    );
    let id = ws.peek_id();
    let msgs = ws.request(json!({"channel": "/x", "data": 1})).await;
    assert_messages(
        &msgs,
        &[json!({"id": id, "channel": "/x", "successful": false, "error": "402::session_unknown"})],
    );
}

// ---------------------------------------------------------------------------------------------
// C65, C66: resuming a session on a new socket

/// C65: after the socket is closed, a new socket sending `/meta/connect` with the old clientId
/// and `advice:{timeout:0}` gets an immediate successful reply; subscriptions are still active
/// and deliveries go to the new socket, which can publish without a handshake.
#[tokio::test]
async fn c65_new_socket_resumes_the_session() {
    let server = TestServer::start(&["--timeout", "10000", "--max-interval", "5000"]).await;
    let mut old = WsClient::connected(&server).await;
    old.subscribe_ok(json!("/c65")).await;
    let cid = old.client_id();
    old.close_and_drop().await;

    let mut fresh = WsClient::resume(&server, &cid).await;
    let started = Instant::now();
    let id = fresh.send_connect(Some(json!({"timeout": 0}))).await;
    let msgs = fresh.recv(IMMEDIATE).await;
    assert!(
        started.elapsed() < IMMEDIATE,
        "C65: resumed connect was held"
    );
    assert_messages(&msgs, &[connect_reply_advised(&id, 10000)]);

    let _held = fresh.send_connect(None).await;
    fresh.assert_silent_for(HELD).await;
    let publisher = Client::open(&server).await;
    publisher.publish_ok("/c65", json!("after reconnect")).await;
    assert_messages(
        &fresh.recv(IMMEDIATE).await,
        &[json!({"channel": "/c65", "data": "after reconnect"})],
    );
    fresh.publish_ok("/c65/elsewhere", json!(1)).await;
}

/// C65 when the socket breaks abruptly (no close frame) while a connect is held — what the
/// official client sees on a network blip.
#[tokio::test]
async fn c65_resume_after_abrupt_drop_with_a_held_connect() {
    let server = TestServer::start(&["--timeout", "10000", "--max-interval", "5000"]).await;
    let mut old = WsClient::connected(&server).await;
    old.subscribe_ok(json!("/c65b")).await;
    let _held = old.send_connect(None).await;
    old.assert_silent_for(HELD).await;
    let mut fresh = old.reopen().await; // drops the old socket without a close frame

    let msgs = fresh.connect_now().await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let _held = fresh.send_connect(None).await;
    let publisher = Client::open(&server).await;
    publisher.publish_ok("/c65b", json!(2)).await;
    assert_messages(
        &fresh.recv(IMMEDIATE).await,
        &[json!({"channel": "/c65b", "data": 2})],
    );
}

/// C66: with `--ws-require-handshake-per-connection true`, a new socket presenting an existing
/// clientId gets 402 + handshake advice (connect) and 402 (publish); the original socket's session
/// is unaffected.
#[tokio::test]
async fn c66_require_handshake_per_connection_refuses_resume() {
    let server = TestServer::start(&[
        "--timeout",
        "10000",
        "--ws-require-handshake-per-connection",
        "true",
    ])
    .await;
    let mut first = WsClient::connected(&server).await;
    first.subscribe_ok(json!("/c66")).await;
    let cid = first.client_id();

    let mut second = WsClient::resume(&server, &cid).await;
    let id = second.send_connect(Some(json!({"timeout": 0}))).await;
    assert_messages(&second.recv(IMMEDIATE).await, &[unknown_connect(&id)]);
    let id = second.peek_id();
    let msgs = second
        .request(json!({"channel": "/c66", "data": "from the second socket"}))
        .await;
    assert_messages(
        &msgs,
        &[
            json!({"id": id, "channel": "/c66", "successful": false, "error": "402::session_unknown"}),
        ],
    );

    // The first socket still owns a live session, and the refused publish was not delivered.
    let publisher = Client::open(&server).await;
    publisher.publish_ok("/c66", json!("fence")).await;
    assert_messages(
        &first.recv(IMMEDIATE).await,
        &[json!({"channel": "/c66", "data": "fence"})],
    );
    // The second socket may handshake its own session.
    second.handshake().await;
    second.first_connect().await;
}

// ---------------------------------------------------------------------------------------------
// C67, C68: bad frames and session lifetime

/// C67: a frame with invalid JSON closes the socket with 1011; the session survives and a new
/// socket resumes it with its subscriptions.
#[tokio::test]
async fn c67_invalid_json_closes_1011_and_session_survives() {
    let server = TestServer::start(&["--timeout", "10000", "--max-interval", "5000"]).await;
    let mut ws = WsClient::connected(&server).await;
    ws.subscribe_ok(json!("/c67")).await;
    let cid = ws.client_id();
    ws.send_text(&format!(
        r#"[{{"id":"9","channel":"/meta/disconnect","clientId":"{cid}""#
    ))
    .await;
    assert_eq!(ws.expect_close(WS_DEADLINE).await, Some(1011), "C67");

    for bad in ["not json", "{", "[{\"channel\":}]", "[1,"] {
        let mut other = WsClient::connected(&server).await;
        other.send_text(bad).await;
        assert_eq!(
            other.expect_close(WS_DEADLINE).await,
            Some(1011),
            "C67: frame {bad:?}"
        );
    }

    let mut fresh = WsClient::resume(&server, &cid).await;
    let msgs = fresh.connect_now().await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let publisher = Client::open(&server).await;
    publisher.publish_ok("/c67", json!("survived")).await;
    assert_messages(
        &fresh.recv(IMMEDIATE).await,
        &[json!({"channel": "/c67", "data": "survived"})],
    );
}

/// C68: closing the socket does not remove the session: it can be resumed well within
/// interval+maxInterval; once interval+maxInterval (+ a sweep) have passed since its last connect
/// reply, a connect gets 402. Times are measured from the last connect reply, so a slow close
/// handshake cannot shift them.
#[tokio::test]
async fn c68_closed_socket_session_expires_after_max_interval() {
    let server = TestServer::start(&[
        "--timeout",
        "10000",
        "--max-interval",
        "1500",
        "--sweep-period",
        "100",
    ])
    .await;
    let ws = WsClient::connected(&server).await;
    let first_reply = Instant::now();
    let cid = ws.client_id();
    ws.close_and_drop().await;

    // Time passing is the behaviour under test.
    tokio::time::sleep(ms(700).saturating_sub(first_reply.elapsed())).await;
    let mut resumed = WsClient::resume(&server, &cid).await;
    let msgs = resumed.connect_now().await;
    let last_reply = Instant::now();
    assert!(
        first_reply.elapsed() < ms(1400),
        "the resume came too late to prove anything ({:?})",
        first_reply.elapsed()
    );
    assert_eq!(msgs.len(), 1, "C68: resumed after the close: {msgs:?}");
    resumed.close_and_drop().await;

    let expiry = ms(1500 + 100 + 900);
    tokio::time::sleep(expiry.saturating_sub(last_reply.elapsed())).await;
    let mut late = WsClient::resume(&server, &cid).await;
    let id = late.send_connect(Some(json!({"timeout": 0}))).await;
    assert_messages(&late.recv(IMMEDIATE).await, &[unknown_connect(&id)]);
}

/// C68 with a connect held when the socket closes: alive shortly after the close; gone once the
/// hold plus maxInterval (+ a sweep) have passed (true under either reading of when the clock
/// starts: the close, or the end of the hold).
#[tokio::test]
async fn c68_session_with_held_connect_at_close_expires_later() {
    let server = TestServer::start(&[
        "--timeout",
        "2000",
        "--max-interval",
        "1000",
        "--sweep-period",
        "100",
    ])
    .await;
    let mut a = WsClient::connected(&server).await;
    let mut b = WsClient::connected(&server).await;
    let (cid_a, cid_b) = (a.client_id(), b.client_id());
    let _ = a.send_connect(None).await;
    let _ = b.send_connect(None).await;
    a.assert_silent_for(HELD).await;
    let closed = Instant::now();
    a.close_and_drop().await;
    b.close_and_drop().await;

    tokio::time::sleep(ms(500)).await;
    let mut early = WsClient::resume(&server, &cid_a).await;
    let msgs = early.connect_now().await;
    assert_eq!(msgs.len(), 1, "C68: resumed 500 ms after close: {msgs:?}");

    let gone = ms(2000 + 1000 + 100 + 900);
    tokio::time::sleep(gone.saturating_sub(closed.elapsed())).await;
    let mut late = WsClient::resume(&server, &cid_b).await;
    let id = late.send_connect(Some(json!({"timeout": 0}))).await;
    assert_messages(&late.recv(IMMEDIATE).await, &[unknown_connect(&id)]);
}

/// A binary frame closes the socket with 1003; the server keeps serving others.
#[tokio::test]
async fn binary_frame_closes_1003() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let mut ws = WsClient::connected(&server).await;
    let frame = json!([{"id": "9", "channel": "/b", "data": 1, "clientId": ws.client_id()}]);
    ws.send_binary(frame.to_string().as_bytes()).await;
    assert_eq!(ws.expect_close(WS_DEADLINE).await, Some(1003));
    let mut other = WsClient::connected(&server).await;
    other.publish_ok("/b", json!(2)).await;
}

/// A frame larger than `--max-message-size` closes the socket with 1009 and is not processed;
/// a frame within the limit works.
#[tokio::test]
async fn oversized_frame_closes_1009() {
    let server = TestServer::start(&["--timeout", "10000", "--max-message-size", "1024"]).await;
    let mut sub = WsClient::connected(&server).await;
    sub.subscribe_ok(json!("/big")).await;
    let _held = sub.send_connect(None).await;

    let mut big = WsClient::connected(&server).await;
    let cid = big.client_id();
    let message = |fill: usize| {
        json!([{"id": "50", "channel": "/big", "data": "x".repeat(fill), "clientId": cid}])
            .to_string()
    };
    let overhead = message(0).len();
    big.send_text(&message(2048)).await;
    assert_eq!(big.expect_close(WS_DEADLINE).await, Some(1009));

    let mut small = WsClient::resume(&server, &cid).await;
    let fill = 1000 - overhead;
    let text = message(fill);
    assert!(text.len() <= 1024);
    small.send_text(&text).await;
    assert_messages(
        &small.recv(IMMEDIATE).await,
        &[json!({"id": "50", "channel": "/big", "successful": true})],
    );
    // The subscriber gets only the small one.
    assert_messages(
        &sub.recv(IMMEDIATE).await,
        &[json!({"channel": "/big", "data": "x".repeat(fill)})],
    );
    sub.assert_silent_for(HELD).await;
}

// ---------------------------------------------------------------------------------------------
// Options

/// `--ws-allowed-origins`: an upgrade whose Origin is not listed gets HTTP 403; listed ones 101.
#[tokio::test]
async fn ws_allowed_origins_rejects_other_origins_with_403() {
    let server = TestServer::start(&[
        "--ws-allowed-origins",
        "https://good.example,https://also.example:8443",
    ])
    .await;
    let url = ws_url(server.addr(), server.path(), "");
    for origin in [
        "https://evil.example",
        "https://good.example.evil.example",
        "http://good.example",
        "https://also.example",
    ] {
        match try_upgrade(&url, &[("Origin", origin)]).await {
            Err(refused) => assert_eq!(refused.status, 403, "Origin {origin}: {refused:?}"),
            Ok(_) => panic!("upgrade with Origin {origin} must be refused with 403"),
        }
    }
    for origin in ["https://good.example", "https://also.example:8443"] {
        let mut ws =
            WsClient::open_at(server.addr(), server.path(), "", &[("Origin", origin)]).await;
        ws.handshake().await;
    }
}

/// `--allowed-transports long-polling`: the upgrade is refused with 400, the handshake lists
/// only long-polling, and a connect naming websocket is `400::connection_type_unsupported`.
#[tokio::test]
async fn allowed_transports_without_websocket_refuses_upgrade() {
    let server = TestServer::start(&["--allowed-transports", "long-polling"]).await;
    let url = ws_url(server.addr(), server.path(), "");
    match try_upgrade(&url, &[]).await {
        Err(refused) => assert_eq!(refused.status, 400, "{refused:?}"),
        Ok(_) => panic!("the upgrade must be refused when websocket is not allowed"),
    }
    let c = Client::new(&server);
    let reply = c.handshake().await;
    assert_eq!(
        reply["supportedConnectionTypes"],
        json!(["long-polling"]),
        "{reply}"
    );
    let mut msg = c.connect_message("2", Some(json!({"timeout": 0})));
    msg["connectionType"] = json!("websocket");
    let ex = c.post_to("/connect", "2".into(), &json!([msg])).await;
    assert_messages(
        ex.ok(),
        &[json!({
            "id": "2",
            "channel": "/meta/connect",
            "successful": false,
            "error": "400::connection_type_unsupported",
            "advice": {"reconnect": "handshake", "interval": 0},
        })],
    );
}

/// `--ws-messages-per-frame 2`: 5 publishes sent in one frame reach a subscriber in frames of at
/// most 2 deliveries, in order, exactly once.
#[tokio::test]
async fn ws_messages_per_frame_bounds_deliveries_per_frame() {
    let server = TestServer::start(&["--timeout", "10000", "--ws-messages-per-frame", "2"]).await;
    let mut sub = WsClient::connected(&server).await;
    sub.subscribe_ok(json!("/mpf")).await;
    let _held = sub.send_connect(None).await;
    sub.assert_silent_for(HELD).await;

    let mut publisher = WsClient::connected(&server).await;
    let cid = publisher.client_id();
    let ids: Vec<String> = (0..5).map(|_| publisher.next_id()).collect();
    let batch: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"id": id, "channel": "/mpf", "data": {"i": i}, "clientId": cid}))
        .collect();
    publisher.send(&Value::Array(batch)).await;
    let replies = flatten(publisher.recv_messages(5, IMMEDIATE).await);
    let want: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "channel": "/mpf", "successful": true}))
        .collect();
    assert_messages(&replies, &want);

    let frames = sub.recv_messages(5, IMMEDIATE).await;
    for frame in &frames {
        assert!(
            frame.len() <= 2,
            "messagesPerFrame 2: a frame held {} deliveries: {frames:?}",
            frame.len()
        );
    }
    let want: Vec<Value> = (0..5)
        .map(|i| json!({"channel": "/mpf", "data": {"i": i}}))
        .collect();
    assert_messages(&flatten(frames), &want);
    sub.assert_silent_for(HELD).await;
}

/// `--ws-idle-timeout`: a socket without frames is closed by the server after about that long.
#[tokio::test]
async fn ws_idle_timeout_closes_a_silent_socket() {
    let server = TestServer::start(&["--ws-idle-timeout", "1000"]).await;
    let mut ws = WsClient::open(&server).await;
    ws.handshake().await;
    let started = Instant::now();
    ws.assert_silent_for(ms(700)).await;
    let frame = ws.next_frame(ms(4000)).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(frame, Frame::Close(_) | Frame::End(_)),
        "expected the server to close the idle socket, got {frame:?}"
    );
    assert!(
        elapsed <= ms(3000),
        "closed after {elapsed:?}, idle timeout 1000 ms"
    );
}

/// `--meta-connect-deliver-only true` over websocket: no push without a connect; the held connect
/// is woken and the delivery travels with its reply.
#[tokio::test]
async fn meta_connect_deliver_only_over_websocket() {
    let server =
        TestServer::start(&["--timeout", "10000", "--meta-connect-deliver-only", "true"]).await;
    let mut sub = WsClient::connected(&server).await;
    sub.subscribe_ok(json!("/mcdo")).await;
    let held = sub.send_connect(None).await;
    sub.assert_silent_for(HELD).await;
    let publisher = Client::open(&server).await;
    publisher.publish_ok("/mcdo", json!(1)).await;
    let msgs = sub.recv_until_reply(&held, IMMEDIATE).await;
    assert_messages(
        &msgs,
        &[json!({"channel": "/mcdo", "data": 1}), connect_reply(&held)],
    );

    // No connect outstanding: nothing is pushed; the next connect returns with it at once.
    publisher.publish_ok("/mcdo", json!(2)).await;
    sub.assert_silent_for(HELD).await;
    let id = sub.send_connect(None).await;
    let msgs = sub.recv_until_reply(&id, IMMEDIATE).await;
    assert_messages(
        &msgs,
        &[json!({"channel": "/mcdo", "data": 2}), connect_reply(&id)],
    );
}

// ---------------------------------------------------------------------------------------------
// Mixed transports, bad input, shutdown

/// A websocket session and a long-polling session exchange messages both ways.
#[tokio::test]
async fn websocket_and_long_polling_sessions_exchange_messages() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let mut ws = WsClient::connected(&server).await;
    ws.subscribe_ok(json!("/mix/to-ws")).await;
    let _held = ws.send_connect(None).await;
    let lp = Client::open(&server).await;
    lp.subscribe_ok(json!("/mix/to-lp")).await;

    lp.publish_ok("/mix/to-ws", json!({"from": "long-polling"}))
        .await;
    assert_messages(
        &ws.recv(IMMEDIATE).await,
        &[json!({"channel": "/mix/to-ws", "data": {"from": "long-polling"}})],
    );
    ws.publish_ok("/mix/to-lp", json!({"from": "websocket"}))
        .await;
    let ex = lp.connect().await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/mix/to-lp", "data": {"from": "websocket"}}),
            connect_reply(&ex.id),
        ],
    );
}

/// A burst of garbage frames (each on its own socket, then all on one socket) does not disturb
/// the server: every text frame it sends back is a JSON array, every garbage socket ends within
/// a bound, and normal use on another socket (and over long-polling) works afterwards.
#[tokio::test]
async fn garbage_frames_do_not_disturb_the_server() {
    let server = TestServer::start(&["--timeout", "5000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let mut healthy = WsClient::connected(&server).await;
    healthy.subscribe_ok(json!("/g")).await;

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let texts: Vec<String> = [
        "",
        " ",
        "null",
        "42",
        "\"str\"",
        "[]",
        "{}",
        "[1,2]",
        "[null]",
        "[[]]",
        "[{}]",
        "{\"channel\":5}",
        "[{\"channel\":\"/meta/connect\"}]",
        "[{\"id\":{},\"channel\":\"/meta/handshake\"}]",
        "[{\"channel\":\"/meta/subscribe\",\"clientId\":7,\"subscription\":[1]}]",
        "[{\"channel\":\"/g\",\"data\":\"no client\"}]",
        "not json",
        "{",
        "\u{0}",
        "\u{feff}[]",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([deep])
    .collect();

    for text in &texts {
        let mut ws = WsClient::open(&server).await;
        ws.send_text_lossy(text).await;
        drain_garbage_socket(&mut ws, text).await;
    }
    let mut burst = WsClient::open(&server).await;
    burst.handshake().await;
    for text in &texts {
        burst.send_text_lossy(text).await;
    }
    drain_garbage_socket(&mut burst, "burst").await;
    let mut binary = WsClient::open(&server).await;
    binary.send_binary(&[0xff, 0xfe, 0x00]).await;
    drain_garbage_socket(&mut binary, "binary").await;

    let mut fresh = WsClient::connected(&server).await;
    fresh.publish_ok("/g", json!("after garbage")).await;
    assert_messages(
        &healthy.recv(IMMEDIATE).await,
        &[json!({"channel": "/g", "data": "after garbage"})],
    );
    witness.assert_alive().await;
}

/// Reads what the server sends on a garbage socket for a bounded time: any text frame must be a
/// JSON array (C1); stops at close, end of stream, or 1 s of silence.
async fn drain_garbage_socket(ws: &mut WsClient, what: &str) {
    let deadline = Instant::now() + WS_DEADLINE;
    while Instant::now() < deadline {
        match ws.try_next_frame(ms(1000)).await {
            None | Some(Frame::Close(_)) | Some(Frame::End(_)) => return,
            Some(frame @ Frame::Text(_)) => {
                let _ = ws::frame_messages(&frame);
            }
            Some(other) => panic!("garbage {what:.40?}: unexpected frame {other:?}"),
        }
    }
    panic!("garbage {what:.40?}: the server kept sending frames for {WS_DEADLINE:?}");
}

/// SIGTERM answers the held websocket connect (its id) promptly and the server exits 0 within
/// 3 s (the grace the Node harness gives it) although a websocket is open.
#[tokio::test]
async fn sigterm_answers_the_held_websocket_connect_and_exits() {
    let mut server = TestServer::start(&["--timeout", "20000"]).await;
    let mut ws = WsClient::connected(&server).await;
    let held = ws.send_connect(None).await;
    ws.assert_silent_for(HELD).await;
    server.send_sigterm().await;
    let msgs = ws.recv_until_reply(&held, IMMEDIATE).await;
    let replies: Vec<&Value> = msgs.iter().filter(|m| m["id"] == json!(held)).collect();
    assert_eq!(
        replies.len(),
        1,
        "held connect reply on shutdown; got {msgs:?}"
    );
    assert_eq!(replies[0]["channel"], json!("/meta/connect"));
    assert!(replies[0]["successful"].is_boolean(), "{}", replies[0]);
    let status = server.wait_exit(ms(3000)).await;
    match status {
        Some(status) => assert!(status.success(), "bayeuxd exit status {status:?}"),
        None => panic!("bayeuxd did not exit within 3 s of SIGTERM with a websocket open"),
    }
}

/// A close frame from the client is answered with a close frame (RFC 6455 5.5.1), promptly.
#[tokio::test]
async fn client_close_frame_is_answered_with_a_close_frame() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let mut ws = WsClient::connected(&server).await;
    let _held = ws.send_connect(None).await;
    ws.assert_silent_for(HELD).await;
    ws.send_close(1000).await;
    let frame = ws.next_frame(IMMEDIATE).await;
    assert!(
        matches!(frame, Frame::Close(Some((1000, _)))),
        "expected the server to answer the close frame with close 1000, got {frame:?}"
    );
}

/// Descriptors the server process has open, once the connections its clients closed are
/// closed on its side too.
async fn open_descriptors(server: &TestServer) -> usize {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = server.pid().expect("bayeuxd runs");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc readable")
        .count()
}

/// A long-polling connection keeps a second descriptor to notice its client leaving; a
/// websocket sees that by itself and keeps one: it matters at 100 000 clients per process.
/// (Counted between a first and a second group of clients: the server opens a few descriptors
/// of its own as its first connections come.)
#[tokio::test]
async fn a_websocket_client_costs_one_descriptor_a_long_polling_one_two() {
    const CLIENTS: usize = 20;
    let server = TestServer::start(&[]).await;
    let mut sockets = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..2 {
        for _ in 0..CLIENTS {
            sockets.push(WsClient::connected(&server).await);
        }
        counts.push(open_descriptors(&server).await);
    }
    assert_eq!(counts[1] - counts[0], CLIENTS);
    let mut polls = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..2 {
        for _ in 0..CLIENTS {
            let client = Client::new(&server);
            client.handshake().await;
            client.first_connect().await;
            // Held: its connection stays open.
            polls.push(client.start_connect().await);
        }
        counts.push(open_descriptors(&server).await);
    }
    // The held connect's connection, and its watch.
    assert_eq!(counts[1] - counts[0], 2 * CLIENTS);
}
