//! The admin API: JSON endpoints for operators, behind a bearer token.
//!
//! | request | answer |
//! |---|---|
//! | `GET /admin/sessions` | every session: `clientId`, `transport`, `subscriptions`, `queued`, `dropped`, `ageMs`, `ack` |
//! | `GET /admin/channels` | every channel with its number of direct subscribers |
//! | `DELETE /admin/sessions/{clientId}` | disconnects it: 204, or 404 |
//! | `POST /admin/publish` `{"channel": .., "data": ..}` | publishes: `{"receivers": n}`, or 400 |
//!
//! Off unless mounted; mount it on a separate, private listener where possible.

use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bayeux_server::Server;
use serde_json::{json, Value};

/// The admin API, answering only requests with `Authorization: Bearer <token>`.
///
/// ```no_run
/// # use actix_web::App;
/// # let server = bayeux_server::Server::builder().build();
/// App::new().configure(bayeux_actix::admin(server, "a long random token".into()));
/// ```
pub fn admin(server: Server, token: String) -> impl FnOnce(&mut web::ServiceConfig) {
    let state = web::Data::new(Admin { server, token });
    move |config| {
        config.service(
            web::scope("/admin")
                .app_data(state)
                .route("/sessions", web::get().to(sessions))
                .route("/sessions/{client_id}", web::delete().to(disconnect))
                .route("/channels", web::get().to(channels))
                .route("/publish", web::post().to(publish)),
        );
    }
}

struct Admin {
    server: Server,
    token: String,
}

impl Admin {
    /// Compares the bearer token in constant time, so its length is all a timing reveals.
    fn authorized(&self, req: &HttpRequest) -> bool {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let (a, b) = (presented.as_bytes(), self.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
        .json(json!({"error": "a valid bearer token is required"}))
}

async fn sessions(req: HttpRequest, admin: web::Data<Admin>) -> HttpResponse {
    if !admin.authorized(&req) {
        return unauthorized();
    }
    let now = Instant::now();
    let mut list: Vec<Value> = admin
        .server
        .engine()
        .all_sessions()
        .iter()
        .map(|s| {
            json!({
                "clientId": s.client_id(),
                "transport": s.transport().name(),
                "subscriptions": s.subscriptions().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "queued": s.queue_len(),
                "dropped": s.dropped(),
                "ageMs": now.saturating_duration_since(s.created_at()).as_millis() as u64,
                "ack": s.is_ack_enabled(),
            })
        })
        .collect();
    list.sort_by(|a, b| a["clientId"].as_str().cmp(&b["clientId"].as_str()));
    HttpResponse::Ok().json(list)
}

async fn channels(req: HttpRequest, admin: web::Data<Admin>) -> HttpResponse {
    if !admin.authorized(&req) {
        return unauthorized();
    }
    let engine = admin.server.engine();
    let counts = engine.subscriptions().counts();
    let list: Vec<Value> = engine
        .channels()
        .iter()
        .map(|channel| {
            let subscribers = counts
                .iter()
                .find(|(name, _)| name == channel)
                .map_or(0, |(_, n)| *n);
            json!({"channel": channel.as_str(), "subscribers": subscribers})
        })
        .collect();
    HttpResponse::Ok().json(list)
}

async fn disconnect(
    req: HttpRequest,
    path: web::Path<String>,
    admin: web::Data<Admin>,
) -> HttpResponse {
    if !admin.authorized(&req) {
        return unauthorized();
    }
    if admin.server.disconnect(&path) {
        HttpResponse::NoContent().finish()
    } else {
        HttpResponse::NotFound().json(json!({"error": "no such session"}))
    }
}

async fn publish(req: HttpRequest, body: web::Bytes, admin: web::Data<Admin>) -> HttpResponse {
    if !admin.authorized(&req) {
        return unauthorized();
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return HttpResponse::BadRequest().json(json!({"error": e.to_string()})),
    };
    let (Some(channel), Some(data)) = (request["channel"].as_str(), request.get("data")) else {
        return HttpResponse::BadRequest()
            .json(json!({"error": "expected {\"channel\", \"data\"}"}));
    };
    match admin.server.publish(channel, data.clone()) {
        Ok(receivers) => HttpResponse::Ok().json(json!({"receivers": receivers})),
        Err(e) => HttpResponse::BadRequest().json(json!({"error": e.to_string()})),
    }
}
