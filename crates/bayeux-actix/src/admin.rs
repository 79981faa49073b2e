//! The admin API: JSON endpoints for operators, behind a bearer token.
//!
//! | request | answer |
//! |---|---|
//! | `GET /admin/sessions` | every session: `clientId`, `transport`, `subscriptions`, `queued`, `dropped`, `ageMs`, `ack` |
//! | `GET /admin/channels` | every channel with its number of direct subscribers (this node) |
//! | `GET /admin/nodes` | the nodes of the cluster: `node`, `alive`, `sessions` |
//! | `DELETE /admin/sessions/{clientId}` | disconnects it: 204, or 404 |
//! | `POST /admin/publish` `{"channel": .., "data": ..}` | publishes: `{"channel": .., "published": true}`, or 400 |
//!
//! In a cluster, any node answers for all of them: `/admin/sessions` lists the sessions of
//! every node (each with its `node`; those served elsewhere with what the registry knows:
//! `subscriptions` and `ack`), a session is disconnected wherever it is served, and a publish
//! reaches every node.
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
                .route("/nodes", web::get().to(nodes))
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
    let node = admin.server.node_id().map(|n| n.name().to_owned());
    let mut list: Vec<Value> = admin
        .server
        .engine()
        .all_sessions()
        .iter()
        .map(|s| {
            let mut entry = json!({
                "clientId": s.client_id(),
                "transport": s.transport().name(),
                "subscriptions": s.subscriptions().iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "queued": s.queue_len(),
                "dropped": s.dropped(),
                "ageMs": now.saturating_duration_since(s.created_at()).as_millis() as u64,
                "ack": s.is_ack_enabled(),
            });
            if let Some(node) = &node {
                entry["node"] = json!(node);
            }
            entry
        })
        .collect();
    if let (Some(backplane), Some(me)) = (admin.server.backplane(), admin.server.node_id()) {
        let Ok(nodes) = backplane.nodes().await else {
            return unavailable();
        };
        for other in nodes.iter().filter(|n| *n != me) {
            let Ok(ids) = backplane.sessions_of(other).await else {
                return unavailable();
            };
            for cid in ids {
                if let Ok(Some(found)) = backplane.lookup(&cid).await {
                    let (record, owner) = (found.record, found.owner);
                    let subscriptions: Vec<&str> = record
                        .subscriptions
                        .iter()
                        .map(|(c, _)| c.as_str())
                        .collect();
                    list.push(json!({
                        "clientId": cid,
                        "node": owner.as_ref().map(|o| o.name()),
                        "subscriptions": subscriptions,
                        "ack": record.ack,
                    }));
                }
            }
        }
    }
    list.sort_by(|a, b| a["clientId"].as_str().cmp(&b["clientId"].as_str()));
    HttpResponse::Ok().json(list)
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({"error": "backplane unavailable"}))
}

async fn nodes(req: HttpRequest, admin: web::Data<Admin>) -> HttpResponse {
    if !admin.authorized(&req) {
        return unauthorized();
    }
    let (Some(backplane), Some(me)) = (admin.server.backplane(), admin.server.node_id()) else {
        return HttpResponse::Ok().json(json!([{
            "node": null,
            "alive": true,
            "sessions": admin.server.session_count(),
        }]));
    };
    let Ok(nodes) = backplane.nodes().await else {
        return unavailable();
    };
    let mut list = Vec::new();
    for node in nodes {
        let (Ok(alive), Ok(sessions)) = (
            backplane.is_alive(&node).await,
            backplane.sessions_of(&node).await,
        ) else {
            return unavailable();
        };
        list.push(json!({
            "node": node.name(),
            "id": node.as_str(),
            "alive": alive,
            "self": node == *me,
            "sessions": sessions.len(),
        }));
    }
    list.sort_by(|a, b| a["node"].as_str().cmp(&b["node"].as_str()));
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
    if admin.server.disconnect(&path).await {
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
        Ok(()) => HttpResponse::Ok().json(json!({"channel": channel, "published": true})),
        Err(e) => HttpResponse::BadRequest().json(json!({"error": e.to_string()})),
    }
}
