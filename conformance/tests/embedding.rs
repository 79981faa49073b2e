//! The Rust API of an embedded server, exercised over real HTTP: an actix-web application
//! mounts the endpoint with one call, watches sessions come and go, and publishes from Rust to
//! a long-polling client.

mod support;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer};
use bayeux_server::{RemovalReason, Server};
use serde_json::json;

use support::bayeux::BROWSER_COOKIE;
use support::{assert_messages, Client};

/// Session events as the application's listeners saw them.
type Events = Arc<Mutex<Vec<String>>>;

/// Starts an actix-web app embedding the server on its own thread; returns the server handle,
/// its address and the listener log.
fn embedded_app() -> (Server, SocketAddr, Events) {
    let events: Events = Arc::default();
    let (tx, rx) = mpsc::channel();
    let log = Arc::clone(&events);
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let added = Arc::clone(&log);
            let server = Server::builder()
                .config(bayeux_server::EngineConfig {
                    timeout: Duration::from_secs(5),
                    ..Default::default()
                })
                .on_session_added(move |cid| added.lock().unwrap().push(format!("added {cid}")))
                .on_session_removed(move |cid, reason| {
                    log.lock()
                        .unwrap()
                        .push(format!("removed {cid} {reason:?}"))
                })
                .build();
            let mounted = server.clone();
            let http = HttpServer::new(move || {
                App::new().service(bayeux_actix::scope("/cometd", mounted.clone()))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .expect("bind loopback");
            tx.send((server, http.addrs()[0])).expect("test is waiting");
            http.run().await
        })
    });
    let (server, addr) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("app starts");
    (server, addr, events)
}

#[tokio::test]
async fn publish_from_rust_reaches_a_held_long_poll() {
    let (server, addr, _) = embedded_app();
    let client = Client::at(addr, "/cometd", BROWSER_COOKIE);
    client.handshake().await;
    client.first_connect().await;
    client.subscribe_ok(json!("/news/*")).await;

    let mut held = client.start_connect().await;
    held.assert_pending_for(Duration::from_millis(200)).await;
    server
        .publish("/news/today", json!({"headline": "up"}))
        .expect("broadcast channel");
    let exchange = held.finish().await;
    assert_messages(
        exchange.ok(),
        &[
            json!({"channel": "/news/today", "data": {"headline": "up"}}),
            json!({"channel": "/meta/connect", "id": exchange.id, "successful": true}),
        ],
    );
}

#[tokio::test]
async fn session_listeners_see_handshake_and_disconnect() {
    let (server, addr, events) = embedded_app();
    let client = Client::at(addr, "/cometd", BROWSER_COOKIE);
    client.handshake().await;
    let cid = client.client_id();
    assert_eq!(server.session_count(), 1);
    let exchange = client.disconnect().await;
    assert_eq!(exchange.ok()[0]["successful"], json!(true));
    assert_eq!(server.session_count(), 0);
    assert_eq!(
        *events.lock().unwrap(),
        [
            format!("added {cid}"),
            format!("removed {cid} {:?}", RemovalReason::Disconnect)
        ]
    );
}

#[tokio::test]
async fn server_side_disconnect_answers_the_held_connect_with_reconnect_none() {
    let (server, addr, events) = embedded_app();
    let client = Client::at(addr, "/cometd", BROWSER_COOKIE);
    client.handshake().await;
    client.first_connect().await;
    let cid = client.client_id();
    let mut held = client.start_connect().await;
    held.assert_pending_for(Duration::from_millis(200)).await;
    assert!(server.disconnect(&cid).await);
    let exchange = held.finish().await;
    assert_messages(
        exchange.ok(),
        &[
            json!({"channel": "/meta/connect", "id": exchange.id, "successful": true,
                 "advice": {"reconnect": "none"}}),
        ],
    );
    assert_eq!(
        events.lock().unwrap().last().cloned(),
        Some(format!("removed {cid} Disconnect"))
    );
}

#[tokio::test]
async fn local_session_answers_a_remote_client_over_http() {
    let (server, addr, _) = embedded_app();
    let bot = server.local_session("echo");
    let replier = server.clone();
    bot.subscribe("/chat/in", move |msg| {
        let text = msg.data().cloned().unwrap_or_default();
        // The bot publishes as itself, through the same pipeline as remote clients.
        let _ = replier.publish("/chat/out", json!({ "echo": text }));
    })
    .expect("subscribe");
    let client = Client::at(addr, "/cometd", BROWSER_COOKIE);
    client.handshake().await;
    client.first_connect().await;
    client.subscribe_ok(json!("/chat/out")).await;
    let mut held = client.start_connect().await;
    held.assert_pending_for(Duration::from_millis(200)).await;
    // The bot answers while the client's publish is being handled, so the answer rides on
    // that same response (ahead of the reply), and the held connect is left alone.
    let exchange = client.publish("/chat/in", json!("ping")).await;
    assert_messages(
        exchange.ok(),
        &[
            json!({"channel": "/chat/out", "data": {"echo": "ping"}}),
            json!({"channel": "/chat/in", "id": exchange.id, "successful": true}),
        ],
    );
    held.assert_pending_for(Duration::from_millis(200)).await;
    // A publish from elsewhere reaches the bot, whose answer wakes the held connect.
    let other = server.local_session("other");
    other.publish("/chat/in", json!("pong")).expect("publish");
    let exchange = held.finish().await;
    assert_messages(
        exchange.ok(),
        &[
            json!({"channel": "/chat/out", "data": {"echo": "pong"}}),
            json!({"channel": "/meta/connect", "id": exchange.id, "successful": true}),
        ],
    );
    assert_eq!(server.session_count(), 3, "two bots and the client");
}

#[tokio::test]
async fn channel_options_and_subscription_listeners_over_http() {
    let (server, addr, _) = embedded_app();
    server
        .configure_channel(
            "/quiet",
            bayeux_server::ChannelOptions {
                broadcast_to_publisher: Some(false),
                ..Default::default()
            },
        )
        .expect("valid channel");
    let client = Client::at(addr, "/cometd", BROWSER_COOKIE);
    client.handshake().await;
    client.first_connect().await;
    client.subscribe_ok(json!(["/quiet", "/loud"])).await;
    // `/quiet` does not echo to its publisher; `/loud` does, as the server default says.
    let quiet = client.publish("/quiet", json!(1)).await;
    assert_messages(
        quiet.ok(),
        &[json!({"channel": "/quiet", "id": quiet.id, "successful": true})],
    );
    let loud = client.publish("/loud", json!(2)).await;
    assert_messages(
        loud.ok(),
        &[
            json!({"channel": "/loud", "data": 2}),
            json!({"channel": "/loud", "id": loud.id, "successful": true}),
        ],
    );
    let names: Vec<String> = server
        .engine()
        .channels()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(names, ["/loud", "/quiet"]);
}

#[tokio::test]
async fn lazy_channel_messages_wait_for_their_timeout() {
    let (server, addr, _) = embedded_app();
    server
        .configure_channel(
            "/lazy",
            bayeux_server::ChannelOptions {
                lazy: true,
                lazy_timeout: Some(Duration::from_millis(500)),
                ..Default::default()
            },
        )
        .expect("valid channel");
    let client = Client::at(addr, "/cometd", BROWSER_COOKIE);
    client.handshake().await;
    client.first_connect().await;
    client.subscribe_ok(json!("/lazy")).await;
    let mut held = client.start_connect().await;
    held.assert_pending_for(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    assert_eq!(server.publish("/lazy", json!("later")), Ok(()));
    // Not woken by the publish; flushed by the sweep (every ~1 s) once 500 ms have passed.
    held.assert_pending_for(Duration::from_millis(400)).await;
    let exchange = held.finish().await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(2_500),
        "flushed after {waited:?}"
    );
    assert_messages(
        exchange.ok(),
        &[
            json!({"channel": "/lazy", "data": "later"}),
            json!({"channel": "/meta/connect", "id": exchange.id, "successful": true}),
        ],
    );
}

/// Uppercases the text deliveries of the one session it is added to.
struct Uppercase;

impl bayeux_server::Extension for Uppercase {
    fn outgoing(&self, message: &mut bayeux_server::Message) -> bool {
        if let Some(serde_json::Value::String(text)) = message.as_map_mut().get_mut("data") {
            *text = text.to_uppercase();
        }
        true
    }
}

#[tokio::test]
async fn session_extension_changes_only_its_sessions_deliveries() {
    let (server, addr, _) = embedded_app();
    let loud = Client::at(addr, "/cometd", BROWSER_COOKIE);
    let quiet = Client::at(addr, "/cometd", BROWSER_COOKIE);
    for client in [&loud, &quiet] {
        client.handshake().await;
        client.first_connect().await;
        client.subscribe_ok(json!("/talk")).await;
    }
    server
        .engine()
        .session(&loud.client_id())
        .expect("live session")
        .add_extension(std::sync::Arc::new(Uppercase));
    let exchange = quiet.publish("/talk", json!("hello")).await;
    assert_eq!(
        exchange.ok()[0],
        json!({"channel": "/talk", "data": "hello"})
    );
    let exchange = loud.connect_with_advice(json!({"timeout": 0})).await;
    assert_eq!(
        exchange.ok()[0],
        json!({"channel": "/talk", "data": "HELLO"})
    );
}

#[tokio::test]
async fn probes_report_liveness_and_readiness() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = Server::builder().build();
            let probed = server.clone();
            let http =
                HttpServer::new(move || App::new().configure(bayeux_actix::probes(probed.clone())))
                    .workers(1)
                    .bind(("127.0.0.1", 0))
                    .expect("bind loopback");
            tx.send((server, http.addrs()[0])).expect("test is waiting");
            http.run().await
        })
    });
    let (server, addr) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("app starts");
    let get = |path: &'static str| async move {
        let resp = support::http::send(addr, &support::http::Request::new("GET", path), None)
            .await
            .expect("probe answered");
        (resp.status, resp.text())
    };
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));
    server.shutdown().await;
    assert_eq!(get("/readyz").await, (503, "shutting down\n".to_owned()));
    assert_eq!(get("/healthz").await, (200, "ok\n".to_owned()));
}

/// What a security policy saw of the HTTP request behind each handshake: the `x-token`
/// header, and whether it knew the peer's address. It admits only `x-token: let-me-in`.
#[derive(Clone, Default)]
struct HeaderPolicy(Arc<Mutex<Vec<Seen>>>);

/// The `x-token` header a handshake carried, and whether its peer address was known.
type Seen = (Option<String>, bool);

impl bayeux_server::SecurityPolicy for HeaderPolicy {
    fn can_handshake(
        &self,
        _session: &bayeux_server::Session,
        ctx: &bayeux_server::RequestContext,
        _message: &bayeux_server::Message,
    ) -> bool {
        let token = ctx
            .http
            .as_ref()
            .and_then(|http| http.header("X-Token"))
            .map(str::to_owned);
        let peer = ctx
            .http
            .as_ref()
            .is_some_and(|http| http.remote_addr.is_some_and(|addr| addr.ip().is_loopback()));
        let admitted = token.as_deref() == Some("let-me-in");
        self.0.lock().unwrap().push((token, peer));
        admitted
    }
}

#[tokio::test]
async fn the_policy_sees_the_headers_and_peer_of_each_handshake_on_every_transport() {
    let policy = HeaderPolicy::default();
    let (tx, rx) = mpsc::channel();
    let seen = policy.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = Server::builder().policy(seen).build();
            let http = HttpServer::new(move || {
                App::new().service(bayeux_actix::scope("/cometd", server.clone()))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .expect("bind loopback");
            tx.send(http.addrs()[0]).expect("test is waiting");
            http.run().await
        })
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("app starts");
    let handshake = json!([{"channel": "/meta/handshake", "id": "1", "version": "1.0",
        "supportedConnectionTypes": ["long-polling", "callback-polling", "websocket"]}]);

    // Long-polling, with and without the token.
    for token in [Some("let-me-in"), None] {
        let mut req = support::http::Request::post_json("/cometd/handshake", &handshake);
        if let Some(token) = token {
            req = req.header("X-Token", token);
        }
        let resp = support::http::send(addr, &req, None)
            .await
            .expect("answered");
        let reply: serde_json::Value = serde_json::from_str(&resp.text()).expect("JSON");
        assert_eq!(reply[0]["successful"], json!(token.is_some()), "{reply}");
    }
    // Callback-polling: the batch in the query string.
    let target = format!(
        "/cometd/handshake?jsonp=cb&message={}",
        support::jsonp::encode_component(&handshake[0].to_string())
    );
    let req = support::http::Request::new("GET", &target).header("X-Token", "let-me-in");
    let resp = support::http::send(addr, &req, None)
        .await
        .expect("answered");
    assert!(
        resp.text().contains("\"successful\":true"),
        "{}",
        resp.text()
    );
    // Websocket: the headers of the upgrade request.
    let mut ws =
        support::ws::WsClient::open_at(addr, "/cometd", "", &[("X-Token", "let-me-in")]).await;
    ws.handshake().await;

    let token = |t: Option<&str>| (t.map(str::to_owned), true);
    assert_eq!(
        *policy.0.lock().unwrap(),
        [
            token(Some("let-me-in")),
            token(None),
            token(Some("let-me-in")),
            token(Some("let-me-in")),
        ]
    );
}
