//! Per-channel registrations (authorizers, services, message listeners), keyed by channel
//! name or pattern and looked up with the same wildcard keys as subscriptions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bayeux_message::ChannelName;
use dashmap::DashMap;

/// Things registered on channels and patterns.
pub(crate) struct ChannelRegistry<T: ?Sized> {
    by_name: DashMap<ChannelName, Vec<Arc<T>>>,
    /// Registrations in all, so the common case (none) costs one atomic load per lookup.
    count: AtomicUsize,
}

impl<T: ?Sized> Default for ChannelRegistry<T> {
    fn default() -> Self {
        Self {
            by_name: DashMap::new(),
            count: AtomicUsize::new(0),
        }
    }
}

impl<T: ?Sized> ChannelRegistry<T> {
    pub(crate) fn add(&self, name: ChannelName, item: Arc<T>) {
        self.by_name.entry(name).or_default().push(item);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// True when something is registered on exactly `name`.
    pub(crate) fn contains(&self, name: &ChannelName) -> bool {
        self.count.load(Ordering::Relaxed) > 0 && self.by_name.contains_key(name)
    }

    /// Everything registered on `channel` itself or on a pattern matching it, the exact
    /// channel first, then the nearest patterns.
    pub(crate) fn matching(&self, channel: &ChannelName) -> Vec<Arc<T>> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut add = |key: &str| {
            if let Some(items) = self.by_name.get(key) {
                found.extend(items.iter().cloned());
            }
        };
        if channel.is_wildcard() {
            keys(channel).iter().for_each(|key| add(key));
        } else {
            // Every publish to a channel with a registration somewhere comes here.
            channel.for_each_subscribers_key(add);
        }
        found
    }
}

/// The names whose registrations apply to `channel`: the subscription keys of a concrete
/// channel; for a pattern, itself and the `/**` patterns of its ancestors.
fn keys(channel: &ChannelName) -> Vec<String> {
    if !channel.is_wildcard() {
        return channel.subscribers_keys();
    }
    let name = channel.as_str();
    let parent = &name[..name.rfind('/').expect("valid names start with '/'")];
    let mut keys = vec![name.to_owned()];
    let deep = format!("{parent}/**");
    if deep != name {
        keys.push(deep);
    }
    let mut end = parent.len();
    while end > 0 {
        end = name[..end].rfind('/').expect("ancestors start with '/'");
        keys.push(format!("{}/**", &name[..end]));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(raw: &str) -> ChannelName {
        ChannelName::parse(raw).expect("valid")
    }

    #[test]
    fn pattern_keys_include_deeper_ancestor_patterns() {
        assert_eq!(keys(&name("/a/b/*")), ["/a/b/*", "/a/b/**", "/a/**", "/**"]);
        assert_eq!(keys(&name("/a/b/**")), ["/a/b/**", "/a/**", "/**"]);
        assert_eq!(keys(&name("/a/*")), ["/a/*", "/a/**", "/**"]);
        assert_eq!(keys(&name("/**")), ["/**"]);
        assert_eq!(keys(&name("/a/b")), ["/a/b", "/a/*", "/a/**", "/**"]);
    }

    #[test]
    fn matching_finds_exact_then_patterns() {
        let registry: ChannelRegistry<str> = ChannelRegistry::default();
        assert!(registry.matching(&name("/a/b")).is_empty());
        registry.add(name("/a/**"), Arc::from("deep"));
        registry.add(name("/a/b"), Arc::from("exact"));
        registry.add(name("/c"), Arc::from("other"));
        let found: Vec<_> = registry
            .matching(&name("/a/b"))
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(found, ["exact", "deep"]);
    }
}
