//! [`RedisConfig`] and the one shared connection: a server or a cluster, every command bounded
//! by the response timeout, and the one SCAN loop over every primary.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::backend::timed;
use crate::store::StoreError;

pub(super) const BACKEND: &str = "redis";

pub(super) fn error(e: redis::RedisError) -> StoreError {
    StoreError::backend(BACKEND, e)
}

/// A key that holds another Redis type than the command works on (`WRONGTYPE`): a list or a
/// hash where a session record (a string) or a per-user index (a sorted set) belongs. Such a
/// key is not this crate's (or was damaged): callers treat it as absent and log it, never as
/// a backend failure, so one stray key cannot make a user's requests fail with `503`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WrongType;

/// Whether the server answered `WRONGTYPE`.
pub(super) fn is_wrong_type(e: &redis::RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}

/// Connection settings of a [`RedisStore`](super::RedisStore).
///
/// `Debug` never shows a password: `redis://user:secret@host` prints as
/// `redis://user:***@host`.
///
/// ```
/// use std::time::Duration;
/// use tower_app_sessions::store::redis::RedisConfig;
/// let config = RedisConfig::new("redis://app:secret@127.0.0.1:6379")
///     .max_retries(3)
///     .response_timeout(Duration::from_millis(500));
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisConfig {
    urls: Vec<String>,
    cluster: bool,
    max_retries: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| crate::redact::url(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("max_retries", &self.max_retries)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// One Redis server: `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            cluster: false,
            max_retries: 3,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
        }
    }

    /// A Redis Cluster, from one or more of its nodes.
    pub fn cluster(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            cluster: true,
            ..Self::new(String::new())
        }
    }

    /// Reconnection attempts before a command fails (`REDIS_MAX_RETRIES`, default 3, as the
    /// TypeScript apps' `MAX_RETRIES`).
    pub fn max_retries(mut self, retries: usize) -> Self {
        self.max_retries = retries;
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long any one store operation may take before it fails with
    /// [`StoreError::Timeout`] (default 1 s): a hung Redis gives fast `503`s, not hung
    /// requests.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

/// One shared, multiplexed, auto-reconnecting connection, to a server or a cluster; a clone
/// is handed to each command or script.
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection and the bound on every command sent on it.
#[derive(Clone)]
pub(super) struct Redis {
    connection: Connection,
    timeout: Duration,
}

/// A node a keyspace-wide command must visit: the server itself, or one cluster primary.
type Node = Option<(String, u16)>;

impl Redis {
    /// Connects (and fails fast if Redis cannot be reached now).
    pub(super) async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let limit = config.connect_timeout;
        let connection = if config.cluster {
            let client = redis::cluster::ClusterClient::builder(config.urls.clone())
                .connection_timeout(limit)
                .response_timeout(config.response_timeout)
                .retries(u32::try_from(config.max_retries).unwrap_or(u32::MAX))
                .build()
                .map_err(error)?;
            Connection::Cluster(timed(BACKEND, limit, client.get_async_connection(), error).await?)
        } else {
            let url = config.urls.first().map(String::as_str).unwrap_or_default();
            let client = redis::Client::open(url).map_err(error)?;
            let manager = ConnectionManagerConfig::new()
                .set_number_of_retries(config.max_retries)
                .set_connection_timeout(Some(limit))
                .set_response_timeout(Some(config.response_timeout))
                .set_max_delay(Duration::from_millis(500));
            let connecting = ConnectionManager::new_with_config(client, manager);
            Connection::Single(timed(BACKEND, limit, connecting, error).await?)
        };
        Ok(Self {
            connection,
            timeout: config.response_timeout,
        })
    }

    /// Whether this is a Redis Cluster (a pipeline may then not span slots).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }

    /// Runs `f` on (a clone of) the connection, within the response timeout.
    pub(super) async fn run<T, F>(&self, f: impl FnOnce(Connection) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        timed(BACKEND, self.timeout, f(self.connection.clone()), error).await
    }

    /// Sends one command.
    pub(super) async fn query<T: redis::FromRedisValue>(&self, cmd: Cmd) -> Result<T, StoreError> {
        self.run(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Sends one command on a key; the key holding another type answers `Ok(Err(WrongType))`.
    pub(super) async fn query_key<T: redis::FromRedisValue>(
        &self,
        cmd: Cmd,
    ) -> Result<Result<T, WrongType>, StoreError> {
        self.run(|mut c| async move {
            match cmd.query_async(&mut c).await {
                Ok(value) => Ok(Ok(value)),
                Err(e) if is_wrong_type(&e) => Ok(Err(WrongType)),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `GET key`; a key that is not a string answers `Err(WrongType)`.
    pub(super) async fn get(
        &self,
        key: &str,
    ) -> Result<Result<Option<Vec<u8>>, WrongType>, StoreError> {
        self.query_key(command("GET", key)).await
    }

    /// `DEL key`: whether it existed.
    pub(super) async fn del(&self, key: &str) -> Result<bool, StoreError> {
        let n: u64 = self.query(command("DEL", key)).await?;
        Ok(n > 0)
    }

    pub(super) async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let n: u64 = self.query(command("EXISTS", key)).await?;
        Ok(n > 0)
    }

    /// SCANs (never `KEYS`) the keys matching `pattern` on every primary, `count` per page,
    /// folding each page into `acc` with `page` before asking for the next: memory stays
    /// bounded by one page whatever the keyspace holds. A key may come twice (SCAN promises
    /// "at least once"), so what `page` does must be idempotent.
    pub(super) async fn scan_fold<A, F, Fut>(
        &self,
        pattern: &str,
        count: usize,
        mut acc: A,
        mut page: F,
    ) -> Result<A, StoreError>
    where
        F: FnMut(A, Vec<String>) -> Fut,
        Fut: Future<Output = Result<A, StoreError>>,
    {
        for node in self.primaries().await? {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(count.max(1));
                let (next, keys): (u64, Vec<String>) = self.on_node(&node, cmd).await?;
                acc = page(acc, keys).await?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(acc)
    }

    /// The nodes a keyspace-wide SCAN must visit: the server itself, or every cluster primary.
    async fn primaries(&self) -> Result<Vec<Node>, StoreError> {
        let Connection::Cluster(_) = &self.connection else {
            return Ok(vec![None]);
        };
        let nodes: String = self.query(command("CLUSTER", "NODES")).await?;
        Ok(nodes
            .lines()
            .filter(|line| {
                line.split(' ')
                    .nth(2)
                    .is_some_and(|flags| flags.contains("master"))
            })
            .filter_map(|line| {
                let addr = line.split(' ').nth(1)?.split('@').next()?;
                let (host, port) = addr.rsplit_once(':')?;
                Some((host.to_owned(), port.parse().ok()?))
            })
            .map(Some)
            .collect())
    }

    /// `cmd` on the server, or on every cluster primary: one answer per node.
    pub(super) async fn on_primaries<T: redis::FromRedisValue>(
        &self,
        cmd: Cmd,
    ) -> Result<Vec<T>, StoreError> {
        let mut answers = Vec::new();
        for node in self.primaries().await? {
            answers.push(self.on_node(&node, cmd.clone()).await?);
        }
        Ok(answers)
    }

    async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: &Node,
        cmd: Cmd,
    ) -> Result<T, StoreError> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        match (node, &self.connection) {
            (Some((host, port)), Connection::Cluster(c)) => {
                let mut c = c.clone();
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let value =
                    timed(BACKEND, self.timeout, c.route_command(cmd, route), error).await?;
                redis::from_redis_value(value).map_err(|e| StoreError::backend(BACKEND, e))
            }
            _ => self.query(cmd).await,
        }
    }
}

/// `name arg`, one command.
pub(super) fn command(name: &str, arg: &str) -> Cmd {
    let mut cmd = redis::cmd(name);
    cmd.arg(arg);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let config = RedisConfig::new("rediss://app:s3cr3t-p%40ss@redis.internal:6380/2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("rediss://app:***@redis.internal:6380/2"),
            "{shown}"
        );
        let cluster = format!(
            "{:?}",
            RedisConfig::cluster(["redis://:pw@a:1", "redis://b:2"])
        );
        assert!(!cluster.contains("pw@"), "{cluster}");
        assert!(
            cluster.contains("redis://:***@a:1") && cluster.contains("redis://b:2"),
            "{cluster}"
        );
    }
}
