//! The cross-origin check's reading of request headers (`CrossOriginPolicy::allows`:
//! `Sec-Fetch-Site`, `Origin`, `Host`, the URI's scheme and authority).
//!
//! Input: line 1 is `METHOD URI`; line 2 the policy: `1` or `0` (same-site allowed), then
//! trusted origins separated by spaces; every further line is a header `name:value`.
//!
//! Properties:
//! - the verdict does not depend on the order of headers of different names (only the first
//!   `Origin`, `Sec-Fetch-Site` and `Host` count, as with any `HeaderMap::get`), nor on any
//!   other header added or removed;
//! - safe methods and a disabled policy always pass; without `Sec-Fetch-Site` and `Origin`
//!   a request passes; `Sec-Fetch-Site: same-origin` or `none` passes;
//! - an `Origin` the policy trusts passes, whatever `Sec-Fetch-Site` says; trusting more
//!   origins never refuses what was allowed;
//! - the `Origin`'s case does not matter (scheme and host are case-insensitive).
#![no_main]

use http::header::{HeaderName, HeaderValue, HOST, ORIGIN};
use http::{HeaderMap, Method, Uri};
use libfuzzer_sys::fuzz_target;
use tower_app_sessions::cross_origin::CrossOriginPolicy;

fn map<'a>(headers: impl IntoIterator<Item = &'a (HeaderName, HeaderValue)>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    map
}

/// The headers in another order that keeps each name's values in their order: the names'
/// first appearances reversed.
fn regrouped(headers: &[(HeaderName, HeaderValue)]) -> Vec<(HeaderName, HeaderValue)> {
    let mut names: Vec<&HeaderName> = Vec::new();
    for (name, _) in headers {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .iter()
        .rev()
        .flat_map(|name| headers.iter().filter(move |(n, _)| n == *name).cloned())
        .collect()
}

fuzz_target!(|bytes: &[u8]| {
    let mut lines = bytes.split(|b| *b == b'\n');
    let Some(first) = lines.next() else { return };
    let first = String::from_utf8_lossy(first);
    let (method, uri) = first.split_once(' ').unwrap_or((&first, "/"));
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), uri.parse::<Uri>()) else {
        return;
    };
    let policy_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut words = policy_line.split(' ');
    let mut policy = CrossOriginPolicy::default().allow_same_site(words.next() == Some("1"));
    let mut trusted = Vec::new();
    for origin in words.filter(|w| !w.is_empty()) {
        if let Ok(more) = policy.clone().trust_origin(origin) {
            policy = more;
            trusted.push(origin.to_owned());
        }
    }
    let mut headers = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) {
            headers.push((name, value));
        }
    }

    let all = map(&headers);
    let verdict = policy.allows(&method, &uri, &all);

    assert_eq!(
        policy.allows(&method, &uri, &map(&regrouped(&headers))),
        verdict,
        "order"
    );
    let relevant = |n: &HeaderName| *n == ORIGIN || *n == HOST || n.as_str() == "sec-fetch-site";
    let only: Vec<_> = headers
        .iter()
        .filter(|(n, _)| relevant(n))
        .cloned()
        .collect();
    assert_eq!(
        policy.allows(&method, &uri, &map(&only)),
        verdict,
        "other headers removed"
    );
    let mut more = headers.clone();
    more.push((
        HeaderName::from_static("x-forwarded-host"),
        HeaderValue::from_static("evil.example"),
    ));
    more.push((
        HeaderName::from_static("referer"),
        HeaderValue::from_static("https://evil.example/"),
    ));
    assert_eq!(
        policy.allows(&method, &uri, &map(&more)),
        verdict,
        "other headers added"
    );

    assert!(CrossOriginPolicy::disabled().allows(&method, &uri, &all));
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        assert!(verdict, "a safe method");
    }
    let site = all.get("sec-fetch-site").map(HeaderValue::as_bytes);
    let origin = all.get(ORIGIN);
    if site.is_none() && origin.is_none() {
        assert!(verdict, "no browser headers");
    }
    if matches!(site, Some(b"same-origin" | b"none")) {
        assert!(verdict, "same-origin");
    }
    if let Some(origin) = origin.and_then(|o| o.to_str().ok()) {
        if trusted.iter().any(|t| t.eq_ignore_ascii_case(origin)) {
            assert!(verdict, "a trusted origin");
        }
        // Trusting one more origin (this one, if it is one) refuses nothing more.
        if let Ok(wider) = policy.clone().trust_origin(origin) {
            assert!(wider.allows(&method, &uri, &all), "the origin, trusted");
        }
        if let Ok(wider) = policy.clone().trust_origin("https://other.example") {
            assert!(
                !verdict || wider.allows(&method, &uri, &all),
                "more trust refused"
            );
        }
        // Case: the same origin upper-cased.
        let upper = origin.to_ascii_uppercase();
        let mut cased = all.clone();
        cased.insert(ORIGIN, HeaderValue::from_str(&upper).unwrap());
        // Only the first Origin counts; `insert` replaced them all with one.
        let mut first_only = all.clone();
        first_only.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
        assert_eq!(
            policy.allows(&method, &uri, &cased),
            policy.allows(&method, &uri, &first_only),
            "Origin case"
        );
        assert_eq!(
            policy.allows(&method, &uri, &first_only),
            verdict,
            "only the first Origin counts"
        );
    }
});
