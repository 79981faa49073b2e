//! Callback-polling (JSONP) wire conformance: checklist items C56..C59 of PROTOCOL.md section 9,
//! the callback / message validation rules and options of the transports contract
//! (`/tmp/contract-3.md`), and bad inputs.
//!
//! Every test starts its own `bayeuxd`, sends raw `GET ...?jsonp=<cb>&message=<json>` requests
//! and compares whole reply objects. Where the contract and PROTOCOL.md differ the contract wins:
//! a missing `message` is HTTP 400 (Java: 500).

mod support;

use std::time::Duration;

use serde_json::{json, Value};

use support::http::Request;
use support::jsonp::{
    self, encode_component, jsonp_get, jsonp_target, unwrap_jsonp, JSONP_CONTENT_TYPE,
};
use support::{assert_handshake_reply, assert_messages, Client, TestServer, Witness};

/// Anything answered within this is "immediate" (the configured hold is always much longer).
const IMMEDIATE: Duration = Duration::from_millis(1000);

/// How long a request must stay unanswered before the tests believe the server holds it.
const HELD: Duration = Duration::from_millis(250);

/// Upper bound for "woken promptly".
const WAKE: Duration = Duration::from_millis(500);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn connect_reply(id: &str) -> Value {
    json!({"id": id, "channel": "/meta/connect", "successful": true})
}

fn connect_reply_advised(id: &str, timeout: u64) -> Value {
    json!({
        "id": id,
        "channel": "/meta/connect",
        "successful": true,
        "advice": {"reconnect": "retry", "interval": 0, "timeout": timeout},
    })
}

/// A client handshaken and connected over JSONP (first connect answered).
async fn jsonp_open(server: &TestServer) -> Client {
    let c = Client::new(server);
    jsonp::handshake(&c).await;
    jsonp::connect_now(&c).await;
    c
}

/// Subscribes over JSONP and asserts the exact reply.
async fn jsonp_subscribe_ok(c: &Client, channel: &str) {
    let id = c.next_id();
    let msgs = jsonp::send_batch(
        c,
        "/",
        json!([{"id": id, "channel": "/meta/subscribe", "subscription": channel, "clientId": c.client_id()}]),
    )
    .await;
    assert_messages(
        &msgs,
        &[
            json!({"id": id, "channel": "/meta/subscribe", "subscription": channel, "successful": true}),
        ],
    );
}

/// Asserts an error response: the given status, a text/plain body, and the callback nowhere in
/// the body (no reflected script).
#[track_caller]
fn assert_rejected(resp: &support::http::Response, status: u16, callback: &str, what: &str) {
    let body = resp.text();
    assert_eq!(resp.status, status, "{what}: body {body:?}");
    if !callback.is_empty() {
        assert!(
            !body.contains(callback),
            "{what}: the error body must not reflect the callback {callback:?}: {body:?}"
        );
    }
    let ct = resp.header("Content-Type").unwrap_or_default();
    assert!(
        ct.to_ascii_lowercase().starts_with("text/plain"),
        "{what}: error Content-Type should be text/plain, got {ct:?} (body {body:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// C56: handshake and connect over JSONP

/// C56: the handshake as a JSONP GET gets 200, the exact JavaScript Content-Type, a body that is
/// exactly `_cometd_jsonp_0([...])` holding the handshake reply, and the browser cookie; a
/// connect with that cookie works, one without it is 402.
#[tokio::test]
async fn c56_jsonp_handshake_and_connect() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = Client::new(&server);
    let hs = jsonp::handshake_message("1");
    let target = format!(
        "{}?jsonp=_cometd_jsonp_0&message={}",
        c.url("/handshake"),
        encode_component(&json!([hs]).to_string())
    );
    let resp = jsonp::get(&c, &target).await;
    assert_eq!(resp.status, 200, "C56: {}", resp.text());
    assert_eq!(
        resp.header("Content-Type"),
        Some(JSONP_CONTENT_TYPE),
        "C56: exact Content-Type"
    );
    let body = resp.text();
    assert!(
        body.starts_with("_cometd_jsonp_0([{") && body.ends_with("}])"),
        "C56: body must be exactly _cometd_jsonp_0([...]) without a trailing semicolon: {body:?}"
    );
    let msgs = unwrap_jsonp(&resp, "_cometd_jsonp_0");
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let cid = assert_handshake_reply(
        &msgs[0],
        "1",
        json!({"reconnect": "retry", "interval": 0, "timeout": 3000}),
    );
    assert_eq!(
        msgs[0]["supportedConnectionTypes"],
        json!(["websocket", "long-polling", "callback-polling"]),
        "contract: allowed transports in this order"
    );
    let cookie = c
        .cookie()
        .unwrap_or_else(|| panic!("C56: the JSONP handshake must set the browser cookie"));
    assert!(!cookie.is_empty());
    c.set_client_id(&cid);

    // Connect (first, timeout 0) with the cookie.
    let connect = jsonp::connect_message(&c, "2", Some(json!({"timeout": 0})));
    let resp = jsonp_get(&c, "/connect", "_cometd_jsonp_1", &[json!([connect])]).await;
    assert_messages(
        &unwrap_jsonp(&resp, "_cometd_jsonp_1"),
        &[connect_reply_advised("2", 3000)],
    );

    // Same clientId without the cookie: 402 (same rules as long-polling).
    let stranger = Client::new(&server);
    stranger.set_client_id(&cid);
    let connect = jsonp::connect_message(&stranger, "3", Some(json!({"timeout": 0})));
    let resp = jsonp_get(
        &stranger,
        "/connect",
        "_cometd_jsonp_2",
        &[json!([connect])],
    )
    .await;
    assert_messages(
        &unwrap_jsonp(&resp, "_cometd_jsonp_2"),
        &[json!({
            "id": "3",
            "channel": "/meta/connect",
            "successful": false,
            "error": "402::session_unknown",
            "advice": {"reconnect": "handshake", "interval": 0},
        })],
    );
}

/// C56 / C45: the JSONP GET is served at every path under the mount point.
#[tokio::test]
async fn c56_jsonp_is_served_at_every_path_under_the_mount() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    for (n, suffix) in ["", "/", "/handshake", "/xyz"].into_iter().enumerate() {
        let c = Client::new(&server);
        let callback = format!("cb{n}");
        let resp = jsonp_get(
            &c,
            suffix,
            &callback,
            &[json!([jsonp::handshake_message("1")])],
        )
        .await;
        let msgs = unwrap_jsonp(&resp, &callback);
        assert_eq!(msgs.len(), 1, "GET {suffix:?}: {msgs:?}");
        assert_eq!(
            msgs[0]["successful"],
            json!(true),
            "GET {suffix:?}: {msgs:?}"
        );
    }
}

/// The held JSONP connect is answered at `--timeout` with the connect reply in the callback.
#[tokio::test]
async fn jsonp_held_connect_is_answered_at_timeout() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = jsonp_open(&server).await;
    let mut held = jsonp::start_connect(&c).await;
    held.assert_pending_for(HELD).await;
    let id = held.id.clone();
    let callback = held.callback.clone();
    let (resp, elapsed) = held.finish(ms(5000)).await;
    assert!(
        elapsed >= ms(900) && elapsed <= ms(2500),
        "held for {elapsed:?}, expected about 1000 ms"
    );
    assert_messages(&unwrap_jsonp(&resp, &callback), &[connect_reply(&id)]);
}

// ---------------------------------------------------------------------------------------------
// C57: callback validation

/// C57: callbacks with a space, `:`, CR/LF, markup, script, or longer than 64 chars get HTTP 400
/// whose body does not contain the callback, and the message is not processed; exactly 64 chars
/// of the allowed alphabet is fine.
#[tokio::test]
async fn c57_invalid_callbacks_are_400_and_not_reflected() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let subscriber = Client::open(&server).await;
    subscriber.subscribe_ok(json!("/c57")).await;
    let p = jsonp_open(&server).await;

    let too_long = "a".repeat(65);
    let bad = [
        "sh rt",
        "NOTICE:",
        "a\r\nSet-Cookie: x=y",
        "a\nb",
        "<script>alert(1)</script>",
        "alert(1)//",
        "x;alert(1)",
        "cb()",
        "é",
        too_long.as_str(),
    ];
    for (n, callback) in bad.into_iter().enumerate() {
        let publish = json!([{"id": format!("b{n}"), "channel": "/c57", "data": n, "clientId": p.client_id()}]);
        let resp = jsonp_get(&p, "/", callback, &[publish]).await;
        assert_rejected(&resp, 400, callback, &format!("C57: callback {callback:?}"));
    }
    // An empty callback is not valid either.
    let publish =
        json!([{"id": "e", "channel": "/c57", "data": "empty", "clientId": p.client_id()}]);
    let resp = jsonp::get(&p, &jsonp_target(&p, "/", "jsonp", "", &[publish])).await;
    assert_rejected(&resp, 400, "", "C57: empty callback");

    // The allowed alphabet, exactly 64 chars: accepted, and that publish is delivered.
    let ok = format!("{}{}", "Ab0._-", "z".repeat(58));
    assert_eq!(ok.len(), 64);
    let publish = json!([{"id": "ok", "channel": "/c57", "data": "ok", "clientId": p.client_id()}]);
    let resp = jsonp_get(&p, "/", &ok, &[publish]).await;
    assert_messages(
        &unwrap_jsonp(&resp, &ok),
        &[json!({"id": "ok", "channel": "/c57", "successful": true})],
    );
    // None of the rejected publishes reached the subscriber.
    assert_messages(
        &subscriber.poll_now().await,
        &[json!({"channel": "/c57", "data": "ok"})],
    );
}

/// `--callback-parameter-max-length` moves the limit.
#[tokio::test]
async fn callback_parameter_max_length_option() {
    let server = TestServer::start(&["--callback-parameter-max-length", "10"]).await;
    let c = Client::new(&server);
    let hs = [json!([jsonp::handshake_message("1")])];
    let resp = jsonp_get(&c, "/handshake", "abcdefghijk", &hs).await;
    assert_rejected(&resp, 400, "abcdefghijk", "11 chars with max length 10");
    let resp = jsonp_get(&c, "/handshake", "abcdefghij", &hs).await;
    let msgs = unwrap_jsonp(&resp, "abcdefghij");
    assert_eq!(msgs[0]["successful"], json!(true), "{msgs:?}");
}

/// `--callback-parameter cb`: the callback is read from `cb`; `jsonp` alone is then no JSONP
/// request (400).
#[tokio::test]
async fn callback_parameter_option_renames_the_parameter() {
    let server = TestServer::start(&["--callback-parameter", "cb"]).await;
    let c = Client::new(&server);
    let hs = [json!([jsonp::handshake_message("1")])];
    let resp = jsonp::get(&c, &jsonp_target(&c, "/handshake", "cb", "myFn", &hs)).await;
    let msgs = unwrap_jsonp(&resp, "myFn");
    assert_eq!(msgs[0]["successful"], json!(true), "{msgs:?}");

    let other = Client::new(&server);
    let resp = jsonp::get(
        &other,
        &jsonp_target(&other, "/handshake", "jsonp", "myFn", &hs),
    )
    .await;
    assert_rejected(&resp, 400, "myFn", "jsonp= with --callback-parameter cb");
    assert!(
        other.cookie().is_none(),
        "the rejected handshake set a cookie"
    );
}

// ---------------------------------------------------------------------------------------------
// C58, C59: batches and deliveries

/// C58: two `message` parameters are one batch processed in order: subscribe then publish gives
/// both replies in order, and the publish is delivered (it came after the subscribe). A message
/// parameter may hold a bare object.
#[tokio::test]
async fn c58_multiple_message_parameters_are_one_ordered_batch() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = jsonp_open(&server).await;
    let cid = c.client_id();
    // The first parameter is a bare object, the second an array.
    let subscribe =
        json!({"id": "10", "channel": "/meta/subscribe", "subscription": "/c58", "clientId": cid});
    let publish = json!([{"id": "11", "channel": "/c58", "data": {"n": 1}, "clientId": cid}]);
    let resp = jsonp_get(&c, "/", "_cometd_jsonp_5", &[subscribe, publish]).await;
    assert_messages(
        &unwrap_jsonp(&resp, "_cometd_jsonp_5"),
        &[
            json!({"id": "10", "channel": "/meta/subscribe", "subscription": "/c58", "successful": true}),
            json!({"id": "11", "channel": "/c58", "successful": true}),
        ],
    );
    let msgs = jsonp::connect_now(&c).await;
    let id = msgs.last().expect("connect reply")["id"].clone();
    assert_messages(
        &msgs,
        &[
            json!({"channel": "/c58", "data": {"n": 1}}),
            connect_reply_advised(id.as_str().unwrap_or_default(), 3000),
        ],
    );

    // Order matters: publish first, then subscribe: not delivered.
    let c2 = jsonp_open(&server).await;
    let cid2 = c2.client_id();
    let resp = jsonp_get(
        &c2,
        "/",
        "_cometd_jsonp_6",
        &[
            json!([{"id": "20", "channel": "/c58b", "data": 2, "clientId": cid2}]),
            json!([{"id": "21", "channel": "/meta/subscribe", "subscription": "/c58b", "clientId": cid2}]),
        ],
    )
    .await;
    assert_messages(
        &unwrap_jsonp(&resp, "_cometd_jsonp_6"),
        &[
            json!({"id": "20", "channel": "/c58b", "successful": true}),
            json!({"id": "21", "channel": "/meta/subscribe", "subscription": "/c58b", "successful": true}),
        ],
    );
    let msgs = jsonp::connect_now(&c2).await;
    assert_eq!(
        msgs.len(),
        1,
        "published before subscribing: nothing to deliver: {msgs:?}"
    );
}

/// C59: a subscribed publisher's publish reply carries no delivery (JSONP is always
/// meta-connect-deliver-only); its own held connect is woken at once and carries it.
#[tokio::test]
async fn c59_publish_reply_has_no_delivery_and_wakes_own_held_connect() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let c = jsonp_open(&server).await;
    jsonp_subscribe_ok(&c, "/c59").await;
    let mut held = jsonp::start_connect(&c).await;
    held.assert_pending_for(HELD).await;

    let id = c.next_id();
    let msgs = jsonp::send_batch(
        &c,
        "/",
        json!([{"id": id, "channel": "/c59", "data": "mine", "clientId": c.client_id()}]),
    )
    .await;
    assert_messages(
        &msgs,
        &[json!({"id": id, "channel": "/c59", "successful": true})],
    );

    let held_id = held.id.clone();
    let callback = held.callback.clone();
    let (resp, elapsed) = held.finish(ms(5000)).await;
    assert!(
        elapsed < ms(250) + WAKE + IMMEDIATE,
        "C59: the held connect was not woken promptly ({elapsed:?}, timeout 10 s)"
    );
    assert_messages(
        &unwrap_jsonp(&resp, &callback),
        &[
            json!({"channel": "/c59", "data": "mine"}),
            connect_reply(&held_id),
        ],
    );
}

/// C59 with a subscribe in the same request: the subscribe reply also carries nothing, even
/// with messages queued for the session.
#[tokio::test]
async fn c59_queued_messages_only_travel_with_connect_replies() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let c = jsonp_open(&server).await;
    jsonp_subscribe_ok(&c, "/c59q").await;
    let p = Client::open(&server).await;
    p.publish_ok("/c59q", json!(1)).await;
    p.publish_ok("/c59q", json!(2)).await;

    // Messages are queued; a subscribe request does not carry them.
    let id = c.next_id();
    let msgs = jsonp::send_batch(
        &c,
        "/",
        json!([{"id": id, "channel": "/meta/subscribe", "subscription": "/other", "clientId": c.client_id()}]),
    )
    .await;
    assert_messages(
        &msgs,
        &[
            json!({"id": id, "channel": "/meta/subscribe", "subscription": "/other", "successful": true}),
        ],
    );
    let msgs = jsonp::connect_now(&c).await;
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert_messages(
        &msgs[..2],
        &[
            json!({"channel": "/c59q", "data": 1}),
            json!({"channel": "/c59q", "data": 2}),
        ],
    );
}

/// A held JSONP connect is woken by another client's publish, with the delivery.
#[tokio::test]
async fn jsonp_held_connect_is_woken_by_another_clients_publish() {
    let server = TestServer::start(&["--timeout", "10000"]).await;
    let c = jsonp_open(&server).await;
    jsonp_subscribe_ok(&c, "/wake").await;
    let mut held = jsonp::start_connect(&c).await;
    held.assert_pending_for(HELD).await;
    let p = Client::open(&server).await;
    p.publish_ok("/wake", json!({"text": "héllo wörld ✓"}))
        .await;
    let id = held.id.clone();
    let callback = held.callback.clone();
    let (resp, elapsed) = held.finish(ms(5000)).await;
    assert!(elapsed < ms(3000), "woken after {elapsed:?}");
    assert_messages(
        &unwrap_jsonp(&resp, &callback),
        &[
            json!({"channel": "/wake", "data": {"text": "héllo wörld ✓"}}),
            connect_reply(&id),
        ],
    );
}

/// `message` values are form-decoded: `+` is a space, percent-encoded UTF-8 is decoded.
#[tokio::test]
async fn message_parameter_is_form_decoded() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let s = Client::open(&server).await;
    s.subscribe_ok(json!("/dec")).await;
    let c = jsonp_open(&server).await;
    let raw = format!(
        r#"[{{"id":"7","channel":"/dec","data":"a b+c é","clientId":"{}"}}]"#,
        c.client_id()
    );
    // Spaces as '+', a literal '+' as %2B, the rest percent-encoded.
    let encoded: String = raw
        .split(' ')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("+");
    let target = format!("{}?jsonp=f&message={encoded}", c.url("/"));
    let resp = jsonp::get(&c, &target).await;
    assert_messages(
        &unwrap_jsonp(&resp, "f"),
        &[json!({"id": "7", "channel": "/dec", "successful": true})],
    );
    assert_messages(
        &s.poll_now().await,
        &[json!({"channel": "/dec", "data": "a b+c é"})],
    );
}

// ---------------------------------------------------------------------------------------------
// Bad inputs

/// A GET without the callback parameter is 400 and not processed (C50).
#[tokio::test]
async fn get_without_jsonp_is_400() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = jsonp_open(&server).await;
    let publish =
        json!([{"id": "1", "channel": "/witness", "data": "bad", "clientId": c.client_id()}]);
    let target = format!(
        "{}?message={}",
        c.url("/"),
        encode_component(&publish.to_string())
    );
    let resp = jsonp::get(&c, &target).await;
    assert_eq!(resp.status, 400, "GET without jsonp: {}", resp.text());
    witness.assert_alive().await;
}

/// A JSONP GET without any `message` parameter (or with an empty one) is 400.
#[tokio::test]
async fn missing_message_is_400() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = Client::new(&server);
    let resp = jsonp::get(&c, &format!("{}?jsonp=cbMissing", c.url("/handshake"))).await;
    assert_eq!(resp.status, 400, "no message parameter: {}", resp.text());
    assert!(
        !resp.text().contains("cbMissing("),
        "an error must not be a script calling the callback: {}",
        resp.text()
    );
    let resp = jsonp::get(
        &c,
        &format!("{}?jsonp=cbEmpty&message=", c.url("/handshake")),
    )
    .await;
    assert_eq!(resp.status, 400, "empty message parameter: {}", resp.text());
    assert!(c.cookie().is_none(), "nothing was processed, no cookie set");
}

/// Malformed JSON in `message` is 400, nothing in the request is processed, the session survives.
#[tokio::test]
async fn malformed_message_json_is_400_and_session_survives() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let c = jsonp_open(&server).await;
    jsonp_subscribe_ok(&c, "/mal").await;
    let cid = c.client_id();
    let truncated = format!(r#"[{{"id":"9","channel":"/meta/disconnect","clientId":"{cid}""#);
    for bad in [truncated.as_str(), "{", "not json", "[{\"channel\":}]"] {
        let target = format!(
            "{}?jsonp=cbBad&message={}",
            c.url("/"),
            encode_component(bad)
        );
        let resp = jsonp::get(&c, &target).await;
        assert_eq!(
            resp.status,
            400,
            "malformed message {bad:?}: {}",
            resp.text()
        );
        assert!(
            !resp.text().contains("cbBad("),
            "an error must not be a script calling the callback: {}",
            resp.text()
        );
    }
    // A good message followed by a malformed one: the whole request is rejected.
    let good = json!([{"id": "10", "channel": "/mal", "data": "half", "clientId": cid}]);
    let target = format!(
        "{}?jsonp=cbHalf&message={}&message={}",
        c.url("/"),
        encode_component(&good.to_string()),
        encode_component("[{")
    );
    let resp = jsonp::get(&c, &target).await;
    assert_eq!(
        resp.status,
        400,
        "good + malformed message: {}",
        resp.text()
    );

    // The truncated disconnect was not processed: the session still receives.
    let p = Client::open(&server).await;
    p.publish_ok("/mal", json!("still here")).await;
    let msgs = jsonp::connect_now(&c).await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_messages(
        &msgs[..1],
        &[json!({"channel": "/mal", "data": "still here"})],
    );
}

/// `--allowed-transports long-polling`: JSONP GETs are 400, POST still works and the handshake
/// lists only long-polling.
#[tokio::test]
async fn allowed_transports_without_callback_polling_rejects_jsonp() {
    let server = TestServer::start(&["--allowed-transports", "long-polling"]).await;
    let c = Client::new(&server);
    let resp = jsonp_get(
        &c,
        "/handshake",
        "_cometd_jsonp_0",
        &[json!([jsonp::handshake_message("1")])],
    )
    .await;
    assert_rejected(
        &resp,
        400,
        "_cometd_jsonp_0",
        "JSONP with callback-polling not allowed",
    );
    assert!(c.cookie().is_none(), "the rejected handshake set a cookie");

    let reply = c.handshake().await;
    assert_eq!(
        reply["supportedConnectionTypes"],
        json!(["long-polling"]),
        "{reply}"
    );
}

/// A `/meta/connect` naming callback-polling when it is not allowed: 400::connection_type_unsupported
/// with handshake advice (contract).
#[tokio::test]
async fn connect_with_disallowed_callback_polling_type_is_refused() {
    let server = TestServer::start(&["--allowed-transports", "websocket,long-polling"]).await;
    let c = Client::new(&server);
    let reply = c.handshake().await;
    assert_eq!(
        reply["supportedConnectionTypes"],
        json!(["websocket", "long-polling"]),
        "{reply}"
    );
    let mut msg = c.connect_message("2", Some(json!({"timeout": 0})));
    msg["connectionType"] = json!("callback-polling");
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

/// A JSONP session and a long-polling session exchange messages both ways.
#[tokio::test]
async fn jsonp_and_long_polling_sessions_exchange_messages() {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let j = jsonp_open(&server).await;
    jsonp_subscribe_ok(&j, "/mix/to-jsonp").await;
    let lp = Client::open(&server).await;
    lp.subscribe_ok(json!("/mix/to-lp")).await;

    lp.publish_ok("/mix/to-jsonp", json!({"from": "lp"})).await;
    let id = j.next_id();
    let msgs = jsonp::send_batch(
        &j,
        "/",
        json!([{"id": id, "channel": "/mix/to-lp", "data": {"from": "jsonp"}, "clientId": j.client_id()}]),
    )
    .await;
    assert_messages(
        &msgs,
        &[json!({"id": id, "channel": "/mix/to-lp", "successful": true})],
    );

    let msgs = jsonp::connect_now(&j).await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_messages(
        &msgs[..1],
        &[json!({"channel": "/mix/to-jsonp", "data": {"from": "lp"}})],
    );
    assert_messages(
        &lp.poll_now().await,
        &[json!({"channel": "/mix/to-lp", "data": {"from": "jsonp"}})],
    );

    // JSONP disconnect: reply successful, then the session is unknown.
    let id = j.next_id();
    let msgs = jsonp::send_batch(
        &j,
        "/disconnect",
        json!([{"id": id, "channel": "/meta/disconnect", "clientId": j.client_id()}]),
    )
    .await;
    assert_messages(
        &msgs,
        &[json!({"id": id, "channel": "/meta/disconnect", "successful": true})],
    );
    let resp = Request::new(
        "GET",
        &jsonp_target(
            &j,
            "/",
            "jsonp",
            "after",
            &[json!([{"id": "x", "channel": "/mix/to-lp", "data": 0, "clientId": j.client_id()}])],
        ),
    );
    let resp = j.send(resp).await;
    assert_messages(
        &unwrap_jsonp(&resp, "after"),
        &[
            json!({"id": "x", "channel": "/mix/to-lp", "successful": false, "error": "402::session_unknown"}),
        ],
    );
}
