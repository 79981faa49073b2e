//! Parsing a request body into a batch of messages.

use std::fmt;

use serde_json::Value;

use crate::Message;

/// Why a request body is not a batch of messages. Each is answered with HTTP 400 (or websocket
/// close 1011) and has no effect on any session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// The body holds no message (`[]`, or nothing at all).
    Empty,
    /// The body is not valid JSON (or nests deeper than the parser allows).
    Malformed(String),
    /// Valid JSON, but not an object or an array of objects.
    NotMessages,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty batch"),
            Self::Malformed(why) => write!(f, "malformed JSON: {why}"),
            Self::NotMessages => f.write_str("not a message or an array of messages"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Parses a batch: a JSON array of message objects, or one bare message object.
///
/// serde_json's recursion limit (128 levels) bounds nesting, so hostile input cannot overflow
/// the stack.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Message>, BatchError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BatchError::Empty);
    }
    // JSON as JavaScript writes it: lone surrogates are kept (see `surrogates`).
    let value: Value =
        crate::surrogates::parse_json(body).map_err(|e| BatchError::Malformed(e.to_string()))?;
    messages_from_value(value)
}

/// Turns an already parsed JSON value into a batch (see [`parse_batch`]).
pub fn messages_from_value(value: Value) -> Result<Vec<Message>, BatchError> {
    match value {
        Value::Object(map) => Ok(vec![Message::from_map(map)]),
        Value::Array(items) if items.is_empty() => Err(BatchError::Empty),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => Ok(Message::from_map(map)),
                _ => Err(BatchError::NotMessages),
            })
            .collect(),
        _ => Err(BatchError::NotMessages),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_and_bare_object() {
        let batch = parse_batch(br#"[{"channel":"/a"},{"channel":"/b"}]"#).expect("batch");
        let channels: Vec<_> = batch.iter().map(|m| m.channel()).collect();
        assert_eq!(channels, [Some("/a"), Some("/b")]);
        let single = parse_batch(br#" {"channel":"/c"} "#).expect("batch");
        assert_eq!(single.len(), 1);
    }

    #[test]
    fn rejects_non_batches() {
        assert_eq!(parse_batch(b""), Err(BatchError::Empty));
        assert_eq!(parse_batch(b"  \n"), Err(BatchError::Empty));
        assert_eq!(parse_batch(b"[]"), Err(BatchError::Empty));
        assert_eq!(parse_batch(b"5"), Err(BatchError::NotMessages));
        assert_eq!(parse_batch(b"\"x\""), Err(BatchError::NotMessages));
        assert_eq!(parse_batch(b"[{},1]"), Err(BatchError::NotMessages));
        assert!(matches!(parse_batch(b"[{"), Err(BatchError::Malformed(_))));
        assert!(matches!(
            parse_batch(b"\xff"),
            Err(BatchError::Malformed(_))
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_batch(deep.as_bytes()),
            Err(BatchError::Malformed(_))
        ));
    }
}
