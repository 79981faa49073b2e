//! Held `/meta/connect`s and websocket pushers: how a session's deliveries leave the server.
//!
//! A connect that must wait comes back from [`Engine::handle`] as a [`Hold`]; the driver awaits
//! [`Hold::poll_released`] or the deadline, then calls [`Engine::complete_hold`] for the reply.
//! A websocket attaches a [`Pusher`] instead, which is ready whenever deliveries are queued.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bayeux_message::{Advice, ClientId, EncodedMessage, Reconnect, Refusal, Reply};

use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::listener::RemovalReason;
use crate::log::LogMode;
use crate::session::{PusherSlot, Session};

/// How a held connect ended.
#[derive(Debug)]
pub enum HoldEnd {
    /// Send these messages: deliveries, then the connect reply.
    Reply(Vec<EncodedMessage>),
    /// A newer connect of the same session replaced this one; answer with an HTTP error.
    Superseded,
}

/// A `/meta/connect` being held. Await [`Hold::poll_released`] or the deadline, whichever is
/// first, then [`Engine::complete_hold`].
#[derive(Debug)]
pub struct Hold {
    session: Arc<Session>,
    ticket: u64,
    deadline: Instant,
}

impl Hold {
    pub(crate) fn new(session: Arc<Session>, ticket: u64, deadline: Instant) -> Self {
        Self {
            session,
            ticket,
            deadline,
        }
    }

    /// When the connect must be answered even if nothing happens.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The session holding.
    pub fn client_id(&self) -> &ClientId {
        self.session.client_id()
    }

    /// Ready once the connect should be answered early: a message was queued, the session was
    /// disconnected or moved to another node, a newer connect superseded this one, or the
    /// server is shutting down.
    pub fn poll_released(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.session.poll_hold(self.ticket, cx)
    }

    /// How long to wait, once released, before answering: the flush window when a delivery
    /// released it (more may come to go in the same answer), else nothing.
    pub fn flush_delay(&self, config: &EngineConfig) -> Duration {
        if !config.flush_window.is_zero() && self.session.hold_released_for_delivery(self.ticket) {
            config.flush_window
        } else {
            Duration::ZERO
        }
    }

    /// True while nothing has released the hold.
    pub fn is_pending(&self) -> bool {
        self.session.is_hold_pending(self.ticket)
    }
}

/// A websocket connection's claim to push one session's deliveries. Dropping it detaches the
/// connection; queued messages then wait for the next `/meta/connect`.
#[derive(Debug)]
pub struct Pusher {
    session: Arc<Session>,
    connection: u64,
    deliver_only: bool,
}

impl Pusher {
    /// The session whose deliveries this connection pushes.
    pub fn client_id(&self) -> &ClientId {
        self.session.client_id()
    }

    /// Ready with the queued deliveries, in order, once there are some. Stays pending while
    /// deliveries go only with connect replies (`metaConnectDeliverOnly`), after another
    /// connection took the session over, or once the session is gone.
    pub fn poll_deliveries(&self, cx: &mut Context<'_>) -> Poll<Vec<EncodedMessage>> {
        if self.deliver_only {
            return Poll::Pending;
        }
        let mut st = self.session.lock();
        // Acknowledged delivery, enabled by the handshake, also means deliver-only.
        if st.removed || st.ack.is_some() {
            return Poll::Pending;
        }
        let queue_ready = !st.queue.is_empty();
        match st.pusher.as_mut() {
            Some(slot) if slot.connection == self.connection => {
                if !queue_ready {
                    slot.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
            _ => return Poll::Pending,
        }
        Poll::Ready(st.drain_queue())
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        let mut st = self.session.lock();
        if st
            .pusher
            .as_ref()
            .is_some_and(|p| p.connection == self.connection)
        {
            st.pusher = None;
        }
    }
}

impl Engine {
    /// Answers a held connect: its queued deliveries, then its reply.
    pub fn complete_hold(&self, now: Instant, hold: Hold) -> HoldEnd {
        if self.log_mode == LogMode::Inline && self.drain_due(hold.session.client_id(), now) {
            return self.drain_hold(&hold);
        }
        let (request, mut messages, reply) = {
            let mut st = hold.session.lock();
            let slot = match st.hold.take() {
                Some(slot) if slot.ticket == hold.ticket => slot,
                other => {
                    st.hold = other;
                    return HoldEnd::Superseded;
                }
            };
            if let Some(browser) = &slot.browser {
                self.release_browser_slot(browser);
            }
            let request = slot.request(hold.session.client_id());
            let mut reply = Reply::success(&request);
            if st.moved {
                // Another node serves the session now: come back at once (the balancer
                // decides where), and get what is queued from there.
                reply.advice = Some(Advice {
                    reconnect: Some(Reconnect::Retry),
                    interval: Some(0),
                    ..Advice::default()
                });
                (request, Vec::new(), reply)
            } else if st.removed {
                reply.advice = Some(Advice::stop());
                (request, Vec::new(), reply)
            } else {
                if std::mem::take(&mut st.readvise) || self.shutting_down.load(Ordering::Relaxed) {
                    reply.advice = Some(self.connect_advice(&st));
                }
                st.expire_at = now + st.interval + self.config.max_interval;
                (request, st.drain_for_connect(), reply)
            }
        };
        messages.push(self.outgoing_reply(Some(&hold.session), &request, reply));
        HoldEnd::Reply(messages)
    }

    /// Answers a held connect of a draining server: `503::draining`, handshake elsewhere;
    /// the session is removed.
    fn drain_hold(&self, hold: &Hold) -> HoldEnd {
        // What is already queued goes out with the answer, ahead of it.
        let (request, mut messages) = {
            let mut st = hold.session.lock();
            match st.hold.take() {
                Some(slot) if slot.ticket == hold.ticket => {
                    if let Some(browser) = &slot.browser {
                        self.release_browser_slot(browser);
                    }
                    (
                        slot.request(hold.session.client_id()),
                        st.drain_for_connect(),
                    )
                }
                other => {
                    st.hold = other;
                    return HoldEnd::Superseded;
                }
            }
        };
        self.remove_session(&hold.session, RemovalReason::Drained);
        let reply = Refusal::Draining.reply_to(&request);
        messages.push(self.outgoing_reply(Some(&hold.session), &request, reply));
        HoldEnd::Reply(messages)
    }

    /// Forgets a held connect whose waiter went away without an answer (client gone): the
    /// session then expires as if the connect had been answered at its deadline.
    pub fn abandon_hold(&self, now: Instant, hold: &Hold) {
        let mut st = hold.session.lock();
        if st
            .hold
            .as_ref()
            .is_some_and(|slot| slot.ticket == hold.ticket)
        {
            let slot = st.hold.take().expect("checked just above");
            if let Some(browser) = &slot.browser {
                self.release_browser_slot(browser);
            }
            // As if the connect had been answered at its deadline: a client that went away
            // mid-hold gets the same grace as one that stopped polling after a reply.
            st.expire_at = slot.deadline.max(now) + st.interval + self.config.max_interval;
        }
    }

    /// Attaches a websocket connection to push `client_id`'s deliveries as they are queued,
    /// replacing any connection attached before. `None` when the session does not exist.
    pub fn attach_pusher(&self, client_id: &str) -> Option<Pusher> {
        let session = self.session(client_id)?;
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        session.lock().pusher = Some(PusherSlot {
            connection,
            waker: None,
        });
        Some(Pusher {
            session,
            connection,
            deliver_only: self.config.meta_connect_deliver_only,
        })
    }
}
