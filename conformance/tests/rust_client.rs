//! The Rust client (`bayeux-client`) against real servers: the `bayeuxd` binary, an embedded
//! server with services, and the reference peers Faye 1.4 and cometd-nodejs-server 1.2
//! (`bench/peers`, installed with `npm ci`).
//!
//! Every test checks exact data: which messages arrive, in which order, and that nothing else
//! does (a bounded silence after the last expected message). Connection loss is produced by a
//! small TCP proxy in this file, which can swallow the server's responses or be pointed at a
//! restarted server.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer};
use bayeux_client::{Client, Error, Message, Subscription, TransportKind};
use bayeux_server::{ServiceReply, ServiceRequest};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use support::TestServer;

/// How long an expected message may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(10);

/// How long the tests wait to believe that nothing more arrives.
const SILENCE: Duration = Duration::from_millis(400);

fn url_of(server: &TestServer) -> String {
    format!("http://{}{}", server.addr(), server.path())
}

/// A client with small backoff steps, so that reconnects happen within a test's patience.
fn builder(url: &str) -> bayeux_client::ClientBuilder {
    Client::builder(url).backoff(Duration::from_millis(100), Duration::from_millis(300))
}

async fn long_polling(url: &str) -> Client {
    builder(url)
        .transports(&[TransportKind::LongPolling])
        .connect()
        .await
        .expect("long-polling client connects")
}

/// The next message of a subscription, as `(channel, data)`.
async fn next(subscription: &mut Subscription) -> (String, Value) {
    let message = tokio::time::timeout(ARRIVAL, subscription.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "nothing arrived on {} within {ARRIVAL:?}",
                subscription.channel()
            )
        })
        .expect("subscription stream open");
    channel_and_data(&message)
}

fn channel_and_data(message: &Message) -> (String, Value) {
    (
        message
            .channel()
            .expect("delivery has a channel")
            .to_owned(),
        message.data().cloned().expect("delivery has data"),
    )
}

/// Asserts that nothing arrives on `subscription` for a while.
async fn assert_silent(subscription: &mut Subscription) {
    if let Ok(extra) = tokio::time::timeout(SILENCE, subscription.next()).await {
        panic!(
            "unexpected message on {}: {extra:?}",
            subscription.channel()
        );
    }
}

/// Subscribe, publish, receive exactly that message; checks the transport in use.
async fn round_trip(client: &Client, channel: &str, expected: TransportKind) {
    assert_eq!(client.transport(), expected);
    let mut subscription = client.subscribe(channel).await.expect("subscribe");
    let reply = client
        .publish(channel, json!({"text": "hello", "n": 1}))
        .await
        .expect("publish accepted");
    assert_eq!(reply.channel(), Some(channel));
    assert_eq!(reply.get("successful"), Some(&json!(true)));
    assert_eq!(
        next(&mut subscription).await,
        (channel.to_owned(), json!({"text": "hello", "n": 1}))
    );
    assert_silent(&mut subscription).await;
}

#[tokio::test]
async fn long_polling_round_trip_keeps_the_browser_cookie() {
    let server = TestServer::start(&[]).await;
    let client = long_polling(&url_of(&server)).await;
    // Without the cookie every request after the handshake would be 402::session_unknown.
    let cookie = client
        .cookies()
        .get("BAYEUX_BROWSER")
        .expect("BAYEUX_BROWSER kept");
    assert!(!cookie.is_empty());
    round_trip(&client, "/chat/room", TransportKind::LongPolling).await;
    assert_eq!(client.handshakes(), 1);
    client.disconnect().await.expect("disconnect");
    assert_eq!(client.status(), bayeux_client::Status::Disconnected);
    assert!(matches!(
        client.publish("/chat/room", json!(1)).await,
        Err(Error::Disconnected)
    ));
}

#[tokio::test]
async fn websocket_round_trip() {
    let server = TestServer::start(&[]).await;
    let client = builder(&url_of(&server))
        .connect()
        .await
        .expect("client connects");
    round_trip(&client, "/chat/ws", TransportKind::WebSocket).await;
    client.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn websocket_round_trip_without_ack() {
    // Without acks the server pushes deliveries at once instead of in connect replies.
    let server = TestServer::start(&[]).await;
    let client = builder(&url_of(&server))
        .ack(false)
        .connect()
        .await
        .expect("client connects");
    round_trip(&client, "/chat/ws", TransportKind::WebSocket).await;
}

#[tokio::test]
async fn falls_back_to_long_polling_when_websocket_is_not_offered() {
    let server = TestServer::start(&["--allowed-transports", "long-polling"]).await;
    let client = builder(&url_of(&server))
        .connect()
        .await
        .expect("client connects");
    round_trip(&client, "/fallback", TransportKind::LongPolling).await;
}

#[tokio::test]
async fn wildcard_subscriptions_receive_matching_channels() {
    let server = TestServer::start(&[]).await;
    let client = long_polling(&url_of(&server)).await;
    let mut one = client.subscribe("/w/*").await.expect("subscribe /w/*");
    let mut deep = client.subscribe("/w/**").await.expect("subscribe /w/**");
    let mut exact = client.subscribe("/w/a").await.expect("subscribe /w/a");
    for (channel, n) in [("/w/a", 1), ("/w/a/b", 2), ("/wx", 3), ("/w/c", 4)] {
        client.publish(channel, json!(n)).await.expect("publish");
    }
    assert_eq!(next(&mut one).await, ("/w/a".into(), json!(1)));
    assert_eq!(next(&mut one).await, ("/w/c".into(), json!(4)));
    assert_eq!(next(&mut deep).await, ("/w/a".into(), json!(1)));
    assert_eq!(next(&mut deep).await, ("/w/a/b".into(), json!(2)));
    assert_eq!(next(&mut deep).await, ("/w/c".into(), json!(4)));
    assert_eq!(next(&mut exact).await, ("/w/a".into(), json!(1)));
    assert_silent(&mut one).await;
    assert_silent(&mut deep).await;
    assert_silent(&mut exact).await;

    // After unsubscribing, only the remaining subscriptions receive.
    one.unsubscribe().await.expect("unsubscribe");
    client.publish("/w/d", json!(5)).await.expect("publish");
    assert_eq!(next(&mut deep).await, ("/w/d".into(), json!(5)));
    assert_silent(&mut exact).await;
}

#[tokio::test]
async fn batch_of_publishes_arrives_in_order() {
    for transport in [TransportKind::LongPolling, TransportKind::WebSocket] {
        let server = TestServer::start(&[]).await;
        let client = builder(&url_of(&server))
            .transports(&[transport])
            .connect()
            .await
            .expect("client connects");
        let mut subscription = client.subscribe("/seq").await.expect("subscribe");
        let replies = client
            .batch(|b| {
                for n in 0..5 {
                    b.publish("/seq", json!({"n": n}))?;
                }
                Ok(())
            })
            .await
            .expect("batch accepted");
        assert_eq!(replies.len(), 5);
        assert!(replies
            .iter()
            .all(|r| r.channel() == Some("/seq") && r.get("successful") == Some(&json!(true))));
        for n in 0..5 {
            assert_eq!(
                next(&mut subscription).await,
                ("/seq".into(), json!({"n": n})),
                "{transport}"
            );
        }
        assert_silent(&mut subscription).await;
    }
}

#[tokio::test]
async fn server_refusals_carry_the_error_string() {
    let server = TestServer::start(&["--max-subscriptions", "1"]).await;
    let client = long_polling(&url_of(&server)).await;
    let _first = client.subscribe("/one").await.expect("first subscription");
    let refused = client
        .subscribe("/two")
        .await
        .expect_err("second subscription is over the limit");
    assert_eq!(refused.server_error(), Some("403::too_many_subscriptions"));
    // The refused subscription is not kept: a new session would not subscribe to it either.
    assert!(matches!(
        client.publish("/a/*", json!(1)).await,
        Err(Error::InvalidChannel(_))
    ));
}

/// An actix-web app embedding the server with two services, on its own thread.
fn embedded_with_services() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = bayeux_server::Server::builder().build();
            server
                .service("/service/echo", |req: ServiceRequest<'_>| {
                    Some(ServiceReply::Success(json!({"echo": req.data().clone()})))
                })
                .expect("service channel");
            server
                .service("/service/fail", |_req: ServiceRequest<'_>| {
                    Some(ServiceReply::Failure(json!({"reason": "always fails"})))
                })
                .expect("service channel");
            let mounted = server.clone();
            let http = HttpServer::new(move || {
                App::new().service(bayeux_actix::scope("/cometd", mounted.clone()))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .expect("bind loopback");
            tx.send(http.addrs()[0]).expect("test is waiting");
            http.run().await
        })
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("app starts")
}

#[tokio::test]
async fn remote_calls_get_the_answer_matched_by_id() {
    let addr = embedded_with_services();
    let url = format!("http://{addr}/cometd");
    for transport in [TransportKind::LongPolling, TransportKind::WebSocket] {
        let client = builder(&url)
            .transports(&[transport])
            .connect()
            .await
            .expect("client connects");
        // Concurrent calls, each answered with its own data.
        let (a, b) = tokio::join!(
            client.remote_call("/service/echo", json!("a"), ARRIVAL),
            client.remote_call("/service/echo", json!({"b": [1, 2]}), ARRIVAL),
        );
        assert_eq!(a.expect("echo a"), json!({"echo": "a"}), "{transport}");
        assert_eq!(
            b.expect("echo b"),
            json!({"echo": {"b": [1, 2]}}),
            "{transport}"
        );
        match client
            .remote_call("/service/fail", json!(null), ARRIVAL)
            .await
        {
            Err(Error::CallFailed(data)) => assert_eq!(data, json!({"reason": "always fails"})),
            other => panic!("expected a failed call, got {other:?}"),
        }
        // Nobody answers on this channel: the call times out.
        let started = tokio::time::Instant::now();
        assert!(matches!(
            client
                .remote_call("/service/nobody", json!(1), Duration::from_millis(300))
                .await,
            Err(Error::Timeout)
        ));
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

/// A TCP proxy that can swallow the server's responses or switch to another server.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    swallow: Arc<AtomicBool>,
    swallowed: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Proxy {
            addr: listener.local_addr().expect("proxy address"),
            target: Arc::new(Mutex::new(target)),
            swallow: Arc::default(),
            swallowed: Arc::default(),
        };
        let (target, swallow, swallowed) = (
            proxy.target.clone(),
            proxy.swallow.clone(),
            proxy.swallowed.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let to = *target.lock().expect("target lock");
                let (swallow, swallowed) = (swallow.clone(), swallowed.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(to).await {
                        pipe(client, server, swallow, swallowed).await;
                    }
                });
            }
        });
        proxy
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn retarget(&self, to: SocketAddr) {
        *self.target.lock().expect("target lock") = to;
    }

    /// While on, whatever the server sends is dropped and the client's connection closed, as
    /// when a response is lost with its connection.
    fn set_swallow(&self, on: bool) {
        self.swallow.store(on, Ordering::SeqCst);
    }

    fn swallowed_text(&self) -> String {
        String::from_utf8_lossy(&self.swallowed.lock().expect("swallowed lock")).into_owned()
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    swallow: Arc<AtomicBool>,
    swallowed: Arc<Mutex<Vec<u8>>>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if swallow.load(Ordering::SeqCst) {
            swallowed
                .lock()
                .expect("swallowed lock")
                .extend_from_slice(&buf[..n]);
            break;
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

/// Waits until `check` holds, polling; panics with `what` after `within`.
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes three messages while the subscriber's connect responses are lost, then lets the
/// subscriber reconnect and publishes a fourth; returns what the subscriber received.
async fn deliveries_across_a_lost_response(ack: bool) -> Vec<(String, Value)> {
    let server = TestServer::start(&["--timeout", "3000"]).await;
    let proxy = Proxy::start(server.addr()).await;
    let subscriber = builder(&proxy.url(server.path()))
        .transports(&[TransportKind::LongPolling])
        .ack(ack)
        .connect()
        .await
        .expect("subscriber connects");
    let publisher = long_polling(&url_of(&server)).await;
    let mut subscription = subscriber.subscribe("/ack").await.expect("subscribe");

    proxy.set_swallow(true);
    for n in 1..=3 {
        publisher.publish("/ack", json!(n)).await.expect("publish");
    }
    // The subscriber's connect response carrying the messages is lost on the way.
    eventually(ARRIVAL, "the deliveries were swallowed", || {
        proxy.swallowed_text().contains(r#""data":3"#)
    })
    .await;
    proxy.set_swallow(false);
    // Give the subscriber time to reconnect before the last message, so that the test
    // shows what the reconnect itself brought.
    tokio::time::sleep(Duration::from_millis(800)).await;
    publisher.publish("/ack", json!(4)).await.expect("publish");

    let mut received = Vec::new();
    loop {
        let (channel, data) = next(&mut subscription).await;
        let last = data == json!(4);
        received.push((channel, data));
        if last {
            break;
        }
    }
    assert_silent(&mut subscription).await;
    received
}

#[tokio::test]
async fn ack_extension_redelivers_what_a_lost_connect_response_carried() {
    let received = deliveries_across_a_lost_response(true).await;
    let expected: Vec<(String, Value)> = (1..=4).map(|n| ("/ack".into(), json!(n))).collect();
    assert_eq!(received, expected);
}

#[tokio::test]
async fn without_ack_a_lost_connect_response_loses_its_messages() {
    // The control experiment of the test above: it shows that the proxy really loses them.
    let received = deliveries_across_a_lost_response(false).await;
    assert_eq!(received, [("/ack".to_owned(), json!(4))]);
}

#[tokio::test]
async fn rehandshakes_and_resubscribes_after_the_server_forgets_the_session() {
    for transport in [TransportKind::LongPolling, TransportKind::WebSocket] {
        let first = TestServer::start(&[]).await;
        let proxy = Proxy::start(first.addr()).await;
        let client = builder(&proxy.url(first.path()))
            .transports(&[transport])
            .connect()
            .await
            .expect("client connects");
        let mut subscription = client.subscribe("/r/*").await.expect("subscribe");
        let publisher = long_polling(&url_of(&first)).await;
        publisher.publish("/r/a", json!(1)).await.expect("publish");
        assert_eq!(next(&mut subscription).await, ("/r/a".into(), json!(1)));
        let old_id = client.client_id().expect("session id");

        // The server dies without a word, and a new one (which knows no session) takes over.
        first.signal("KILL").await;
        drop(first);
        let second = TestServer::start(&[]).await;
        proxy.retarget(second.addr());
        eventually(ARRIVAL, "the client handshook again", || {
            client.handshakes() == 2 && client.status() == bayeux_client::Status::Connected
        })
        .await;
        assert_ne!(client.client_id().expect("new session id"), old_id);

        // The subscription was renewed on the new session, under the same stream.
        let publisher = long_polling(&url_of(&second)).await;
        publisher.publish("/r/b", json!(2)).await.expect("publish");
        assert_eq!(
            next(&mut subscription).await,
            ("/r/b".into(), json!(2)),
            "{transport}"
        );
        assert_silent(&mut subscription).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Reference peers: Faye 1.4.3 and cometd-nodejs-server 1.2.1, from bench/peers.

/// A Node peer server, killed on drop.
struct Peer {
    _child: Child,
    url: String,
}

async fn start_peer(script: &str) -> Peer {
    let peers = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/peers"));
    assert!(
        peers.join("node_modules").is_dir(),
        "{}/node_modules is missing: run `npm ci` in bench/peers first",
        peers.display()
    );
    let mut child = Command::new("node")
        .arg(peers.join(script))
        .arg("0")
        .current_dir(&peers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node {script}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let line = tokio::time::timeout(ARRIVAL, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{script} printed nothing within {ARRIVAL:?}"))
        .expect("read peer stdout")
        .unwrap_or_else(|| panic!("{script} exited before listening"));
    let url = line
        .split_once("listening on ")
        .map(|(_, url)| url.trim().to_owned())
        .unwrap_or_else(|| panic!("unexpected first line from {script}: {line:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Peer { _child: child, url }
}

/// Two clients of one peer: one subscribes (an exact channel and a pattern), the other
/// publishes a batch.
///
/// The exact channel and the pattern do not overlap: cometd-nodejs-server 1.2 sends a session
/// one copy per matching subscription (Java CometD, Faye and bayeuxd send one), and a client
/// cannot tell such copies from two publishes.
async fn peer_round_trip(url: &str, transports: &[TransportKind], expected: TransportKind) {
    let subscriber = builder(url)
        .transports(transports)
        .connect()
        .await
        .expect("subscriber connects");
    assert_eq!(subscriber.transport(), expected);
    let publisher = long_polling(url).await;
    let mut exact = subscriber.subscribe("/exact").await.expect("subscribe");
    let mut wild = subscriber.subscribe("/peer/*").await.expect("subscribe");
    publisher
        .batch(|b| {
            b.publish("/exact", json!({"n": 1}))?
                .publish("/peer/b", json!({"n": 2}))?
                .publish("/peer/c/d", json!({"n": 3}))?
                .publish("/peer/c", json!({"n": 4}))?
                .publish("/exact", json!({"n": 5}))?;
            Ok(())
        })
        .await
        .expect("batch accepted");
    assert_eq!(next(&mut exact).await, ("/exact".into(), json!({"n": 1})));
    assert_eq!(next(&mut exact).await, ("/exact".into(), json!({"n": 5})));
    assert_eq!(next(&mut wild).await, ("/peer/b".into(), json!({"n": 2})));
    assert_eq!(next(&mut wild).await, ("/peer/c".into(), json!({"n": 4})));
    // The subscriber publishes too, and gets its own message.
    subscriber
        .publish("/peer/b", json!("own"))
        .await
        .expect("publish");
    assert_eq!(next(&mut wild).await, ("/peer/b".into(), json!("own")));
    assert_silent(&mut exact).await;
    assert_silent(&mut wild).await;
    subscriber.disconnect().await.expect("disconnect");
    publisher.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn faye_over_long_polling() {
    let peer = start_peer("faye-server.mjs").await;
    peer_round_trip(
        &peer.url,
        &[TransportKind::LongPolling],
        TransportKind::LongPolling,
    )
    .await;
}

#[tokio::test]
async fn faye_over_websocket() {
    let peer = start_peer("faye-server.mjs").await;
    peer_round_trip(
        &peer.url,
        &[TransportKind::WebSocket, TransportKind::LongPolling],
        TransportKind::WebSocket,
    )
    .await;
}

#[tokio::test]
async fn cometd_nodejs_server_over_long_polling() {
    let peer = start_peer("cometd-server.mjs").await;
    peer_round_trip(
        &peer.url,
        &[TransportKind::LongPolling],
        TransportKind::LongPolling,
    )
    .await;
}

#[tokio::test]
async fn cometd_nodejs_server_makes_the_client_fall_back_from_websocket() {
    // This server has no websocket transport: the upgrade fails and the client moves on.
    let peer = start_peer("cometd-server.mjs").await;
    peer_round_trip(
        &peer.url,
        &[TransportKind::WebSocket, TransportKind::LongPolling],
        TransportKind::LongPolling,
    )
    .await;
}
