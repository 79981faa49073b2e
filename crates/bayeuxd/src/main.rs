//! `bayeuxd`: a CometD-compatible Bayeux server.
//!
//! Serves the Bayeux endpoint (default `http://127.0.0.1:8080/cometd`) with options from flags
//! or a TOML file, logs through `RUST_LOG`, and shuts down gracefully on Ctrl-C or SIGTERM:
//! held connects are answered with advice to reconnect, never cut. With `--backplane`, it is
//! one node of a cluster sharing a Redis: any node serves any session, and a stopping or
//! draining node hands its sessions over to the others.
//!
//! # Layout
//! - `options`: flags and the config file, with CometD's names and defaults.
//! - `tls`: the certificate and key of `--tls-cert` / `--tls-key`.
//! - `listener`: the plaintext listener, HTTP/1.1 only.
//! - `main`: logging, the HTTP server, signals.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use bayeux_actix::Cometd;
use bayeux_redis::{RedisBackplane, RedisOptions};
use bayeux_server::{
    AckExtension, BackplaneStatus, ClusterOptions, Server, TimestampExtension, TimesyncExtension,
};
use clap::Parser;

mod options;
mod tls;

use options::{BuiltinExtension, Options, Retention, Settings};

fn main() -> ExitCode {
    let settings = match Options::parse().load() {
        Ok(settings) => settings,
        Err(why) => {
            eprintln!("bayeuxd: {why}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match actix_web::rt::System::new().block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("bayeuxd: {why}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> std::io::Result<()> {
    let tls = match &settings.tls {
        Some(files) => Some(
            tls::server_config(&files.cert, &files.key)
                .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))?,
        ),
        None => None,
    };
    let mut builder = Server::builder()
        .config(settings.engine)
        .sweep_period(settings.sweep_period);
    for (channel, retention) in &settings.history {
        builder = builder.history(channel.clone(), *retention);
    }
    for extension in &settings.extensions {
        builder = match extension {
            BuiltinExtension::Ack => builder.extension(AckExtension),
            BuiltinExtension::Timestamp => builder.extension(TimestampExtension),
            BuiltinExtension::Timesync => builder.extension(TimesyncExtension::default()),
        };
    }
    if let Some(cluster) = &settings.backplane {
        let mut redis = RedisOptions::default().prefix(cluster.prefix.clone());
        let mut options = ClusterOptions::default().checkpoint_period(cluster.checkpoint_period);
        match cluster.retention {
            Retention::Count(count) => redis = redis.max_len(count),
            Retention::Age(age) => {
                // Trimmed by age, with a count as a backstop against runaway growth.
                redis = redis.max_len(10_000_000);
                options = options.retention_age(Some(age));
            }
        }
        if let Some(name) = &cluster.node_name {
            options = options.node_name(name.clone());
        }
        let backplane = RedisBackplane::new(&cluster.url, redis)
            .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))?;
        builder = builder.backplane(backplane).cluster_options(options);
    }
    let server = builder.build();
    if server.backplane_status() != BackplaneStatus::None {
        // Up to a few seconds to reach Redis and find the log's head, so that the node is
        // ready when it says it listens; it starts anyway (not ready) if Redis is down.
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while server.backplane_status() != BackplaneStatus::Up
            && tokio::time::Instant::now() < until
        {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        match server.backplane_status() {
            BackplaneStatus::Up => tracing::info!(node = ?server.node_id(), "cluster node ready"),
            _ => tracing::warn!("backplane unreachable: not ready until it answers"),
        }
    }
    let endpoint = Cometd::new(server.clone()).transport_config(settings.transport);
    let probed = server.clone();
    let path = settings.path;
    let mount = path.clone();
    let static_dir = settings.static_dir;
    // The admin API: off without a token; on its own listener when `adminBind` is set.
    let admin = settings.admin.clone();
    let admin_here = admin.token.clone().filter(|_| admin.bind.is_none());
    let app = move || {
        let mut app = App::new()
            .service(endpoint.clone().scope(&mount))
            .configure(bayeux_actix::probes(probed.clone()))
            .configure(bayeux_actix::metrics(probed.clone()));
        if let Some(token) = &admin_here {
            app = app.configure(bayeux_actix::admin(probed.clone(), token.clone()));
        }
        match &static_dir {
            Some(dir) => app.service(actix_files::Files::new("/", dir).index_file("index.html")),
            None => app.route("/", web::get().to(index)),
        }
    };
    // A held connect whose client left is noticed, and its messages kept for the next one
    // (`watch_connections`, on plaintext connections).
    let (running, addrs, scheme) = match tls {
        Some(config) => {
            let http = HttpServer::new(app)
                .disable_signals()
                .shutdown_timeout(5)
                .on_connect(bayeux_actix::watch_connections)
                // Deliveries are small writes that must leave at once: no Nagle delay.
                .tcp_nodelay(true);
            let http = match settings.workers {
                Some(workers) => http.workers(workers),
                None => http,
            };
            let http = http.bind_rustls_0_23(&settings.bind, config)?;
            let addrs = http.addrs();
            (http.run(), addrs, "https")
        }
        None => {
            let mut builder = actix_server::Server::build()
                .disable_signals()
                .shutdown_timeout(5);
            if let Some(workers) = settings.workers {
                builder = builder.workers(workers);
            }
            let (builder, addrs) = bayeux_actix::listener::serve_http1(
                builder,
                &settings.bind,
                app,
                bayeux_actix::watch_connections,
            )?;
            (builder.run(), addrs, "http")
        }
    };
    for addr in addrs {
        // Tests and scripts read this line to learn the port.
        println!("bayeuxd listening on {scheme}://{addr}{path}");
    }
    std::io::stdout().flush()?;

    let admin_server = match (&admin.bind, &admin.token) {
        (Some(bind), Some(token)) => {
            let (admin_of, token) = (server.clone(), token.clone());
            let admin_http = HttpServer::new(move || {
                App::new().configure(bayeux_actix::admin(admin_of.clone(), token.clone()))
            })
            .disable_signals()
            .workers(1)
            .bind(bind)?;
            for addr in admin_http.addrs() {
                println!("bayeuxd admin on http://{addr}/admin");
            }
            std::io::stdout().flush()?;
            Some(admin_http.run())
        }
        _ => None,
    };
    let admin_handle = admin_server.as_ref().map(|s| s.handle());
    if let Some(admin_server) = admin_server {
        actix_web::rt::spawn(admin_server);
    }

    let handle = running.handle();
    let drain = settings.drain;
    let shutdown_grace = settings.shutdown_grace;
    actix_web::rt::spawn(async move {
        if wait_for_signal().await == Signal::Drain {
            // Clients are sent elsewhere (in a cluster: their sessions handed over) over the
            // window; stop once they are all gone or at the deadline, whichever comes first.
            server.drain(drain.window);
            let deadline = tokio::time::Instant::now() + drain.deadline;
            while server.session_count() > 0 && tokio::time::Instant::now() < deadline {
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            tracing::info!(left = server.session_count(), "drained");
        }
        tracing::info!("shutting down: answering held connects");
        server.shutdown().await;
        // Clients between two connects come back within their interval: give them until the
        // grace ends to collect what is queued for them (connects are answered at once now).
        let grace = tokio::time::Instant::now() + shutdown_grace;
        while server.queued_messages() > 0 && tokio::time::Instant::now() < grace {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        // Give released connects a moment to be written before connections close.
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        if let Some(admin) = admin_handle {
            admin.stop(true).await;
        }
        handle.stop(true).await;
    });
    running.await
}

/// What the operator asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// SIGUSR1: drain, then stop.
    Drain,
    /// Ctrl-C or SIGTERM: stop now, answering held connects.
    Stop,
}

async fn wait_for_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
        let mut drain = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            _ = term.recv() => Signal::Stop,
            _ = drain.recv() => Signal::Drain,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain;charset=UTF-8")
        .body("bayeuxd: a CometD-compatible Bayeux server. Point a CometD client at the Bayeux endpoint.\n")
}
