//! The floor under bayeuxd's idle footprint: the least an actix-web server can do to look like
//! a Bayeux server to `bayeux-bench idle`, on the same HTTP/1.1 listener as bayeuxd.
//!
//! It answers every handshake with a new clientId and every connect with `advice.timeout: 0`
//! at once, and never answers any other connect (the request, or the websocket, is held until
//! the client goes). No session, no queue, no timer: what an idle client costs here is what
//! actix-web, Tokio and the held request cost. `bench/compare.sh` runs it as the server
//! `floor` (docs/performance.md, "Where the bytes of an idle session go").
//!
//! Usage: `bayeux-floor [ADDR]` (default `127.0.0.1:0`); prints `listening on http://ADDR/cometd`.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{web, App, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::{json, Value};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the floor answers to a batch: `None` when it holds it for ever.
fn answer(batch: &[Value]) -> Option<String> {
    let mut replies = Vec::with_capacity(batch.len());
    for message in batch {
        let channel = message["channel"].as_str().unwrap_or_default();
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        match channel {
            "/meta/handshake" => {
                let cid = format!("floor{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
                replies.push(json!({
                    "channel": channel, "id": id, "successful": true, "version": "1.0",
                    "clientId": cid, "supportedConnectionTypes": ["websocket", "long-polling"],
                    "advice": {"reconnect": "retry", "interval": 0, "timeout": 30000},
                }));
            }
            "/meta/connect" if message["advice"]["timeout"] == json!(0) => {
                replies.push(json!({
                    "channel": channel, "id": id, "successful": true,
                    "advice": {"reconnect": "retry", "interval": 0, "timeout": 30000},
                }));
            }
            "/meta/connect" => return None,
            _ => replies.push(json!({"channel": channel, "id": id, "successful": true})),
        }
    }
    Some(Value::from(replies).to_string())
}

async fn poll(body: web::Bytes) -> HttpResponse {
    // The body and the batch are dropped before the wait: a held request keeps neither (as
    // bayeuxd keeps neither), so that what is measured is what actix-web itself keeps.
    let answered = {
        let batch: Vec<Value> = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(batch)) => batch,
            Ok(one) => vec![one],
            Err(_) => return HttpResponse::BadRequest().finish(),
        };
        answer(&batch)
    };
    drop(body);
    match answered {
        Some(text) => HttpResponse::Ok()
            .content_type("application/json")
            .body(text),
        // Held until the client goes (actix-web drops this future then).
        None => std::future::pending().await,
    }
}

async fn socket(req: HttpRequest, payload: web::Payload) -> actix_web::Result<HttpResponse> {
    let (response, mut session, mut stream) = actix_ws::handle(&req, payload)?;
    actix_web::rt::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            let actix_ws::Message::Text(text) = frame else {
                continue;
            };
            let batch: Vec<Value> = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Array(batch)) => batch,
                Ok(one) => vec![one],
                Err(_) => break,
            };
            if let Some(reply) = answer(&batch) {
                if session.text(reply).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok(response)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let app = || {
        App::new()
            .route("/cometd", web::get().to(socket))
            .route("/cometd{tail:.*}", web::post().to(poll))
    };
    let builder = actix_server::Server::build();
    let (builder, addrs) = bayeux_actix::listener::serve_http1(builder, &addr, app, |_, _| {})?;
    for addr in addrs {
        println!("listening on http://{addr}/cometd");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    builder.run().await
}
