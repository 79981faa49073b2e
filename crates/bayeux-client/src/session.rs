//! The background task that keeps the session: handshake, then `/meta/connect` after
//! `/meta/connect`, as the server's advice and the backoff say (see `advice.rs`).
//!
//! The connect is the heartbeat: the server holds it until it has something to deliver or its
//! timeout passes, and a session without one expires. So this loop runs for as long as the
//! client, and all the other requests run beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bayeux_message::Message;
use serde_json::{json, Value};

use crate::advice::{after_connect, after_handshake, Next, Outcome};
use crate::client::{Expect, Inner, Status};
use crate::error::{is_successful, Error};
use crate::transport::{TransportError, TransportKind};

/// What the loop remembers between steps.
struct Session {
    inner: Arc<Inner>,
    /// Consecutive failures (handshakes or connects), for the backoff.
    failures: u32,
    /// The next connect asks the server to answer at once (`advice.timeout: 0`): after a
    /// handshake and after a failure, the client wants to know where it stands.
    answer_at_once: bool,
    /// The last time a connect succeeded (or the session began).
    connected_at: Instant,
}

/// Runs the session until it stops (server advice) or the client shuts it down.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let mut session = Session {
        inner: inner.clone(),
        failures: 0,
        answer_at_once: true,
        connected_at: Instant::now(),
    };
    let mut next = Next::Handshake {
        delay: Duration::ZERO,
    };
    loop {
        let step = async {
            match next {
                Next::Handshake { delay } => {
                    tokio::time::sleep(delay).await;
                    session.handshake().await
                }
                Next::Connect { delay } => {
                    tokio::time::sleep(delay).await;
                    session.connect().await
                }
                Next::Stop => Next::Stop,
            }
        };
        tokio::select! {
            step = step => next = step,
            // Whoever shuts the session down also ends it (disconnect, or the last handle).
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if next == Next::Stop {
            inner.terminate().await;
            return;
        }
    }
}

impl Session {
    async fn handshake(&mut self) -> Next {
        let inner = self.inner.clone();
        // A new session: the old one's socket and id are of no use any more.
        inner.close_socket().await;
        let transports = inner.usable_transports();
        let Some(&transport) = transports.first() else {
            self.record_handshake_failure(Error::HandshakeFailed(
                "the server offers none of the client's transports".into(),
            ));
            return Next::Stop;
        };
        {
            let mut state = inner.lock();
            state.client_id = None;
            state.transport = transport;
        }
        inner.progress.send_if_modified(|p| {
            std::mem::replace(&mut p.status, Status::Connecting) != Status::Connecting
        });

        let message = inner.handshake_message();
        let result = inner
            .exchange(
                vec![(message, Expect::Reply)],
                inner.config.max_network_delay,
            )
            .await
            .pop()
            .expect("one result per message");
        let reply = match result {
            Ok(reply) => reply,
            // The upgrade was refused: try the next transport at once (no failure counted, as
            // nothing is wrong with the server).
            Err(Error::Transport(TransportError::WebSocketRefused(_))) => {
                return Next::Handshake {
                    delay: Duration::ZERO,
                }
            }
            Err(Error::Disconnected) => return Next::Stop,
            Err(e) => {
                self.failures += 1;
                self.record_handshake_failure(e);
                let advice = inner.lock().advice;
                return after_handshake(
                    Outcome::Lost,
                    &advice,
                    self.failures,
                    &inner.config.backoff,
                );
            }
        };

        if is_successful(&reply) {
            match self.negotiate(&reply, transport) {
                Ok(()) => {}
                Err(next) => return next,
            }
            self.failures = 0;
            self.answer_at_once = true;
            self.connected_at = Instant::now();
            let client_id = reply.client_id().map(str::to_owned);
            inner.lock().client_id = client_id;
            self.resubscribe().await;
            inner.progress.send_modify(|p| {
                p.status = Status::Connected;
                p.handshakes += 1;
                p.handshake_failures = 0;
                p.last_error = None;
            });
        } else {
            self.failures += 1;
            let error = reply
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_owned();
            self.record_handshake_failure(Error::HandshakeFailed(error));
        }
        let advice = inner.lock().advice;
        after_handshake(
            Outcome::Reply(&reply),
            &advice,
            self.failures,
            &inner.config.backoff,
        )
    }

    /// Checks the transport against the server's `supportedConnectionTypes`: `Err` with the
    /// next step when the session cannot go on with the transport it was handshaken on.
    fn negotiate(&self, reply: &Message, used: TransportKind) -> Result<(), Next> {
        let offered: Option<Vec<TransportKind>> = reply
            .get("supportedConnectionTypes")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().and_then(TransportKind::from_name))
                    .collect()
            });
        let Some(offered) = offered else {
            // Not said: the transport that carried the handshake will do.
            return Ok(());
        };
        let chosen = self
            .inner
            .usable_transports()
            .into_iter()
            .find(|k| offered.contains(k));
        match chosen {
            Some(kind) if kind == used => Ok(()),
            Some(_) => {
                // Handshaken over a websocket the server does not offer for sessions (or not
                // first): start again on the negotiated transport. The unused session expires.
                if used == TransportKind::WebSocket {
                    self.inner.lock().websocket_refused = true;
                }
                Err(Next::Handshake {
                    delay: Duration::ZERO,
                })
            }
            None => {
                self.record_handshake_failure(Error::HandshakeFailed(
                    "the server offers none of the client's transports".into(),
                ));
                Err(Next::Stop)
            }
        }
    }

    async fn connect(&mut self) -> Next {
        let inner = self.inner.clone();
        let (transport, advice) = {
            let state = inner.lock();
            (state.transport, state.advice)
        };
        let mut message = Message::new()
            .with("channel", "/meta/connect")
            .with("connectionType", transport.name());
        let timeout = if self.answer_at_once {
            message = message.with("advice", json!({"timeout": 0}));
            inner.config.max_network_delay
        } else {
            advice.timeout + inner.config.max_network_delay
        };
        let result = inner
            .exchange(vec![(message, Expect::Reply)], timeout)
            .await
            .pop()
            .expect("one result per message");
        let advice = inner.lock().advice;
        match result {
            Ok(reply) => {
                if is_successful(&reply) {
                    self.failures = 0;
                    self.answer_at_once = false;
                    self.connected_at = Instant::now();
                } else {
                    self.failures += 1;
                    self.answer_at_once = true;
                    self.record_error(Error::from_reply(reply.clone()));
                }
                after_connect(
                    Outcome::Reply(&reply),
                    &advice,
                    self.failures,
                    self.connected_at.elapsed(),
                    &inner.config.backoff,
                )
            }
            Err(Error::Disconnected) => Next::Stop,
            Err(e) => {
                self.failures += 1;
                self.answer_at_once = true;
                self.record_error(e);
                if transport == TransportKind::WebSocket {
                    // The socket may be half dead (that is one way to lose a reply): the next
                    // connect opens a fresh one.
                    inner.close_socket().await;
                    if inner.lock().websocket_refused {
                        // The server stopped offering websockets: new session, next transport.
                        return Next::Handshake {
                            delay: inner.config.backoff.delay(self.failures),
                        };
                    }
                }
                after_connect(
                    Outcome::Lost,
                    &advice,
                    self.failures,
                    self.connected_at.elapsed(),
                    &inner.config.backoff,
                )
            }
        }
    }

    /// Subscribes the new session to every channel the client has subscriptions on.
    async fn resubscribe(&self) {
        let channels = self.inner.lock().subscriptions.channels();
        if channels.is_empty() {
            return;
        }
        let messages = channels
            .iter()
            .map(|channel| {
                let message = Message::new()
                    .with("channel", "/meta/subscribe")
                    .with("subscription", channel.as_str());
                (message, Expect::Reply)
            })
            .collect();
        // A refusal leaves that subscription without deliveries; nothing better can be done
        // from here than to keep the others.
        let _ = self
            .inner
            .exchange(messages, self.inner.config.max_network_delay)
            .await;
    }

    fn record_handshake_failure(&self, error: Error) {
        self.inner.progress.send_modify(|p| {
            p.handshake_failures += 1;
            p.last_error = Some(error);
        });
    }

    fn record_error(&self, error: Error) {
        self.inner
            .progress
            .send_modify(|p| p.last_error = Some(error));
    }
}
