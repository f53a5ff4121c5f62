//! The check itself: a table of stores, each breaking one rule of the contract on purpose
//! (a decorator over the memory store that gets one thing wrong), must be reported by that
//! rule's name; a panic in a store is a violation, not the end of the check.

use tower_app_sessions::data::{DataLimits, DataPatch};
use tower_app_sessions::store::{Capabilities, DataUpdate, ListedSession, Loaded};
use tower_app_sessions::testing::{Contract, RULES};
use tower_app_sessions::{
    AppContext, MemoryStore, Scope, SessionId, SessionRecord, SessionStore, StoreError, StoreFuture,
};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `load` looks in `web` whatever context it is asked for.
    LoadsAcrossContexts,
    /// `extend` of a session that is not there saves it.
    ExtendResurrects,
    /// `delete` says it deleted whether or not it did.
    DeleteAlwaysTrue,
    /// `update_data` reports a patch applied without applying it.
    PatchesNothing,
    /// `update_data` ignores the limits.
    NoLimits,
    /// `rotate` copies: the old id stays live.
    RotateCopies,
    /// `load` sees records a second longer than they live.
    LoadsExpired,
    /// `list_user_sessions` lists every context whatever the scope.
    ListsEveryContext,
    /// `list_user_sessions` lists as of a minute ago.
    ListsThePast,
    /// `delete_user_sessions` panics.
    Panics,
    /// `load` answers with a future to await.
    SlowLoads,
    /// `load_with_user` (the layer's read) sees records a second longer than `load` does.
    JoinsExpired,
}

#[derive(Clone)]
struct Broken {
    inner: MemoryStore,
    fault: Fault,
}

impl SessionStore for Broken {
    fn load<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        match self.fault {
            Fault::LoadsAcrossContexts => self.inner.load(&AppContext::Web, id, now),
            Fault::LoadsExpired => self.inner.load(context, id, now - 1_000),
            Fault::SlowLoads => {
                let answer = self.inner.load(context, id, now);
                StoreFuture::new(answer)
            }
            _ => self.inner.load(context, id, now),
        }
    }

    fn load_with_user<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<Loaded>, StoreError>> {
        let now = if self.fault == Fault::JoinsExpired {
            now - 1_000
        } else {
            now
        };
        self.inner.load_with_user(context, id, now)
    }

    fn save<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        record: &'a SessionRecord,
        now: i64,
    ) -> StoreFuture<'a, Result<(), StoreError>> {
        self.inner.save(context, id, record, now)
    }

    fn delete<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        if self.fault == Fault::DeleteAlwaysTrue {
            return StoreFuture::new(async move {
                self.inner.delete(context, id, now).await.map(|_| true)
            });
        }
        self.inner.delete(context, id, now)
    }

    fn rotate<'a>(
        &'a self,
        context: &'a AppContext,
        old: &'a SessionId,
        new: &'a SessionId,
        user_id: &'a Uuid,
        now: i64,
    ) -> StoreFuture<'a, Result<Option<SessionRecord>, StoreError>> {
        if self.fault == Fault::RotateCopies {
            return StoreFuture::new(async move {
                let moved = self.inner.rotate(context, old, new, user_id, now).await?;
                if let Some(record) = &moved {
                    self.inner.save(context, old, record, now).await?;
                }
                Ok(moved)
            });
        }
        self.inner.rotate(context, old, new, user_id, now)
    }

    fn update_data<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        patch: &'a DataPatch,
        limits: DataLimits,
        now: i64,
    ) -> StoreFuture<'a, Result<DataUpdate, StoreError>> {
        match self.fault {
            Fault::PatchesNothing => StoreFuture::new(async move {
                let live = self.inner.load(context, id, now).await?.is_some();
                Ok(if live {
                    DataUpdate::Applied
                } else {
                    DataUpdate::NotLive
                })
            }),
            Fault::NoLimits => {
                let unlimited = DataLimits::new(usize::MAX / 2, usize::MAX / 2);
                self.inner.update_data(context, id, patch, unlimited, now)
            }
            _ => self.inner.update_data(context, id, patch, limits, now),
        }
    }

    fn extend<'a>(
        &'a self,
        context: &'a AppContext,
        id: &'a SessionId,
        expires_at: i64,
        now: i64,
    ) -> StoreFuture<'a, Result<bool, StoreError>> {
        if self.fault == Fault::ExtendResurrects {
            return StoreFuture::new(async move {
                if self.inner.extend(context, id, expires_at, now).await? {
                    return Ok(true);
                }
                let user = Uuid::new_v4();
                let ttl = std::time::Duration::from_millis((expires_at - now).max(1) as u64);
                let record = SessionRecord::new(user, Default::default(), now, ttl);
                self.inner.save(context, id, &record, now).await?;
                Ok(true)
            });
        }
        self.inner.extend(context, id, expires_at, now)
    }

    fn delete_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<u64, StoreError>> {
        assert!(self.fault != Fault::Panics, "a store bug");
        self.inner.delete_user_sessions(user_id, scope, now)
    }

    fn list_user_sessions<'a>(
        &'a self,
        user_id: &'a Uuid,
        scope: Scope<'a>,
        now: i64,
    ) -> StoreFuture<'a, Result<Vec<ListedSession>, StoreError>> {
        match self.fault {
            Fault::ListsEveryContext => {
                self.inner
                    .list_user_sessions(user_id, Scope::AllContexts, now)
            }
            Fault::ListsThePast => self.inner.list_user_sessions(user_id, scope, now - 60_000),
            _ => self.inner.list_user_sessions(user_id, scope, now),
        }
    }

    fn capabilities(&self) -> Capabilities<'_> {
        self.inner.capabilities()
    }
}

#[tokio::test]
async fn each_broken_rule_is_reported_by_its_name() {
    let table = [
        (Fault::LoadsAcrossContexts, "isolation"),
        (Fault::ExtendResurrects, "extend"),
        (Fault::DeleteAlwaysTrue, "delete"),
        (Fault::PatchesNothing, "data_patch"),
        (Fault::NoLimits, "data_limits"),
        (Fault::RotateCopies, "rotate"),
        (Fault::LoadsExpired, "expiry"),
        (Fault::ListsEveryContext, "user_sessions"),
        (Fault::ListsThePast, "listing_as_of_now"),
        (Fault::Panics, "user_sessions"),
        (Fault::SlowLoads, "ready_loads"),
        (Fault::JoinsExpired, "expiry"),
    ];
    for (fault, rule) in table {
        let report = Contract::new()
            .ready_loads()
            .check(|| async move {
                Broken {
                    inner: MemoryStore::new(),
                    fault,
                }
            })
            .await;
        assert!(!report.is_ok(), "{fault:?} passed the check");
        let broken: Vec<&str> = report.violations().iter().map(|v| v.rule).collect();
        assert!(
            broken.contains(&rule),
            "{fault:?} should break {rule}, the report says: {report}"
        );
        assert!(
            broken
                .iter()
                .all(|name| RULES.contains(name) || *name == "ready_loads"),
            "{broken:?}"
        );
        // Every rule ran: the kept and the broken add up, and the report names them all.
        assert_eq!(report.passed().len() + broken.len(), RULES.len() + 1);
        let text = report.to_string();
        assert!(text.contains(rule), "{text}");
        if fault == Fault::Panics {
            assert!(
                text.contains("panicked") && text.contains("a store bug"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
#[should_panic(expected = "the store breaks the contract")]
async fn assert_ok_panics_with_the_violations() {
    Contract::new()
        .check(|| async {
            Broken {
                inner: MemoryStore::new(),
                fault: Fault::DeleteAlwaysTrue,
            }
        })
        .await
        .assert_ok();
}
