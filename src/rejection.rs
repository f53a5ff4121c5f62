//! [`Rejection`]: every answer the crate builds itself instead of running a handler.
//!
//! One type, as axum-core's rejections are: a status, a JSON body that never repeats the
//! input and, on `429` and `503`, a `Retry-After`. The layer, the `require` middleware, the
//! axum extractors, the cross-origin check and the login errors all answer through it, so
//! the wire contract (bodies, statuses, `503` never `500`) lives in one place.

use http::{header, HeaderValue, Response, StatusCode};

/// Body of every `401`: invalid, unknown, expired, revoked and foreign-context credentials all
/// get exactly this, so none can be told apart from outside.
pub const UNAUTHORIZED_BODY: &str = r#"{"error":"unauthorized"}"#;
/// Body of every `503` caused by a session or user backend failure.
pub const UNAVAILABLE_BODY: &str = r#"{"error":"session service unavailable"}"#;

/// An answer the crate gives instead of running the handler: `401` without a user, `403`
/// for a missing permission or a cross-origin write, `503` (with `Retry-After: 1`) when a
/// backend failed, and the refusals of session data and logins. Never `500`.
///
/// ```
/// use tower_app_sessions::{Rejection, SessionStatus};
///
/// let rejection = Rejection::without_user(SessionStatus::Unavailable);
/// assert_eq!(rejection.status(), 503);
/// let response: http::Response<String> = rejection.response();
/// assert_eq!(response.headers()["retry-after"], "1");
/// assert_eq!(response.body(), r#"{"error":"session service unavailable"}"#);
/// ```
///
/// With feature `axum` it is `IntoResponse`, and the [`CurrentUser`](crate::CurrentUser)
/// extractor's rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Rejection {
    status: StatusCode,
    body: &'static str,
    /// Seconds; only for `429` and `503`.
    retry_after: Option<u64>,
}

impl Rejection {
    /// An answer with `status` and a JSON `body`; `Retry-After: 1` on `503`.
    pub(crate) const fn new(status: StatusCode, body: &'static str) -> Self {
        let retry_after = if status.as_u16() == 503 {
            Some(1)
        } else {
            None
        };
        Self {
            status,
            body,
            retry_after,
        }
    }

    /// An answer that tells the client when to come back (the login throttle's).
    #[cfg_attr(not(feature = "throttle"), allow(dead_code))]
    pub(crate) const fn retry_after(
        status: StatusCode,
        body: &'static str,
        retry_after_secs: u64,
    ) -> Self {
        Self {
            status,
            body,
            retry_after: Some(retry_after_secs),
        }
    }

    /// `401 {"error":"unauthorized"}`.
    pub(crate) const UNAUTHORIZED: Self = Self::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY);
    /// `503 {"error":"session service unavailable"}`, `Retry-After: 1`.
    pub(crate) const UNAVAILABLE: Self =
        Self::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE_BODY);

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> &'static str {
        self.body
    }

    /// The whole answer: status, `Content-Type: application/json`, `Retry-After` where it
    /// applies, the body. Any body type made from a `&'static str` (axum's `Body`,
    /// `http_body_util::Full<Bytes>`, `String`, …).
    pub fn response<B: From<&'static str>>(&self) -> Response<B> {
        let mut response = Response::new(B::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        self.response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_only_on_503_and_explicit() {
        let table: [(Rejection, Option<&str>); 4] = [
            (Rejection::UNAUTHORIZED, None),
            (Rejection::UNAVAILABLE, Some("1")),
            (Rejection::new(StatusCode::FORBIDDEN, "{}"), None),
            (
                Rejection::retry_after(StatusCode::TOO_MANY_REQUESTS, "{}", 7),
                Some("7"),
            ),
        ];
        for (rejection, retry) in table {
            let response: Response<String> = rejection.response();
            assert_eq!(response.status(), rejection.status());
            assert_eq!(response.headers()["content-type"], "application/json");
            assert_eq!(
                response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or_default()),
                retry,
                "{rejection:?}"
            );
        }
    }
}
