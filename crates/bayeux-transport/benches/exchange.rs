//! Heap allocations per long-polling exchange, inside the server (engine and transport, no
//! socket and no web framework), counted by an instrumented allocator. Unlike CPU time, a
//! count does not move between runs or machines, so a cut on the hot path shows as an exact
//! difference. What actix-web and actix-http allocate on top is measured on the running
//! server (docs/performance.md, "Where the CPU of the topology goes").
//!
//! `cargo bench -p bayeux-transport --bench exchange [-- EXCHANGES]` (default 10 000).

use std::alloc::System;

use bayeux_server::Server;
use bayeux_transport::http::HttpOrigin;
use bayeux_transport::long_polling::{handle_post, PostRequest, JSON_UTF8};
use bayeux_transport::TransportConfig;
use serde_json::{json, Value};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// One `POST` of `body` with the browser cookie `browser`; the response body.
async fn post(server: &Server, config: &TransportConfig, browser: &str, body: &[u8]) -> String {
    let origin = HttpOrigin {
        browser_cookie: Some(browser),
        ..HttpOrigin::default()
    };
    let reply = handle_post(
        server,
        config,
        PostRequest {
            content_type: Some(JSON_UTF8),
            origin,
            body,
        },
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn reply_of(body: &str) -> Value {
    serde_json::from_str::<Value>(body).expect("a JSON reply")[0].clone()
}

fn main() {
    let exchanges: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let server = Server::builder().build();
        let config = TransportConfig::default();
        // The browser cookie is set by the handshake's response in a real exchange; any value
        // the server has not seen works the same here.
        let browser = "bench-browser";
        let handshake = json!([{"channel": "/meta/handshake", "id": "1", "version": "1.0",
            "supportedConnectionTypes": ["long-polling"]}]);
        let hs = reply_of(&post(&server, &config, browser, handshake.to_string().as_bytes()).await);
        let client_id = hs["clientId"].as_str().expect("a clientId").to_owned();
        let first = json!([{"channel": "/meta/connect", "id": "2", "clientId": client_id,
            "connectionType": "long-polling", "advice": {"timeout": 0}}]);
        post(&server, &config, browser, first.to_string().as_bytes()).await;
        let subscribe = json!([{"channel": "/meta/subscribe", "id": "3", "clientId": client_id,
            "subscription": "/room/1"}]);
        post(&server, &config, browser, subscribe.to_string().as_bytes()).await;

        // What a client of the topology sends between two batches: a connect, answered with
        // the one message published meanwhile. The publish from Rust is counted apart.
        let connect = json!([{"channel": "/meta/connect", "id": "4", "clientId": client_id,
            "connectionType": "long-polling"}])
        .to_string();
        // A client's publish of 50 bytes to a room with no other subscriber.
        let publish = json!([{"channel": "/room/2", "id": "5", "clientId": client_id,
            "data": {"text": "x".repeat(38)}}])
        .to_string();
        let data = json!({"text": "y".repeat(38)});

        let mut published = 0;
        let mut connected = 0;
        let mut posted = 0;
        for _ in 0..exchanges {
            let message = data.clone();
            let region = Region::new(GLOBAL);
            server.publish("/room/1", message).expect("published");
            published += region.change().allocations;

            let region = Region::new(GLOBAL);
            let answer = post(&server, &config, browser, connect.as_bytes()).await;
            connected += region.change().allocations;
            assert!(
                answer.contains("/room/1"),
                "the message came back: {answer}"
            );

            let region = Region::new(GLOBAL);
            post(&server, &config, browser, publish.as_bytes()).await;
            posted += region.change().allocations;
        }
        let per = |n: usize| n as f64 / exchanges as f64;
        println!("{exchanges} exchanges; heap allocations per exchange (allocator-counted):");
        println!(
            "  {:>6.1}  a connect answered with one queued message (its response body included)",
            per(connected)
        );
        println!(
            "  {:>6.1}  a client's publish of 50 bytes, and its reply",
            per(posted)
        );
        println!(
            "  {:>6.1}  a publish from Rust to one subscriber",
            per(published)
        );
    });
}
