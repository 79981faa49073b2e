//! Services and remote calls, as the JS client's `cometd.remoteCall(target, data, timeout, cb)`
//! expects them: the answer reaches the caller with the call's `id`.
//!
//! - `/service/echo`: answers at once with the data it got.
//! - `/service/fail`: answers at once with a failure, `{"reason": "..."}`.
//! - `/service/slow`: answers after `data.delayMs` milliseconds, from another task.
//! - `/service/whoami`: answers with the caller's `clientId`.
//! - `/service/notify`: no answer to the call; instead a private message to the caller on
//!   `/notifications` (deliver to one session).

use std::time::Duration;

use bayeux_server::{ServiceReply, ServiceRequest};
use serde_json::{json, Value};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let server = bayeux_examples::builder().build();
    server
        .service("/service/echo", |req: ServiceRequest<'_>| {
            Some(ServiceReply::Success(req.data().clone()))
        })
        .expect("service channel");
    server
        .service("/service/fail", |_req: ServiceRequest<'_>| {
            Some(ServiceReply::Failure(
                json!({ "reason": "this service always fails" }),
            ))
        })
        .expect("service channel");
    server
        .service("/service/whoami", |req: ServiceRequest<'_>| {
            Some(ServiceReply::Success(
                json!({ "clientId": req.session.client_id() }),
            ))
        })
        .expect("service channel");

    let later = server.clone();
    server
        .service("/service/slow", move |req: ServiceRequest<'_>| {
            // Capture what the answer needs, then answer from a task without blocking the
            // request path.
            let delay = req
                .data()
                .get("delayMs")
                .and_then(Value::as_u64)
                .unwrap_or(100);
            let (server, client_id) = (later.clone(), req.session.client_id().to_string());
            let (channel, id) = (req.channel.to_string(), req.message.id().cloned());
            actix_web::rt::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if let Some(id) = id {
                    let answer = ServiceReply::Success(json!({ "waited": delay }));
                    let _ = server.answer_remote_call(&client_id, &channel, id, answer);
                }
            });
            None
        })
        .expect("service channel");

    let notifier = server.clone();
    server
        .service("/service/notify", move |req: ServiceRequest<'_>| {
            let text = req.data().get("text").cloned().unwrap_or(Value::Null);
            let client_id = req.session.client_id().as_str();
            let _ = notifier.deliver(client_id, "/notifications", json!({ "echo": text }));
            None
        })
        .expect("service channel");

    bayeux_examples::serve(server, None).await
}
