//! An async (Tokio) client for CometD / Bayeux servers.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), bayeux_client::Error> {
//! let client = bayeux_client::Client::connect("http://127.0.0.1:8080/cometd").await?;
//! let mut news = client.subscribe("/news/**").await?;
//! client.publish("/news/today", json!({"headline": "up"})).await?;
//! while let Some(message) = news.next().await {
//!     println!("{}: {:?}", message.channel().unwrap_or("?"), message.data());
//! }
//! # Ok(()) }
//! ```
//!
//! # What it does
//! - Transports: `websocket`, falling back to `long-polling` when the server refuses the
//!   upgrade or does not list websocket in its handshake reply.
//! - Keeps the session: the `/meta/connect` loop obeys the server's advice (`reconnect`,
//!   `interval`, `timeout`), backs off on failures, handshakes again when told to (or when the
//!   session must have expired) and then subscribes again to everything it was subscribed to.
//! - TLS: `https://` URLs, and `wss://` for the websocket, through rustls with aws-lc-rs's
//!   cryptography. The server's certificate is checked against Mozilla's root certificates
//!   (`webpki-roots`) and its name against the URL's host (a DNS name or an IP address);
//!   [`ClientBuilder::add_root_certificate`] trusts one more (a private CA, a self-signed
//!   certificate) and [`ClientBuilder::tls_config`] replaces the whole configuration (roots,
//!   client certificates). ALPN offers `http/1.1` only. A failed TLS handshake is
//!   [`TransportError::Tls`], retried with backoff like any connection failure.
//! - Keeps the server's cookies (`BAYEUX_BROWSER`) and sends them on every request and on the
//!   websocket upgrade.
//! - [`Subscription`]s are [`Stream`](futures_util::Stream)s of messages; patterns (`/a/*`,
//!   `/a/**`) receive every matching delivery.
//! - [`Client::publish`], [`Client::batch`] (several messages in one request),
//!   [`Client::remote_call`] (a service's answer matched by message id), [`Client::disconnect`].
//! - The `ack` extension ([`AckExtension`], on by default), built on the [`Extension`] hook
//!   that anyone can use to change or drop messages.
//!
//! # Layout
//! - `client.rs`: [`Client`], [`ClientBuilder`], and the request/reply matching.
//! - `session.rs`: the handshake/connect loop; `advice.rs`: its decisions, as pure functions.
//! - `transport/`: long-polling, websocket, and the connector under both.
//! - `subscription.rs`, `batch.rs`, `extension.rs`, `cookie.rs`, `error.rs`.
//!
//! # Why hyper
//! HTTP goes through hyper 1 and hyper-util's pooled client rather than a hand-written HTTP/1.1
//! client: servers and proxies answer with chunked bodies, keep-alive and closed connections in
//! all their variants, and the held `/meta/connect` needs a second connection for everything
//! else; the pool gets all of that right. Websockets use tokio-tungstenite over the same
//! connector, so TLS is added in one place (`transport/connector.rs`, with tokio-rustls).

mod advice;
mod batch;
mod client;
mod cookie;
mod error;
mod extension;
mod session;
mod subscription;
mod transport;

pub use advice::Backoff;
pub use batch::Batch;
pub use bayeux_message::Message;
pub use client::{Client, ClientBuilder, Status};
pub use cookie::CookieJar;
pub use error::Error;
pub use extension::{AckExtension, Extension};
pub use subscription::Subscription;
pub use transport::{TransportError, TransportKind};

/// The rustls version used for TLS, for building a [`ClientBuilder::tls_config`].
pub use rustls;
