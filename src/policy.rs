//! The session policy: timeouts, cookie, limits (the per-user [`OverLimit`] too) and
//! migration switches of a layer, and the arithmetic that applies them to a record. Below
//! both the layer and the [`Session`] handle, so neither depends on the other for it; it
//! imports neither.
//!
//! [`Session`]: crate::Session

use std::time::Duration;

use crate::clock::Clock;
use crate::cookie::CookieConfig;
use crate::cross_origin::CrossOriginPolicy;
use crate::record::{duration_ms as ms, remaining};
use crate::{AppContext, SessionRecord};

/// What a login does when the user already has the most sessions
/// [`SessionLayer::max_sessions_per_user`](crate::SessionLayer::max_sessions_per_user)
/// allows in the layer's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverLimit {
    /// The new session is made and the least recently used ones (those closest to expiry,
    /// since every use slides it) end at once. The default.
    #[default]
    EvictLeastRecentlyUsed,
    /// The login is refused ([`SessionError::LimitReached`](crate::SessionError::LimitReached)); the user signs out elsewhere
    /// first.
    RefuseLogin,
}

/// A per-user session limit of a layer: at most `max` sessions in its context (`0`: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SessionLimit {
    pub(crate) max: usize,
    pub(crate) over: OverLimit,
}

impl SessionLimit {
    /// The limit, if there is one and it is enforced with `over`.
    pub(crate) fn when(self, over: OverLimit) -> Option<usize> {
        (self.max > 0 && self.over == over).then_some(self.max)
    }
}

/// Session timing, cookie and migration settings, shared by every layer of a
/// [`Sessions`](crate::Sessions) handle.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) cookie: CookieConfig,
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
    pub(crate) touch_interval: Duration,
    pub(crate) legacy_contexts: Vec<AppContext>,
    pub(crate) clock: Clock,
    pub(crate) session_limit: SessionLimit,
    pub(crate) cross_origin: CrossOriginPolicy,
    /// The limits of a session's data (bytes of its JSON, keys).
    pub(crate) data_limits: crate::data::DataLimits,
    /// Who hears of lifecycle events.
    pub(crate) events: crate::events::EventHooks,
    /// One in this many requests answered without waiting is timed (see
    /// [`SessionLayer::timing_sample`](crate::SessionLayer::timing_sample)).
    pub(crate) timing_sample: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cookie: CookieConfig::default(),
            idle: Duration::from_secs(24 * 60 * 60),
            absolute: Duration::from_secs(7 * 24 * 60 * 60),
            touch_interval: Duration::from_secs(60),
            legacy_contexts: Vec::new(),
            clock: Clock::system(),
            session_limit: SessionLimit::default(),
            cross_origin: CrossOriginPolicy::default(),
            data_limits: crate::data::DataLimits::default(),
            events: crate::events::EventHooks::default(),
            timing_sample: 8,
        }
    }
}

impl Settings {
    /// Lifetime of a new record: the idle timeout, never past the absolute limit.
    pub(crate) fn first_ttl(&self) -> Duration {
        self.idle.min(self.absolute)
    }

    /// Cookie `Max-Age`: what is left of the absolute lifetime. The server enforces the idle
    /// timeout from the record; a cookie that expired on idle would log out active users.
    pub(crate) fn cookie_max_age(&self, record: &SessionRecord, now: i64) -> Duration {
        remaining(self.absolute_deadline(record), now)
    }

    fn absolute_deadline(&self, record: &SessionRecord) -> i64 {
        record.created_at.saturating_add(ms(self.absolute))
    }

    /// Whether `record` may authenticate at `now`: before its `expires_at` and before the
    /// absolute lifetime counted from its creation.
    pub(crate) fn is_live(&self, record: &SessionRecord, now: i64) -> bool {
        !record.is_expired(now) && self.absolute_deadline(record) > now
    }

    /// The new `expires_at` if the idle timeout is due for extension at `now`.
    ///
    /// The time of the last extension is derived from the record itself
    /// (`expires_at - idle`), so throttling needs no extra field and no extra write.
    pub(crate) fn extension_due(&self, record: &SessionRecord, now: i64) -> Option<i64> {
        let idle = ms(self.idle);
        let interval = ms(self.touch_interval).min(idle / 2);
        let target = now.saturating_add(idle).min(self.absolute_deadline(record));
        let last_touch = record.expires_at.saturating_sub(idle);
        (target > record.expires_at && now.saturating_sub(last_touch) >= interval).then_some(target)
    }

    /// When the session was last seen, as far as the record tells: its last slide
    /// (`expires_at - idle`, moved at most once per touch interval), never before its
    /// creation nor after `now`.
    pub(crate) fn last_seen(&self, record: &SessionRecord, now: i64) -> i64 {
        let slid = record.expires_at.saturating_sub(ms(self.idle));
        slid.min(now).max(record.created_at)
    }

    /// Whether `record` authenticates at `now` with nothing to write: live, and no slide due.
    pub(crate) fn serves_as_is(&self, record: &SessionRecord, now: i64) -> bool {
        self.is_live(record, now) && self.extension_due(record, now).is_none()
    }

    /// Whether layers of `context` read pre-migration, context-less sessions.
    pub(crate) fn reads_legacy(&self, context: &AppContext) -> bool {
        self.legacy_contexts.contains(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn settings(idle: u64, absolute: u64, interval: u64) -> Settings {
        Settings {
            idle: Duration::from_millis(idle),
            absolute: Duration::from_millis(absolute),
            touch_interval: Duration::from_millis(interval),
            ..Settings::default()
        }
    }

    fn record(created_at: i64, expires_at: i64) -> SessionRecord {
        SessionRecord {
            user_id: Uuid::nil(),
            created_at,
            expires_at,
            ip: None,
            user_agent: None,
            data: Default::default(),
        }
    }

    #[test]
    fn extension_is_throttled_and_capped() {
        let s = settings(1_000, 10_000, 100);
        // Extended 50 ms ago (expires_at = last touch + idle): not yet.
        assert_eq!(s.extension_due(&record(0, 1_050), 100), None);
        // Extended 100 ms ago: due, to now + idle.
        assert_eq!(s.extension_due(&record(0, 1_000), 100), Some(1_100));
        // Near the absolute limit: capped at created_at + absolute.
        assert_eq!(s.extension_due(&record(0, 9_500), 9_600), Some(10_000));
        // At the cap already: nothing to do.
        assert_eq!(s.extension_due(&record(0, 10_000), 9_900), None);
        // The interval is never longer than half the idle timeout.
        let s = settings(1_000, 10_000, 60_000);
        assert_eq!(s.extension_due(&record(0, 1_000), 500), Some(1_500));
    }

    #[test]
    fn live_means_before_both_deadlines() {
        let s = settings(1_000, 10_000, 100);
        assert!(s.is_live(&record(0, 1_000), 999));
        assert!(!s.is_live(&record(0, 1_000), 1_000), "idle deadline");
        assert!(s.is_live(&record(0, 20_000), 9_999));
        assert!(!s.is_live(&record(0, 20_000), 10_000), "absolute deadline");
        assert!(s.serves_as_is(&record(0, 1_000), 50));
        assert!(!s.serves_as_is(&record(0, 1_000), 150), "a slide is due");
    }
}
