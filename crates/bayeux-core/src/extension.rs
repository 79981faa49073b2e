//! Extensions: hooks that see every message in and out, and may change or delete it.
//!
//! Applications register them on the server; the built-in `ack` ([`crate::ack`]) is one, and the
//! driver crate adds `timesync` and `timestamp`. Incoming hooks run in registration order,
//! outgoing hooks in reverse order, as in Java CometD.

use bayeux_message::{Message, Reply};

use crate::session::Session;

/// Hooks on the messages a server receives and sends. Every method has a do-nothing default.
///
/// Hooks run on the request path with no lock held: keep them short and never block.
pub trait Extension: Send + Sync {
    /// Sees each message a client sends, after field validation and before it is handled.
    /// `session` is the session named by its `clientId`, if any. Returning false deletes the
    /// message: the client gets `404::message_deleted`.
    fn incoming(&self, _session: Option<&Session>, _message: &mut Message) -> bool {
        true
    }

    /// Sees each reply before it is encoded. For a handshake, `session` is the new session.
    /// The request of a connect that was held is given as `channel`, `clientId`, `id` and
    /// `ext` only (what is kept of it while it waits).
    fn outgoing_reply(&self, _session: Option<&Session>, _request: &Message, _reply: &mut Reply) {}

    /// Sees each message published to subscribers, or delivered to one session, once before
    /// it is encoded for all receivers. Returning false drops it.
    fn outgoing(&self, _message: &mut Message) -> bool {
        true
    }
}
