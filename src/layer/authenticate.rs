//! Deciding what a request with a credential is: in `call` when every answer is ready
//! ([`SessionLayer::authenticate_now`]), else on the async path
//! ([`SessionLayer::authenticate`]), the same steps either way.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use uuid::Uuid;

use super::SessionLayer;
use crate::credential::Credential;
use crate::events::{CredentialProblem, SessionEventKind};
use crate::session::{HeldRecord, Shared};
use crate::store::{JoinedUser, Loaded, StoreError, StoreFuture};
#[cfg(feature = "cache")]
use crate::telemetry::CacheResult;
use crate::telemetry::{RequestOutcome, Source};
use crate::{CurrentUser, Session, SessionId, SessionRecord};

/// What the layer concluded about a request with a well-formed credential.
pub(super) enum Outcome<U> {
    /// Unknown, expired or refused (which of them, for the metrics).
    Anonymous(RequestOutcome),
    Unavailable,
    Authenticated {
        /// Shared with the cache when it came from there (or went there).
        record: HeldRecord,
        legacy: bool,
        user: Arc<U>,
    },
}

impl<U> Outcome<U> {
    /// The request's [`Session`] handle, and its user when it has one.
    /// Counts the outcome and writes it on the request's `span`.
    pub(super) fn into_session(
        self,
        shared: &Arc<Shared>,
        credential: Credential,
        span: &tracing::Span,
    ) -> (Session, Option<CurrentUser<U>>) {
        let Credential { id, source } = credential;
        let outcome = match &self {
            Outcome::Anonymous(why) => *why,
            Outcome::Unavailable => RequestOutcome::Error,
            Outcome::Authenticated { .. } => RequestOutcome::Authenticated,
        };
        shared.metrics.request(outcome);
        super::span::record(span, outcome, &id);
        match self {
            Outcome::Anonymous(_) => (Session::anonymous(Arc::clone(shared), Some(source)), None),
            Outcome::Unavailable => (Session::unavailable(Arc::clone(shared), source), None),
            Outcome::Authenticated {
                record,
                legacy,
                user,
            } => {
                let session =
                    Session::authenticated(Arc::clone(shared), source, id, record, legacy);
                (session, Some(CurrentUser::new(user)))
            }
        }
    }
}

/// Which backend failed, for the log line.
#[derive(Clone, Copy)]
enum Backend {
    Sessions,
    Users,
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Backend::Sessions => "session store",
            Backend::Users => "user store",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown credential: reported, and the request is anonymous.
fn unknown<U>(shared: &Shared, id: &SessionId, now: i64) -> Outcome<U> {
    let kind = SessionEventKind::UnknownCredential {
        reason: CredentialProblem::Unknown,
    };
    shared.emit(kind, now, Some(id), None);
    Outcome::Anonymous(RequestOutcome::Unknown)
}

impl<U: Send + Sync + 'static> SessionLayer<U> {
    /// Backend errors never authenticate: logged with the context, the request is
    /// unavailable (`503` on routes that need a user).
    fn unavailable(&self, backend: Backend, error: &StoreError, now: i64) -> Outcome<U> {
        let context = &self.shared.context;
        tracing::warn!(context = %context, %error, "{backend} unavailable; request not authenticated");
        let kind = SessionEventKind::BackendError {
            backend: backend.as_str(),
        };
        self.shared.emit(kind, now, None, None);
        Outcome::Unavailable
    }

    /// Whether the context's admission policy lets `user` in.
    fn admits(&self, user: &U) -> bool {
        let admitted = self.admit.as_ref().is_none_or(|admit| admit(user));
        if !admitted {
            tracing::debug!(context = %self.shared.context, "session refused by the context's admission policy");
        }
        admitted
    }

    /// The outcome when every answer is ready without waiting: a cache hit, or a store and a
    /// resolver in process, and nothing to write (no expiry to clean up, no slide due).
    /// `None`: the async path must decide.
    pub(super) fn authenticate_now(&self, credential: &Credential) -> Option<Outcome<U>> {
        let sample = self.shared.settings.timing_sample;
        let started = self.shared.metrics.start_sampled(sample);
        let (outcome, source) = self.decide_now(&credential.id)?;
        self.shared.metrics.authenticated(started, source);
        Some(outcome)
    }

    /// What [`authenticate_now`](Self::authenticate_now) decides, and where the answer came
    /// from.
    fn decide_now(&self, id: &SessionId) -> Option<(Outcome<U>, Source)> {
        let shared = &self.shared;
        let settings = &shared.settings;
        // One clock reading decides everything about this request.
        let now = settings.clock.now_ms();
        if let Some((record, user)) = self.cached(id, now) {
            // A hit is an entry served; one due to slide or past its lifetime goes on.
            let served = settings.serves_as_is(&record, now);
            self.count_cache(served);
            if served {
                let hit = Outcome::Authenticated {
                    record,
                    legacy: false,
                    user,
                };
                return Some((hit, Source::Cache));
            }
        }
        if self.hints.store_waits.load(Ordering::Relaxed) {
            return None;
        }
        let epoch = self.cache_epoch();
        let user_epoch = self.user_cache_epoch();
        // With the user when the store read it in the same query (`load_with_user`; for a
        // store that does not join, `load`'s ready answer as it is, nothing allocated).
        let loaded = match shared
            .store
            .load_with_user(&shared.context, id, now)
            .into_ready()
        {
            Ok(loaded) => loaded,
            Err(_) => {
                self.hints.store_waits.store(true, Ordering::Relaxed);
                return None;
            }
        };
        let (record, joined) = match loaded {
            Ok(Some(Loaded { record, user, .. })) if settings.serves_as_is(&record, now) => {
                (HeldRecord::from(record), user)
            }
            // A miss is final, unless the legacy key may hold it.
            Ok(None) if !shared.reads_legacy() => {
                return Some((unknown(shared, id, now), Source::Store))
            }
            Err(error) => {
                let unavailable = self.unavailable(Backend::Sessions, &error, now);
                return Some((unavailable, Source::Store));
            }
            // Expired (to delete), due to slide, or legacy: a write or another lookup.
            Ok(_) => return None,
        };
        let resolved = match self.cached_user(&record.user_id, now) {
            Some(user) => Ok(Some(user)),
            None if joined.is_none() && self.hints.users_wait.load(Ordering::Relaxed) => {
                return None
            }
            None => match self
                .resolve_user(&record.user_id, now, user_epoch, joined.as_ref())
                .into_ready()
            {
                Ok(resolved) => resolved,
                Err(_) => {
                    self.hints.users_wait.store(true, Ordering::Relaxed);
                    return None;
                }
            },
        };
        let outcome = self.with_user(resolved, record, false, id, now);
        let outcome = self.remember(id, outcome, now, epoch);
        Some((outcome, Source::Store))
    }

    /// The outcome once the user is known.
    fn with_user(
        &self,
        resolved: Result<Option<Arc<U>>, StoreError>,
        record: HeldRecord,
        legacy: bool,
        id: &SessionId,
        now: i64,
    ) -> Outcome<U> {
        match resolved {
            Ok(Some(user)) if self.admits(&user) => Outcome::Authenticated {
                record,
                legacy,
                user,
            },
            Ok(Some(_)) => {
                let refused = SessionEventKind::Refused;
                self.shared.emit(refused, now, Some(id), Some(&record));
                Outcome::Anonymous(RequestOutcome::Refused)
            }
            // The user is gone: the credential opens nothing.
            Ok(None) => unknown(&self.shared, id, now),
            Err(error) => self.unavailable(Backend::Users, &error, now),
        }
    }

    /// Looks the credential up, awaiting what must be awaited, and decides what the request
    /// is. Never fails: backend errors make it unavailable (logged), everything else
    /// anonymous.
    pub(super) async fn authenticate(
        &self,
        credential: Credential,
        span: &tracing::Span,
    ) -> (Session, Option<CurrentUser<U>>) {
        let now = self.shared.settings.clock.now_ms();
        let started = self.shared.metrics.start();
        let epoch = self.cache_epoch();
        let outcome = self.decide(&credential.id, now).await;
        let outcome = self.remember(&credential.id, outcome, now, epoch);
        self.shared.metrics.authenticated(started, Source::Store);
        outcome.into_session(&self.shared, credential, span)
    }

    async fn decide(&self, id: &SessionId, now: i64) -> Outcome<U> {
        // Before the store: its query may bring the user (`load_with_user`), and a user
        // change that overtakes it must keep that user out of the user cache.
        let user_epoch = self.user_cache_epoch();
        let (record, legacy, joined) = match self.load_live_record(id, now).await {
            Ok(Ok(found)) => found,
            Ok(Err(why)) => return Outcome::Anonymous(why),
            Err(error) => return self.unavailable(Backend::Sessions, &error, now),
        };
        let Some(record) = self.slide(id, record, legacy, now).await else {
            // Deleted between the load and the slide: logged out or revoked elsewhere.
            return unknown(&self.shared, id, now);
        };
        let resolved = match self.cached_user(&record.user_id, now) {
            Some(user) => Ok(Some(user)),
            None => {
                self.resolve_user(&record.user_id, now, user_epoch, joined.as_ref())
                    .await
            }
        };
        self.with_user(resolved, record.into(), legacy, id, now)
    }

    /// Step 1: the live record of `id` and whether it was read through the legacy key. An
    /// expired one (idle or absolute) is deleted, under both keys while the fallback is on.
    async fn load_live_record(
        &self,
        id: &SessionId,
        now: i64,
    ) -> Result<Result<(SessionRecord, bool, Option<JoinedUser>), RequestOutcome>, StoreError> {
        let shared = &self.shared;
        let (context, store) = (&shared.context, &shared.store);
        let mut legacy = false;
        // A store that reads the user in the same query brings it along (one round trip).
        let (mut found, joined) = match store.load_with_user(context, id, now).await? {
            Some(Loaded { record, user, .. }) => (Some(record), user),
            None => (None, None),
        };
        if found.is_none() && shared.reads_legacy() {
            if let Some(legacy_store) = store.capabilities().legacy {
                found = legacy_store.load_legacy(id, now).await?;
                legacy = true;
            }
        }
        let Some(record) = found else {
            unknown::<U>(shared, id, now);
            return Ok(Err(RequestOutcome::Unknown));
        };
        if shared.settings.is_live(&record, now) {
            return Ok(Ok((record, legacy, joined)));
        }
        // Expired is expired: failing to delete it must not turn a 401 into a 503. A copy left
        // under the legacy key must not bring it back through the fallback.
        let mut deleted = Ok(false);
        if shared.reads_legacy() {
            deleted = shared.delete_legacy(id).await;
        }
        if !legacy {
            let here = store.delete(context, id, now).await;
            deleted = deleted.and_then(|before| here.map(|here| before || here));
        }
        match deleted {
            // Reported by the request whose delete found it (once, however many saw it).
            Ok(true) => shared.emit(SessionEventKind::Expired, now, Some(id), Some(&record)),
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(context = %context, %error, "could not delete an expired session");
            }
        }
        Ok(Err(RequestOutcome::Expired))
    }

    /// Step 2: the idle timeout slides if due (legacy records do not: they are on their way
    /// out). `None` if the session was deleted meanwhile; a failed slide costs only the slide.
    async fn slide(
        &self,
        id: &SessionId,
        mut record: SessionRecord,
        legacy: bool,
        now: i64,
    ) -> Option<SessionRecord> {
        let shared = &self.shared;
        let Some(expires_at) = shared
            .settings
            .extension_due(&record, now)
            .filter(|_| !legacy)
        else {
            return Some(record);
        };
        match shared
            .store
            .extend(&shared.context, id, expires_at, now)
            .await
        {
            Ok(true) => {
                record.expires_at = expires_at;
                let kind = SessionEventKind::Extended { expires_at };
                shared.emit(kind, now, Some(id), Some(&record));
            }
            Ok(false) => return None,
            Err(error) => {
                tracing::warn!(context = %shared.context, %error, "could not extend a session");
            }
        }
        Some(record)
    }

    /// The user from the [user cache](SessionLayer::user_cache), if it holds them.
    #[cfg(feature = "cache")]
    fn cached_user(&self, user_id: &Uuid, now: i64) -> Option<Arc<U>> {
        self.user_cache
            .as_ref()?
            .get(&self.shared.context, user_id, now)
    }

    #[cfg(not(feature = "cache"))]
    fn cached_user(&self, _: &Uuid, _: i64) -> Option<Arc<U>> {
        None
    }

    /// The user cache's invalidation epoch, read before anything that may read the user.
    #[cfg(feature = "cache")]
    fn user_cache_epoch(&self) -> Option<u64> {
        self.user_cache.as_ref().map(|cache| cache.epoch())
    }

    #[cfg(not(feature = "cache"))]
    fn user_cache_epoch(&self) -> Option<u64> {
        None
    }

    /// Resolves the user, keeping them in the user cache (if any) unless an invalidation
    /// overtook the lookup since `epoch` (read before the request's first backend call).
    fn resolve_user<'a>(
        &'a self,
        user_id: &'a Uuid,
        now: i64,
        epoch: Option<u64>,
        joined: Option<&JoinedUser>,
    ) -> StoreFuture<'a, Result<Option<Arc<U>>, StoreError>> {
        let context = &self.shared.context;
        // The store's own query read the user: its resolver's answer, without asking again.
        let answer = match joined.and_then(|joined| self.users.joined(context, user_id, joined)) {
            Some(user) => StoreFuture::ready(Ok(user)),
            None => self.users.resolve(context, user_id),
        };
        #[cfg(feature = "cache")]
        if let (Some(cache), Some(epoch)) = (&self.user_cache, epoch) {
            let keep = move |resolved: &Result<Option<Arc<U>>, StoreError>| {
                if let Ok(Some(user)) = resolved {
                    cache.insert(context, user_id, user, now, epoch);
                }
            };
            return match answer.into_ready() {
                Ok(resolved) => {
                    keep(&resolved);
                    StoreFuture::ready(resolved)
                }
                Err(pending) => StoreFuture::new(async move {
                    let resolved = pending.await;
                    keep(&resolved);
                    resolved
                }),
            };
        }
        let _ = (now, epoch);
        answer
    }

    /// The cache's invalidation epoch, read before the store: an entry loaded before an
    /// invalidation that overtook it is not kept.
    #[cfg(feature = "cache")]
    fn cache_epoch(&self) -> Option<u64> {
        self.cache.as_ref().map(|cache| cache.epoch())
    }

    #[cfg(not(feature = "cache"))]
    fn cache_epoch(&self) -> Option<u64> {
        None
    }

    /// Keeps an authenticated outcome from the store in the cache, on either path, so that
    /// what the cache serves does not depend on whether the store answered at once. The
    /// record moves into the cache's `Arc` and the request shares it.
    #[cfg(feature = "cache")]
    fn remember(
        &self,
        id: &SessionId,
        outcome: Outcome<U>,
        now: i64,
        epoch: Option<u64>,
    ) -> Outcome<U> {
        let (Some(cache), Some(epoch)) = (&self.cache, epoch) else {
            return outcome;
        };
        match outcome {
            // Asked before the record is shared: a miss the cache does not keep costs nothing.
            Outcome::Authenticated {
                record,
                legacy: false,
                user,
            } if cache.admits(id) => {
                let record = record.into_shared();
                let entry = crate::cache::Entry {
                    record: Arc::clone(&record),
                    user: Arc::clone(&user),
                    loaded_ms: now,
                };
                cache.insert(&self.shared.context, id, entry, epoch);
                Outcome::Authenticated {
                    record: HeldRecord::Shared(record),
                    legacy: false,
                    user,
                }
            }
            other => other,
        }
    }

    #[cfg(not(feature = "cache"))]
    fn remember(&self, _: &SessionId, outcome: Outcome<U>, _: i64, _: Option<u64>) -> Outcome<U> {
        outcome
    }

    #[cfg(feature = "cache")]
    fn cached(&self, id: &SessionId, now: i64) -> Option<(HeldRecord, Arc<U>)> {
        let cache = self.cache.as_ref()?;
        match cache.lookup(id, now) {
            Ok(entry) => Some((HeldRecord::Shared(entry.record), entry.user)),
            Err(result) => {
                self.shared.metrics.cache(result);
                None
            }
        }
    }

    #[cfg(feature = "cache")]
    fn count_cache(&self, served: bool) {
        let result = if served {
            CacheResult::Hit
        } else {
            CacheResult::Miss
        };
        self.shared.metrics.cache(result);
    }

    #[cfg(not(feature = "cache"))]
    fn count_cache(&self, _: bool) {}

    #[cfg(not(feature = "cache"))]
    fn cached(&self, _: &SessionId, _: i64) -> Option<(HeldRecord, Arc<U>)> {
        None
    }
}
