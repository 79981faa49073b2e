//! A node's upkeep: its heartbeat, checkpoints of changed sessions, what a sweep found
//! (expired sessions, sessions leaving a draining node), and, on the one node that leads it,
//! the clean-up after dead nodes, the log's time-based retention, and the sweep of presence
//! associations whose sessions are gone.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bayeux_core::{Release, RemovalReason, Sweep};
use bayeux_message::ClientId;
use tokio::time::Instant;

use crate::backplane::NodeId;
use crate::server::Inner;

/// Runs the node's upkeep until the server is dropped.
pub(crate) async fn run(inner: Weak<Inner>) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let options = strong.cluster().options.clone();
    drop(strong);
    let mut ticker = tokio::time::interval(options.heartbeat.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_checkpoint = Instant::now();
    let mut last_lead = Instant::now();
    let mut dead_since: HashMap<NodeId, Instant> = HashMap::new();
    let mut presence_cursor = 0;
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cluster = inner.cluster();
        if inner.engine.is_shutting_down() {
            continue;
        }
        let beat = cluster
            .backplane
            .heartbeat(&cluster.node, options.node_ttl)
            .await;
        cluster.note(&beat);
        if last_checkpoint.elapsed() >= options.checkpoint_period {
            last_checkpoint = Instant::now();
            checkpoint(&inner).await;
        }
        if last_lead.elapsed() >= Duration::from_secs(1) {
            last_lead = Instant::now();
            let leads = cluster
                .backplane
                .lead(&cluster.node, options.node_ttl * 2)
                .await;
            cluster.note(&leads);
            if leads == Ok(true) {
                clean_up_dead_nodes(&inner, &mut dead_since).await;
                presence_cursor = sweep_associations(&inner, presence_cursor).await;
                if let Some(age) = options.retention_age {
                    let trimmed = cluster.backplane.trim_older_than(age).await;
                    cluster.note(&trimmed);
                }
            }
        }
    }
}

/// Writes the records of the sessions that changed since their last checkpoint.
async fn checkpoint(inner: &Arc<Inner>) {
    let cluster = inner.cluster();
    let records = inner
        .engine
        .changed_records(crate::server::now(), cluster.options.ack_checkpoint_period);
    if records.is_empty() {
        return;
    }
    let written = cluster.backplane.checkpoint(&cluster.node, &records).await;
    cluster.note(&written);
    match written {
        Ok(flags) => {
            cluster.stats.checkpoints.fetch_add(
                flags.iter().filter(|ok| **ok).count() as u64,
                Ordering::Relaxed,
            );
        }
        Err(_) => {
            let ids: Vec<ClientId> = records.into_iter().map(|r| r.client_id).collect();
            inner.engine.mark_changed(&ids);
        }
    }
}

/// Does what a sweep left to the cluster: removes expired sessions from the registry (once,
/// cluster-wide) before telling the listeners, and hands over the sessions whose moment to
/// leave a draining node has come.
pub(crate) async fn after_sweep(inner: &Arc<Inner>, sweep: Sweep) {
    let cluster = inner.cluster();
    // While the backplane was unreachable, a client trying other nodes could not reach its
    // session: give it a full `maxInterval` after the outage before calling it gone.
    let config = inner.engine.config();
    let expired = if cluster.failed_within(config.interval + config.max_interval) {
        Vec::new()
    } else {
        sweep.expired
    };
    for client_id in expired {
        let removed = cluster
            .backplane
            .remove(&client_id, Some(&cluster.node))
            .await;
        cluster.note(&removed);
        match removed {
            Ok(true) => {
                inner
                    .engine
                    .remove(client_id.as_str(), RemovalReason::Timeout);
            }
            // Taken over meanwhile, or removed elsewhere: not this node's to tell.
            Ok(false) => {
                inner.engine.forget(client_id.as_str());
            }
            // Tried again at the next sweep.
            Err(_) => {}
        }
    }
    for client_id in sweep.leaving {
        // One busy with a request now is released at a later sweep.
        release(inner, &client_id, false).await;
    }
}

/// Hands a session over: its exact record to the registry, with no owner, so that the node
/// its client reaches next adopts it at once. False when the registry could not be written.
pub(crate) async fn release(inner: &Arc<Inner>, client_id: &ClientId, force: bool) -> bool {
    let cluster = inner.cluster();
    let record = {
        let _applied = cluster.applied.lock().await;
        match inner.engine.release(client_id.as_str(), force) {
            Release::Released(record) => record,
            Release::Unknown => return true,
            Release::Busy => return false,
        }
    };
    let released = cluster.backplane.release(&cluster.node, &record).await;
    cluster.note(&released);
    cluster.stats.released.fetch_add(1, Ordering::Relaxed);
    if released.is_err() {
        // The registry keeps the last checkpoint: the next node replays from there.
        tracing::warn!(%client_id, "could not write the record of a session handed over");
    }
    released.is_ok()
}

/// Hands every session over, as the node stops: their clients continue on other nodes.
pub(crate) async fn release_all(inner: &Arc<Inner>) {
    let cluster = inner.cluster();
    let ids: Vec<ClientId> = inner
        .engine
        .all_sessions()
        .iter()
        .filter(|s| !s.is_local())
        .map(|s| s.client_id().clone())
        .collect();
    for client_id in &ids {
        release(inner, client_id, true).await;
    }
    let forgotten = cluster.backplane.forget_node(&cluster.node).await;
    cluster.note(&forgotten);
    tracing::info!(node = %cluster.node, sessions = ids.len(), "sessions handed over");
}

/// Associations checked per second by the node leading the clean-up.
const ASSOCIATIONS_PER_SWEEP: usize = 500;

/// Ends the associations of sessions that no longer exist, a few hundred per call, from
/// `cursor`; returns where to go on. A node that removes a session ends its association
/// right after; one that crashed in between would leave its user online for ever.
async fn sweep_associations(inner: &Arc<Inner>, cursor: u64) -> u64 {
    let cluster = inner.cluster();
    let Some(changes) = &inner.presence_changes else {
        return 0;
    };
    let Ok((next, sessions)) = cluster
        .backplane
        .associated_sessions(cursor, ASSOCIATIONS_PER_SWEEP)
        .await
    else {
        return cursor;
    };
    let lookups = sessions.iter().map(|cid| cluster.backplane.lookup(cid));
    for (client_id, found) in sessions
        .iter()
        .zip(futures::future::join_all(lookups).await)
    {
        if let Ok(None) = found {
            tracing::info!(%client_id, "association of a session gone ended");
            let _ = changes.send((client_id.clone(), None));
        }
    }
    next
}

/// Removes the sessions of nodes that died, once nobody took them over for as long as a client
/// may stay away (`timeout + interval + maxInterval`): their clients are gone too. The node
/// that removes a session from the registry tells its listeners.
async fn clean_up_dead_nodes(inner: &Arc<Inner>, dead_since: &mut HashMap<NodeId, Instant>) {
    let cluster = inner.cluster();
    let config = inner.engine.config();
    let grace = config.timeout + config.interval + config.max_interval;
    let Ok(nodes) = cluster.backplane.nodes().await else {
        return;
    };
    dead_since.retain(|node, _| nodes.contains(node));
    for node in nodes {
        if node == cluster.node {
            continue;
        }
        match cluster.is_alive(&node).await {
            Ok(false) => {}
            _ => {
                dead_since.remove(&node);
                continue;
            }
        }
        let since = *dead_since.entry(node.clone()).or_insert_with(Instant::now);
        if since.elapsed() < grace {
            continue;
        }
        let Ok(sessions) = cluster.backplane.sessions_of(&node).await else {
            return;
        };
        for client_id in &sessions {
            if let Ok(true) = cluster.backplane.remove(client_id, Some(&node)).await {
                cluster
                    .stats
                    .orphans_removed
                    .fetch_add(1, Ordering::Relaxed);
                inner.engine.tell_removed(client_id, RemovalReason::Timeout);
                tracing::info!(%client_id, node = %node, "session of a dead node removed");
            }
        }
        if cluster.backplane.forget_node(&node).await.is_ok() {
            dead_since.remove(&node);
            tracing::info!(node = %node, sessions = sessions.len(), "dead node forgotten");
        }
    }
}
