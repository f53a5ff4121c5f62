//! [`SessionService`]: authenticates, then calls the inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use tracing::Span;

use super::future::ResponseFuture;
use super::{span, SessionLayer};
use crate::credential::{self, CredentialSource};
use crate::cross_origin;
use crate::events::{CredentialProblem, SessionEventKind};
use crate::telemetry::RequestOutcome;
use crate::{CurrentUser, Session, User};

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
        let lookup = credential::lookup(req.headers(), shared.settings.cookie.current_name());
        // Writes from another origin are refused before anything is read, whatever the
        // credential: with the session cookie that is CSRF, without any it is login CSRF (a
        // cross-site form posting the attacker's password). Only a bearer token, which no
        // browser attaches by itself, exempts a request. For safe methods this is one
        // comparison.
        let bearer =
            matches!(&lookup, credential::Lookup::Found(c) if c.source == CredentialSource::Bearer);
        if !bearer
            && !shared
                .settings
                .cross_origin
                .allows(req.method(), req.uri(), req.headers())
        {
            let with_cookie = matches!(lookup, credential::Lookup::Found(_));
            tracing::info!(context = %shared.context, method = %req.method(), with_cookie, "cross-origin write refused");
            shared.metrics.request(RequestOutcome::Refused);
            if let credential::Lookup::Found(credential) = &lookup {
                let span = span::start(&shared.context);
                span::record(&span, RequestOutcome::Refused, &credential.id);
            }
            return ResponseFuture::refused(Ok(cross_origin::refusal()));
        }
        let credential = match lookup {
            credential::Lookup::Found(credential) => Some(credential),
            credential::Lookup::Absent => {
                shared.metrics.request(RequestOutcome::None);
                None
            }
            credential::Lookup::Malformed => {
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
        ResponseFuture::loading(loading, span)
    }
}
