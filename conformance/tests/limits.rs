//! Caps against abuse, over real HTTP against `bayeuxd`: each refusal is a clear Bayeux error,
//! and the server keeps serving everyone else.

mod support;

use serde_json::{json, Value};

use support::{Client, TestServer, Witness};

/// A raw handshake that may fail: returns the reply.
async fn try_handshake(client: &Client) -> Value {
    let (status, replies) = client
        .post(
            json!([{"channel": "/meta/handshake", "id": "h", "version": "1.0",
                      "supportedConnectionTypes": ["long-polling"]}]),
        )
        .await;
    assert_eq!(status, 200);
    replies[0].clone()
}

#[tokio::test]
async fn max_sessions_refuses_handshakes_then_admits_again() {
    let server = TestServer::start(&["--max-sessions", "2", "--timeout", "1000"]).await;
    let first = Client::open(&server).await;
    let _second = Client::open(&server).await;
    let third = Client::new(&server);
    assert_eq!(
        try_handshake(&third).await,
        json!({"channel": "/meta/handshake", "id": "h", "successful": false,
               "error": "503::too_many_sessions",
               "advice": {"reconnect": "handshake", "interval": 5000}})
    );
    first.disconnect().await;
    assert_eq!(try_handshake(&third).await["successful"], json!(true));
}

#[tokio::test]
async fn max_browser_sessions_counts_sessions_per_cookie() {
    let server = TestServer::start(&["--max-browser-sessions", "2"]).await;
    let tab = Client::open(&server).await;
    let _second_tab = {
        let t = tab.tab();
        t.handshake().await;
        t
    };
    let third_tab = tab.tab();
    assert_eq!(
        try_handshake(&third_tab).await,
        json!({"channel": "/meta/handshake", "id": "h", "successful": false,
               "error": "403::too_many_browser_sessions", "advice": {"reconnect": "none"}})
    );
    // Another browser is not affected.
    Client::open(&server).await;
}

#[tokio::test]
async fn max_subscriptions_refuses_the_subscribe_whole() {
    let server = TestServer::start(&["--max-subscriptions", "2"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/a")).await;
    let ex = c.subscribe(json!(["/b", "/c"])).await;
    assert_eq!(
        ex.ok(),
        [
            json!({"channel": "/meta/subscribe", "id": ex.id, "subscription": ["/b", "/c"],
                "successful": false, "error": "403::too_many_subscriptions"})
        ]
    );
    c.subscribe_ok(json!("/b")).await;
}

#[tokio::test]
async fn max_channels_refuses_a_new_channel_but_serves_existing_ones() {
    let server = TestServer::start(&["--max-channels", "2"]).await;
    let c = Client::open(&server).await;
    c.subscribe_ok(json!("/one")).await;
    c.publish_ok("/two", json!(1)).await;
    let ex = c.publish("/three", json!(1)).await;
    assert_eq!(
        ex.ok(),
        [
            json!({"channel": "/three", "id": ex.id, "successful": false,
                "error": "403::too_many_channels"})
        ]
    );
    let ex = c.publish("/one", json!("still"));
    let ex = ex.await;
    assert_eq!(ex.ok()[0], json!({"channel": "/one", "data": "still"}));
}

#[tokio::test]
async fn publish_rate_limit_refuses_the_excess_only() {
    let server = TestServer::start(&["--max-publish-rate", "5"]).await;
    let witness = Witness::new(&server, "/witness").await;
    let c = Client::open(&server).await;
    // Ten publishes in one request: the bucket holds five.
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"channel": "/burst", "id": format!("p{i}"), "data": i, "clientId": c.client_id()}))
        .collect();
    let (status, replies) = c.post(json!(batch)).await;
    assert_eq!(status, 200);
    let outcomes: Vec<&Value> = replies.iter().map(|r| &r["successful"]).collect();
    assert_eq!(
        outcomes,
        [&json!(true); 5]
            .into_iter()
            .chain([&json!(false); 5])
            .collect::<Vec<_>>()
    );
    assert_eq!(replies[9]["error"], json!("429::publish_rate_exceeded"));
    // Other sessions have their own allowance.
    witness.assert_alive().await;
}

#[tokio::test]
async fn queue_overflow_with_disconnect_policy_ends_the_session() {
    let server = TestServer::start(&[
        "--max-queue",
        "3",
        "--queue-full-policy",
        "disconnect",
        "--timeout",
        "1000",
    ])
    .await;
    let slow = Client::open(&server).await;
    slow.subscribe_ok(json!("/flood")).await;
    let publisher = Client::open(&server).await;
    for i in 0..4 {
        publisher.publish_ok("/flood", json!(i)).await;
    }
    let ex = slow.connect().await;
    assert_eq!(
        ex.ok(),
        [
            json!({"channel": "/meta/connect", "id": ex.id, "successful": false,
                "error": "402::session_unknown",
                "advice": {"reconnect": "handshake", "interval": 0}})
        ]
    );
    // The publisher was never slowed down nor affected.
    publisher.publish_ok("/other", json!("fine")).await;
}
