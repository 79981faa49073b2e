//! The backplane: what the nodes of a cluster share, behind one trait.
//!
//! Three things, kept by an engine operators already run (Redis in `bayeux-redis`):
//! - the **log**: every entry that changes shared state ([`LogRecord`]), in one total order,
//!   each at a position (1, 2, 3, ...). Appending is one write whatever the number of
//!   subscribers; every node reads the whole log and delivers to the sessions it serves.
//! - the **session registry**: each session's [`SessionRecord`] and its owner, the one node
//!   that serves it, under a lease (`epoch`) that a node claims to take the session over.
//! - **node leases**: which nodes are alive, which sessions each owns, and which node leads
//!   the clean-up of the dead ones.
//!
//! Not here: what to do with any of it; that is the cluster driver (`crate::cluster`).

mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bayeux_core::{BrowserId, Entry, SessionRecord};
use bayeux_message::ClientId;

pub use memory::MemoryBackplane;

/// A boxed future, so that the trait can be used as `dyn Backplane`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One node of a cluster, for as long as its process lives: its name and a random incarnation,
/// so that a restarted process is a new node.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Wraps an id (`name#incarnation`).
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The node's name, without its incarnation.
    pub fn name(&self) -> &str {
        self.0.split('#').next().unwrap_or_default()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &*self.0)
    }
}

/// A record of the shared log.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum LogRecord {
    /// A change to shared state, applied by every node.
    Entry(Entry),
    /// `session` is being taken over under lease `epoch`: `from`, which served it, lets go.
    Move {
        /// The session.
        session: ClientId,
        /// The lease of the node taking it.
        epoch: u64,
        /// The node that served it.
        from: NodeId,
    },
    /// The node that served `session` let go of it for lease `epoch`, with its record as of
    /// then (`None` when it no longer had the session).
    Released {
        /// The session.
        session: ClientId,
        /// The lease it was released for.
        epoch: u64,
        /// Its record, exact as of the release.
        record: Option<SessionRecord>,
    },
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// Its position.
    pub position: u64,
    /// When it was appended (milliseconds since the Unix epoch, the writer's clock).
    pub appended_at_ms: u64,
    /// The record.
    pub record: LogRecord,
}

/// What the registry knows of a session.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// Its record, as last written.
    pub record: SessionRecord,
    /// The node that owns it; `None` between a release and the next claim.
    pub owner: Option<NodeId>,
}

/// What a claim checks of the browser cookie a request presented: the registry applies the
/// rule the engine applies to sessions it serves ([`bayeux_core::Engine::may_act_for`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CookieCheck {
    /// Nothing to check: a websocket request, or `trustClientSession`.
    Unchecked,
    /// The request carried this cookie: it must be the one the session was given.
    Presented(BrowserId),
    /// The request carried none: the session's client must never have presented its cookie
    /// back (a client that keeps no cookies).
    Absent,
}

/// The answer to a claim on a session.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The session is now this node's, under lease `epoch`.
    Claimed {
        /// Its record, as last written.
        record: SessionRecord,
        /// The new lease.
        epoch: u64,
        /// The node that owned it; `None` when it had been released (a drain).
        previous: Option<NodeId>,
    },
    /// Another node is taking the session over right now: claim again in a moment.
    Busy,
    /// The request's cookie does not let it act for the session ([`CookieCheck`]).
    Denied,
    /// No such session.
    Unknown,
}

/// The backplane could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneError {
    /// It is unreachable, or answered with an error.
    Unavailable(String),
    /// It holds something this node cannot read (written by an incompatible version?).
    Corrupt(String),
}

impl fmt::Display for BackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "backplane unavailable: {why}"),
            Self::Corrupt(why) => write!(f, "backplane data unreadable: {why}"),
        }
    }
}

impl std::error::Error for BackplaneError {}

/// Shorthand for a backplane call's result.
pub type BackplaneResult<T> = Result<T, BackplaneError>;

/// What the nodes of a cluster share. Every call may fail with
/// [`BackplaneError::Unavailable`]; none may block longer than a few seconds.
pub trait Backplane: Send + Sync + 'static {
    // --- the log ---

    /// Appends records, in order; resolves with their positions once the log holds them.
    fn append(&self, records: Vec<LogRecord>) -> BoxFuture<'_, BackplaneResult<Vec<u64>>>;

    /// Up to `max` records after position `after`, waiting up to `wait` for the first one.
    fn read(
        &self,
        after: u64,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, BackplaneResult<Vec<Read>>>;

    /// The records after position `after` through `through`, at most `max`, without waiting
    /// (what a node taking a session over replays).
    fn range(
        &self,
        after: u64,
        through: u64,
        max: usize,
    ) -> BoxFuture<'_, BackplaneResult<Vec<Read>>>;

    /// The position of the newest record (0 for an empty log).
    fn head(&self) -> BoxFuture<'_, BackplaneResult<u64>>;

    /// Drops records older than `age` (time-based retention; count-based retention is the
    /// backplane's own, on append).
    fn trim_older_than(&self, age: Duration) -> BoxFuture<'_, BackplaneResult<()>>;

    // --- the session registry ---

    /// Records a new session, owned by `node` under lease 1.
    fn register(&self, node: &NodeId, record: &SessionRecord)
        -> BoxFuture<'_, BackplaneResult<()>>;

    /// Takes a session for `node`: bumps its lease and makes `node` its owner, unless the
    /// request's cookie does not pass `cookie` ([`Claim::Denied`]), or another
    /// node's move of it is under way ([`Claim::Busy`]; a move ends with
    /// [`Backplane::moved`], or after `move_ttl`).
    fn claim(
        &self,
        node: &NodeId,
        client_id: &ClientId,
        cookie: &CookieCheck,
        move_ttl: Duration,
    ) -> BoxFuture<'_, BackplaneResult<Claim>>;

    /// Ends `node`'s move of a session (it serves it now): others may claim it again.
    fn moved(&self, node: &NodeId, client_id: &ClientId) -> BoxFuture<'_, BackplaneResult<()>>;

    /// Writes the records of sessions `node` owns; one flag per record, false when the session
    /// is not `node`'s any more (taken over or removed).
    fn checkpoint(
        &self,
        node: &NodeId,
        records: &[SessionRecord],
    ) -> BoxFuture<'_, BackplaneResult<Vec<bool>>>;

    /// Writes the exact record of a session its node let go of for the move under lease
    /// `epoch`, whoever owns it now: the registry then holds what the next node must start
    /// from, even when the node that claimed it under `epoch` never adopts it (it gave up, or
    /// the backplane failed midway). False when the session was claimed again since (or is
    /// gone): a newer owner's record must not be overwritten.
    fn hand_over(&self, record: &SessionRecord, epoch: u64)
        -> BoxFuture<'_, BackplaneResult<bool>>;

    /// Writes a session's record and lets go of it: no node owns it until one claims it.
    /// False when it was not `node`'s.
    fn release(
        &self,
        node: &NodeId,
        record: &SessionRecord,
    ) -> BoxFuture<'_, BackplaneResult<bool>>;

    /// Deletes a session, if `owner` owns it (any owner when `None`). True only for the one
    /// call that deleted it: the node that gets true tells the listeners.
    fn remove(
        &self,
        client_id: &ClientId,
        owner: Option<&NodeId>,
    ) -> BoxFuture<'_, BackplaneResult<bool>>;

    /// A session's record and owner.
    fn lookup(&self, client_id: &ClientId) -> BoxFuture<'_, BackplaneResult<Option<Registration>>>;

    // --- nodes ---

    /// Says `node` is alive for `ttl` more.
    fn heartbeat(&self, node: &NodeId, ttl: Duration) -> BoxFuture<'_, BackplaneResult<()>>;

    /// Whether `node`'s last heartbeat has not run out.
    fn is_alive(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<bool>>;

    /// Every node that has registered a session or a heartbeat and not been forgotten.
    fn nodes(&self) -> BoxFuture<'_, BackplaneResult<Vec<NodeId>>>;

    /// The sessions `node` owns (or owned, if it died).
    fn sessions_of(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<Vec<ClientId>>>;

    /// Forgets a dead node whose sessions are gone; also what a node does as it stops.
    fn forget_node(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<()>>;

    /// Takes or keeps the lead of the clean-up for `ttl`; true while `node` has it.
    fn lead(&self, node: &NodeId, ttl: Duration) -> BoxFuture<'_, BackplaneResult<bool>>;

    /// Associates `session` with `user`, or ends its association (`None`), in the cluster's
    /// presence, atomically: a user is online while it has sessions. Says who came online and
    /// who went offline by this call (the caller appends that to the log), each change with a
    /// version higher than any given before. Idempotent.
    fn associate(
        &self,
        session: &ClientId,
        user: Option<&str>,
    ) -> BoxFuture<'_, BackplaneResult<PresenceChange>>;

    /// The users online in the whole cluster, each with the version of its coming online.
    fn online_users(&self) -> BoxFuture<'_, BackplaneResult<Vec<(String, u64)>>>;

    /// Up to about `count` sessions associated with a user, from `cursor` (0: the start), and
    /// the cursor to go on from (0: done). For a sweep that ends the associations of
    /// sessions that no longer exist.
    fn associated_sessions(
        &self,
        cursor: u64,
        count: usize,
    ) -> BoxFuture<'_, BackplaneResult<(u64, Vec<ClientId>)>>;
}

/// What an association changed in the cluster's presence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceChange {
    /// The user that came online (its first session), and the change's version.
    pub joined: Option<(String, u64)>,
    /// The user that went offline (its last session ended, or moved to another user), and
    /// the change's version.
    pub left: Option<(String, u64)>,
}
