//! Hooks through which the application watches sessions come and go, and subscribe.

use bayeux_message::{ChannelName, ClientId};

/// Why a session was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemovalReason {
    /// The client sent `/meta/disconnect`, or the application disconnected it.
    Disconnect,
    /// The server is draining and sent the client to handshake elsewhere.
    Drained,
    /// Its queue overflowed with `QueueFullPolicy::Disconnect`.
    QueueFull,
    /// The client stopped sending `/meta/connect` for longer than `interval + maxInterval`.
    Timeout,
}

/// Called synchronously by the engine; keep it short and never block.
pub trait SessionListener: Send + Sync {
    /// A handshake created a session.
    fn session_added(&self, _client_id: &ClientId) {}
    /// A session was removed, for `reason`.
    fn session_removed(&self, _client_id: &ClientId, _reason: RemovalReason) {}
    /// A session subscribed to a channel or pattern (not called for a repeated subscribe).
    fn subscribed(&self, _client_id: &ClientId, _channel: &ChannelName) {}
    /// A session unsubscribed from a channel or pattern (not called on session removal).
    fn unsubscribed(&self, _client_id: &ClientId, _channel: &ChannelName) {}
}
