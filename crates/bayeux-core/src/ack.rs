//! The `ack` extension: acknowledged, ordered server-to-client delivery.
//!
//! A client that handshakes with `ext.ack: true` gets it back and numbered connect replies
//! (`ext.ack: 1, 2, ...`). Each connect request acknowledges the last batch it received; what
//! was sent in a later batch and not acknowledged (a lost response) is sent again, in order,
//! before anything new. Such a session receives deliveries only in connect replies.

use std::collections::VecDeque;

use bayeux_message::{EncodedMessage, Message, Reply};
use serde_json::Value;

use crate::extension::Extension;
use crate::session::{Queued, Session};

/// The server side of CometD's acknowledged-messages extension.
#[derive(Debug, Default)]
pub struct AckExtension;

impl Extension for AckExtension {
    fn incoming(&self, session: Option<&Session>, message: &mut Message) -> bool {
        if message.channel() == Some("/meta/connect") {
            let acked = message
                .ext()
                .and_then(|ext| ext.get("ack"))
                .and_then(Value::as_u64);
            if let (Some(session), Some(batch)) = (session, acked) {
                session.acknowledge(batch);
            }
        }
        true
    }

    fn outgoing_reply(&self, session: Option<&Session>, request: &Message, reply: &mut Reply) {
        let Some(session) = session.filter(|_| reply.successful) else {
            return;
        };
        match request.channel() {
            Some("/meta/handshake") => {
                // Only the JSON boolean `true` enables it, as in Java CometD.
                let asked =
                    request.ext().and_then(|ext| ext.get("ack")) == Some(&Value::Bool(true));
                if asked {
                    session.enable_ack();
                    reply
                        .ext
                        .get_or_insert_with(Default::default)
                        .insert("ack".into(), Value::Bool(true));
                }
            }
            Some("/meta/connect") => {
                if let Some(batch) = session.ack_batch_sent() {
                    reply
                        .ext
                        .get_or_insert_with(Default::default)
                        .insert("ack".into(), batch.into());
                }
            }
            _ => {}
        }
    }
}

/// How the batches of acknowledged delivery are numbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AckNumbering {
    /// 1, 2, 3, ...: one number per connect reply, as Java CometD does (one node).
    Batches,
    /// The log position of the newest message sent so far: the number a client acknowledges
    /// then says exactly what it has, to whichever node of a cluster it reaches next, with
    /// nothing written anywhere per batch. Never decreases; an empty reply repeats it.
    Positions,
}

/// Messages sent to an acking client and not yet acknowledged, by batch.
#[derive(Debug)]
pub(crate) struct AckQueue {
    numbering: AckNumbering,
    /// The batch number of the next connect reply (`Batches`); batches start at 1.
    next_batch: u64,
    /// The batch number of the last connect reply built.
    sent_batch: Option<u64>,
    /// The highest batch number acknowledged.
    acknowledged: u64,
    /// Each message with the number that acknowledges it: its batch, or its position.
    unacked: VecDeque<(u64, EncodedMessage)>,
}

impl AckQueue {
    /// An empty queue; with `Positions`, `base` is the position the client has everything up
    /// to (its first reply carries it).
    pub(crate) fn new(numbering: AckNumbering, base: u64) -> Self {
        let positions = numbering == AckNumbering::Positions;
        Self {
            numbering,
            next_batch: 1,
            sent_batch: positions.then_some(base),
            acknowledged: if positions { base } else { 0 },
            unacked: VecDeque::new(),
        }
    }

    /// Forgets everything sent in batches up to `batch`; true when that moved the
    /// acknowledged mark.
    pub(crate) fn acknowledge(&mut self, batch: u64) -> bool {
        while self.unacked.front().is_some_and(|(b, _)| *b <= batch) {
            self.unacked.pop_front();
        }
        let moved = batch > self.acknowledged;
        self.acknowledged = self.acknowledged.max(batch);
        moved
    }

    /// Some message was sent and never acknowledged: its response was lost.
    pub(crate) fn needs_resend(&self) -> bool {
        !self.unacked.is_empty()
    }

    /// Numbers `fresh` as the next batch and returns everything unacknowledged, oldest first.
    pub(crate) fn send(&mut self, fresh: impl IntoIterator<Item = Queued>) -> Vec<EncodedMessage> {
        match self.numbering {
            AckNumbering::Batches => {
                let batch = self.next_batch;
                self.unacked
                    .extend(fresh.into_iter().map(|q| (batch, q.message)));
                self.next_batch += 1;
                self.sent_batch = Some(batch);
            }
            AckNumbering::Positions => {
                let mut newest = self.sent_batch.unwrap_or(0);
                for q in fresh {
                    newest = newest.max(q.position);
                    self.unacked.push_back((q.position, q.message));
                }
                self.sent_batch = Some(newest);
            }
        }
        self.unacked.iter().map(|(_, m)| m.clone()).collect()
    }

    pub(crate) fn sent_batch(&self) -> Option<u64> {
        self.sent_batch
    }

    /// The highest batch number the client acknowledged.
    pub(crate) fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    pub(crate) fn len(&self) -> usize {
        self.unacked.len()
    }
}
