//! Reading legacy keys for the migration: one pipelined `GET` and `PTTL` per key, and
//! the one check that decides what the key is. The real run and the dry run both act on
//! this reading, so they agree on every key.

use redis::Value;

use super::super::conn::{is_wrong_type, BACKEND};
use super::super::{keys, RedisStore};
use super::KeyProblem;
use crate::store::StoreError;
use crate::{SessionId, SessionRecord};

/// What a legacy key held when it was read.
pub(super) enum Reading {
    /// A live session record: to migrate.
    Live(Live),
    /// Nothing to migrate.
    Dead(Dead),
}

/// A live session record, as read.
pub(super) struct Live {
    /// The value, byte for byte (the copy is exactly what was checked).
    pub(super) bytes: Vec<u8>,
    pub(super) record: SessionRecord,
    /// How long the copy lives: the key's TTL, or the record's own expiry when the key has
    /// none.
    pub(super) ttl_ms: i64,
}

/// A legacy key with nothing to migrate.
pub(super) enum Dead {
    /// Gone before it was read.
    Gone,
    /// An expired record (the value read).
    Expired(Vec<u8>),
    /// Not a session record.
    NotARecord(NotARecord),
}

/// A legacy key that holds no session record.
pub(super) enum NotARecord {
    /// A string the apps cannot read as a record (the value read).
    Unparseable(Vec<u8>),
    /// A key of another Redis type (`list`, `hash`, …): never a record, whatever it holds.
    WrongType(String),
}

impl NotARecord {
    pub(super) fn problem(&self) -> KeyProblem {
        match self {
            NotARecord::Unparseable(_) => KeyProblem::Unparseable,
            NotARecord::WrongType(found) => KeyProblem::WrongType {
                found: found.clone(),
            },
        }
    }
}

impl RedisStore {
    /// Reads the legacy keys of `ids` in one pipeline (on a cluster, call it with one id:
    /// a pipeline may not span slots) and says what each holds at `now`: `GET` and `PTTL`
    /// per key, then `TYPE` for the keys of another type only (rare: one more round trip
    /// when a page has any), to name what they hold.
    pub(super) async fn read_legacy(
        &self,
        ids: &[SessionId],
        now: i64,
    ) -> Result<Vec<Reading>, StoreError> {
        let mut pipe = redis::pipe();
        // A `GET` on a key of another type answers WRONGTYPE: an answer about that key, not
        // a failure of the pipeline.
        pipe.ignore_errors();
        for id in ids {
            let key = keys::legacy(id);
            pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        }
        let answers: Vec<Value> = self
            .redis
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        if answers.len() != ids.len() * 2 {
            return Err(StoreError::backend(
                BACKEND,
                format!("{} answers to {} reads", answers.len(), ids.len() * 2),
            ));
        }
        let mut readings = answers
            .chunks(2)
            .map(|answer| match answer {
                [value, pttl] => classify(value, pttl, now),
                _ => Ok(Reading::Dead(Dead::Gone)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let foreign: Vec<usize> = readings
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Reading::Dead(Dead::NotARecord(NotARecord::WrongType(_)))))
            .map(|(i, _)| i)
            .collect();
        if foreign.is_empty() {
            return Ok(readings);
        }
        let mut types = redis::pipe();
        for i in &foreign {
            types.cmd("TYPE").arg(keys::legacy(&ids[*i]));
        }
        let names: Vec<String> = self
            .redis
            .run(|mut c| async move { types.query_async(&mut c).await })
            .await?;
        for (i, name) in foreign.into_iter().zip(names) {
            readings[i] = if name == "none" {
                Reading::Dead(Dead::Gone) // deleted since it was read
            } else {
                Reading::Dead(Dead::NotARecord(NotARecord::WrongType(name)))
            };
        }
        Ok(readings)
    }
}

/// The one check: what a key whose `GET` and `PTTL` answered these holds at `now` (a key
/// of another type is named by the caller, which asks its `TYPE`).
fn classify(value: &Value, pttl: &Value, now: i64) -> Result<Reading, StoreError> {
    let bytes = match value {
        Value::Nil => return Ok(Reading::Dead(Dead::Gone)),
        Value::BulkString(bytes) => bytes.clone(),
        Value::ServerError(error) => {
            let error = redis::RedisError::from(error.clone());
            if !is_wrong_type(&error) {
                return Err(StoreError::backend(BACKEND, error));
            }
            return Ok(Reading::Dead(Dead::NotARecord(NotARecord::WrongType(
                String::new(),
            ))));
        }
        other => {
            return Err(StoreError::backend(
                BACKEND,
                format!("unexpected answer to GET: {other:?}"),
            ))
        }
    };
    let Ok(record) = SessionRecord::from_json(&bytes) else {
        return Ok(Reading::Dead(Dead::NotARecord(NotARecord::Unparseable(
            bytes,
        ))));
    };
    let pttl = match pttl {
        Value::Int(pttl) => *pttl,
        _ => -2,
    };
    // PTTL -1: no TTL on the legacy key; the record's own expiry then bounds the copy.
    // (-2: gone since the GET; 0: a key about to expire.)
    let ttl_ms = if pttl == -1 {
        record.expires_at.saturating_sub(now)
    } else {
        pttl
    };
    if pttl == -2 || ttl_ms <= 0 || record.is_expired(now) {
        return Ok(Reading::Dead(Dead::Expired(bytes)));
    }
    Ok(Reading::Live(Live {
        bytes,
        record,
        ttl_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_at: i64) -> Value {
        Value::BulkString(
            format!(
                r#"{{"user_id":"6f1c1d34-8a34-4f4e-9d3a-1a2b3c4d5e6f","created_at":0,"expires_at":{expires_at}}}"#
            )
            .into_bytes(),
        )
    }

    #[test]
    fn every_kind_of_key_is_told_apart() {
        let now = 1_000_000;
        let live = classify(&record(now + 60_000), &Value::Int(60_000), now).unwrap();
        assert!(matches!(live, Reading::Live(Live { ttl_ms: 60_000, .. })));
        // No TTL: the record's expiry bounds the copy.
        let untimed = classify(&record(now + 5_000), &Value::Int(-1), now).unwrap();
        assert!(matches!(untimed, Reading::Live(Live { ttl_ms: 5_000, .. })));
        for (value, pttl) in [
            (record(now - 1), Value::Int(60_000)),
            (record(now + 60_000), Value::Int(0)),
            (record(now + 60_000), Value::Int(-2)),
            (record(now - 1), Value::Int(-1)),
        ] {
            let dead = classify(&value, &pttl, now).unwrap();
            assert!(matches!(dead, Reading::Dead(Dead::Expired(_))), "{pttl:?}");
        }
        let gone = classify(&Value::Nil, &Value::Int(-2), now);
        assert!(matches!(gone.unwrap(), Reading::Dead(Dead::Gone)));
        let junk = classify(
            &Value::BulkString(b"{\"user\"".to_vec()),
            &Value::Int(9),
            now,
        );
        assert!(matches!(
            junk.unwrap(),
            Reading::Dead(Dead::NotARecord(NotARecord::Unparseable(_)))
        ));
    }
}
