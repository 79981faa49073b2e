//! Hooks through which the application watches sessions come and go.

use bayeux_message::ClientId;

/// Why a session was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemovalReason {
    /// The client sent `/meta/disconnect`, or the application disconnected it.
    Disconnect,
    /// The client stopped sending `/meta/connect` for longer than `interval + maxInterval`.
    Timeout,
}

/// Called synchronously by the engine; keep it short and never block.
pub trait SessionListener: Send + Sync {
    /// A handshake created a session.
    fn session_added(&self, _client_id: &ClientId) {}
    /// A session was removed, for `reason`.
    fn session_removed(&self, _client_id: &ClientId, _reason: RemovalReason) {}
}
