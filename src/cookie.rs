//! [`CookieConfig`]: how the session cookie is written.

use std::borrow::Cow;
use std::time::Duration;

use cookie::Cookie;
pub use cookie::SameSite;
use http::HeaderValue;

use crate::SessionId;

/// The default cookie name, as the TypeScript apps read it (`req.cookies.sessionId`).
pub const DEFAULT_COOKIE_NAME: &str = "sessionId";

/// Settings of the session cookie.
///
/// Defaults: name `sessionId`, `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, no `Domain`.
/// Browsers treat `http://localhost` as a secure origin, so `Secure` can stay on in
/// development. Names with the `__Host-` prefix are always written `Secure; Path=/` without
/// `Domain`, and `__Secure-` names always `Secure`, whatever else is configured, because
/// browsers drop such cookies otherwise.
///
/// ```
/// use tower_app_sessions::cookie::{CookieConfig, SameSite};
/// use tower_app_sessions::{AppContext, SessionLayer};
///
/// // `Domain` is dropped: a `__Host-` cookie cannot have one.
/// let cookie = CookieConfig::default().name("__Host-admin_sid").same_site(SameSite::Strict).domain("example.com");
/// let layer = SessionLayer::for_context(AppContext::Admin).cookie(cookie);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    name: Cow<'static, str>,
    secure: bool,
    http_only: bool,
    same_site: SameSite,
    path: Cow<'static, str>,
    domain: Option<Cow<'static, str>>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed(DEFAULT_COOKIE_NAME),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: Cow::Borrowed("/"),
            domain: None,
        }
    }
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn is_token_char(b: u8) -> bool {
    // RFC 6265 cookie-name = token (RFC 9110 tchar)
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl CookieConfig {
    /// Sets the cookie name.
    ///
    /// # Panics
    /// If `name` is empty or not an HTTP token. Names are fixed in code, so this is a
    /// programming error caught at startup, like `HeaderName::from_static`.
    #[must_use]
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        assert!(
            !name.is_empty() && name.bytes().all(is_token_char),
            "invalid session cookie name {name:?}: use letters, digits and !#$%&'*+-.^_`|~"
        );
        self.name = name;
        self
    }

    /// Sets `Secure` (default on).
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Sets `HttpOnly` (default on).
    #[must_use]
    pub fn http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// Sets `SameSite` (default `Lax`).
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// Sets `Path` (default `/`).
    #[must_use]
    pub fn path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets `Domain` (default none: host-only).
    #[must_use]
    pub fn domain(mut self, domain: impl Into<Cow<'static, str>>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// The cookie name.
    pub(crate) fn current_name(&self) -> &str {
        &self.name
    }

    fn build(&self, value: &str) -> Cookie<'static> {
        // Browsers match the prefixes without regard to case (RFC 6265bis): `__HOST-sid` is
        // held to the `__Host-` rules too, so it must be written by them.
        let host_prefix = has_prefix(&self.name, "__Host-");
        let secure = self.secure || host_prefix || has_prefix(&self.name, "__Secure-");
        let mut cookie = Cookie::build((self.name.to_string(), value.to_owned()))
            .http_only(self.http_only)
            .secure(secure)
            .same_site(self.same_site);
        if host_prefix {
            cookie = cookie.path("/");
        } else {
            cookie = cookie.path(self.path.to_string());
            if let Some(domain) = &self.domain {
                cookie = cookie.domain(domain.to_string());
            }
        }
        cookie.build()
    }

    /// The `Set-Cookie` value that hands `id` to the browser for `max_age`.
    pub(crate) fn issue(&self, id: &SessionId, max_age: Duration) -> Option<HeaderValue> {
        self.issue_value(id.as_str(), max_age)
    }

    /// The `Set-Cookie` value that makes the browser drop the cookie.
    /// A `Set-Cookie` of `value` (cookie-octets only) with these attributes, kept `max_age`.
    pub(crate) fn issue_value(&self, value: &str, max_age: Duration) -> Option<HeaderValue> {
        let mut cookie = self.build(value);
        let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        cookie.set_max_age(cookie::time::Duration::seconds(secs));
        HeaderValue::try_from(cookie.to_string()).ok()
    }

    pub(crate) fn removal(&self) -> Option<HeaderValue> {
        let mut cookie = self.build("");
        cookie.make_removal();
        HeaderValue::try_from(cookie.to_string()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SessionId {
        SessionId::parse("Q2xhc3NpY1Nlc3Npb25JZA").unwrap()
    }

    #[test]
    fn defaults_are_secure() {
        let v = CookieConfig::default()
            .issue(&id(), Duration::from_secs(3600))
            .unwrap();
        let v = v.to_str().unwrap();
        assert!(v.starts_with("sessionId=Q2xhc3NpY1Nlc3Npb25JZA;"), "{v}");
        for part in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(v.contains(part), "{v} lacks {part}");
        }
        assert!(!v.contains("Domain"));
    }

    #[test]
    fn host_prefix_forces_its_rules() {
        let cfg = CookieConfig::default()
            .name("__Host-sid")
            .secure(false)
            .path("/admin")
            .domain("example.com");
        let v = cfg.issue(&id(), Duration::from_secs(1)).unwrap();
        let v = v.to_str().unwrap();
        let attributes: Vec<&str> = v.split(';').skip(1).map(str::trim).collect();
        assert!(attributes.contains(&"Secure"), "{v}");
        let paths: Vec<&str> = attributes
            .iter()
            .filter_map(|a| a.strip_prefix("Path="))
            .collect();
        assert_eq!(paths, ["/"], "{v}");
        assert!(!attributes.iter().any(|a| a.starts_with("Domain")), "{v}");
    }

    #[test]
    fn prefixes_are_recognised_in_any_case() {
        for name in ["__Host-sid", "__host-sid", "__HOST-sid", "__HoSt-sid"] {
            let v = CookieConfig::default()
                .name(name)
                .secure(false)
                .path("/admin")
                .domain("example.com")
                .issue(&id(), Duration::from_secs(1))
                .unwrap();
            let v = v.to_str().unwrap();
            let attributes: Vec<&str> = v.split(';').skip(1).map(str::trim).collect();
            assert!(attributes.contains(&"Secure"), "{v}");
            assert!(attributes.contains(&"Path=/"), "{v}");
            assert!(!attributes.iter().any(|a| a.starts_with("Domain")), "{v}");
        }
        for name in ["__secure-sid", "__SECURE-sid"] {
            let v = CookieConfig::default()
                .name(name)
                .secure(false)
                .issue(&id(), Duration::from_secs(1))
                .unwrap();
            assert!(
                v.to_str().unwrap().split(';').any(|a| a.trim() == "Secure"),
                "{v:?}"
            );
        }
    }

    #[test]
    fn removal_expires_the_cookie() {
        let cfg = CookieConfig::default()
            .name("admin_sid")
            .domain("example.com");
        let v = cfg.removal().unwrap();
        let v = v.to_str().unwrap();
        assert!(v.starts_with("admin_sid=;"), "{v}");
        assert!(
            v.contains("Max-Age=0") && v.contains("Domain=example.com"),
            "{v}"
        );
    }

    #[test]
    #[should_panic(expected = "invalid session cookie name")]
    fn invalid_names_panic_at_configuration() {
        let _ = CookieConfig::default().name("session id");
    }
}
