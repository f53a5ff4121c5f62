//! What every backend operation returns, below every module that defines or consumes one:
//! [`StoreFuture`] (ready or boxed) and [`StoreError`] (failed or timed out). Stores, user
//! repositories, telemetry and statistics all speak these, so they sit at the bottom of the
//! module graph (`scripts/check-layers`) and are re-exported as
//! `tower_app_sessions::store::{StoreFuture, StoreError}` and at the root.
//!
//! ```
//! use tower_app_sessions::{StoreError, StoreFuture};
//!
//! let failed: StoreFuture<'_, Result<(), StoreError>> =
//!     StoreFuture::ready(Err(StoreError::Timeout { backend: "mine" }));
//! assert!(failed.is_ready());
//! ```

mod future;
mod joined;
pub(crate) use future::BoxFuture;
pub use future::StoreFuture;
pub use joined::JoinedUser;

/// A boxed error from a backend driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A session or user backend could not answer.
///
/// The layer never treats this as "anonymous but fine": the request is not authenticated and
/// a route that requires a user answers `503 Service Unavailable`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed or could not be reached.
    #[error("{backend} backend failed: {source}")]
    Backend {
        /// Which backend (`"redis"`, `"postgres"`, …).
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The backend did not answer in time.
    #[error("{backend} backend timed out")]
    Timeout {
        /// Which backend.
        backend: &'static str,
    },
}

impl StoreError {
    /// Wraps a driver error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            backend,
            source: source.into(),
        }
    }
}

/// Runs `work` for at most `limit`: a driver error becomes a [`StoreError`] through `error`,
/// running out of time [`StoreError::Timeout`]. Every backend bounds every operation with it,
/// so a hung server gives fast `503`s, not hung requests; so does
/// [`Instrumented`](crate::store::Instrumented) for any store.
pub(crate) async fn timed<T, E>(
    backend: &'static str,
    limit: std::time::Duration,
    work: impl std::future::Future<Output = Result<T, E>>,
    error: impl FnOnce(E) -> StoreError,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result.map_err(error),
        Err(_) => Err(StoreError::Timeout { backend }),
    }
}
