//! The subscription index: which sessions receive a message published on a channel.
//!
//! Keyed by subscription name (exact channel or pattern) in a sharded map, so subscribes and
//! publishes on different channels do not contend. Routing a publish on `/a/b/c` looks up only
//! the keys of [`ChannelName::for_each_subscribers_key`], never scans all patterns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bayeux_message::{ChannelName, ClientId};
use dashmap::DashMap;

use crate::session::Session;

/// Subscribers by subscription name.
#[derive(Default)]
pub struct SubscriptionIndex {
    by_name: DashMap<ChannelName, HashMap<ClientId, Arc<Session>>>,
}

impl SubscriptionIndex {
    pub(crate) fn add(&self, name: &ChannelName, session: &Arc<Session>) {
        self.by_name
            .entry(name.clone())
            .or_default()
            .insert(session.client_id().clone(), Arc::clone(session));
    }

    pub(crate) fn remove(&self, name: &ChannelName, client_id: &ClientId) {
        if let Some(mut subscribers) = self.by_name.get_mut(name) {
            subscribers.remove(client_id);
        }
        // Drop the entry once empty so channels nobody listens to cost nothing.
        self.by_name
            .remove_if(name, |_, subscribers| subscribers.is_empty());
    }

    /// Every session that receives a message published on `channel`, each exactly once.
    pub fn subscribers(&self, channel: &ChannelName) -> Vec<Arc<Session>> {
        let mut found: Vec<Arc<Session>> = Vec::new();
        let mut sources = 0;
        channel.for_each_subscribers_key(|key| {
            if let Some(subscribers) = self.by_name.get(key) {
                if !subscribers.is_empty() {
                    sources += 1;
                    found.extend(subscribers.values().cloned());
                }
            }
        });
        if sources > 1 {
            // A session may subscribe through several matching names; it gets one copy.
            let mut seen = HashSet::with_capacity(found.len());
            found.retain(|s| seen.insert(Arc::as_ptr(s)));
        }
        found
    }

    /// True when somebody subscribes to exactly `name`.
    pub fn has_subscribers(&self, name: &ChannelName) -> bool {
        self.by_name.contains_key(name)
    }

    /// Number of subscription names with at least one subscriber.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when nobody subscribes to anything.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Subscriber count of each subscription name, sorted by name.
    pub fn counts(&self) -> Vec<(ChannelName, usize)> {
        let mut counts: Vec<_> = self
            .by_name
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().len()))
            .collect();
        counts.sort();
        counts
    }
}
