//! [`LiveChange`]: what [`TieredStore::change_live`](super::TieredStore) reads in a store's
//! answer to a change of a live record (a slide's `bool`, a data patch's [`DataUpdate`]).

use crate::store::DataUpdate;

/// A store's answer to a change of a live record.
pub(super) trait LiveChange: Copy {
    /// The change was made.
    fn is_applied(self) -> bool;
    /// The change was not made because the session is not live in that store.
    fn is_not_live(self) -> bool;
}

/// `extend`: `true` when extended, `false` when not live.
impl LiveChange for bool {
    fn is_applied(self) -> bool {
        self
    }
    fn is_not_live(self) -> bool {
        !self
    }
}

impl LiveChange for DataUpdate {
    fn is_applied(self) -> bool {
        self == DataUpdate::Applied
    }
    fn is_not_live(self) -> bool {
        self == DataUpdate::NotLive
    }
}
