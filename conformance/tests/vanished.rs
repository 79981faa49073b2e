//! A long poll whose client went away: a page reload, a client that cancels its poll, a phone
//! changing networks. The held `/meta/connect`'s connection is closed by the client; the server
//! notices (its read side is at end of stream), drops the hold at once instead of at its timeout,
//! and keeps what was queued for the session's next connect, which gets every message, in
//! order, once. Over long-polling and callback-polling, with and without the ack extension.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::bayeux::Pending;
use support::http::{self, Request};
use support::jsonp;
use support::jsonp::PendingJsonp;
use support::{Client, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Trials per transport and extension setting.
const TRIALS: u64 = 100;

/// How long the server would hold a connect: far longer than any trial, so a hold that is not
/// dropped when its client leaves is still there when the next message comes.
const HOLD_MS: &str = "20000";

#[derive(Clone, Copy, Debug)]
enum Transport {
    LongPolling,
    CallbackPolling,
}

/// A subscriber that talks raw Bayeux over one of the HTTP transports.
struct Subscriber {
    client: Client,
    transport: Transport,
    /// The last ack batch received when the session uses the ack extension.
    ack: Option<u64>,
}

/// A held request that can be walked away from.
enum Held {
    Post(Pending),
    Get(PendingJsonp),
}

impl Held {
    async fn abandon(self) {
        match self {
            Held::Post(pending) => pending.abandon().await,
            Held::Get(pending) => pending.abandon().await,
        }
    }

    async fn assert_pending_for(&mut self, d: Duration) {
        match self {
            Held::Post(pending) => pending.assert_pending_for(d).await,
            Held::Get(pending) => pending.assert_pending_for(d).await,
        }
    }
}

impl Subscriber {
    async fn open(server: &TestServer, transport: Transport, with_ack: bool) -> Subscriber {
        let mut subscriber = Subscriber {
            client: Client::new(server),
            transport,
            ack: None,
        };
        let id = subscriber.client.next_id();
        let mut handshake = match transport {
            Transport::LongPolling => Client::handshake_message(&id),
            Transport::CallbackPolling => jsonp::handshake_message(&id),
        };
        if with_ack {
            handshake["ext"] = json!({"ack": true});
        }
        let reply = subscriber.send(handshake).await.remove(0);
        assert_eq!(reply["successful"], json!(true), "{reply}");
        if with_ack {
            assert_eq!(reply["ext"]["ack"], json!(true), "ack offered: {reply}");
            subscriber.ack = Some(0);
        }
        subscriber
            .client
            .set_client_id(reply["clientId"].as_str().expect("clientId"));
        assert_eq!(subscriber.poll_now().await, Vec::<Value>::new());
        let id = subscriber.client.next_id();
        let replies = subscriber
            .send(
                json!({"id": id, "channel": "/meta/subscribe", "subscription": "/vanish",
                "clientId": subscriber.client.client_id()}),
            )
            .await;
        assert_eq!(replies[0]["successful"], json!(true), "{replies:?}");
        subscriber
    }

    /// Sends one message and returns the replies.
    async fn send(&self, msg: Value) -> Vec<Value> {
        match self.transport {
            Transport::LongPolling => self.client.send_message(msg).await.ok().to_vec(),
            Transport::CallbackPolling => jsonp::send_batch(&self.client, "", json!([msg])).await,
        }
    }

    /// A connect carrying the ack of the last batch received, if the session acknowledges.
    fn connect_message(&self, advice: Option<Value>) -> (String, Value) {
        let id = self.client.next_id();
        let mut msg = match self.transport {
            Transport::LongPolling => self.client.connect_message(&id, advice),
            Transport::CallbackPolling => jsonp::connect_message(&self.client, &id, advice),
        };
        if let Some(batch) = self.ack {
            msg["ext"] = json!({"ack": batch});
        }
        (id, msg)
    }

    /// A connect the server holds (no messages are waiting).
    async fn start_poll(&self) -> Held {
        let (id, msg) = self.connect_message(None);
        match self.transport {
            Transport::LongPolling => Held::Post(self.client.start_message(msg).await),
            Transport::CallbackPolling => {
                Held::Get(jsonp::start_batch(&self.client, id, json!([msg])).await)
            }
        }
    }

    /// An immediate connect: the data of the deliveries it brings, in order.
    async fn poll_now(&mut self) -> Vec<Value> {
        let (id, msg) = self.connect_message(Some(json!({"timeout": 0})));
        let mut messages = self.send(msg).await;
        let reply = messages.pop().expect("a connect reply");
        assert_eq!(
            reply["id"],
            json!(id),
            "the connect reply comes last: {reply}"
        );
        assert_eq!(reply["successful"], json!(true), "{reply}");
        if self.ack.is_some() {
            let batch = reply["ext"]["ack"].as_u64();
            assert!(batch.is_some(), "an ack batch number: {reply}");
            self.ack = batch;
        }
        messages
            .iter()
            .map(|m| {
                assert_eq!(m["channel"], json!("/vanish"), "{m}");
                m["data"].clone()
            })
            .collect()
    }
}

/// The number of held connects on `server`.
async fn held_connects(server: &TestServer) -> f64 {
    let resp = http::send(server.addr(), &Request::new("GET", "/metrics"), None)
        .await
        .expect("metrics answered");
    let scrape = resp.text();
    scrape
        .lines()
        .find_map(|line| line.strip_prefix("bayeux_held_connects "))
        .unwrap_or_else(|| panic!("no bayeux_held_connects in:\n{scrape}"))
        .trim()
        .parse()
        .expect("numeric sample")
}

/// Waits until `server` holds no connect, which must happen long before the hold's timeout.
async fn assert_hold_dropped(server: &TestServer, trial: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while held_connects(server).await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "trial {trial}: the abandoned connect is still held after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `TRIALS` times: a held connect is abandoned, a message is published, the session's next
/// connect must bring exactly that message. Trials alternate between publishing right after
/// the close (the server may learn of it only when the message wakes the hold) and publishing
/// once the server has dropped the hold.
async fn messages_outlive_abandoned_polls(transport: Transport, with_ack: bool) {
    let server = TestServer::start(&["--timeout", HOLD_MS]).await;
    let mut subscriber = Subscriber::open(&server, transport, with_ack).await;
    let publisher = Client::open(&server).await;
    let mut got = Vec::new();
    for trial in 0..TRIALS {
        let mut held = subscriber.start_poll().await;
        if trial % 4 != 0 {
            // Surely held by now (otherwise the first check in the server sees the close).
            held.assert_pending_for(Duration::from_millis(20)).await;
        }
        held.abandon().await;
        if trial % 2 == 1 {
            assert_hold_dropped(&server, trial).await;
        }
        publisher.publish_ok("/vanish", json!(trial)).await;
        got.extend(subscriber.poll_now().await);
        assert_eq!(
            got.last(),
            Some(&json!(trial)),
            "{transport:?}, ack {with_ack}: trial {trial}'s message lost"
        );
    }
    let want: Vec<Value> = (0..TRIALS).map(|n| json!(n)).collect();
    assert_eq!(got, want, "every message, in order, once");
    assert_hold_dropped(&server, TRIALS).await;
}

#[tokio::test]
async fn long_polling_keeps_messages_of_abandoned_polls() {
    messages_outlive_abandoned_polls(Transport::LongPolling, false).await;
}

#[tokio::test]
async fn long_polling_with_ack_keeps_messages_of_abandoned_polls() {
    messages_outlive_abandoned_polls(Transport::LongPolling, true).await;
}

#[tokio::test]
async fn callback_polling_keeps_messages_of_abandoned_polls() {
    messages_outlive_abandoned_polls(Transport::CallbackPolling, false).await;
}

#[tokio::test]
async fn callback_polling_with_ack_keeps_messages_of_abandoned_polls() {
    messages_outlive_abandoned_polls(Transport::CallbackPolling, true).await;
}

/// One HTTP/1.1 connection kept open across requests, as a browser keeps it.
struct KeptAlive {
    stream: TcpStream,
}

impl KeptAlive {
    async fn open(server: &TestServer) -> KeptAlive {
        let stream = TcpStream::connect(server.addr()).await.expect("connected");
        KeptAlive { stream }
    }

    async fn post(&mut self, subscriber: &Subscriber, msg: &Value) {
        let body = json!([msg]).to_string();
        let cookie = subscriber.client.cookie().expect("a browser cookie");
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Cookie: BAYEUX_BROWSER={cookie}\r\nContent-Length: {}\r\n\r\n",
            subscriber.client.url(""),
            body.len()
        );
        self.stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .expect("request written");
    }

    /// Reads one response (framed by Content-Length) and returns its messages.
    async fn read_messages(&mut self) -> Vec<Value> {
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .expect("a Content-Length")
                    .trim()
                    .parse()
                    .expect("a length");
                if received.len() >= end + 4 + length {
                    let body = &received[end + 4..end + 4 + length];
                    return match serde_json::from_slice(body).expect("JSON") {
                        Value::Array(messages) => messages,
                        other => panic!("not a message list: {other}"),
                    };
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("a response within 5 s")
                .expect("read");
            assert!(n > 0, "connection closed mid-response");
            received.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The poll is abandoned on a connection that served requests before (the server has been
/// watching it since the first), as a browser's kept-alive connection is.
#[tokio::test]
async fn long_polling_keeps_messages_of_polls_abandoned_on_kept_alive_connections() {
    let server = TestServer::start(&["--timeout", HOLD_MS]).await;
    let mut subscriber = Subscriber::open(&server, Transport::LongPolling, false).await;
    let publisher = Client::open(&server).await;
    let mut got = Vec::new();
    for trial in 0..50 {
        let mut connection = KeptAlive::open(&server).await;
        let (_, msg) = subscriber.connect_message(Some(json!({"timeout": 0})));
        connection.post(&subscriber, &msg).await;
        let mut messages = connection.read_messages().await;
        assert_eq!(messages.pop().expect("a reply")["successful"], json!(true));
        assert_eq!(messages, Vec::<Value>::new(), "nothing was waiting");
        let (_, msg) = subscriber.connect_message(None);
        connection.post(&subscriber, &msg).await;
        if trial % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(connection);
        if trial % 4 == 1 {
            assert_hold_dropped(&server, trial).await;
        }
        publisher.publish_ok("/vanish", json!(trial)).await;
        got.extend(subscriber.poll_now().await);
        assert_eq!(
            got.last(),
            Some(&json!(trial)),
            "trial {trial}'s message lost"
        );
    }
    let want: Vec<Value> = (0..50).map(|n| json!(n)).collect();
    assert_eq!(got, want, "every message, in order, once");
}
