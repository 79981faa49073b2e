//! A connection to the deployment, whatever its shape: one server, a Cluster, or the master a
//! set of Sentinels names. Every call fails fast when Redis is unreachable (the caller answers
//! `503::backplane_unavailable`) and reconnects by itself afterwards.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisResult, ScriptInvocation};
use tokio::sync::Mutex;

/// Where the deployment is, as `bayeuxd --backplane` spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `redis+cluster://host:port,host:port`: any nodes of a Redis Cluster.
    Cluster(Vec<String>),
    /// `redis+sentinel://host:port,host:port/master`: Sentinels and the master's name.
    Sentinel {
        /// `redis://host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The name the Sentinels know the master by.
        master: String,
    },
    /// `redis://host:port[/db]`: one server.
    Single(String),
}

impl Target {
    /// Parses a backplane URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let hosts = |rest: &str| -> Vec<String> {
            rest.split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}"))
                .collect()
        };
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let nodes = hosts(rest.trim_end_matches('/'));
            if nodes.is_empty() {
                return Err(format!("{url:?}: no cluster node"));
            }
            Ok(Self::Cluster(nodes))
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (addresses, master) = rest
                .split_once('/')
                .ok_or_else(|| format!("{url:?}: expected redis+sentinel://host:port/master"))?;
            let sentinels = hosts(addresses);
            if sentinels.is_empty() || master.is_empty() {
                return Err(format!(
                    "{url:?}: expected redis+sentinel://host:port/master"
                ));
            }
            Ok(Self::Sentinel {
                sentinels,
                master: master.to_owned(),
            })
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Self::Single(url.to_owned()))
        } else {
            Err(format!(
                "{url:?}: expected redis://, redis+cluster:// or redis+sentinel://"
            ))
        }
    }
}

/// One connection (multiplexed: clones share it) to the deployment.
#[derive(Clone)]
pub(crate) enum Link {
    Cluster(Arc<Reconnecting<ClusterClient, ClusterConnection>>),
    Sentinel(Arc<Reconnecting<Mutex<SentinelClient>, MultiplexedConnection>>),
    Single(ConnectionManager),
}

/// A connection made on first use and made again after a failure.
pub(crate) struct Reconnecting<C, K> {
    client: C,
    connection: Mutex<Option<K>>,
    response_timeout: Duration,
}

impl Link {
    /// A link that answers within `response_timeout` (a blocking read needs more than its
    /// block time). Connects lazily: Redis may be down when the node starts.
    pub(crate) fn new(target: &Target, response_timeout: Duration) -> RedisResult<Self> {
        let connect_timeout = Duration::from_secs(1);
        Ok(match target {
            Target::Single(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(connect_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let client = redis::Client::open(url.as_str())?;
                Self::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            Target::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.clone())
                    .response_timeout(response_timeout)
                    .connection_timeout(connect_timeout)
                    .retries(1)
                    .build()?;
                Self::Cluster(Arc::new(Reconnecting {
                    client,
                    connection: Mutex::new(None),
                    response_timeout,
                }))
            }
            Target::Sentinel { sentinels, master } => {
                let client = SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    None,
                    SentinelServerType::Master,
                )?;
                Self::Sentinel(Arc::new(Reconnecting {
                    client: Mutex::new(client),
                    connection: Mutex::new(None),
                    response_timeout,
                }))
            }
        })
    }

    /// Runs one command.
    pub(crate) async fn run<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Self::Single(manager) => cmd.query_async(&mut manager.clone()).await,
            Self::Cluster(cluster) => {
                let mut conn = cluster.connection().await?;
                cluster.outcome(cmd.query_async(&mut conn).await).await
            }
            Self::Sentinel(sentinel) => {
                let mut conn = sentinel.connection().await?;
                sentinel.outcome(cmd.query_async(&mut conn).await).await
            }
        }
    }

    /// Runs a pipeline (one round trip).
    pub(crate) async fn run_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> RedisResult<T> {
        match self {
            Self::Single(manager) => pipe.query_async(&mut manager.clone()).await,
            Self::Cluster(cluster) => {
                let mut conn = cluster.connection().await?;
                cluster.outcome(pipe.query_async(&mut conn).await).await
            }
            Self::Sentinel(sentinel) => {
                let mut conn = sentinel.connection().await?;
                sentinel.outcome(pipe.query_async(&mut conn).await).await
            }
        }
    }

    /// Runs a Lua script (by digest, loading it when Redis does not know it yet).
    pub(crate) async fn run_script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Self::Single(manager) => invocation.invoke_async(&mut manager.clone()).await,
            Self::Cluster(cluster) => {
                let mut conn = cluster.connection().await?;
                cluster
                    .outcome(invocation.invoke_async(&mut conn).await)
                    .await
            }
            Self::Sentinel(sentinel) => {
                let mut conn = sentinel.connection().await?;
                sentinel
                    .outcome(invocation.invoke_async(&mut conn).await)
                    .await
            }
        }
    }
}

/// Whether an error means the connection itself is bad (to be made again), not the command.
fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

impl<C, K: Clone> Reconnecting<C, K> {
    /// Forgets the connection after a connection error, so that the next call makes a new one.
    async fn outcome<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result {
            if is_connection_error(error) {
                *self.connection.lock().await = None;
            }
        }
        result
    }
}

impl Reconnecting<ClusterClient, ClusterConnection> {
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(
            self.response_timeout.max(Duration::from_secs(1)),
            self.client.get_async_connection(),
        )
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

impl Reconnecting<Mutex<SentinelClient>, MultiplexedConnection> {
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        // Asks the Sentinels who the master is now: after a failover, the new one.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(Duration::from_secs(1)));
        let conn = tokio::time::timeout(Duration::from_secs(3), async {
            self.client
                .lock()
                .await
                .get_async_connection_with_config(&config)
                .await
        })
        .await
        .map_err(|_| RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backplane_urls_parse_to_their_deployment() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379"),
            Ok(Target::Single("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            Target::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001"),
            Ok(Target::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into()
            ]))
        );
        assert_eq!(
            Target::parse("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/main"),
            Ok(Target::Sentinel {
                sentinels: vec![
                    "redis://127.0.0.1:26379".into(),
                    "redis://127.0.0.1:26380".into()
                ],
                master: "main".into()
            })
        );
        assert!(Target::parse("redis+sentinel://127.0.0.1:26379").is_err());
        assert!(Target::parse("http://127.0.0.1").is_err());
        assert!(Target::parse("redis+cluster://").is_err());
    }
}
