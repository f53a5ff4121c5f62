//! [`RedisStore`]: sessions in Redis (or Redis Cluster), shared with the TypeScript apps.
//!
//! # Layout
//!
//! | key | type | what |
//! |---|---|---|
//! | `session:<context>:<id>` | string | the record's JSON, `SET … EX <ttl>` (the seed's format) |
//! | `session:<id>` | string | a pre-migration (legacy) record, read only through the fallback |
//! | `user-sessions:{<user_id>}` | sorted set | member `<context>:<id>`, score `expires_at`: revoke-all and listing without scanning |
//!
//! The per-user index deliberately does not match `session:*`, the pattern the seed's
//! cleanup check counts. Its dead members are pruned on every write to it and the key
//! expires with the user's last session, so it never outgrows the user's live sessions.
//!
//! # Cluster
//!
//! A session key and a user's index key usually live in different slots, so no command or
//! script here touches two keys: operations that need both send two commands concurrently on
//! the multiplexed connection (one round-trip time, not two).

use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, ToRedisArgs, Value};
use uuid::Uuid;

use super::{BoxFuture, Scope, SessionInfo, SessionStore, StoreError};
use crate::record::now_ms;
use crate::{AppContext, SessionId, SessionRecord};

const BACKEND: &str = "redis";

/// How long a user's revocation count outlives the last revocation ([`keys::user_revocations`]).
const REVOCATION_COUNT_TTL_MS: i64 = 60_000;

/// The one place Redis key names are built.
pub mod keys {
    use crate::{AppContext, SessionId};
    use uuid::Uuid;

    /// Prefix of every session key, context-scoped or legacy.
    pub const SESSION_PREFIX: &str = "session:";

    /// `session:<context>:<id>`
    pub fn session(context: &AppContext, id: &SessionId) -> String {
        format!("{SESSION_PREFIX}{}:{}", context.as_str(), id.as_str())
    }

    /// `session:<id>`: the key the TypeScript apps wrote before the migration.
    pub fn legacy(id: &SessionId) -> String {
        format!("{SESSION_PREFIX}{}", id.as_str())
    }

    /// `user-sessions:{<user_id>}`: the per-user index (the hash tag keeps one user's index
    /// in one cluster slot).
    pub fn user_index(user_id: &Uuid) -> String {
        format!("user-sessions:{{{user_id}}}")
    }

    /// `user-revocations:{<user_id>}`: how many times the user's sessions were revoked,
    /// counted twice per revocation (odd while one runs), so a rotation can tell that one
    /// overlapped it (same slot as the user's index).
    pub fn user_revocations(user_id: &Uuid) -> String {
        format!("user-revocations:{{{user_id}}}")
    }

    /// `<context>:<id>`: a member of the per-user index.
    pub fn index_member(context: &AppContext, id: &SessionId) -> String {
        format!("{}:{}", context.as_str(), id.as_str())
    }

    /// `session:<context>:*`: what [`scan`](super::RedisStore::count_sessions) matches.
    pub fn context_pattern(context: &AppContext) -> String {
        format!("{SESSION_PREFIX}{}:*", context.as_str())
    }

    /// The id of a legacy key `session:<id>`, or `None` for any other key.
    pub fn parse_legacy(key: &str) -> Option<SessionId> {
        key.strip_prefix(SESSION_PREFIX).and_then(SessionId::parse)
    }
}

/// Moves `expires_at` inside the stored JSON and the key's TTL together, atomically, without
/// re-encoding (the bytes stay the TypeScript writer's). Never recreates a deleted key nor
/// extends an expired record. Returns the record's `user_id` (so the caller can move the
/// user-index score along; `1` if it has none), `0` when there is nothing to extend, `-1` for
/// an unreadable value.
const EXTEND: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local current = tonumber(string.match(v, '"expires_at"%s*:%s*([-%d%.eE+]+)'))
if current == nil then return -1 end
if current <= tonumber(ARGV[3]) then return 0 end
local n, count = string.gsub(v, '"expires_at"%s*:%s*[-%d%.eE+]+', '"expires_at":' .. ARGV[1], 1)
if count ~= 1 then return -1 end
redis.call('SET', KEYS[1], n, 'EX', ARGV[2])
local user = string.match(v, '"user_id"%s*:%s*"([%x%-]+)"')
return user or 1
"#;

/// Adds (or moves) one member of a user's index, removes the member ARGV[4] if given (a
/// rotated id), drops dead members (score, the session's `expires_at`, at or before `now` =
/// ARGV[3]), and lets the index key expire with the user's last session.
const INDEX_ADD: &str = r#"
if ARGV[4] then redis.call('ZREM', KEYS[1], ARGV[4]) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
"#;

/// Connection settings of a [`RedisStore`].
///
/// ```
/// use std::time::Duration;
/// use tower_app_sessions::store::redis::RedisConfig;
/// let config = RedisConfig::new("redis://127.0.0.1:6379").max_retries(3).response_timeout(Duration::from_millis(500));
/// # let _ = config;
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

/// `Debug` never shows a password: `redis://user:secret@host` prints as
/// `redis://user:***@host`.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_password(u)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("max_retries", &self.max_retries)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// `url` with the password of its user information, if any, replaced by `***`.
pub(crate) fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        // `redis://secret@host`: redis-rs takes a lone user-information part as the password.
        None => format!("{}***{}", &url[..scheme_end], &rest[at..]),
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
    /// seed's `MAX_RETRIES`).
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

/// One shared, multiplexed, auto-reconnecting connection, to a server or a cluster.
#[derive(Clone)]
enum Connection {
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

/// A [`SessionStore`] on Redis or Redis Cluster (feature `redis`).
///
/// Clones share one multiplexed connection that reconnects by itself; build one per process
/// and share it between contexts (that is what [`Sessions`](crate::Sessions) does).
///
/// ```no_run
/// # async fn run() -> Result<(), tower_app_sessions::StoreError> {
/// use tower_app_sessions::{store::redis::{RedisConfig, RedisStore}, AppContext, SessionLayer};
///
/// let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// let admin = SessionLayer::for_context(AppContext::Admin).with_store(store.clone());
/// let web = SessionLayer::for_context(AppContext::Web).with_store(store).legacy_fallback(true);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    timeout: Duration,
    extend: Script,
    index_add: Script,
}

fn error(e: redis::RedisError) -> StoreError {
    StoreError::backend(BACKEND, e)
}

/// What [`RedisStore::migrate_legacy`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Legacy keys `session:<id>` seen.
    pub scanned: u64,
    /// Copied to `session:web:<id>` by this run.
    pub copied: u64,
    /// Already present under the new key (an earlier run, or a new login), left as they were.
    pub already_present: u64,
    /// Legacy keys deleted (move mode), after their copy was in place.
    pub deleted: u64,
    /// Expired or vanished while the migration ran.
    pub expired: u64,
    /// Values that are not session records: left untouched and logged.
    pub invalid: u64,
}

/// Whether [`RedisStore::migrate_legacy`] keeps the legacy keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// Copy: legacy keys stay until they expire (safe while old app versions still run).
    Copy,
    /// Move: each legacy key is deleted once its copy is in place.
    Move,
}

impl RedisStore {
    /// Connects (and fails fast if Redis cannot be reached now).
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the URL is invalid or no connection could be made in time.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let connection = if config.cluster {
            let client = redis::cluster::ClusterClient::builder(config.urls.clone())
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout)
                .retries(u32::try_from(config.max_retries).unwrap_or(u32::MAX))
                .build()
                .map_err(error)?;
            let connecting = client.get_async_connection();
            Connection::Cluster(timed(config.connect_timeout, connecting).await?)
        } else {
            let url = config.urls.first().map(String::as_str).unwrap_or_default();
            let client = redis::Client::open(url).map_err(error)?;
            let manager = ConnectionManagerConfig::new()
                .set_number_of_retries(config.max_retries)
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.response_timeout))
                .set_max_delay(Duration::from_millis(500));
            let connecting = ConnectionManager::new_with_config(client, manager);
            Connection::Single(timed(config.connect_timeout, connecting).await?)
        };
        Ok(Self {
            connection,
            timeout: config.response_timeout,
            extend: Script::new(EXTEND),
            index_add: Script::new(INDEX_ADD),
        })
    }

    async fn run<T, F>(&self, f: impl FnOnce(Connection) -> F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        timed(self.timeout, f(self.connection.clone())).await
    }

    async fn get(&self, key: impl ToRedisArgs + Send) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let n: u64 = self
            .run(|mut c| async move { redis::cmd("EXISTS").arg(key).query_async(&mut c).await })
            .await?;
        Ok(n > 0)
    }

    async fn del(&self, key: String) -> Result<bool, StoreError> {
        let n: u64 = self
            .run(|mut c| async move { redis::cmd("DEL").arg(key).query_async(&mut c).await })
            .await?;
        Ok(n > 0)
    }

    async fn index_add(
        &self,
        user_id: &Uuid,
        member: String,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.index_replace(user_id, member, None, expires_at, now)
            .await
    }

    /// [`index_add`](Self::index_add), removing `replaced` in the same script.
    async fn index_replace(
        &self,
        user_id: &Uuid,
        member: String,
        replaced: Option<String>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let script = self.index_add.clone();
        let key = keys::user_index(user_id);
        self.run(|mut c| async move {
            let mut invocation = script.key(key);
            invocation.arg(member).arg(expires_at).arg(now);
            if let Some(replaced) = replaced {
                invocation.arg(replaced);
            }
            invocation.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(drop)
    }

    /// The user's revocation count ([`keys::user_revocations`]); 0 when none is known.
    async fn revocations(&self, user_id: &Uuid) -> Result<i64, StoreError> {
        let key = keys::user_revocations(user_id);
        let count: Option<i64> = self
            .run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await?;
        Ok(count.unwrap_or(0))
    }

    /// Counts one edge of a revocation (its start or its end). The count outlives any one
    /// revocation by a minute: a revocation that dies half-way leaves it odd, and rotations of
    /// the user's sessions fail (closed) until it expires.
    async fn count_revocation(&self, user_id: &Uuid) -> Result<(), StoreError> {
        let key = keys::user_revocations(user_id);
        self.run(|mut c| async move {
            redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(&key)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(REVOCATION_COUNT_TTL_MS)
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Moves `old` to `new`: see [`SessionStore::rotate`]. A key cannot be renamed across
    /// cluster slots, so the record is *taken* (`GETDEL`: from then on `old` is gone, whoever
    /// asks) and written under `new`; a revoke-all of the user that overlaps the move is seen
    /// through the user's revocation count, read before the take and after the write, and
    /// undoes the write.
    async fn move_session(
        &self,
        context: &AppContext,
        old: &SessionId,
        new: &SessionId,
        user_id: &Uuid,
        now: i64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let before = self.revocations(user_id).await?;
        let old_key = keys::session(context, old);
        let taken = old_key.clone();
        let bytes: Option<Vec<u8>> = self
            .run(|mut c| async move { redis::cmd("GETDEL").arg(taken).query_async(&mut c).await })
            .await?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let record =
            Self::parse(&old_key, &bytes).filter(|r| !r.is_expired(now) && r.user_id == *user_id);
        let Some(record) = record.filter(|_| before % 2 == 0) else {
            // Expired, unreadable, or a revocation of the user is running: taken is ended.
            return Ok(None);
        };
        let new_key = keys::session(context, new);
        let ttl = ttl_secs(record.expires_at, now);
        let set = self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(new_key)
                .arg(bytes)
                .arg("EX")
                .arg(ttl)
                .arg("NX")
                .query_async::<Option<String>>(&mut c)
                .await
        });
        let index = self.index_replace(
            &record.user_id,
            keys::index_member(context, new),
            Some(keys::index_member(context, old)),
            record.expires_at,
            now,
        );
        let (set, index) = futures_util::future::join(set, index).await;
        let written = set?.is_some();
        index?;
        if written && self.revocations(user_id).await? == before {
            return Ok(Some(record));
        }
        // A revocation overlapped the move (or, impossibly for a fresh id, `new` was taken):
        // the session ends here.
        self.del(keys::session(context, new)).await?;
        self.index_remove(
            &keys::user_index(&record.user_id),
            &[(context.clone(), new.clone())],
        )
        .await?;
        Ok(None)
    }

    /// Parses a stored value; one that is not a record is a miss, logged, never deleted.
    fn parse(key: &str, bytes: &[u8]) -> Option<SessionRecord> {
        match SessionRecord::from_json(bytes) {
            Ok(record) => Some(record),
            Err(error) => {
                // The key names the session; log its context part only.
                let scope = key.rsplit_once(':').map_or("session", |(prefix, _)| prefix);
                tracing::warn!(key = scope, %error, "unparseable session record treated as missing");
                None
            }
        }
    }

    async fn load_key(&self, key: String, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        let Some(bytes) = self.get(&key).await? else {
            return Ok(None);
        };
        let Some(record) = Self::parse(&key, &bytes) else {
            return Ok(None);
        };
        if record.is_expired(now) {
            // Expired is expired: failing to delete it must not turn a 401 into a 503.
            if let Err(error) = self.del(key).await {
                tracing::debug!(%error, "could not delete an expired session key");
            }
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Scans keys matching `pattern` on every primary (SCAN, never KEYS), calling `page` with
    /// each page of keys.
    async fn scan(
        &self,
        pattern: &str,
        count: usize,
        mut page: impl FnMut(&[String]),
    ) -> Result<(), StoreError> {
        for node in self.primaries().await? {
            let mut cursor = 0;
            loop {
                let (next, keys) = self.scan_page(&node, cursor, pattern, count).await?;
                page(&keys);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    async fn scan_page(
        &self,
        node: &Option<(String, u16)>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        self.on_node(node, cmd).await
    }

    /// The nodes a keyspace-wide SCAN must visit: the server itself, or every cluster primary.
    async fn primaries(&self) -> Result<Vec<Option<(String, u16)>>, StoreError> {
        let Connection::Cluster(_) = &self.connection else {
            return Ok(vec![None]);
        };
        let nodes: String = self
            .run(
                |mut c| async move { redis::cmd("CLUSTER").arg("NODES").query_async(&mut c).await },
            )
            .await?;
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

    async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: &Option<(String, u16)>,
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
                let value = timed(self.timeout, c.route_command(cmd, route)).await?;
                redis::from_redis_value(value).map_err(|e| StoreError::backend(BACKEND, e))
            }
            _ => {
                self.run(|mut c| async move { cmd.query_async(&mut c).await })
                    .await
            }
        }
    }

    /// Number of live session keys of `context` (`session:<context>:*`), counted with SCAN.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails.
    pub async fn count_sessions(&self, context: &AppContext) -> Result<u64, StoreError> {
        let mut total = 0u64;
        self.scan(&keys::context_pattern(context), 1000, |page| {
            total += page.len() as u64;
        })
        .await?;
        Ok(total)
    }

    /// Number of legacy keys `session:<id>` left (the seed's cleanup check), counted with SCAN.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails.
    pub async fn count_legacy_sessions(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        self.scan("session:*", 1000, |page| {
            total += page
                .iter()
                .filter(|k| keys::parse_legacy(k).is_some())
                .count() as u64;
        })
        .await?;
        Ok(total)
    }

    /// Copies (or moves) every legacy key `session:<id>` to `session:web:<id>`, keeping its
    /// remaining TTL, `batch` keys per SCAN page.
    ///
    /// Safe to run while traffic flows and to rerun: a session already present under the new
    /// key (copied earlier, or rotated by a login) is never overwritten (`SET … NX`); a legacy
    /// key is deleted only after its copy exists; an interrupted run loses nothing and the
    /// next one finishes the job. Migrated sessions join their user's index, so revoke-all
    /// covers them.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails; what was done until then stays done.
    pub async fn migrate_legacy(
        &self,
        mode: MigrationMode,
        batch: usize,
    ) -> Result<MigrationReport, StoreError> {
        let mut report = MigrationReport::default();
        // Page by page, so memory stays bounded by one page whatever the keyspace holds. SCAN
        // may return a key twice; the second visit finds the copy (`SET NX`) and counts as
        // already present.
        for node in self.primaries().await? {
            let mut cursor = 0;
            loop {
                let (next, page) = self
                    .scan_page(&node, cursor, "session:*", batch.max(1))
                    .await?;
                let ids: Vec<SessionId> =
                    page.iter().filter_map(|k| keys::parse_legacy(k)).collect();
                report.scanned += ids.len() as u64;
                let results = join_all(ids.iter().map(|id| self.migrate_one(id, mode))).await;
                for result in results {
                    match result? {
                        Migrated::Copied { deleted } => {
                            report.copied += 1;
                            report.deleted += u64::from(deleted);
                        }
                        Migrated::Present { deleted } => {
                            report.already_present += 1;
                            report.deleted += u64::from(deleted);
                        }
                        Migrated::Expired => report.expired += 1,
                        Migrated::Invalid => report.invalid += 1,
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(report)
    }

    async fn migrate_one(
        &self,
        id: &SessionId,
        mode: MigrationMode,
    ) -> Result<Migrated, StoreError> {
        let legacy = keys::legacy(id);
        let key = legacy.clone();
        let (bytes, pttl): (Option<Vec<u8>>, i64) = self
            .run(|mut c| async move {
                redis::pipe()
                    .cmd("GET")
                    .arg(&key)
                    .cmd("PTTL")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(bytes) = bytes else {
            return Ok(Migrated::Expired);
        };
        let Some(record) = Self::parse(&legacy, &bytes) else {
            return Ok(Migrated::Invalid);
        };
        let now = now_ms();
        // PTTL -1: no TTL on the legacy key; the record's own expiry then bounds the copy.
        let ttl_ms = if pttl > 0 {
            pttl
        } else {
            record.expires_at.saturating_sub(now)
        };
        if pttl == -2 || ttl_ms <= 0 || record.is_expired(now) {
            return Ok(Migrated::Expired);
        }
        let new_key = keys::session(&AppContext::Web, id);
        let created: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(new_key)
                    .arg(bytes)
                    .arg("PX")
                    .arg(ttl_ms)
                    .arg("NX")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if created.is_some() && !self.exists(&legacy).await? {
            // Logged out (the legacy key deleted) between our read and our copy: the copy
            // must not outlive the logout.
            self.del(keys::session(&AppContext::Web, id)).await?;
            return Ok(Migrated::Expired);
        }
        if created.is_some() {
            self.index_add(
                &record.user_id,
                keys::index_member(&AppContext::Web, id),
                record.expires_at,
                now,
            )
            .await?;
        }
        let deleted = mode == MigrationMode::Move && self.del(legacy).await?;
        Ok(if created.is_some() {
            Migrated::Copied { deleted }
        } else {
            Migrated::Present { deleted }
        })
    }

    /// Writes a session with a given user index entry; shared by `save`.
    async fn write(
        &self,
        context: &AppContext,
        id: &SessionId,
        record: &SessionRecord,
        now: i64,
    ) -> Result<(), StoreError> {
        let ttl_secs = ttl_secs(record.expires_at, now);
        let key = keys::session(context, id);
        let json = record.bounded().to_json();
        let set = self.run(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(json)
                .arg("EX")
                .arg(ttl_secs)
                .query_async::<()>(&mut c)
                .await
        });
        let index = self.index_add(
            &record.user_id,
            keys::index_member(context, id),
            record.expires_at,
            now,
        );
        let (set, index) = futures_util::future::join(set, index).await;
        set?;
        index
    }
}

enum Migrated {
    Copied { deleted: bool },
    Present { deleted: bool },
    Expired,
    Invalid,
}

/// `EX` seconds for a record expiring at `expires_at`: rounded up, at least 1, so the key never
/// outlives the record by more than a second and never dies before it.
fn ttl_secs(expires_at: i64, now: i64) -> i64 {
    ((expires_at - now + 999) / 1000).max(1)
}

async fn timed<T>(
    limit: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, f).await {
        Ok(result) => result.map_err(error),
        Err(_) => Err(StoreError::Timeout { backend: BACKEND }),
    }
}

impl SessionStore for RedisStore {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(self.load_key(keys::session(context, id), now))
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write(context, id, record, now))
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        _now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // The index member goes when the index is next pruned or listed.
        Box::pin(self.del(keys::session(context, id)))
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(self.move_session(context, old, new, user_id, now))
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let script = self.extend.clone();
            let key = keys::session(context, id);
            let ttl = ttl_secs(expires_at, now);
            let moved: redis::Value = self
                .run(|mut c| async move {
                    script
                        .key(key)
                        .arg(expires_at)
                        .arg(ttl)
                        .arg(now)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            let user = match moved {
                redis::Value::BulkString(bytes) => String::from_utf8(bytes).unwrap_or_default(),
                redis::Value::SimpleString(s) => s,
                // 1: extended, no user id to index; 0 / -1: nothing extended.
                redis::Value::Int(n) => return Ok(n == 1),
                _ => return Ok(false),
            };
            // The index score is the session's expiry: keep it moving with the slide, or
            // revoke-all and logout detection would lose active sessions.
            if let Ok(user_id) = user.parse::<Uuid>() {
                self.index_add(&user_id, keys::index_member(context, id), expires_at, now)
                    .await?;
            }
            Ok(true)
        })
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            // Counted at the start and the end, so a rotation that overlaps it undoes itself.
            self.count_revocation(user_id).await?;
            let index = keys::user_index(user_id);
            let members = self.index_members(&index, scope, now).await?;
            let deleted = join_all(
                members
                    .iter()
                    .map(|(ctx, id)| self.del(keys::session(ctx, id))),
            )
            .await
            .into_iter()
            .collect::<Result<Vec<bool>, _>>()?;
            self.index_remove(&index, &members).await?;
            self.count_revocation(user_id).await?;
            Ok(deleted.into_iter().filter(|d| *d).count() as u64)
        })
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> BoxFuture<'a, Result<Vec<SessionInfo>, StoreError>> {
        Box::pin(async move {
            let index = keys::user_index(user_id);
            let members = self.index_members(&index, scope, now).await?;
            let values = join_all(
                members
                    .iter()
                    .map(|(ctx, id)| self.get(keys::session(ctx, id))),
            )
            .await;
            let mut live = Vec::with_capacity(members.len());
            let mut dead = Vec::new();
            for ((context, id), value) in members.into_iter().zip(values) {
                let record = value?
                    .and_then(|bytes| Self::parse(&keys::session(&context, &id), &bytes))
                    .filter(|r| !r.is_expired(now) && r.user_id == *user_id);
                match record {
                    Some(record) => live.push(SessionInfo {
                        id,
                        context,
                        record,
                    }),
                    None => dead.push((context, id)),
                }
            }
            self.index_remove(&index, &dead).await?;
            Ok(live)
        })
    }

    /// The user index outlives a session key deleted by another app (the TypeScript apps
    /// `DEL` the key and leave our index alone), and dies with the data in a restart: a live
    /// index member whose key is gone means the key was deleted on purpose.
    fn knows_deleted<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let index = keys::user_index(user_id);
            let member = keys::index_member(context, id);
            let score: Option<i64> = self
                .run(|mut c| async move {
                    redis::cmd("ZSCORE")
                        .arg(index)
                        .arg(member)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            Ok(score.is_some_and(|expires_at| expires_at > now))
        })
    }

    fn load_legacy<'a>(
        &'a self,
        id: &'a SessionId,
        now: i64,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        Box::pin(self.load_key(keys::legacy(id), now))
    }

    fn delete_legacy<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.del(keys::legacy(id)))
    }
}

impl RedisStore {
    /// Live members of a user's index in `scope` (by score; expired ones are left for pruning).
    async fn index_members(
        &self,
        index: &str,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<Vec<(AppContext, SessionId)>, StoreError> {
        let key = index.to_owned();
        let members: Vec<String> = self
            .run(|mut c| async move {
                // `(now`: a record is expired from its `expires_at` on.
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .arg("BYSCORE")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| {
                let (ctx, id) = m.rsplit_once(':')?;
                Some((ctx.parse::<AppContext>().ok()?, SessionId::parse(id)?))
            })
            .filter(|(ctx, _)| match scope {
                Scope::Context(wanted) => ctx == wanted,
                Scope::AllContexts => true,
            })
            .collect())
    }

    async fn index_remove(
        &self,
        index: &str,
        members: &[(AppContext, SessionId)],
    ) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(index);
        for (ctx, id) in members {
            cmd.arg(keys::index_member(ctx, id));
        }
        self.run(|mut c| async move { cmd.query_async::<()>(&mut c).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_seed_keys() {
        let id = SessionId::parse("Q2xhc3NpY1Nlc3Npb25JZA").unwrap();
        assert_eq!(
            keys::session(&AppContext::Web, &id),
            "session:web:Q2xhc3NpY1Nlc3Npb25JZA"
        );
        assert_eq!(
            keys::session(&AppContext::Admin, &id),
            "session:admin:Q2xhc3NpY1Nlc3Npb25JZA"
        );
        assert_eq!(keys::legacy(&id), "session:Q2xhc3NpY1Nlc3Npb25JZA");
        let index = keys::user_index(&Uuid::nil());
        assert!(!index.starts_with("session:"), "{index}");
        assert_eq!(
            keys::parse_legacy("session:Q2xhc3NpY1Nlc3Npb25JZA"),
            Some(id)
        );
        assert_eq!(
            keys::parse_legacy("session:web:Q2xhc3NpY1Nlc3Npb25JZA"),
            None
        );
    }

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
        assert_eq!(redact_password("redis://secret@host"), "redis://***@host");
        assert_eq!(redact_password("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_password("not a url"), "not a url");
    }

    #[test]
    fn ttl_is_rounded_up() {
        assert_eq!(ttl_secs(1_000, 0), 1);
        assert_eq!(ttl_secs(1_001, 0), 2);
        assert_eq!(ttl_secs(5, 10), 1);
    }
}
