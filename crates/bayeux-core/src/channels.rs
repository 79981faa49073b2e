//! Channels as the server knows them: created when first used, configured with options,
//! removed after a few sweeps without use (unless persistent).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use bayeux_message::ChannelName;
use dashmap::DashMap;

/// Options of one channel (or pattern).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelOptions {
    /// Never removed, even when nobody uses it.
    pub persistent: bool,
    /// Overrides the server's `broadcastToPublisher` for publishes on this channel.
    pub broadcast_to_publisher: Option<bool>,
    /// Messages on this channel (on every matching channel, for a pattern) are lazy: queued
    /// without waking the client, sent with its next non-lazy message, its next connect
    /// reply, or after the lazy timeout, whichever comes first.
    pub lazy: bool,
    /// How long lazy messages may wait (at most the server's `maxLazyTimeout`).
    pub lazy_timeout: Option<Duration>,
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
    /// Channels configured lazy, so publishes skip the lazy lookup while there are none.
    lazy: AtomicUsize,
}

impl Channels {
    /// Marks `name` as used; returns true when this created it.
    pub(crate) fn touch(&self, name: &ChannelName) -> bool {
        self.try_touch(name, usize::MAX).unwrap_or(false)
    }

    /// Marks `name` as used, creating it unless `max` channels exist already (`Err`);
    /// returns true when this created it.
    pub(crate) fn try_touch(&self, name: &ChannelName, max: usize) -> Result<bool, ()> {
        if let Some(entry) = self.entries.get(name) {
            entry.idle_sweeps.store(0, Ordering::Relaxed);
            return Ok(false);
        }
        // The count and the insert are not atomic together: concurrent creations may pass
        // the cap by a few, which is fine for a guard against unbounded growth.
        if self.entries.len() >= max {
            return Err(());
        }
        let mut created = false;
        self.entries.entry(name.clone()).or_insert_with(|| {
            created = true;
            Entry {
                options: ChannelOptions::default(),
                idle_sweeps: AtomicU8::new(0),
            }
        });
        Ok(created)
    }

    /// Sets the options of `name`, creating it if needed; returns true when this created it.
    pub(crate) fn configure(&self, name: &ChannelName, options: ChannelOptions) -> bool {
        let created = self.touch(name);
        if let Some(mut entry) = self.entries.get_mut(name) {
            match (entry.options.lazy, options.lazy) {
                (false, true) => self.lazy.fetch_add(1, Ordering::Relaxed),
                (true, false) => self.lazy.fetch_sub(1, Ordering::Relaxed),
                _ => 0,
            };
            entry.options = options;
        }
        created
    }

    /// How long a message on `channel` may wait, if it is lazy: the channel's own lazy
    /// timeout, or that of the nearest lazy pattern matching it, capped at `max`.
    pub(crate) fn lazy_timeout(&self, channel: &ChannelName, max: Duration) -> Option<Duration> {
        if self.lazy.load(Ordering::Relaxed) == 0 {
            return None;
        }
        // The channel itself, then the patterns that match it; a lazy concrete parent does
        // not make its children lazy, only patterns do.
        channel.find_subscribers_key(|key| {
            let entry = self.entries.get(key)?;
            entry
                .options
                .lazy
                .then(|| entry.options.lazy_timeout.unwrap_or(max).min(max))
        })
    }

    pub(crate) fn options(&self, name: &ChannelName) -> Option<ChannelOptions> {
        self.entries.get(name).map(|entry| entry.options.clone())
    }

    /// Counts one more idle sweep for every unused channel and removes those idle long
    /// enough; returns the removed names.
    pub(crate) fn sweep(&self, in_use: impl Fn(&ChannelName) -> bool) -> Vec<ChannelName> {
        let mut due = Vec::new();
        for entry in self.entries.iter() {
            // A lazy channel is configuration too: keep it.
            if entry.options.persistent || entry.options.lazy || in_use(entry.key()) {
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
                    !entry.options.persistent && !entry.options.lazy && !in_use(name)
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
