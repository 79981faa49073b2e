//! Taking a session over: what a node does with a request for a session it does not serve.
//!
//! 1. Claim the session's lease in the registry (one atomic call): this node is its owner
//!    now, under a new epoch. The claim fails for an unknown session (the engine then answers
//!    `402::session_unknown`) or one bound to another browser cookie.
//! 2. If the former owner is alive, append a `Move` and wait for its `Released`, which carries
//!    the session's exact record; the reader adopts it at that very position of the log. If
//!    the former owner is dead, or released the session (drain, stop), or does not answer
//!    within `handoff_timeout`, adopt the registry's record instead. That record is exact
//!    whenever no node serves the session: a node letting go writes it there before it says
//!    so. Right after an outage of the backplane every heartbeat may have run out, so for
//!    `node_ttl` and a heartbeat after one a former owner is asked as if alive.
//! 3. Adopting replays the log after the record's checkpoint for that session alone: what it
//!    was sent (or acknowledged) is not sent again, what was queued for it is.
//!
//! Requests that arrive for a session while it is being taken over wait for that takeover.
//! One move of a session runs at a time in the whole cluster: a claim made while another
//! node's move is under way is answered "busy" and made again shortly. A session is never
//! released while one of its requests is being processed where it is (`Engine::use_session`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bayeux_core::{RequestContext, SessionInUse, SessionRecord, TransportKind};
use bayeux_message::{ClientId, Message, Refusal};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::backplane::{BackplaneError, Claim, CookieCheck, LogRecord, NodeId};
use crate::server::{now, Inner, Server};

use super::{Applied, Expected};

/// Where a takeover left the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Served here now.
    Here,
    /// No such session (or bound to another browser): the engine answers `402`.
    Nowhere,
}

/// How long a claim waits before trying again while another node moves the session.
const BUSY_RETRY: Duration = Duration::from_millis(10);

/// Most records read from the log per call while replaying.
const REPLAY_CHUNK: usize = 1000;
/// How often a takeover waiting for a release checks that the former owner still lives.
const LIVENESS_POLL: Duration = Duration::from_millis(200);

impl Server {
    /// Makes sure this node serves the session `batch` is for, taking it over from the node
    /// that served it if need be, and marks it in use until the guard is dropped. `Err` with
    /// what to answer when it cannot now.
    pub(crate) async fn serve_session_of(
        &self,
        ctx: &RequestContext,
        batch: &[Message],
    ) -> Result<Option<SessionInUse>, Refusal> {
        let inner = &self.inner;
        let cluster = inner.cluster();
        if !cluster.started.load(Ordering::Relaxed) {
            return Err(Refusal::BackplaneUnavailable);
        }
        let Some(first) = batch.first() else {
            return Ok(None);
        };
        let Some(cid) = first.client_id() else {
            return Ok(None);
        };
        if first.channel() == Some("/meta/handshake") || ctx.transport == TransportKind::Local {
            return Ok(None);
        }
        // A session taken over here may be moved on by another node's claim before this
        // request gets to use it: then it is taken over again.
        for _ in 0..3 {
            if let Some(in_use) = inner.engine.use_session(cid) {
                return Ok(Some(in_use));
            }
            match self.take_over_for(ctx, cid).await? {
                Served::Here => {}
                // The engine answers for an unknown session.
                Served::Nowhere => return Ok(None),
            }
        }
        Ok(inner.engine.use_session(cid))
    }

    /// Takes the session over for a request, or joins a takeover of it already running here.
    async fn take_over_for(&self, ctx: &RequestContext, cid: &str) -> Result<Served, Refusal> {
        let inner = &self.inner;
        let cluster = inner.cluster();
        if inner.engine.is_draining() || inner.engine.is_shutting_down() {
            return Err(Refusal::DrainingRetry);
        }
        // The registry checks the cookie like the engine does, so that a leaked clientId
        // alone cannot even move a session around.
        let cookie = if !ctx.transport.is_http() || inner.engine.config().trust_client_session {
            CookieCheck::Unchecked
        } else {
            match &ctx.browser {
                Some(presented) => CookieCheck::Presented(presented.clone()),
                None => CookieCheck::Absent,
            }
        };
        let client_id = ClientId::new(cid);
        let mut done = {
            let mut running = cluster.running();
            match running.get(&client_id) {
                Some(done) => done.clone(),
                None => {
                    let (tell, done) = watch::channel(None);
                    running.insert(client_id.clone(), done.clone());
                    // Its own task: a request that goes away must not leave the takeover
                    // (and the requests waiting for it) half done.
                    let server = self.clone();
                    tokio::spawn(async move {
                        let served = server.take_over(&client_id, cookie).await;
                        server.inner.cluster().running().remove(&client_id);
                        tell.send_replace(Some(served));
                    });
                    done
                }
            }
        };
        loop {
            if let Some(served) = *done.borrow_and_update() {
                return served.ok_or(Refusal::BackplaneUnavailable);
            }
            if done.changed().await.is_err() {
                return Err(Refusal::BackplaneUnavailable);
            }
        }
    }

    /// Claims and adopts a session; `None` when the backplane failed on the way.
    async fn take_over(&self, client_id: &ClientId, cookie: CookieCheck) -> Option<Served> {
        let inner = &self.inner;
        let cluster = inner.cluster();
        let backplane = &cluster.backplane;
        // The move may take the hand-over's time, and some more to replay.
        let move_ttl = cluster.options.handoff_timeout + Duration::from_secs(2);
        let give_up = Instant::now() + move_ttl;
        let (record, epoch, previous) = loop {
            let claim = backplane
                .claim(&cluster.node, client_id, &cookie, move_ttl)
                .await;
            cluster.note(&claim);
            match claim {
                Ok(Claim::Claimed {
                    record,
                    epoch,
                    previous,
                }) => break (record, epoch, previous),
                Ok(Claim::Denied | Claim::Unknown) => return Some(Served::Nowhere),
                // Another node is moving it: its move ends in a moment.
                Ok(Claim::Busy) if Instant::now() < give_up => {
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                Ok(Claim::Busy) | Err(_) => return None,
            }
        };
        let former = previous.filter(|node| *node != cluster.node);
        let mut timed_out = false;
        if let Some(former) = &former {
            match cluster.is_alive(former).await {
                Err(_) => return None,
                Ok(false) => {}
                Ok(true) => {
                    match self
                        .hand_over(client_id, epoch, former, record.clone())
                        .await
                    {
                        Ok(true) => return Some(Served::Here),
                        Ok(false) => timed_out = true,
                        Err(_) => return None,
                    }
                }
            }
        }
        // Nobody to wait for: the former owner is dead, released the session, or did not
        // answer in time. A former owner that let go wrote the session's exact record to the
        // registry before saying so: read it again, the claim's copy may predate that.
        let record = if timed_out {
            let found = backplane.lookup(client_id).await;
            cluster.note(&found);
            match found {
                Ok(Some(found)) => found.record,
                Ok(None) => return Some(Served::Nowhere),
                Err(_) => return None,
            }
        } else {
            record
        };
        let mut applied = cluster.applied.lock().await;
        if inner.engine.session(client_id.as_str()).is_some() {
            return Some(Served::Here);
        }
        if adopt(inner, &mut applied, record).await.is_err() {
            return None;
        }
        let counter = if timed_out {
            tracing::warn!(
                %client_id,
                former = ?former,
                "former node did not let go in time; took the session from its last checkpoint"
            );
            &cluster.stats.takeovers_timeout
        } else {
            &cluster.stats.takeovers_orphan
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(Served::Here)
    }

    /// Asks the live former owner to let go, and waits for the reader to adopt the session
    /// from its release. `Ok(false)` when it died or took too long.
    async fn hand_over(
        &self,
        client_id: &ClientId,
        epoch: u64,
        former: &NodeId,
        fallback: SessionRecord,
    ) -> Result<bool, BackplaneError> {
        let cluster = self.inner.cluster();
        let (adopted, mut was_adopted) = oneshot::channel();
        cluster.expected().insert(
            client_id.clone(),
            Expected {
                epoch,
                fallback,
                adopted,
            },
        );
        let forget = || {
            let mut expected = cluster.expected();
            if expected.get(client_id).is_some_and(|e| e.epoch == epoch) {
                expected.remove(client_id);
            }
        };
        let moved = LogRecord::Move {
            session: client_id.clone(),
            epoch,
            from: former.clone(),
        };
        let appended = cluster.backplane.append(vec![moved]).await;
        cluster.note(&appended);
        if let Err(error) = appended {
            forget();
            return Err(error);
        }
        let deadline = Instant::now() + cluster.options.handoff_timeout;
        loop {
            let pause = LIVENESS_POLL.min(deadline.saturating_duration_since(Instant::now()));
            tokio::select! {
                adopted = &mut was_adopted => return Ok(adopted.is_ok()),
                () = tokio::time::sleep(pause) => {}
            }
            if Instant::now() >= deadline || matches!(cluster.is_alive(former).await, Ok(false)) {
                forget();
                // The reader may have adopted it just now.
                return Ok(was_adopted.try_recv().is_ok());
            }
        }
    }
}

/// Serves a session from `record`: replays the log after its checkpoint, up to what this node
/// has applied, then lets the reader carry on with it. Called with the apply lock held, so
/// that no record is applied twice or missed. Fails, adopting nothing, when the part of the
/// log it needs cannot be read.
pub(crate) async fn adopt(
    inner: &Arc<Inner>,
    applied: &mut Applied,
    record: SessionRecord,
) -> Result<(), BackplaneError> {
    let cluster = inner.cluster();
    let after = record.position;
    let through = applied.position;
    let buffered_from = applied
        .recent
        .front()
        .map_or(through + 1, |(position, _)| *position);
    // What the in-memory buffer does not cover comes from the log itself.
    let mut older = Vec::new();
    let mut cursor = after;
    while cursor + 1 < buffered_from && cursor < through {
        let reads = cluster
            .backplane
            .range(cursor, buffered_from - 1, REPLAY_CHUNK)
            .await;
        cluster.note(&reads);
        let reads = reads?;
        let Some(last) = reads.last() else {
            break;
        };
        if reads[0].position > cursor + 1 {
            tracing::warn!(
                client_id = %record.client_id,
                from = cursor + 1,
                to = reads[0].position - 1,
                "log records a session needs were trimmed: raise the backplane's retention"
            );
        }
        cursor = last.position;
        older.extend(reads.into_iter().filter_map(|read| match read.record {
            LogRecord::Entry(entry) => Some((read.position, entry)),
            _ => None,
        }));
    }
    let now = now();
    let engine = &inner.engine;
    let session = engine.adopt(now, &record);
    let mut replayed = 0;
    for (position, entry) in older
        .iter()
        .map(|(p, e)| (*p, e))
        .chain(applied.recent.iter().map(|(p, e)| (*p, e)))
        .filter(|(position, _)| *position > after && *position <= through)
    {
        engine.replay(now, &session, position, entry);
        replayed += 1;
    }
    cluster
        .stats
        .replayed
        .fetch_add(replayed, Ordering::Relaxed);
    // The registry still has the former node's record: write this node's soon; and the move
    // is over, so that others may claim it.
    engine.mark_changed(std::slice::from_ref(&record.client_id));
    let (done, client_id) = (Arc::clone(inner), record.client_id.clone());
    tokio::spawn(async move {
        let cluster = done.cluster();
        let ended = cluster.backplane.moved(&cluster.node, &client_id).await;
        cluster.note(&ended);
    });
    tracing::debug!(client_id = %record.client_id, from = after, replayed, "session adopted");
    Ok(())
}
