//! [`ResponseFuture`], the response future of [`SessionService`](super::SessionService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tracing::Span;

use crate::data::DataError;
use crate::require::rejection;
use crate::store::BoxFuture;
use crate::{Rejection, Session, SessionError, SessionStatus};

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

type Loading<F> = BoxFuture<'static, (F, Session)>;
type Saving = BoxFuture<'static, Result<(), SessionError>>;

pin_project! {
    /// Response future of [`SessionService`](super::SessionService): authenticates (when that needs waiting), runs
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
    /// Authentication needs waiting: `loading` ends with the inner service called.
    pub(super) fn loading(loading: Loading<F>, span: Span) -> Self {
        Self {
            state: State::Loading { loading },
            session: None,
            span,
        }
    }

    /// The inner service already called: only the cookie is left to write.
    pub(super) fn calling(future: F, session: Session, span: Span) -> Self {
        Self {
            state: State::Calling { future },
            session: Some(session),
            span,
        }
    }

    /// The layer answered itself; the inner service is never called.
    pub(super) fn refused(output: F::Output) -> Self {
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
