//! Local subscriptions: which stream receives which delivery, and the [`Subscription`] stream.
//!
//! Several local subscriptions may share one channel (or pattern): the server is asked to
//! subscribe for the first of them and to unsubscribe after the last, as the CometD JavaScript
//! client does. A delivery on a concrete channel goes to every subscription whose pattern matches
//! it (`/a/b` reaches `/a/b`, `/a/*`, `/a/**` and `/**`), once per subscription.

use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bayeux_message::{ChannelName, Message};
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::client::Inner;

/// The local subscriptions of one client.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next_id: u64,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    pattern: ChannelName,
    sender: mpsc::UnboundedSender<Message>,
}

impl Registry {
    /// Adds a subscription; `true` when it is the first one on `pattern` (the server must be
    /// told).
    pub fn add(&mut self, pattern: ChannelName) -> (u64, mpsc::UnboundedReceiver<Message>, bool) {
        let first = !self.entries.iter().any(|e| e.pattern == pattern);
        let (sender, receiver) = mpsc::unbounded_channel();
        self.next_id += 1;
        let id = self.next_id;
        self.entries.push(Entry {
            id,
            pattern,
            sender,
        });
        (id, receiver, first)
    }

    /// Removes a subscription; returns its pattern when it was the last one on it (the server
    /// must be told), `None` otherwise or when it was already gone.
    pub fn remove(&mut self, id: u64) -> Option<ChannelName> {
        let index = self.entries.iter().position(|e| e.id == id)?;
        let entry = self.entries.remove(index);
        let last = !self.entries.iter().any(|e| e.pattern == entry.pattern);
        last.then_some(entry.pattern)
    }

    /// The distinct channels subscribed to, oldest first: what a new session must subscribe to.
    pub fn channels(&self) -> Vec<ChannelName> {
        let mut channels: Vec<ChannelName> = Vec::new();
        for entry in &self.entries {
            if !channels.contains(&entry.pattern) {
                channels.push(entry.pattern.clone());
            }
        }
        channels
    }

    /// Hands a delivery on `channel` to every matching subscription; returns how many got it.
    pub fn deliver(&self, channel: &ChannelName, message: &Message) -> usize {
        let mut delivered = 0;
        for entry in &self.entries {
            // A receiver dropped without unsubscribing (its Drop runs later) simply misses it.
            if entry.pattern.matches(channel) && entry.sender.send(message.clone()).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Ends every stream (the client is disconnected).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// The messages delivered on one channel or pattern, as a [`Stream`].
///
/// The stream ends when the client disconnects. Dropping it unsubscribes (in the background,
/// when it was the last local subscription on its channel); [`Subscription::unsubscribe`] does
/// the same and waits for the server's reply.
///
/// Messages wait in an unbounded queue until read: a consumer that stops reading while the
/// server keeps publishing grows it.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    channel: ChannelName,
    receiver: mpsc::UnboundedReceiver<Message>,
    client: Weak<Inner>,
    active: bool,
}

impl Subscription {
    pub(crate) fn new(
        id: u64,
        channel: ChannelName,
        receiver: mpsc::UnboundedReceiver<Message>,
        client: &Arc<Inner>,
    ) -> Self {
        Self {
            id,
            channel,
            receiver,
            client: Arc::downgrade(client),
            active: true,
        }
    }

    /// Makes dropping this subscription send nothing to the server.
    pub(crate) fn deactivate(&mut self) {
        self.active = false;
    }

    /// The channel or pattern subscribed to.
    pub fn channel(&self) -> &str {
        self.channel.as_str()
    }

    /// Stops the subscription; when it was the last local one on its channel, tells the server
    /// and waits for its reply.
    pub async fn unsubscribe(mut self) -> Result<(), crate::Error> {
        self.active = false;
        let Some(client) = self.client.upgrade() else {
            return Ok(());
        };
        let last = client.remove_subscription(self.id);
        match last {
            Some(channel) => client.unsubscribe_remote(channel).await,
            None => Ok(()),
        }
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let Some(client) = self.client.upgrade() else {
            return;
        };
        if let Some(channel) = client.remove_subscription(self.id) {
            // Drop cannot wait: tell the server from a task, when there is a runtime to run it.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = client.unsubscribe_remote(channel).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn name(raw: &str) -> ChannelName {
        ChannelName::parse(raw).expect("valid channel")
    }

    fn delivery(channel: &str, n: u64) -> Message {
        Message::new()
            .with("channel", channel)
            .with("data", json!(n))
    }

    fn drain(receiver: &mut mpsc::UnboundedReceiver<Message>) -> Vec<Message> {
        let mut out = Vec::new();
        while let Ok(m) = receiver.try_recv() {
            out.push(m);
        }
        out
    }

    #[test]
    fn server_is_told_on_first_and_last_local_subscription() {
        let mut registry = Registry::default();
        let (a, _ra, first_a) = registry.add(name("/chat"));
        let (b, _rb, first_b) = registry.add(name("/chat"));
        let (c, _rc, first_c) = registry.add(name("/news/*"));
        assert_eq!((first_a, first_b, first_c), (true, false, true));
        assert_eq!(registry.channels(), [name("/chat"), name("/news/*")]);
        assert_eq!(registry.remove(a), None);
        assert_eq!(registry.remove(a), None, "removing twice is harmless");
        assert_eq!(registry.remove(b), Some(name("/chat")));
        assert_eq!(registry.remove(c), Some(name("/news/*")));
        assert!(registry.channels().is_empty());
    }

    #[test]
    fn deliveries_reach_every_matching_pattern_once() {
        let mut registry = Registry::default();
        let (_, mut exact, _) = registry.add(name("/a/b"));
        let (_, mut one, _) = registry.add(name("/a/*"));
        let (_, mut deep, _) = registry.add(name("/a/**"));
        let (_, mut all, _) = registry.add(name("/**"));
        let (_, mut other, _) = registry.add(name("/b/*"));

        assert_eq!(registry.deliver(&name("/a/b"), &delivery("/a/b", 1)), 4);
        assert_eq!(registry.deliver(&name("/a/b/c"), &delivery("/a/b/c", 2)), 2);
        assert_eq!(registry.deliver(&name("/ab"), &delivery("/ab", 3)), 1);

        assert_eq!(drain(&mut exact), [delivery("/a/b", 1)]);
        assert_eq!(drain(&mut one), [delivery("/a/b", 1)]);
        assert_eq!(
            drain(&mut deep),
            [delivery("/a/b", 1), delivery("/a/b/c", 2)]
        );
        assert_eq!(
            drain(&mut all),
            [
                delivery("/a/b", 1),
                delivery("/a/b/c", 2),
                delivery("/ab", 3)
            ]
        );
        assert_eq!(drain(&mut other), []);
    }

    #[test]
    fn clear_ends_the_streams() {
        let mut registry = Registry::default();
        let (_, mut receiver, _) = registry.add(name("/x"));
        registry.clear();
        assert_eq!(
            receiver.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        );
    }
}
