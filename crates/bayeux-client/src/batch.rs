//! Several publishes sent as one request.

use bayeux_message::Message;
use serde_json::Value;

use crate::Error;

/// Publishes gathered to be sent together: one HTTP POST, or one websocket frame.
///
/// The server processes a batch in order, so subscribers receive its messages in the order
/// they were added. Build one inside [`Client::batch`](crate::Client::batch), or on its own
/// and send it with [`Client::send_batch`](crate::Client::send_batch).
#[derive(Debug, Default)]
pub struct Batch {
    messages: Vec<Message>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a publish of `data` on `channel`.
    pub fn publish(&mut self, channel: &str, data: Value) -> Result<&mut Self, Error> {
        self.messages
            .push(crate::client::publish_message(channel, data)?);
        Ok(self)
    }

    /// How many messages the batch holds.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub(crate) fn into_messages(self) -> Vec<Message> {
        self.messages
    }
}
