//! Credential extraction from request headers (`credential`, what the session layer
//! reads): cookies, bearer tokens, duplicates, odd bytes.
//!
//! Input: the first line is the cookie name; every further line is one header, `name:value`
//! (value bytes as they are, `\r` and other control bytes included, which `HeaderValue`
//! refuses: such a header is left out).
//!
//! Properties:
//! - a returned id passed `SessionId::parse` and re-parses to itself;
//! - the verdict does not depend on the order of the headers (every `Cookie` header is read
//!   and two different values are ambiguous; two `Authorization` headers are refused);
//! - nor on headers other than `Cookie` and `Authorization`, added or removed;
//! - the `Cookie` headers joined into one with `; ` (HTTP/1.1's form of HTTP/2's one header
//!   per cookie, RFC 9113 §8.2.3) give the same verdict;
//! - a cookie-borne credential is the value of a cookie of that name; a bearer one exists
//!   only when exactly one `Authorization` header is present and no cookie decided.
#![no_main]

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use tower_app_sessions::fuzzing::{credential, Credential};
use tower_app_sessions::CredentialSource;
use tower_app_sessions::SessionId;

fn map<'a>(headers: impl IntoIterator<Item = &'a (HeaderName, HeaderValue)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    map
}

fn verdict(headers: &HeaderMap, cookie_name: &str) -> Option<Credential> {
    let found = credential(headers, cookie_name);
    if let Some(found) = &found {
        assert_eq!(
            SessionId::parse(found.id.as_str()).as_ref(),
            Some(&found.id)
        );
    }
    found
}

fuzz_target!(|bytes: &[u8]| {
    let mut lines = bytes.split(|b| *b == b'\n');
    let Some(Ok(cookie_name)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.push((name, value));
    }

    let found = verdict(&map(&headers), cookie_name);

    // Order: reversed, and rotated.
    assert_eq!(
        verdict(&map(headers.iter().rev()), cookie_name),
        found,
        "order"
    );
    if headers.len() > 1 {
        let rotated: Vec<_> = headers[1..].iter().chain(&headers[..1]).cloned().collect();
        assert_eq!(verdict(&map(&rotated), cookie_name), found, "rotation");
    }

    // Unrelated headers: removed, or one more added.
    let related = |name: &HeaderName| *name == COOKIE || *name == AUTHORIZATION;
    let only_related: Vec<_> = headers
        .iter()
        .filter(|(n, _)| related(n))
        .cloned()
        .collect();
    assert_eq!(
        verdict(&map(&only_related), cookie_name),
        found,
        "unrelated headers removed"
    );
    let mut more = headers.clone();
    more.push((
        HeaderName::from_static("x-session"),
        HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA"),
    ));
    assert_eq!(
        verdict(&map(&more), cookie_name),
        found,
        "an unrelated header added"
    );

    // Every Cookie header joined into one.
    let cookies: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| *n == COOKIE)
        .map(|(_, v)| v.as_bytes())
        .collect();
    if cookies.len() > 1 {
        let joined = cookies.join(&b"; "[..]);
        if let Ok(joined) = HeaderValue::from_bytes(&joined) {
            let mut one: Vec<_> = headers
                .iter()
                .filter(|(n, _)| *n != COOKIE)
                .cloned()
                .collect();
            one.push((COOKIE, joined));
            assert_eq!(verdict(&map(&one), cookie_name), found, "cookies joined");
        }
    }

    match &found {
        Some(Credential {
            id,
            source: CredentialSource::Cookie,
        }) => {
            // The value of a pair named `cookie_name` (trimmed, quotes around it allowed).
            let named = cookies
                .iter()
                .flat_map(|c| c.split(|b| *b == b';'))
                .any(|pair| {
                    let pair = String::from_utf8_lossy(pair);
                    pair.split_once('=').is_some_and(|(name, value)| {
                        let value = value.trim_matches([' ', '\t']);
                        name.trim_matches([' ', '\t']) == cookie_name
                            && (value == id.as_str() || value == format!("\"{}\"", id.as_str()))
                    })
                });
            assert!(
                named,
                "a cookie credential that no cookie {cookie_name:?} holds"
            );
            // The cookie decides: no Authorization header changes it.
            let no_auth: Vec<_> = headers
                .iter()
                .filter(|(n, _)| *n != AUTHORIZATION)
                .cloned()
                .collect();
            assert_eq!(
                verdict(&map(&no_auth), cookie_name),
                found,
                "bearer removed"
            );
        }
        Some(Credential {
            id,
            source: CredentialSource::Bearer,
        }) => {
            let auth: Vec<_> = headers
                .iter()
                .filter(|(n, _)| *n == AUTHORIZATION)
                .collect();
            assert_eq!(
                auth.len(),
                1,
                "a bearer credential from several Authorization headers"
            );
            let value = auth[0].1.as_bytes();
            assert!(value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "));
            assert_eq!(
                String::from_utf8_lossy(&value[7..]).trim_matches([' ', '\t']),
                id.as_str()
            );
        }
        None => {}
    }
});
