//! The browser cookie rule for clients that keep no cookies (docs/security.md): a session is
//! bound to its `BAYEUX_BROWSER` cookie once the client presents that cookie back, as browsers
//! do on their first connect; a session whose cookie never came back is found by its
//! `clientId` alone, as websocket sessions are. Another browser's cookie never finds a session.
//!
//! Raw HTTP clients with no cookie jar, over long-polling and callback-polling, against the
//! real `bayeuxd`; then browser-like clients whose cookie is required from then on.

mod support;

use serde_json::{json, Value};

use support::jsonp;
use support::{assert_messages, Client, TestServer};

fn unknown(id: &str, channel: &str) -> Value {
    json!({"id": id, "channel": channel, "successful": false, "error": "402::session_unknown"})
}

/// A client without a cookie jar does everything over long-polling: subscribe, publish, poll,
/// disconnect; the server told it a cookie at handshake, and never needs it back.
#[tokio::test]
async fn long_polling_client_without_cookies_works() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::without_cookies(&server);
    let ex = c
        .post_to(
            "/handshake",
            "1".into(),
            &json!([Client::handshake_message("1")]),
        )
        .await;
    assert_eq!(
        ex.response.headers_named("Set-Cookie").len(),
        1,
        "the cookie is still offered: {:?}",
        ex.response.headers
    );
    c.set_client_id(ex.ok()[0]["clientId"].as_str().expect("clientId"));
    assert_eq!(c.cookie(), None);
    c.first_connect().await;
    c.subscribe_ok(json!("/cookieless")).await;

    let publisher = Client::open(&server).await;
    for n in 0..3 {
        publisher.publish_ok("/cookieless", json!(n)).await;
    }
    let ex = c.connect().await;
    assert_messages(
        &ex.ok()[..3],
        &[
            json!({"channel": "/cookieless", "data": 0}),
            json!({"channel": "/cookieless", "data": 1}),
            json!({"channel": "/cookieless", "data": 2}),
        ],
    );
    // Its own publishes too, and its disconnect ends the session.
    c.publish_ok("/elsewhere", json!("mine")).await;
    let ex = c.disconnect().await;
    assert_eq!(ex.ok()[0]["successful"], json!(true), "{:?}", ex.messages);
    let ex = c.connect_with_advice(json!({"timeout": 0})).await;
    assert_eq!(ex.ok()[0]["error"], json!("402::session_unknown"));
}

/// The same over callback-polling (JSONP GETs with no cookie).
#[tokio::test]
async fn callback_polling_client_without_cookies_works() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let c = Client::without_cookies(&server);
    jsonp::handshake(&c).await;
    assert_eq!(c.cookie(), None);
    jsonp::connect_now(&c).await;
    let id = c.next_id();
    let replies = jsonp::send_batch(
        &c,
        "",
        json!([{"id": id, "channel": "/meta/subscribe", "clientId": c.client_id(), "subscription": "/jsonp"}]),
    )
    .await;
    assert_messages(
        &replies,
        &[
            json!({"id": id, "channel": "/meta/subscribe", "successful": true, "subscription": "/jsonp"}),
        ],
    );
    let publisher = Client::open(&server).await;
    publisher.publish_ok("/jsonp", json!({"n": 1})).await;
    let msgs = jsonp::connect_now(&c).await;
    assert_messages(
        &msgs[..1],
        &[json!({"channel": "/jsonp", "data": {"n": 1}})],
    );
}

/// A client that presents its cookie back is bound to it: from then on a request with its
/// clientId and no cookie (a stolen clientId) finds nothing, nor does another browser's
/// cookie; the owner goes on, and got nothing forged.
#[tokio::test]
async fn session_is_bound_once_its_cookie_comes_back() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let owner = Client::new(&server);
    owner.handshake().await;
    let cid = owner.client_id();

    // Before the owner's first connect, its clientId alone still finds the session.
    let early = Client::without_cookies(&server);
    early.set_client_id(&cid);
    early.publish_ok("/not-subscribed", json!(0)).await;

    owner.first_connect().await;
    owner.subscribe_ok(json!("/bound")).await;
    let thief = Client::without_cookies(&server);
    thief.set_client_id(&cid);
    let other_browser = Client::new(&server);
    other_browser.handshake().await;
    other_browser.set_client_id(&cid);
    for c in [&thief, &other_browser] {
        let ex = c.publish("/bound", json!("forged")).await;
        assert_messages(ex.ok(), &[unknown(&ex.id, "/bound")]);
        let ex = c.disconnect().await;
        assert_messages(ex.ok(), &[unknown(&ex.id, "/meta/disconnect")]);
    }
    let ex = jsonp::send_batch(
        &thief,
        "",
        json!([{"id": "j1", "channel": "/bound", "clientId": cid, "data": "forged"}]),
    )
    .await;
    assert_messages(&ex, &[unknown("j1", "/bound")]);
    assert_messages(&owner.poll_now().await, &[]);
}

/// A browser that already holds a cookie presents it at handshake: bound at once.
#[tokio::test]
async fn cookie_presented_at_handshake_binds_at_once() {
    let server = TestServer::start(&["--timeout", "1000"]).await;
    let first = Client::new(&server);
    first.handshake().await;
    let tab = first.tab();
    tab.handshake().await;
    let thief = Client::without_cookies(&server);
    thief.set_client_id(&tab.client_id());
    let ex = thief.publish("/x", json!(1)).await;
    assert_messages(ex.ok(), &[unknown(&ex.id, "/x")]);
    tab.publish_ok("/x", json!(2)).await;
}

/// `trustClientSession` lifts the check, as documented: another browser's cookie and no
/// cookie both find a bound session.
#[tokio::test]
async fn trust_client_session_still_accepts_any_cookie() {
    let server = TestServer::start(&["--timeout", "1000", "--trust-client-session", "true"]).await;
    let owner = Client::open(&server).await;
    let other_browser = Client::new(&server);
    other_browser.handshake().await;
    other_browser.set_client_id(&owner.client_id());
    other_browser.publish_ok("/x", json!(1)).await;
    let no_cookie = Client::without_cookies(&server);
    no_cookie.set_client_id(&owner.client_id());
    no_cookie.publish_ok("/x", json!(2)).await;
}
