//! Handing a user read together with the session's row to the resolver of the same request,
//! so that a request that must check the session in PostgreSQL makes one query, not two.
//!
//! The layer runs its async decision inside [`scope`]. A [`PgSessionStore`] paired with the
//! resolver ([`PgSessionStore::users`]) sees the scope, selects the session's user (and
//! the context's permissions) in the session's query and [`hand`]s it over; [`PgUsers`]
//! [`take`]s it when asked for that very user in that very context. Nothing outlives the
//! request: what was handed and not taken is dropped with the scope, so this is no cache and
//! never serves anything staler than the query the request itself made.
//!
//! [`PgSessionStore`]: crate::store::postgres::PgSessionStore
//! [`PgSessionStore::users`]: crate::store::postgres::PgSessionStore::users
//! [`PgUsers`]: crate::users::PgUsers

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use super::User;
use crate::AppContext;

/// What a session's query found of its user: `None` if the row has no user any more.
struct Handed {
    /// Which resolver it is for (its shared state's address): another resolver of the same
    /// request, on another database, must not take it.
    owner: usize,
    context: AppContext,
    user_id: Uuid,
    user: Option<Arc<User>>,
}

tokio::task_local! {
    static SLOT: RefCell<Option<Handed>>;
}

/// Runs `decide` with a slot for one handed-over user.
pub(crate) async fn scope<F: Future>(decide: F) -> F::Output {
    SLOT.scope(RefCell::new(None), decide).await
}

/// Whether a resolver of this request may take a user handed over (inside [`scope`]).
pub(crate) fn wanted() -> bool {
    SLOT.try_with(|_| ()).is_ok()
}

/// Hands the user of `user_id` in `context` over to this request's resolver `owner`.
pub(crate) fn hand(owner: usize, context: &AppContext, user_id: Uuid, user: Option<Arc<User>>) {
    let _ = SLOT.try_with(|slot| {
        *slot.borrow_mut() = Some(Handed {
            owner,
            context: context.clone(),
            user_id,
            user,
        });
    });
}

/// The user handed over for `user_id` in `context`, if any (`Some(None)`: the query found the
/// user gone). Taken once.
// Three answers (none handed over, the user, the user gone); this hand-over goes away when
// `load` returns the user itself (issue 23), so no enum of its own.
#[allow(clippy::option_option)]
pub(crate) fn take(
    owner: usize,
    context: &AppContext,
    user_id: &Uuid,
) -> Option<Option<Arc<User>>> {
    SLOT.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.take() {
            Some(handed)
                if handed.owner == owner
                    && handed.user_id == *user_id
                    && handed.context == *context =>
            {
                Some(handed.user)
            }
            other => {
                *slot = other;
                None
            }
        }
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[tokio::test]
    async fn a_handed_user_is_taken_once_by_its_own_id_and_context_within_the_scope() {
        let user = Arc::new(User::new("a@example.com", Role::User));
        let id = user.id;
        // Outside a scope nothing is wanted, and nothing handed is kept.
        assert!(!wanted());
        hand(1, &AppContext::Web, id, Some(Arc::clone(&user)));
        assert!(take(1, &AppContext::Web, &id).is_none());
        scope(async {
            assert!(wanted());
            hand(1, &AppContext::Web, id, Some(Arc::clone(&user)));
            assert!(
                take(1, &AppContext::Admin, &id).is_none(),
                "another context"
            );
            assert!(
                take(1, &AppContext::Web, &Uuid::new_v4()).is_none(),
                "another user"
            );
            assert!(take(2, &AppContext::Web, &id).is_none(), "another resolver");
            let taken = take(1, &AppContext::Web, &id).expect("handed");
            assert_eq!(taken.map(|u| u.id), Some(id));
            assert!(take(1, &AppContext::Web, &id).is_none(), "taken twice");
            hand(1, &AppContext::Web, id, None);
            assert!(
                matches!(take(1, &AppContext::Web, &id), Some(None)),
                "a gone user"
            );
        })
        .await;
    }
}
