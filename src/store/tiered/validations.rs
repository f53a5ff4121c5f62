//! Which fast copies a [`TieredStore`](super::TieredStore) has checked against the durable
//! store, and when: a copy checked within the bound is served without asking again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::feed::Change;
use crate::{AppContext, SessionId};

/// Remembered checks, bounded: past `limit`, checks older than the bound are swept (at most
/// once per sweep interval, so a full map of fresh checks costs one scan per interval, not
/// one per request), and while it is still full new checks are not remembered (those
/// sessions are checked on every request).
#[derive(Debug)]
pub(super) struct Validations {
    checked: Mutex<Checked>,
    /// Bumped by every change that drops a check: a check that started before one is not
    /// remembered (it may have read the row just before the change).
    epoch: AtomicU64,
    limit: AtomicUsize,
}

#[derive(Debug, Default)]
struct Checked {
    at: HashMap<(AppContext, SessionId), i64>,
    swept_at: i64,
}

impl Validations {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            checked: Mutex::new(Checked::default()),
            epoch: AtomicU64::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// Changes the limit in place (the notifications follow this very value).
    pub(super) fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn checked(&self) -> std::sync::MutexGuard<'_, Checked> {
        crate::sync::lock(&self.checked)
    }

    /// Read before a check of the durable store.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether `id` was checked less than `bound_ms` before `now`.
    pub(super) fn is_fresh(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
        bound_ms: i64,
    ) -> bool {
        bound_ms > 0
            && self
                .checked()
                .at
                .get(&(context.clone(), id.clone()))
                .is_some_and(|at| now - at < bound_ms)
    }

    /// Remembers a check made at `now` that started at `epoch`, unless a change came in
    /// between.
    pub(super) fn mark(
        &self,
        context: &AppContext,
        id: &SessionId,
        now: i64,
        bound_ms: i64,
        epoch: u64,
    ) {
        if bound_ms == 0 {
            return;
        }
        let mut checked = self.checked();
        // Under the lock: a change drops checks under it too.
        if self.epoch() != epoch {
            return;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        if checked.at.len() >= limit {
            if now - checked.swept_at < bound_ms.min(1_000) {
                return;
            }
            let horizon = now - bound_ms;
            checked.at.retain(|_, at| *at > horizon);
            checked.swept_at = now;
            let limit = self.limit.load(Ordering::Relaxed);
            if checked.at.len() >= limit {
                return;
            }
        }
        checked.at.insert((context.clone(), id.clone()), now);
    }

    pub(super) fn forget(&self, context: &AppContext, id: &SessionId) {
        let mut checked = self.checked();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        checked.at.remove(&(context.clone(), id.clone()));
    }

    pub(super) fn forget_all(&self) {
        let mut checked = self.checked();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        checked.at.clear();
    }

    /// What a notification or an invalidation says: a session's change drops its check,
    /// "everything" drops all; users are not this store's concern.
    pub(super) fn apply(&self, change: &Change) {
        match change {
            Change::Session(context, id) => self.forget(context, id),
            Change::Everything => self.forget_all(),
            Change::User(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_of_fresh_checks_is_swept_once_per_interval_and_a_change_wins_over_a_check() {
        let v = Validations::new(2);
        let ids: Vec<SessionId> = (0..3).map(|_| SessionId::generate().unwrap()).collect();
        let web = AppContext::Web;
        v.mark(&web, &ids[0], 1_000, 5_000, v.epoch());
        v.mark(&web, &ids[1], 1_000, 5_000, v.epoch());
        // Full of fresh checks: the third is not remembered, and no sweep runs again within
        // the sweep interval.
        v.mark(&web, &ids[2], 2_000, 5_000, v.epoch());
        assert!(!v.is_fresh(&web, &ids[2], 2_000, 5_000));
        assert!(v.is_fresh(&web, &ids[0], 5_999, 5_000));
        assert!(!v.is_fresh(&web, &ids[0], 6_000, 5_000), "past the bound");
        // Once the old checks are past the bound a sweep makes room.
        v.mark(&web, &ids[2], 7_000, 5_000, v.epoch());
        assert!(v.is_fresh(&web, &ids[2], 7_000, 5_000));
        // A revocation notified while a check was reading the row: the check is not kept.
        let started = v.epoch();
        v.apply(&Change::Session(web.clone(), ids[2].clone()));
        v.mark(&web, &ids[2], 7_100, 5_000, started);
        assert!(!v.is_fresh(&web, &ids[2], 7_100, 5_000));
        v.mark(&web, &ids[2], 7_100, 5_000, v.epoch());
        v.apply(&Change::Everything);
        assert!(!v.is_fresh(&web, &ids[2], 7_100, 5_000));
    }
}
