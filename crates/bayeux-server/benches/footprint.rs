//! Where the heap bytes of an idle session go, inside the server (no sockets): the bytes
//! allocated and still held after each step of setting up N sessions, per session, counted by
//! an instrumented allocator. What actix-web, Tokio and the socket cost on top is measured
//! against `bayeux-floor` by `bench/compare.sh` (docs/performance.md, "Where the bytes of an
//! idle session go").
//!
//! `cargo bench -p bayeux-server --bench footprint [-- SESSIONS]` (default 10 000).

use std::alloc::System;

use bayeux_server::{BrowserId, Message, RequestContext, Server, TransportKind};
use serde_json::{json, Value};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn batch(messages: Value) -> Vec<Message> {
    let Value::Array(items) = messages else {
        unreachable!("a JSON array")
    };
    items
        .into_iter()
        .map(|v| Message::from_map(v.as_object().cloned().unwrap_or_default()))
        .collect()
}

/// Bytes allocated and not freed since `region` started.
fn held(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64
}

fn main() {
    let sessions: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let server = Server::builder().build();
        let contexts: Vec<RequestContext> = (0..sessions)
            .map(|n| {
                RequestContext::new(TransportKind::LongPolling)
                    .with_browser(Some(BrowserId::new(format!("browser-{n:08}"))))
            })
            .collect();
        let mut steps: Vec<(&str, i64)> = Vec::new();
        let region = Region::new(GLOBAL);
        let mut ids = Vec::with_capacity(sessions);
        for ctx in &contexts {
            let hs = json!([{"channel": "/meta/handshake", "id": "1", "version": "1.0",
                "supportedConnectionTypes": ["long-polling"]}]);
            let outcome = server.handle(ctx, batch(hs)).await.expect("handshake");
            ids.push(outcome.handshaken.expect("a session").to_string());
        }
        steps.push(("handshake: the session, its id, its browser", held(&region)));
        let region = Region::new(GLOBAL);
        for (ctx, cid) in contexts.iter().zip(&ids) {
            let connect = json!([{"channel": "/meta/connect", "id": "2", "clientId": cid,
                "connectionType": "long-polling", "advice": {"timeout": 0}}]);
            server.handle(ctx, batch(connect)).await.expect("connect");
        }
        steps.push(("first connect, answered at once", held(&region)));
        let region = Region::new(GLOBAL);
        for (ctx, cid) in contexts.iter().zip(&ids) {
            let subscribe = json!([{"channel": "/meta/subscribe", "id": "3", "clientId": cid,
                "subscription": "/chat/room"}]);
            server.handle(ctx, batch(subscribe)).await.expect("subscribe");
        }
        steps.push(("a subscription to one shared channel", held(&region)));
        let region = Region::new(GLOBAL);
        let mut holds = Vec::with_capacity(sessions);
        for (ctx, cid) in contexts.iter().zip(&ids) {
            let connect = json!([{"channel": "/meta/connect", "id": "4", "clientId": cid,
                "connectionType": "long-polling"}]);
            let outcome = server.handle(ctx, batch(connect)).await.expect("connect");
            holds.push(outcome.hold.expect("a held connect"));
        }
        let holds_vec = (holds.capacity() * std::mem::size_of_val(&holds[0])) as i64;
        steps.push(("a held connect (the Hold the transport keeps)", held(&region)));
        println!(
            "{sessions} sessions; a Session is {} bytes; bytes held per session (heap, allocator-counted):",
            std::mem::size_of::<bayeux_server::Session>()
        );
        let mut total = 0;
        for (step, bytes) in steps {
            let per = bytes as f64 / sessions as f64;
            total += bytes;
            println!("  {per:>8.0}  {step}");
        }
        println!(
            "  {:>8.0}  in all (of which the bench's own Vec of holds: {:.0})",
            total as f64 / sessions as f64,
            holds_vec as f64 / sessions as f64
        );
        drop(holds);
    });
}
