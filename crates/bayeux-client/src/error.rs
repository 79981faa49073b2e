//! The error type of every client operation.

use std::fmt;

use bayeux_message::Message;
use serde_json::Value;

use crate::transport::TransportError;

/// Why an operation of the [`Client`](crate::Client) failed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with `successful: false`.
    Server {
        /// The reply's `error` string (`code:args:text`, e.g. `403::publish_denied`), or empty
        /// when the server sent none.
        error: String,
        /// The whole reply, for fields such as `advice` or `ext`.
        reply: Message,
    },
    /// A remote call reached its service, which answered with a failure: the answer's `data`.
    CallFailed(Value),
    /// The request could not be sent, or its response was lost (connection refused or reset,
    /// HTTP error status, unreadable body, websocket closed).
    Transport(TransportError),
    /// No reply arrived in time.
    Timeout,
    /// The client has no session yet and did not get one in time.
    NotConnected,
    /// The client is disconnected (by [`Client::disconnect`](crate::Client::disconnect), or
    /// because the server advised `reconnect: none`); it sends nothing more.
    Disconnected,
    /// Not a valid channel name for this operation.
    InvalidChannel(String),
    /// An [`Extension`](crate::Extension) dropped the outgoing message, or its reply.
    Dropped,
    /// The handshake was refused and the server advised not to retry; carries the reason.
    HandshakeFailed(String),
}

impl Error {
    /// The server's `error` string, when the server refused the request.
    pub fn server_error(&self) -> Option<&str> {
        match self {
            Self::Server { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Builds [`Error::Server`] from a reply with `successful: false`.
    pub(crate) fn from_reply(reply: Message) -> Self {
        let error = reply
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Self::Server { error, reply }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server { error, .. } => write!(f, "refused by the server: {error}"),
            Self::CallFailed(data) => write!(f, "remote call failed: {data}"),
            Self::Transport(e) => write!(f, "transport failure: {e}"),
            Self::Timeout => f.write_str("no reply in time"),
            Self::NotConnected => f.write_str("no session with the server"),
            Self::Disconnected => f.write_str("the client is disconnected"),
            Self::InvalidChannel(why) => write!(f, "invalid channel: {why}"),
            Self::Dropped => f.write_str("dropped by an extension"),
            Self::HandshakeFailed(why) => write!(f, "handshake failed: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Self::Transport(e)
    }
}

/// True when `reply` says `successful: true`.
pub(crate) fn is_successful(reply: &Message) -> bool {
    reply.get("successful").and_then(Value::as_bool) == Some(true)
}

/// Turns a reply into `Ok(reply)` or [`Error::Server`].
pub(crate) fn check_reply(reply: Message) -> Result<Message, Error> {
    if is_successful(&reply) {
        Ok(reply)
    } else {
        Err(Error::from_reply(reply))
    }
}
