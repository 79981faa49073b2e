//! Channels as the server knows them: created when first used, configured with options,
//! removed after a few sweeps without use (unless persistent).

use std::sync::atomic::{AtomicU8, Ordering};

use bayeux_message::ChannelName;
use dashmap::DashMap;

/// Options of one channel (or pattern).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Never removed, even when nobody uses it.
    pub persistent: bool,
    /// Overrides the server's `broadcastToPublisher` for publishes on this channel.
    pub broadcast_to_publisher: Option<bool>,
}

/// Told when channels come and go.
pub trait ChannelListener: Send + Sync {
    /// A channel was created: first publish or subscribe, or configured.
    fn channel_added(&self, _channel: &ChannelName) {}
    /// A channel was removed after [`SWEEPS_BEFORE_REMOVAL`] sweeps without subscribers nor
    /// registrations.
    fn channel_removed(&self, _channel: &ChannelName) {}
}

/// Consecutive sweeps a channel must be unused before it is removed (as Java CometD).
pub const SWEEPS_BEFORE_REMOVAL: u8 = 3;

struct Entry {
    options: ChannelOptions,
    idle_sweeps: AtomicU8,
}

/// The channels that exist.
#[derive(Default)]
pub(crate) struct Channels {
    entries: DashMap<ChannelName, Entry>,
}

impl Channels {
    /// Marks `name` as used; returns true when this created it.
    pub(crate) fn touch(&self, name: &ChannelName) -> bool {
        if let Some(entry) = self.entries.get(name) {
            entry.idle_sweeps.store(0, Ordering::Relaxed);
            return false;
        }
        let mut created = false;
        self.entries.entry(name.clone()).or_insert_with(|| {
            created = true;
            Entry {
                options: ChannelOptions::default(),
                idle_sweeps: AtomicU8::new(0),
            }
        });
        created
    }

    /// Sets the options of `name`, creating it if needed; returns true when this created it.
    pub(crate) fn configure(&self, name: &ChannelName, options: ChannelOptions) -> bool {
        let created = self.touch(name);
        if let Some(mut entry) = self.entries.get_mut(name) {
            entry.options = options;
        }
        created
    }

    pub(crate) fn options(&self, name: &ChannelName) -> Option<ChannelOptions> {
        self.entries.get(name).map(|entry| entry.options.clone())
    }

    /// Counts one more idle sweep for every unused channel and removes those idle long
    /// enough; returns the removed names.
    pub(crate) fn sweep(&self, in_use: impl Fn(&ChannelName) -> bool) -> Vec<ChannelName> {
        let mut due = Vec::new();
        for entry in self.entries.iter() {
            if entry.options.persistent || in_use(entry.key()) {
                entry.idle_sweeps.store(0, Ordering::Relaxed);
            } else if entry.idle_sweeps.fetch_add(1, Ordering::Relaxed) + 1 >= SWEEPS_BEFORE_REMOVAL
            {
                due.push(entry.key().clone());
            }
        }
        // Checked again under the entry's lock: a subscribe may have come in meanwhile.
        due.retain(|name| {
            self.entries
                .remove_if(name, |name, entry| {
                    !entry.options.persistent && !in_use(name)
                })
                .is_some()
        });
        due
    }

    pub(crate) fn names(&self) -> Vec<ChannelName> {
        let mut names: Vec<_> = self.entries.iter().map(|e| e.key().clone()).collect();
        names.sort();
        names
    }
}
