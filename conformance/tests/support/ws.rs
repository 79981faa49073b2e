//! A raw WebSocket client for the websocket transport tests (tokio-tungstenite).
//!
//! Like the HTTP helper it is not a Bayeux client library: a [`WsClient`] sends exactly the frames
//! a test asks for and returns every frame the server sends (text, binary, close, end of stream),
//! so tests can assert on frame boundaries, close codes and exact JSON. Ping/pong control frames
//! are answered by tungstenite and never surface. Every receive is bounded by a deadline.
//!
//! The Bayeux helpers (handshake, connect, subscribe, ...) number messages `"1"`, `"2"`, ... per
//! socket object and use `connectionType: "websocket"`. A client can be moved to a new socket
//! ([`WsClient::reopen`]) keeping its clientId and id counter, which is what the official client
//! does when its socket breaks.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::bayeux::assert_messages;
use super::server::TestServer;

/// Bound for the opening handshake and for any single receive without an explicit bound.
pub const WS_DEADLINE: Duration = Duration::from_secs(5);

/// The stream type of a client socket.
pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One frame (or end of stream) as received from the server.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A text frame, verbatim.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A close frame: `None` when it carried no status code, else `(code, reason)`.
    Close(Option<(u16, String)>),
    /// The stream ended (or failed) without a close frame; the text says how.
    End(String),
}

impl Frame {
    /// The close code, if this is a close frame with one.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Frame::Close(Some((code, _))) => Some(*code),
            _ => None,
        }
    }
}

/// The HTTP response that refused a WebSocket upgrade.
#[derive(Debug)]
pub struct Refused {
    /// HTTP status, e.g. 403.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body as lossy UTF-8 (may be empty).
    pub body: String,
}

/// The `ws://` URL of `server`'s Bayeux endpoint plus `suffix` (e.g. `""` or `"/"`).
pub fn ws_url(addr: SocketAddr, path: &str, suffix: &str) -> String {
    format!("ws://{addr}{path}{suffix}")
}

/// Attempts a WebSocket upgrade at `url` with extra request `headers`.
///
/// Returns the open stream and the 101 response headers (lower-case names), or the refusing
/// HTTP response. Panics on transport errors or when the attempt exceeds [`WS_DEADLINE`].
pub async fn try_upgrade(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Stream, Vec<(String, String)>), Refused> {
    let mut request = url
        .into_client_request()
        .unwrap_or_else(|e| panic!("bad websocket url {url}: {e}"));
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    let Ok(attempt) =
        tokio::time::timeout(WS_DEADLINE, tokio_tungstenite::connect_async(request)).await
    else {
        panic!("websocket upgrade at {url} not answered within {WS_DEADLINE:?}");
    };
    match attempt {
        Ok((stream, response)) => {
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Ok((stream, headers))
        }
        Err(tungstenite::Error::Http(response)) => Err(Refused {
            status: response.status().as_u16(),
            headers: response
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => panic!("websocket upgrade at {url} failed: {e}"),
    }
}

/// A raw websocket connection to the Bayeux endpoint plus the state of one Bayeux client.
pub struct WsClient {
    addr: SocketAddr,
    path: String,
    stream: Stream,
    /// Headers of the 101 response (lower-case names).
    pub upgrade_headers: Vec<(String, String)>,
    client_id: Option<String>,
    next_id: u64,
    /// Every frame received on this socket so far, for failure messages.
    log: Vec<Frame>,
}

impl WsClient {
    /// Opens a socket at the server's mount path (panics if the upgrade is refused).
    pub async fn open(server: &TestServer) -> WsClient {
        WsClient::open_at(server.addr(), server.path(), "", &[]).await
    }

    /// Opens a socket at `path` + `suffix` with extra upgrade `headers`.
    pub async fn open_at(
        addr: SocketAddr,
        path: &str,
        suffix: &str,
        headers: &[(&str, &str)],
    ) -> WsClient {
        let url = ws_url(addr, path, suffix);
        match try_upgrade(&url, headers).await {
            Ok((stream, upgrade_headers)) => WsClient {
                addr,
                path: path.to_string(),
                stream,
                upgrade_headers,
                client_id: None,
                next_id: 1,
                log: Vec::new(),
            },
            Err(refused) => panic!(
                "websocket upgrade at {url} refused: HTTP {} {:?}",
                refused.status, refused.body
            ),
        }
    }

    /// Opens a socket and completes a websocket handshake and first connect.
    pub async fn connected(server: &TestServer) -> WsClient {
        let mut ws = WsClient::open(server).await;
        ws.handshake().await;
        ws.first_connect().await;
        ws
    }

    /// A new socket to the same endpoint carrying this client's clientId and id counter (the
    /// old socket is dropped without a close frame unless the caller closed it first).
    pub async fn reopen(self) -> WsClient {
        let mut fresh = WsClient::open_at(self.addr, &self.path, "", &[]).await;
        fresh.client_id = self.client_id;
        fresh.next_id = self.next_id;
        fresh
    }

    /// A new socket that will speak for the session `client_id` (e.g. after a page reload).
    pub async fn resume(server: &TestServer, client_id: &str) -> WsClient {
        let mut ws = WsClient::open(server).await;
        ws.set_client_id(client_id);
        ws.next_id = 100;
        ws
    }

    /// The value of the 101 response header `name` (case-insensitive).
    pub fn upgrade_header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.upgrade_headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The clientId of the last successful handshake (panics if there is none).
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .expect("this websocket client has no clientId: handshake first")
    }

    /// Makes this socket speak for `cid`.
    pub fn set_client_id(&mut self, cid: &str) {
        self.client_id = Some(cid.to_string());
    }

    /// The next message id (decimal string).
    pub fn next_id(&mut self) -> String {
        let id = self.next_id;
        self.next_id += 1;
        id.to_string()
    }

    /// Sends `text` as one text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text.to_string()))
            .await
            .unwrap_or_else(|e| panic!("sending a text frame failed: {e}"));
    }

    /// Sends `text` as one text frame, ignoring errors (the server may already have closed).
    pub async fn send_text_lossy(&mut self, text: &str) {
        let _ = self.stream.send(Message::text(text.to_string())).await;
    }

    /// Sends `bytes` as one binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.stream
            .send(Message::binary(bytes.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("sending a binary frame failed: {e}"));
    }

    /// Sends `value` (an array of messages, or a bare object) as one text frame.
    pub async fn send(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a close frame with code 1000 and waits (bounded) for the server's close / end.
    pub async fn close(mut self) {
        let _ = self
            .stream
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })))
            .await;
        let deadline = Instant::now() + WS_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => panic!("the server did not complete the close within {WS_DEADLINE:?}"),
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Sends a close frame with code 1000 and drops the connection without waiting for the
    /// server's answer.
    pub async fn close_and_drop(mut self) {
        let _ = self
            .stream
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            })))
            .await;
    }

    /// Sends a close frame with `code` and keeps the socket (to read the server's answer).
    pub async fn send_close(&mut self, code: u16) {
        self.stream
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            })))
            .await
            .unwrap_or_else(|e| panic!("sending a close frame failed: {e}"));
    }

    /// Drops the TCP connection without a close frame.
    pub fn abort(self) {
        drop(self);
    }

    /// The next frame within `within` (ping/pong skipped); panics when nothing arrives in time.
    pub async fn next_frame(&mut self, within: Duration) -> Frame {
        match self.try_next_frame(within).await {
            Some(frame) => frame,
            None => panic!(
                "no frame from the server within {within:?}; frames so far on this socket: {:?}",
                self.log
            ),
        }
    }

    /// The next frame within `within`, or `None` if nothing arrived.
    pub async fn try_next_frame(&mut self, within: Duration) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let item = tokio::time::timeout(left, self.stream.next()).await.ok()?;
            let frame = match item {
                None => Frame::End("end of stream".to_string()),
                Some(Err(e)) => Frame::End(format!("error: {e}")),
                Some(Ok(Message::Text(text))) => Frame::Text(text.as_str().to_string()),
                Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes.to_vec()),
                Some(Ok(Message::Close(close))) => {
                    Frame::Close(close.map(|c| (u16::from(c.code), c.reason.as_str().to_string())))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            };
            self.log.push(frame.clone());
            return Some(frame);
        }
    }

    /// The next frame, which must be a text frame holding a non-empty JSON array of objects
    /// (checklist C1 for websocket); returns its messages.
    pub async fn recv(&mut self, within: Duration) -> Vec<Value> {
        let frame = self.next_frame(within).await;
        frame_messages(&frame)
    }

    /// Receives frames until one contains a message whose `id` is `id` and which is a reply
    /// (has `successful`); returns every message received on the way, reply included, in order.
    pub async fn recv_until_reply(&mut self, id: &str, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = match self.try_next_frame(left).await {
                Some(frame) => frame,
                None => panic!(
                    "no reply with id {id:?} within {within:?}; received on the way: {}",
                    Value::Array(got)
                ),
            };
            let msgs = frame_messages(&frame);
            let done = msgs
                .iter()
                .any(|m| m["id"] == json!(id) && m.get("successful").is_some());
            got.extend(msgs);
            if done {
                return got;
            }
        }
    }

    /// Receives text frames until `count` messages arrived in total; returns the frames.
    pub async fn recv_messages(&mut self, count: usize, within: Duration) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + within;
        let mut frames: Vec<Vec<Value>> = Vec::new();
        while frames.iter().map(Vec::len).sum::<usize>() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_next_frame(left).await {
                Some(frame) => frames.push(frame_messages(&frame)),
                None => {
                    panic!("expected {count} messages within {within:?}, got frames {frames:?}")
                }
            }
        }
        frames
    }

    /// Asserts that no frame arrives within `d`.
    pub async fn assert_silent_for(&mut self, d: Duration) {
        if let Some(frame) = self.try_next_frame(d).await {
            panic!("expected no frame for {d:?}, got {frame:?}");
        }
    }

    /// Waits for the server to close the socket; returns the close frame's code (`None` if the
    /// close frame had no code). Panics if a data frame or a bare end of stream comes first.
    pub async fn expect_close(&mut self, within: Duration) -> Option<u16> {
        match self.next_frame(within).await {
            Frame::Close(code) => code.map(|(c, _)| c),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Bayeux helpers

    /// The websocket handshake message.
    pub fn handshake_message(id: &str) -> Value {
        json!({
            "id": id,
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["websocket", "long-polling", "callback-polling"],
            "advice": {"timeout": 60000, "interval": 0}
        })
    }

    /// Sends a handshake as the next frame and expects a frame holding exactly its successful
    /// reply; stores the clientId and returns the reply.
    pub async fn handshake(&mut self) -> Value {
        let id = self.next_id();
        self.send(&json!([WsClient::handshake_message(&id)])).await;
        let msgs = self.recv(WS_DEADLINE).await;
        assert_eq!(msgs.len(), 1, "handshake reply frame: {msgs:?}");
        let reply = msgs[0].clone();
        assert_eq!(reply["id"], json!(id), "handshake reply: {reply}");
        assert_eq!(
            reply["successful"],
            json!(true),
            "handshake failed: {reply}"
        );
        let cid = reply["clientId"]
            .as_str()
            .unwrap_or_else(|| panic!("handshake reply without clientId: {reply}"));
        self.client_id = Some(cid.to_string());
        reply
    }

    /// A `/meta/connect` message for this client.
    pub fn connect_message(&self, id: &str, advice: Option<Value>) -> Value {
        let mut msg = json!({
            "id": id,
            "channel": "/meta/connect",
            "connectionType": "websocket",
            "clientId": self.client_id(),
        });
        if let Some(advice) = advice {
            msg["advice"] = advice;
        }
        msg
    }

    /// Sends `/meta/connect` with `advice` (none: a normal, held connect); returns its id.
    pub async fn send_connect(&mut self, advice: Option<Value>) -> String {
        let id = self.next_id();
        let msg = self.connect_message(&id, advice);
        self.send(&json!([msg])).await;
        id
    }

    /// Sends a connect with `advice:{timeout:0}` and returns every message up to and including
    /// its reply (which must be successful and come last).
    pub async fn connect_now(&mut self) -> Vec<Value> {
        let id = self.send_connect(Some(json!({"timeout": 0}))).await;
        let msgs = self.recv_until_reply(&id, WS_DEADLINE).await;
        let last = msgs.last().cloned().unwrap_or_default();
        assert_eq!(
            last["id"],
            json!(id),
            "connect reply must come last: {msgs:?}"
        );
        assert_eq!(last["successful"], json!(true), "connect failed: {last}");
        msgs
    }

    /// The first connect after the handshake (asserted successful, nothing else received).
    pub async fn first_connect(&mut self) -> Value {
        let msgs = self.connect_now().await;
        assert_eq!(msgs.len(), 1, "first connect: unexpected messages {msgs:?}");
        msgs[0].clone()
    }

    /// Sends one non-connect message (the clientId is added) and returns every message up to and
    /// including its reply.
    pub async fn request(&mut self, mut msg: Value) -> Vec<Value> {
        let id = self.next_id();
        msg["id"] = json!(id);
        msg["clientId"] = json!(self.client_id());
        self.send(&json!([msg])).await;
        self.recv_until_reply(&id, WS_DEADLINE).await
    }

    /// Subscribes and asserts the exact successful reply arrives alone.
    pub async fn subscribe_ok(&mut self, subscription: Value) {
        let id = self.peek_id();
        let msgs = self
            .request(json!({"channel": "/meta/subscribe", "subscription": subscription}))
            .await;
        assert_messages(
            &msgs,
            &[json!({
                "id": id,
                "channel": "/meta/subscribe",
                "subscription": subscription,
                "successful": true,
            })],
        );
    }

    /// Publishes `data` on `channel` (the client must not be subscribed to it) and asserts the
    /// exact reply arrives alone.
    pub async fn publish_ok(&mut self, channel: &str, data: Value) {
        let id = self.peek_id();
        let msgs = self
            .request(json!({"channel": channel, "data": data}))
            .await;
        assert_messages(
            &msgs,
            &[json!({"id": id, "channel": channel, "successful": true})],
        );
    }

    /// The id the next message will get.
    pub fn peek_id(&self) -> String {
        self.next_id.to_string()
    }
}

/// The messages of a text frame holding a non-empty JSON array of objects; panics otherwise.
#[track_caller]
pub fn frame_messages(frame: &Frame) -> Vec<Value> {
    let text = match frame {
        Frame::Text(text) => text,
        other => panic!("expected a text frame holding a JSON array, got {other:?}"),
    };
    match bayeux_message::parse_json(text.as_bytes()) {
        Ok(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_object) => items,
        _ => panic!("C1: a websocket text frame must hold a non-empty JSON array, got {text:?}"),
    }
}
