//! The build states of a [`SessionLayer`](super::SessionLayer): whether it can authenticate
//! anyone yet.
//!
//! A layer without a user resolver would issue tokens and then answer every request `401`,
//! with nothing in the logs to say why. So it is not a layer at all: only a [`Ready`] one
//! implements [`tower_layer::Layer`], and [`SessionLayer::for_context`] starts in
//! [`NeedsUsers`], which [`users`](super::SessionLayer::users) leaves. Every other setting
//! works in either state and in any order.
//!
//! [`SessionLayer::for_context`]: super::SessionLayer::for_context

/// A layer that can authenticate: it has a user resolver (the default state, and what
/// [`SessionLayer::new`](super::SessionLayer::new), [`Sessions::layer`](crate::Sessions::layer)
/// and [`users`](super::SessionLayer::users) give).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready;

/// A layer that has no user resolver yet: [`SessionLayer::for_context`](super::SessionLayer::for_context)
/// starts here, and [`users`](super::SessionLayer::users) moves it to [`Ready`]. It cannot be
/// applied to a service.
///
/// ```compile_fail,E0277
/// use tower_app_sessions::{AppContext, SessionLayer};
///
/// // error[E0277]: this `SessionLayer` has no user resolver, so it would authenticate nobody
/// let app = axum::Router::<()>::new().layer(SessionLayer::for_context(AppContext::Web));
/// ```
///
/// The same with `.users(..)` builds:
///
/// ```
/// use tower_app_sessions::{AppContext, MemoryUsers, SessionLayer};
///
/// let users = MemoryUsers::new();
/// let app = axum::Router::<()>::new().layer(SessionLayer::for_context(AppContext::Web).users(users));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NeedsUsers;

/// The states in which a [`SessionLayer`](super::SessionLayer) is a [`tower_layer::Layer`]:
/// [`Ready`] only. Sealed: the crate decides what is complete.
#[diagnostic::on_unimplemented(
    message = "this `SessionLayer` has no user resolver, so it would authenticate nobody",
    label = "add `.users(..)` to this layer before applying it",
    note = "`SessionLayer::for_context(..)` starts without users: call `.users(your_resolver)` \
            (e.g. a `MemoryUsers` or `PgUsers`), or build it with `SessionLayer::new(context, store, users)` \
            or `Sessions::layer(context)`"
)]
pub trait LayerState: sealed::Sealed {}

impl LayerState for Ready {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Ready {}
    impl Sealed for super::NeedsUsers {}
}
