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
//! let ada = sessions.users().create(User::new("ada@example.com", Role::Admin)).await.unwrap();
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
//! - `cli`: the operator's command-line tool, binary `tower-app-sessions` (`cargo install
//!   tower-app-sessions --features cli`, then `tower-app-sessions --help`); it turns on
//!   `redis` and `postgres`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
#![warn(missing_debug_implementations)]

#[macro_use]
mod labels;

#[cfg(feature = "cache")]
pub mod cache;
mod change;
pub mod clock;
pub mod config;
mod context;
pub mod cookie;
pub mod cross_origin;
pub mod data;
pub mod events;
pub mod extract;
// Wrappers for the fuzz targets (`fuzz/`); not public API, absent from every ordinary build.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod id;
pub mod layer;
#[cfg(feature = "throttle")]
pub mod login;
pub mod manage;
mod operators;
mod policy;
pub mod record;
mod redact;
pub mod require;
mod session;
mod sessions;
pub mod stats;
pub mod store;
mod sync;
pub mod telemetry;
#[cfg(feature = "throttle")]
pub mod throttle;
pub mod users;
#[cfg(feature = "postgres")]
pub mod webdb;

#[cfg(feature = "axum")]
pub mod axum;

pub use context::{AppContext, CustomContext, InvalidContext};
pub use id::{HandleError, RandomError, SessionHandle, SessionId};
pub use layer::{ResponseFuture, SessionLayer, SessionService};
pub use record::{SessionMetadata, SessionRecord};
pub use session::{CurrentUser, OverLimit, Session, SessionError, SessionStatus};
pub use sessions::Sessions;
pub use store::{Scope, SessionStore, StoreError, StoreFuture};
pub use users::{Role, User, UserRepository, UserResolver};

#[cfg(feature = "memory")]
pub use store::MemoryStore;
#[cfg(feature = "memory")]
pub use users::MemoryUsers;
