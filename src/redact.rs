//! Secrets kept out of `Debug` output and error messages.

/// `url` with the password of its user information, if any, replaced by `***`.
// Connection URLs are read (and logged) only when a store is connected from the environment.
#[cfg_attr(not(feature = "memory"), allow(dead_code))]
pub(crate) fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        // `redis://secret@host`: redis-rs takes a lone user-information part as the password.
        None => format!("{}***{}", &url[..scheme_end], &rest[at..]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_show() {
        assert_eq!(
            super::url("redis://user:secret@host:1/2"),
            "redis://user:***@host:1/2"
        );
        assert_eq!(
            super::url("postgres://u:p%40ss@db/app?x=1"),
            "postgres://u:***@db/app?x=1"
        );
        assert_eq!(super::url("redis://secret@host"), "redis://***@host");
        assert_eq!(super::url("redis://host:6379"), "redis://host:6379");
        assert_eq!(super::url("not a url"), "not a url");
    }
}
