//! An actix-web application that serves its own routes beside a Bayeux endpoint, and publishes
//! to Bayeux subscribers from a plain HTTP handler.
//!
//! Run: `cargo run -p bayeux-examples --example embedded`, subscribe a CometD client to
//! `/announcements` at `http://127.0.0.1:8080/cometd`, then
//! `curl -X POST -d 'hello' http://127.0.0.1:8080/announce`.

use actix_web::{web, App, HttpResponse, HttpServer};
use bayeux_server::Server;
use serde_json::json;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bayeux = Server::builder()
        .on_session_added(|client_id| println!("session {client_id} added"))
        .on_session_removed(|client_id, reason| println!("session {client_id} removed: {reason:?}"))
        .build();
    let addr = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(bayeux.clone()))
            .service(bayeux_actix::scope("/cometd", bayeux.clone()))
            .route("/announce", web::post().to(announce))
    })
    // Pushes are small writes that must leave at once: no Nagle delay.
    .tcp_nodelay(true)
    // A held connect whose client left is noticed, and its messages kept for the next one.
    .on_connect(bayeux_actix::watch_connections)
    .bind(&addr)?;
    for addr in server.addrs() {
        println!("listening on http://{addr}/cometd");
    }
    server.run().await
}

/// Publishes the request body, as text, to every subscriber of `/announcements`.
async fn announce(bayeux: web::Data<Server>, body: String) -> HttpResponse {
    match bayeux.publish("/announcements", json!({ "text": body })) {
        Ok(()) => HttpResponse::Ok().body("published\n"),
        Err(why) => HttpResponse::InternalServerError().body(why.to_string()),
    }
}
