//! Channel names: validation, kinds (meta, service, broadcast) and wildcard patterns.
//!
//! A [`ChannelName`] is parsed once at the edge and trusted from then on. It may be a concrete
//! channel (`/chat/room1`) or a subscription pattern (`/chat/*`, `/chat/**`); routing a message on
//! a concrete channel considers exactly the names that [`ChannelName::subscribers_keys`] yields.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// A validated channel name or subscription pattern.
///
/// Valid names start with `/`, have no empty segment, use only the characters CometD accepts
/// (`A-Z a-z 0-9` and `` !#$()*+-./@_{~}`` plus space), and carry a wildcard (`*` or `**`) only as
/// their whole last segment. One trailing `/` is trimmed, as Java CometD does (`/foo/` is `/foo`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// What a channel is for, which decides how a message on it is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// Every other channel: publishes fan out to subscribers.
    Broadcast,
    /// `/meta/...`: drives the protocol itself.
    Meta,
    /// `/service/...`: requests to the server, never broadcast to other sessions.
    Service,
}

/// Why a string is not a valid channel name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidChannel {
    /// A character outside the allowed set.
    BadCharacter,
    /// Empty, or the name does not start with `/`.
    BadStart,
    /// An empty segment, as in `/a//b`.
    EmptySegment,
    /// `*` used anywhere but as the whole last segment.
    MisplacedWildcard,
    /// More than [`MAX_CHANNEL_LEN`] bytes or [`MAX_CHANNEL_SEGMENTS`] segments.
    TooLong,
}

/// Longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 1024;

/// Most segments in a channel name.
pub const MAX_CHANNEL_SEGMENTS: usize = 64;

/// The five meta channels the protocol defines.
pub const META_CHANNELS: [&str; 5] = [
    "/meta/handshake",
    "/meta/connect",
    "/meta/disconnect",
    "/meta/subscribe",
    "/meta/unsubscribe",
];

impl ChannelName {
    /// Parses and validates a channel name or pattern.
    pub fn parse(raw: &str) -> Result<Self, InvalidChannel> {
        let trimmed = match raw.strip_suffix('/') {
            Some(rest) if !rest.is_empty() => rest,
            _ => raw,
        };
        let Some(body) = trimmed.strip_prefix('/') else {
            return Err(InvalidChannel::BadStart);
        };
        if body.is_empty() {
            return Err(InvalidChannel::BadStart);
        }
        // Routing looks up one key per ancestor: bounding depth and length bounds the cost of
        // a publish, whatever a client sends.
        if trimmed.len() > MAX_CHANNEL_LEN || body.split('/').count() > MAX_CHANNEL_SEGMENTS {
            return Err(InvalidChannel::TooLong);
        }
        if !body.bytes().all(is_channel_byte) {
            return Err(InvalidChannel::BadCharacter);
        }
        let mut segments = body.split('/').peekable();
        while let Some(segment) = segments.next() {
            if segment.is_empty() {
                return Err(InvalidChannel::EmptySegment);
            }
            let is_last = segments.peek().is_none();
            let wildcard_ok = is_last && (segment == "*" || segment == "**");
            if segment.contains('*') && !wildcard_ok {
                return Err(InvalidChannel::MisplacedWildcard);
            }
        }
        Ok(Self(Arc::from(trimmed)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Meta, service or broadcast.
    pub fn kind(&self) -> ChannelKind {
        if self.0.starts_with("/meta/") {
            ChannelKind::Meta
        } else if self.0.starts_with("/service/") {
            ChannelKind::Service
        } else {
            ChannelKind::Broadcast
        }
    }

    /// True for `/a/*` and `/a/**`.
    pub fn is_wildcard(&self) -> bool {
        self.0.ends_with("/*") || self.0.ends_with("/**")
    }

    /// True for one of the five protocol meta channels (`/meta/connect`, ...).
    pub fn is_protocol_meta(&self) -> bool {
        META_CHANNELS.contains(&self.as_str())
    }

    /// The subscription keys whose subscribers receive a message published on this channel.
    ///
    /// For `/a/b/c`: `/a/b/c`, `/a/b/*`, `/a/b/**`, `/a/**`, `/**`. A pattern yields only itself
    /// (a publish on a pattern is refused before routing; server-side lookups stay exact).
    pub fn subscribers_keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(2 + self.as_str().matches('/').count());
        self.for_each_subscribers_key(|key| keys.push(key.to_owned()));
        keys
    }

    /// Calls `visit` with each of [`subscribers_keys`](Self::subscribers_keys), in the same
    /// order, without a `String` per key: every publish routes through these, so the keys
    /// are written one after the other into a single buffer.
    pub fn for_each_subscribers_key(&self, mut visit: impl FnMut(&str)) {
        self.find_subscribers_key(|key| {
            visit(key);
            None::<()>
        });
    }

    /// The first of [`subscribers_keys`](Self::subscribers_keys), in their order, for which
    /// `found` gives something, and what it gave; the keys after it are not made.
    pub fn find_subscribers_key<T>(&self, mut found: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let name = self.as_str();
        if let Some(hit) = found(name) {
            return Some(hit);
        }
        if self.is_wildcard() {
            return None;
        }
        let parent_end = name
            .rfind('/')
            .expect("a valid channel name starts with '/'");
        let mut key = String::with_capacity(parent_end + 3);
        key.push_str(&name[..parent_end]);
        key.push_str("/*");
        if let Some(hit) = found(&key) {
            return Some(hit);
        }
        // `/**` patterns of every ancestor, nearest first.
        let mut end = parent_end;
        loop {
            key.clear();
            key.push_str(&name[..end]);
            key.push_str("/**");
            if let Some(hit) = found(&key) {
                return Some(hit);
            }
            if end == 0 {
                return None;
            }
            end = name[..end]
                .rfind('/')
                .expect("ancestors of a valid name start with '/'");
        }
    }

    /// True when a session subscribed to this name receives a message published on `channel`.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        let pattern = self.as_str();
        let name = channel.as_str();
        if let Some(prefix) = pattern.strip_suffix("/**") {
            name.len() > prefix.len() + 1
                && name.starts_with(prefix)
                && name.as_bytes()[prefix.len()] == b'/'
        } else if let Some(prefix) = pattern.strip_suffix("/*") {
            name.len() > prefix.len() + 1
                && name.starts_with(prefix)
                && name.as_bytes()[prefix.len()] == b'/'
                && !name[prefix.len() + 1..].contains('/')
        } else {
            pattern == name
        }
    }
}

fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" !#$()*+-./@_{~}".contains(&b)
}

impl Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelName({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> ChannelName {
        ChannelName::parse(raw).expect("valid channel in test")
    }

    #[test]
    fn accepts_the_cometd_character_set() {
        for raw in [
            "/a",
            "/chat/room1",
            "/a b/c",
            "/x/!#$()+-.@_{~}",
            "/a/*",
            "/a/**",
            "/**",
        ] {
            assert_eq!(name(raw).as_str(), raw);
        }
    }

    #[test]
    fn trims_one_trailing_slash() {
        assert_eq!(name("/foo/").as_str(), "/foo");
        assert_eq!(
            ChannelName::parse("/foo//"),
            Err(InvalidChannel::EmptySegment)
        );
    }

    #[test]
    fn rejects_invalid_names() {
        let cases = [
            ("", InvalidChannel::BadStart),
            ("/", InvalidChannel::BadStart),
            ("foo", InvalidChannel::BadStart),
            ("/foo<bar", InvalidChannel::BadCharacter),
            ("/a\"b", InvalidChannel::BadCharacter),
            ("/é", InvalidChannel::BadCharacter),
            ("/a//b", InvalidChannel::EmptySegment),
            ("/a/*/b", InvalidChannel::MisplacedWildcard),
            ("/a/b*", InvalidChannel::MisplacedWildcard),
            ("/a/***", InvalidChannel::MisplacedWildcard),
        ];
        for (raw, why) in cases {
            assert_eq!(ChannelName::parse(raw), Err(why), "{raw:?}");
        }
    }

    #[test]
    fn bounds_length_and_depth() {
        let deep = "/a".repeat(MAX_CHANNEL_SEGMENTS);
        assert_eq!(name(&deep).as_str(), deep);
        let deeper = "/a".repeat(MAX_CHANNEL_SEGMENTS + 1);
        assert_eq!(ChannelName::parse(&deeper), Err(InvalidChannel::TooLong));
        let long = format!("/{}", "x".repeat(MAX_CHANNEL_LEN - 1));
        assert_eq!(name(&long).as_str().len(), MAX_CHANNEL_LEN);
        let longer = format!("/{}", "x".repeat(MAX_CHANNEL_LEN));
        assert_eq!(ChannelName::parse(&longer), Err(InvalidChannel::TooLong));
    }

    #[test]
    fn kinds() {
        assert_eq!(name("/meta/connect").kind(), ChannelKind::Meta);
        assert_eq!(name("/service/echo").kind(), ChannelKind::Service);
        assert_eq!(name("/meta").kind(), ChannelKind::Broadcast);
        assert_eq!(name("/service").kind(), ChannelKind::Broadcast);
        assert_eq!(name("/**").kind(), ChannelKind::Broadcast);
        assert!(name("/meta/connect").is_protocol_meta());
        assert!(!name("/meta/foo").is_protocol_meta());
    }

    #[test]
    fn subscribers_keys_of_deep_channel() {
        assert_eq!(
            name("/a/b/c").subscribers_keys(),
            ["/a/b/c", "/a/b/*", "/a/b/**", "/a/**", "/**"]
        );
        assert_eq!(name("/a").subscribers_keys(), ["/a", "/*", "/**"]);
        assert_eq!(name("/a/*").subscribers_keys(), ["/a/*"]);
    }

    #[test]
    fn finding_a_key_stops_at_the_first_hit() {
        let mut seen = Vec::new();
        let hit = name("/a/b/c").find_subscribers_key(|key| {
            seen.push(key.to_owned());
            (key == "/a/b/**" || key == "/**").then_some(key.len())
        });
        assert_eq!(hit, Some(7));
        assert_eq!(seen, ["/a/b/c", "/a/b/*", "/a/b/**"]);
        assert_eq!(name("/a").find_subscribers_key(|_| None::<()>), None);
        assert_eq!(
            name("/a/*").find_subscribers_key(|k| Some(k.to_owned())),
            Some("/a/*".into())
        );
    }

    #[test]
    fn wildcard_matching() {
        let one = name("/a/*");
        let any = name("/a/**");
        assert!(one.matches(&name("/a/b")));
        assert!(!one.matches(&name("/a/b/c")));
        assert!(!one.matches(&name("/a")));
        assert!(!one.matches(&name("/ab")));
        assert!(any.matches(&name("/a/b")));
        assert!(any.matches(&name("/a/b/c")));
        assert!(!any.matches(&name("/a")));
        assert!(!any.matches(&name("/ab/c")));
        assert!(name("/**").matches(&name("/x/y")));
        assert!(name("/*").matches(&name("/x")));
        assert!(!name("/*").matches(&name("/x/y")));
    }

    #[test]
    fn subscribers_keys_agree_with_matches() {
        let patterns = [
            "/a", "/a/b", "/a/*", "/a/**", "/a/b/*", "/a/b/**", "/*", "/**", "/b/*",
        ];
        for channel in ["/a", "/a/b", "/a/b/c", "/ab", "/b/a"] {
            let channel = name(channel);
            let keys = channel.subscribers_keys();
            for pattern in patterns {
                let by_keys = keys.iter().any(|k| k == pattern);
                assert_eq!(
                    by_keys,
                    name(pattern).matches(&channel),
                    "{pattern} vs {channel}"
                );
            }
        }
    }
}
