//! Operating `bayeuxd`: probes and the drain sequence, over real HTTP.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;

use support::http::{send, Request};
use support::{Client, TestServer};

async fn get(server: &TestServer, path: &str) -> (u16, String) {
    let resp = send(server.addr(), &Request::new("GET", path), None)
        .await
        .expect("answered");
    (resp.status, resp.text())
}

#[tokio::test]
async fn probes_answer_while_serving() {
    let server = TestServer::start(&[]).await;
    assert_eq!(get(&server, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(&server, "/readyz").await, (200, "ready\n".to_owned()));
}

/// SIGUSR1: the node stops taking clients, sends its held connects to handshake elsewhere
/// (spread over `--drain-window`), and exits once empty, well before `--drain-deadline`.
#[tokio::test]
async fn drain_sends_clients_elsewhere_then_exits() {
    let mut server = TestServer::start(&[
        "--timeout",
        "20000",
        "--drain-window",
        "500",
        "--drain-deadline",
        "10000",
        "--sweep-period",
        "50",
    ])
    .await;
    let clients = [Client::open(&server).await, Client::open(&server).await];
    let mut held = Vec::new();
    for client in &clients {
        let mut pending = client.start_connect().await;
        pending.assert_pending_for(Duration::from_millis(100)).await;
        held.push(pending);
    }

    let pid = server.pid().expect("running");
    let started = Instant::now();
    let status = tokio::process::Command::new("kill")
        .args(["-USR1", &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());

    for pending in held {
        let exchange = pending.finish().await;
        assert_eq!(
            exchange.ok(),
            [
                json!({"channel": "/meta/connect", "id": exchange.id, "successful": false,
                    "error": "503::draining",
                    "advice": {"reconnect": "handshake", "interval": 1000}})
            ]
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held connects released within the window, not at their 20 s timeout"
    );
    let exit = server.wait_exit(Duration::from_secs(5)).await;
    assert!(
        exit.is_some_and(|status| status.success()),
        "exits 0 once empty: {exit:?}"
    );
}

/// While draining, new handshakes are refused and readiness says so.
#[tokio::test]
async fn draining_node_refuses_new_clients() {
    let server = TestServer::start(&["--drain-window", "60000", "--drain-deadline", "60000"]).await;
    // One session keeps the node from exiting while we look.
    let stay = Client::open(&server).await;
    let pid = server.pid().expect("running");
    tokio::process::Command::new("kill")
        .args(["-USR1", &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&server, "/readyz").await.0 != 503 {
        assert!(Instant::now() < deadline, "readiness never turned 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&server, "/readyz").await,
        (503, "draining\n".to_owned())
    );
    let newcomer = Client::new(&server);
    let (status, replies) = newcomer
        .post(
            json!([{"channel": "/meta/handshake", "id": "1", "version": "1.0",
                      "supportedConnectionTypes": ["long-polling"]}]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        replies,
        [
            json!({"channel": "/meta/handshake", "id": "1", "successful": false,
                "error": "503::draining",
                "advice": {"reconnect": "handshake", "interval": 1000}})
        ]
    );
    // Sessions already here keep working until their turn comes.
    stay.publish_ok("/still/here", json!(1)).await;
}

/// The value of one sample line of a metrics scrape (`name{labels} value`).
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{scrape}"))
        .trim()
        .parse()
        .expect("numeric sample")
}

#[tokio::test]
async fn metrics_count_real_traffic() {
    let server = TestServer::start(&["--timeout", "5000", "--extensions", ""]).await;
    let a = Client::open(&server).await;
    let b = Client::open(&server).await;
    a.subscribe_ok(json!("/m")).await;
    b.subscribe_ok(json!("/m")).await;
    for i in 0..3 {
        let ex = a.publish("/m", json!(i)).await;
        assert_eq!(ex.ok().last().expect("reply")["successful"], json!(true));
    }
    // One refusal: publishing to a meta channel.
    let refused = a.publish("/meta/nope", json!(1)).await;
    assert_eq!(refused.ok()[0]["successful"], json!(false));
    // b takes its three deliveries, then holds a connect.
    let drained = b.connect().await;
    assert_eq!(drained.ok().len(), 4, "three deliveries and the reply");
    let mut held = b.start_connect().await;
    held.assert_pending_for(Duration::from_millis(100)).await;

    let (status, scrape) = get(&server, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&scrape, "bayeux_handshakes_total"), 2.0);
    assert_eq!(sample(&scrape, "bayeux_publishes_total"), 3.0);
    // Three publishes, two subscribers each.
    assert_eq!(sample(&scrape, "bayeux_deliveries_total"), 6.0);
    assert_eq!(sample(&scrape, "bayeux_refusals_total{code=\"403\"}"), 1.0);
    assert_eq!(
        sample(&scrape, "bayeux_sessions{transport=\"long-polling\"}"),
        2.0
    );
    assert_eq!(sample(&scrape, "bayeux_held_connects"), 1.0);
    a.disconnect().await;
    let (_, scrape) = get(&server, "/metrics").await;
    assert_eq!(
        sample(
            &scrape,
            "bayeux_sessions_removed_total{reason=\"disconnect\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&scrape, "bayeux_sessions{transport=\"long-polling\"}"),
        1.0
    );
    assert!(
        sample(
            &scrape,
            "bayeux_request_processing_seconds_count{transport=\"long-polling\"}"
        ) >= 9.0
    );

    // A websocket client: its frames are counted, and its session by transport.
    let _ws = support::ws::WsClient::connected(&server).await;
    let (_, scrape) = get(&server, "/metrics").await;
    assert_eq!(
        sample(&scrape, "bayeux_sessions{transport=\"websocket\"}"),
        1.0
    );
    assert!(
        sample(&scrape, "bayeux_websocket_frames_in_total") >= 2.0,
        "handshake and connect"
    );
    assert!(
        sample(&scrape, "bayeux_websocket_frames_out_total") >= 2.0,
        "their replies"
    );
}

const TOKEN: &str = "admin-token-for-tests-0123456789";

async fn admin(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = Request::new(method, path).header("Authorization", &format!("Bearer {TOKEN}"));
    if let Some(body) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let resp = send(server.addr(), &req, None).await.expect("answered");
    let value = if resp.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&resp.body).expect("JSON body")
    };
    (resp.status, value)
}

#[tokio::test]
async fn admin_api_lists_disconnects_and_publishes() {
    let server = TestServer::start(&["--admin-token", TOKEN, "--timeout", "5000"]).await;
    let client = Client::open(&server).await;
    client.subscribe_ok(json!("/ops/news")).await;

    // No token, wrong token: 401.
    let anonymous = send(server.addr(), &Request::new("GET", "/admin/sessions"), None)
        .await
        .expect("answered");
    assert_eq!(anonymous.status, 401);
    let wrong = Request::new("GET", "/admin/sessions").header("Authorization", "Bearer nope");
    assert_eq!(
        send(server.addr(), &wrong, None)
            .await
            .expect("answered")
            .status,
        401
    );

    let (status, sessions) = admin(&server, "GET", "/admin/sessions", None).await;
    assert_eq!(status, 200);
    let sessions = sessions.as_array().expect("array");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["clientId"], json!(client.client_id()));
    assert_eq!(sessions[0]["transport"], json!("long-polling"));
    assert_eq!(sessions[0]["subscriptions"], json!(["/ops/news"]));
    assert_eq!(sessions[0]["queued"], json!(0));

    let (status, channels) = admin(&server, "GET", "/admin/channels", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        channels,
        json!([{"channel": "/ops/news", "subscribers": 1}])
    );

    let (status, published) = admin(
        &server,
        "POST",
        "/admin/publish",
        Some(json!({"channel": "/ops/news", "data": {"test": true}})),
    )
    .await;
    assert_eq!(
        (status, published),
        (200, json!({"channel": "/ops/news", "published": true}))
    );
    let ex = client.connect().await;
    assert_eq!(
        ex.ok()[0],
        json!({"channel": "/ops/news", "data": {"test": true}})
    );
    let (status, _) = admin(
        &server,
        "POST",
        "/admin/publish",
        Some(json!({"channel": "/meta/x", "data": 1})),
    )
    .await;
    assert_eq!(status, 400);

    let path = format!("/admin/sessions/{}", client.client_id());
    let (status, _) = admin(&server, "DELETE", &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = admin(&server, "DELETE", &path, None).await;
    assert_eq!(status, 404);
    let ex = client.connect().await;
    assert_eq!(ex.ok()[0]["error"], json!("402::session_unknown"));
}

#[tokio::test]
async fn admin_api_is_off_without_a_token() {
    let server = TestServer::start(&[]).await;
    let resp = send(server.addr(), &Request::new("GET", "/admin/sessions"), None)
        .await
        .expect("answered");
    assert_eq!(resp.status, 404);
}

/// Stopping waits (up to `--shutdown-grace`) for clients between two connects to collect what
/// is queued for them: nothing queued is lost to a restart.
#[tokio::test]
async fn shutdown_lets_clients_collect_what_is_queued() {
    let mut server = TestServer::start(&["--shutdown-grace", "5000", "--timeout", "20000"]).await;
    let subscriber = Client::open(&server).await;
    subscriber.subscribe_ok(json!("/last/words")).await;
    let publisher = Client::open(&server).await;
    for n in 0..3 {
        publisher.publish_ok("/last/words", json!(n)).await;
    }
    // The subscriber is between connects (as during its advised interval) when the stop comes.
    server.send_sigterm().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exchange = subscriber.connect().await;
    let data: Vec<_> = exchange
        .ok()
        .iter()
        .filter_map(|m| m.get("data").cloned())
        .collect();
    assert_eq!(data, [json!(0), json!(1), json!(2)]);
    let reply = exchange.ok().last().expect("connect reply").clone();
    assert_eq!(reply["successful"], json!(true));
    assert_eq!(reply["advice"]["reconnect"], json!("retry"));
    let exit = server.wait_exit(Duration::from_secs(5)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "exits 0 once collected: {exit:?}"
    );
}
