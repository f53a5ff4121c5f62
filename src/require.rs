//! [`RequireUserLayer`]: answers `401` (no session) or `503` (backend down) before the inner
//! service runs, for whole routers that only signed-in users may reach.
//!
//! Works with any body type that can be made from a `&'static str` (axum's `Body`,
//! `http_body_util::Full<Bytes>`, `String`, …), so it serves bare hyper as well as axum.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Session, SessionStatus};

/// Body of every `401`: invalid, unknown, expired, revoked and foreign-context credentials all
/// get exactly this, so none can be told apart from outside.
pub const UNAUTHORIZED_BODY: &str = r#"{"error":"unauthorized"}"#;
/// Body of every `503` caused by a session or user backend failure.
pub const UNAVAILABLE_BODY: &str = r#"{"error":"session service unavailable"}"#;

/// The `401` or `503` (JSON body) a request gets when it needs a user and has none.
/// `Unavailable` gives `503`; any other status `401`.
pub fn rejection<B: From<&'static str>>(status: SessionStatus) -> Response<B> {
    let (code, body) = match status {
        SessionStatus::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY),
        _ => (StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY),
    };
    let mut response = Response::new(B::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if code == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Status of a request as seen by [`SessionLayer`](crate::SessionLayer); a request the layer
/// never saw counts as anonymous (fail closed).
pub(crate) fn status_of(extensions: &http::Extensions) -> SessionStatus {
    extensions
        .get::<Session>()
        .map_or(SessionStatus::Anonymous, Session::status)
}

/// Requires an authenticated user for every request of the wrapped service.
///
/// Put it inside (after) a [`SessionLayer`](crate::SessionLayer):
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use axum::{routing::get, Router};
/// use tower::ServiceExt;
/// use tower_app_sessions::{require::RequireUserLayer, AppContext, SessionLayer};
///
/// let admin = Router::new()
///     .route("/stats", get(|| async { "secret" }))
///     .layer(RequireUserLayer::new())
///     .layer(SessionLayer::for_context(AppContext::Admin));
///
/// let res = admin.oneshot(http::Request::get("/stats").body(axum::body::Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 401);
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct RequireUserLayer {
    _priv: (),
}

impl RequireUserLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequireUserLayer {
    type Service = RequireUser<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireUser { inner }
    }
}

/// The service of [`RequireUserLayer`].
#[derive(Debug, Clone)]
pub struct RequireUser<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireUser<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireUserFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match status_of(req.extensions()) {
            SessionStatus::Authenticated => RequireUserFuture::Inner {
                future: self.inner.call(req),
            },
            status => RequireUserFuture::Rejected {
                response: Some(rejection(status)),
            },
        }
    }
}

// pin-project-lite cannot carry doc comments on enum fields.
#[allow(missing_docs)]
mod future {
    use super::*;
    pin_project! {
        /// Response future of [`RequireUser`].
        #[project = RequireUserProj]
        pub enum RequireUserFuture<F, B> {
            /// The request is authenticated: the inner service runs.
            Inner { #[pin] future: F },
            /// The request is refused.
            Rejected { response: Option<Response<B>> },
        }
    }

    impl<F, B, E> Future for RequireUserFuture<F, B>
    where
        F: Future<Output = Result<Response<B>, E>>,
    {
        type Output = Result<Response<B>, E>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                RequireUserProj::Inner { future } => future.poll(cx),
                RequireUserProj::Rejected { response } => match response.take() {
                    Some(response) => Poll::Ready(Ok(response)),
                    // Polled again after completion: stay pending rather than panic.
                    None => Poll::Pending,
                },
            }
        }
    }
}
pub use future::RequireUserFuture;

impl<F, B> fmt::Debug for RequireUserFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequireUserFuture")
    }
}
