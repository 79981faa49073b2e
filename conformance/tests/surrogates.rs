//! JSON text as JavaScript writes it: a string with an unpaired UTF-16 surrogate is written by
//! `JSON.stringify` as an escape (`"\ud83d"`), valid JSON that a strict parser refuses. Every
//! transport accepts it, and what subscribers get back is the same escape, byte for byte; in
//! channel names and ids it is refused like any other invalid character, and echoed intact.
//! The bodies here are raw text: serde_json values cannot hold a lone surrogate.

mod support;

use std::time::Duration;

use serde_json::json;
use support::http::{self, Request};
use support::jsonp::{encode_component, unwrap_jsonp};
use support::ws::{Frame, WsClient};
use support::{Client, TestServer};

/// A chat message cut in the middle of an emoji, as `JSON.stringify` writes it.
const CUT: &str = r#""half an emoji: \ud83d, the other half: \ude00, a pair: \ud83d\ude00""#;

/// The same string as the server writes it: the lone halves as the same escapes, the pair as
/// the character it makes (what `JSON.parse` reads is identical).
const CUT_OUT: &str = r#""half an emoji: \ud83d, the other half: \ude00, a pair: 😀""#;

/// POSTs `body` verbatim with the client's cookie; returns status and text.
async fn post_raw(client: &Client, body: &str) -> (u16, String) {
    let mut req = Request::new("POST", &client.url(""))
        .header("Content-Type", "application/json;charset=UTF-8")
        .body(body.as_bytes().to_vec());
    if let Some(cookie) = client.cookie() {
        req = req.header("Cookie", &format!("BAYEUX_BROWSER={cookie}"));
    }
    let resp = http::send(client.addr(), &req, None)
        .await
        .expect("answered");
    (resp.status, resp.text())
}

async fn subscribed(server: &TestServer, channel: &str) -> Client {
    let client = Client::open(server).await;
    client.subscribe_ok(json!(channel)).await;
    client
}

#[tokio::test]
async fn long_polling_keeps_lone_surrogates_from_publisher_to_subscriber() {
    let server = TestServer::start(&[]).await;
    let subscriber = subscribed(&server, "/chat").await;
    let publisher = Client::open(&server).await;
    let cid = publisher.client_id();
    // Batched with a connect: nothing in the batch is lost to the escape.
    let (status, text) = post_raw(
        &publisher,
        &format!(
            r#"[{{"id":"7","channel":"/chat","clientId":"{cid}","data":{CUT},"ext":{{"note":"\udfff"}}}},
               {{"id":"8","channel":"/meta/connect","clientId":"{cid}","connectionType":"long-polling","advice":{{"timeout":0}}}}]"#
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(r#"{"channel":"/chat","id":"7","successful":true}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""channel":"/meta/connect","id":"8","successful":true"#),
        "{text}"
    );
    let id = subscriber.next_id();
    let req = Request::post_json(
        &subscriber.url(""),
        &json!([subscriber.connect_message(&id, Some(json!({"timeout": 0})))]),
    );
    let resp = subscriber.send(req).await;
    let delivered = resp.text();
    assert!(
        delivered.contains(&format!(r#""data":{CUT_OUT}"#)),
        "the same string: {delivered}"
    );
    assert!(
        delivered.contains(r#""ext":{"note":"\udfff"}"#),
        "{delivered}"
    );
}

#[tokio::test]
async fn lone_surrogates_in_channels_and_ids_are_refused_and_echoed_intact() {
    let server = TestServer::start(&[]).await;
    let client = Client::open(&server).await;
    let cid = client.client_id();
    let (status, text) = post_raw(
        &client,
        &format!(r#"[{{"id":"1","channel":"/chat/\ud83d","clientId":"{cid}","data":1}}]"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        text,
        r#"[{"channel":"/chat/\ud83d","id":"1","successful":false,"error":"405::channel_invalid"}]"#
    );
    let (_, text) = post_raw(
        &client,
        &format!(r#"[{{"id":"\udc00","channel":"/chat","clientId":"{cid}","data":1}}]"#),
    )
    .await;
    assert_eq!(
        text,
        r#"[{"channel":"/chat","id":"\udc00","successful":false,"error":"405::message_id_invalid"}]"#
    );
    let (_, text) = post_raw(
        &client,
        &format!(
            r#"[{{"id":"2","channel":"/meta/subscribe","clientId":"{cid}","subscription":"/a/\udbff"}}]"#
        ),
    )
    .await;
    assert_eq!(
        text,
        r#"[{"channel":"/meta/subscribe","id":"2","successful":false,"error":"403::subscription_invalid","subscription":"/a/\udbff"}]"#
    );
    // Broken escapes are still malformed JSON.
    let (status, _) = post_raw(&client, r#"[{"channel":"/chat","data":"\ud8"}]"#).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn websocket_keeps_lone_surrogates_from_publisher_to_subscriber() {
    let server = TestServer::start(&[]).await;
    let mut subscriber = WsClient::connected(&server).await;
    let sid = subscriber.client_id();
    subscriber
        .send(&json!([{"id": "s", "channel": "/meta/subscribe", "clientId": sid, "subscription": "/chat"}]))
        .await;
    subscriber
        .recv_until_reply("s", Duration::from_secs(5))
        .await;
    let mut publisher = WsClient::connected(&server).await;
    let pid = publisher.client_id();
    publisher
        .send_text(&format!(
            r#"[{{"id":"p","channel":"/chat","clientId":"{pid}","data":{CUT}}}]"#
        ))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match subscriber.next_frame(left).await {
            Frame::Text(text) if text.contains(r#""channel":"/chat""#) => {
                assert_eq!(text, format!(r#"[{{"channel":"/chat","data":{CUT_OUT}}}]"#));
                break;
            }
            Frame::Text(_) => {}
            other => panic!("no delivery: {other:?}"),
        }
    }
}

#[tokio::test]
async fn callback_polling_keeps_lone_surrogates() {
    let server = TestServer::start(&[]).await;
    let subscriber = subscribed(&server, "/chat").await;
    let publisher = Client::open(&server).await;
    let cid = publisher.client_id();
    // As the official client sends it: JSON.stringify, then encodeURIComponent.
    let message = format!(r#"[{{"id":"9","channel":"/chat","clientId":"{cid}","data":{CUT}}}]"#);
    let target = format!(
        "{}?jsonp=cb&message={}",
        publisher.url(""),
        encode_component(&message)
    );
    let resp = publisher.send(Request::new("GET", &target)).await;
    let replies = unwrap_jsonp(&resp, "cb");
    assert_eq!(
        replies,
        [json!({"channel": "/chat", "id": "9", "successful": true})]
    );
    let id = subscriber.next_id();
    let req = Request::post_json(
        &subscriber.url(""),
        &json!([subscriber.connect_message(&id, Some(json!({"timeout": 0})))]),
    );
    let delivered = subscriber.send(req).await.text();
    assert!(
        delivered.contains(&format!(r#""data":{CUT_OUT}"#)),
        "{delivered}"
    );
}
