//! [`AppContext`]: the application a session belongs to.
//!
//! Every session is written under exactly one context and is only ever read back in that
//! context. The context of a [`SessionLayer`](crate::SessionLayer) is fixed when the layer is
//! built; nothing in a request can choose it.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Longest custom context name, in bytes (`[a-z][a-z0-9-]{0,31}`).
const MAX_CUSTOM_LEN: usize = 32;

/// The application a session is isolated to.
///
/// `Web` is `"web"` and `Admin` is `"admin"`, exactly as the TypeScript apps spell them in
/// Redis keys (`session:web:<id>`) and in the `application_context` column. Apps added later
/// get a validated custom name without a new release of this crate.
///
/// ```
/// use tower_app_sessions::AppContext;
///
/// assert_eq!("admin".parse::<AppContext>().unwrap(), AppContext::Admin);
/// // The TypeScript apps' app scope `admin-panel` maps to the admin session context.
/// assert_eq!("admin-panel".parse::<AppContext>().unwrap(), AppContext::Admin);
///
/// let bot = AppContext::custom("telegram-bot").unwrap();
/// assert_eq!(bot.as_str(), "telegram-bot");
/// assert!(AppContext::custom("Telegram Bot").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum AppContext {
    /// The public web application, `"web"`.
    Web,
    /// The admin panel, `"admin"` (app scope `"admin-panel"`).
    Admin,
    /// Any other application, by a validated name (`[a-z][a-z0-9-]{0,31}`).
    Custom(CustomContext),
}

/// A validated custom context name. Build one through [`AppContext::custom`].
///
/// Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CustomContext(Arc<str>);

impl CustomContext {
    /// The name as written in keys and columns.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A context name that is not `[a-z][a-z0-9-]{0,31}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid application context {name:?}: expected `web`, `admin`, `admin-panel` or a name matching [a-z][a-z0-9-]{{0,31}}")]
pub struct InvalidContext {
    /// The rejected input, cut to 64 characters so a hostile value cannot flood a log line.
    pub name: String,
}

impl InvalidContext {
    fn new(name: &str) -> Self {
        Self {
            name: name.chars().take(64).collect(),
        }
    }
}

impl AppContext {
    /// A context for an application added later, such as `telegram-bot`.
    ///
    /// `"web"`, `"admin"` and `"admin-panel"` give the built-in variants, so a custom context
    /// can never alias one of them under another spelling.
    ///
    /// # Errors
    /// [`InvalidContext`] unless the name matches `[a-z][a-z0-9-]{0,31}`.
    ///
    /// ```
    /// use tower_app_sessions::AppContext;
    /// assert_eq!(AppContext::custom("web").unwrap(), AppContext::Web);
    /// assert!(AppContext::custom("session:admin").is_err());
    /// ```
    pub fn custom(name: &str) -> Result<Self, InvalidContext> {
        name.parse()
    }

    /// The name as written in Redis keys and in the `application_context` column.
    ///
    /// ```
    /// use tower_app_sessions::AppContext;
    /// assert_eq!(AppContext::Web.as_str(), "web");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            AppContext::Web => "web",
            AppContext::Admin => "admin",
            AppContext::Custom(c) => c.as_str(),
        }
    }
}

fn is_valid_custom(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_CUSTOM_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

impl FromStr for AppContext {
    type Err = InvalidContext;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "web" => Ok(AppContext::Web),
            // `admin-panel` is the TypeScript apps' APP_SCOPE; APP_SCOPE_TO_SESSION_CONTEXT maps it to `admin`.
            "admin" | "admin-panel" => Ok(AppContext::Admin),
            _ if is_valid_custom(s) => Ok(AppContext::Custom(CustomContext(Arc::from(s)))),
            _ => Err(InvalidContext::new(s)),
        }
    }
}

impl fmt::Display for AppContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AppContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppContext({})", self.as_str())
    }
}

impl fmt::Debug for CustomContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl AsRef<str> for AppContext {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for CustomContext {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl serde::Serialize for AppContext {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for AppContext {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["web", "admin", "telegram-bot", "a", "x0-1"] {
            let ctx: AppContext = name.parse().unwrap();
            assert_eq!(ctx.to_string(), name);
            assert_eq!(ctx.as_str().parse::<AppContext>().unwrap(), ctx);
        }
        assert_eq!(
            "admin-panel".parse::<AppContext>().unwrap(),
            AppContext::Admin
        );
    }

    #[test]
    fn invalid_names_are_errors() {
        let long = "a".repeat(33);
        for bad in [
            "", "Web", "1app", "-x", "a b", "a:b", "admin*", "é", "a\r\n", "a_b", &long,
        ] {
            assert!(bad.parse::<AppContext>().is_err(), "{bad:?} accepted");
        }
        assert!(AppContext::custom(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn error_is_bounded() {
        let err = "X".repeat(10_000).parse::<AppContext>().unwrap_err();
        assert_eq!(err.name.len(), 64);
    }
}
