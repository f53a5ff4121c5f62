//! [`RedisStore::check_sessions`]: an operator's sample of session keys, checked against the
//! TypeScript apps' format and this crate's bookkeeping. SCAN-based, never on the request path.

use redis::Value;
use serde::Serialize;
use uuid::Uuid;

use super::conn::{is_wrong_type, BACKEND};
use super::{keys, RedisStore};
use crate::store::StoreError;
use crate::{AppContext, SessionHandle, SessionId, SessionRecord};

/// How far a key's TTL may be from its record's `expires_at`: TTLs are set in whole seconds
/// (rounded up), and the check runs a little after the read.
const TTL_SLACK_MS: i64 = 2_000;

/// What is wrong with one sampled key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyProblem {
    /// The value is not a session record in the TypeScript apps' JSON.
    Unparseable,
    /// The key holds another Redis type than a string (`found`: `list`, `hash`, …), so no
    /// session record: the apps treat it as missing.
    WrongType {
        /// The type `TYPE` names.
        found: String,
    },
    /// The key never expires (no TTL).
    NoTtl,
    /// The TTL and the record's `expires_at` disagree by more than two seconds.
    TtlMismatch {
        /// The key's remaining TTL, in milliseconds.
        ttl_ms: i64,
        /// What the record says is left, in milliseconds.
        expires_in_ms: i64,
    },
    /// A context key whose user's index (`user-sessions:{<uuid>}`) does not list it: listing
    /// and revoke-all miss it until it is next written.
    NotIndexed,
    /// The user's index holds another Redis type than a sorted set (`found`): listing and
    /// revoke-all see none of the user's sessions until the user's next sign-in replaces it.
    IndexWrongType {
        /// The type `TYPE` names.
        found: String,
    },
}

/// A sampled key with a problem, named by the session's handle (never the key or the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyCheck {
    /// The session's handle.
    pub session: SessionHandle,
    /// Its context, `None` for a legacy `session:<id>` key.
    pub context: Option<AppContext>,
    /// The user the record names, when the value is a record.
    pub user: Option<Uuid>,
    /// What is wrong.
    #[serde(flatten)]
    pub problem: KeyProblem,
}

/// What [`RedisStore::check_sessions`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeySample {
    /// Session keys checked.
    pub checked: u64,
    /// Those with a problem, one entry per problem.
    pub problems: Vec<KeyCheck>,
}

impl RedisStore {
    /// Checks the first `sample` session keys a SCAN returns (`session:<context>:<id>` and
    /// legacy `session:<id>`; on a cluster, from the first primaries): each is a string
    /// (not a list, hash, …), parses as the TypeScript apps' JSON, has a TTL that agrees with
    /// its `expires_at`, and (context keys) is in its user's index, which is a sorted set.
    /// A key that vanished while it was checked is skipped.
    ///
    /// # Errors
    /// [`StoreError`] if Redis fails.
    pub async fn check_sessions(&self, sample: usize, now: i64) -> Result<KeySample, StoreError> {
        let mut found: Vec<String> = Vec::new();
        self.redis
            .scan_fold(keys::ALL_SESSIONS, 1000, (), |(), page| {
                let room = sample.saturating_sub(found.len());
                found.extend(page.into_iter().take(room));
                async { Ok(()) }
            })
            .await?;
        let mut report = KeySample::default();
        for key in found {
            let (context, id) = match (keys::parse_session(&key), keys::parse_legacy(&key)) {
                (Some((context, id)), _) => (Some(context), id),
                (None, Some(id)) => (None, id),
                (None, None) => continue,
            };
            let Some((user, problems)) = self.check_key(&key, context.as_ref(), &id, now).await?
            else {
                continue;
            };
            report.checked += 1;
            let session = id.handle();
            report
                .problems
                .extend(problems.into_iter().map(|problem| KeyCheck {
                    session,
                    context: context.clone(),
                    user,
                    problem,
                }));
        }
        Ok(report)
    }

    /// The user and the problems of one key; `None` if it is gone.
    async fn check_key(
        &self,
        key: &str,
        context: Option<&AppContext>,
        id: &SessionId,
        now: i64,
    ) -> Result<Option<(Option<Uuid>, Vec<KeyProblem>)>, StoreError> {
        let owned = key.to_owned();
        let answers: Vec<Value> = self
            .redis
            .run(|mut c| async move {
                redis::pipe()
                    // A `GET` on a list answers WRONGTYPE: a finding, not a failure.
                    .ignore_errors()
                    .cmd("TYPE")
                    .arg(&owned)
                    .cmd("GET")
                    .arg(&owned)
                    .cmd("PTTL")
                    .arg(&owned)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let [kind, value, pttl] = answers.as_slice() else {
            return Err(StoreError::backend(
                BACKEND,
                "short answer to TYPE, GET, PTTL",
            ));
        };
        let bytes = match value {
            Value::Nil => return Ok(None),
            Value::BulkString(bytes) => bytes,
            Value::ServerError(error) => {
                let error = redis::RedisError::from(error.clone());
                if !is_wrong_type(&error) {
                    return Err(StoreError::backend(BACKEND, error));
                }
                return Ok(Some((
                    None,
                    vec![KeyProblem::WrongType {
                        found: type_name(kind),
                    }],
                )));
            }
            other => {
                return Err(StoreError::backend(
                    BACKEND,
                    format!("unexpected answer to GET: {other:?}"),
                ))
            }
        };
        let pttl = match pttl {
            Value::Int(pttl) => *pttl,
            _ => -2,
        };
        let Ok(record) = SessionRecord::from_json(bytes) else {
            return Ok(Some((None, vec![KeyProblem::Unparseable])));
        };
        let mut problems = Vec::new();
        let expires_in_ms = record.expires_at.saturating_sub(now);
        if pttl == -1 {
            problems.push(KeyProblem::NoTtl);
        } else if pttl >= 0 && pttl.abs_diff(expires_in_ms) > TTL_SLACK_MS.unsigned_abs() {
            problems.push(KeyProblem::TtlMismatch {
                ttl_ms: pttl,
                expires_in_ms,
            });
        }
        if let Some(context) = context {
            let index = keys::user_index(&record.user_id);
            let mut score = redis::cmd("ZSCORE");
            score.arg(&index).arg(keys::index_member(context, id));
            match self.redis.query_key::<Option<f64>>(score).await? {
                Ok(Some(_)) => {}
                Ok(None) => problems.push(KeyProblem::NotIndexed),
                Err(_) => {
                    let found: String = self
                        .redis
                        .query(super::conn::command("TYPE", &index))
                        .await?;
                    problems.push(KeyProblem::IndexWrongType { found });
                }
            }
        }
        Ok(Some((Some(record.user_id), problems)))
    }
}

/// The type a `TYPE` answer names.
fn type_name(answer: &Value) -> String {
    match answer {
        Value::SimpleString(kind) => kind.clone(),
        _ => "another type".to_owned(),
    }
}
