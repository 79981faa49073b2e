//! Presence across the cluster: which users are online on any node.
//!
//! The backplane's registry counts each user's sessions ([`Backplane::associate`]); the node
//! whose call makes a user come online or go offline appends a `Presence` entry (and, with a
//! presence channel, the event published on it), so that every node's listeners hear of it
//! once and every node's view of who is online follows the log.
//!
//! A session's association changes in three places: its handshake (a user set by the
//! security policy), `Server::associate`/`dissociate`, and its removal anywhere in the
//! cluster (the one node that removes it from the registry tells its listeners, and this
//! module is one of them). A dead node's sessions are removed by the node leading the
//! clean-up once their clients stayed away for `timeout + interval + maxInterval`: that bounds
//! how long a dead node's users stay online.
//!
//! Changes are carried out in order by one task per node, retried while the backplane is
//! unreachable: a user never goes offline before the association that brought it online.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bayeux_core::{Entry, RemovalReason, SessionListener};
use bayeux_message::{ChannelName, ClientId};
use tokio::sync::mpsc;

use crate::backplane::{LogRecord, PresenceChange};
use crate::server::Inner;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A change of a session's association: its user, or none.
pub(crate) type Change = (ClientId, Option<Arc<str>>);

/// Where a node sends the association changes of its sessions.
///
/// Unbounded: each change stands for a session event that already happened (a handshake, a
/// removal) and a listener cannot wait; dropping one would leave a user online for ever.
/// Its length is bounded by the rate of session churn while the backplane is unreachable.
pub(crate) type Changes = mpsc::UnboundedSender<Change>;

/// Tells the presence task of the sessions that start with a user and of every removal.
pub(crate) struct PresenceTracker {
    pub(crate) server: Arc<OnceLock<Weak<Inner>>>,
    pub(crate) changes: Changes,
}

impl SessionListener for PresenceTracker {
    fn session_added(&self, client_id: &ClientId) {
        let Some(inner) = self.server.get().and_then(Weak::upgrade) else {
            return;
        };
        if let Some(user) = inner
            .engine
            .session(client_id.as_str())
            .and_then(|s| s.user())
        {
            let _ = self.changes.send((client_id.clone(), Some(user)));
        }
    }

    fn session_removed(&self, client_id: &ClientId, _reason: RemovalReason) {
        // The session may have been served by a node that died: only the registry knows
        // whether it had a user.
        let _ = self.changes.send((client_id.clone(), None));
    }
}

/// Carries out association changes in order until the server is dropped.
pub(crate) async fn run(
    inner: Weak<Inner>,
    mut changes: mpsc::UnboundedReceiver<Change>,
    channel: Option<ChannelName>,
) {
    while let Some((session, user)) = changes.recv().await {
        let mut backoff = MIN_BACKOFF;
        let records = loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let cluster = strong.cluster();
            let changed = cluster.backplane.associate(&session, user.as_deref()).await;
            cluster.note(&changed);
            if let Ok(change) = changed {
                break change_records(&strong, change, channel.as_ref());
            }
            drop(strong);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        if !records.is_empty() {
            append(&inner, records).await;
        }
    }
}

/// What tells the cluster of `change`: for each user that left or came online, the `Presence`
/// entry every node's listeners hear, then the event on the presence channel, if there is one
/// (after the entry: a node has counted the user in or out by the time its subscribers see
/// the event).
fn change_records(
    inner: &Inner,
    change: PresenceChange,
    channel: Option<&ChannelName>,
) -> Vec<LogRecord> {
    let mut records = Vec::new();
    let changes = [(change.left, false), (change.joined, true)];
    for ((user, version), online) in changes
        .into_iter()
        .filter_map(|(user, online)| Some((user?, online)))
    {
        let data = serde_json::json!({"user": user, "online": online});
        records.push(LogRecord::Entry(Entry::Presence {
            user,
            online,
            version,
        }));
        let Some(channel) = channel else { continue };
        match inner.engine.prepare_publish(channel, data) {
            Ok(Some(entry)) => records.push(LogRecord::Entry(entry)),
            Ok(None) => {}
            Err(refusal) => {
                tracing::warn!(%channel, error = %refusal.error(), "presence event not published");
            }
        }
    }
    records
}

/// Appends `records`, retrying while the backplane is unreachable.
async fn append(inner: &Weak<Inner>, records: Vec<LogRecord>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let cluster = strong.cluster();
        let appended = cluster.backplane.append(records.clone()).await;
        cluster.note(&appended);
        if appended.is_ok() {
            return;
        }
        drop(strong);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
