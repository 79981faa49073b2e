//! Several `bayeuxd` processes sharing a real Redis, driven by raw Bayeux clients: publishes
//! cross nodes, any node serves any session, a session outlives a killed or drained node with
//! nothing lost or duplicated (ack), a Redis outage fails publishes clearly and heals by
//! itself, and the sessions of a dead node are removed once. The same on a Redis Cluster.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::http::{self, Request};
use support::redis::{RedisCluster, RedisServer};
use support::TestServer;

const ADMIN_TOKEN: &str = "cluster-test-admin-token";

/// Starts a node of the cluster at `backplane`.
async fn node(backplane: &str, name: &str, extra: &[&str]) -> TestServer {
    let mut args = vec![
        "--backplane",
        backplane,
        "--node-name",
        name,
        "--admin-token",
        ADMIN_TOKEN,
    ];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

/// A raw client whose requests may go to any node: one browser (cookie), one session.
#[derive(Clone)]
struct Tab {
    cookie: Arc<Mutex<Option<String>>>,
    /// False for an HTTP library without a cookie jar.
    keeps_cookies: bool,
    client_id: Arc<Mutex<String>>,
    ids: Arc<AtomicU64>,
}

impl Tab {
    fn new() -> Self {
        Self {
            cookie: Arc::default(),
            keeps_cookies: true,
            client_id: Arc::default(),
            ids: Arc::new(AtomicU64::new(1)),
        }
    }

    fn without_cookies() -> Self {
        Self {
            keeps_cookies: false,
            ..Self::new()
        }
    }

    fn id(&self) -> String {
        self.ids.fetch_add(1, Ordering::Relaxed).to_string()
    }

    fn cid(&self) -> String {
        self.client_id.lock().unwrap().clone()
    }

    /// POSTs a batch to `node`; `Err` when the node is gone (refused or reset).
    async fn post(&self, node: SocketAddr, batch: Value) -> std::io::Result<(u16, Vec<Value>)> {
        let mut req = Request::post_json("/cometd", &batch);
        if let Some(cookie) = self.cookie.lock().unwrap().clone() {
            req = req.header("Cookie", &format!("BAYEUX_BROWSER={cookie}"));
        }
        let resp = http::send(node, &req, None).await?;
        for set in resp.headers_named("Set-Cookie") {
            if let Some(value) = set
                .split(';')
                .next()
                .and_then(|p| p.strip_prefix("BAYEUX_BROWSER="))
                .filter(|_| self.keeps_cookies)
            {
                *self.cookie.lock().unwrap() = Some(value.to_owned());
            }
        }
        let messages = match serde_json::from_slice(&resp.body) {
            Ok(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        Ok((resp.status, messages))
    }

    async fn send(&self, node: SocketAddr, mut msg: Value) -> Vec<Value> {
        msg["id"] = json!(self.id());
        if msg["channel"] != json!("/meta/handshake") {
            msg["clientId"] = json!(self.cid());
        }
        let (status, messages) = self.post(node, json!([msg])).await.expect("node up");
        assert_eq!(status, 200, "{messages:?}");
        messages
    }

    async fn handshake(&self, node: SocketAddr, ext: Value) {
        let replies = self
            .send(
                node,
                json!({"channel": "/meta/handshake", "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"], "ext": ext}),
            )
            .await;
        assert_eq!(replies[0]["successful"], json!(true), "{replies:?}");
        *self.client_id.lock().unwrap() = replies[0]["clientId"].as_str().unwrap().to_owned();
        let first = self
            .send(
                node,
                json!({"channel": "/meta/connect", "connectionType": "long-polling",
                    "advice": {"timeout": 0}, "ext": ext_ack(&ext, 0)}),
            )
            .await;
        assert_eq!(
            first.last().unwrap()["successful"],
            json!(true),
            "{first:?}"
        );
    }

    async fn subscribe(&self, node: SocketAddr, subscription: Value) {
        let replies = self
            .send(
                node,
                json!({"channel": "/meta/subscribe", "subscription": subscription}),
            )
            .await;
        assert_eq!(
            replies.last().unwrap()["successful"],
            json!(true),
            "{replies:?}"
        );
    }

    async fn publish(&self, node: SocketAddr, channel: &str, data: Value) -> Value {
        let replies = self
            .send(node, json!({"channel": channel, "data": data}))
            .await;
        replies
            .into_iter()
            .find(|m| m.get("successful").is_some())
            .expect("a publish reply")
    }

    /// One connect; `Err` when the node is gone. Returns the messages.
    async fn connect(
        &self,
        node: SocketAddr,
        ack: Option<u64>,
        timeout: Option<u64>,
    ) -> std::io::Result<Vec<Value>> {
        let mut msg = json!({"channel": "/meta/connect", "connectionType": "long-polling",
            "id": self.id(), "clientId": self.cid()});
        if let Some(ack) = ack {
            msg["ext"] = json!({"ack": ack});
        }
        if let Some(timeout) = timeout {
            msg["advice"] = json!({"timeout": timeout});
        }
        let (status, messages) = self.post(node, json!([msg])).await?;
        if status != 200 {
            return Err(std::io::Error::other(format!("HTTP {status}")));
        }
        Ok(messages)
    }
}

fn ext_ack(ext: &Value, batch: u64) -> Value {
    if ext.get("ack").is_some() {
        json!({"ack": batch})
    } else {
        json!({})
    }
}

/// The `data` of the deliveries among `messages`.
fn deliveries(messages: &[Value], channel_prefix: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| {
            m.get("successful").is_none()
                && m["channel"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(channel_prefix))
        })
        .map(|m| m["data"].clone())
        .collect()
}

fn connect_reply(messages: &[Value]) -> Option<&Value> {
    messages
        .iter()
        .find(|m| m["channel"] == json!("/meta/connect"))
}

async fn get(node: SocketAddr, path: &str) -> (u16, String) {
    let req = Request::new("GET", path).header("Authorization", &format!("Bearer {ADMIN_TOKEN}"));
    match http::send(node, &req, None).await {
        Ok(resp) => (resp.status, resp.text()),
        Err(e) => (0, e.to_string()),
    }
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects deliveries on `channel_prefix` until `count` arrived; connects go to `node()`.
async fn collect_until(
    tab: &Tab,
    nodes: &[SocketAddr],
    channel_prefix: &str,
    count: usize,
    within: Duration,
) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut turn = 0;
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} deliveries: {got:?}",
            got.len()
        );
        let node = nodes[turn % nodes.len()];
        turn += 1;
        let messages = tab.connect(node, None, Some(2000)).await.expect("node up");
        let reply = connect_reply(&messages).expect("connect reply");
        assert_eq!(reply["successful"], json!(true), "{messages:?}");
        got.extend(deliveries(&messages, channel_prefix));
    }
    got
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_every_subscriber_on_every_node_in_order() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let nodes = [
        node(&url, "a", &[]).await,
        node(&url, "b", &[]).await,
        node(&url, "c", &[]).await,
    ];
    let [a, b, c] = [nodes[0].addr(), nodes[1].addr(), nodes[2].addr()];
    let on_a = Tab::new();
    on_a.handshake(a, json!({})).await;
    on_a.subscribe(a, json!("/burst/*")).await;
    // Overlapping subscriptions on c: still one copy of each message.
    let on_c = Tab::new();
    on_c.handshake(c, json!({})).await;
    on_c.subscribe(c, json!(["/burst/**", "/burst/x", "/other"]))
        .await;
    let publisher = Tab::new();
    publisher.handshake(b, json!({})).await;
    for n in 0..200 {
        let reply = publisher.publish(b, "/burst/x", json!(n)).await;
        assert_eq!(reply["successful"], json!(true), "{reply}");
    }
    let want: Vec<Value> = (0..200).map(|n| json!(n)).collect();
    for (tab, at) in [(&on_a, a), (&on_c, c)] {
        let got = collect_until(tab, &[at], "/burst/", 200, Duration::from_secs(20)).await;
        assert_eq!(got, want);
    }
    // A channel nobody subscribed to on a node reaches nobody there.
    publisher.publish(b, "/burst/x/deeper", json!("deep")).await;
    let got = collect_until(&on_c, &[c], "/burst/", 1, Duration::from_secs(10)).await;
    assert_eq!(got, [json!("deep")]);
    let held = on_a.connect(a, None, Some(500)).await.unwrap();
    assert_eq!(deliveries(&held, "/burst/"), Vec::<Value>::new());
}

#[tokio::test]
async fn any_node_serves_any_session_behind_a_round_robin() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let nodes = [
        node(&url, "a", &[]).await,
        node(&url, "b", &[]).await,
        node(&url, "c", &[]).await,
    ];
    let addrs: Vec<SocketAddr> = nodes.iter().map(TestServer::addr).collect();
    // Every request of both clients goes to the next node in turn: handshake, subscribe,
    // publishes and connects never meet the same node twice in a row.
    let turn = AtomicU64::new(0);
    let next = || addrs[turn.fetch_add(1, Ordering::Relaxed) as usize % addrs.len()];
    let subscriber = Tab::new();
    subscriber.handshake(next(), json!({})).await;
    subscriber.subscribe(next(), json!("/rr")).await;
    let publisher = Tab::new();
    publisher.handshake(next(), json!({})).await;
    let mut got = Vec::new();
    for n in 0..30 {
        let reply = publisher.publish(next(), "/rr", json!(n)).await;
        assert_eq!(reply["successful"], json!(true), "{reply}");
        let messages = subscriber
            .connect(next(), None, Some(1000))
            .await
            .expect("node up");
        assert_eq!(
            connect_reply(&messages).unwrap()["successful"],
            json!(true),
            "no 402 anywhere: {messages:?}"
        );
        got.extend(deliveries(&messages, "/rr"));
    }
    got.extend(
        collect_until(
            &subscriber,
            &addrs,
            "/rr",
            30 - got.len(),
            Duration::from_secs(10),
        )
        .await,
    );
    assert_eq!(got, (0..30).map(|n| json!(n)).collect::<Vec<_>>());
    // The admin API of any node sees both sessions, wherever they are.
    let (status, body) = get(addrs[0], "/admin/sessions").await;
    assert_eq!(status, 200, "{body}");
    let listed: BTreeSet<String> = serde_json::from_str::<Vec<Value>>(&body)
        .unwrap()
        .iter()
        .map(|s| s["clientId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, BTreeSet::from([subscriber.cid(), publisher.cid()]));

    // Any node disconnects a session wherever it is served: its held connect is answered
    // `reconnect: none`, and every node then answers it 402.
    let served_by = addrs[0];
    let held = {
        let subscriber = subscriber.clone();
        tokio::spawn(async move { subscriber.connect(served_by, None, None).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elsewhere = addrs[1];
    let req = Request::new("DELETE", &format!("/admin/sessions/{}", subscriber.cid()))
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"));
    assert_eq!(http::send(elsewhere, &req, None).await.unwrap().status, 204);
    let answer = held.await.unwrap().expect("node up");
    assert_eq!(
        connect_reply(&answer).unwrap()["advice"],
        json!({"reconnect": "none"}),
        "{answer:?}"
    );
    for node in &addrs {
        let late = subscriber.connect(*node, None, Some(0)).await.unwrap();
        assert_eq!(
            connect_reply(&late).unwrap()["error"],
            json!("402::session_unknown")
        );
    }
}

/// A client that keeps no cookies moves between nodes by its clientId alone; once a client
/// has presented its cookie back, no node serves its clientId without that cookie.
#[tokio::test]
async fn the_browser_cookie_rule_holds_across_nodes() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let nodes = [node(&url, "a", &[]).await, node(&url, "b", &[]).await];
    let addrs: Vec<SocketAddr> = nodes.iter().map(TestServer::addr).collect();
    let loose = Tab::without_cookies();
    loose.handshake(addrs[0], json!({})).await;
    loose.subscribe(addrs[1], json!("/loose")).await;
    let publisher = Tab::new();
    publisher.handshake(addrs[0], json!({})).await;
    for n in 0..4 {
        let reply = publisher.publish(addrs[n % 2], "/loose", json!(n)).await;
        assert_eq!(reply["successful"], json!(true), "{reply}");
    }
    let got = collect_until(&loose, &addrs, "/loose", 4, Duration::from_secs(10)).await;
    assert_eq!(got, (0..4).map(|n| json!(n)).collect::<Vec<_>>());

    // The owner's first connect presented its cookie; the next checkpoint records the bond.
    let owner = Tab::new();
    owner.handshake(addrs[0], json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let thief = Tab::without_cookies();
    *thief.client_id.lock().unwrap() = owner.cid();
    for node in &addrs {
        let replies = thief.send(*node, json!({"channel": "/x", "data": 1})).await;
        assert_eq!(
            replies[0]["error"],
            json!("402::session_unknown"),
            "{replies:?}"
        );
    }
    let reply = owner.publish(addrs[1], "/x", json!(2)).await;
    assert_eq!(reply["successful"], json!(true), "{reply}");
}

/// The ack subscriber's loop: connects (acknowledging what it got) to `node_for(i)` until
/// `count` messages arrived; switches node when one is gone or refuses. Returns the data in
/// the order received, and whether it ever had to handshake again.
async fn acked_collect(
    tab: &Tab,
    mut node: SocketAddr,
    fallback: SocketAddr,
    count: usize,
    mut at: impl FnMut(usize),
) -> Vec<Value> {
    let mut batch = 0;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count}: {:?}",
            got.len(),
            got.last()
        );
        match tab.connect(node, Some(batch), Some(2000)).await {
            Ok(messages) => {
                let reply = connect_reply(&messages).expect("connect reply").clone();
                if reply["successful"] != json!(true) {
                    // A draining or unreachable node: the next request goes elsewhere.
                    assert_ne!(
                        reply["advice"]["reconnect"],
                        json!("handshake"),
                        "the session must live on: {reply}"
                    );
                    node = fallback;
                    continue;
                }
                if let Some(n) = reply["ext"]["ack"].as_u64() {
                    batch = n;
                }
                got.extend(deliveries(&messages, "/stream"));
                at(got.len());
            }
            Err(_) => node = fallback,
        }
    }
    got
}

/// A publisher session on `node` publishing 0..count on `/stream`, paced (in a task).
async fn publish_stream(node: SocketAddr, count: u64) -> tokio::task::JoinHandle<()> {
    let publisher = Tab::new();
    publisher.handshake(node, json!({})).await;
    tokio::spawn(async move {
        for n in 0..count {
            let reply = publisher.publish(node, "/stream", json!(n)).await;
            assert_eq!(reply["successful"], json!(true), "{reply}");
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
}

async fn session_outlives_a_killed_node(backplane: &str) {
    let a = node(backplane, "a", &[]).await;
    let b = node(backplane, "b", &[]).await;
    let subscriber = Tab::new();
    subscriber.handshake(a.addr(), json!({"ack": true})).await;
    subscriber.subscribe(a.addr(), json!("/stream")).await;
    let cid = subscriber.cid();
    let publishing = publish_stream(b.addr(), 1000).await;
    let killed = Arc::new(Mutex::new(false));
    let a = Arc::new(a);
    let (victim, flag) = (Arc::clone(&a), Arc::clone(&killed));
    let got = acked_collect(&subscriber, a.addr(), b.addr(), 1000, move |n| {
        let mut done = flag.lock().unwrap();
        if n >= 300 && !*done {
            *done = true;
            let victim = Arc::clone(&victim);
            tokio::spawn(async move { victim.signal("KILL").await });
        }
    })
    .await;
    publishing.await.expect("publisher");
    assert!(*killed.lock().unwrap());
    assert_eq!(got, (0..1000).map(|n| json!(n)).collect::<Vec<_>>());
    assert_eq!(subscriber.cid(), cid, "same session, no handshake");
}

#[tokio::test]
async fn a_session_outlives_its_killed_node_with_nothing_lost_or_repeated() {
    let redis = RedisServer::start().await;
    session_outlives_a_killed_node(&redis.url()).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_session_outlives_its_killed_node() {
    let cluster = RedisCluster::start(3).await;
    session_outlives_a_killed_node(&cluster.url()).await;
}

#[tokio::test]
async fn a_draining_node_hands_its_sessions_over() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let a = node(&url, "a", &["--drain-window", "300"]).await;
    let b = node(&url, "b", &[]).await;
    let subscriber = Tab::new();
    subscriber.handshake(a.addr(), json!({"ack": true})).await;
    subscriber.subscribe(a.addr(), json!("/stream")).await;
    let cid = subscriber.cid();
    let publishing = publish_stream(b.addr(), 400).await;
    let a_addr = a.addr();
    let drained = Arc::new(Mutex::new(Some(a)));
    let got = acked_collect(&subscriber, a_addr, b.addr(), 400, move |n| {
        if n >= 100 {
            if let Some(node) = drained.lock().unwrap().take() {
                tokio::spawn(async move {
                    node.signal("USR1").await;
                    let mut node = node;
                    assert!(
                        node.wait_exit(Duration::from_secs(15)).await.is_some(),
                        "drained node exits"
                    );
                });
            }
        }
    })
    .await;
    publishing.await.expect("publisher");
    assert_eq!(got, (0..400).map(|n| json!(n)).collect::<Vec<_>>());
    assert_eq!(subscriber.cid(), cid, "same session, no handshake");
}

#[tokio::test]
async fn a_redis_outage_fails_publishes_clearly_and_heals_by_itself() {
    let mut redis = RedisServer::start().await;
    let url = redis.url();
    let a = node(&url, "a", &["--timeout", "1000"]).await;
    let b = node(&url, "b", &["--timeout", "1000"]).await;
    let subscriber = Tab::new();
    subscriber.handshake(a.addr(), json!({})).await;
    subscriber.subscribe(a.addr(), json!("/o")).await;
    let publisher = Tab::new();
    publisher.handshake(b.addr(), json!({})).await;
    for n in 0..50 {
        assert_eq!(
            publisher.publish(b.addr(), "/o", json!(n)).await["successful"],
            json!(true)
        );
    }
    let mut got = collect_until(&subscriber, &[a.addr()], "/o", 50, Duration::from_secs(10)).await;

    redis.stop();
    let outage = Instant::now();
    let mut refused = 0;
    for n in 50..80 {
        let reply = publisher.publish(b.addr(), "/o", json!(n)).await;
        assert_eq!(
            (reply["successful"].clone(), reply["error"].clone()),
            (json!(false), json!("503::backplane_unavailable")),
            "{reply}"
        );
        refused += 1;
    }
    assert_eq!(refused, 30);
    wait_for("/readyz to say so", Duration::from_secs(5), async || {
        get(a.addr(), "/readyz").await == (503, "backplane unavailable\n".to_owned())
    })
    .await;
    // Held connects of the sessions a node serves keep being answered.
    let held = subscriber
        .connect(a.addr(), None, None)
        .await
        .expect("node up");
    assert_eq!(connect_reply(&held).unwrap()["successful"], json!(true));
    let (_, metrics) = get(b.addr(), "/metrics").await;
    assert!(metrics.contains("bayeux_backplane_up 0"), "{metrics}");
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(outage.elapsed())).await;

    redis.start_again().await;
    for node in [a.addr(), b.addr()] {
        wait_for(
            "readiness after the outage",
            Duration::from_secs(10),
            async || get(node, "/readyz").await.0 == 200,
        )
        .await;
    }
    for n in 80..100 {
        assert_eq!(
            publisher.publish(b.addr(), "/o", json!(n)).await["successful"],
            json!(true)
        );
    }
    got.extend(collect_until(&subscriber, &[a.addr()], "/o", 20, Duration::from_secs(10)).await);
    let want: Vec<Value> = (0..50).chain(80..100).map(|n| json!(n)).collect();
    assert_eq!(
        got, want,
        "nothing refused arrives, nothing accepted is lost or repeated"
    );
    let (_, metrics) = get(b.addr(), "/metrics").await;
    assert!(metrics.contains("bayeux_backplane_up 1"), "{metrics}");
    assert!(
        !metrics.contains("bayeux_backplane_reconnects_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_sessions_of_a_dead_node_are_removed_once_and_nowhere_else() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let timing = ["--timeout", "1000", "--max-interval", "1000"];
    let a = node(&url, "a", &timing).await;
    let b = node(&url, "b", &timing).await;
    let ghosts = [Tab::new(), Tab::new(), Tab::new()];
    for ghost in &ghosts {
        ghost.handshake(a.addr(), json!({})).await;
        ghost.subscribe(a.addr(), json!("/g")).await;
    }
    a.signal("KILL").await;
    // Nobody comes back for them: b removes them from the registry once the grace is over.
    wait_for(
        "the dead node's sessions to go",
        Duration::from_secs(20),
        async || get(b.addr(), "/admin/sessions").await == (200, "[]".to_owned()),
    )
    .await;
    let (_, nodes) = get(b.addr(), "/admin/nodes").await;
    let nodes: Vec<Value> = serde_json::from_str(&nodes).unwrap();
    assert_eq!(nodes.len(), 1, "the dead node is forgotten: {nodes:?}");
    let (_, metrics) = get(b.addr(), "/metrics").await;
    assert!(
        metrics.contains("bayeux_sessions_removed_total{reason=\"timeout\"} 3")
            && metrics.contains("bayeux_orphan_sessions_removed_total 3"),
        "each removed once: {metrics}"
    );
    // Such a session's client is told to handshake again, by any node.
    let late = ghosts[0]
        .connect(b.addr(), None, Some(0))
        .await
        .expect("node up");
    assert_eq!(
        connect_reply(&late).unwrap()["error"],
        json!("402::session_unknown")
    );
}

/// A subscribe that replays history, applied on one node, then the session moves before its
/// client collected the replayed messages: the node taking it over sends them (they were in
/// the former node's queue, which is never copied), each once, then the live ones.
#[tokio::test]
async fn replayed_history_survives_a_move_before_it_was_collected() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let history = ["--history", "/h/**=100"];
    let nodes = [
        node(&url, "a", &history).await,
        node(&url, "b", &history).await,
    ];
    let [a, b] = [nodes[0].addr(), nodes[1].addr()];
    let publisher = Tab::new();
    publisher.handshake(a, json!({})).await;
    for n in 0..5 {
        let reply = publisher.publish(a, "/h/x", json!(n)).await;
        assert_eq!(reply["successful"], json!(true), "{reply}");
    }
    for round in 0..3 {
        let tab = Tab::new();
        tab.handshake(a, json!({})).await;
        let replies = tab
            .send(
                a,
                json!({"channel": "/meta/subscribe", "subscription": "/h/x",
                       "ext": {"replay": {"/h/x": -2}}}),
            )
            .await;
        assert_eq!(
            replies.last().unwrap()["successful"],
            json!(true),
            "{replies:?}"
        );
        let mut got = deliveries(&replies, "/h/");
        // Node a applies the subscribe and queues the history; the client then turns to b.
        tokio::time::sleep(Duration::from_millis(200)).await;
        publisher.publish(a, "/h/x", json!(5 + round)).await;
        got.extend(
            collect_until(
                &tab,
                &[b],
                "/h/",
                6 + round - got.len(),
                Duration::from_secs(10),
            )
            .await,
        );
        let want: Vec<Value> = (0..6 + round).map(|n| json!(n)).collect();
        assert_eq!(got, want, "round {round}");
        let more = tab.connect(b, None, Some(300)).await.unwrap();
        assert_eq!(
            deliveries(&more, "/h/"),
            Vec::<Value>::new(),
            "round {round}"
        );
    }
}
