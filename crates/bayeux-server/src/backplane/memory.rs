//! A backplane in this process's memory: several [`Server`](crate::Server)s built on clones
//! of one [`MemoryBackplane`] form a cluster inside one process. It keeps the contract of the
//! trait exactly (one total order, leases, TTLs on Tokio's clock) and can be made unreachable,
//! which makes it the backplane of the driver's own tests; Redis is the one to deploy.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bayeux_core::SessionRecord;
use bayeux_message::ClientId;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    Backplane, BackplaneError, BackplaneResult, BoxFuture, Claim, CookieCheck, LogRecord, NodeId,
    PresenceChange, Read, Registration,
};

/// A backplane shared by the clones of one value, in memory.
#[derive(Clone, Default)]
pub struct MemoryBackplane {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    appended: Notify,
}

#[derive(Default)]
struct State {
    unreachable: bool,
    log: VecDeque<(Read, Instant)>,
    /// Position of the newest record ever appended.
    head: u64,
    /// Most records kept (0: no limit).
    max_len: usize,
    sessions: HashMap<ClientId, Registered>,
    heartbeats: HashMap<NodeId, Instant>,
    owned: HashMap<NodeId, BTreeSet<ClientId>>,
    leader: Option<(NodeId, Instant)>,
    appends: u64,
    /// Presence: each associated session's user, and how many sessions each user has.
    session_users: BTreeMap<ClientId, String>,
    /// Each online user's number of sessions and the version of its coming online.
    user_sessions: HashMap<String, (usize, u64)>,
    presence_version: u64,
}

struct Registered {
    record: SessionRecord,
    owner: Option<NodeId>,
    epoch: u64,
    /// A move of the session is under way until then.
    moving_until: Option<Instant>,
}

impl MemoryBackplane {
    /// An empty backplane, keeping every record.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backplane keeping at most `max_len` records.
    pub fn with_max_len(max_len: usize) -> Self {
        let backplane = Self::default();
        backplane.state().max_len = max_len;
        backplane
    }

    /// Makes every call fail (`false`), as an unreachable Redis would, or work again.
    pub fn set_reachable(&self, reachable: bool) {
        self.state().unreachable = !reachable;
        self.inner.appended.notify_waiters();
    }

    /// How many records were appended since the start.
    pub fn appends(&self) -> u64 {
        self.state().appends
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state, unless the backplane is unreachable.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> BackplaneResult<T> {
        let mut state = self.state();
        if state.unreachable {
            return Err(BackplaneError::Unavailable(
                "memory backplane unreachable".into(),
            ));
        }
        Ok(f(&mut state))
    }
}

impl State {
    fn since(&self, after: u64, through: u64, max: usize) -> Vec<Read> {
        self.log
            .iter()
            .map(|(read, _)| read)
            .filter(|r| r.position > after && r.position <= through)
            .take(max)
            .cloned()
            .collect()
    }

    fn alive(&self, node: &NodeId) -> bool {
        self.heartbeats
            .get(node)
            .is_some_and(|until| *until > Instant::now())
    }

    fn own(&mut self, node: &NodeId, client_id: &ClientId) {
        self.owned
            .entry(node.clone())
            .or_default()
            .insert(client_id.clone());
    }

    fn disown(&mut self, node: &NodeId, client_id: &ClientId) {
        if let Some(set) = self.owned.get_mut(node) {
            set.remove(client_id);
        }
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Backplane for MemoryBackplane {
    fn append(&self, records: Vec<LogRecord>) -> BoxFuture<'_, BackplaneResult<Vec<u64>>> {
        let result = self.with(|state| {
            let mut positions = Vec::with_capacity(records.len());
            for record in records {
                state.head += 1;
                state.appends += 1;
                positions.push(state.head);
                let read = Read {
                    position: state.head,
                    appended_at_ms: wall_ms(),
                    record,
                };
                state.log.push_back((read, Instant::now()));
                if state.max_len > 0 && state.log.len() > state.max_len {
                    state.log.pop_front();
                }
            }
            positions
        });
        self.inner.appended.notify_waiters();
        Box::pin(async move { result })
    }

    fn read(
        &self,
        after: u64,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, BackplaneResult<Vec<Read>>> {
        Box::pin(async move {
            let deadline = Instant::now() + wait;
            loop {
                // Registered before looking, so an append in between is not missed.
                let appended = self.inner.appended.notified();
                tokio::pin!(appended);
                appended.as_mut().enable();
                let found = self.with(|state| state.since(after, u64::MAX, max))?;
                if !found.is_empty() {
                    return Ok(found);
                }
                if tokio::time::timeout_at(deadline, appended).await.is_err() {
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn range(
        &self,
        after: u64,
        through: u64,
        max: usize,
    ) -> BoxFuture<'_, BackplaneResult<Vec<Read>>> {
        let result = self.with(|state| state.since(after, through, max));
        Box::pin(async move { result })
    }

    fn head(&self) -> BoxFuture<'_, BackplaneResult<u64>> {
        let result = self.with(|state| state.head);
        Box::pin(async move { result })
    }

    fn trim_older_than(&self, age: Duration) -> BoxFuture<'_, BackplaneResult<()>> {
        let result = self.with(|state| {
            let now = Instant::now();
            while state
                .log
                .front()
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) > age)
            {
                state.log.pop_front();
            }
        });
        Box::pin(async move { result })
    }

    fn register(
        &self,
        node: &NodeId,
        record: &SessionRecord,
    ) -> BoxFuture<'_, BackplaneResult<()>> {
        let result = self.with(|state| {
            state.sessions.insert(
                record.client_id.clone(),
                Registered {
                    record: record.clone(),
                    owner: Some(node.clone()),
                    epoch: 1,
                    moving_until: None,
                },
            );
            state.own(node, &record.client_id);
        });
        Box::pin(async move { result })
    }

    fn claim(
        &self,
        node: &NodeId,
        client_id: &ClientId,
        cookie: &CookieCheck,
        move_ttl: Duration,
    ) -> BoxFuture<'_, BackplaneResult<Claim>> {
        let result = self.with(|state| {
            let Some(found) = state.sessions.get_mut(client_id) else {
                return Claim::Unknown;
            };
            let allowed = match cookie {
                CookieCheck::Unchecked => true,
                CookieCheck::Presented(presented) => {
                    found.record.browser.as_ref() == Some(presented)
                }
                CookieCheck::Absent => !found.record.cookie_bound,
            };
            if !allowed {
                return Claim::Denied;
            }
            let now = Instant::now();
            if found.moving_until.is_some_and(|until| until > now) {
                return Claim::Busy;
            }
            found.moving_until = Some(now + move_ttl);
            found.epoch += 1;
            let previous = found.owner.replace(node.clone());
            let claim = Claim::Claimed {
                record: found.record.clone(),
                epoch: found.epoch,
                previous: previous.clone(),
            };
            if let Some(previous) = &previous {
                state.disown(previous, client_id);
            }
            state.own(node, client_id);
            claim
        });
        Box::pin(async move { result })
    }

    fn moved(&self, node: &NodeId, client_id: &ClientId) -> BoxFuture<'_, BackplaneResult<()>> {
        let result = self.with(|state| {
            if let Some(found) = state.sessions.get_mut(client_id) {
                if found.owner.as_ref() == Some(node) {
                    found.moving_until = None;
                }
            }
        });
        Box::pin(async move { result })
    }

    fn checkpoint(
        &self,
        node: &NodeId,
        records: &[SessionRecord],
    ) -> BoxFuture<'_, BackplaneResult<Vec<bool>>> {
        let result = self.with(|state| {
            records
                .iter()
                .map(|record| match state.sessions.get_mut(&record.client_id) {
                    Some(found) if found.owner.as_ref() == Some(node) => {
                        found.record = record.clone();
                        true
                    }
                    _ => false,
                })
                .collect()
        });
        Box::pin(async move { result })
    }

    fn hand_over(
        &self,
        record: &SessionRecord,
        epoch: u64,
    ) -> BoxFuture<'_, BackplaneResult<bool>> {
        let result = self.with(|state| match state.sessions.get_mut(&record.client_id) {
            Some(found) if found.epoch == epoch => {
                found.record = record.clone();
                true
            }
            _ => false,
        });
        Box::pin(async move { result })
    }

    fn release(
        &self,
        node: &NodeId,
        record: &SessionRecord,
    ) -> BoxFuture<'_, BackplaneResult<bool>> {
        let result = self.with(|state| match state.sessions.get_mut(&record.client_id) {
            Some(found) if found.owner.as_ref() == Some(node) => {
                found.record = record.clone();
                found.owner = None;
                state.disown(node, &record.client_id);
                true
            }
            _ => false,
        });
        Box::pin(async move { result })
    }

    fn remove(
        &self,
        client_id: &ClientId,
        owner: Option<&NodeId>,
    ) -> BoxFuture<'_, BackplaneResult<bool>> {
        let result = self.with(|state| {
            let matches = state
                .sessions
                .get(client_id)
                .is_some_and(|found| owner.is_none() || found.owner.as_ref() == owner);
            if !matches {
                return false;
            }
            let removed = state.sessions.remove(client_id).expect("checked above");
            if let Some(owner) = &removed.owner {
                state.disown(owner, client_id);
            }
            true
        });
        Box::pin(async move { result })
    }

    fn lookup(&self, client_id: &ClientId) -> BoxFuture<'_, BackplaneResult<Option<Registration>>> {
        let result = self.with(|state| {
            state.sessions.get(client_id).map(|found| Registration {
                record: found.record.clone(),
                owner: found.owner.clone(),
            })
        });
        Box::pin(async move { result })
    }

    fn heartbeat(&self, node: &NodeId, ttl: Duration) -> BoxFuture<'_, BackplaneResult<()>> {
        let result = self.with(|state| {
            state.heartbeats.insert(node.clone(), Instant::now() + ttl);
            state.owned.entry(node.clone()).or_default();
        });
        Box::pin(async move { result })
    }

    fn is_alive(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<bool>> {
        let result = self.with(|state| state.alive(node));
        Box::pin(async move { result })
    }

    fn nodes(&self) -> BoxFuture<'_, BackplaneResult<Vec<NodeId>>> {
        let result = self.with(|state| state.owned.keys().cloned().collect());
        Box::pin(async move { result })
    }

    fn sessions_of(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<Vec<ClientId>>> {
        let result = self.with(|state| {
            state
                .owned
                .get(node)
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default()
        });
        Box::pin(async move { result })
    }

    fn forget_node(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<()>> {
        let result = self.with(|state| {
            state.owned.remove(node);
            state.heartbeats.remove(node);
        });
        Box::pin(async move { result })
    }

    fn lead(&self, node: &NodeId, ttl: Duration) -> BoxFuture<'_, BackplaneResult<bool>> {
        let result = self.with(|state| {
            let now = Instant::now();
            let free = match &state.leader {
                Some((leader, until)) => leader == node || *until <= now,
                None => true,
            };
            if free {
                state.leader = Some((node.clone(), now + ttl));
            }
            free
        });
        Box::pin(async move { result })
    }

    fn associate(
        &self,
        session: &ClientId,
        user: Option<&str>,
    ) -> BoxFuture<'_, BackplaneResult<PresenceChange>> {
        let result = self.with(|state| {
            let mut change = PresenceChange::default();
            let old = state.session_users.get(session).cloned();
            if old.as_deref() == user {
                return change;
            }
            if let Some(old) = old {
                state.session_users.remove(session);
                let count = &mut state.user_sessions.entry(old.clone()).or_default().0;
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.user_sessions.remove(&old);
                    state.presence_version += 1;
                    change.left = Some((old, state.presence_version));
                }
            }
            if let Some(user) = user {
                state.session_users.insert(session.clone(), user.to_owned());
                let next = state.presence_version + 1;
                let (count, version) = state.user_sessions.entry(user.to_owned()).or_default();
                *count += 1;
                if *count == 1 {
                    *version = next;
                    state.presence_version = next;
                    change.joined = Some((user.to_owned(), next));
                }
            }
            change
        });
        Box::pin(async move { result })
    }

    fn online_users(&self) -> BoxFuture<'_, BackplaneResult<Vec<(String, u64)>>> {
        let result = self.with(|state| {
            state
                .user_sessions
                .iter()
                .map(|(user, (_, version))| (user.clone(), *version))
                .collect()
        });
        Box::pin(async move { result })
    }

    fn associated_sessions(
        &self,
        cursor: u64,
        count: usize,
    ) -> BoxFuture<'_, BackplaneResult<(u64, Vec<ClientId>)>> {
        // The cursor is how many sessions came before, in the map's order: a session added
        // or removed meanwhile may be seen twice or missed once, as with Redis's HSCAN.
        let result = self.with(|state| {
            let start = cursor as usize;
            let sessions: Vec<ClientId> = state
                .session_users
                .keys()
                .skip(start)
                .take(count.max(1))
                .cloned()
                .collect();
            let next = start + sessions.len();
            let next = if next >= state.session_users.len() {
                0
            } else {
                next as u64
            };
            (next, sessions)
        });
        Box::pin(async move { result })
    }
}

impl std::fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryBackplane")
            .field("head", &state.head)
            .field("sessions", &state.sessions.len())
            .finish_non_exhaustive()
    }
}
