//! Examples of embedding the Bayeux server; each is a file beside this one, run with
//! `cargo run -p bayeux-examples --example <name>`:
//!
//! - `embedded`: an actix-web app with its own routes beside the endpoint, publishing from a
//!   plain HTTP handler (spells out the set-up the others share through [`serve`]).
//! - `ticker`: a server-side task publishing to a channel.
//! - `auth`: a security policy checking a token sent in the handshake `ext`, an authorizer
//!   for private channels, and presence: who is online, and a whisper to every session of a
//!   user.
//! - `services`: remote calls answered now, answered later from a task, and failing.
//! - `chat`: the chat demo page (run `npm install --prefix examples/chat` first).
//!
//! Each listens on `$BIND` (default `127.0.0.1:8080`) and prints
//! `listening on http://ADDR/cometd` once ready. With `$BACKPLANE` set to a Redis URL
//! (`redis://127.0.0.1:6379`), each is one node of a cluster: start it twice, on two ports,
//! and clients of either node talk to each other (`$NODE_NAME` names the node in logs).
//! `$TIMEOUT_MS` and `$MAX_INTERVAL_MS` set CometD's `timeout` and `maxInterval` (the tests
//! shorten them to see sessions expire).

use std::path::PathBuf;

use actix_web::{App, HttpServer};
use bayeux_redis::{RedisBackplane, RedisOptions};
use bayeux_server::{BackplaneStatus, ClusterOptions, EngineConfig, Server, ServerBuilder};

/// A server builder, one node of a cluster when `$BACKPLANE` names a Redis: one builder call
/// is all it takes.
///
/// # Panics
/// When `$BACKPLANE` is not a Redis URL, or a duration is not a number of milliseconds.
pub fn builder() -> ServerBuilder {
    let mut config = EngineConfig::default();
    let millis = |name: &str| {
        std::env::var(name).ok().map(|v| {
            let ms = v.parse().unwrap_or_else(|why| panic!("{name}: {why}"));
            std::time::Duration::from_millis(ms)
        })
    };
    if let Some(timeout) = millis("TIMEOUT_MS") {
        config.timeout = timeout;
    }
    if let Some(max_interval) = millis("MAX_INTERVAL_MS") {
        config.max_interval = max_interval;
    }
    let builder = Server::builder().config(config);
    let Ok(url) = std::env::var("BACKPLANE") else {
        return builder;
    };
    let backplane = RedisBackplane::new(&url, RedisOptions::default())
        .unwrap_or_else(|why| panic!("BACKPLANE: {why}"));
    let mut options = ClusterOptions::default();
    if let Ok(name) = std::env::var("NODE_NAME") {
        options = options.node_name(name);
    }
    builder.backplane(backplane).cluster_options(options)
}

/// Serves `server` at `/cometd` on `$BIND`, with the probes (`/healthz`, `/readyz`), and the
/// files of `static_dir` at `/` if given.
pub async fn serve(server: Server, static_dir: Option<PathBuf>) -> std::io::Result<()> {
    let addr = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".into());
    // A node of a cluster says it listens once it reads the shared log (or after 3 s).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while server.backplane_status() == BackplaneStatus::Down && std::time::Instant::now() < until {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let http = HttpServer::new(move || {
        let app = App::new()
            .service(bayeux_actix::scope("/cometd", server.clone()))
            .configure(bayeux_actix::probes(server.clone()));
        match &static_dir {
            Some(dir) => app.service(actix_files::Files::new("/", dir).index_file("index.html")),
            None => app,
        }
    })
    // Deliveries are small writes that must leave at once: no Nagle delay.
    .tcp_nodelay(true)
    // A held connect whose client left is noticed, and its messages kept for the next one.
    .on_connect(bayeux_actix::watch_connections)
    .bind(&addr)?;
    for addr in http.addrs() {
        println!("listening on http://{addr}/cometd");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    http.run().await
}
