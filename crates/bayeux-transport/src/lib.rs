//! Bayeux transports, written against plain bytes, headers and frame streams so any web
//! framework can host them (the actix-web glue is `bayeux-actix`).
//!
//! # Layout
//! - [`config`]: [`TransportConfig`]: cookie, limits, JSONP and websocket options.
//! - [`http`]: what the HTTP transports share (cookie, one batch, waiting for a hold).
//! - [`long_polling`]: `POST` with a JSON batch, held `/meta/connect`, piggy-backed deliveries.
//! - [`callback_polling`]: JSONP `GET`, callback validation, script responses.
//! - [`websocket`]: one task per socket over a `Stream`/`Sink` pair: pushed deliveries.

pub mod callback_polling;
pub mod config;
pub mod http;
pub mod long_polling;
pub mod websocket;

pub use config::{CallbackConfig, CookieConfig, TransportConfig, WebSocketConfig};
pub use http::{HttpOrigin, HttpReply, PeerWatch};
pub use long_polling::PostRequest;
