//! Mounts a Bayeux (CometD) server in an actix-web application.
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use bayeux_server::Server;
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let server = Server::builder().build();
//!     HttpServer::new(move || App::new().service(bayeux_actix::scope("/cometd", server.clone())))
//!         // Deliveries are small writes: without TCP_NODELAY, Nagle delays them.
//!         .tcp_nodelay(true)
//!         .bind(("127.0.0.1", 8080))?
//!         .run()
//!         .await
//! }
//! ```
//!
//! Every path under the mount point is the same endpoint (`/cometd`, `/cometd/`,
//! `/cometd/connect`, ...): the CometD client appends the message type to the URL, and the server
//! routes by each message's `channel` instead.
//!
//! # Layout
//! - this file: [`Cometd`] builds the [`Scope`]; the handlers translate between actix-web and
//!   `bayeux-transport`; probes and metrics.
//! - `admin`: the admin API.
//! - `peer`: [`watch_connections`], which lets a held connect notice its client left.
//! - `request`: the cookie, scheme and body of a request, read without actix's per-request
//!   caches and buffers.
//! - [`listener`]: a plaintext listener that speaks HTTP/1.1 only, lighter per idle client.

mod admin;
pub mod listener;
mod peer;
mod request;

use std::sync::Arc;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, Scope};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bayeux_server::{HttpInfo, Server, TransportKind};
use bayeux_transport::callback_polling::{self, GetRequest};
use bayeux_transport::http::Held;
use bayeux_transport::long_polling::{self, finish_post, PostBegun, PostRequest};
use bayeux_transport::websocket::{self, Inbound, Outbound};
use bayeux_transport::{HttpOrigin, HttpReply, TransportConfig};

use futures::StreamExt;
pub use peer::watch_connections;

pub use admin::admin;

/// A Bayeux endpoint ready to mount: the server plus the transport options.
#[derive(Clone, Debug)]
pub struct Cometd {
    server: Server,
    config: Arc<TransportConfig>,
}

/// The endpoint at `path` with default transport options: `App::new().service(scope(...))`.
pub fn scope(path: &str, server: Server) -> Scope {
    Cometd::new(server).scope(path)
}

impl Cometd {
    /// An endpoint for `server` with default transport options.
    pub fn new(server: Server) -> Self {
        Self {
            server,
            config: Arc::new(TransportConfig::default()),
        }
    }

    /// Sets the transport options (cookie, `maxMessageSize`, websocket, JSONP).
    pub fn transport_config(mut self, config: TransportConfig) -> Self {
        self.config = Arc::new(config);
        self
    }

    /// The actix-web scope serving the endpoint at `path` and every path below it.
    pub fn scope(self, path: &str) -> Scope {
        web::scope(path)
            .app_data(web::Data::new(self))
            // Every path of the scope, as its default service: a pattern such as
            // `/{tail:.*}` would cost a regular expression match per request.
            .default_service(web::to(by_method))
    }

    fn allows(&self, transport: TransportKind) -> bool {
        self.server
            .engine()
            .config()
            .transports
            .contains(&transport)
    }
}

fn origin<'a>(
    req: &'a HttpRequest,
    config: &TransportConfig,
    http: &'a dyn Fn() -> Arc<HttpInfo>,
) -> HttpOrigin<'a> {
    HttpOrigin {
        browser_cookie: request::cookie(req, &config.cookie.name),
        secure: request::is_https(req),
        multiplexed: req.version() >= actix_web::http::Version::HTTP_2,
        http: Some(http),
        peer: req
            .conn_data::<peer::PeerSocket>()
            .map(|socket| socket as &dyn bayeux_transport::PeerWatch),
    }
}

/// Headers and peer address, for the application's security policy.
fn http_info(req: &HttpRequest) -> Arc<HttpInfo> {
    let headers = req
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    Arc::new(HttpInfo {
        headers,
        remote_addr: req.peer_addr(),
    })
}

/// Every request to the endpoint, by method: `POST` long-polling, `GET` websocket or
/// callback-polling, `OPTIONS` a CORS preflight, anything else no transport.
async fn by_method(
    req: HttpRequest,
    payload: web::Payload,
    endpoint: web::Data<Cometd>,
) -> HttpResponse {
    match *req.method() {
        // What comes before a hold is boxed apart, and ends before the wait: a held long-poll
        // keeps only what waiting needs (this future is what actix keeps per held request).
        Method::POST => {
            let held = match Box::pin(begin_post(&req, payload, &endpoint)).await {
                LongPoll::Answered(response) => return response,
                LongPoll::Held(held) => held,
            };
            let peer = req
                .conn_data::<peer::PeerSocket>()
                .map(|socket| socket as &dyn bayeux_transport::PeerWatch);
            let reply = finish_post(&endpoint.server, &endpoint.config, held, peer).await;
            with_cors(respond(reply), &req, &endpoint.config)
        }
        // Boxed too: a held long-poll's wait, not the other transports, sets this future's size.
        Method::GET => Box::pin(get(req, payload, endpoint)).await,
        Method::OPTIONS => options(req, endpoint).await,
        _ => unknown_transport().await,
    }
}

/// A long-polling request, as far as it goes without waiting.
enum LongPoll {
    /// Its response.
    Answered(HttpResponse),
    /// Its `/meta/connect` is held.
    Held(Held),
}

/// `long-polling`: reads the body (at most `maxMessageSize`, answered as actix-web answers a
/// larger one) and runs its batch, up to a held connect.
async fn begin_post(req: &HttpRequest, payload: web::Payload, endpoint: &Cometd) -> LongPoll {
    let limit = endpoint.config.max_message_size;
    let body = match request::body(req, payload.into_inner(), limit).await {
        Ok(body) => body,
        Err(error) => return LongPoll::Answered(actix_web::Error::from(error).error_response()),
    };
    if !endpoint.allows(TransportKind::LongPolling) {
        return LongPoll::Answered(respond(HttpReply::unknown_transport()));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let http = || http_info(req);
    let post = PostRequest {
        content_type,
        origin: origin(req, &endpoint.config, &http),
        body: &body,
    };
    match long_polling::begin_post(&endpoint.server, &endpoint.config, post).await {
        PostBegun::Reply(reply) => {
            LongPoll::Answered(with_cors(respond(reply), req, &endpoint.config))
        }
        PostBegun::Held(held) => LongPoll::Held(held),
    }
}

/// `websocket` when the request asks for an upgrade, else `callback-polling` when it names a
/// valid callback; anything else is no transport.
async fn get(req: HttpRequest, payload: web::Payload, endpoint: web::Data<Cometd>) -> HttpResponse {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return upgrade_websocket(&req, payload, endpoint.into_inner());
    }
    let Some(callback) = callback_polling::callback_name(req.query_string(), &endpoint.config)
    else {
        // Never echo a rejected callback: the body must not be a script anyone controls.
        return respond(HttpReply::unknown_transport());
    };
    if !endpoint.allows(TransportKind::CallbackPolling) {
        return respond(HttpReply::unknown_transport());
    }
    let http = || http_info(&req);
    let get = GetRequest {
        query: req.query_string(),
        origin: origin(&req, &endpoint.config, &http),
    };
    let reply =
        callback_polling::handle_get(&endpoint.server, &endpoint.config, &callback, get).await;
    with_cors(respond(reply), &req, &endpoint.config)
}

fn upgrade_websocket(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: Arc<Cometd>,
) -> HttpResponse {
    if !endpoint.allows(TransportKind::WebSocket) {
        return respond(HttpReply::unknown_transport());
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !endpoint.config.websocket.origin_allowed(origin) {
        return respond(HttpReply::error(403, "websocket origin not allowed"));
    }
    let (response, session, stream) = match actix_ws::handle(req, payload) {
        Ok(parts) => parts,
        Err(err) => return err.error_response(),
    };
    // A websocket sees its client go by itself: the watch's descriptor is not needed.
    if let Some(watch) = req.conn_data::<peer::PeerSocket>() {
        watch.close();
    }
    // Kept for the socket's life, for the policy's handshake checks: not copied without one.
    let http = endpoint
        .server
        .engine()
        .has_security_policy()
        .then(|| http_info(req));
    let max = endpoint.config.max_message_size;
    let inbound = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max)
        .filter_map(|frame| {
            std::future::ready(match frame {
                Ok(AggregatedMessage::Text(text)) => Some(Inbound::Text(text.to_string())),
                Ok(AggregatedMessage::Binary(_)) => Some(Inbound::Binary),
                Ok(AggregatedMessage::Ping(payload)) => Some(Inbound::Ping(payload.to_vec())),
                Ok(AggregatedMessage::Pong(_)) => None,
                Ok(AggregatedMessage::Close(_)) => Some(Inbound::Close),
                Err(ProtocolError::Overflow) => Some(Inbound::Overflow),
                // actix-ws reports a fragmented message grown past the limit as an I/O error
                // with this text; it is a message too big all the same (close 1009).
                Err(ProtocolError::Io(e))
                    if e.to_string().contains("maximum continuation size") =>
                {
                    Some(Inbound::Overflow)
                }
                Err(_) => Some(Inbound::Error),
            })
        });
    let outbound = futures::sink::unfold(session, |mut session, frame: Outbound| async move {
        match frame {
            Outbound::Text(text) => session.text(text).await?,
            Outbound::Pong(payload) => session.pong(&payload).await?,
            Outbound::Close(code, description) => {
                let reason = CloseReason {
                    code: CloseCode::from(code),
                    description: Some(truncate(description, 120)),
                };
                session.clone().close(Some(reason)).await?;
            }
        }
        Ok::<_, actix_ws::Closed>(session)
    });
    // Both ends are boxed before the task takes them: a value moved from the task's captures
    // into the future it awaits keeps its room in both, for the socket's whole life (print-
    // type-sizes: the task was 1 792 bytes, with the 384-byte sink and the 192-byte stream
    // each held twice).
    let inbound = Box::pin(inbound);
    let outbound = Box::pin(outbound);
    actix_web::rt::spawn(async move {
        websocket::serve(
            endpoint.server.clone(),
            &endpoint.config,
            http,
            inbound,
            outbound,
        )
        .await;
    });
    response
}

/// Liveness and readiness probes for load balancers and orchestrators:
/// `GET /healthz` answers 200 while the process serves; `GET /readyz` answers 200 while the
/// server takes new clients and 503 once it is draining or shutting down, or (one node of a
/// cluster) while its backplane is unreachable.
///
/// ```no_run
/// # use actix_web::App;
/// # let server = bayeux_server::Server::builder().build();
/// App::new().configure(bayeux_actix::probes(server));
/// ```
pub fn probes(server: Server) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
            )
            .route(
                "/readyz",
                web::get().to(move || {
                    let answer = if server.is_ready() {
                        HttpResponse::Ok().body("ready\n")
                    } else if server.is_shutting_down() {
                        HttpResponse::ServiceUnavailable().body("shutting down\n")
                    } else if server.engine().is_draining() {
                        HttpResponse::ServiceUnavailable().body("draining\n")
                    } else {
                        HttpResponse::ServiceUnavailable().body("backplane unavailable\n")
                    };
                    async move { answer }
                }),
            );
    }
}

/// The Prometheus endpoint: `GET /metrics` answers [`Server::render_metrics`] in the
/// OpenMetrics text format.
///
/// ```no_run
/// # use actix_web::App;
/// # let server = bayeux_server::Server::builder().build();
/// App::new().configure(bayeux_actix::metrics(server));
/// ```
pub fn metrics(server: Server) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config.route(
            "/metrics",
            web::get().to(move || {
                let text = server.render_metrics();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                        .body(text)
                }
            }),
        );
    }
}

/// A close reason must fit a control frame (125 bytes with the code).
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// CORS preflight: the CometD client's JSON `POST`s are preflighted cross-origin.
async fn options(req: HttpRequest, endpoint: web::Data<Cometd>) -> HttpResponse {
    let mut response = HttpResponse::Ok()
        .insert_header((header::ALLOW, "GET, POST, OPTIONS"))
        .finish();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if endpoint.config.cors_origin(origin).is_some() {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        // The client sends `Content-Type: application/json`, plus whatever headers the
        // application configured: allow what the preflight asks for.
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or(header::HeaderValue::from_static("Content-Type"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            header::HeaderValue::from_static("86400"),
        );
    }
    with_cors(response, &req, &endpoint.config)
}

/// Adds the CORS headers for an allowed cross-origin caller (the browser cookie travels with
/// its requests, so the origin is echoed and credentials allowed; never `*`).
fn with_cors(
    mut response: HttpResponse,
    req: &HttpRequest,
    config: &TransportConfig,
) -> HttpResponse {
    // Off by default: then no response looks the `Origin` header up.
    if config.cors_allowed_origins.is_empty() {
        return response;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if let Some(origin) = config.cors_origin(origin) {
        if let Ok(value) = header::HeaderValue::from_str(origin) {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                header::HeaderValue::from_static("true"),
            );
            headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
        }
    }
    response
}

/// Any method no transport accepts, as Java CometD answers it.
async fn unknown_transport() -> HttpResponse {
    respond(HttpReply::unknown_transport())
}

/// The transports' own content types as static header values: a `&str` would be copied into
/// a new one on every response. Anything else is checked (and replaced if it is no header).
fn content_type(value: &'static str) -> header::HeaderValue {
    use bayeux_transport::{callback_polling::JAVASCRIPT_UTF8, http::TEXT_UTF8};
    match value {
        long_polling::JSON_UTF8 | TEXT_UTF8 | JAVASCRIPT_UTF8 => {
            header::HeaderValue::from_static(value)
        }
        other => header::HeaderValue::from_str(other)
            .unwrap_or(header::HeaderValue::from_static("application/octet-stream")),
    }
}

fn respond(reply: HttpReply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponseBuilder::new(status);
    response.insert_header((header::CONTENT_TYPE, content_type(reply.content_type)));
    if let Some(cookie) = reply.set_cookie {
        response.insert_header((header::SET_COOKIE, cookie));
    }
    response.body(reply.body)
}

#[cfg(test)]
mod tests {
    use actix_web::{test, App};
    use serde_json::{json, Value};

    use super::*;

    #[actix_rt::test]
    async fn every_path_under_the_mount_point_is_the_endpoint() {
        let server = Server::builder().build();
        let app = test::init_service(App::new().service(scope("/cometd", server.clone()))).await;
        for path in [
            "/cometd",
            "/cometd/",
            "/cometd/handshake",
            "/cometd/connect",
            "/cometd/x/y",
        ] {
            let req = test::TestRequest::post()
                .uri(path)
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .set_payload(r#"[{"channel":"/meta/handshake","id":"1","version":"1.0"}]"#)
                .to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let body: Value = test::read_body_json(resp).await;
            assert_eq!(body[0]["successful"], json!(true), "{path}");
        }
        assert_eq!(server.session_count(), 5);
    }

    #[actix_rt::test]
    async fn content_types_are_the_transports_own_or_checked() {
        for value in [
            long_polling::JSON_UTF8,
            bayeux_transport::http::TEXT_UTF8,
            callback_polling::JAVASCRIPT_UTF8,
            "application/x-custom",
        ] {
            assert_eq!(content_type(value), value);
        }
        assert_eq!(content_type("bad\nvalue"), "application/octet-stream");
    }

    #[actix_rt::test]
    async fn other_methods_are_unknown_transports() {
        let server = Server::builder().build();
        let app = test::init_service(App::new().service(scope("/cometd", server))).await;
        for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
            let req = test::TestRequest::default()
                .method(method.clone())
                .uri("/cometd")
                .to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{method}");
        }
        let req = test::TestRequest::default()
            .method(Method::OPTIONS)
            .uri("/cometd/handshake")
            .to_request();
        assert_eq!(test::call_service(&app, req).await.status(), StatusCode::OK);
    }
}
