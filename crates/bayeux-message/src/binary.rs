//! Binary payloads of the `binary` extension: Z85 text in `data.data`.
//!
//! Clients relay binary messages through the server untouched; these helpers are for server
//! code that wants the bytes ([`BinaryData::from_message`]) or sends bytes ([`z85_encode`]).
//! Z85 is ZeroMQ's RFC 32 alphabet, 4 bytes to 5 characters big-endian; for lengths that are
//! not a multiple of 4, CometD pads with zero bytes and drops as many characters at the end.

use std::fmt;

use serde_json::{Map, Value};

use crate::Message;

const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Encodes bytes as CometD's Z85 text.
pub fn z85_encode(bytes: &[u8]) -> String {
    let padding = (4 - bytes.len() % 4) % 4;
    let mut out = String::with_capacity((bytes.len() + padding) / 4 * 5);
    for chunk in bytes.chunks(4) {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        let mut value = u32::from_be_bytes(word);
        let mut digits = [0u8; 5];
        for digit in digits.iter_mut().rev() {
            *digit = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        out.extend(digits.iter().map(|&d| char::from(d)));
    }
    out.truncate(out.len() - padding);
    out
}

/// Text that is not Z85.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Z85Error;

impl fmt::Display for Z85Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid Z85 text")
    }
}

impl std::error::Error for Z85Error {}

/// Decodes CometD's Z85 text to bytes.
pub fn z85_decode(text: &str) -> Result<Vec<u8>, Z85Error> {
    let padding = (5 - text.len() % 5) % 5;
    let mut out = Vec::with_capacity((text.len() + padding) / 5 * 4);
    let mut digits = text.bytes().map(digit_value);
    let padded = std::iter::repeat_n(Some(84), padding);
    let mut all = digits.by_ref().chain(padded).peekable();
    while all.peek().is_some() {
        let mut value: u64 = 0;
        for _ in 0..5 {
            value = value * 85 + u64::from(all.next().flatten().ok_or(Z85Error)?);
        }
        let word = u32::try_from(value).map_err(|_| Z85Error)?;
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.truncate(out.len() - padding);
    Ok(out)
}

fn digit_value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// The payload of a binary message, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct BinaryData {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Whether this is the last chunk of the payload.
    pub last: bool,
    /// Application metadata sent with the bytes.
    pub meta: Option<Map<String, Value>>,
}

impl BinaryData {
    /// Decodes a message carrying `ext.binary`; `None` when it is not a binary message.
    pub fn from_message(msg: &Message) -> Option<Result<Self, Z85Error>> {
        msg.ext()?.get("binary")?;
        let data = msg.data()?.as_object()?;
        let text = data.get("data")?.as_str()?;
        Some(z85_decode(text).map(|bytes| Self {
            bytes,
            last: data.get("last").and_then(Value::as_bool).unwrap_or(true),
            meta: data.get("meta").and_then(Value::as_object).cloned(),
        }))
    }

    /// The `data` and `ext` fields that carry these bytes in a message.
    pub fn to_fields(&self) -> (Value, Value) {
        let mut data = Map::new();
        data.insert("data".into(), Value::String(z85_encode(&self.bytes)));
        data.insert("last".into(), Value::Bool(self.last));
        if let Some(meta) = &self.meta {
            data.insert("meta".into(), Value::Object(meta.clone()));
        }
        (Value::Object(data), serde_json::json!({"binary": {}}))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn vectors_from_the_cometd_extension() {
        let cases: [(&[u8], &str); 3] = [
            (
                &[0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B],
                "HelloWorld",
            ),
            (&[1, 2, 3, 4, 5], "0rJua1P"),
            (b"hello", "xK#0@zV"),
        ];
        for (bytes, text) in cases {
            assert_eq!(z85_encode(bytes), text);
            assert_eq!(z85_decode(text).as_deref(), Ok(bytes));
        }
        assert_eq!(z85_encode(&[]), "");
        assert_eq!(z85_decode(""), Ok(vec![]));
    }

    #[test]
    fn every_length_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..40 {
            let text = z85_encode(&bytes[..len]);
            assert_eq!(text.len(), (len * 5).div_ceil(4));
            assert_eq!(z85_decode(&text).expect("valid"), &bytes[..len]);
        }
    }

    #[test]
    fn rejects_text_outside_the_alphabet_or_range() {
        assert_eq!(z85_decode("Hello~"), Err(Z85Error));
        assert_eq!(
            z85_decode("#####"),
            Err(Z85Error),
            "85^5 - 1 overflows 32 bits"
        );
    }

    #[test]
    fn binary_messages_decode() {
        let msg = Message::from_map(
            json!({"channel": "/b", "ext": {"binary": {}}, "data": {"data": "HelloWorld", "last": true, "meta": {"n": 1}}})
                .as_object()
                .expect("object")
                .clone(),
        );
        let data = BinaryData::from_message(&msg)
            .expect("binary")
            .expect("valid");
        assert_eq!(data.bytes, [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
        assert!(data.last);
        assert_eq!(
            data.to_fields().0,
            json!({"data": "HelloWorld", "last": true, "meta": {"n": 1}})
        );
        let plain = Message::new().with("channel", "/b").with("data", 1);
        assert!(BinaryData::from_message(&plain).is_none());
    }
}
