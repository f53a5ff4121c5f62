//! [`CrossOriginPolicy`]: the session layer refuses cross-site writes (cross-site request
//! forgery, login CSRF included), on by default.
//!
//! A browser attaches the session cookie to every request to the site, including a form that
//! another site posts (`SameSite=Lax` stops most of them, not a request from a sibling
//! subdomain, nor browsers that do not enforce it). And a form another site posts *without*
//! a cookie can still do harm: posted to a login route with the attacker's password, it
//! signs the victim in as the attacker (login CSRF), whose account then collects what the
//! victim types. So for every request with a method that is not safe (anything but `GET`,
//! `HEAD`, `OPTIONS`) that is not authenticated by a bearer token, with the session cookie
//! or without any credential, the layer checks where it comes from, exactly as Go's
//! `net/http` `CrossOriginProtection` does (Go 1.25;
//! <https://pkg.go.dev/net/http#CrossOriginProtection>) and as OWASP's "Verifying origin
//! with standard headers" recommends
//! (<https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html>):
//!
//! 1. `Sec-Fetch-Site` (sent by every browser since 2023): `same-origin` and `none` (the user
//!    typed the address) pass; `same-site` passes only when
//!    [`allow_same_site`](CrossOriginPolicy::allow_same_site) says so; anything else
//!    (`cross-site`, an unknown value) is refused, unless the `Origin` is a trusted one;
//! 2. without `Sec-Fetch-Site` (older browsers), the `Origin` must be the request's own
//!    origin, scheme included, unless trusted; `Origin: null` is refused. The host and port
//!    are the request's (`Host`, or the URI's authority in HTTP/2). The scheme is the URI's
//!    when it has one (HTTP/2, absolute-form requests); otherwise the server often cannot see
//!    it (TLS ends at a proxy), and the rule is: `https`, because session cookies are
//!    `Secure` and a browser sends them over HTTPS only; `http` is accepted too when the
//!    host is a loopback one (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`), which
//!    browsers treat as secure. So `http://site` posting to `https://site` is refused. A
//!    service served over plain HTTP on another host trusts its own origin explicitly
//!    ([`trust_origin`](CrossOriginPolicy::trust_origin)`("http://intranet:8080")`);
//! 3. without either header the request passes: it does not come from a browser page
//!    (curl, a server, a mobile app), and such clients cannot be made to send a victim's
//!    cookie or to post on a victim's behalf.
//!
//! A refused request is answered `403` with `{"error":"cross_origin"}`, reaches no handler,
//! reads no store and changes no session. Requests authenticated by a bearer token are never
//! checked: a browser does not attach a bearer token by itself, and a page cannot make it
//! send an `Authorization` header to another origin without that origin's consent (CORS).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{routing::post, Router};
//! use tower::ServiceExt;
//! use tower_app_sessions::{cross_origin::CrossOriginPolicy, AppContext, MemoryUsers, SessionLayer};
//!
//! let layer = SessionLayer::for_context(AppContext::Web)
//!     .users(MemoryUsers::new())
//!     .cross_origin(CrossOriginPolicy::default().trust_origin("https://admin.example.com").unwrap());
//! let app = Router::new().route("/logout", post(|| async { "bye" })).layer(layer);
//! let forged = http::Request::post("/logout")
//!     .header("cookie", "sessionId=AAAAAAAAAAAAAAAAAAAAAA")
//!     .header("sec-fetch-site", "cross-site")
//!     .header("origin", "https://evil.example")
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! assert_eq!(app.oneshot(forged).await.unwrap().status(), 403);
//! # });
//! ```

use std::fmt;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};

/// Body of the `403` a refused cross-origin request gets.
pub const CROSS_ORIGIN_BODY: &str = r#"{"error":"cross_origin"}"#;

/// What the session layer does with writes from other origins that a bearer token does not
/// authenticate (see the [module docs](self)). The default refuses them, `same-site` included, and trusts no
/// origin.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CrossOriginPolicy {
    disabled: bool,
    allow_same_site: bool,
    trusted: Arc<[Box<str>]>,
}

/// An origin that is not `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin:?} is not an origin: expected scheme://host[:port], without a path")]
pub struct InvalidOrigin {
    /// The rejected value (cut to 64 characters).
    pub origin: String,
}

impl CrossOriginPolicy {
    /// No check at all. Only for services that no browser reaches with the cookie, or that
    /// protect every write themselves (a CSRF token).
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            disabled: true,
            ..Self::default()
        }
    }

    /// Whether a request from another origin of the same site (a sibling subdomain) may
    /// write (`Sec-Fetch-Site: same-site`); default no.
    #[must_use]
    pub fn allow_same_site(mut self, allow: bool) -> Self {
        self.allow_same_site = allow;
        self
    }

    /// Lets requests whose `Origin` is exactly `origin` (`https://admin.example.com`, with a
    /// port if not the scheme's default) write, wherever the browser says they come from.
    ///
    /// # Errors
    /// [`InvalidOrigin`] unless `origin` is `scheme://host[:port]` with nothing after it.
    pub fn trust_origin(mut self, origin: &str) -> Result<Self, InvalidOrigin> {
        let origin = parse_origin(origin).ok_or_else(|| InvalidOrigin {
            origin: origin.chars().take(64).collect(),
        })?;
        let mut trusted = self.trusted.to_vec();
        trusted.push(origin.into());
        self.trusted = trusted.into();
        Ok(self)
    }

    /// [`trust_origin`](Self::trust_origin) for each of `origins`.
    ///
    /// # Errors
    /// The first [`InvalidOrigin`].
    pub fn trust_origins<'a>(
        self,
        origins: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, InvalidOrigin> {
        origins
            .into_iter()
            .try_fold(self, |policy, origin| policy.trust_origin(origin))
    }

    /// Whether a request with `method`, `headers` and `uri` may go on (the layer asks for
    /// every request not authenticated by a bearer token; see the [module docs](self)).
    pub fn allows(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        if self.disabled || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return true;
        }
        let origin = headers.get(header::ORIGIN);
        match headers.get(SEC_FETCH_SITE).map(HeaderValue::as_bytes) {
            Some(b"same-origin" | b"none") => return true,
            Some(b"same-site") if self.allow_same_site => return true,
            Some(_) => return self.is_trusted(origin),
            None => {}
        }
        let Some(origin) = origin else {
            return true;
        };
        same_origin(origin.as_bytes(), uri, headers) || self.is_trusted(Some(origin))
    }

    fn is_trusted(&self, origin: Option<&HeaderValue>) -> bool {
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
            return false;
        };
        self.trusted
            .iter()
            .any(|trusted| trusted.eq_ignore_ascii_case(origin))
    }
}

impl fmt::Debug for CrossOriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrossOriginPolicy")
            .field("enabled", &!self.disabled)
            .field("allow_same_site", &self.allow_same_site)
            .field("trusted", &self.trusted)
            .finish()
    }
}

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// `scheme://host[:port]` lowercased, or `None` if `origin` is anything else.
fn parse_origin(origin: &str) -> Option<String> {
    let (scheme, authority) = origin.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    (scheme_ok && authority_ok).then(|| origin.to_ascii_lowercase())
}

/// The scheme and `host[:port]` of an `Origin` header value, `None` for `null` and anything
/// malformed.
fn split_origin(origin: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = origin.windows(3).position(|w| w == b"://")?;
    let (scheme, authority) = (&origin[..at], &origin[at + 3..]);
    let ok = !scheme.is_empty()
        && !authority.is_empty()
        && authority
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(b));
    ok.then_some((scheme, authority))
}

/// Whether `origin` is the request's own origin: its host and port (`Host`, or the URI's
/// authority), and its scheme: the URI's if it has one, else `https`, or `http` on a
/// loopback host (see the [module docs](self)).
fn same_origin(origin: &[u8], uri: &Uri, headers: &HeaderMap) -> bool {
    let Some((scheme, authority)) = split_origin(origin) else {
        return false;
    };
    let Some(own) = uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| headers.get(header::HOST).map(HeaderValue::as_bytes))
    else {
        return false;
    };
    if !authority.eq_ignore_ascii_case(own) {
        return false;
    }
    match uri.scheme_str() {
        Some(own_scheme) => scheme.eq_ignore_ascii_case(own_scheme.as_bytes()),
        None => {
            scheme.eq_ignore_ascii_case(b"https")
                || (scheme.eq_ignore_ascii_case(b"http") && is_loopback(own))
        }
    }
}

/// Whether `authority` (`host[:port]`) names a loopback host: `localhost`, a name under
/// `.localhost`, an address in `127.0.0.0/8`, or `[::1]` (the hosts browsers treat as secure
/// over plain HTTP).
fn is_loopback(authority: &[u8]) -> bool {
    let Ok(authority) = std::str::from_utf8(authority) else {
        return false;
    };
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, _)) => {
                return v6
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
            }
            None => return false,
        },
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if let Ok(v4) = host.parse::<std::net::Ipv4Addr>() {
        return v4.is_loopback();
    }
    const NAME: &[u8] = b"localhost";
    let host = host.as_bytes();
    host.eq_ignore_ascii_case(NAME)
        || (host.len() > NAME.len() + 1
            && host[host.len() - NAME.len() - 1] == b'.'
            && host[host.len() - NAME.len()..].eq_ignore_ascii_case(NAME))
}

/// The `403` of a refused cross-origin request.
pub(crate) fn refusal<B: From<&'static str>>() -> Response<B> {
    crate::Rejection::new(StatusCode::FORBIDDEN, CROSS_ORIGIN_BODY).response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "https://example.com",
            "http://127.0.0.1:3000",
            "https://[::1]:8443",
        ] {
            assert!(
                CrossOriginPolicy::default().trust_origin(good).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            "example.com",
            "https://",
            "https://example.com/",
            "https://example.com/path",
            "https://exa mple.com",
            "null",
            "https://example.com?x",
            "javascript://%0a",
        ] {
            assert!(
                CrossOriginPolicy::default().trust_origin(bad).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            split_origin(b"https://a.example:8443"),
            Some((&b"https"[..], &b"a.example:8443"[..]))
        );
        assert_eq!(split_origin(b"null"), None);
        assert_eq!(split_origin(b"://a.example"), None);
        assert_eq!(split_origin(b"https://a.example/x"), None);
    }

    #[test]
    fn loopback_hosts() {
        for yes in [
            "localhost",
            "localhost:3000",
            "LOCALHOST:3000",
            "app.localhost:8080",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3:3000",
            "[::1]:3000",
            "[::1]",
        ] {
            assert!(is_loopback(yes.as_bytes()), "{yes}");
        }
        for no in [
            "",
            "example.com",
            "localhost.example.com",
            "mylocalhost",
            "10.0.0.1:3000",
            "128.0.0.1",
            "[::2]:3000",
            "[::1",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(!is_loopback(no.as_bytes()), "{no}");
        }
    }
}
