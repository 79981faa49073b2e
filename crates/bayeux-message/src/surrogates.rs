//! JSON text as JavaScript writes it: strings with unpaired UTF-16 surrogates.
//!
//! A JavaScript string may hold a lone surrogate (half of an emoji cut off), and
//! `JSON.stringify` writes it as an escape such as `\ud83d`. That is valid JSON text, but no
//! Rust `String` can hold the character it stands for, so a strict parser refuses the whole
//! document. Instead, each lone surrogate is carried inside the server as two characters that a
//! Rust string can hold: U+FDD0, a noncharacter Unicode reserves for internal use, followed by a
//! private-use character that says which surrogate it was (U+E000 + its offset from U+D800).
//! A U+FDD0 the client really sent is carried as two U+FDD0, so that the mapping is exact both
//! ways. On the way out, JSON text is mapped back: the client's `JSON.parse` gets the same
//! string its peer's `JSON.stringify` wrote.
//!
//! Both directions cost one scan of the text, and nothing else unless it holds a surrogate
//! escape or a U+FDD0.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Starts the internal form of a lone surrogate (or of a U+FDD0 the client sent).
pub const SENTINEL: char = '\u{FDD0}';

/// UTF-8 of [`SENTINEL`].
const SENTINEL_UTF8: [u8; 3] = [0xEF, 0xB7, 0x90];

/// First of the private-use characters that name a surrogate (U+E000 stands for U+D800).
const FIRST_MARK: u32 = 0xE000;

/// Parses JSON text as JavaScript writes it, lone surrogates included.
pub fn parse_json(text: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_slice(&to_internal(text))
}

/// JSON text with every lone surrogate escape (and U+FDD0) in its internal form.
pub fn to_internal(text: &[u8]) -> Cow<'_, [u8]> {
    if !needs_mapping(text) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut i = 0;
    let mut in_string = false;
    while i < text.len() {
        let b = text[i];
        if !in_string {
            in_string = b == b'"';
            out.push(b);
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                out.push(b);
                i += 1;
            }
            b'\\' => {
                let unit = (text.get(i + 1) == Some(&b'u'))
                    .then(|| text.get(i + 2..i + 6).and_then(hex4))
                    .flatten();
                match unit {
                    Some(high @ 0xD800..=0xDBFF) => {
                        let low = (text.get(i + 6) == Some(&b'\\')
                            && text.get(i + 7) == Some(&b'u'))
                        .then(|| text.get(i + 8..i + 12).and_then(hex4))
                        .flatten();
                        if matches!(low, Some(0xDC00..=0xDFFF)) {
                            // A well-formed pair: serde_json reads it as one character.
                            out.extend_from_slice(&text[i..i + 12]);
                            i += 12;
                        } else {
                            push_internal(&mut out, high);
                            i += 6;
                        }
                    }
                    Some(low @ 0xDC00..=0xDFFF) => {
                        push_internal(&mut out, low);
                        i += 6;
                    }
                    Some(0xFDD0) => {
                        out.extend_from_slice(&SENTINEL_UTF8);
                        out.extend_from_slice(&SENTINEL_UTF8);
                        i += 6;
                    }
                    _ => {
                        // Any other escape, copied as it is (the parser judges it).
                        out.extend_from_slice(&text[i..(i + 2).min(text.len())]);
                        i += 2;
                    }
                }
            }
            0xEF if text[i..].starts_with(&SENTINEL_UTF8) => {
                out.extend_from_slice(&SENTINEL_UTF8);
                out.extend_from_slice(&SENTINEL_UTF8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// JSON text with the internal forms mapped back to what the client sent: `\udXXX` escapes,
/// and U+FDD0.
pub fn to_external(json: &str) -> Cow<'_, str> {
    if !json.contains(SENTINEL) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if c != SENTINEL {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some(SENTINEL) => {
                out.push(SENTINEL);
                chars.next();
            }
            Some(mark) if (FIRST_MARK..FIRST_MARK + 0x800).contains(&u32::from(mark)) => {
                let unit = 0xD800 + (u32::from(mark) - FIRST_MARK);
                let _ = write!(out, "\\u{unit:04x}");
                chars.next();
            }
            // A lone U+FDD0 made by server code: left as it is.
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether the text holds a surrogate escape or a U+FDD0 (else nothing to map).
fn needs_mapping(text: &[u8]) -> bool {
    text.windows(3).any(|w| {
        w == SENTINEL_UTF8
            || (w[0] == b'\\' && w[1] == b'u' && matches!(w[2], b'd' | b'D' | b'f' | b'F'))
    })
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

fn push_internal(out: &mut Vec<u8>, unit: u32) {
    out.extend_from_slice(&SENTINEL_UTF8);
    let mark = char::from_u32(FIRST_MARK + (unit - 0xD800)).expect("private-use range");
    let mut buf = [0; 4];
    out.extend_from_slice(mark.encode_utf8(&mut buf).as_bytes());
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn round_trip(text: &str) -> String {
        let value = parse_json(text.as_bytes()).expect("parses");
        to_external(&serde_json::to_string(&value).expect("encodes")).into_owned()
    }

    #[test]
    fn lone_surrogates_survive_a_parse_and_an_encode() {
        assert_eq!(round_trip(r#"{"a":"x\ud83dy"}"#), r#"{"a":"x\ud83dy"}"#);
        assert_eq!(round_trip(r#"{"a":"\uDE00"}"#), r#"{"a":"\ude00"}"#);
        assert_eq!(round_trip(r#"["\udbff\udbff"]"#), r#"["\udbff\udbff"]"#);
        // A low one before a high one is two lone ones, not a pair.
        assert_eq!(round_trip(r#"["\udc00\ud800"]"#), r#"["\udc00\ud800"]"#);
        // Keys too.
        assert_eq!(round_trip(r#"{"\ud800":1}"#), r#"{"\ud800":1}"#);
    }

    #[test]
    fn pairs_and_plain_text_are_left_to_the_parser() {
        let text = r#"{"a":"\ud83d\ude00 é \\ud83d \"\ud83d"}"#;
        let value = parse_json(text.as_bytes()).expect("parses");
        assert_eq!(
            value["a"],
            Value::String("😀 é \\ud83d \"\u{FDD0}\u{E03D}".into())
        );
        assert!(matches!(to_internal(br#"{"a":"plain"}"#), Cow::Borrowed(_)));
        assert!(matches!(
            to_internal(br#"{"a":"\u00e9"}"#),
            Cow::Borrowed(_)
        ));
        // An escaped backslash followed by "ud83d" is text, not an escape.
        assert_eq!(round_trip(r#"{"a":"\\ud83d"}"#), r#"{"a":"\\ud83d"}"#);
    }

    #[test]
    fn the_reserved_character_itself_round_trips() {
        assert_eq!(
            round_trip("{\"a\":\"\u{FDD0}\u{E000}\"}"),
            "{\"a\":\"\u{FDD0}\u{E000}\"}"
        );
        assert_eq!(
            round_trip(r#"{"a":"\ufdd0\ue000"}"#),
            "{\"a\":\"\u{FDD0}\u{E000}\"}"
        );
        assert_eq!(
            round_trip("{\"a\":\"\u{FDD0}\\ud800\"}"),
            "{\"a\":\"\u{FDD0}\\ud800\"}"
        );
        // Made by server code, alone: left alone.
        assert_eq!(
            to_external(&json!({"a": "\u{FDD0}x"}).to_string()),
            "{\"a\":\"\u{FDD0}x\"}"
        );
    }

    #[test]
    fn broken_escapes_are_still_refused() {
        assert!(parse_json(br#"{"a":"\ud8"}"#).is_err());
        assert!(parse_json(br#"{"a":"\uzzzz"}"#).is_err());
        assert!(parse_json(br#"{"a":"\"#).is_err());
    }
}
