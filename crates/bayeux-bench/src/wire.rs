//! Bayeux messages as the generator writes and reads them.
//!
//! Outgoing batches are written straight into a reusable `String` (no `serde_json::Value` on
//! the way out), and incoming batches are visited message by message with borrowed fields, so
//! the hot path allocates at most the strings that arrive escaped. This is not a general
//! Bayeux codec: it knows the few fields a load generator needs and ignores the rest.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// The payload of every message the generator publishes: who sent it, its sequence number and
/// when (nanoseconds since the generator started). Unknown fields, such as the padding, are
/// skipped without being stored.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Stamp {
    /// Publisher index.
    pub p: u32,
    /// Per-publisher sequence number, from 0.
    pub s: u64,
    /// Send time in nanoseconds since the generator's epoch.
    pub t: u64,
}

/// The advice fields the generator obeys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Advice<'a> {
    /// `retry`, `handshake` or `none`.
    #[serde(borrow)]
    pub reconnect: Option<Cow<'a, str>>,
    /// Delay before the next connect, ms.
    pub interval: Option<f64>,
    /// How long the server holds a connect, ms.
    pub timeout: Option<f64>,
}

/// One incoming message, fields borrowed from the received bytes where possible.
#[derive(Debug, Deserialize)]
pub struct Incoming<'a> {
    /// The channel; replies repeat the request's channel.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    /// The request id a reply answers; deliveries may or may not carry one.
    #[serde(default, borrow)]
    pub id: Option<Cow<'a, str>>,
    /// Present on replies, absent on deliveries.
    #[serde(default)]
    pub successful: Option<bool>,
    /// The session id, in handshake replies.
    #[serde(default, borrow, rename = "clientId")]
    pub client_id: Option<Cow<'a, str>>,
    /// The payload of a delivery; only the generator's own [`Stamp`] shape is understood.
    #[serde(default)]
    pub data: Option<Stamp>,
    /// Advice, on handshake and connect replies.
    #[serde(default, borrow)]
    pub advice: Option<Advice<'a>>,
    /// The error of a failed reply.
    #[serde(default, borrow)]
    pub error: Option<Cow<'a, str>>,
}

impl Incoming<'_> {
    /// True for a reply (as opposed to a delivery), by the rule the JS client uses: a meta
    /// channel, or no `data`.
    pub fn is_reply(&self) -> bool {
        self.channel.starts_with("/meta/") || self.data.is_none()
    }

    /// The numeric request id this reply answers, if the id is one the generator wrote.
    pub fn numeric_id(&self) -> Option<u64> {
        self.id.as_deref().and_then(|id| id.parse().ok())
    }

    /// The failure text of an unsuccessful reply: its `error`, else a generic one.
    pub fn failure(&self) -> String {
        format!(
            "{} failed: {}",
            self.channel,
            self.error.as_deref().unwrap_or("no error field")
        )
    }
}

/// Calls `each` for every message of a JSON array batch (or a single bare object), without
/// collecting them.
pub fn for_each_message<'de>(
    body: &'de [u8],
    each: &mut dyn FnMut(Incoming<'de>),
) -> serde_json::Result<()> {
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_any(BatchVisitor { each })?;
    de.end()
}

struct BatchVisitor<'f, 'de> {
    each: &'f mut dyn FnMut(Incoming<'de>),
}

impl<'de> Visitor<'de> for BatchVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Bayeux message or an array of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(msg) = seq.next_element_seed(MessageSeed)? {
            (self.each)(msg);
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let msg = Incoming::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.each)(msg);
        Ok(())
    }
}

struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Incoming<'de>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Incoming<'de>, D::Error> {
        Incoming::deserialize(de)
    }
}

/// Writes one outgoing batch (a JSON array) into a reusable buffer, numbering requests from
/// the session's counter.
pub struct Batch<'a> {
    out: &'a mut String,
    next_id: &'a mut u64,
    first: bool,
}

impl<'a> Batch<'a> {
    /// Starts a batch in `out` (cleared first), taking ids from `next_id`.
    pub fn new(out: &'a mut String, next_id: &'a mut u64) -> Batch<'a> {
        out.clear();
        out.push('[');
        Batch {
            out,
            next_id,
            first: true,
        }
    }

    /// Ends the batch; returns the id the next request will get.
    pub fn finish(self) -> u64 {
        self.out.push(']');
        *self.next_id
    }

    fn open(&mut self, channel: &str) -> u64 {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        let id = *self.next_id;
        *self.next_id += 1;
        // Ids, channels and clientIds the generator writes never need JSON escaping: ids are
        // decimal, channels are its own, clientIds are alphanumeric per the protocol.
        let _ = write!(self.out, r#"{{"id":"{id}","channel":"{channel}""#);
        id
    }

    /// A `/meta/handshake` offering `types`.
    pub fn handshake(&mut self, types: &[&str]) -> u64 {
        let id = self.open("/meta/handshake");
        self.out.push_str(
            r#","version":"1.0","minimumVersion":"1.0","advice":{"timeout":60000,"interval":0},"supportedConnectionTypes":["#,
        );
        for (i, t) in types.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, r#""{t}""#);
        }
        self.out.push_str("]}");
        id
    }

    /// A `/meta/connect`; `immediate` adds `advice: {timeout: 0}` (the first connect).
    pub fn connect(&mut self, cid: &str, connection_type: &str, immediate: bool) -> u64 {
        let id = self.open("/meta/connect");
        let _ = write!(
            self.out,
            r#","clientId":"{cid}","connectionType":"{connection_type}""#
        );
        if immediate {
            self.out.push_str(r#","advice":{"timeout":0}"#);
        }
        self.out.push('}');
        id
    }

    /// A `/meta/subscribe` to `channel`.
    pub fn subscribe(&mut self, cid: &str, channel: &str) -> u64 {
        let id = self.open("/meta/subscribe");
        let _ = write!(
            self.out,
            r#","clientId":"{cid}","subscription":"{channel}"}}"#
        );
        id
    }

    /// A publish of `stamp` to `channel`, its data padded with `pad` filler characters.
    pub fn publish(&mut self, cid: &str, channel: &str, stamp: Stamp, pad: usize) -> u64 {
        let id = self.open(channel);
        let _ = write!(
            self.out,
            r#","clientId":"{cid}","data":{{"p":{},"s":{},"t":{},"x":""#,
            stamp.p, stamp.s, stamp.t
        );
        self.out.extend(std::iter::repeat_n('x', pad));
        self.out.push_str("\"}}");
        id
    }
}

/// Padding that makes a published `data` object about `size` bytes long.
pub fn padding_for(size: usize) -> usize {
    // {"p":0,"s":000000,"t":0000000000000,"x":""} is about 45 bytes before padding.
    size.saturating_sub(45)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(body: &str) -> Vec<(String, Option<Stamp>, Option<bool>)> {
        let mut out = Vec::new();
        for_each_message(body.as_bytes(), &mut |m| {
            out.push((m.channel.into_owned(), m.data, m.successful));
        })
        .expect("valid batch");
        out
    }

    #[test]
    fn written_batch_parses_back() {
        let (mut out, mut next) = (String::new(), 1);
        let mut batch = Batch::new(&mut out, &mut next);
        batch.subscribe("abc", "/b/c0");
        let stamp = Stamp { p: 2, s: 7, t: 99 };
        batch.publish("abc", "/b/c0", stamp, 10);
        assert_eq!(batch.finish(), 3);
        let msgs = collect(&out);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].1, Some(stamp));
    }

    #[test]
    fn bare_object_and_foreign_fields_are_accepted() {
        let msgs = collect(
            r#"{"channel":"/meta/connect","successful":true,"ext":{"a":[1,2]},"advice":{"interval":0}}"#,
        );
        assert_eq!(msgs, [("/meta/connect".to_string(), None, Some(true))]);
    }

    #[test]
    fn padding_reaches_the_requested_size() {
        let (mut out, mut next) = (String::new(), 1);
        let mut batch = Batch::new(&mut out, &mut next);
        let stamp = Stamp {
            p: 0,
            s: 100_000,
            t: 1_000_000_000_000,
        };
        batch.publish("c", "/x", stamp, padding_for(50));
        batch.finish();
        let data = &out[out.find(r#""data":"#).expect("data") + 7..out.len() - 2];
        assert!((48..=52).contains(&data.len()), "{data}");
    }
}
