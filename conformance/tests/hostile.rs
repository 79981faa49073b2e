//! A catalogue of hostile inputs, each checked for its exact answer and for its (lack of)
//! effect on everybody else.
//!
//! Every case
//! 1. sends one bad input (a body, a request, a frame, some raw bytes, an abandoned socket),
//! 2. asserts the exact answer: the HTTP status and the server's text body, or the complete
//!    JSON replies, or the websocket close code and reason,
//! 3. then asserts that a brand-new client can still handshake, over long-polling and over
//!    websocket,
//! 4. and that a [`Witness`] session, opened before the first case, still receives a publish
//!    exactly (nothing lost, nothing extra: a bad input that leaked a publish onto the witness
//!    channel would show up here).
//!
//! Cases are tables of `(name, input, expected)`; one `#[tokio::test]` per category runs its
//! table against one server. A failing case does not stop the others: each runs in its own task
//! and the test fails at the end listing every failed case by name, with its panic message.
//!
//! The answers promised are those of `docs/security.md`; where the server's answer is a
//! framework's (actix-web refusing a malformed request line, say), the case pins what is sent.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::http::{self, Request, Response};
use support::jsonp::{self, encode_component, unwrap_jsonp};
use support::ws::{WsClient, WS_DEADLINE};
use support::{assert_messages, check_client_id, Client, TestServer, Witness};

/// Content type of the server's own error bodies.
const TEXT: &str = "text/plain;charset=UTF-8";
/// Content type of long-polling replies.
const JSON: &str = "application/json;charset=UTF-8";
/// The witness channel: no case may get anything onto it.
const WITNESS_CHANNEL: &str = "/witness";
/// Bound for one case, its answer and the health checks after it.
const CASE_DEADLINE: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// =============================================================================================
// The world a category runs in, and the health check after every case

/// One server, the witness, and the attacker's own long-polling session.
struct World {
    server: TestServer,
    witness: Witness,
    /// A session of the attacker's own browser (its own cookie), used to send most inputs.
    attacker: Client,
}

impl World {
    async fn start(args: &[&str]) -> Arc<World> {
        let server = TestServer::start(args).await;
        let witness = Witness::new(&server, WITNESS_CHANNEL).await;
        let attacker = Client::open(&server).await;
        Arc::new(World {
            server,
            witness,
            attacker,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The attacker's clientId.
    fn cid(&self) -> String {
        self.attacker.client_id()
    }

    /// Steps 3 and 4: a fresh handshake over long-polling and websocket works, and the witness
    /// session receives exactly one new publish.
    async fn assert_healthy(&self) {
        let fresh = Client::new(&self.server);
        fresh.handshake().await;
        let mut ws = WsClient::open(&self.server).await;
        ws.handshake().await;
        close_ws(ws).await;
        self.witness.assert_alive().await;
        // The attacker's own session is fine too (and kept alive: it is not subscribed to
        // anything, so nothing may be queued for it).
        assert_messages(&self.attacker.poll_now().await, &[]);
    }
}

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send>>;
/// A case that sends its input and asserts the answer itself.
type CustomFn = fn(Arc<World>) -> BoxFut;

/// Wraps an `async fn(Arc<World>)` as a [`CustomFn`].
macro_rules! custom {
    ($f:path) => {
        Input::Custom(|w| -> BoxFut { Box::pin($f(w)) })
    };
}

/// What a case sends.
enum Input {
    /// A POST to the mount path with this Content-Type (`None`: no header) and body, with the
    /// attacker's cookie.
    Post(Option<&'static str>, Vec<u8>),
    /// A JSON batch POSTed as `application/json` with the attacker's cookie.
    Batch(Value),
    /// Any request, with the attacker's cookie.
    Request(Request),
    /// Any request, with no cookie at all.
    NoCookie(Request),
    /// These bytes verbatim on a new connection; one response is read.
    Raw(Vec<u8>),
    /// A GET of the mount path with this query string (after `?`), with the attacker's cookie.
    Query(String),
    /// A text frame on a new websocket whose session handshook first (`$CID` in the text is
    /// replaced by its clientId); after the answer the session must still be usable.
    WsText(String),
    /// A binary frame on a new, handshaken websocket.
    WsBinary(Vec<u8>),
    /// Raw bytes on a freshly upgraded connection (no Bayeux handshake).
    WsRaw(Vec<u8>),
    /// The case sends and checks by itself.
    Custom(CustomFn),
}

/// What a case must get back.
enum Expect {
    /// An HTTP error written by the server: this status, `text/plain;charset=UTF-8`, exactly
    /// this body, and no `Set-Cookie`.
    Error(u16, &'static str),
    /// Like [`Expect::Error`] for a body that is not a constant.
    ErrorText(u16, String),
    /// An HTTP answer of the web framework (not the Bayeux endpoint): status and exact body.
    Framework(u16, &'static str),
    /// HTTP 200 `application/json;charset=UTF-8` holding exactly these messages (any `clientId`
    /// value is checked with [`check_client_id`] and compared as `"*"`).
    Replies(Vec<Value>),
    /// HTTP 200 `text/javascript;charset=UTF-8`, `callback([...])` with exactly these messages.
    Jsonp(&'static str, Vec<Value>),
    /// The websocket is closed with this code and reason.
    Close(u16, &'static str),
    /// One websocket text frame holding exactly these messages; the socket stays open.
    Frame(Vec<Value>),
    /// No answer at all, and the socket stays open: the next publish's reply is the next frame.
    Ignored,
    /// Checked by the [`Input::Custom`] itself.
    Checked,
}

struct Case {
    name: String,
    input: Input,
    expect: Expect,
}

fn case(name: impl Into<String>, input: Input, expect: Expect) -> Case {
    Case {
        name: name.into(),
        input,
        expect,
    }
}

/// Runs every case of a category (each in its own task, in order) and fails at the end with
/// the names and messages of all failed cases.
async fn run_catalogue(category: &str, world: Arc<World>, cases: Vec<Case>) {
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let name = case.name.clone();
        let w = Arc::clone(&world);
        let task = tokio::spawn(async move {
            let run = async {
                run_case(&w, case).await;
                w.assert_healthy().await;
            };
            if tokio::time::timeout(CASE_DEADLINE, run).await.is_err() {
                panic!("no answer (or no healthy server) within {CASE_DEADLINE:?}");
            }
        });
        if let Err(err) = task.await {
            let why = match err.try_into_panic() {
                Ok(payload) => payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "non-string panic".into()),
                Err(err) => err.to_string(),
            };
            eprintln!("FAILED {category} / {name}: {why}");
            failures.push(format!("  - {name}: {why}"));
        }
    }
    eprintln!(
        "{category}: {} of {total} cases passed",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{category}: {} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

async fn run_case(w: &Arc<World>, case: Case) {
    let Case { input, expect, .. } = case;
    let addr = w.addr();
    let attacker = &w.attacker;
    let resp = match input {
        Input::Post(content_type, body) => {
            let mut req = Request::new("POST", &attacker.url("/"));
            if let Some(ct) = content_type {
                req = req.header("Content-Type", ct);
            }
            attacker.send(req.body(body)).await
        }
        Input::Batch(batch) => {
            attacker
                .send(Request::post_json(&attacker.url("/"), &batch))
                .await
        }
        Input::Request(req) => attacker.send(req).await,
        Input::NoCookie(req) => http::send(addr, &req, None)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}")),
        Input::Raw(bytes) => http::send_bytes(addr, &bytes, None)
            .await
            .unwrap_or_else(|e| panic!("no HTTP answer to the raw bytes: {e}")),
        Input::Query(query) => {
            attacker
                .send(Request::new(
                    "GET",
                    &format!("{}?{query}", attacker.url("/")),
                ))
                .await
        }
        Input::WsText(text) => return ws_case(w, WsInput::Text(text), expect).await,
        Input::WsBinary(bytes) => return ws_case(w, WsInput::Binary(bytes), expect).await,
        Input::WsRaw(bytes) => {
            let mut raw = RawWs::open(addr, w.server.path()).await;
            raw.send(&bytes).await;
            let Expect::Close(code, reason) = expect else {
                panic!("a raw websocket case expects a close");
            };
            assert_eq!(raw.expect_close().await, (code, reason.to_string()));
            return;
        }
        Input::Custom(f) => {
            assert!(matches!(expect, Expect::Checked), "custom cases check");
            return f(Arc::clone(w)).await;
        }
    };
    check_http(&resp, expect);
}

#[track_caller]
fn check_http(resp: &Response, expect: Expect) {
    let body = resp.text();
    match expect {
        Expect::Error(status, text) => check_error(resp, status, text),
        Expect::ErrorText(status, text) => check_error(resp, status, &text),
        Expect::Framework(status, text) => {
            assert_eq!(
                (resp.status, body.as_str()),
                (status, text),
                "framework answer"
            );
            assert!(resp.headers_named("Set-Cookie").is_empty(), "{resp:?}");
        }
        Expect::Replies(want) => {
            assert_eq!(resp.status, 200, "expected HTTP 200, got body {body:?}");
            assert_eq!(resp.header("Content-Type"), Some(JSON), "{body}");
            let got = match serde_json::from_str::<Value>(&body) {
                Ok(Value::Array(items)) => items,
                _ => panic!("expected a JSON array, got {body:?}"),
            };
            assert_messages(&normalize(got), &want);
        }
        Expect::Jsonp(callback, want) => {
            assert_messages(&normalize(unwrap_jsonp(resp, callback)), &want);
        }
        Expect::Close(..) | Expect::Frame(_) | Expect::Ignored => {
            panic!("an HTTP case cannot expect a websocket outcome")
        }
        Expect::Checked => {}
    }
}

/// Asserts a server error response exactly: status, text/plain, body, no cookie set.
#[track_caller]
fn check_error(resp: &Response, status: u16, text: &str) {
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (status, text),
        "status and body"
    );
    assert_eq!(
        resp.header("Content-Type"),
        Some(TEXT),
        "error content type"
    );
    assert!(
        resp.headers_named("Set-Cookie").is_empty(),
        "a refused request must not set a cookie: {:?}",
        resp.headers
    );
}

/// Replaces every `clientId` string (after checking its shape) by `"*"`.
fn normalize(mut msgs: Vec<Value>) -> Vec<Value> {
    for msg in &mut msgs {
        if let Some(Value::String(cid)) = msg.get_mut("clientId") {
            check_client_id(cid);
            *cid = "*".into();
        }
    }
    msgs
}

/// The handshake reply of this server (`--timeout` in ms), clientId normalized.
fn handshake_reply(id: &str, timeout: u64) -> Value {
    json!({
        "id": id, "channel": "/meta/handshake", "successful": true, "clientId": "*",
        "version": "1.0", "minimumVersion": "1.0",
        "supportedConnectionTypes": ["websocket", "long-polling", "callback-polling"],
        "advice": {"reconnect": "retry", "interval": 0, "timeout": timeout},
    })
}

fn failed(channel: &str, id: &str, error: &str) -> Value {
    json!({"id": id, "channel": channel, "successful": false, "error": error})
}

fn unknown_session_connect(id: &str) -> Value {
    json!({
        "id": id, "channel": "/meta/connect", "successful": false,
        "error": "402::session_unknown", "advice": {"reconnect": "handshake", "interval": 0},
    })
}

// =============================================================================================
// Websocket plumbing

enum WsInput {
    Text(String),
    Binary(Vec<u8>),
}

/// Opens a handshaken websocket, sends `input`, checks `expect`; after a close, the session
/// must survive: a new socket resumes it and its connect succeeds.
async fn ws_case(w: &World, input: WsInput, expect: Expect) {
    let mut ws = WsClient::connected(&w.server).await;
    let cid = ws.client_id();
    match input {
        WsInput::Text(text) => ws.send_text_lossy(&text.replace("$CID", &cid)).await,
        WsInput::Binary(bytes) => ws.send_binary(&bytes).await,
    }
    match expect {
        Expect::Close(code, reason) => {
            let frame = ws.next_frame(WS_DEADLINE).await;
            assert_eq!(
                frame,
                support::ws::Frame::Close(Some((code, reason.to_string()))),
                "close frame"
            );
            let mut again = WsClient::resume(&w.server, &cid).await;
            again.connect_now().await;
            close_ws(again).await;
        }
        Expect::Frame(want) => {
            let got = ws.recv(WS_DEADLINE).await;
            assert_messages(&normalize(got), &want);
            // The socket is still usable.
            ws.publish_ok("/hostile/ws/after", json!("still open"))
                .await;
            close_ws(ws).await;
        }
        Expect::Ignored => {
            ws.publish_ok("/hostile/ws/after", json!("still open"))
                .await;
            close_ws(ws).await;
        }
        _ => panic!("a websocket case expects a close, a frame or nothing"),
    }
}

/// Closes a websocket with 1000 and waits for the server's close frame (not for the TCP close,
/// which actix leaves to the client).
async fn close_ws(mut ws: WsClient) {
    ws.send_close(1000).await;
    assert_eq!(
        ws.expect_close(WS_DEADLINE).await,
        Some(1000),
        "close answered"
    );
}

/// A websocket spoken byte by byte: the upgrade by hand, then any frame, masked or not.
struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    async fn open(addr: SocketAddr, path: &str) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let upgrade = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(upgrade.as_bytes()).await.expect("write");
        let mut raw = RawWs {
            stream,
            buf: Vec::new(),
        };
        let head = raw.read_until_head().await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade refused: {head:?}"
        );
        raw
    }

    async fn read_until_head(&mut self) -> String {
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..pos + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(WS_DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("the server sent nothing within the deadline")
            .unwrap_or(0);
        assert!(
            n > 0,
            "the connection ended without a close frame (buffered {:?})",
            self.buf
        );
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn send(&mut self, bytes: &[u8]) {
        // The server may close before reading everything; its answer is what counts.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads server frames until a close frame; returns its code and reason.
    async fn expect_close(&mut self) -> (u16, String) {
        loop {
            while self.buf.len() < 2 {
                self.fill().await;
            }
            let opcode = self.buf[0] & 0x0f;
            let (len, header) = match self.buf[1] & 0x7f {
                126 => {
                    while self.buf.len() < 4 {
                        self.fill().await;
                    }
                    (
                        usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                        4,
                    )
                }
                127 => panic!("unexpected huge frame from the server"),
                n => (usize::from(n), 2),
            };
            while self.buf.len() < header + len {
                self.fill().await;
            }
            let frame: Vec<u8> = self.buf.drain(..header + len).collect();
            let payload = &frame[header..];
            if opcode == 0x8 {
                assert!(payload.len() >= 2, "close frame without a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
            }
        }
    }
}

/// One websocket frame: `first` is FIN/RSV/opcode, the payload is masked with `mask` if given.
fn ws_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame, as every client frame must be.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    ws_frame(first, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

const FIN: u8 = 0x80;
const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_PING: u8 = 0x9;

// =============================================================================================
// Small builders

fn nested_arrays(depth: usize) -> Vec<u8> {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

/// A publish to the witness channel whose `data` nests `depth` objects.
fn deep_publish(cid: &str, depth: usize) -> Vec<u8> {
    format!(
        r#"[{{"id":"1","channel":"{WITNESS_CHANNEL}","clientId":"{cid}","data":{}1{}}}]"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    )
    .into_bytes()
}

/// A clientId of the same length and alphabet as `like`, that no session has.
fn forged_id(like: &str) -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ 0x9e37_79b9_7f4a_7c15;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed | 1;
    (0..like.len())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize] as char
        })
        .collect()
}

// =============================================================================================
// Category 1: long-polling bodies, content types, methods, sizes, huge batches

#[tokio::test]
async fn hostile_long_polling_bodies() {
    let w = World::start(&["--timeout", "2000"]).await;
    let cid = w.cid();
    let wc = WITNESS_CHANNEL;
    let valid_publish = json!({"id": "1", "channel": wc, "data": "leak", "clientId": cid});
    let json_ct = Some("application/json;charset=UTF-8");
    let post = |body: &[u8]| Input::Post(json_ct, body.to_vec());
    let truncated_publish =
        format!(r#"[{{"id":"1","channel":"{wc}","data":"leak","clientId":"{cid}""#);
    let over_limit = {
        // 1 MiB + 1 KiB: one publish to the witness channel, just over --max-message-size.
        let fill = "x".repeat(1024 * 1024 + 1024);
        json!([{"id": "1", "channel": wc, "data": fill, "clientId": cid}]).to_string()
    };
    // A publish to the witness channel up to its `data` value.
    let invalid_utf8_prefix = format!(r#"[{{"id":"1","channel":"{wc}","clientId":"{cid}","data":"#);
    let hundred_thousand_empty = format!("[{}{{}}]", "{},".repeat(99_999));

    let cases = vec![
        // -- malformed and truncated JSON: 400, nothing processed
        case(
            "truncated handshake",
            post(br#"[{"channel":"/meta/handshake","version":"1.0""#),
            Expect::Error(
                400,
                "malformed JSON: EOF while parsing an object at line 1 column 45",
            ),
        ),
        case(
            "truncated publish to the witness channel",
            post(truncated_publish.as_bytes()),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: EOF while parsing an object at line 1 column {}",
                    truncated_publish.len()
                ),
            ),
        ),
        case(
            "truncated after a key",
            post(br#"[{"channel":"#),
            Expect::Error(400, "malformed JSON: EOF while parsing a value at line 1 column 12"),
        ),
        case(
            "lone open brace",
            post(b"{"),
            Expect::Error(400, "malformed JSON: EOF while parsing an object at line 1 column 1"),
        ),
        case(
            "lone open bracket",
            post(b"["),
            Expect::Error(400, "malformed JSON: EOF while parsing a list at line 1 column 1"),
        ),
        case(
            "not JSON at all",
            post(b"hello bayeux"),
            Expect::Error(400, "malformed JSON: expected value at line 1 column 1"),
        ),
        case(
            "trailing garbage after a valid batch",
            post(format!("{}xyz", json!([valid_publish])).as_bytes()),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: trailing characters at line 1 column {}",
                    json!([valid_publish]).to_string().len() + 1
                ),
            ),
        ),
        case(
            "two batches back to back",
            post(format!("{0}{0}", json!([valid_publish])).as_bytes()),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: trailing characters at line 1 column {}",
                    json!([valid_publish]).to_string().len() + 1
                ),
            ),
        ),
        case(
            "invalid UTF-8 inside a string",
            post(&[invalid_utf8_prefix.as_bytes(), b"\"\xff\xfe\"}]"].concat()),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: invalid unicode code point at line 1 column {}",
                    invalid_utf8_prefix.len() + 2
                ),
            ),
        ),
        case(
            "invalid UTF-8 outside strings",
            post(b"\xff\xfe[]"),
            Expect::Error(400, "malformed JSON: expected value at line 1 column 1"),
        ),
        case(
            "UTF-8 byte order mark before the batch",
            post(format!("\u{feff}{}", json!([valid_publish])).as_bytes()),
            Expect::Error(400, "malformed JSON: expected value at line 1 column 1"),
        ),
        // What JSON.stringify writes for a string cut in the middle of an emoji: accepted
        // (conformance/tests/surrogates.rs follows it to the subscribers).
        case(
            "lone surrogate escape in data",
            post(
                format!(r#"[{{"id":"1","channel":"/elsewhere","clientId":"{cid}","data":"\ud800"}}]"#)
                    .as_bytes(),
            ),
            Expect::Replies(vec![
                json!({"channel": "/elsewhere", "id": "1", "successful": true}),
            ]),
        ),
        case(
            "truncated surrogate escape in data",
            post(format!(r#"{invalid_utf8_prefix}"\ud8"}}]"#).as_bytes()),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: invalid escape at line 1 column {}",
                    invalid_utf8_prefix.len() + 7
                ),
            ),
        ),
        case(
            "NaN in data",
            post(format!("{invalid_utf8_prefix}NaN}}]").as_bytes()),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: expected value at line 1 column {}",
                    invalid_utf8_prefix.len() + 1
                ),
            ),
        ),
        case(
            "number out of range in data",
            post(format!("{invalid_utf8_prefix}1e999}}]").as_bytes()),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: number out of range at line 1 column {}",
                    invalid_utf8_prefix.len() + 5
                ),
            ),
        ),
        // -- nesting: serde's recursion limit (128), an error, never a stack overflow
        case(
            "arrays nested 200 deep",
            post(&nested_arrays(200)),
            Expect::Error(
                400,
                "malformed JSON: recursion limit exceeded at line 1 column 128",
            ),
        ),
        case(
            "arrays nested 100 000 deep",
            post(&nested_arrays(100_000)),
            Expect::Error(
                400,
                "malformed JSON: recursion limit exceeded at line 1 column 128",
            ),
        ),
        case(
            "publish to the witness channel with data nested 200 deep",
            post(&deep_publish(&cid, 200)),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: recursion limit exceeded at line 1 column {}",
                    deep_publish(&cid, 200)
                        .windows(5)
                        .enumerate()
                        .filter(|(_, w)| w == b"{\"a\":")
                        .nth(125)
                        .map(|(i, _)| i + 1)
                        .expect("deep enough")
                ),
            ),
        ),
        // -- JSON that is not a message or an array of messages
        case(
            "null",
            post(b"null"),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        case(
            "a number",
            post(b"42"),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        case(
            "a string",
            post(br#""/meta/handshake""#),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        case(
            "true",
            post(b"true"),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        case(
            "[[]]",
            post(b"[[]]"),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        case(
            "[null]",
            post(b"[null]"),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        case(
            "a valid publish to the witness channel followed by a number",
            post(json!([valid_publish, 1]).to_string().as_bytes()),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        // -- empty
        case("empty body", post(b""), Expect::Error(400, "empty batch")),
        case(
            "whitespace body",
            post(b" \r\n\t "),
            Expect::Error(400, "empty batch"),
        ),
        case("empty array", post(b"[]"), Expect::Error(400, "empty batch")),
        case(
            "an empty object",
            post(b"{}"),
            Expect::Replies(vec![json!({"successful": false, "error": "400::channel_missing"})]),
        ),
        // -- size: --max-message-size is 1 MiB (the default)
        case(
            "body of 1 MiB + 1 KiB with Content-Length",
            post(over_limit.as_bytes()),
            Expect::Framework(413, "payload reached size limit"),
        ),
        case(
            "body of 1 MiB + 1 KiB chunked",
            Input::Request(
                Request::new("POST", &w.attacker.url("/"))
                    .header("Content-Type", "application/json")
                    .chunked(over_limit.as_bytes().chunks(64 * 1024).map(<[u8]>::to_vec).collect()),
            ),
            Expect::Framework(413, "payload reached size limit"),
        ),
        case(
            "Content-Length of 1 TB with 10 bytes sent",
            Input::Raw(
                format!(
                    "POST {}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n\
                     Content-Length: 1000000000000\r\n\r\n[{{\"a\":1}}]",
                    w.server.path()
                )
                .into_bytes(),
            ),
            Expect::Framework(413, "payload reached size limit"),
        ),
        // -- huge batches: every message answered, in order
        case("5 000 publishes in one batch", custom!(five_thousand_publishes), Expect::Checked),
        case(
            "100 000 empty objects in one batch",
            post(hundred_thousand_empty.as_bytes()),
            Expect::Replies(vec![
                json!({"successful": false, "error": "400::channel_missing"});
                100_000
            ]),
        ),
        // -- content types
        case(
            "application/xml",
            Input::Post(Some("application/xml"), json!([valid_publish]).to_string().into_bytes()),
            Expect::Error(415, r#"unsupported content type "application/xml""#),
        ),
        case(
            "multipart/form-data",
            Input::Post(
                Some("multipart/form-data; boundary=x"),
                json!([valid_publish]).to_string().into_bytes(),
            ),
            Expect::Error(415, r#"unsupported content type "multipart/form-data""#),
        ),
        case(
            "text/html",
            Input::Post(Some("text/html"), json!([valid_publish]).to_string().into_bytes()),
            Expect::Error(415, r#"unsupported content type "text/html""#),
        ),
        case(
            "form-encoded with a malformed message parameter",
            Input::Post(
                Some("application/x-www-form-urlencoded"),
                format!("message={}", encode_component(&truncated_publish)).into_bytes(),
            ),
            Expect::ErrorText(
                400,
                format!(
                    "malformed JSON: EOF while parsing an object at line 1 column {}",
                    truncated_publish.len()
                ),
            ),
        ),
        case(
            "form-encoded without a message parameter",
            Input::Post(
                Some("application/x-www-form-urlencoded"),
                format!("msg={}", encode_component(&json!([valid_publish]).to_string()))
                    .into_bytes(),
            ),
            Expect::Error(400, "empty batch"),
        ),
        // -- methods no transport takes
        case(
            "PUT of a valid publish",
            Input::Request(
                Request::new("PUT", &w.attacker.url("/"))
                    .header("Content-Type", "application/json")
                    .body(json!([valid_publish]).to_string()),
            ),
            Expect::Error(400, "Unknown Bayeux Transport"),
        ),
        case(
            "DELETE",
            Input::Request(Request::new("DELETE", &w.attacker.url("/"))),
            Expect::Error(400, "Unknown Bayeux Transport"),
        ),
        case(
            "PATCH of a valid publish",
            Input::Request(
                Request::new("PATCH", &w.attacker.url("/"))
                    .header("Content-Type", "application/json")
                    .body(json!([valid_publish]).to_string()),
            ),
            Expect::Error(400, "Unknown Bayeux Transport"),
        ),
        case("HEAD", custom!(head_request), Expect::Checked),
        case(
            "an invented method",
            Input::Request(
                Request::new("BREW", &w.attacker.url("/"))
                    .header("Content-Type", "application/json")
                    .body(json!([valid_publish]).to_string()),
            ),
            Expect::Error(400, "Unknown Bayeux Transport"),
        ),
        case(
            "GET without a callback",
            Input::Request(Request::new("GET", &w.attacker.url("/connect"))),
            Expect::Error(400, "Unknown Bayeux Transport"),
        ),
    ];
    run_catalogue("long-polling bodies", w, cases).await;
}

/// 5 000 publishes in one request: 5 000 replies in order, and a subscriber gets all 5 000 in
/// order.
async fn five_thousand_publishes(w: Arc<World>) {
    const N: usize = 5_000;
    let sub = Client::open(&w.server).await;
    sub.subscribe_ok(json!("/hostile/flood")).await;
    let cid = w.cid();
    let batch: Vec<Value> = (0..N)
        .map(|n| json!({"id": format!("f{n}"), "channel": "/hostile/flood", "data": n, "clientId": cid}))
        .collect();
    let resp = w
        .attacker
        .send(Request::post_json(
            &w.attacker.url("/"),
            &Value::Array(batch),
        ))
        .await;
    let want: Vec<Value> = (0..N)
        .map(|n| json!({"id": format!("f{n}"), "channel": "/hostile/flood", "successful": true}))
        .collect();
    check_http(&resp, Expect::Replies(want));
    let got = sub.poll_now().await;
    let want: Vec<Value> = (0..N)
        .map(|n| json!({"channel": "/hostile/flood", "data": n}))
        .collect();
    assert_messages(&got, &want);
}

/// HEAD is no transport: 400, and (HEAD) no body.
async fn head_request(w: Arc<World>) {
    let mut stream = TcpStream::connect(w.addr()).await.expect("connect");
    let req = format!(
        "HEAD {}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        w.server.path()
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(WS_DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("HEAD answered in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 400 "), "HEAD: {text:?}");
    assert_eq!(body, "", "a HEAD answer has no body");
}

// =============================================================================================
// Category 2: wrong JSON types for every field

#[tokio::test]
async fn hostile_message_fields() {
    let w = World::start(&["--timeout", "1000"]).await;
    let cid = w.cid();
    let ch = "/hostile/x";
    let batch = |msg: Value| Input::Batch(json!([msg]));
    let huge_id: Value = serde_json::from_str("123456789012345678901234567890").expect("number");
    let id_case = |name: &str, id: Value| {
        case(
            format!("id as {name}"),
            batch(json!({"id": id, "channel": ch, "data": 1, "clientId": cid})),
            Expect::Replies(vec![
                json!({"id": id, "channel": ch, "successful": false, "error": "405::message_id_invalid"}),
            ]),
        )
    };
    let channel_case = |name: &str, channel: Value| {
        case(
            format!("channel as {name}"),
            batch(json!({"id": "7", "channel": channel, "data": 1, "clientId": cid})),
            Expect::Replies(vec![
                json!({"id": "7", "successful": false, "error": "400::channel_missing"}),
            ]),
        )
    };
    let subscription_case = |name: &str, subscription: Value, error: &str| {
        case(
            format!("subscription as {name}"),
            batch(
                json!({"id": "7", "channel": "/meta/subscribe", "subscription": subscription, "clientId": cid}),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/subscribe", "subscription": subscription,
                "successful": false, "error": error,
            })]),
        )
    };

    let cases = vec![
        channel_case("a number", json!(5)),
        channel_case("an object", json!({"name": ch})),
        channel_case("an array", json!([ch])),
        channel_case("null", json!(null)),
        case(
            "channel missing",
            batch(json!({"id": "7", "data": 1, "clientId": cid})),
            Expect::Replies(vec![
                json!({"id": "7", "successful": false, "error": "400::channel_missing"}),
            ]),
        ),
        case(
            "channel as an empty string",
            batch(json!({"id": "7", "channel": "", "data": 1, "clientId": cid})),
            Expect::Replies(vec![failed("", "7", "405::channel_invalid")]),
        ),
        id_case("an object", json!({"a": 1})),
        id_case("an array", json!(["1"])),
        id_case("a boolean", json!(true)),
        id_case("a float", json!(1.5)),
        id_case("null", json!(null)),
        id_case("markup", json!("<script>")),
        id_case("an empty string", json!("")),
        id_case("a 30-digit number", huge_id),
        case(
            "clientId as a number on publish",
            batch(json!({"id": "7", "channel": ch, "data": 1, "clientId": 12345})),
            Expect::Replies(vec![failed(ch, "7", "402::session_unknown")]),
        ),
        case(
            "clientId as null on connect",
            batch(
                json!({"id": "7", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": null}),
            ),
            Expect::Replies(vec![unknown_session_connect("7")]),
        ),
        case(
            "clientId as an object on subscribe",
            batch(
                json!({"id": "7", "channel": "/meta/subscribe", "subscription": ch, "clientId": {"id": cid}}),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/subscribe", "subscription": ch,
                "successful": false, "error": "402::session_unknown",
            })]),
        ),
        case(
            "clientId as an empty string on publish",
            batch(json!({"id": "7", "channel": ch, "data": 1, "clientId": ""})),
            Expect::Replies(vec![failed(ch, "7", "402::session_unknown")]),
        ),
        subscription_case("a number", json!(5), "403::subscription_invalid"),
        subscription_case(
            "an object",
            json!({"channel": ch}),
            "403::subscription_invalid",
        ),
        subscription_case("a nested array", json!([[ch]]), "403::subscription_invalid"),
        subscription_case(
            "an array with a number",
            json!([ch, 5]),
            "403::subscription_invalid",
        ),
        subscription_case("an empty array", json!([]), "403::subscription_invalid"),
        subscription_case("null", json!(null), "403::subscription_missing"),
        case(
            "subscription missing",
            batch(json!({"id": "7", "channel": "/meta/subscribe", "clientId": cid})),
            Expect::Replies(vec![failed(
                "/meta/subscribe",
                "7",
                "403::subscription_missing",
            )]),
        ),
        case(
            "unsubscribe with subscription as a boolean",
            batch(
                json!({"id": "7", "channel": "/meta/unsubscribe", "subscription": true, "clientId": cid}),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/unsubscribe", "subscription": true,
                "successful": false, "error": "403::subscription_invalid",
            })]),
        ),
        case(
            "data missing on publish",
            batch(json!({"id": "7", "channel": ch, "clientId": cid})),
            Expect::Replies(vec![failed(ch, "7", "400::data_missing")]),
        ),
        case(
            "advice as a string on connect (ignored: held for the timeout)",
            custom!(advice_string_connect),
            Expect::Checked,
        ),
        case(
            "ext as a string on publish (ignored)",
            batch(json!({"id": "7", "channel": ch, "data": 1, "clientId": cid, "ext": "x"})),
            Expect::Replies(vec![json!({"id": "7", "channel": ch, "successful": true})]),
        ),
        case(
            "ext as a string on handshake (ignored)",
            Input::NoCookie(Request::post_json(
                &format!("{}/handshake", w.server.path()),
                &json!([{"id": "7", "channel": "/meta/handshake", "version": "1.0", "ext": "x"}]),
            )),
            Expect::Replies(vec![handshake_reply("7", 1000)]),
        ),
        case(
            "connectionType as a number on connect (ignored)",
            batch(
                json!({"id": "7", "channel": "/meta/connect", "connectionType": 5, "clientId": cid, "advice": {"timeout": 0}}),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/connect", "successful": true,
                "advice": {"reconnect": "retry", "interval": 0, "timeout": 1000},
            })]),
        ),
        case(
            "connectionType unknown on connect",
            batch(
                json!({"id": "7", "channel": "/meta/connect", "connectionType": "carrier-pigeon", "clientId": cid, "advice": {"timeout": 0}}),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/connect", "successful": false,
                "error": "400::connection_type_unsupported",
                "advice": {"reconnect": "handshake", "interval": 0},
            })]),
        ),
        case(
            "advice.timeout as a string on connect (ignored: answered after the timeout)",
            custom!(advice_timeout_string_connect),
            Expect::Checked,
        ),
    ];
    run_catalogue("message fields", w, cases).await;
}

/// `advice: "x"` is not an object: ignored, so the connect is a normal long poll.
async fn advice_string_connect(w: Arc<World>) {
    held_connect_with(&w, json!("x")).await;
}

/// `advice: {"timeout": "0"}`: the timeout is not a number, so the connect is a normal long
/// poll; the advice object itself makes the server re-advise.
async fn advice_timeout_string_connect(w: Arc<World>) {
    held_connect_with(&w, json!({"timeout": "0"})).await;
}

async fn held_connect_with(w: &World, advice: Value) {
    let readvised = advice.is_object();
    let started = Instant::now();
    let ex = w.attacker.connect_with_advice(advice).await;
    let elapsed = started.elapsed();
    let mut want = json!({"id": ex.id, "channel": "/meta/connect", "successful": true});
    if readvised {
        want["advice"] = json!({"reconnect": "retry", "interval": 0, "timeout": 1000});
    }
    assert_messages(&ex.messages, &[want]);
    assert!(
        elapsed >= ms(900) && elapsed < ms(3000),
        "held for {elapsed:?}, expected the 1000 ms timeout"
    );
}

// =============================================================================================
// Category 3: hostile channel names and meta channels

#[tokio::test]
async fn hostile_channels() {
    let w = World::start(&["--timeout", "1000"]).await;
    let cid = w.cid();
    let publish = |channel: &str, error: &str| {
        case(
            format!("publish to {:?}", abbreviate(channel)),
            Input::Batch(json!([{"id": "7", "channel": channel, "data": "x", "clientId": cid}])),
            Expect::Replies(vec![failed(channel, "7", error)]),
        )
    };
    let subscribe = |channel: &str, error: &str| {
        case(
            format!("subscribe to {:?}", abbreviate(channel)),
            Input::Batch(
                json!([{"id": "7", "channel": "/meta/subscribe", "subscription": channel, "clientId": cid}]),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/subscribe", "subscription": channel,
                "successful": false, "error": error,
            })]),
        )
    };
    let long_flat = format!("/{}", "a".repeat(10_000));
    let long_deep = "/a".repeat(5_000);
    let invalid = "405::channel_invalid";
    let sub_invalid = "403::subscription_invalid";

    let cases = vec![
        publish("/a//b", invalid),
        publish("/a/*/b", invalid),
        publish("/a/**/b", invalid),
        publish("noslash", invalid),
        publish("/", invalid),
        publish("//", invalid),
        publish("/a<b", invalid),
        publish("/a\"b", invalid),
        publish("/a\u{0}b", invalid),
        publish("/a\nb", invalid),
        publish("/é", invalid),
        publish("/\u{202e}evil", invalid),
        publish("/hostile/*", invalid),
        publish("/hostile/**", invalid),
        publish("/*", invalid),
        subscribe("/a//b", sub_invalid),
        subscribe("/a/*/b", sub_invalid),
        subscribe("/a\u{0}b", sub_invalid),
        subscribe("/é", sub_invalid),
        subscribe("", sub_invalid),
        // Channel names are bounded (1 024 bytes, 64 segments) so routing stays cheap.
        case(
            "publish to a 10 001-char channel of one segment (too long)",
            Input::Batch(json!([{"id": "7", "channel": long_flat, "data": "x", "clientId": cid}])),
            Expect::Replies(vec![
                json!({"id": "7", "channel": long_flat, "successful": false, "error": "405::channel_invalid"}),
            ]),
        ),
        case(
            "publish to a 10 000-char channel of 5 000 segments (too deep)",
            Input::Batch(json!([{"id": "7", "channel": long_deep, "data": "x", "clientId": cid}])),
            Expect::Replies(vec![
                json!({"id": "7", "channel": long_deep, "successful": false, "error": "405::channel_invalid"}),
            ]),
        ),
        // -- meta channels
        publish(
            "/meta/foo",
            "403:denied_by_security_policy:channel_create_denied",
        ),
        publish(
            "/meta/bogus",
            "403:denied_by_security_policy:channel_create_denied",
        ),
        publish(
            "/meta/connect/x",
            "403:denied_by_security_policy:channel_create_denied",
        ),
        case(
            "publish without data to an unknown meta channel",
            Input::Batch(json!([{"id": "7", "channel": "/meta/bogus", "clientId": cid}])),
            Expect::Replies(vec![failed(
                "/meta/bogus",
                "7",
                "403:denied_by_security_policy:channel_create_denied",
            )]),
        ),
        subscribe("/meta/foo", "403:denied_by_security_policy:create_denied"),
        subscribe(
            "/meta/connect",
            "403:denied_by_security_policy:subscribe_denied",
        ),
        subscribe("/meta/*", "403:denied_by_security_policy:subscribe_denied"),
        subscribe("/meta/**", "403:denied_by_security_policy:subscribe_denied"),
        case(
            "unsubscribe from /meta/connect",
            Input::Batch(
                json!([{"id": "7", "channel": "/meta/unsubscribe", "subscription": "/meta/connect", "clientId": cid}]),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/unsubscribe", "subscription": "/meta/connect",
                "successful": false, "error": "403::unsubscribe_failed",
            })]),
        ),
        case(
            "a publish (data, no subscription) to /meta/subscribe is a subscribe",
            Input::Batch(
                json!([{"id": "7", "channel": "/meta/subscribe", "data": "x", "clientId": cid}]),
            ),
            Expect::Replies(vec![failed(
                "/meta/subscribe",
                "7",
                "403::subscription_missing",
            )]),
        ),
        case(
            "a publish (data) to /meta/handshake is a handshake",
            Input::NoCookie(Request::post_json(
                &format!("{}/", w.server.path()),
                &json!([{"id": "7", "channel": "/meta/handshake", "data": "x"}]),
            )),
            Expect::Replies(vec![handshake_reply("7", 1000)]),
        ),
    ];
    run_catalogue("channels", w, cases).await;
}

fn abbreviate(s: &str) -> String {
    if s.chars().count() > 24 {
        format!(
            "{}... ({} chars)",
            s.chars().take(12).collect::<String>(),
            s.len()
        )
    } else {
        s.to_string()
    }
}

/// Routing a publish must not cost memory quadratic in the channel's depth: a channel of
/// 8 000 segments (16 KB, far below `maxMessageSize`) must not raise the server's peak memory
/// by more than 16 MiB. (Building every ancestor's `/**` pattern as its own string costs about
/// depth² bytes: 64 MB here, and about 275 GB for a channel `/a/a/...` filling a 1 MiB body.)
#[tokio::test]
async fn hostile_deep_channel_costs_linear_memory() {
    let w = World::start(&["--timeout", "1000"]).await;
    let pid = w.server.pid().expect("bayeuxd runs");
    let peak = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM");
        line.split_whitespace()
            .nth(1)
            .expect("kB")
            .parse::<u64>()
            .expect("number")
            * 1024
    };
    // Warm up: the same kind of request with a shallow channel.
    w.attacker.publish_ok("/hostile/warm", json!("x")).await;
    let before = peak();
    // Too deep to be a channel (64 segments at most): refused before any routing work.
    let deep = "/a".repeat(8_000);
    let ex = w.attacker.publish(&deep, json!("x")).await;
    assert_messages(
        ex.ok(),
        &[
            json!({"id": ex.id, "channel": deep, "successful": false, "error": "405::channel_invalid"}),
        ],
    );
    let grown = peak().saturating_sub(before);
    w.assert_healthy().await;
    assert!(
        grown < 16 * 1024 * 1024,
        "deep channel: publishing on a channel of 8 000 segments (16 KB) raised bayeuxd's peak \
         memory by {} MiB (quadratic in depth: a 1 MiB body would ask for ~275 GB)",
        grown / (1024 * 1024)
    );
}

// =============================================================================================
// Category 4: forged and stolen sessions, cookies, handshakes that are not alone

#[tokio::test]
async fn hostile_sessions() {
    let w = World::start(&["--timeout", "1000"]).await;
    let cid = w.cid();
    let victim = w.witness.subscriber().client_id();
    let victim_publisher = w.witness.publisher().client_id();
    let forged = forged_id(&cid);
    let wc = WITNESS_CHANNEL;
    let path = w.server.path().to_string();
    let no_cookie = |body: Value| Input::NoCookie(Request::post_json(&format!("{path}/"), &body));

    let cases = vec![
        case(
            "forged clientId on publish",
            Input::Batch(json!([{"id": "7", "channel": wc, "data": "forged", "clientId": forged}])),
            Expect::Replies(vec![failed(wc, "7", "402::session_unknown")]),
        ),
        case(
            "forged clientId on connect",
            Input::Batch(json!([{"id": "7", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": forged}])),
            Expect::Replies(vec![unknown_session_connect("7")]),
        ),
        case(
            "forged clientId on disconnect",
            Input::Batch(json!([{"id": "7", "channel": "/meta/disconnect", "clientId": forged}])),
            Expect::Replies(vec![failed("/meta/disconnect", "7", "402::session_unknown")]),
        ),
        case(
            "another browser's live clientId on connect",
            Input::Batch(json!([{"id": "7", "channel": "/meta/connect", "connectionType": "long-polling", "clientId": victim, "advice": {"timeout": 0}}])),
            Expect::Replies(vec![unknown_session_connect("7")]),
        ),
        case(
            "another browser's live clientId on unsubscribe",
            Input::Batch(json!([{"id": "7", "channel": "/meta/unsubscribe", "subscription": wc, "clientId": victim}])),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/unsubscribe", "subscription": wc,
                "successful": false, "error": "402::session_unknown",
            })]),
        ),
        case(
            "another browser's live clientId on subscribe",
            Input::Batch(json!([{"id": "7", "channel": "/meta/subscribe", "subscription": "/hostile/spy", "clientId": victim}])),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/subscribe", "subscription": "/hostile/spy",
                "successful": false, "error": "402::session_unknown",
            })]),
        ),
        case(
            "another browser's live clientId on disconnect",
            Input::Batch(json!([{"id": "7", "channel": "/meta/disconnect", "clientId": victim}])),
            Expect::Replies(vec![failed("/meta/disconnect", "7", "402::session_unknown")]),
        ),
        case(
            "another browser's live clientId on publish",
            Input::Batch(json!([{"id": "7", "channel": wc, "data": "spoofed", "clientId": victim_publisher}])),
            Expect::Replies(vec![failed(wc, "7", "402::session_unknown")]),
        ),
        case(
            "a live clientId with no cookie, on disconnect",
            no_cookie(json!([{"id": "7", "channel": "/meta/disconnect", "clientId": victim}])),
            Expect::Replies(vec![failed("/meta/disconnect", "7", "402::session_unknown")]),
        ),
        case(
            "the attacker's own clientId with no cookie, on publish",
            no_cookie(json!([{"id": "7", "channel": wc, "data": "x", "clientId": cid}])),
            Expect::Replies(vec![failed(wc, "7", "402::session_unknown")]),
        ),
        case(
            "a live clientId with an empty cookie, on unsubscribe",
            Input::NoCookie(
                Request::post_json(&w.attacker.url("/"), &json!([{"id": "7", "channel": "/meta/unsubscribe", "subscription": wc, "clientId": victim}]))
                    .header("Cookie", "BAYEUX_BROWSER="),
            ),
            Expect::Replies(vec![json!({
                "id": "7", "channel": "/meta/unsubscribe", "subscription": wc,
                "successful": false, "error": "402::session_unknown",
            })]),
        ),
        case(
            "a live clientId with a forged 200-char cookie, on disconnect",
            Input::NoCookie(
                Request::post_json(&w.attacker.url("/"), &json!([{"id": "7", "channel": "/meta/disconnect", "clientId": victim}]))
                    .header("Cookie", &format!("BAYEUX_BROWSER={}", "A".repeat(200))),
            ),
            Expect::Replies(vec![failed("/meta/disconnect", "7", "402::session_unknown")]),
        ),
        case(
            "a stolen clientId first, the attacker's own second",
            Input::Batch(json!([
                {"id": "7", "channel": wc, "data": "spoofed", "clientId": victim_publisher},
                {"id": "8", "channel": "/hostile/own", "data": "fine", "clientId": cid},
            ])),
            Expect::Replies(vec![
                failed(wc, "7", "402::session_unknown"),
                json!({"id": "8", "channel": "/hostile/own", "successful": true}),
            ]),
        ),
        case(
            "the clientId of a disconnected session",
            custom!(disconnected_session_is_unknown),
            Expect::Checked,
        ),
        // -- a handshake must be alone: HTTP 500, no session, nothing else processed
        case(
            "handshake mixed with a publish to the witness channel",
            Input::NoCookie(Request::post_json(
                &w.attacker.url("/"),
                &json!([
                    {"id": "1", "channel": "/meta/handshake", "version": "1.0"},
                    {"id": "2", "channel": wc, "data": "leak", "clientId": cid},
                ]),
            )),
            Expect::Error(500, "protocol violation: handshake must be alone in its request"),
        ),
        case(
            "two handshakes in one batch",
            Input::NoCookie(Request::post_json(
                &w.attacker.url("/"),
                &json!([
                    {"id": "1", "channel": "/meta/handshake", "version": "1.0"},
                    {"id": "2", "channel": "/meta/handshake", "version": "1.0"},
                ]),
            )),
            Expect::Error(500, "protocol violation: handshake must be alone in its request"),
        ),
        case(
            "a publish then a handshake, attacker's cookie",
            Input::Batch(json!([
                {"id": "1", "channel": wc, "data": "leak", "clientId": cid},
                {"id": "2", "channel": "/meta/handshake", "version": "1.0"},
            ])),
            Expect::Error(500, "protocol violation: handshake must be alone in its request"),
        ),
    ];
    run_catalogue("sessions", w, cases).await;
}

/// After `/meta/disconnect`, the same browser's clientId is unknown everywhere.
async fn disconnected_session_is_unknown(w: Arc<World>) {
    let tab = w.attacker.tab();
    tab.handshake().await;
    tab.first_connect().await;
    let ex = tab.disconnect().await;
    assert_messages(
        ex.ok(),
        &[json!({"id": ex.id, "channel": "/meta/disconnect", "successful": true})],
    );
    let ex = tab.connect_with_advice(json!({"timeout": 0})).await;
    assert_messages(ex.ok(), &[unknown_session_connect(&ex.id)]);
    let ex = tab.publish(WITNESS_CHANNEL, json!("ghost")).await;
    assert_messages(
        ex.ok(),
        &[failed(WITNESS_CHANNEL, &ex.id, "402::session_unknown")],
    );
}

// =============================================================================================
// Category 5: callback-polling (JSONP)

#[tokio::test]
async fn hostile_callback_polling() {
    let w = World::start(&["--timeout", "1000", "--max-message-size", "4096"]).await;
    let cid = w.cid();
    let wc = WITNESS_CHANNEL;
    let publish = json!([{"id": "7", "channel": wc, "data": "leak", "clientId": cid}]);
    let message = format!("message={}", encode_component(&publish.to_string()));
    let callback = |cb: &str| Input::Query(format!("jsonp={}&{message}", encode_component(cb)));
    let unknown = "Unknown Bayeux Transport";
    let bad_callback = |name: &str, cb: &str| {
        case(
            format!("callback {name}"),
            callback(cb),
            Expect::Error(400, unknown),
        )
    };
    let big = json!([{"id": "7", "channel": wc, "data": "x".repeat(5000), "clientId": cid}]);

    let cases = vec![
        bad_callback("alert(1)//", "alert(1)//"),
        bad_callback("with a space", "a b"),
        bad_callback("</script>", "</script><script>alert(1)</script>"),
        bad_callback("with CRLF and a header", "a\r\nSet-Cookie: x=y"),
        bad_callback("of 65 chars", &"a".repeat(65)),
        bad_callback("non-ASCII", "é"),
        bad_callback("x;alert(1)", "x;alert(1)"),
        bad_callback("empty", ""),
        case(
            "two callback parameters",
            Input::Query(format!("jsonp=a&jsonp=b&{message}")),
            Expect::Error(400, unknown),
        ),
        case(
            "callback parameter in upper case",
            Input::Query(format!("JSONP=cb&{message}")),
            Expect::Error(400, unknown),
        ),
        case(
            "no message parameter",
            Input::Query("jsonp=cb".into()),
            Expect::Error(400, "missing message parameter"),
        ),
        case(
            "malformed message",
            Input::Query(format!("jsonp=cb&message={}", encode_component("[{\"channel\":"))),
            Expect::Error(400, "malformed JSON: EOF while parsing a value at line 1 column 12"),
        ),
        case(
            "invalid percent-encoding in message",
            Input::Query("jsonp=cb&message=%ZZ%5B".into()),
            Expect::Error(400, "malformed JSON: expected value at line 1 column 1"),
        ),
        case(
            "message []",
            Input::Query("jsonp=cb&message=%5B%5D".into()),
            Expect::Error(400, "empty batch"),
        ),
        case(
            "message 5",
            Input::Query("jsonp=cb&message=5".into()),
            Expect::Error(400, "not a message or an array of messages"),
        ),
        case(
            "message nested 200 deep",
            Input::Query(format!(
                "jsonp=cb&message={}",
                encode_component(&String::from_utf8(nested_arrays(200)).expect("ascii"))
            )),
            Expect::Error(400, "malformed JSON: recursion limit exceeded at line 1 column 128"),
        ),
        case(
            "query over --max-message-size (4096)",
            Input::Query(format!(
                "jsonp=cb&message={}",
                encode_component(&big.to_string())
            )),
            Expect::Error(413, "query larger than maxMessageSize"),
        ),
        case(
            "handshake mixed with a publish",
            Input::Query(format!(
                "jsonp=cb&message={}",
                encode_component(
                    &json!([
                        {"id": "1", "channel": "/meta/handshake", "version": "1.0"},
                        {"id": "2", "channel": wc, "data": "leak", "clientId": cid},
                    ])
                    .to_string()
                )
            )),
            Expect::Error(500, "protocol violation: handshake must be alone in its request"),
        ),
        case(
            "an id with markup is refused and echoed only as a JSON string",
            Input::Query(format!(
                "jsonp=cb&message={}",
                encode_component(
                    &json!([{"id": "</script>", "channel": wc, "data": "x", "clientId": cid}])
                        .to_string()
                )
            )),
            Expect::Jsonp(
                "cb",
                vec![json!({"id": "</script>", "channel": wc, "successful": false, "error": "405::message_id_invalid"})],
            ),
        ),
        case(
            "another browser's live clientId on connect",
            Input::Query(format!(
                "jsonp=cb&message={}",
                encode_component(
                    &json!([{"id": "7", "channel": "/meta/connect", "connectionType": "callback-polling",
                             "clientId": w.witness.subscriber().client_id(), "advice": {"timeout": 0}}])
                    .to_string()
                )
            )),
            Expect::Jsonp("cb", vec![unknown_session_connect("7")]),
        ),
    ];
    run_catalogue("callback-polling", w, cases).await;
}

// =============================================================================================
// Category 6: websocket frames

#[tokio::test]
async fn hostile_websocket() {
    let w = World::start(&["--timeout", "2000"]).await;
    let invalid = "invalid JSON";
    let many: Vec<Value> = (0..5_000)
        .map(|n| json!({"id": format!("m{n}"), "channel": "/hostile/ws/many", "data": n, "clientId": "$CID"}))
        .collect();
    let many_replies: Vec<Value> = (0..5_000)
        .map(|n| json!({"id": format!("m{n}"), "channel": "/hostile/ws/many", "successful": true}))
        .collect();
    let text = |s: &str| Input::WsText(s.to_string());
    let over_limit = json!([{"id": "1", "channel": WITNESS_CHANNEL, "data": "x".repeat(1024 * 1024 + 1024), "clientId": "$CID"}]).to_string();
    let fragment = "x".repeat(300 * 1024);
    let fragmented_over_limit: Vec<u8> = [
        masked(OP_TEXT, fragment.as_bytes()),
        masked(OP_CONT, fragment.as_bytes()),
        masked(OP_CONT, fragment.as_bytes()),
        masked(OP_CONT, fragment.as_bytes()),
        masked(FIN | OP_CONT, fragment.as_bytes()),
    ]
    .concat();

    let cases = vec![
        case("not JSON", text("not json"), Expect::Close(1011, invalid)),
        case(
            "truncated disconnect",
            text(r#"[{"id":"9","channel":"/meta/disconnect","clientId":"$CID""#),
            Expect::Close(1011, invalid),
        ),
        case(
            "arrays nested 200 deep",
            Input::WsText(String::from_utf8(nested_arrays(200)).expect("ascii")),
            Expect::Close(1011, invalid),
        ),
        case("empty text frame", text(""), Expect::Close(1011, "empty batch")),
        // The keep-alive Faye's clients up to 1.2 send when the socket opens and then periodically.
        case("[]", text("[]"), Expect::Ignored),
        case("[ ] with spaces", text(" [ ]\n"), Expect::Ignored),
        case(
            "[1,2]",
            text("[1,2]"),
            Expect::Close(1011, "not a message or an array of messages"),
        ),
        case(
            "null",
            text("null"),
            Expect::Close(1011, "not a message or an array of messages"),
        ),
        case(
            "handshake mixed with a publish",
            text(&format!(
                r#"[{{"id":"1","channel":"/meta/handshake","version":"1.0"}},{{"id":"2","channel":"{WITNESS_CHANNEL}","data":"leak","clientId":"$CID"}}]"#
            )),
            Expect::Close(1011, "handshake not alone"),
        ),
        case(
            "binary frame holding a valid publish",
            Input::WsBinary(
                json!([{"id": "1", "channel": WITNESS_CHANNEL, "data": "leak"}])
                    .to_string()
                    .into_bytes(),
            ),
            Expect::Close(1003, "binary frames are not Bayeux"),
        ),
        case(
            "binary garbage",
            Input::WsBinary(vec![0xff, 0x00, 0xfe, 0x01]),
            Expect::Close(1003, "binary frames are not Bayeux"),
        ),
        case(
            "text frame of 1 MiB + 1 KiB",
            Input::WsText(over_limit),
            Expect::Close(1009, "frame larger than maxMessageSize"),
        ),
        case(
            "5 000 publishes in one frame",
            Input::WsText(Value::Array(many).to_string()),
            Expect::Frame(many_replies),
        ),
        case(
            "message without channel",
            text(r#"[{"id":"1","data":"x","clientId":"$CID"}]"#),
            Expect::Frame(vec![json!({"id": "1", "successful": false, "error": "400::channel_missing"})]),
        ),
        case(
            "forged clientId on connect",
            Input::WsText(
                json!([{"id": "1", "channel": "/meta/connect", "connectionType": "websocket", "clientId": forged_id(&w.cid())}])
                    .to_string(),
            ),
            Expect::Frame(vec![unknown_session_connect("1")]),
        ),
        // -- raw frames, after an upgrade made by hand
        case(
            "garbage bytes after the upgrade",
            Input::WsRaw(b"\x16\x03\x01garbage, not a frame\r\n\r\n".to_vec()),
            Expect::Close(1002, "bad framing"),
        ),
        case(
            "unmasked client frame",
            Input::WsRaw(ws_frame(FIN | OP_TEXT, b"[{\"channel\":\"/meta/handshake\"}]", None)),
            Expect::Close(1002, "bad framing"),
        ),
        case(
            "text frame with invalid UTF-8",
            Input::WsRaw(masked(FIN | OP_TEXT, b"[{\"channel\":\"/a\xff\xfe\"}]")),
            Expect::Close(1002, "bad framing"),
        ),
        case(
            "reserved opcode 0x3",
            Input::WsRaw(masked(FIN | 0x3, b"[]")),
            Expect::Close(1002, "bad framing"),
        ),
        case(
            "RSV1 set without an extension",
            Input::WsRaw(masked(FIN | 0x40 | OP_TEXT, b"[]")),
            Expect::Close(1002, "bad framing"),
        ),
        case(
            "ping with a 200-byte payload (control frames are at most 125)",
            Input::WsRaw(masked(FIN | OP_PING, &[b'p'; 200])),
            Expect::Close(1002, "bad framing"),
        ),
        case(
            "frame header announcing 2^63 bytes",
            Input::WsRaw(
                [
                    vec![FIN | OP_TEXT, 0x80 | 127],
                    (1u64 << 63).to_be_bytes().to_vec(),
                    vec![1, 2, 3, 4],
                ]
                .concat(),
            ),
            Expect::Close(1009, "frame larger than maxMessageSize"),
        ),
        case(
            "fragmented text message of 1.5 MiB (five 300 KiB fragments)",
            Input::WsRaw(fragmented_over_limit),
            Expect::Close(1009, "frame larger than maxMessageSize"),
        ),
        case(
            "upgrade without Sec-WebSocket-Key",
            Input::NoCookie(
                Request::new("GET", &format!("{}/", w.server.path()))
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade")
                    .header("Sec-WebSocket-Version", "13"),
            ),
            Expect::Framework(400, ""),
        ),
        case(
            "upgrade with Sec-WebSocket-Version 12",
            Input::NoCookie(
                Request::new("GET", &format!("{}/", w.server.path()))
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade")
                    .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
                    .header("Sec-WebSocket-Version", "12"),
            ),
            Expect::Framework(400, ""),
        ),
    ];
    run_catalogue("websocket", w, cases).await;
}

// =============================================================================================
// Category 7: abrupt disconnects and stalled requests

#[tokio::test]
async fn hostile_abrupt_disconnects() {
    let w = World::start(&["--timeout", "2000"]).await;
    let cases = vec![
        case(
            "half a POST body, then the socket closes",
            Input::Custom(|w| -> BoxFut { Box::pin(abandon(w, Abandon::HalfBody)) }),
            Expect::Checked,
        ),
        case(
            "half a POST body, then the client half-closes (the publish is not processed)",
            custom!(half_body_half_close),
            Expect::Checked,
        ),
        case(
            "headers without their blank line, then the socket closes",
            Input::Custom(|w| -> BoxFut { Box::pin(abandon(w, Abandon::HalfHeaders)) }),
            Expect::Checked,
        ),
        case(
            "a request line only, then the socket closes",
            Input::Custom(|w| -> BoxFut { Box::pin(abandon(w, Abandon::RequestLine)) }),
            Expect::Checked,
        ),
        case(
            "a held long-polling connect whose socket closes",
            custom!(abandoned_long_poll),
            Expect::Checked,
        ),
        case(
            "a held JSONP connect whose socket closes",
            custom!(abandoned_jsonp_poll),
            Expect::Checked,
        ),
        case(
            "a held websocket connect whose TCP connection drops",
            custom!(abandoned_websocket),
            Expect::Checked,
        ),
        case(
            "a websocket handshake frame cut in the middle, then the TCP connection drops",
            custom!(cut_websocket_frame),
            Expect::Checked,
        ),
        case(
            "50 stalled requests held open while others are served",
            custom!(stalled_requests),
            Expect::Checked,
        ),
    ];
    run_catalogue("abrupt disconnects", w, cases).await;
}

enum Abandon {
    HalfBody,
    HalfHeaders,
    RequestLine,
}

/// Sends part of a request, then drops the connection without reading anything.
async fn abandon(w: Arc<World>, how: Abandon) {
    let path = w.server.path();
    let cid = w.cid();
    let body = json!([{"id": "1", "channel": WITNESS_CHANNEL, "data": "leak", "clientId": cid}])
        .to_string();
    let cookie = w.attacker.cookie().expect("cookie");
    let head = format!(
        "POST {path}/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Cookie: BAYEUX_BROWSER={cookie}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let bytes = match how {
        Abandon::HalfBody => format!("{head}{}", &body[..body.len() / 2]),
        Abandon::HalfHeaders => head[..head.len() - 20].to_string(),
        Abandon::RequestLine => format!("POST {path}/ HTTP/1.1\r\n"),
    };
    let mut stream = TcpStream::connect(w.addr()).await.expect("connect");
    stream.write_all(bytes.as_bytes()).await.expect("write");
    tokio::time::sleep(ms(50)).await;
    drop(stream);
    tokio::time::sleep(ms(50)).await;
}

/// Half a body, then the write side is shut: the server answers (the body cannot complete)
/// and processes nothing.
async fn half_body_half_close(w: Arc<World>) {
    let path = w.server.path();
    let cid = w.cid();
    let body = json!([{"id": "1", "channel": WITNESS_CHANNEL, "data": "leak", "clientId": cid}])
        .to_string();
    let cookie = w.attacker.cookie().expect("cookie");
    let request = format!(
        "POST {path}/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Cookie: BAYEUX_BROWSER={cookie}\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..body.len() / 2]
    );
    let mut stream = TcpStream::connect(w.addr()).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    tokio::time::timeout(WS_DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer (or a close) in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400 "), "half body: {text:?}");
}

/// A session's held connect is abandoned (socket closed); the session is not harmed: its next
/// connect is held normally (no `multiple-clients`: the held-connect slot of its browser was
/// not leaked) and receives a publish.
async fn abandoned_long_poll(w: Arc<World>) {
    let c = Client::open(&w.server).await;
    c.subscribe_ok(json!("/hostile/abandoned")).await;
    let id = c.next_id();
    let req = Request::post_json(&c.url("/connect"), &json!([c.connect_message(&id, None)]))
        .header(
            "Cookie",
            &format!("BAYEUX_BROWSER={}", c.cookie().expect("cookie")),
        );
    let mut stream = TcpStream::connect(w.addr()).await.expect("connect");
    stream
        .write_all(&req.to_bytes(w.addr()))
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(ms(300), stream.read(&mut buf)).await;
    assert!(early.is_err(), "the connect was not held: {early:?}");
    drop(stream);
    tokio::time::sleep(ms(100)).await;
    resumed_poll_receives(&w, &c).await;
}

async fn abandoned_jsonp_poll(w: Arc<World>) {
    let c = Client::new(&w.server);
    jsonp::handshake(&c).await;
    jsonp::connect_now(&c).await;
    c.subscribe_ok(json!("/hostile/abandoned")).await;
    let id = c.next_id();
    let target = jsonp::jsonp_target(
        &c,
        "/connect",
        "jsonp",
        "cb",
        &[json!([jsonp::connect_message(&c, &id, None)])],
    );
    let req = Request::new("GET", &target).header(
        "Cookie",
        &format!("BAYEUX_BROWSER={}", c.cookie().expect("cookie")),
    );
    let mut stream = TcpStream::connect(w.addr()).await.expect("connect");
    stream
        .write_all(&req.to_bytes(w.addr()))
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(ms(300), stream.read(&mut buf)).await;
    assert!(early.is_err(), "the JSONP connect was not held: {early:?}");
    drop(stream);
    tokio::time::sleep(ms(100)).await;
    resumed_poll_receives(&w, &c).await;
}

/// `c`'s next long-polling connect is held, then answered with a publish on
/// `/hostile/abandoned`.
async fn resumed_poll_receives(w: &World, c: &Client) {
    let mut pending = c.start_connect().await;
    pending.assert_pending_for(ms(300)).await;
    w.attacker
        .publish_ok("/hostile/abandoned", json!("after the drop"))
        .await;
    let ex = pending.finish().await;
    assert_messages(
        ex.ok(),
        &[
            json!({"channel": "/hostile/abandoned", "data": "after the drop"}),
            json!({"id": ex.id, "channel": "/meta/connect", "successful": true}),
        ],
    );
}

async fn abandoned_websocket(w: Arc<World>) {
    let mut ws = WsClient::connected(&w.server).await;
    ws.subscribe_ok(json!("/hostile/ws/abandoned")).await;
    let cid = ws.client_id();
    ws.send_connect(None).await;
    ws.assert_silent_for(ms(200)).await;
    ws.abort();
    tokio::time::sleep(ms(100)).await;
    let mut again = WsClient::resume(&w.server, &cid).await;
    again.connect_now().await;
    w.attacker
        .publish_ok("/hostile/ws/abandoned", json!("after the drop"))
        .await;
    assert_messages(
        &again.recv(WS_DEADLINE).await,
        &[json!({"channel": "/hostile/ws/abandoned", "data": "after the drop"})],
    );
    close_ws(again).await;
}

async fn cut_websocket_frame(w: Arc<World>) {
    let mut raw = RawWs::open(w.addr(), w.server.path()).await;
    let frame = masked(
        FIN | OP_TEXT,
        json!([WsClient::handshake_message("1")])
            .to_string()
            .as_bytes(),
    );
    raw.send(&frame[..frame.len() / 2]).await;
    tokio::time::sleep(ms(50)).await;
    drop(raw);
    tokio::time::sleep(ms(50)).await;
}

/// 50 connections each stuck mid-request (half headers, half body) while the health checks run.
async fn stalled_requests(w: Arc<World>) {
    let path = w.server.path();
    let mut stuck = Vec::new();
    for n in 0..50 {
        let mut stream = TcpStream::connect(w.addr()).await.expect("connect");
        let bytes = if n % 2 == 0 {
            format!("POST {path}/ HTTP/1.1\r\nHost: x\r\nContent-Le")
        } else {
            format!(
                "POST {path}/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n[{{\"channel\":"
            )
        };
        stream.write_all(bytes.as_bytes()).await.expect("write");
        stuck.push(stream);
    }
    w.assert_healthy().await;
    drop(stuck);
}
