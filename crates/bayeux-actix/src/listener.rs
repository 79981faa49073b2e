//! A plaintext listener served by actix-http's HTTP/1.1-only service (what `bayeuxd` uses).
//!
//! ```no_run
//! # async fn demo(server: bayeux_server::Server) -> std::io::Result<()> {
//! use actix_web::App;
//! let builder = actix_server::Server::build();
//! let app = move || App::new().service(bayeux_actix::scope("/cometd", server.clone()));
//! let (builder, _addrs) = bayeux_actix::listener::serve_http1(
//!     builder,
//!     "127.0.0.1:8080",
//!     app,
//!     bayeux_actix::watch_connections,
//! )?;
//! builder.run().await
//! # }
//! ```
//!
//! actix-web's `HttpServer::bind` serves plaintext with the service that can also speak
//! HTTP/2, whose per-connection state is sized for HTTP/2's handshake and dispatcher even on a
//! connection that never uses them: 1.8 kB more per idle long-polling client, measured
//! (docs/performance.md). Plaintext clients never negotiate HTTP/2 here (no h2c), so this
//! listener builds the same service as `HttpServer` does, from the same public parts, with
//! the HTTP/1.1 dispatcher only. TLS listeners keep actix-web's service, which offers HTTP/2.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};

use actix_http::{body::MessageBody, HttpService, Request, Response};
use actix_server::ServerBuilder;
use actix_service::{map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;

/// Connections waiting to be accepted, as actix-web's default.
const BACKLOG: i32 = 1024;

/// Binds `addr` (address reuse on, actix-web's backlog) and serves `app` on it over HTTP/1.1,
/// with `on_connect` called for each accepted connection.
pub fn serve_http1<F, I, S, B>(
    builder: ServerBuilder,
    addr: &str,
    app: F,
    on_connect: fn(&dyn Any, &mut actix_http::Extensions),
) -> io::Result<(ServerBuilder, Vec<SocketAddr>)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error>,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    let mut builder = builder;
    let mut addrs = Vec::new();
    for addr in std::net::ToSocketAddrs::to_socket_addrs(addr)? {
        let listener = listen(addr)?;
        let local = listener.local_addr()?;
        addrs.push(local);
        let shutdown = builder.graceful_shutdown_signal();
        let app = app.clone();
        builder = builder.listen(format!("bayeuxd-{local}"), listener, move || {
            let shutdown = shutdown.clone();
            let factory = app()
                .into_factory()
                .map_err(|err| err.into().error_response());
            HttpService::build()
                // Idle keep-alive connections close when the server starts stopping.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                // actix-web's defaults for the rest: keep-alive 5 s, request head within 5 s,
                // 1 s for a client to go after a close.
                .client_request_timeout(std::time::Duration::from_secs(5))
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .h1_allow_half_closed(true)
                // Deliveries are small writes that must leave at once: no Nagle delay.
                .tcp_nodelay(true)
                .local_addr(local)
                .on_connect_ext(move |io: &_, data: &mut _| on_connect(io as &dyn Any, data))
                .h1(map_config(factory, move |_| AppConfig::default()))
                .tcp()
        })?;
    }
    Ok((builder, addrs))
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
