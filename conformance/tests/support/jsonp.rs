//! Helpers for the callback-polling (JSONP) transport: building `GET ...?jsonp=cb&message=...`
//! requests and unwrapping `cb([...])` responses.
//!
//! Requests go through [`Client::send`], so the browser cookie is sent and stored exactly as for
//! long-polling. Nothing here retries or reorders; the response is returned as the server sent it.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::bayeux::Client;
use super::http::{Request, Response};

/// The exact Content-Type of a JSONP response (contract).
pub const JSONP_CONTENT_TYPE: &str = "text/javascript;charset=UTF-8";

/// Percent-encodes `s` like JavaScript's `encodeURIComponent` (what the official client does).
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request target `<path><suffix>?<param>=<callback>&message=<m1>&message=<m2>...`, each value
/// percent-encoded with [`encode_component`].
pub fn jsonp_target(
    client: &Client,
    suffix: &str,
    param: &str,
    callback: &str,
    messages: &[Value],
) -> String {
    let mut target = format!(
        "{}?{}={}",
        client.url(suffix),
        encode_component(param),
        encode_component(callback)
    );
    for m in messages {
        target.push_str("&message=");
        target.push_str(&encode_component(&m.to_string()));
    }
    target
}

/// Sends `GET <target>` with `client`'s cookie and returns the raw response.
pub async fn get(client: &Client, target: &str) -> Response {
    client.send(Request::new("GET", target)).await
}

/// Sends one JSONP GET with callback parameter `jsonp` and one `message` parameter per element of
/// `messages` (each a JSON array or object).
pub async fn jsonp_get(
    client: &Client,
    suffix: &str,
    callback: &str,
    messages: &[Value],
) -> Response {
    get(
        client,
        &jsonp_target(client, suffix, "jsonp", callback, messages),
    )
    .await
}

/// Asserts a JSONP success response exactly: HTTP 200, Content-Type `text/javascript;charset=UTF-8`,
/// body `<callback>(<non-empty JSON array of objects>)` with nothing before or after. Returns
/// the messages.
#[track_caller]
pub fn unwrap_jsonp(resp: &Response, callback: &str) -> Vec<Value> {
    let body = resp.text();
    assert_eq!(
        resp.status, 200,
        "JSONP: expected HTTP 200, got {} {body:?}",
        resp.status
    );
    assert_eq!(
        resp.header("Content-Type"),
        Some(JSONP_CONTENT_TYPE),
        "JSONP response Content-Type (body {body:?})"
    );
    let inner = body
        .strip_prefix(&format!("{callback}("))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| {
            panic!("C56: JSONP body must be exactly `{callback}([...])`, got {body:?}")
        });
    match bayeux_message::parse_json(inner.as_bytes()) {
        Ok(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_object) => items,
        _ => panic!("C1: the JSONP callback argument must be a non-empty JSON array, got {body:?}"),
    }
}

/// A JSONP handshake message (the JS client's shape, listing callback-polling).
pub fn handshake_message(id: &str) -> Value {
    json!({
        "id": id,
        "channel": "/meta/handshake",
        "version": "1.0",
        "minimumVersion": "1.0",
        "supportedConnectionTypes": ["callback-polling"],
        "advice": {"timeout": 60000, "interval": 0}
    })
}

/// A `/meta/connect` over callback-polling for `client`'s session.
pub fn connect_message(client: &Client, id: &str, advice: Option<Value>) -> Value {
    let mut msg = json!({
        "id": id,
        "channel": "/meta/connect",
        "connectionType": "callback-polling",
        "clientId": client.client_id(),
    });
    if let Some(advice) = advice {
        msg["advice"] = advice;
    }
    msg
}

/// Handshakes over JSONP (callback `_cometd_jsonp_<id>`), asserts success, stores the clientId
/// and returns the reply.
pub async fn handshake(client: &Client) -> Value {
    let id = client.next_id();
    let callback = format!("_cometd_jsonp_{id}");
    let resp = jsonp_get(
        client,
        "/handshake",
        &callback,
        &[json!([handshake_message(&id)])],
    )
    .await;
    let msgs = unwrap_jsonp(&resp, &callback);
    assert_eq!(msgs.len(), 1, "JSONP handshake reply: {msgs:?}");
    let reply = msgs[0].clone();
    assert_eq!(
        reply["successful"],
        json!(true),
        "JSONP handshake failed: {reply}"
    );
    assert_eq!(reply["id"], json!(id), "{reply}");
    let cid = reply["clientId"]
        .as_str()
        .unwrap_or_else(|| panic!("handshake reply without clientId: {reply}"));
    client.set_client_id(cid);
    reply
}

/// Sends one batch (one `message` parameter) over JSONP and returns the unwrapped messages.
pub async fn send_batch(client: &Client, suffix: &str, batch: Value) -> Vec<Value> {
    let callback = format!("_cometd_jsonp_b{}", client.next_id());
    let resp = jsonp_get(client, suffix, &callback, &[batch]).await;
    unwrap_jsonp(&resp, &callback)
}

/// Sends a connect with `advice:{timeout:0}` over JSONP; returns the messages (the connect
/// reply last, asserted successful).
pub async fn connect_now(client: &Client) -> Vec<Value> {
    let id = client.next_id();
    let msg = connect_message(client, &id, Some(json!({"timeout": 0})));
    let msgs = send_batch(client, "/connect", json!([msg])).await;
    let last = msgs.last().cloned().unwrap_or_default();
    assert_eq!(
        last["id"],
        json!(id),
        "connect reply must come last: {msgs:?}"
    );
    assert_eq!(
        last["successful"],
        json!(true),
        "JSONP connect failed: {last}"
    );
    msgs
}

/// A JSONP request running in the background (a held connect).
pub struct PendingJsonp {
    /// The `id` of the message sent.
    pub id: String,
    /// The callback name used.
    pub callback: String,
    started: Instant,
    handle: JoinHandle<Response>,
}

impl PendingJsonp {
    /// Asserts that no response arrives within `d`.
    pub async fn assert_pending_for(&mut self, d: Duration) {
        if let Ok(done) = tokio::time::timeout(d, &mut self.handle).await {
            let resp = done.expect("request task panicked");
            panic!(
                "expected the JSONP request (id {:?}) to be held, but it was answered after \
                 {:?}: HTTP {} {}",
                self.id,
                self.started.elapsed(),
                resp.status,
                resp.text()
            );
        }
    }

    /// Waits (bounded by `within`) for the response; returns it and the time since the start.
    pub async fn finish(self, within: Duration) -> (Response, Duration) {
        let started = self.started;
        let resp = tokio::time::timeout(within, self.handle)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the held JSONP request (id {:?}) was not answered within {within:?}",
                    self.id
                )
            })
            .expect("request task panicked");
        (resp, started.elapsed())
    }

    /// Closes the connection without reading the response (a tab closed mid-poll); returns once
    /// the socket is closed.
    pub async fn abandon(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Starts a held `/meta/connect` (no advice) over JSONP in the background.
pub async fn start_connect(client: &Client) -> PendingJsonp {
    let id = client.next_id();
    let msg = connect_message(client, &id, None);
    start_batch(client, id, json!([msg])).await
}

/// Starts sending `batch` (whose main message has `id`) over JSONP in the background; returns
/// once the request is written.
pub async fn start_batch(client: &Client, id: String, batch: Value) -> PendingJsonp {
    let callback = format!("_cometd_jsonp_c{id}");
    let target = jsonp_target(client, "/connect", "jsonp", &callback, &[batch]);
    let started = Instant::now();
    let handle = client.spawn_send(Request::new("GET", &target)).await;
    PendingJsonp {
        id,
        callback,
        started,
        handle,
    }
}
