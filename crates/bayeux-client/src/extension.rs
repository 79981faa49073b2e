//! Client extensions: hooks that see (and may change or drop) every message, and the `ack`
//! extension built on them.

use std::sync::Mutex;

use bayeux_message::Message;
use serde_json::{Map, Value};

/// A hook on every message the client sends or receives.
///
/// Extensions run in the order they were added, outgoing and incoming alike; a message that one
/// of them drops is not seen by the next ones. Outgoing messages already carry their `id` and
/// `clientId`. Incoming messages are seen before the client acts on them (replies, advice,
/// deliveries).
pub trait Extension: Send + Sync + 'static {
    /// Called on each message about to be sent; return `false` to drop it (the operation that
    /// sent it fails with [`Error::Dropped`](crate::Error::Dropped)).
    fn outgoing(&self, message: &mut Message) -> bool {
        let _ = message;
        true
    }

    /// Called on each message received; return `false` to drop it.
    fn incoming(&self, message: &mut Message) -> bool {
        let _ = message;
        true
    }
}

/// The `ack` extension: the server keeps every delivery until the client acknowledges it, so
/// messages in a connect response lost on the way are sent again on the next connect.
///
/// The handshake asks for it with `ext.ack: true`; if the server agrees, every `/meta/connect`
/// carries the number of the last batch received (`ext.ack: N`, from the previous connect
/// reply's `ext.ack`). With acks, servers deliver only in connect replies, in order.
///
/// [`ClientBuilder`](crate::ClientBuilder) installs it unless told not to
/// ([`ClientBuilder::ack`](crate::ClientBuilder::ack)).
#[derive(Debug, Default)]
pub struct AckExtension {
    state: Mutex<AckState>,
}

impl AckExtension {
    /// A fresh extension; it turns itself on at each successful handshake the server agrees to.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the server agreed to acknowledgements for the current session.
    pub fn is_active(&self) -> bool {
        self.state.lock().expect("ack state lock").active
    }

    /// The number of the last batch received, which the next connect acknowledges.
    pub fn last_batch(&self) -> u64 {
        self.state.lock().expect("ack state lock").batch
    }
}

impl Extension for AckExtension {
    fn outgoing(&self, message: &mut Message) -> bool {
        self.state.lock().expect("ack state lock").outgoing(message);
        true
    }

    fn incoming(&self, message: &mut Message) -> bool {
        self.state.lock().expect("ack state lock").incoming(message);
        true
    }
}

/// The bookkeeping of [`AckExtension`], separate from the lock for testing.
#[derive(Debug, Default, PartialEq, Eq)]
struct AckState {
    /// The server agreed for the current session.
    active: bool,
    /// Last batch number received in a connect reply; 0 before any.
    batch: u64,
}

impl AckState {
    fn outgoing(&mut self, message: &mut Message) {
        match message.channel() {
            Some("/meta/handshake") => {
                // A new session starts its batches again.
                *self = Self::default();
                ext_mut(message).insert("ack".into(), Value::Bool(true));
            }
            Some("/meta/connect") if self.active => {
                ext_mut(message).insert("ack".into(), self.batch.into());
            }
            _ => {}
        }
    }

    fn incoming(&mut self, message: &Message) {
        let ack = message.ext().and_then(|ext| ext.get("ack"));
        match message.channel() {
            Some("/meta/handshake") => {
                let successful = crate::error::is_successful(message);
                // Two forms: `true`, or `{"enabled": true, "batch": N}` from servers that may
                // deliver during the handshake.
                let (active, batch) = match ack {
                    Some(Value::Bool(true)) => (true, 0),
                    Some(Value::Object(obj)) => (
                        obj.get("enabled") == Some(&Value::Bool(true)),
                        obj.get("batch").and_then(Value::as_u64).unwrap_or(0),
                    ),
                    _ => (false, 0),
                };
                self.active = successful && active;
                self.batch = if self.active { batch } else { 0 };
            }
            Some("/meta/connect") if self.active && crate::error::is_successful(message) => {
                if let Some(n) = ack.and_then(Value::as_u64) {
                    self.batch = n;
                }
            }
            _ => {}
        }
    }
}

/// The message's `ext` object, created (or replacing a non-object) when needed.
pub(crate) fn ext_mut(message: &mut Message) -> &mut Map<String, Value> {
    let map = message.as_map_mut();
    let ext = map
        .entry("ext")
        .or_insert_with(|| Value::Object(Map::new()));
    if !ext.is_object() {
        *ext = Value::Object(Map::new());
    }
    ext.as_object_mut().expect("ext was just made an object")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: Value) -> Message {
        match value {
            Value::Object(map) => Message::from_map(map),
            _ => panic!("messages are objects"),
        }
    }

    fn value(message: &Message) -> Value {
        Value::Object(message.as_map().clone())
    }

    #[test]
    fn acks_the_last_batch_on_every_connect() {
        let ack = AckExtension::new();
        let mut handshake = message(json!({"channel": "/meta/handshake", "id": "1"}));
        assert!(ack.outgoing(&mut handshake));
        assert_eq!(
            value(&handshake),
            json!({"channel": "/meta/handshake", "id": "1", "ext": {"ack": true}})
        );
        ack.incoming(&mut message(
            json!({"channel": "/meta/handshake", "successful": true, "ext": {"ack": true}}),
        ));
        assert!(ack.is_active());

        let mut connect = message(json!({"channel": "/meta/connect", "id": "2"}));
        ack.outgoing(&mut connect);
        assert_eq!(
            value(&connect),
            json!({"channel": "/meta/connect", "id": "2", "ext": {"ack": 0}})
        );
        ack.incoming(&mut message(
            json!({"channel": "/meta/connect", "successful": true, "ext": {"ack": 1}}),
        ));
        // A failed connect reply does not move the batch, nor does a delivery's ext.
        ack.incoming(&mut message(
            json!({"channel": "/meta/connect", "successful": false, "ext": {"ack": 7}}),
        ));
        ack.incoming(&mut message(
            json!({"channel": "/chat", "data": 1, "ext": {"ack": 9}}),
        ));
        assert_eq!(ack.last_batch(), 1);
        let mut connect = message(json!({"channel": "/meta/connect", "id": "3", "ext": {"x": 1}}));
        ack.outgoing(&mut connect);
        assert_eq!(
            value(&connect),
            json!({"channel": "/meta/connect", "id": "3", "ext": {"x": 1, "ack": 1}})
        );
        // Other messages are left alone.
        let mut publish = message(json!({"channel": "/chat", "data": 1}));
        ack.outgoing(&mut publish);
        assert_eq!(value(&publish), json!({"channel": "/chat", "data": 1}));
    }

    #[test]
    fn a_new_handshake_starts_again_and_servers_may_refuse() {
        let mut state = AckState {
            active: true,
            batch: 41,
        };
        let mut handshake = message(json!({"channel": "/meta/handshake"}));
        state.outgoing(&mut handshake);
        assert_eq!(state, AckState::default());
        // No ext.ack in the reply: the server does not do acks; connects carry none.
        state.incoming(&message(
            json!({"channel": "/meta/handshake", "successful": true}),
        ));
        assert!(!state.active);
        let mut connect = message(json!({"channel": "/meta/connect"}));
        state.outgoing(&mut connect);
        assert_eq!(value(&connect), json!({"channel": "/meta/connect"}));
        // The object form, with a starting batch.
        state.incoming(&message(
            json!({"channel": "/meta/handshake", "successful": true,
            "ext": {"ack": {"enabled": true, "batch": 3}}}),
        ));
        assert_eq!(
            state,
            AckState {
                active: true,
                batch: 3
            }
        );
        // ext.ack of a failed handshake does not count.
        state.incoming(&message(
            json!({"channel": "/meta/handshake", "successful": false, "ext": {"ack": true}}),
        ));
        assert_eq!(state, AckState::default());
    }
}
