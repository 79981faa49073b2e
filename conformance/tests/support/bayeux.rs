//! Bayeux session helper on top of the raw HTTP client, plus JSON assertion helpers.
//!
//! A [`Client`] behaves like one browser tab: it keeps the browser cookie it is given (like a
//! browser cookie jar), remembers the `clientId` of its last successful handshake and numbers its
//! messages `"1"`, `"2"`, ... It never retries, reorders or interprets replies beyond what a method
//! documents, so tests see exactly what the server sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::http::{self, Request, Response};
use super::server::TestServer;

/// Default name of the browser cookie.
pub const BROWSER_COOKIE: &str = "BAYEUX_BROWSER";

/// Connection types the server may legitimately list in its handshake reply.
const KNOWN_TRANSPORTS: [&str; 3] = ["websocket", "long-polling", "callback-polling"];

/// One simulated browser tab: cookie jar (possibly shared with other tabs), clientId, id counter.
///
/// Cloning gives a handle to the *same* tab (used to run a long poll in a task).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    path: String,
    cookie_name: String,
    jar: Arc<Mutex<Option<String>>>,
    /// False for an HTTP library without a cookie jar: Set-Cookie is ignored.
    keeps_cookies: bool,
    client_id: Mutex<Option<String>>,
    next_id: AtomicU64,
}

/// The outcome of one HTTP request carrying Bayeux messages.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The `id` of the main message sent (empty when the caller built the body itself).
    pub id: String,
    /// HTTP status.
    pub status: u16,
    /// The response body as a message list (empty unless it was a JSON array).
    pub messages: Vec<Value>,
    /// The raw response.
    pub response: Response,
    /// When the request started (before connecting).
    pub started: Instant,
    /// When the response was completely read.
    pub finished: Instant,
}

impl Exchange {
    /// Time from starting the request to having the whole response.
    pub fn elapsed(&self) -> Duration {
        self.finished - self.started
    }

    /// Asserts HTTP 200 and returns the messages.
    #[track_caller]
    pub fn ok(&self) -> &[Value] {
        assert_eq!(
            self.status,
            200,
            "expected HTTP 200, got {} with body {:?}",
            self.status,
            self.response.text()
        );
        &self.messages
    }
}

/// A request running in the background (typically a held `/meta/connect`).
pub struct Pending {
    id: String,
    handle: JoinHandle<Exchange>,
}

impl Pending {
    /// The `id` of the message sent.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Asserts that no response arrives within `d` (i.e. the server is holding the request).
    pub async fn assert_pending_for(&mut self, d: Duration) {
        if let Ok(done) = tokio::time::timeout(d, &mut self.handle).await {
            let ex = done.expect("request task panicked");
            panic!(
                "expected the request (id {:?}) to be held, but it was answered after {:?}: \
                 HTTP {} {}",
                self.id,
                ex.elapsed(),
                ex.status,
                ex.response.text()
            );
        }
    }

    /// Whether the response has already arrived.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the response.
    pub async fn finish(self) -> Exchange {
        self.handle.await.expect("request task panicked")
    }

    /// Walks away from the request the way a closed tab does: the connection is closed without
    /// reading the response. Returns once the socket is closed.
    pub async fn abandon(self) {
        self.handle.abort();
        // The task's end (cancelled, or finished if the answer came first) drops its socket.
        let _ = self.handle.await;
    }
}

impl Client {
    /// A new tab of a new browser (empty cookie jar, no session).
    pub fn new(server: &TestServer) -> Client {
        Client::with_cookie_name(server, BROWSER_COOKIE)
    }

    /// Like [`Client::new`], for a server configured with another `--browser-cookie-name`.
    pub fn with_cookie_name(server: &TestServer, cookie_name: &str) -> Client {
        Client::at(server.addr(), server.path(), cookie_name)
    }

    /// A new tab of a new browser, for a Bayeux endpoint at `addr` and `path` (a server embedded
    /// in the test itself rather than a `bayeuxd` child).
    pub fn at(addr: SocketAddr, path: &str, cookie_name: &str) -> Client {
        Client {
            inner: Arc::new(Inner {
                addr,
                path: path.to_string(),
                cookie_name: cookie_name.to_string(),
                jar: Arc::new(Mutex::new(None)),
                keeps_cookies: true,
                client_id: Mutex::new(None),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// A client whose HTTP library keeps no cookies: it never sends the browser cookie back.
    pub fn without_cookies(server: &TestServer) -> Client {
        let client = Client::new(server);
        Client {
            inner: Arc::new(Inner {
                keeps_cookies: false,
                ..Arc::into_inner(client.inner).expect("a new client")
            }),
        }
    }

    /// Handshakes a new client and sends its first `/meta/connect` (answered immediately), so
    /// that its next connect is a normal long poll.
    pub async fn open(server: &TestServer) -> Client {
        let client = Client::new(server);
        client.handshake().await;
        client.first_connect().await;
        client
    }

    /// Another tab of the same browser: shares this tab's cookie jar, has its own session.
    pub fn tab(&self) -> Client {
        Client {
            inner: Arc::new(Inner {
                addr: self.inner.addr,
                path: self.inner.path.clone(),
                cookie_name: self.inner.cookie_name.clone(),
                jar: self.inner.jar.clone(),
                keeps_cookies: self.inner.keeps_cookies,
                client_id: Mutex::new(None),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The same tab (cookie jar, clientId) talking to another server: another node of a
    /// cluster, as a round-robin balancer would send it.
    pub fn via(&self, addr: SocketAddr) -> Client {
        let client_id = self.inner.client_id.lock().expect("client id lock").clone();
        Client {
            inner: Arc::new(Inner {
                addr,
                path: self.inner.path.clone(),
                cookie_name: self.inner.cookie_name.clone(),
                jar: self.inner.jar.clone(),
                keeps_cookies: self.inner.keeps_cookies,
                client_id: Mutex::new(client_id),
                next_id: AtomicU64::new(self.inner.next_id.load(Ordering::Relaxed) + 1000),
            }),
        }
    }

    /// The browser cookie value currently in the jar.
    pub fn cookie(&self) -> Option<String> {
        self.inner.jar.lock().expect("cookie jar lock").clone()
    }

    /// Replaces the browser cookie value (for this tab and the tabs sharing its jar).
    pub fn set_cookie(&self, value: Option<String>) {
        *self.inner.jar.lock().expect("cookie jar lock") = value;
    }

    /// The clientId of the last successful handshake (panics if there is none).
    pub fn client_id(&self) -> String {
        self.inner
            .client_id
            .lock()
            .expect("client id lock")
            .clone()
            .expect("this client has no clientId: handshake first")
    }

    /// Makes this tab use `cid` (e.g. a clientId stolen from another browser).
    pub fn set_client_id(&self, cid: &str) {
        *self.inner.client_id.lock().expect("client id lock") = Some(cid.to_string());
    }

    /// The mount path with `suffix` appended, e.g. `/cometd` + `/connect`.
    pub fn url(&self, suffix: &str) -> String {
        format!("{}{}", self.inner.path, suffix)
    }

    /// The server address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The next message id, as the decimal string the JS client uses.
    pub fn next_id(&self) -> String {
        self.inner
            .next_id
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    /// Sends `req` with this tab's cookie and stores any browser cookie the response sets.
    pub async fn send(&self, req: Request) -> Response {
        self.send_notify(req, None).await
    }

    async fn send_notify(
        &self,
        mut req: Request,
        written: Option<oneshot::Sender<()>>,
    ) -> Response {
        if let Some(value) = self.cookie() {
            req = req.header("Cookie", &format!("{}={value}", self.inner.cookie_name));
        }
        let resp = http::send(self.inner.addr, &req, written)
            .await
            .unwrap_or_else(|e| panic!("{} {} failed: {e}", req.method, req.path));
        for set_cookie in resp.headers_named("Set-Cookie") {
            let pair = set_cookie.split(';').next().unwrap_or_default().trim();
            if let Some((name, value)) = pair.split_once('=') {
                if name == self.inner.cookie_name && self.inner.keeps_cookies {
                    self.set_cookie(Some(value.to_string()));
                }
            }
        }
        resp
    }

    /// Starts sending `req` (with this tab's cookie) in the background and returns once the
    /// request bytes are written; the task yields the raw response (used for held JSONP GETs,
    /// whose bodies are not JSON).
    pub async fn spawn_send(&self, req: Request) -> JoinHandle<Response> {
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let handle = tokio::spawn(async move { this.send_notify(req, Some(tx)).await });
        // An error here means the task ended before writing (it reports why when awaited).
        let _ = rx.await;
        handle
    }

    /// POSTs `body` (any JSON) to the mount path; returns the status and the reply messages.
    pub async fn post(&self, body: Value) -> (u16, Vec<Value>) {
        let ex = self.post_to("", String::new(), &body).await;
        (ex.status, ex.messages)
    }

    /// POSTs `body` to the mount path plus `suffix` (e.g. `/handshake`); `id` is recorded in the
    /// returned [`Exchange`] only.
    pub async fn post_to(&self, suffix: &str, id: String, body: &Value) -> Exchange {
        let req = Request::post_json(&self.url(suffix), body);
        self.exchange(id, req, None).await
    }

    /// Sends `req` and decodes the response as a Bayeux message list.
    ///
    /// A 200 response must be a non-empty JSON array of objects (checklist C1); anything else
    /// panics here, so every test checks C1 implicitly.
    pub async fn exchange(
        &self,
        id: String,
        req: Request,
        written: Option<oneshot::Sender<()>>,
    ) -> Exchange {
        let started = Instant::now();
        let response = self.send_notify(req, written).await;
        let finished = Instant::now();
        let parsed: Option<Value> = bayeux_message::parse_json(&response.body).ok();
        let messages = match &parsed {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        };
        if response.status == 200 {
            let is_batch = !messages.is_empty() && messages.iter().all(Value::is_object);
            assert!(
                is_batch,
                "C1: an HTTP 200 body must be a non-empty JSON array of messages, got {:?}",
                response.text()
            );
        }
        Exchange {
            id,
            status: response.status,
            messages,
            response,
            started,
            finished,
        }
    }

    /// Sends one message (as a one-element array) to the mount path.
    pub async fn send_message(&self, msg: Value) -> Exchange {
        let id = msg["id"].as_str().unwrap_or_default().to_string();
        self.post_to("", id, &json!([msg])).await
    }

    /// Starts sending one message in the background; returns once the request bytes are written.
    pub async fn start_message(&self, msg: Value) -> Pending {
        let id = msg["id"].as_str().unwrap_or_default().to_string();
        let req = Request::post_json(&self.url(""), &json!([msg]));
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let task_id = id.clone();
        let handle = tokio::spawn(async move { this.exchange(task_id, req, Some(tx)).await });
        // An error here means the task ended before writing (it will report why on finish()).
        let _ = rx.await;
        Pending { id, handle }
    }

    /// The handshake message the tests send (shape of the JS client's, without extensions).
    pub fn handshake_message(id: &str) -> Value {
        json!({
            "id": id,
            "channel": "/meta/handshake",
            "version": "1.0",
            "minimumVersion": "1.0",
            "supportedConnectionTypes": ["long-polling", "callback-polling"],
            "advice": {"timeout": 60000, "interval": 0}
        })
    }

    /// Handshakes, asserts success, stores the clientId and returns the reply message.
    pub async fn handshake(&self) -> Value {
        let id = self.next_id();
        let ex = self
            .post_to(
                "/handshake",
                id.clone(),
                &json!([Client::handshake_message(&id)]),
            )
            .await;
        let msgs = ex.ok();
        assert_eq!(msgs.len(), 1, "handshake response: {msgs:?}");
        let reply = msgs[0].clone();
        assert_eq!(
            reply["successful"],
            json!(true),
            "handshake failed: {reply}"
        );
        assert_eq!(reply["id"], json!(id), "handshake reply id: {reply}");
        let cid = reply["clientId"]
            .as_str()
            .unwrap_or_else(|| panic!("handshake reply without string clientId: {reply}"));
        self.set_client_id(cid);
        reply
    }

    /// A `/meta/connect` message with this tab's clientId and optional client advice.
    pub fn connect_message(&self, id: &str, advice: Option<Value>) -> Value {
        let mut msg = json!({
            "id": id,
            "channel": "/meta/connect",
            "connectionType": "long-polling",
            "clientId": self.client_id(),
        });
        if let Some(advice) = advice {
            msg["advice"] = advice;
        }
        msg
    }

    /// Sends the first connect after a handshake (with `advice:{timeout:0}`, like the JS client)
    /// and asserts it succeeded.
    pub async fn first_connect(&self) -> Exchange {
        let ex = self.connect_with_advice(json!({"timeout": 0})).await;
        let last = ex.ok().last().cloned().unwrap_or_default();
        assert_eq!(
            last["channel"],
            json!("/meta/connect"),
            "first connect: {last}"
        );
        assert_eq!(last["successful"], json!(true), "first connect: {last}");
        ex
    }

    /// Sends a `/meta/connect` without advice (a normal long poll) and waits for its response.
    pub async fn connect(&self) -> Exchange {
        let id = self.next_id();
        let msg = self.connect_message(&id, None);
        self.post_to("/connect", id, &json!([msg])).await
    }

    /// Sends a `/meta/connect` carrying client `advice` and waits for its response.
    pub async fn connect_with_advice(&self, advice: Value) -> Exchange {
        let id = self.next_id();
        let msg = self.connect_message(&id, Some(advice));
        self.post_to("/connect", id, &json!([msg])).await
    }

    /// Starts a `/meta/connect` without advice in the background.
    pub async fn start_connect(&self) -> Pending {
        let id = self.next_id();
        let msg = self.connect_message(&id, None);
        self.start_message(msg).await
    }

    /// Starts a `/meta/connect` with client `advice` in the background.
    pub async fn start_connect_with_advice(&self, advice: Value) -> Pending {
        let id = self.next_id();
        let msg = self.connect_message(&id, Some(advice));
        self.start_message(msg).await
    }

    /// Asks for an immediate connect reply (`advice:{timeout:0}`) and returns the deliveries that
    /// precede the (asserted successful) connect reply.
    pub async fn poll_now(&self) -> Vec<Value> {
        let ex = self.connect_with_advice(json!({"timeout": 0})).await;
        let mut msgs = ex.ok().to_vec();
        let reply = msgs.pop().unwrap_or_default();
        assert_eq!(
            reply["id"],
            json!(ex.id),
            "connect reply must come last: {:?}",
            ex.messages
        );
        assert_eq!(reply["channel"], json!("/meta/connect"), "{reply}");
        assert_eq!(reply["successful"], json!(true), "{reply}");
        msgs
    }

    /// Sends `/meta/subscribe` for `subscription` (a string or an array, sent verbatim).
    pub async fn subscribe(&self, subscription: Value) -> Exchange {
        let id = self.next_id();
        self.send_message(json!({
            "id": id,
            "channel": "/meta/subscribe",
            "subscription": subscription,
            "clientId": self.client_id(),
        }))
        .await
    }

    /// Subscribes and asserts the exact successful reply (and no piggy-backed deliveries).
    pub async fn subscribe_ok(&self, subscription: Value) {
        let ex = self.subscribe(subscription.clone()).await;
        assert_messages(
            ex.ok(),
            &[json!({
                "id": ex.id,
                "channel": "/meta/subscribe",
                "subscription": subscription,
                "successful": true,
            })],
        );
    }

    /// Sends `/meta/unsubscribe` for `subscription`.
    pub async fn unsubscribe(&self, subscription: Value) -> Exchange {
        let id = self.next_id();
        self.send_message(json!({
            "id": id,
            "channel": "/meta/unsubscribe",
            "subscription": subscription,
            "clientId": self.client_id(),
        }))
        .await
    }

    /// Publishes `data` on `channel`.
    pub async fn publish(&self, channel: &str, data: Value) -> Exchange {
        let id = self.next_id();
        self.send_message(json!({
            "id": id,
            "channel": channel,
            "data": data,
            "clientId": self.client_id(),
        }))
        .await
    }

    /// Publishes and asserts the response is exactly the successful publish reply (the publisher
    /// must not be subscribed to `channel`, or its own delivery would be piggy-backed).
    pub async fn publish_ok(&self, channel: &str, data: Value) {
        let ex = self.publish(channel, data).await;
        assert_messages(
            ex.ok(),
            &[json!({"id": ex.id, "channel": channel, "successful": true})],
        );
    }

    /// Sends `/meta/disconnect`.
    pub async fn disconnect(&self) -> Exchange {
        let id = self.next_id();
        let msg = json!({"id": id, "channel": "/meta/disconnect", "clientId": self.client_id()});
        self.post_to("/disconnect", id, &json!([msg])).await
    }
}

/// A healthy subscriber plus a publisher, used to prove the server still works after a test
/// threw something bad at it.
pub struct Witness {
    subscriber: Client,
    publisher: Client,
    channel: String,
    counter: AtomicU64,
}

impl Witness {
    /// Opens two sessions; the subscriber subscribes to `channel` (pick one no test publishes to).
    pub async fn new(server: &TestServer, channel: &str) -> Witness {
        let subscriber = Client::open(server).await;
        subscriber.subscribe_ok(json!(channel)).await;
        let publisher = Client::open(server).await;
        Witness {
            subscriber,
            publisher,
            channel: channel.to_string(),
            counter: AtomicU64::new(0),
        }
    }

    /// The subscribing session (e.g. to try to use its clientId from another browser).
    pub fn subscriber(&self) -> &Client {
        &self.subscriber
    }

    /// The publishing session.
    pub fn publisher(&self) -> &Client {
        &self.publisher
    }

    /// The channel the subscriber listens to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Asserts a publish still reaches the subscriber's next connect, exactly.
    pub async fn assert_alive(&self) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let data = json!({"witness": n});
        self.publisher.publish_ok(&self.channel, data.clone()).await;
        let ex = self.subscriber.connect().await;
        assert_messages(
            ex.ok(),
            &[
                json!({"channel": self.channel, "data": data}),
                json!({"id": ex.id, "channel": "/meta/connect", "successful": true}),
            ],
        );
    }
}

/// Asserts two message lists are equal, printing both as compact JSON when they are not.
#[track_caller]
pub fn assert_messages(got: &[Value], want: &[Value]) {
    if got != want {
        panic!(
            "message mismatch\n  got:  {}\n  want: {}",
            Value::Array(got.to_vec()),
            Value::Array(want.to_vec())
        );
    }
}

/// Asserts `cid` looks like a server-generated clientId: >= 16 chars of `[A-Za-z0-9]`.
#[track_caller]
pub fn check_client_id(cid: &str) {
    assert!(
        cid.len() >= 16 && cid.bytes().all(|b| b.is_ascii_alphanumeric()),
        "C7: clientId must be >= 16 chars of [A-Za-z0-9], got {cid:?}"
    );
}

/// Asserts a successful handshake reply exactly: every field is compared with the Java 8 shape
/// except `clientId` (checked with [`check_client_id`]) and `supportedConnectionTypes` (must be
/// an array of known transports, without duplicates, containing `long-polling`). Returns the
/// clientId.
#[track_caller]
pub fn assert_handshake_reply(reply: &Value, id: &str, advice: Value) -> String {
    let mut rest = reply.clone();
    let obj = rest
        .as_object_mut()
        .unwrap_or_else(|| panic!("handshake reply is not an object: {reply}"));
    let cid = match obj.remove("clientId") {
        Some(Value::String(cid)) => cid,
        other => panic!("C4: handshake reply needs a string clientId, got {other:?} in {reply}"),
    };
    check_client_id(&cid);
    let types = match obj.remove("supportedConnectionTypes") {
        Some(Value::Array(types)) => types,
        other => panic!("C4: supportedConnectionTypes must be an array, got {other:?} in {reply}"),
    };
    let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
    assert!(
        names.len() == types.len()
            && names.contains(&"long-polling")
            && names.iter().all(|n| KNOWN_TRANSPORTS.contains(n))
            && (1..names.len()).all(|i| !names[..i].contains(&names[i])),
        "C4: supportedConnectionTypes must list long-polling and only known transports once, \
         got {types:?}"
    );
    let want = json!({
        "id": id,
        "channel": "/meta/handshake",
        "successful": true,
        "version": "1.0",
        "minimumVersion": "1.0",
        "advice": advice,
    });
    assert_eq!(
        rest, want,
        "handshake reply (without clientId and supportedConnectionTypes)\n  got:  {rest}\n  want: {want}"
    );
    cid
}
