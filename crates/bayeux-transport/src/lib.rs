//! Bayeux transports, written against plain bytes and headers so any web framework can host
//! them (the actix-web glue is `bayeux-actix`).
//!
//! # Layout
//! - [`config`]: [`TransportConfig`] and the browser cookie options.
//! - [`long_polling`]: `POST` with a JSON batch, held `/meta/connect`, piggy-backed deliveries.

pub mod config;
pub mod long_polling;

pub use config::{CookieConfig, TransportConfig};
pub use long_polling::{HttpReply, PostRequest};
