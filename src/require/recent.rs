//! [`RequireRecentLoginLayer`]: asks for the credential again before sensitive actions.

use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::{rejection, status_of, ResponseFuture};
use crate::{Rejection, Session, SessionStatus};

/// Body of the `401` that asks for the credential again.
pub const REAUTHENTICATION_REQUIRED_BODY: &str = r#"{"error":"reauthentication_required"}"#;

pub use crate::session::ReauthenticationRequired;

/// `401` with [`REAUTHENTICATION_REQUIRED_BODY`].
impl From<ReauthenticationRequired> for Rejection {
    fn from(_: ReauthenticationRequired) -> Self {
        Rejection::new(StatusCode::UNAUTHORIZED, REAUTHENTICATION_REQUIRED_BODY)
    }
}

/// Requires a user who proved a credential at most a given time ago
/// ([`Session::require_recent_login`]): `401`/`503` as
/// [`RequireUserLayer`](super::RequireUserLayer) without a user, `401
/// {"error":"reauthentication_required"}` when the login is older (OWASP ASVS 7.5.1, 7.5.3).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use axum::{routing::post, Router};
/// use tower::ServiceExt;
/// use tower_app_sessions::{require::RequireRecentLoginLayer, AppContext, MemoryUsers, SessionLayer};
///
/// let account: Router = Router::new()
///     .route("/email", post(|| async { "changed" }))
///     .layer(RequireRecentLoginLayer::within(Duration::from_secs(10 * 60)))
///     .layer(SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new()));
/// let res = account.oneshot(http::Request::post("/email").body(axum::body::Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(res.status(), 401);
/// # });
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct RequireRecentLoginLayer {
    within: Duration,
}

impl RequireRecentLoginLayer {
    /// Requires a login at most `within` ago.
    pub fn within(within: Duration) -> Self {
        Self { within }
    }
}

impl<S> Layer<S> for RequireRecentLoginLayer {
    type Service = RequireRecentLogin<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireRecentLogin {
            inner,
            within: self.within,
        }
    }
}

/// The service of [`RequireRecentLoginLayer`].
#[derive(Debug, Clone)]
pub struct RequireRecentLogin<S> {
    inner: S,
    within: Duration,
}

impl<S> RequireRecentLogin<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireRecentLogin<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<&'static str>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let response = match status_of(req.extensions()) {
            SessionStatus::Authenticated => {
                let recent = req
                    .extensions()
                    .get::<Session>()
                    .map(|s| s.require_recent_login(self.within));
                match recent {
                    Some(Ok(())) => {
                        return ResponseFuture::Inner {
                            future: self.inner.call(req),
                        }
                    }
                    _ => Rejection::from(ReauthenticationRequired).response(),
                }
            }
            status => rejection(status),
        };
        ResponseFuture::Rejected {
            response: Some(response),
        }
    }
}
