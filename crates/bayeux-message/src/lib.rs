//! The Bayeux wire model, shared by every other crate of the server.
//!
//! Plain data and pure functions: no I/O, no clock, no state.
//!
//! # Layout
//! - [`message`]: incoming [`Message`]s (JSON objects, unknown fields kept) and outgoing
//!   [`EncodedMessage`]s (JSON text encoded once, shared by every receiver).
//! - [`reply`]: typed [`Reply`], [`Advice`], and [`Refusal`] with CometD's exact error strings.
//! - [`channel`]: [`ChannelName`] validation, kinds and wildcard matching.
//! - [`batch`]: parsing a request body into messages.
//! - [`binary`]: Z85 payloads of the `binary` extension.
//! - [`surrogates`]: JSON as JavaScript writes it, lone surrogates included.
//! - [`client_id`]: the [`ClientId`] newtype.

pub mod batch;
pub mod binary;
pub mod channel;
pub mod client_id;
pub mod message;
pub mod reply;
pub mod surrogates;

pub use batch::{messages_from_value, parse_batch, BatchError};
pub use binary::{z85_decode, z85_encode, BinaryData, Z85Error};
pub use channel::{ChannelKind, ChannelName, InvalidChannel};
pub use client_id::ClientId;
pub use message::{encode_batch, EncodedMessage, Message};
pub use reply::{Advice, Reconnect, Refusal, Reply};
pub use surrogates::parse_json;

/// The protocol version this server speaks, sent in handshake replies.
pub const BAYEUX_VERSION: &str = "1.0";

/// True when `id` is a valid message id: a non-empty ASCII alphanumeric string, or an integer.
///
/// Java CometD accepts alphanumerics only; integers are accepted too because some clients send
/// numeric ids, and the reply echoes the same JSON value either way.
pub fn is_valid_message_id(id: &serde_json::Value) -> bool {
    match id {
        serde_json::Value::String(s) => {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        serde_json::Value::Number(n) => n.is_u64() || n.is_i64(),
        _ => false,
    }
}
