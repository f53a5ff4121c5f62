//! What every rule shares: the failure a check reports, `ensure!`, the setup, and the
//! records rules write. Apart from the rules so that the rule files only ever import it.

use std::time::Duration;

use uuid::Uuid;

use crate::clock::ManualClock;
use crate::{AppContext, SessionMetadata, SessionRecord};
/// Why a rule is broken: what the check saw.
pub(super) struct Failure(pub(super) String);

/// Any error the check meets (a store's, or one making its inputs) breaks the rule with its
/// message: the contract's operations succeed on a healthy store.
impl<E: std::error::Error> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(format!("unexpected error: {error}"))
    }
}

pub(super) type Checked = Result<(), Failure>;

/// `assert!` that breaks the rule instead of panicking.
macro_rules! ensure {
    ($cond:expr $(,)?) => {
        if !$cond {
            return Err(Failure(format!("expected {}", stringify!($cond))));
        }
    };
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($message)+)));
        }
    };
}

/// `assert_eq!` that breaks the rule instead of panicking.
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        ensure_eq!($left, $right, "{} == {}", stringify!($left), stringify!($right))
    };
    ($left:expr, $right:expr, $($message:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if *left != *right {
                    return Err(Failure(format!(
                        "{}: got {:?}, expected {:?}",
                        format!($($message)+),
                        left,
                        right
                    )));
                }
            }
        }
    };
}
pub(super) use {ensure, ensure_eq};

/// What every rule gets besides the store.
#[derive(Clone)]
pub(super) struct Setup {
    pub(super) user: Uuid,
    pub(super) other: Uuid,
    pub(super) third: AppContext,
    pub(super) clock: ManualClock,
}
pub(super) const MINUTE: Duration = Duration::from_secs(60);
/// The lifetime of every record a rule lets expire rather than deletes: a store that keeps
/// ended records (PostgreSQL, for audit) can tell those apart by it.
pub(super) const SHORT: Duration = Duration::from_secs(5);

pub(super) fn record(user: Uuid, now: i64, ttl: Duration) -> SessionRecord {
    SessionRecord::new(
        user,
        SessionMetadata::new()
            .ip("203.0.113.9")
            .user_agent("contract/1"),
        now,
        ttl,
    )
}

/// A record that must be there.
pub(super) fn live(record: Option<SessionRecord>, what: &str) -> Result<SessionRecord, Failure> {
    record.ok_or_else(|| Failure(format!("{what}: no live record")))
}
