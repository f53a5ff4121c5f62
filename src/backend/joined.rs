//! [`JoinedUser`]: what a store that reads a session's user in the session's own query hands
//! to the resolver of that user (see [`SessionStore::load_with_user`]). Here, below both
//! stores and user resolvers, because both speak it.
//!
//! [`SessionStore::load_with_user`]: crate::SessionStore::load_with_user

use std::sync::Arc;

/// A user a store read together with its session. It is handed only to the resolver that
/// [recognises](crate::UserResolver::joined) it (the resolver on the same database, for the
/// same user and context): the layer then skips its own lookup. Nothing keeps it past the
/// request, so it is never staler than the request's own query.
#[derive(Clone)]
pub struct JoinedUser {
    source: usize,
    user: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for JoinedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinedUser")
            .field("found", &self.user.is_some())
            .finish_non_exhaustive()
    }
}

impl PartialEq for JoinedUser {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && match (&self.user, &other.user) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl JoinedUser {
    /// The user `source` (a resolver's own identity, say the address of state its clones
    /// share) would resolve, `None` if the query found the user gone.
    pub fn new<U: Send + Sync + 'static>(source: usize, user: Option<Arc<U>>) -> Self {
        Self {
            source,
            user: user.map(|u| u as Arc<dyn std::any::Any + Send + Sync>),
        }
    }

    /// The user, if it came from `source` and is a `U`: `Some(None)` when the query found the
    /// user gone, `None` when it is not for that resolver.
    pub fn take_for<U: Send + Sync + 'static>(&self, source: usize) -> Option<Option<Arc<U>>> {
        if self.source != source {
            return None;
        }
        match &self.user {
            None => Some(None),
            Some(user) => user.clone().downcast::<U>().ok().map(Some),
        }
    }
}
