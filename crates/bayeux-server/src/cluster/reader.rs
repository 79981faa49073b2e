//! The reader: one task per node that reads the shared log in order and applies it.
//!
//! Entries go to the engine ([`Engine::apply`](bayeux_core::Engine::apply)); a `Move` of a
//! session this node serves makes it let go ([`Engine::release`](bayeux_core::Engine::release))
//! and append a `Released` with the exact record; a `Released` that a takeover here waits for
//! is adopted on the spot, at exactly that position of the log. A failed read is retried from
//! the same position, so an outage of the backplane loses and repeats nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bayeux_core::{Release, RemovalReason, SessionRecord};
use bayeux_message::ClientId;

use crate::backplane::{LogRecord, Read};
use crate::server::{now, Inner};

use super::takeover::adopt;

/// Most records applied per read.
const READ_BATCH: usize = 512;
/// How long one read waits for new records.
const READ_WAIT: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Reads and applies the log until the server is dropped.
pub(crate) async fn run(inner: Weak<Inner>) {
    let mut backoff = MIN_BACKOFF;
    // A node starts at the newest record: what was published before it existed is not its
    // sessions' business (a session taken over replays from its own checkpoint).
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let cluster = strong.cluster();
        let head = cluster.backplane.head().await;
        cluster.note(&head);
        if let Ok(head) = head {
            cluster.applied.lock().await.position = head;
            strong.engine.start_at(head);
            // Who is online as of `head` (or a little later: presence entries are idempotent).
            match cluster.backplane.online_users().await {
                Ok(users) => strong.engine.start_presence_at(now(), users),
                Err(error) => {
                    cluster.note::<()>(&Err(error));
                    drop(strong);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            if strong.engine.history_enabled() {
                fill_history(&strong, head).await;
            }
            cluster.started.store(true, Ordering::Relaxed);
            tracing::info!(node = %cluster.node, position = head, "reading the shared log");
            break;
        }
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    backoff = MIN_BACKOFF;
    let mut idle_reads = 0u32;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let cluster = strong.cluster();
        let after = cluster.applied.lock().await.position;
        let read = cluster.backplane.read(after, READ_BATCH, READ_WAIT).await;
        cluster.note(&read);
        match read {
            Ok(records) if records.is_empty() => {
                idle_reads += 1;
                // Every few idle seconds, check the log did not start over (a Redis that lost
                // its data): waiting after a position that will never come back would be
                // waiting forever.
                if idle_reads % 10 == 0 {
                    restart_if_log_reset(&strong, after).await;
                }
            }
            Ok(records) => {
                backoff = MIN_BACKOFF;
                idle_reads = 0;
                apply_all(&strong, records).await;
            }
            Err(_) => {
                drop(strong);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if let Some(strong) = inner.upgrade() {
                    restart_if_log_reset(&strong, after).await;
                }
            }
        }
    }
}

/// Starts over from the log's head when it is behind what this node applied.
async fn restart_if_log_reset(inner: &Arc<Inner>, after: u64) {
    let cluster = inner.cluster();
    let Ok(head) = cluster.backplane.head().await else {
        return;
    };
    if head < after {
        tracing::error!(
            node = %cluster.node,
            applied = after,
            head,
            "the shared log is behind this node: the backplane lost its data; reading from its head"
        );
        let mut applied = cluster.applied.lock().await;
        applied.position = head;
        applied.recent.clear();
        // Ids from the lost log will be used again: forget what was kept under them.
        inner.engine.start_replay_ids_at(head);
    }
}

/// Fills the channel histories with what the log holds through `head`, before this node
/// reads on from there: a node that starts (or restarts) can replay what was published
/// before it ran, as far back as the log's retention. When the log cannot be read, the
/// history starts empty at `head` (replays from before are refused, not silently short).
async fn fill_history(inner: &Arc<Inner>, head: u64) {
    const BATCH: usize = 4096;
    let cluster = inner.cluster();
    let engine = &inner.engine;
    let (now, wall_ms) = (now(), wall_clock_ms());
    let mut after = 0;
    let mut started = false;
    while after < head {
        let records = match cluster.backplane.range(after, head, BATCH).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "could not read the log's history; replays start now");
                engine.start_replay_ids_at(head);
                return;
            }
        };
        let Some(first) = records.first() else { break };
        if !started {
            // What the log dropped before its first record is unknown.
            engine.start_replay_ids_at(first.position - 1);
            started = true;
        }
        for read in &records {
            if let LogRecord::Entry(entry) = &read.record {
                let age = Duration::from_millis(wall_ms.saturating_sub(read.appended_at_ms));
                let at = now.checked_sub(age).unwrap_or(now);
                engine.remember_history(at, read.position, entry);
            }
            after = read.position;
        }
    }
    if !started {
        engine.start_replay_ids_at(head);
    }
    tracing::info!(node = %cluster.node, through = head, "history filled from the log");
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Applies records in order, holding the apply lock so that no session is adopted midway.
async fn apply_all(inner: &Arc<Inner>, records: Vec<Read>) {
    let cluster = inner.cluster();
    let engine = &inner.engine;
    let mut applied = cluster.applied.lock().await;
    let now = now();
    let wall_ms = wall_clock_ms();
    for read in records {
        if read.position <= applied.position {
            continue;
        }
        let lag = wall_ms.saturating_sub(read.appended_at_ms) * 1000;
        cluster.stats.read.fetch_add(1, Ordering::Relaxed);
        cluster.stats.lag_micros.fetch_add(lag, Ordering::Relaxed);
        cluster.stats.last_lag_micros.store(lag, Ordering::Relaxed);
        match read.record {
            LogRecord::Entry(entry) => {
                let result = engine.apply(now, read.position, &entry);
                for client_id in result.overflowed {
                    // A queue that overflowed under the `disconnect` policy: the session ends.
                    let inner = Arc::clone(inner);
                    tokio::spawn(async move {
                        let cluster = inner.cluster();
                        let removed = cluster
                            .backplane
                            .remove(&client_id, Some(&cluster.node))
                            .await;
                        if removed.is_ok() {
                            inner
                                .engine
                                .remove(client_id.as_str(), RemovalReason::QueueFull);
                        }
                    });
                }
                applied.remember(read.position, entry);
            }
            LogRecord::Move {
                session,
                epoch,
                from,
            } => {
                if from == cluster.node {
                    match engine.release(session.as_str(), false) {
                        Release::Released(record) => {
                            answer_move(inner, session, epoch, Some(record));
                        }
                        Release::Unknown => answer_move(inner, session, epoch, None),
                        // A request of it is being processed here: let go right after.
                        Release::Busy => {
                            tokio::spawn(release_when_idle(Arc::clone(inner), session, epoch));
                        }
                    }
                }
                engine.start_at(read.position);
            }
            LogRecord::Released {
                session,
                epoch,
                record,
            } => {
                let expected = {
                    let mut expected = cluster.expected();
                    match expected.get(&session) {
                        Some(e) if e.epoch == epoch => expected.remove(&session),
                        _ => None,
                    }
                };
                if let Some(expected) = expected {
                    if engine.session(session.as_str()).is_none() {
                        let record = record.unwrap_or(expected.fallback);
                        if adopt(inner, &mut applied, record).await.is_ok() {
                            cluster
                                .stats
                                .takeovers_handoff
                                .fetch_add(1, Ordering::Relaxed);
                            let _ = expected.adopted.send(());
                        }
                    } else {
                        let _ = expected.adopted.send(());
                    }
                }
                engine.start_at(read.position);
            }
        }
        applied.position = read.position;
    }
}

/// Tells the node taking `session` over (lease `epoch`) that this node let go of it, with its
/// exact record (or none: it was not served here any more).
///
/// The record goes to the registry first, then the `Released` to the log: whoever adopts the
/// session next, the node that asked or, if that one gave up (an outage, a timeout), the next
/// to claim it, starts from exactly where this node left it. Until the registry takes it, the
/// record is kept here and written again.
fn answer_move(inner: &Arc<Inner>, session: ClientId, epoch: u64, record: Option<SessionRecord>) {
    let cluster = inner.cluster();
    if record.is_some() {
        cluster.stats.released.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(client_id = %session, epoch, "session handed over");
    }
    let inner = Arc::downgrade(inner);
    tokio::spawn(async move {
        if let Some(record) = &record {
            if !keep_in_registry(&inner, record, epoch).await {
                return;
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cluster = inner.cluster();
        let released = LogRecord::Released {
            session,
            epoch,
            record,
        };
        let appended = cluster.backplane.append(vec![released]).await;
        cluster.note(&appended);
    });
}

/// Writes the record of a session let go of under lease `epoch` to the registry, trying again
/// while the backplane fails. False when it was claimed again before the write could land
/// (its next node starts from its last checkpoint), or when the server is gone.
async fn keep_in_registry(inner: &Weak<Inner>, record: &SessionRecord, epoch: u64) -> bool {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(strong) = inner.upgrade() else {
            return false;
        };
        let cluster = strong.cluster();
        let written = cluster.backplane.hand_over(record, epoch).await;
        cluster.note(&written);
        match written {
            Ok(true) => return true,
            Ok(false) => {
                tracing::warn!(
                    client_id = %record.client_id,
                    epoch,
                    "a session handed over was claimed again before its record was written; \
                     its next node starts from its last checkpoint"
                );
                return false;
            }
            Err(_) => {}
        }
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Releases a session once no request of it is being processed here; after the hand-over
/// timeout, releases it anyway (a request hogging it must not keep it here for ever).
async fn release_when_idle(inner: Arc<Inner>, session: ClientId, epoch: u64) {
    let cluster = inner.cluster();
    let deadline = tokio::time::Instant::now() + cluster.options.handoff_timeout;
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        // Under the apply lock: the record is exact as of one position of the log.
        let _applied = cluster.applied.lock().await;
        let force = tokio::time::Instant::now() >= deadline;
        match inner.engine.release(session.as_str(), force) {
            Release::Busy => continue,
            Release::Released(record) => {
                answer_move(&inner, session, epoch, Some(record));
                return;
            }
            Release::Unknown => {
                answer_move(&inner, session, epoch, None);
                return;
            }
        }
    }
}
