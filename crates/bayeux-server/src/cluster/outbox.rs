//! The outbox: entries made by server code (`Server::publish`, `deliver`, local sessions),
//! which cannot wait for the backplane, appended in the order they were made, in batches,
//! and retried while the backplane is unreachable.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::backplane::LogRecord;
use crate::server::Inner;

/// Most records appended in one call.
const BATCH: usize = 256;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Appends what the outbox receives until the server is dropped.
pub(crate) async fn run(inner: Weak<Inner>, mut outbox: mpsc::Receiver<LogRecord>) {
    let mut batch = Vec::with_capacity(BATCH);
    while outbox.recv_many(&mut batch, BATCH).await > 0 {
        let mut backoff = Duration::from_millis(50);
        loop {
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let cluster = inner.cluster();
            let appended = cluster.backplane.append(batch.clone()).await;
            cluster.note(&appended);
            if appended.is_ok() {
                cluster
                    .stats
                    .appended
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                break;
            }
            drop(inner);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        batch.clear();
    }
}
