//! Incoming messages as received, and outgoing messages as encoded once and shared.
//!
//! An incoming [`Message`] keeps the JSON object it came from, so unknown top-level fields,
//! `ext` and `data` pass through untouched. Typed accessors read the protocol fields; a field
//! of the wrong JSON type reads as absent, and the protocol layer turns that into a Bayeux error.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

/// One Bayeux message: a JSON object.
#[derive(Clone, Default, PartialEq)]
pub struct Message(Map<String, Value>);

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self(Map::new())
    }

    /// Wraps a JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// The underlying JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The underlying JSON object, mutable.
    pub fn as_map_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.0
    }

    /// Unwraps the JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// A field of any type.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets a field, returning `self` for chaining.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// `channel`, when it is a string.
    pub fn channel(&self) -> Option<&str> {
        self.0.get("channel").and_then(Value::as_str)
    }

    /// `id` as sent: replies echo the same JSON value.
    pub fn id(&self) -> Option<&Value> {
        self.0.get("id")
    }

    /// `clientId`, when it is a string.
    pub fn client_id(&self) -> Option<&str> {
        self.0.get("clientId").and_then(Value::as_str)
    }

    /// `data`, of any type.
    pub fn data(&self) -> Option<&Value> {
        self.0.get("data")
    }

    /// `ext`, when it is an object.
    pub fn ext(&self) -> Option<&Map<String, Value>> {
        self.0.get("ext").and_then(Value::as_object)
    }

    /// `advice`, when it is an object.
    pub fn advice(&self) -> Option<&Map<String, Value>> {
        self.0.get("advice").and_then(Value::as_object)
    }

    /// `subscription` as sent (a string or an array of strings when well formed).
    pub fn subscription(&self) -> Option<&Value> {
        self.0.get("subscription")
    }

    /// An integer field of `advice` (`timeout`, `interval`), when present and a non-negative
    /// number.
    pub fn advice_millis(&self, key: &str) -> Option<u64> {
        let value = self.advice()?.get(key)?;
        value
            .as_u64()
            .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    }

    /// Encodes this message to shared JSON text.
    pub fn encode(&self) -> EncodedMessage {
        EncodedMessage::from_value(&self.0)
    }
}

impl From<Map<String, Value>> for Message {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Message({})", Value::Object(self.0.clone()))
    }
}

/// The largest encoding buffer a thread keeps between messages; a larger message's buffer is
/// freed after use rather than held for ever.
const SCRATCH_KEPT: usize = 64 * 1024;

/// A message already encoded as JSON object text, cheap to clone and share.
///
/// A broadcast is encoded once and the same bytes sit in every subscriber's queue; responses
/// are assembled by joining encoded messages, with no per-subscriber JSON work.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedMessage(Arc<str>);

impl EncodedMessage {
    /// Encodes any serialisable JSON object.
    ///
    /// # Panics
    /// Never for the types this crate builds: serde_json only fails on maps with non-string keys
    /// or on failing `Serialize` impls.
    pub fn from_value<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        thread_local! {
            // Every broadcast and every reply is encoded here: writing into a buffer kept
            // per thread, then copying once into the shared text, costs one allocation per
            // message, where a fresh buffer would cost two or more (grown by doubling, then
            // copied).
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let shared = SCRATCH.try_with(|scratch| {
            let mut buf = scratch.try_borrow_mut().ok()?;
            buf.clear();
            let encoded = Self::from_buffer(&mut buf, value);
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            Some(encoded)
        });
        // Without the buffer (a `Serialize` impl that encodes a message itself, or a thread
        // tearing down its locals), a fresh one does the same.
        shared
            .ok()
            .flatten()
            .unwrap_or_else(|| Self::from_buffer(&mut Vec::new(), value))
    }

    fn from_buffer<T: serde::Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Self {
        serde_json::to_writer(&mut *buf, value).expect("JSON objects always serialise");
        let text = std::str::from_utf8(buf).expect("serde_json writes UTF-8");
        // Lone surrogates go out as the escapes the client sent.
        Self(Arc::from(crate::surrogates::to_external(text)))
    }

    /// Wraps text that the caller guarantees to be one JSON object.
    pub fn from_json_text(text: impl Into<Arc<str>>) -> Self {
        Self(text.into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Decodes the text back into a message (for tests and server-side consumers).
    pub fn decode(&self) -> Message {
        match crate::surrogates::parse_json(self.0.as_bytes()) {
            Ok(Value::Object(map)) => Message(map),
            _ => unreachable!("EncodedMessage always holds one JSON object"),
        }
    }
}

impl fmt::Debug for EncodedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Joins encoded messages into one JSON array, the envelope of every transport.
pub fn encode_batch(messages: &[EncodedMessage]) -> String {
    let len = messages.iter().map(|m| m.0.len() + 1).sum::<usize>() + 2;
    let mut out = String::with_capacity(len);
    out.push('[');
    for (i, msg) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&msg.0);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: Value) -> Message {
        match value {
            Value::Object(map) => Message(map),
            _ => panic!("test messages are objects"),
        }
    }

    #[test]
    fn encodings_through_the_shared_buffer_are_exact_whatever_came_before() {
        // A message larger than the buffer a thread keeps, then small ones: each text is
        // its own, nothing of the previous one is left in it.
        let big = "x".repeat(SCRATCH_KEPT + 1);
        let first = message(json!({"channel": "/a", "data": big})).encode();
        assert_eq!(
            first.as_str(),
            format!(r#"{{"channel":"/a","data":"{big}"}}"#)
        );
        let second = message(json!({"channel": "/b", "data": 1})).encode();
        assert_eq!(second.as_str(), r#"{"channel":"/b","data":1}"#);
        let third = message(json!({"channel": "/c"})).encode();
        assert_eq!(third.as_str(), r#"{"channel":"/c"}"#);
        assert_eq!(second.as_str(), r#"{"channel":"/b","data":1}"#);
    }

    #[test]
    fn accessors_read_well_typed_fields_only() {
        let msg =
            message(json!({"channel": "/a", "id": "7", "clientId": 5, "advice": {"timeout": 0}}));
        assert_eq!(msg.channel(), Some("/a"));
        assert_eq!(msg.id(), Some(&json!("7")));
        assert_eq!(msg.client_id(), None);
        assert_eq!(msg.advice_millis("timeout"), Some(0));
        assert_eq!(msg.advice_millis("interval"), None);
    }

    #[test]
    fn encode_batch_joins_objects() {
        let a = message(json!({"channel": "/a"})).encode();
        let b = message(json!({"channel": "/b", "data": "é"})).encode();
        let text = encode_batch(&[a, b]);
        let back: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(
            back,
            json!([{"channel": "/a"}, {"channel": "/b", "data": "é"}])
        );
        assert_eq!(encode_batch(&[]), "[]");
    }
}
