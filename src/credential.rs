//! Finding the session credential in a request: the session cookie, else a bearer token.
//!
//! The rules:
//! - the cookie decides when it is present and non-empty, even if its value is invalid
//!   (an invalid cookie never falls through to the `Authorization` header);
//! - every `Cookie` header is read (HTTP/2 sends one per cookie); the same name twice with
//!   different values is ambiguous and gives no credential;
//! - otherwise exactly one `Authorization: Bearer <id>` header (scheme case-insensitive,
//!   one or more spaces);
//! - nothing else: a `?session=` query parameter is never read;
//! - whatever is found must pass [`SessionId::parse`] before any store sees it.
//!
//! Cookie headers are parsed as bytes here rather than with the `cookie` crate because that
//! crate needs `&str`, and a header with one non-UTF-8 byte must not hide (or forge) the
//! session cookie next to it. Parsing borrows; nothing is allocated.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

use crate::SessionId;

/// Where a credential came from. Only cookie-borne sessions ever get `Set-Cookie` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// The session cookie.
    Cookie,
    /// `Authorization: Bearer <id>`.
    Bearer,
}

/// A credential that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    /// The validated id.
    pub(crate) id: SessionId,
    /// Where it came from.
    pub(crate) source: CredentialSource,
}

/// The credential of a request, or `None` when there is none or it is malformed or ambiguous.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn credential(headers: &HeaderMap, cookie_name: &str) -> Option<Credential> {
    match lookup(headers, cookie_name) {
        Lookup::Found(credential) => Some(credential),
        Lookup::Absent | Lookup::Malformed => None,
    }
}

/// What [`credential`] found, telling a malformed credential from none.
pub(crate) enum Lookup {
    Absent,
    Malformed,
    Found(Credential),
}

pub(crate) fn lookup(headers: &HeaderMap, cookie_name: &str) -> Lookup {
    let found = |value: &[u8], source| {
        SessionId::from_bytes(value).map_or(Lookup::Malformed, |id| {
            Lookup::Found(Credential { id, source })
        })
    };
    match find_cookie(headers, cookie_name.as_bytes()) {
        CookieLookup::Found(value) => found(value, CredentialSource::Cookie),
        CookieLookup::Ambiguous => Lookup::Malformed,
        CookieLookup::Absent => match bearer(headers) {
            Bearer::Token(token) => found(token, CredentialSource::Bearer),
            Bearer::Malformed => Lookup::Malformed,
            Bearer::Absent => Lookup::Absent,
        },
    }
}

enum CookieLookup<'a> {
    Absent,
    Found(&'a [u8]),
    Ambiguous,
}

/// The value of the cookie `name` in `headers` (every `Cookie` header, as the session
/// cookie is read); `None` when absent, empty, or present twice with different values.
#[cfg_attr(not(feature = "throttle"), allow(dead_code))]
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    match find_cookie(headers, name.as_bytes()) {
        CookieLookup::Found(value) => Some(value),
        CookieLookup::Absent | CookieLookup::Ambiguous => None,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn find_cookie<'a>(headers: &'a HeaderMap, name: &[u8]) -> CookieLookup<'a> {
    let mut found: Option<&'a [u8]> = None;
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            if trim(&pair[..eq]) != name {
                continue;
            }
            let mut value = trim(&pair[eq + 1..]);
            // RFC 6265: cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE )
            if let [b'"', inner @ .., b'"'] = value {
                value = inner;
            }
            if value.is_empty() {
                continue;
            }
            match found {
                Some(previous) if previous != value => return CookieLookup::Ambiguous,
                _ => found = Some(value),
            }
        }
    }
    found.map_or(CookieLookup::Absent, CookieLookup::Found)
}

enum Bearer<'a> {
    Absent,
    /// Two `Authorization` headers, or a bearer scheme without a token.
    Malformed,
    Token(&'a [u8]),
}

fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Absent;
    };
    if values.next().is_some() {
        return Bearer::Malformed; // two Authorization headers: ambiguous
    }
    let bytes = value.as_bytes();
    let space = bytes.iter().position(|b| *b == b' ');
    let (scheme, rest) = bytes.split_at(space.unwrap_or(bytes.len()));
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme (Basic, …) is not ours to judge.
        return Bearer::Absent;
    }
    let token = trim(rest);
    if token.is_empty() {
        Bearer::Malformed
    } else {
        Bearer::Token(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const ID: &str = "Q2xhc3NpY1Nlc3Npb25JZA";
    const ID2: &str = "AAAAAAAAAAAAAAAAAAAAAAAA";

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn found(map: &HeaderMap) -> Option<(String, CredentialSource)> {
        credential(map, "sessionId").map(|c| (c.id.as_str().to_owned(), c.source))
    }

    #[test]
    fn the_cookie_decides_and_an_invalid_one_never_falls_back() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            http::HeaderValue::from_static("theme=dark; sessionId=Q2xhc3NpY1Nlc3Npb25JZA"),
        );
        headers.insert(
            "authorization",
            http::HeaderValue::from_static("Bearer AAAAAAAAAAAAAAAAAAAAAA"),
        );
        let found = credential(&headers, "sessionId").map(|c| (c.source, c.id.as_str().to_owned()));
        assert_eq!(
            found,
            Some((
                CredentialSource::Cookie,
                "Q2xhc3NpY1Nlc3Npb25JZA".to_owned()
            ))
        );
        headers.insert(
            "cookie",
            http::HeaderValue::from_static("sessionId=bad:value"),
        );
        assert!(credential(&headers, "sessionId").is_none());
    }

    #[test]
    fn table() {
        use CredentialSource::*;
        let long = format!("sessionId={}", "a".repeat(8192));
        type Headers<'a> = Vec<(&'a str, Vec<u8>)>;
        type Case<'a> = (&'a str, Headers<'a>, Option<(&'a str, CredentialSource)>);
        let cases: Vec<Case<'_>> = vec![
            ("no header", vec![], None),
            (
                "plain cookie",
                vec![("cookie", format!("sessionId={ID}").into())],
                Some((ID, Cookie)),
            ),
            (
                "empty cookie",
                vec![("cookie", b"sessionId=".to_vec())],
                None,
            ),
            (
                "empty cookie, bearer",
                vec![
                    ("cookie", b"sessionId=".to_vec()),
                    ("authorization", format!("Bearer {ID2}").into()),
                ],
                Some((ID2, Bearer)),
            ),
            (
                "two cookie headers",
                vec![
                    ("cookie", b"a=1".to_vec()),
                    ("cookie", format!("sessionId={ID}").into()),
                ],
                Some((ID, Cookie)),
            ),
            (
                "same cookie twice, same value",
                vec![("cookie", format!("sessionId={ID}; sessionId={ID}").into())],
                Some((ID, Cookie)),
            ),
            (
                "duplicate names",
                vec![("cookie", format!("sessionId={ID}; sessionId={ID2}").into())],
                None,
            ),
            (
                "duplicate names across headers",
                vec![
                    ("cookie", format!("sessionId={ID}").into()),
                    ("cookie", format!("sessionId={ID2}").into()),
                    ("authorization", format!("Bearer {ID2}").into()),
                ],
                None,
            ),
            (
                "quoted cookie",
                vec![("cookie", format!("sessionId=\"{ID}\"").into())],
                Some((ID, Cookie)),
            ),
            (
                "half-quoted cookie",
                vec![("cookie", format!("sessionId=\"{ID}").into())],
                None,
            ),
            (
                "non-utf8 cookie",
                vec![("cookie", b"sessionId=abc\xff\xfeabcdefghijklmnop".to_vec())],
                None,
            ),
            (
                "non-utf8 neighbour",
                vec![(
                    "cookie",
                    [b"x=\xff; sessionId=".as_slice(), ID.as_bytes()].concat(),
                )],
                Some((ID, Cookie)),
            ),
            ("8 KiB cookie", vec![("cookie", long.into())], None),
            (
                "other cookie name",
                vec![("cookie", format!("sessionid={ID}").into())],
                None,
            ),
            (
                "bearer",
                vec![("authorization", format!("Bearer {ID}").into())],
                Some((ID, Bearer)),
            ),
            (
                "bearer lower case, spaces",
                vec![("authorization", format!("bEaReR    {ID}").into())],
                Some((ID, Bearer)),
            ),
            (
                "bearer with no token",
                vec![("authorization", b"Bearer".to_vec())],
                None,
            ),
            (
                "bearer with blank token",
                vec![("authorization", b"Bearer    ".to_vec())],
                None,
            ),
            (
                "basic scheme",
                vec![("authorization", b"Basic dXNlcjpwYXNzd29yZA==".to_vec())],
                None,
            ),
            (
                "two authorization headers",
                vec![
                    ("authorization", format!("Bearer {ID}").into()),
                    ("authorization", format!("Bearer {ID}").into()),
                ],
                None,
            ),
            (
                "cookie beats bearer",
                vec![
                    ("cookie", format!("sessionId={ID}").into()),
                    ("authorization", format!("Bearer {ID2}").into()),
                ],
                Some((ID, Cookie)),
            ),
            (
                "invalid cookie does not fall back",
                vec![
                    ("cookie", b"sessionId=short".to_vec()),
                    ("authorization", format!("Bearer {ID2}").into()),
                ],
                None,
            ),
            (
                "colon",
                vec![("cookie", b"sessionId=admin:Q2xhc3NpY1Nlc3Npb25JZA".to_vec())],
                None,
            ),
            (
                "star",
                vec![("authorization", b"Bearer session*AAAAAAAAAAAAAAAA".to_vec())],
                None,
            ),
            (
                "unicode",
                vec![(
                    "authorization",
                    "Bearer ключсессииключсессии".as_bytes().to_vec(),
                )],
                None,
            ),
            (
                "tab in token",
                vec![("authorization", b"Bearer AAAAAAAA\tAAAAAAAAAAAA".to_vec())],
                None,
            ),
        ];
        for (name, pairs, want) in cases {
            let refs: Vec<(&str, &[u8])> = pairs.iter().map(|(n, v)| (*n, v.as_slice())).collect();
            let got = found(&headers(&refs));
            let want = want.map(|(id, src)| (id.to_owned(), src));
            assert_eq!(got, want, "case {name:?}");
        }
    }
}
