//! [`HeldRecord`]: a request's session record, shared with the cache when it came from
//! there, owned when it came from a store: a cache hit copies none of the record's strings.

use std::ops::Deref;
use std::sync::Arc;

use crate::SessionRecord;

/// A session record owned by the request, or shared with the session cache (copied on the
/// first change, which most requests never make).
#[derive(Debug, Clone)]
// Only the session cache shares records.
#[cfg_attr(not(feature = "cache"), allow(dead_code))]
pub(crate) enum HeldRecord {
    Owned(SessionRecord),
    Shared(Arc<SessionRecord>),
}

impl HeldRecord {
    /// The record to change (copied out of the cache's copy first, if shared).
    pub(crate) fn to_mut(&mut self) -> &mut SessionRecord {
        if let HeldRecord::Shared(shared) = self {
            *self = HeldRecord::Owned(SessionRecord::clone(shared));
        }
        match self {
            HeldRecord::Owned(record) => record,
            HeldRecord::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// The record as the cache keeps it: moved into an `Arc` if owned, not copied.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn into_shared(self) -> Arc<SessionRecord> {
        match self {
            HeldRecord::Owned(record) => Arc::new(record),
            HeldRecord::Shared(shared) => shared,
        }
    }

    /// A copy the caller owns.
    pub(crate) fn to_record(&self) -> SessionRecord {
        SessionRecord::clone(self)
    }
}

impl Deref for HeldRecord {
    type Target = SessionRecord;

    fn deref(&self) -> &SessionRecord {
        match self {
            HeldRecord::Owned(record) => record,
            HeldRecord::Shared(shared) => shared,
        }
    }
}

impl From<SessionRecord> for HeldRecord {
    fn from(record: SessionRecord) -> Self {
        HeldRecord::Owned(record)
    }
}
