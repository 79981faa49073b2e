//! Property tests of the wire model: channel names, wildcard matching, batch parsing, Z85 and
//! batch encoding, each checked against a naive reference written here.
//!
//! Not for exact wire fixtures: those live next to the code and in the conformance suite.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use bayeux_message::{
    encode_batch, parse_batch, z85_decode, z85_encode, BatchError, ChannelName, EncodedMessage,
    Message,
};

/// Characters CometD allows in a channel name besides `/` (see `ChannelName`'s docs).
const CHANNEL_CHARS: &str =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 !#$()*+-.@_{~}";

/// The Z85 alphabet of ZeroMQ's RFC 32.
const Z85_ALPHABET: &str =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// The documented grammar, written naively: one trailing `/` trimmed (unless that leaves
/// nothing), then `/` followed by non-empty segments of allowed characters, with `*` only as a
/// whole last segment `*` or `**`. Returns the accepted name.
fn naive_channel(raw: &str) -> Option<String> {
    let mut name = raw.to_owned();
    if name.len() > 1 && name.ends_with('/') {
        name.pop();
    }
    let rest = name.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            return None;
        }
        if !segment.chars().all(|c| CHANNEL_CHARS.contains(c)) {
            return None;
        }
        let last = i + 1 == segments.len();
        if segment.contains('*') && !(last && (*segment == "*" || *segment == "**")) {
            return None;
        }
    }
    Some(name)
}

/// Strings that are often close to channel names: the allowed characters, `/`, and a few that
/// are not allowed (non-ASCII, control, quote, `<`).
fn channelish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => Just('/'),
            3 => Just('*'),
            6 => prop::sample::select(CHANNEL_CHARS.chars().collect::<Vec<_>>()),
            1 => prop::sample::select(vec!['é', '\0', '\n', '"', '<', '\u{7f}', '😀', '\\']),
        ],
        0..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// Long names: many short segments, maybe with a bad one, maybe with a trailing `/`.
fn long_channelish() -> impl Strategy<Value = String> {
    (prop::collection::vec("[a-z*]{0,3}", 1..400), any::<bool>()).prop_map(
        |(segments, trailing)| {
            let mut name = String::new();
            for segment in segments {
                name.push('/');
                name.push_str(&segment);
            }
            if trailing {
                name.push('/');
            }
            name
        },
    )
}

/// A segment of a tiny alphabet, so that channels and patterns share prefixes often.
fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab"]).prop_map(str::to_owned)
}

/// A concrete channel of 1 to 4 segments.
fn channel_segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(segment(), 1..5)
}

/// Which wildcard a pattern ends with.
#[derive(Clone, Copy, Debug)]
enum Tail {
    Exact,
    One,
    Any,
}

/// A pattern: 0 to 3 segments then `*`, `**`, or nothing (then at least one segment).
fn pattern() -> impl Strategy<Value = (Vec<String>, Tail)> {
    (
        prop::collection::vec(segment(), 0..4),
        prop_oneof![Just(Tail::Exact), Just(Tail::One), Just(Tail::Any)],
    )
        .prop_filter("an exact pattern needs a segment", |(segments, tail)| {
            !segments.is_empty() || !matches!(tail, Tail::Exact)
        })
}

fn join(segments: &[String], tail: Tail) -> String {
    let mut name: String = segments.iter().map(|s| format!("/{s}")).collect();
    match tail {
        Tail::Exact => {}
        Tail::One => name.push_str("/*"),
        Tail::Any => name.push_str("/**"),
    }
    name
}

/// Naive matching, segment by segment: `*` takes exactly one more segment, `**` one or more.
fn naive_matches(pattern: &[String], tail: Tail, channel: &[String]) -> bool {
    match tail {
        Tail::Exact => pattern == channel,
        Tail::One => channel.len() == pattern.len() + 1 && channel.starts_with(pattern),
        Tail::Any => channel.len() > pattern.len() && channel.starts_with(pattern),
    }
}

/// JSON numbers that survive a text round trip exactly (serde_json without `float_roundtrip`
/// may be one ulp off on arbitrary floats, which is not what these properties are about).
fn json_number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        (-1_000_000i32..1_000_000)
            .prop_map(|n| Number::from_f64(f64::from(n) / 8.0).expect("finite")),
    ]
}

/// Short strings of any Unicode, control characters included.
fn json_string() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

/// What JavaScript's `JSON.stringify` writes for a string of UTF-16 code units: lone
/// surrogates as lower-case `\uXXXX` escapes, the rest as text (with JSON's own escapes).
fn js_stringify(units: &[u16]) -> String {
    let mut out = String::from("\"");
    for unit in char::decode_utf16(units.iter().copied()) {
        match unit {
            Ok('"') => out.push_str("\\\""),
            Ok('\\') => out.push_str("\\\\"),
            Ok('\n') => out.push_str("\\n"),
            Ok('\r') => out.push_str("\\r"),
            Ok('\t') => out.push_str("\\t"),
            Ok('\u{8}') => out.push_str("\\b"),
            Ok('\u{c}') => out.push_str("\\f"),
            Ok(c) if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            Ok(c) => out.push(c),
            Err(lone) => out.push_str(&format!("\\u{:04x}", lone.unpaired_surrogate())),
        }
    }
    out.push('"');
    out
}

/// UTF-16 code units, surrogates (paired or not) frequent.
fn utf16_units() -> impl Strategy<Value = Vec<u16>> {
    prop::collection::vec(
        prop_oneof![
            0xD800u16..0xE000,
            0x20u16..0x80,
            0u16..0x20,
            any::<u16>(),
            Just(0xFDD0u16),
            0xE000u16..0xE800,
        ],
        0..16,
    )
}

/// Arbitrary JSON, bounded in depth and size.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        json_number().prop_map(Value::Number),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(json_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(
        prop_oneof![
            prop::sample::select(vec!["channel", "id", "clientId", "data", "ext", "advice"])
                .prop_map(str::to_owned),
            json_string(),
        ],
        json_value(),
        0..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

/// A top-level body value: mostly objects and arrays of objects, sometimes anything.
fn body_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => json_object().prop_map(Value::Object),
        4 => prop::collection::vec(json_object().prop_map(Value::Object), 0..5).prop_map(Value::Array),
        2 => prop::collection::vec(
            prop_oneof![3 => json_object().prop_map(Value::Object), 1 => json_value()],
            1..5,
        )
        .prop_map(Value::Array),
        2 => json_value(),
    ]
}

/// What `parse_batch` must answer for a body holding `value`.
fn expected_batch(value: &Value) -> Result<Vec<Map<String, Value>>, BatchError> {
    match value {
        Value::Object(map) => Ok(vec![map.clone()]),
        Value::Array(items) if items.is_empty() => Err(BatchError::Empty),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_object().cloned().ok_or(BatchError::NotMessages))
            .collect(),
        _ => Err(BatchError::NotMessages),
    }
}

fn maps(batch: Result<Vec<Message>, BatchError>) -> Result<Vec<Map<String, Value>>, BatchError> {
    batch.map(|messages| messages.into_iter().map(Message::into_map).collect())
}

/// JSON whitespace (RFC 8259), to wrap a body in.
fn json_space() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,4}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `ChannelName::parse` never panics, and accepts exactly what the documented grammar
    /// accepts (checked by `naive_channel`), keeping the name with one trailing `/` trimmed;
    /// an accepted name parses again to itself.
    #[test]
    fn channel_parse_agrees_with_the_grammar(
        raw in prop_oneof![any::<String>(), channelish(), long_channelish()],
    ) {
        let parsed = ChannelName::parse(&raw);
        let naive = naive_channel(&raw);
        prop_assert_eq!(parsed.as_ref().ok().map(ChannelName::as_str), naive.as_deref());
        if let Ok(name) = parsed {
            prop_assert_eq!(ChannelName::parse(name.as_str()), Ok(name.clone()));
            let is_wildcard = name.as_str().ends_with("/*") || name.as_str().ends_with("/**");
            prop_assert_eq!(name.is_wildcard(), is_wildcard);
        }
    }

    /// `pattern.matches(channel)` agrees with naive segment-by-segment matching, and a
    /// channel's `subscribers_keys` (distinct, valid names) hold a pattern iff it matches.
    #[test]
    fn wildcard_matching_agrees_with_naive_matching(
        channel in channel_segments(),
        (pattern, tail) in pattern(),
    ) {
        let channel_name = ChannelName::parse(&join(&channel, Tail::Exact)).expect("valid channel");
        let pattern_name = ChannelName::parse(&join(&pattern, tail)).expect("valid pattern");
        let expected = naive_matches(&pattern, tail, &channel);
        prop_assert_eq!(pattern_name.matches(&channel_name), expected);

        let keys = channel_name.subscribers_keys();
        let in_keys = keys.iter().any(|k| k == pattern_name.as_str());
        prop_assert_eq!(in_keys, expected, "keys {:?}", keys);
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), keys.len(), "duplicate keys {:?}", keys);
        for key in &keys {
            prop_assert!(ChannelName::parse(key).is_ok(), "invalid key {:?}", key);
        }
    }

    /// `parse_batch` never panics on arbitrary bytes: whitespace-only is `Empty`, bytes that
    /// are not JSON are `Malformed`, and anything accepted is a non-empty batch.
    #[test]
    fn parse_batch_never_panics_on_bytes(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec(
                prop::sample::select(b"[]{},:\"\\ \t\n0123456789.-+eEtrufalsn\xff\xc3".to_vec()),
                0..64,
            ),
        ],
    ) {
        let result = parse_batch(&body);
        if body.iter().all(u8::is_ascii_whitespace) {
            prop_assert_eq!(result, Err(BatchError::Empty));
        } else if serde_json::from_slice::<Value>(&body).is_err() {
            prop_assert!(matches!(result, Err(BatchError::Malformed(_))), "{:?}", result);
        } else if let Ok(batch) = result {
            prop_assert!(!batch.is_empty());
        }
    }

    /// For a JSON body, `parse_batch` returns a bare object as one message and an array of
    /// objects as exactly those objects in order; `[]` is `Empty`, anything else `NotMessages`.
    /// A strict, non-empty prefix of an object or array body is `Malformed`.
    #[test]
    fn parse_batch_classifies_json_values(
        value in body_value(),
        pretty in any::<bool>(),
        before in json_space(),
        after in json_space(),
        cut in any::<prop::sample::Index>(),
    ) {
        let text = if pretty {
            serde_json::to_string_pretty(&value)
        } else {
            serde_json::to_string(&value)
        }
        .expect("JSON values serialise");
        let body = format!("{before}{text}{after}");
        prop_assert_eq!(maps(parse_batch(body.as_bytes())), expected_batch(&value));

        if value.is_object() || value.is_array() {
            let prefix = &text.as_bytes()[..cut.index(text.len())];
            let result = parse_batch(prefix);
            if prefix.is_empty() {
                prop_assert_eq!(result, Err(BatchError::Empty));
            } else {
                prop_assert!(matches!(result, Err(BatchError::Malformed(_))), "{:?}", result);
            }
        }
    }

    /// Z85 round-trips any bytes, and `n` bytes encode to `ceil(5n/4)` characters.
    #[test]
    fn z85_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let text = z85_encode(&bytes);
        prop_assert_eq!(text.len(), (bytes.len() * 5).div_ceil(4));
        prop_assert!(text.chars().all(|c| Z85_ALPHABET.contains(c)));
        prop_assert_eq!(z85_decode(&text), Ok(bytes));
    }

    /// `z85_decode` never panics; text with a character outside the alphabet is refused, and
    /// accepted text of `L` characters gives `floor(4L/5)` bytes.
    #[test]
    fn z85_decode_never_panics(
        text in prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(Z85_ALPHABET.chars().collect::<Vec<_>>()),
                0..64,
            )
            .prop_map(|chars| chars.into_iter().collect::<String>()),
            "[#%$@}]{0,16}",
        ],
    ) {
        let result = z85_decode(&text);
        if !text.chars().all(|c| Z85_ALPHABET.contains(c)) {
            prop_assert!(result.is_err());
        }
        if let Ok(bytes) = result {
            prop_assert_eq!(bytes.len(), text.len() * 4 / 5);
        }
    }

    /// `encode_batch` of encoded messages is a JSON array of exactly those objects, in order,
    /// and `parse_batch` reads it back as the same messages.
    #[test]
    fn encode_batch_parses_back(objects in prop::collection::vec(json_object(), 0..6)) {
        let encoded: Vec<_> = objects
            .iter()
            .map(|map| Message::from_map(map.clone()).encode())
            .collect();
        let text = encode_batch(&encoded);
        let back: Value = serde_json::from_str(&text).expect("encode_batch emits JSON");
        let expected = Value::Array(objects.iter().cloned().map(Value::Object).collect());
        prop_assert_eq!(back, expected);
        let parsed = maps(parse_batch(text.as_bytes()));
        if objects.is_empty() {
            prop_assert_eq!(parsed, Err(BatchError::Empty));
        } else {
            prop_assert_eq!(parsed, Ok(objects));
        }
    }

    /// Any string JavaScript can stringify (lone surrogates included) is accepted, and comes
    /// back out as the same JSON text, as a value and as a key.
    #[test]
    fn javascript_strings_round_trip(units in utf16_units()) {
        let string = js_stringify(&units);
        for object in [format!(r#"{{"data":{string}}}"#), format!(r#"{{{string}:1}}"#)] {
            let text = format!("[{object}]");
            let batch = parse_batch(text.as_bytes()).expect("JSON.stringify output is accepted");
            prop_assert_eq!(batch.len(), 1);
            let encoded: EncodedMessage = batch[0].encode();
            prop_assert_eq!(encoded.as_str(), object.as_str());
            prop_assert_eq!(encoded.decode(), batch[0].clone());
        }
    }
}
