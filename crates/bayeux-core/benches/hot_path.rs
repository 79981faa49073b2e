//! Micro-benchmarks of the publish hot path: routing keys, subscriber lookup, and one publish
//! fanned out to many sessions (encoded once, queued for each). Run with
//! `cargo bench -p bayeux-core`; compare runs on the same machine only.

use std::time::{Duration, Instant};

use bayeux_core::{BrowserId, Engine, EngineConfig, RequestContext, SequentialIds, TransportKind};
use bayeux_message::{encode_batch, parse_batch, ChannelName, Message};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;

fn ctx() -> RequestContext {
    RequestContext::new(TransportKind::LongPolling).with_browser(Some(BrowserId::new("bench")))
}

fn batch(value: serde_json::Value) -> Vec<Message> {
    parse_batch(value.to_string().as_bytes()).expect("valid batch")
}

/// An engine with `subscribers` sessions subscribed to `/chat/room` (half of them through
/// `/chat/*`), and one publisher session.
fn engine_with(subscribers: usize) -> (Engine, String, Instant) {
    let config = EngineConfig {
        max_browser_sessions: usize::MAX,
        max_queue: 1_000_000,
        ..EngineConfig::default()
    };
    let engine = Engine::new(config, Box::new(SequentialIds::default()));
    let now = Instant::now();
    let handshake = |n: usize| {
        let outcome = engine
            .handle(
                now,
                &ctx(),
                batch(json!([{"channel": "/meta/handshake", "id": n.to_string()}])),
            )
            .expect("handshake");
        outcome.handshaken.expect("session").to_string()
    };
    for n in 0..subscribers {
        let cid = handshake(n);
        let channel = if n % 2 == 0 { "/chat/room" } else { "/chat/*" };
        engine
            .handle(
                now,
                &ctx(),
                batch(json!([{"channel": "/meta/subscribe", "id": "s",
                "clientId": cid, "subscription": channel}])),
            )
            .expect("subscribe");
    }
    let publisher = handshake(subscribers);
    (engine, publisher, now)
}

fn routing(c: &mut Criterion) {
    let channel = ChannelName::parse("/chat/rooms/europe/paris").expect("valid");
    c.bench_function("subscribers_keys (depth 4)", |b| {
        b.iter(|| black_box(&channel).subscribers_keys())
    });
    let (engine, _, _) = engine_with(1_000);
    let room = ChannelName::parse("/chat/room").expect("valid");
    c.bench_function("subscribers of a channel (1 000 sessions, 2 names)", |b| {
        b.iter(|| engine.subscriptions().subscribers(black_box(&room)).len())
    });
}

fn publish(c: &mut Criterion) {
    for subscribers in [1, 100, 1_000] {
        let (engine, publisher, now) = engine_with(subscribers);
        let request = json!([{"channel": "/chat/room", "id": "p", "clientId": publisher,
            "data": {"text": "hello, world", "n": 42}}]);
        c.bench_function(&format!("publish to {subscribers} subscribers"), |b| {
            b.iter_batched(
                || batch(request.clone()),
                |messages| engine.handle(now + Duration::from_millis(1), &ctx(), messages),
                BatchSize::SmallInput,
            )
        });
    }
}

fn encoding(c: &mut Criterion) {
    let messages: Vec<_> = (0..10)
        .map(|n| {
            Message::new()
                .with("channel", "/chat/room")
                .with("data", json!({"n": n}))
                .encode()
        })
        .collect();
    c.bench_function("encode_batch of 10 shared messages", |b| {
        b.iter(|| encode_batch(black_box(&messages)))
    });
    let body = json!([{"channel": "/chat/room", "id": "7", "clientId": "c1",
        "data": {"text": "hello, world", "n": 42}}])
    .to_string();
    c.bench_function("parse_batch of one publish", |b| {
        b.iter(|| parse_batch(black_box(body.as_bytes())))
    });
}

// The macro generates an undocumented function; there is nothing to document about it.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, routing, publish, encoding);
}
criterion_main!(group::benches);
