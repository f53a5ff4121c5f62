//! [`StoreStats`] for Redis: one SCAN pass over `session:*` (every primary of a cluster),
//! `INFO memory` and `MEMORY USAGE` on a sample of session keys.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use super::{conn, keys, RedisStore};
use crate::stats::{RedisStats, SessionStats, StoreStats};
use crate::store::{StoreError, StoreFuture};

/// Session keys whose `MEMORY USAGE` is asked for.
const SAMPLE: usize = 64;

#[derive(Default)]
struct Tally {
    /// Hashes of the keys counted: SCAN may return a key twice while Redis rehashes.
    seen: HashSet<u64>,
    per_context: BTreeMap<String, u64>,
    legacy: u64,
    sample: Vec<String>,
}

impl Tally {
    fn add(&mut self, key: String) {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            return;
        }
        if keys::parse_legacy(&key).is_some() {
            self.legacy += 1;
        } else if let Some((context, _)) = keys::parse_session(&key) {
            *self
                .per_context
                .entry(context.as_str().to_owned())
                .or_default() += 1;
            if self.sample.len() < SAMPLE {
                self.sample.push(key);
            }
        }
    }
}

/// `used_memory` out of an `INFO memory` answer.
fn used_memory(info: &str) -> u64 {
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl RedisStore {
    async fn collect_stats(&self) -> Result<SessionStats, StoreError> {
        let tally = self
            .redis
            .scan_fold(
                keys::ALL_SESSIONS,
                1000,
                Tally::default(),
                |mut tally, page| {
                    for key in page {
                        tally.add(key);
                    }
                    async move { Ok(tally) }
                },
            )
            .await?;
        let infos: Vec<String> = self
            .redis
            .on_primaries(conn::command("INFO", "memory"))
            .await?;
        let mut sampled = 0u64;
        let mut bytes = 0u64;
        for key in &tally.sample {
            let usage: Option<u64> = self
                .redis
                .query({
                    let mut cmd = redis::cmd("MEMORY");
                    cmd.arg("USAGE").arg(key);
                    cmd
                })
                .await?;
            if let Some(usage) = usage {
                sampled += 1;
                bytes += usage;
            }
        }
        let mut stats = SessionStats::default();
        for (context, count) in tally.per_context {
            stats.context(&context).redis_sessions = Some(count);
        }
        stats.redis = Some(RedisStats {
            legacy_keys: tally.legacy,
            used_memory_bytes: infos.iter().map(|i| used_memory(i)).sum(),
            sampled_keys: sampled,
            bytes_per_session_key: (sampled > 0).then(|| bytes / sampled),
        });
        Ok(stats)
    }
}

impl StoreStats for RedisStore {
    fn stats(&self, _now: i64) -> StoreFuture<'_, Result<SessionStats, StoreError>> {
        StoreFuture::new(self.collect_stats())
    }
}
