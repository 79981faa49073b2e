//! Two `Server`s sharing one in-memory backplane, in one process: the cluster driver's own
//! behaviour (takeovers, the outbox, hand-over on stop) without sockets or Redis. The same
//! behaviours over real Redis and real processes are in `conformance/tests/cluster.rs`.

use std::time::Duration;

use bayeux_server::{
    Backplane, BrowserId, ClientId, ClusterOptions, EngineConfig, HoldEnd, MemoryBackplane,
    Message, Outcome, RequestContext, Server, TransportKind,
};
use serde_json::{json, Value};

fn node(backplane: &MemoryBackplane, name: &str) -> Server {
    node_with(backplane, name, EngineConfig::default())
}

fn node_with(backplane: &MemoryBackplane, name: &str, config: EngineConfig) -> Server {
    Server::builder()
        .config(config)
        .backplane(backplane.clone())
        .cluster_options(ClusterOptions::default().node_name(name))
        .build()
}

async fn ready(servers: &[&Server]) {
    for server in servers {
        for _ in 0..200 {
            if server.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(server.is_ready());
    }
}

fn ctx() -> RequestContext {
    RequestContext::new(TransportKind::LongPolling).with_browser(Some(BrowserId::new("b")))
}

async fn send(server: &Server, body: Value) -> Outcome {
    let batch = match body {
        Value::Array(items) => items,
        one => vec![one],
    }
    .into_iter()
    .map(|v| Message::from_map(v.as_object().unwrap().clone()))
    .collect();
    server.handle(&ctx(), batch).await.expect("valid")
}

fn values(outcome: &Outcome) -> Vec<Value> {
    outcome
        .messages
        .iter()
        .map(|m| serde_json::from_str(m.as_str()).unwrap())
        .collect()
}

async fn connected(server: &Server) -> String {
    let outcome = send(server, json!({"channel": "/meta/handshake", "id": "1"})).await;
    let cid = outcome.handshaken.expect("handshake").to_string();
    send(
        server,
        json!({"channel": "/meta/connect", "id": "2", "clientId": cid, "advice": {"timeout": 0}}),
    )
    .await;
    cid
}

/// A long poll of `cid` on `server`: what it was answered.
async fn poll(server: &Server, cid: &str) -> Vec<Value> {
    let outcome = send(
        server,
        json!({"channel": "/meta/connect", "id": "9", "clientId": cid, "advice": {"timeout": 500}}),
    )
    .await;
    let mut messages = values(&outcome);
    if let Some(hold) = outcome.hold {
        let HoldEnd::Reply(later) = server.wait_hold(hold).await else {
            panic!("superseded");
        };
        messages.extend(
            later
                .iter()
                .map(|m| serde_json::from_str::<Value>(m.as_str()).unwrap()),
        );
    }
    messages
}

fn data(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m.get("successful").is_none())
        .map(|m| m["data"].clone())
        .collect()
}

#[tokio::test]
async fn publish_from_rust_on_one_node_reaches_a_session_of_another() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    ready(&[&a, &b]).await;
    let cid = connected(&a).await;
    let reply = send(
        &a,
        json!({"channel": "/meta/subscribe", "id": "3", "clientId": cid, "subscription": "/news"}),
    )
    .await;
    assert_eq!(values(&reply)[0]["successful"], json!(true));
    b.publish("/news", json!("one")).unwrap();
    b.publish("/news", json!("two")).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(data(&poll(&a, &cid).await));
    }
    assert_eq!(got, [json!("one"), json!("two")]);
}

#[tokio::test]
async fn concurrent_requests_for_one_session_share_one_takeover() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    ready(&[&a, &b]).await;
    let cid = connected(&a).await;
    let requests = (0..8).map(|i| {
        let (b, cid) = (b.clone(), cid.clone());
        tokio::spawn(async move {
            let outcome = send(
                &b,
                json!({"channel": "/meta/subscribe", "id": i.to_string(), "clientId": cid,
                    "subscription": format!("/c/{i}")}),
            )
            .await;
            values(&outcome)[0]["successful"].clone()
        })
    });
    for request in requests {
        assert_eq!(request.await.unwrap(), json!(true));
    }
    let stats = b.cluster_stats().unwrap();
    let takeovers = stats
        .takeovers_handoff
        .load(std::sync::atomic::Ordering::Relaxed)
        + stats
            .takeovers_orphan
            .load(std::sync::atomic::Ordering::Relaxed)
        + stats
            .takeovers_timeout
            .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(takeovers, 1);
    assert!(a.engine().session(&cid).is_none(), "a let go of it");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(b.engine().session(&cid).unwrap().subscriptions().len(), 8);
}

#[tokio::test]
async fn an_unreachable_backplane_refuses_client_publishes_and_the_outbox_waits() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    ready(&[&a, &b]).await;
    let cid = connected(&a).await;
    send(
        &a,
        json!({"channel": "/meta/subscribe", "id": "3", "clientId": cid, "subscription": "/o"}),
    )
    .await;
    let publisher = connected(&b).await;
    backplane.set_reachable(false);
    let refused = send(
        &b,
        json!({"channel": "/o", "id": "4", "clientId": publisher, "data": "lost"}),
    )
    .await;
    assert_eq!(
        values(&refused),
        [json!({"channel": "/o", "id": "4", "successful": false,
            "error": "503::backplane_unavailable", "advice": {"reconnect": "retry", "interval": 1000}})]
    );
    // From Rust: queued in order, sent once the backplane answers again.
    b.publish("/o", json!(1)).unwrap();
    b.publish("/o", json!(2)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!b.is_ready());
    backplane.set_reachable(true);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(data(&poll(&a, &cid).await));
    }
    assert_eq!(got, [json!(1), json!(2)]);
}

#[tokio::test]
async fn a_stopping_node_hands_its_sessions_over_at_once() {
    let backplane = MemoryBackplane::new();
    let (a, b) = (node(&backplane, "a"), node(&backplane, "b"));
    ready(&[&a, &b]).await;
    let cid = connected(&a).await;
    send(
        &a,
        json!({"channel": "/meta/subscribe", "id": "3", "clientId": cid, "subscription": "/s"}),
    )
    .await;
    // Queued on a, never sent: it must reach the client through b.
    b.publish("/s", json!("queued")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.engine().session(&cid).unwrap().queue_len(), 1);
    a.shutdown().await;
    assert_eq!(a.session_count(), 0);
    let began = tokio::time::Instant::now();
    let messages = poll(&b, &cid).await;
    assert!(began.elapsed() < Duration::from_millis(400), "no waiting");
    assert_eq!(data(&messages), [json!("queued")]);
    let orphans = b
        .cluster_stats()
        .unwrap()
        .takeovers_orphan
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(orphans, 1, "released: taken at once");
}

#[tokio::test]
async fn without_broadcast_to_publisher_a_publisher_served_elsewhere_skips_its_own_message() {
    let backplane = MemoryBackplane::new();
    let config = EngineConfig {
        broadcast_to_publisher: false,
        ..EngineConfig::default()
    };
    let (a, b) = (
        node_with(&backplane, "a", config.clone()),
        node_with(&backplane, "b", config),
    );
    ready(&[&a, &b]).await;
    let (me, other) = (connected(&a).await, connected(&a).await);
    for cid in [&me, &other] {
        send(
            &a,
            json!({"channel": "/meta/subscribe", "id": "3", "clientId": cid, "subscription": "/room"}),
        )
        .await;
    }
    // Published through b (the session moves there for the request, and back for its polls).
    let reply = send(
        &b,
        json!({"channel": "/room", "id": "4", "clientId": me, "data": "mine"}),
    )
    .await;
    assert_eq!(values(&reply)[0]["successful"], json!(true));
    assert_eq!(data(&poll(&a, &other).await), [json!("mine")]);
    let own = poll(&a, &me).await;
    assert_eq!(data(&own), Vec::<Value>::new(), "{own:?}");
}

/// Records what a node's presence listener hears.
#[derive(Clone, Default)]
struct Heard(std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>);

impl bayeux_server::PresenceListener for Heard {
    fn joined(&self, user: &str) {
        self.0.lock().unwrap().push((user.to_owned(), true));
    }

    fn left(&self, user: &str) {
        self.0.lock().unwrap().push((user.to_owned(), false));
    }
}

impl Heard {
    /// What was heard once `count` things were, or after 3 s.
    async fn wait_for(&self, count: usize) -> Vec<(String, bool)> {
        for _ in 0..600 {
            if self.0.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_user_is_online_on_every_node_and_reached_wherever_its_session_moves() {
    let backplane = MemoryBackplane::new();
    let (heard_a, heard_b) = (Heard::default(), Heard::default());
    let presence_node = |name: &str, heard: &Heard| {
        Server::builder()
            .backplane(backplane.clone())
            .cluster_options(ClusterOptions::default().node_name(name))
            .presence_listener(heard.clone())
            .build()
    };
    let (a, b) = (presence_node("a", &heard_a), presence_node("b", &heard_b));
    ready(&[&a, &b]).await;
    let cid = connected(&a).await;
    assert!(a.associate(&cid, "ann"));
    // A node serves only its own sessions' associations.
    assert!(!b.associate(&cid, "bob"));
    let joined = vec![("ann".to_owned(), true)];
    assert_eq!(heard_a.wait_for(1).await, joined);
    assert_eq!(heard_b.wait_for(1).await, joined);
    assert_eq!(b.users_online(), ["ann"]);
    assert!(b.is_online("ann") && !b.is_online("bob"));
    assert_eq!(
        a.sessions_of_user("ann"),
        [bayeux_server::ClientId::new(cid.as_str())]
    );
    assert!(b.sessions_of_user("ann").is_empty());

    // From b to a session on a, through the log.
    assert_eq!(b.deliver_to_user("ann", "/inbox", json!("one")), Ok(true));
    assert_eq!(b.deliver_to_user("bob", "/inbox", json!("lost")), Ok(false));
    assert_eq!(data(&poll(&a, &cid).await), [json!("one")]);

    // The session moves to b: its user goes with it, and nobody hears it leave.
    assert_eq!(data(&poll(&b, &cid).await), Vec::<Value>::new());
    assert_eq!(
        b.sessions_of_user("ann"),
        [bayeux_server::ClientId::new(cid.as_str())]
    );
    assert!(a.sessions_of_user("ann").is_empty());
    assert_eq!(a.deliver_to_user("ann", "/inbox", json!("two")), Ok(true));
    assert_eq!(data(&poll(&b, &cid).await), [json!("two")]);

    // It ends: every node hears the user leave, once.
    let reply = send(
        &b,
        json!({"channel": "/meta/disconnect", "id": "7", "clientId": cid}),
    )
    .await;
    assert_eq!(values(&reply)[0]["successful"], json!(true));
    let both = vec![("ann".to_owned(), true), ("ann".to_owned(), false)];
    assert_eq!(heard_a.wait_for(2).await, both);
    assert_eq!(heard_b.wait_for(2).await, both);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(heard_a.wait_for(3).await, both, "heard once");
    assert!(a.users_online().is_empty() && b.users_online().is_empty());
}

#[tokio::test]
async fn a_user_whose_session_vanished_from_the_registry_goes_offline() {
    let backplane = MemoryBackplane::new();
    let heard = Heard::default();
    let a = Server::builder()
        .backplane(backplane.clone())
        .cluster_options(ClusterOptions::default().node_name("a"))
        .presence_listener(heard.clone())
        .build();
    ready(&[&a]).await;
    let cid = connected(&a).await;
    assert!(a.associate(&cid, "gus"));
    assert_eq!(heard.wait_for(1).await, [("gus".to_owned(), true)]);
    // As if a node removed the session and died before ending its association.
    let removed = bayeux_server::backplane::Backplane::remove(
        &backplane,
        &bayeux_server::ClientId::new(cid.as_str()),
        None,
    )
    .await;
    assert_eq!(removed, Ok(true));
    // The node leading the clean-up finds it within a lead period (1 s).
    assert_eq!(
        heard.wait_for(2).await,
        [("gus".to_owned(), true), ("gus".to_owned(), false)]
    );
    assert!(a.users_online().is_empty());
}

#[tokio::test]
async fn after_an_outage_longer_than_the_heartbeats_a_live_node_is_asked_not_presumed_dead() {
    let backplane = MemoryBackplane::new();
    // Heartbeats run out 1.5 s after they are renewed, once a second; no checkpoint in the
    // test's time, so the registry still has the session as it was at its handshake.
    let options = |name: &str| {
        ClusterOptions::default()
            .node_name(name)
            .heartbeat(Duration::from_secs(1), Duration::from_millis(1500))
            .checkpoint_period(Duration::from_secs(60))
    };
    let node = |name: &str| {
        Server::builder()
            .backplane(backplane.clone())
            .cluster_options(options(name))
            .build()
    };
    let (a, b) = (node("a"), node("b"));
    ready(&[&a, &b]).await;
    let cid = connected(&a).await;
    let client_id = ClientId::new(cid.as_str());
    let registered = || async { backplane.lookup(&client_id).await.unwrap().unwrap().record };
    let at_handshake = registered().await;
    send(
        &a,
        json!({"channel": "/meta/subscribe", "id": "3", "clientId": cid, "subscription": "/s"}),
    )
    .await;
    b.publish("/s", json!(1)).unwrap();
    b.publish("/s", json!(2)).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(data(&poll(&a, &cid).await));
    }
    assert_eq!(got, [json!(1), json!(2)]);
    // Every heartbeat runs out during the outage; a renews its own within a second after.
    backplane.set_reachable(false);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    backplane.set_reachable(true);
    b.publish("/s", json!(3)).unwrap();
    // At once, before a beats again: b must ask a for the session, not adopt its handshake
    // record (which would deliver 1 and 2 again).
    let mut got = Vec::new();
    while got.is_empty() {
        got.extend(data(&poll(&b, &cid).await));
    }
    assert_eq!(got, [json!(3)]);
    let stats = b.cluster_stats().unwrap();
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (
            count(&stats.takeovers_handoff),
            count(&stats.takeovers_orphan),
            count(&stats.takeovers_timeout)
        ),
        (1, 0, 0)
    );
    // What a let go of is in the registry: the next node starts from there, whatever happens
    // to b's answer.
    let handed = registered().await;
    assert!(handed.position > at_handshake.position, "{handed:?}");
    assert_eq!(handed.subscriptions.len(), 1, "{handed:?}");
}
