//! Tower middleware that authenticates requests from server-side sessions **isolated per
//! application**.
//!
//! Several apps (a public `web` app, an `admin` panel, …) share one user database and one
//! session store, yet a session created in one app never authenticates in another: every
//! store operation is scoped by the [`AppContext`] fixed when the [`SessionLayer`] is built.
//! The wire formats (Redis keys `session:<context>:<id>`, the record's JSON, the
//! `sessionId` cookie) are those of the existing TypeScript apps, byte for byte.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{routing::{get, post}, Router};
//! use tower::ServiceExt;
//! use tower_app_sessions::{AppContext, CurrentUser, Role, Session, SessionMetadata, Sessions, User};
//!
//! let sessions = Sessions::from_env().await?; // in memory unless SESSION_ENV says otherwise
//! let ada = sessions.user_repository().create(User::new("ada@example.com", Role::Admin)).await.unwrap();
//!
//! let admin = Router::new()
//!     .route("/login", post(move |session: Session| async move {
//!         session.login(ada.id, SessionMetadata::new()).await.map(|_| "ok")
//!     }))
//!     .route("/me", get(|user: CurrentUser<User>| async move { user.email.clone() }))
//!     .layer(sessions.layer(AppContext::Admin).cookie_name("admin_sid"));
//!
//! // Log in, then use the cookie.
//! let res = admin.clone().oneshot(http::Request::post("/login").body(axum::body::Body::empty()).unwrap()).await.unwrap();
//! let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
//! let me = http::Request::get("/me").header("cookie", cookie).body(axum::body::Body::empty()).unwrap();
//! assert_eq!(admin.oneshot(me).await.unwrap().status(), 200);
//! # Ok::<(), tower_app_sessions::config::ConfigError>(())
//! # }).unwrap();
//! ```
//!
//! # Failure semantics
//! - no, malformed, unknown, expired, revoked or foreign-context credential: the request is
//!   anonymous; a route that requires a user answers `401`, with the same body for all;
//! - a backend that fails: the request is never authenticated; required routes answer `503`;
//!   nothing panics and the layer never produces a `500`.
//!
//! # Naming
//! - middleware: a `…Layer` builds a service named like it without `Layer`
//!   ([`require::RequireUserLayer`] → [`require::RequireUser`], as tower-http's
//!   `TimeoutLayer` → `Timeout`); the session layer's service is [`SessionService`] because
//!   [`Session`] is the request's handle. Each middleware module has its own
//!   `ResponseFuture` ([`layer::ResponseFuture`], [`require::ResponseFuture`]).
//! - settings: a method named by the bare noun that takes `self` and returns `Self`, as
//!   tower-http's builders (`SessionLayer::users`, `CookieConfig::name`,
//!   `PgSessionStore::users`, `User::hashed_password`, `Sessions::clock`); `with_` only
//!   starts a constructor (`MemoryStore::with_capacity`);
//! - getters: take `&self`, no `get_` prefix (tower's `get_ref`/`get_mut` on services
//!   aside), and never share a name with a setter anywhere in the crate
//!   ([`Sessions::session_store`], [`Sessions::user_repository`]).
//!
//! # Features
//! - `memory` (default): [`MemoryStore`] and [`MemoryUsers`];
//! - `axum` (default): extractors in [`mod@axum`];
//! - `cache` (default): the opt-in in-process session cache, [`cache`];
//! - `throttle` (default): the login throttle and device cookies, [`throttle`], and password
//!   sign-in, registration and re-authentication, [`login`];
//! - `argon2` (default): [`login::Argon2Verifier`], the Argon2 PHC hashes of the TypeScript
//!   apps;
//! - `metrics` (default): counters and histograms through the `metrics` facade, see
//!   [`telemetry`];
//! - `redis`: [`store::RedisStore`], Redis Cluster, legacy-key migration;
//! - `postgres`: [`store::PgSessionStore`], [`users::PgUsers`], migrations,
//!   [`webdb`];
//! - `testing`: [`testing::check_store`], the store contract as a test for a store of your
//!   own (for `[dev-dependencies]`);
//! - `cli`: the operator's command-line tool, binary `tower-app-sessions` (`cargo install
//!   tower-app-sessions --features cli`, then `tower-app-sessions --help`); it turns on
//!   `redis` and `postgres`.
#![cfg_attr(docsrs, feature(doc_cfg))]
// The workspace's lints are in Cargo.toml; these are the library's alone.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

#[macro_use]
mod labels;

mod backend;

#[cfg(feature = "cache")]
pub mod cache;
mod change;
pub mod clock;
pub mod config;
mod context;
pub mod cookie;
mod credential;
pub mod cross_origin;
pub mod data;
pub mod events;
pub mod feed;
// Wrappers for the fuzz targets (`fuzz/`); not public API, absent from every ordinary build.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod id;
// The session layer, private so that each of its items has one path: `SessionLayer` and
// `SessionService` at the root, the rest in the public `layer` module below.
#[cfg(feature = "throttle")]
pub mod login;
pub mod manage;
mod operators;
mod policy;
#[path = "layer/mod.rs"]
mod session_layer;
// Private so that `SessionRecord` and `SessionMetadata` have one path (the root); the rest
// is in the public `record` module below, and crate code keeps its `crate::record::` paths.
mod redact;
mod rejection;
pub mod require;
mod session;
#[path = "record.rs"]
mod session_record;
mod sessions;
pub mod stats;
pub mod store;
mod sync;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "throttle")]
pub mod throttle;
// Private so that `User`, `Role`, `UserResolver`, `UserRepository` and `MemoryUsers` have
// one path (the root); the rest is in the public `users` module below, and crate code keeps
// its `crate::users::` paths.
#[path = "users/mod.rs"]
mod user_types;
#[cfg(feature = "postgres")]
pub mod webdb;

#[cfg(feature = "axum")]
pub mod axum;

pub use context::{AppContext, CustomContext, InvalidContext};
pub use credential::CredentialSource;
pub use id::{HandleError, RandomError, SessionHandle, SessionId};
pub use session_layer::{SessionLayer, SessionService};

/// What names the [`SessionLayer`]'s types: its build states ([`Ready`](layer::Ready),
/// [`NeedsUsers`](layer::NeedsUsers)) and its [`ResponseFuture`](layer::ResponseFuture). The
/// layer and its service are at the crate root.
pub mod layer {
    pub use crate::session_layer::{LayerState, NeedsUsers, Ready, ResponseFuture};
}
pub use policy::OverLimit;
pub use session_record::{SessionMetadata, SessionRecord};

/// What a [`SessionRecord`] and its [`SessionMetadata`] are made of (the wire format is
/// described on [`SessionRecord`]).
pub mod record {
    pub(crate) use crate::session_record::{duration_ms, remaining};
    pub use crate::session_record::{
        now_ms, ClientIp, RecordError, MAX_IP_BYTES, MAX_USER_AGENT_BYTES,
    };
}
pub use rejection::Rejection;
pub use session::{CurrentUser, Session, SessionError, SessionStatus};
pub use sessions::Sessions;
pub use store::{Scope, SessionStore, StoreError, StoreFuture};
pub use user_types::{Role, User, UserRepository, UserResolver};

/// Users beyond the root's [`User`], [`Role`], [`UserResolver`] and [`UserRepository`]: the
/// email rules, the errors, permission grants and, with feature `postgres`, [`PgUsers`](users::PgUsers).
pub mod users {
    #[cfg(feature = "postgres")]
    pub use crate::user_types::PgUsers;
    #[allow(unused_imports)] // which of the crate-private items are used depends on features
    pub(crate) use crate::user_types::*;
    pub use crate::user_types::{
        canonical_email, EmailError, PermissionGrant, UnknownRole, UserError, MAX_EMAIL_BYTES,
    };
}

#[cfg(feature = "memory")]
pub use store::MemoryStore;
#[cfg(feature = "memory")]
pub use user_types::MemoryUsers;
