//! [`ResponseFuture`], the response future of the `require` middleware.

// pin-project-lite cannot carry doc comments on enum fields.
#![allow(missing_docs)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`RequireUser`](super::RequireUser),
    /// [`RequirePermission`](super::RequirePermission) and
    /// [`RequireRecentLogin`](super::RequireRecentLogin).
    #[project = ResponseProj]
    pub enum ResponseFuture<F, B> {
        /// The request is authenticated: the inner service runs.
        Inner { #[pin] future: F },
        /// The request is refused.
        Rejected { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Inner { future } => future.poll(cx),
            ResponseProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: stay pending rather than panic.
                None => Poll::Pending,
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}
