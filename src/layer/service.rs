//! [`SessionService`] and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Span;

use super::{span, SessionLayer};
use crate::cross_origin;
use crate::data::DataError;
use crate::events::{CredentialProblem, SessionEventKind};
use crate::extract::{self, CredentialSource};
use crate::require::rejection;
use crate::store::BoxFuture;
use crate::telemetry::RequestOutcome;
use crate::{CurrentUser, Rejection, Session, SessionError, SessionStatus, User};

/// The answer when the data a handler changed could not be saved: `401` if the session
/// ended meanwhile (the change is gone with it), `413` if the store refused it over the
/// data's limits, `503` if the store failed.
fn unsaved<B: From<&'static str>>(error: &SessionError) -> Response<B> {
    match error {
        SessionError::Ended => rejection(SessionStatus::Anonymous),
        SessionError::Data(DataError::NoRoom) => {
            Rejection::new(StatusCode::PAYLOAD_TOO_LARGE, crate::data::TOO_LARGE_BODY).response()
        }
        _ => {
            tracing::warn!(%error, "session data could not be saved");
            rejection(SessionStatus::Unavailable)
        }
    }
}

/// The service [`SessionLayer`] wraps around yours.
pub struct SessionService<S, U = User> {
    inner: S,
    // One reference count per clone (routers clone the service for every request), not one
    // per field of the layer.
    layer: Arc<SessionLayer<U>>,
}

impl<S, U> SessionService<S, U> {
    pub(super) fn new(inner: S, layer: SessionLayer<U>) -> Self {
        Self {
            inner,
            layer: Arc::new(layer),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, U> Clone for SessionService<S, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: Arc::clone(&self.layer),
        }
    }
}

impl<S: fmt::Debug, U> fmt::Debug for SessionService<S, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, U, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<&'static str>,
    U: Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.layer.shared;
        // An outer layer (another context) may have put its user here: this layer alone
        // decides who the user is below it.
        req.extensions_mut().remove::<CurrentUser<U>>();
        let lookup = extract::lookup(req.headers(), shared.settings.cookie.get_name());
        // Writes from another origin are refused before anything is read, whatever the
        // credential: with the session cookie that is CSRF, without any it is login CSRF (a
        // cross-site form posting the attacker's password). Only a bearer token, which no
        // browser attaches by itself, exempts a request. For safe methods this is one
        // comparison.
        let bearer =
            matches!(&lookup, extract::Lookup::Found(c) if c.source == CredentialSource::Bearer);
        if !bearer
            && !shared
                .settings
                .cross_origin
                .allows(req.method(), req.uri(), req.headers())
        {
            let with_cookie = matches!(lookup, extract::Lookup::Found(_));
            tracing::info!(context = %shared.context, method = %req.method(), with_cookie, "cross-origin write refused");
            shared.metrics.request(RequestOutcome::Refused);
            if let extract::Lookup::Found(credential) = &lookup {
                let span = span::start(&shared.context);
                span::record(&span, RequestOutcome::Refused, &credential.id);
            }
            return ResponseFuture::refused(Ok(cross_origin::refusal()));
        }
        let credential = match lookup {
            extract::Lookup::Found(credential) => Some(credential),
            extract::Lookup::Absent => {
                shared.metrics.request(RequestOutcome::None);
                None
            }
            extract::Lookup::Malformed => {
                shared.metrics.request(RequestOutcome::Malformed);
                let kind = SessionEventKind::UnknownCredential {
                    reason: CredentialProblem::Malformed,
                };
                shared.emit(kind, shared.settings.clock.now_ms(), None, None);
                None
            }
        };
        let Some(credential) = credential else {
            let session = Session::anonymous(Arc::clone(shared), None);
            req.extensions_mut().insert(session.clone());
            return ResponseFuture::calling(self.inner.call(req), session, Span::none());
        };
        let span = span::start(&shared.context);
        if let Some(outcome) = self.layer.authenticate_now(&credential) {
            let (session, user) = outcome.into_session(shared, credential, &span);
            req.extensions_mut().insert(session.clone());
            if let Some(user) = user {
                req.extensions_mut().insert(user);
            }
            let future = span.in_scope(|| self.inner.call(req));
            return ResponseFuture::calling(future, session, span);
        }
        // The inner service was made ready by `poll_ready`; take that one and leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = Arc::clone(&self.layer);
        let recorded = span.clone();
        let loading = Box::pin(async move {
            let (session, user) = layer.authenticate(credential, &recorded).await;
            req.extensions_mut().insert(session.clone());
            if let Some(user) = user {
                req.extensions_mut().insert(user);
            }
            (inner.call(req), session)
        });
        ResponseFuture {
            state: State::Loading { loading },
            session: None,
            span,
        }
    }
}

type Loading<F> = BoxFuture<'static, (F, Session)>;
type Saving = BoxFuture<'static, Result<(), SessionError>>;

pin_project! {
    /// Response future of [`SessionService`]: authenticates (when that needs waiting), runs
    /// the inner service's future `F`, saves the session data the handler changed (if it
    /// did, and answered with a status below 400: an error answer stores nothing of the
    /// request), then writes the `Set-Cookie` the handler's changes call for.
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        state: State<F>,
        session: Option<Session>,
        // Entered on every poll (see `span`); `Span::none()` for anonymous requests.
        span: Span,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F>
    where
        F: Future,
    {
        Loading { loading: Loading<F> },
        Calling { #[pin] future: F },
        Saving { saving: Saving, output: Option<F::Output> },
        Refused { output: Option<F::Output> },
    }
}

impl<F: Future> ResponseFuture<F> {
    /// The inner service already called: only the cookie is left to write.
    fn calling(future: F, session: Session, span: Span) -> Self {
        Self {
            state: State::Calling { future },
            session: Some(session),
            span,
        }
    }

    /// The layer answered itself; the inner service is never called.
    fn refused(output: F::Output) -> Self {
        Self {
            state: State::Refused {
                output: Some(output),
            },
            session: None,
            span: Span::none(),
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Loading { .. } => "authenticating",
            State::Calling { .. } => "calling",
            State::Saving { .. } => "saving",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<&'static str>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        loop {
            match this.state.as_mut().project() {
                StateProj::Loading { loading } => {
                    let (future, session) = ready!(loading.as_mut().poll(cx));
                    *this.session = Some(session);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let mut response = ready!(future.poll(cx))?;
                    let Some(session) = this.session.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    // All or nothing: an error answer (4xx, 5xx) keeps none of the request's
                    // data changes, whatever the handler buffered before it failed.
                    if session.has_unsaved_data() && response.status().as_u16() >= 400 {
                        session.discard_data();
                    } else if session.has_unsaved_data() {
                        let saving = session.clone();
                        *this.session = Some(session);
                        this.state.set(State::Saving {
                            saving: Box::pin(async move { saving.save().await }),
                            output: Some(Ok(response)),
                        });
                        continue;
                    }
                    session.apply(&mut response);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Saving { saving, output } => {
                    let saved = ready!(saving.as_mut().poll(cx));
                    let Some(mut output) = output.take() else {
                        return Poll::Pending;
                    };
                    if let (Err(error), Ok(response)) = (saved, &mut output) {
                        // The handler's answer would claim a change that is not stored.
                        *response = unsaved(&error);
                    }
                    if let (Some(session), Ok(response)) = (this.session.take(), &mut output) {
                        session.apply(response);
                    }
                    return Poll::Ready(output);
                }
                StateProj::Refused { output } => {
                    // Polled again after completion: a contract violation of the caller;
                    // pending forever is the answer that cannot panic.
                    return output.take().map_or(Poll::Pending, Poll::Ready);
                }
            }
        }
    }
}
