//! A Redis backplane for `bayeux-server`: the nodes of a cluster share nothing but Redis.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use bayeux_redis::{RedisBackplane, RedisOptions};
//! use bayeux_server::Server;
//!
//! let backplane = RedisBackplane::new("redis://127.0.0.1:6379", RedisOptions::default())?;
//! let server = Server::builder().backplane(backplane).build();
//! # Ok(()) }
//! ```
//!
//! What it keeps, under a key prefix (`bayeux` by default):
//!
//! | key | type | what |
//! |---|---|---|
//! | `bayeux:log` | stream | the log: one entry per record, ids `0-1`, `0-2`, ... (the position) |
//! | `bayeux:log:marks` | sorted set | (time, position) samples, for time-based trimming |
//! | `bayeux:session:{clientId}` | hash | a session's record, `owner` and lease `epoch` |
//! | `bayeux:node:{node}` | string with TTL | a node's heartbeat |
//! | `bayeux:node:{node}:sessions` | set | the sessions a node owns |
//! | `bayeux:nodes` | set | the nodes that exist |
//! | `bayeux:leader` | string with TTL | the node leading the clean-up of dead ones |
//! | `bayeux:{presence}:session-users` | hash | each associated session's user |
//! | `bayeux:{presence}:user-sessions` | hash | each online user's number of sessions |
//! | `bayeux:{presence}:online` | hash | each online user's version (of its coming online) |
//! | `bayeux:{presence}:version` | counter | the last version given to a presence change |
//!
//! Every change to one session's hash is one Lua script on that one key, so it is atomic and
//! works on a Redis Cluster (each key hashes to its own slot; the log lives on one master).
//! The four presence keys share one slot (`{presence}`), changed together by one script.
//! Publishing is one `XADD`, whatever the number of subscribers. Needs Redis 7 (log ids of the
//! form `0-*`), and persistence (AOF) for sessions to survive a Redis restart.
//!
//! # Layout
//! - `link`: connections to one server, a Cluster, or the master named by Sentinels.
//! - `codec`: how log records and session records are written.
//! - `scripts`: the Lua scripts that change a session's hash atomically.

mod codec;
mod link;
mod scripts;

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bayeux_core::SessionRecord;
use bayeux_message::ClientId;
use bayeux_server::backplane::{
    Backplane, BackplaneError, BackplaneResult, BoxFuture, Claim, CookieCheck, LogRecord, NodeId,
    PresenceChange, Read, Registration,
};
use redis::{RedisError, Value};

pub use link::Target;

use link::Link;

/// Options of the Redis backplane.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Prefix of every key, so that several clusters can share one Redis.
    pub prefix: String,
    /// Most entries the log keeps (trimmed approximately, on append).
    pub max_len: u64,
    /// Longest wait for an answer to an ordinary command.
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "bayeux".into(),
            max_len: 100_000,
            response_timeout: Duration::from_secs(2),
        }
    }
}

impl RedisOptions {
    /// Sets the most entries the log keeps.
    pub fn max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// The backplane of a cluster whose nodes share a Redis deployment.
pub struct RedisBackplane {
    target: Target,
    options: RedisOptions,
    /// Commands: appends, the registry, leases.
    commands: Link,
    /// Blocking reads of the log only: they would hold up commands on a shared connection.
    reads: Link,
    keys: Keys,
}

/// Key names.
struct Keys {
    log: String,
    marks: String,
    nodes: String,
    leader: String,
    /// Presence: session -> user, online user -> number of sessions, online user -> version,
    /// and the version counter (one hash slot: `{presence}`).
    session_users: String,
    user_sessions: String,
    online_users: String,
    presence_version: String,
    prefix: String,
}

impl Keys {
    fn session(&self, client_id: &ClientId) -> String {
        format!("{}:session:{{{}}}", self.prefix, client_id.as_str())
    }

    fn node(&self, node: &NodeId) -> String {
        format!("{}:node:{{{}}}", self.prefix, node.as_str())
    }

    fn node_sessions(&self, node: &NodeId) -> String {
        format!("{}:node:{{{}}}:sessions", self.prefix, node.as_str())
    }
}

/// How long a blocking read may wait at most; its connection allows it this much more.
const MAX_BLOCK: Duration = Duration::from_secs(2);

impl RedisBackplane {
    /// A backplane on the deployment at `url`: `redis://host:port`, `redis+cluster://host:port,
    /// host:port` or `redis+sentinel://host:port,host:port/master`. Connects on first use, so
    /// a node starts (not ready) while Redis is down.
    pub fn new(url: &str, options: RedisOptions) -> Result<Self, String> {
        let target = Target::parse(url)?;
        let commands = Link::new(&target, options.response_timeout).map_err(|e| e.to_string())?;
        let reads =
            Link::new(&target, MAX_BLOCK + options.response_timeout).map_err(|e| e.to_string())?;
        let prefix = options.prefix.clone();
        let keys = Keys {
            log: format!("{prefix}:log"),
            marks: format!("{prefix}:log:marks"),
            nodes: format!("{prefix}:nodes"),
            leader: format!("{prefix}:leader"),
            session_users: format!("{prefix}:{{presence}}:session-users"),
            user_sessions: format!("{prefix}:{{presence}}:user-sessions"),
            online_users: format!("{prefix}:{{presence}}:online"),
            presence_version: format!("{prefix}:{{presence}}:version"),
            prefix,
        };
        Ok(Self {
            target,
            options,
            commands,
            reads,
            keys,
        })
    }

    /// Where the backplane is.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

impl RedisBackplane {
    /// `script` on a session's hash, with `first` (a node, or a lease) and the parts of its
    /// record as arguments (what the checkpoint, release and hand-over scripts take).
    fn record_invocation<'s>(
        &self,
        script: &'s redis::Script,
        first: &str,
        record: &SessionRecord,
    ) -> redis::ScriptInvocation<'s> {
        let [browser, bound, ack, attrs, subs, pos] = record_args(record);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.session(&record.client_id))
            .arg(first)
            .arg(browser)
            .arg(bound)
            .arg(ack)
            .arg(attrs)
            .arg(subs)
            .arg(pos);
        invocation
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("target", &self.target)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: RedisError) -> BackplaneError {
    BackplaneError::Unavailable(error.to_string())
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The position in a log id `0-N`.
fn position_of(id: &str) -> Result<u64, BackplaneError> {
    id.split_once('-')
        .and_then(|(_, seq)| seq.parse().ok())
        .ok_or_else(|| BackplaneError::Corrupt(format!("log id {id:?}")))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads the entries of an `XRANGE` reply (or one stream of an `XREAD` reply).
fn parse_entries(value: &Value) -> Result<Vec<Read>, BackplaneError> {
    let corrupt = |what: &str| BackplaneError::Corrupt(format!("log entry: {what}"));
    let Value::Array(entries) = value else {
        return Ok(Vec::new());
    };
    let mut reads = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(corrupt("not an array"));
        };
        let (Some(id), Some(Value::Array(pairs))) = (parts.first().and_then(text), parts.get(1))
        else {
            return Err(corrupt("no id or fields"));
        };
        let position = position_of(&id)?;
        let mut fields = HashMap::with_capacity(pairs.len() / 2);
        for pair in pairs.chunks(2) {
            if let [name, value] = pair {
                if let (Some(name), Some(value)) = (text(name), text(value)) {
                    fields.insert(name, value);
                }
            }
        }
        let appended_at_ms = fields.get("t").and_then(|t| t.parse().ok()).unwrap_or(0);
        match codec::parse_record(&fields) {
            Ok(record) => reads.push(Read {
                position,
                appended_at_ms,
                record,
            }),
            // One unreadable entry must not stop the log for every node: skip it, loudly.
            Err(why) => tracing::error!(position, %why, "unreadable log entry skipped"),
        }
    }
    Ok(reads)
}

/// The fields of a session hash that hold its record.
fn record_args(record: &SessionRecord) -> [String; 6] {
    [
        record
            .browser
            .as_ref()
            .map(|b| b.as_str().to_owned())
            .unwrap_or_default(),
        if record.cookie_bound { "1" } else { "0" }.to_owned(),
        if record.ack { "1" } else { "0" }.to_owned(),
        serde_json::Value::Object(record.attributes.clone()).to_string(),
        codec::subscriptions_json(record).to_string(),
        record.position.to_string(),
    ]
}

/// Reads a session record from the flat `[browser, bound, ack, attrs, subs, pos]` a script
/// returns.
fn record_from(client_id: &ClientId, parts: &[Value]) -> Result<SessionRecord, BackplaneError> {
    let field = |i: usize| parts.get(i).and_then(text).unwrap_or_default();
    let json = serde_json::json!({
        "browser": Some(field(0)).filter(|b| !b.is_empty()),
        "bound": field(1) == "1",
        "ack": field(2) == "1",
        "attrs": serde_json::from_str::<serde_json::Value>(&field(3)).unwrap_or_default(),
        "subs": serde_json::from_str::<serde_json::Value>(&field(4)).unwrap_or_default(),
        "pos": field(5).parse::<u64>().unwrap_or(0),
    });
    codec::session_from_json(client_id.clone(), &json).map_err(BackplaneError::Corrupt)
}

impl Backplane for RedisBackplane {
    fn append(&self, records: Vec<LogRecord>) -> BoxFuture<'_, BackplaneResult<Vec<u64>>> {
        Box::pin(async move {
            let at = wall_ms();
            let mut pipe = redis::pipe();
            for record in &records {
                let cmd = pipe
                    .cmd("XADD")
                    .arg(&self.keys.log)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.options.max_len)
                    .arg("0-*");
                for (name, value) in codec::record_fields(record, at) {
                    cmd.arg(name).arg(value);
                }
            }
            let ids: Vec<String> = self.commands.run_pipe(&pipe).await.map_err(unavailable)?;
            ids.iter().map(|id| position_of(id)).collect()
        })
    }

    fn read(
        &self,
        after: u64,
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'_, BackplaneResult<Vec<Read>>> {
        Box::pin(async move {
            let block = wait.min(MAX_BLOCK).as_millis().max(1) as u64;
            let cmd = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(max)
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(&self.keys.log)
                .arg(format!("0-{after}"))
                .to_owned();
            let reply: Value = self.reads.run(&cmd).await.map_err(unavailable)?;
            // [[key, entries]] or nil when nothing came in time.
            match reply {
                Value::Array(streams) => match streams.first() {
                    Some(Value::Array(stream)) => {
                        parse_entries(stream.get(1).unwrap_or(&Value::Nil))
                    }
                    _ => Ok(Vec::new()),
                },
                Value::Map(streams) => match streams.first() {
                    Some((_, entries)) => parse_entries(entries),
                    None => Ok(Vec::new()),
                },
                _ => Ok(Vec::new()),
            }
        })
    }

    fn range(
        &self,
        after: u64,
        through: u64,
        max: usize,
    ) -> BoxFuture<'_, BackplaneResult<Vec<Read>>> {
        Box::pin(async move {
            let cmd = redis::cmd("XRANGE")
                .arg(&self.keys.log)
                .arg(format!("(0-{after}"))
                .arg(format!("0-{through}"))
                .arg("COUNT")
                .arg(max)
                .to_owned();
            let reply: Value = self.commands.run(&cmd).await.map_err(unavailable)?;
            parse_entries(&reply)
        })
    }

    fn head(&self) -> BoxFuture<'_, BackplaneResult<u64>> {
        Box::pin(async move {
            let cmd = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&self.keys.log)
                .to_owned();
            match self.commands.run::<Value>(&cmd).await {
                Ok(Value::Array(fields)) => {
                    for pair in fields.chunks(2) {
                        if let [name, value] = pair {
                            if text(name).as_deref() == Some("last-generated-id") {
                                let id = text(value).unwrap_or_default();
                                return position_of(&id);
                            }
                        }
                    }
                    Err(BackplaneError::Corrupt(
                        "XINFO without last-generated-id".into(),
                    ))
                }
                Ok(Value::Map(pairs)) => {
                    for (name, value) in &pairs {
                        if text(name).as_deref() == Some("last-generated-id") {
                            return position_of(&text(value).unwrap_or_default());
                        }
                    }
                    Err(BackplaneError::Corrupt(
                        "XINFO without last-generated-id".into(),
                    ))
                }
                Ok(_) => Ok(0),
                // No stream yet: an empty log.
                Err(error) if error.to_string().contains("no such key") => Ok(0),
                Err(error) => Err(unavailable(error)),
            }
        })
    }

    fn trim_older_than(&self, age: Duration) -> BoxFuture<'_, BackplaneResult<()>> {
        Box::pin(async move {
            // Samples (time, newest position) taken as this runs: the newest sample older than
            // `age` bounds what may go.
            let now = wall_ms();
            let head = self.head().await?;
            let cutoff = now.saturating_sub(age.as_millis() as u64);
            let mark = redis::cmd("ZADD")
                .arg(&self.keys.marks)
                .arg(now)
                .arg(head)
                .to_owned();
            self.commands.run::<()>(&mark).await.map_err(unavailable)?;
            let older = redis::cmd("ZREVRANGEBYSCORE")
                .arg(&self.keys.marks)
                .arg(cutoff)
                .arg("-inf")
                .arg("LIMIT")
                .arg(0)
                .arg(1)
                .to_owned();
            let older: Vec<u64> = self.commands.run(&older).await.map_err(unavailable)?;
            if let Some(through) = older.first() {
                // Each command on its own: the log and its marks may live on two masters.
                for cmd in [
                    redis::cmd("XTRIM")
                        .arg(&self.keys.log)
                        .arg("MINID")
                        .arg("~")
                        .arg(format!("0-{}", through + 1))
                        .to_owned(),
                    redis::cmd("ZREMRANGEBYSCORE")
                        .arg(&self.keys.marks)
                        .arg("-inf")
                        .arg(format!("({cutoff}"))
                        .to_owned(),
                ] {
                    self.commands.run::<()>(&cmd).await.map_err(unavailable)?;
                }
            }
            Ok(())
        })
    }

    fn register(
        &self,
        node: &NodeId,
        record: &SessionRecord,
    ) -> BoxFuture<'_, BackplaneResult<()>> {
        let node = node.clone();
        let record = record.clone();
        Box::pin(async move {
            let [browser, bound, ack, attrs, subs, pos] = record_args(&record);
            let mut hset = redis::cmd("HSET");
            hset.arg(self.keys.session(&record.client_id))
                .arg("owner")
                .arg(node.as_str())
                .arg("epoch")
                .arg(1)
                .arg("browser")
                .arg(browser)
                .arg("bound")
                .arg(bound)
                .arg("ack")
                .arg(ack)
                .arg("attrs")
                .arg(attrs)
                .arg("subs")
                .arg(subs)
                .arg("pos")
                .arg(pos);
            self.commands.run::<()>(&hset).await.map_err(unavailable)?;
            let sadd = redis::cmd("SADD")
                .arg(self.keys.node_sessions(&node))
                .arg(record.client_id.as_str())
                .to_owned();
            self.commands.run::<()>(&sadd).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn claim(
        &self,
        node: &NodeId,
        client_id: &ClientId,
        cookie: &CookieCheck,
        move_ttl: Duration,
    ) -> BoxFuture<'_, BackplaneResult<Claim>> {
        let node = node.clone();
        let client_id = client_id.clone();
        let check = match cookie {
            CookieCheck::Unchecked => String::new(),
            CookieCheck::Presented(browser) => format!("={}", browser.as_str()),
            CookieCheck::Absent => "-".to_owned(),
        };
        Box::pin(async move {
            let script = scripts::claim();
            let mut invocation = script.prepare_invoke();
            invocation
                .key(self.keys.session(&client_id))
                .arg(node.as_str())
                .arg(&check)
                .arg(move_ttl.as_millis() as u64);
            let reply: Vec<Value> = self
                .commands
                .run_script(&invocation)
                .await
                .map_err(unavailable)?;
            let outcome = reply.first().and_then(text).unwrap_or_default();
            match outcome.as_str() {
                "unknown" => Ok(Claim::Unknown),
                "denied" => Ok(Claim::Denied),
                "busy" => Ok(Claim::Busy),
                "claimed" => {
                    let epoch = reply
                        .get(1)
                        .and_then(text)
                        .and_then(|e| e.parse().ok())
                        .unwrap_or(0);
                    let previous = reply
                        .get(2)
                        .and_then(text)
                        .filter(|p| !p.is_empty())
                        .map(NodeId::new);
                    let record = record_from(&client_id, reply.get(3..).unwrap_or(&[]))?;
                    // Membership of the node sets follows: other keys, maybe other masters.
                    if let Some(previous) = &previous {
                        let srem = redis::cmd("SREM")
                            .arg(self.keys.node_sessions(previous))
                            .arg(client_id.as_str())
                            .to_owned();
                        self.commands.run::<()>(&srem).await.map_err(unavailable)?;
                    }
                    let sadd = redis::cmd("SADD")
                        .arg(self.keys.node_sessions(&node))
                        .arg(client_id.as_str())
                        .to_owned();
                    self.commands.run::<()>(&sadd).await.map_err(unavailable)?;
                    Ok(Claim::Claimed {
                        record,
                        epoch,
                        previous,
                    })
                }
                other => Err(BackplaneError::Corrupt(format!("claim answered {other:?}"))),
            }
        })
    }

    fn moved(&self, node: &NodeId, client_id: &ClientId) -> BoxFuture<'_, BackplaneResult<()>> {
        let node = node.clone();
        let client_id = client_id.clone();
        Box::pin(async move {
            let script = scripts::moved();
            let mut invocation = script.prepare_invoke();
            invocation
                .key(self.keys.session(&client_id))
                .arg(node.as_str());
            self.commands
                .run_script::<i64>(&invocation)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn checkpoint(
        &self,
        node: &NodeId,
        records: &[SessionRecord],
    ) -> BoxFuture<'_, BackplaneResult<Vec<bool>>> {
        let node = node.clone();
        let records = records.to_vec();
        Box::pin(async move {
            let script = scripts::checkpoint();
            // All at once: the connection pipelines concurrent commands on the wire, so this
            // costs one round trip, not one per session.
            let writes = records.iter().map(|record| {
                let invocation = self.record_invocation(&script, node.as_str(), record);
                async move { self.commands.run_script::<i64>(&invocation).await }
            });
            let mut written = Vec::with_capacity(records.len());
            for result in futures::future::join_all(writes).await {
                written.push(result.map_err(unavailable)? == 1);
            }
            Ok(written)
        })
    }

    fn hand_over(
        &self,
        record: &SessionRecord,
        epoch: u64,
    ) -> BoxFuture<'_, BackplaneResult<bool>> {
        let record = record.clone();
        Box::pin(async move {
            let script = scripts::hand_over();
            let invocation = self.record_invocation(&script, &epoch.to_string(), &record);
            let written: i64 = self
                .commands
                .run_script(&invocation)
                .await
                .map_err(unavailable)?;
            Ok(written == 1)
        })
    }

    fn release(
        &self,
        node: &NodeId,
        record: &SessionRecord,
    ) -> BoxFuture<'_, BackplaneResult<bool>> {
        let node = node.clone();
        let record = record.clone();
        Box::pin(async move {
            let script = scripts::release();
            let invocation = self.record_invocation(&script, node.as_str(), &record);
            let ok: i64 = self
                .commands
                .run_script(&invocation)
                .await
                .map_err(unavailable)?;
            if ok == 1 {
                let srem = redis::cmd("SREM")
                    .arg(self.keys.node_sessions(&node))
                    .arg(record.client_id.as_str())
                    .to_owned();
                self.commands.run::<()>(&srem).await.map_err(unavailable)?;
            }
            Ok(ok == 1)
        })
    }

    fn remove(
        &self,
        client_id: &ClientId,
        owner: Option<&NodeId>,
    ) -> BoxFuture<'_, BackplaneResult<bool>> {
        let client_id = client_id.clone();
        let owner = owner.map(|o| o.as_str().to_owned());
        Box::pin(async move {
            let script = scripts::remove();
            let mut invocation = script.prepare_invoke();
            invocation
                .key(self.keys.session(&client_id))
                .arg(owner.as_deref().unwrap_or("*"));
            let reply: Value = self
                .commands
                .run_script(&invocation)
                .await
                .map_err(unavailable)?;
            let Some(former) = text(&reply) else {
                return Ok(false);
            };
            if !former.is_empty() {
                let srem = redis::cmd("SREM")
                    .arg(self.keys.node_sessions(&NodeId::new(former)))
                    .arg(client_id.as_str())
                    .to_owned();
                self.commands.run::<()>(&srem).await.map_err(unavailable)?;
            }
            Ok(true)
        })
    }

    fn lookup(&self, client_id: &ClientId) -> BoxFuture<'_, BackplaneResult<Option<Registration>>> {
        let client_id = client_id.clone();
        Box::pin(async move {
            let cmd = redis::cmd("HMGET")
                .arg(self.keys.session(&client_id))
                .arg(&["browser", "bound", "ack", "attrs", "subs", "pos", "owner"])
                .to_owned();
            let parts: Vec<Value> = self.commands.run(&cmd).await.map_err(unavailable)?;
            if parts.iter().all(|p| matches!(p, Value::Nil)) {
                return Ok(None);
            }
            let record = record_from(&client_id, &parts[..6.min(parts.len())])?;
            let owner = parts
                .get(6)
                .and_then(text)
                .filter(|o| !o.is_empty())
                .map(NodeId::new);
            Ok(Some(Registration { record, owner }))
        })
    }

    fn heartbeat(&self, node: &NodeId, ttl: Duration) -> BoxFuture<'_, BackplaneResult<()>> {
        let node = node.clone();
        Box::pin(async move {
            let set = redis::cmd("SET")
                .arg(self.keys.node(&node))
                .arg(wall_ms())
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .to_owned();
            self.commands.run::<()>(&set).await.map_err(unavailable)?;
            let sadd = redis::cmd("SADD")
                .arg(&self.keys.nodes)
                .arg(node.as_str())
                .to_owned();
            self.commands.run::<()>(&sadd).await.map_err(unavailable)
        })
    }

    fn is_alive(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<bool>> {
        let node = node.clone();
        Box::pin(async move {
            let cmd = redis::cmd("EXISTS").arg(self.keys.node(&node)).to_owned();
            let exists: i64 = self.commands.run(&cmd).await.map_err(unavailable)?;
            Ok(exists == 1)
        })
    }

    fn nodes(&self) -> BoxFuture<'_, BackplaneResult<Vec<NodeId>>> {
        Box::pin(async move {
            let cmd = redis::cmd("SMEMBERS").arg(&self.keys.nodes).to_owned();
            let names: Vec<String> = self.commands.run(&cmd).await.map_err(unavailable)?;
            Ok(names.into_iter().map(NodeId::new).collect())
        })
    }

    fn sessions_of(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<Vec<ClientId>>> {
        let node = node.clone();
        Box::pin(async move {
            let cmd = redis::cmd("SMEMBERS")
                .arg(self.keys.node_sessions(&node))
                .to_owned();
            let ids: Vec<String> = self.commands.run(&cmd).await.map_err(unavailable)?;
            Ok(ids.into_iter().map(ClientId::new).collect())
        })
    }

    fn forget_node(&self, node: &NodeId) -> BoxFuture<'_, BackplaneResult<()>> {
        let node = node.clone();
        Box::pin(async move {
            for cmd in [
                redis::cmd("DEL").arg(self.keys.node(&node)).to_owned(),
                redis::cmd("DEL")
                    .arg(self.keys.node_sessions(&node))
                    .to_owned(),
                redis::cmd("SREM")
                    .arg(&self.keys.nodes)
                    .arg(node.as_str())
                    .to_owned(),
            ] {
                self.commands.run::<()>(&cmd).await.map_err(unavailable)?;
            }
            Ok(())
        })
    }

    fn lead(&self, node: &NodeId, ttl: Duration) -> BoxFuture<'_, BackplaneResult<bool>> {
        let node = node.clone();
        Box::pin(async move {
            let script = scripts::lead();
            let mut invocation = script.prepare_invoke();
            invocation
                .key(&self.keys.leader)
                .arg(node.as_str())
                .arg(ttl.as_millis() as u64);
            let leads: i64 = self
                .commands
                .run_script(&invocation)
                .await
                .map_err(unavailable)?;
            Ok(leads == 1)
        })
    }

    fn associate(
        &self,
        session: &ClientId,
        user: Option<&str>,
    ) -> BoxFuture<'_, BackplaneResult<PresenceChange>> {
        let session = session.clone();
        let user = user.unwrap_or_default().to_owned();
        Box::pin(async move {
            let script = scripts::associate();
            let mut invocation = script.prepare_invoke();
            invocation
                .key(&self.keys.session_users)
                .key(&self.keys.user_sessions)
                .key(&self.keys.online_users)
                .key(&self.keys.presence_version)
                .arg(session.as_str())
                .arg(user);
            let (left, left_version, joined, joined_version): (String, u64, String, u64) = self
                .commands
                .run_script(&invocation)
                .await
                .map_err(unavailable)?;
            let some = |user: String, version| (!user.is_empty()).then_some((user, version));
            Ok(PresenceChange {
                joined: some(joined, joined_version),
                left: some(left, left_version),
            })
        })
    }

    fn online_users(&self) -> BoxFuture<'_, BackplaneResult<Vec<(String, u64)>>> {
        Box::pin(async move {
            let cmd = redis::cmd("HGETALL")
                .arg(&self.keys.online_users)
                .to_owned();
            let users: Vec<(String, u64)> = self.commands.run(&cmd).await.map_err(unavailable)?;
            Ok(users)
        })
    }

    fn associated_sessions(
        &self,
        cursor: u64,
        count: usize,
    ) -> BoxFuture<'_, BackplaneResult<(u64, Vec<ClientId>)>> {
        Box::pin(async move {
            let cmd = redis::cmd("HSCAN")
                .arg(&self.keys.session_users)
                .arg(cursor)
                .arg("COUNT")
                .arg(count.max(1))
                .to_owned();
            let (next, pairs): (u64, Vec<(String, String)>) =
                self.commands.run(&cmd).await.map_err(unavailable)?;
            Ok((
                next,
                pairs.into_iter().map(|(s, _)| ClientId::new(s)).collect(),
            ))
        })
    }
}
