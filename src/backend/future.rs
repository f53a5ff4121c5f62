//! [`StoreFuture`]: what every store and resolver operation returns, an answer that is either
//! already there or still to come.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A boxed, `Send` future.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The answer of a store or resolver operation: ready now, or a boxed future.
///
/// An in-process backend ([`MemoryStore`](crate::store::MemoryStore),
/// [`MemoryUsers`](crate::users::MemoryUsers)) answers with [`StoreFuture::ready`]: no
/// allocation, nothing to await, and the layer serves the request without boxing anything. A
/// backend that waits on I/O answers with [`StoreFuture::new`]. Either way it is a `Future`,
/// so callers just `.await` it; [`into_ready`](Self::into_ready) lets the layer take a ready
/// answer without polling. A decorator that forwards an operation returns the inner
/// operation's `StoreFuture` unchanged, and so keeps its readiness.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use tower_app_sessions::store::StoreFuture;
///
/// let now: StoreFuture<'_, u32> = StoreFuture::ready(7);
/// assert_eq!(now.into_ready().ok(), Some(7));
/// let later = StoreFuture::new(async { 7 });
/// let later = later.into_ready().unwrap_err(); // not ready without being polled
/// assert_eq!(later.await, 7);
/// # });
/// ```
#[must_use = "a store operation does nothing unless it is awaited"]
pub struct StoreFuture<'a, T>(Inner<'a, T>);

enum Inner<'a, T> {
    Ready(Option<T>),
    Pending(BoxFuture<'a, T>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// An answer that is already known.
    pub fn ready(value: T) -> Self {
        Self(Inner::Ready(Some(value)))
    }

    /// An answer still to come: `future`, boxed.
    pub fn new(future: impl Future<Output = T> + Send + 'a) -> Self {
        Self(Inner::Pending(Box::pin(future)))
    }

    /// The answer if it is ready without waiting, or the future back.
    ///
    /// # Errors
    /// The future itself when it must be awaited (it was made with [`StoreFuture::new`]).
    pub fn into_ready(self) -> Result<T, Self> {
        match self.0 {
            Inner::Ready(Some(value)) => Ok(value),
            other => Err(Self(other)),
        }
    }

    /// The answer passed through `f`: still ready (nothing allocated) when it was ready, a
    /// new boxed future when it was not.
    pub fn map<V: Send + 'a>(self, f: impl FnOnce(T) -> V + Send + 'a) -> StoreFuture<'a, V>
    where
        T: Send + 'a,
    {
        match self.into_ready() {
            Ok(value) => StoreFuture::ready(f(value)),
            Err(pending) => StoreFuture::new(async move { f(pending.await) }),
        }
    }

    /// Whether the answer is known without waiting.
    pub fn is_ready(&self) -> bool {
        matches!(self.0, Inner::Ready(Some(_)))
    }
}

// The value is never pinned: it is moved out when the future completes, and the boxed future
// is pinned in its box. So a `StoreFuture` can be moved after it is polled.
impl<T> Unpin for StoreFuture<'_, T> {}

impl<T> Future for StoreFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            Inner::Ready(value) => match value.take() {
                Some(value) => Poll::Ready(value),
                // Polled after it completed: a caller's mistake that cannot be answered; never
                // waking it again is the reply that cannot panic.
                None => Poll::Pending,
            },
            Inner::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Ready(Some(_)) => "StoreFuture(ready)",
            Inner::Ready(None) => "StoreFuture(done)",
            Inner::Pending(_) => "StoreFuture(pending)",
        })
    }
}
