//! The login throttle through its public API: attempt limits per account and per address
//! (IPv6 per /64), per known device and per session (driven by a manual clock, so the refill
//! is exact), the device cookies (a table of hostile values), the bound on concurrent
//! verifications (forced with a channel, not timing), and the client address.
#![cfg(feature = "throttle")]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::throttle::{DeviceCookies, LoginThrottle, Throttled};

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

#[test]
fn attempts_per_account_count_every_spelling_of_the_address_and_refill() {
    let clock = ManualClock::starting_now();
    let throttle = LoginThrottle::new()
        .per_address(0)
        .per_account(10)
        .clock(clock.clone());
    let client: IpAddr = "203.0.113.7".parse().unwrap();
    let spellings = [
        "kate@example.com",
        "KATE@Example.com",
        "  kate@example.com ",
    ];
    for n in 0..10 {
        throttle.admit(client, spellings[n % 3]).unwrap();
    }
    let refused = throttle.admit(client, "Kate@example.com").unwrap_err();
    // 10 per minute: one more every 6 s.
    assert_eq!(
        refused,
        Throttled::TooManyAttempts {
            retry_after: Duration::from_secs(6)
        }
    );
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.retry_after_secs(), 6);
    // Another account, and an address no user can have (counted against nobody), pass.
    throttle.admit(client, "sam@example.com").unwrap();
    throttle.admit(client, "kate\0@example.com").unwrap();
    clock.advance(Duration::from_millis(5_999));
    assert!(throttle.admit(client, "kate@example.com").is_err());
    clock.advance(Duration::from_millis(1));
    throttle.admit(client, "kate@example.com").unwrap();
    assert!(throttle.admit(client, "kate@example.com").is_err());
}

#[test]
fn attempts_per_address_whatever_the_accounts_and_v4_mapped_v6_is_v4() {
    let clock = ManualClock::starting_now();
    let throttle = LoginThrottle::new()
        .per_account(0)
        .per_address(30)
        .clock(clock.clone());
    let v4: IpAddr = "198.51.100.9".parse().unwrap();
    let mapped: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
    for n in 0..30 {
        let client = if n % 2 == 0 { v4 } else { mapped };
        throttle
            .admit(client, &format!("user{n}@example.com"))
            .unwrap();
    }
    assert!(matches!(
        throttle.admit(mapped, "someone-else@example.com"),
        Err(Throttled::TooManyAttempts { .. })
    ));
    throttle
        .admit("198.51.100.10".parse().unwrap(), "user0@example.com")
        .unwrap();
    // LOGIN_LIMIT_* = 0 turns a limit off.
    let open = LoginThrottle::from_lookup(|var| {
        matches!(var, "LOGIN_LIMIT_PER_ACCOUNT" | "LOGIN_LIMIT_PER_ADDRESS").then(|| "0".into())
    })
    .unwrap();
    for _ in 0..1000 {
        open.admit(v4, "kate@example.com").unwrap();
    }
    let err =
        LoginThrottle::from_lookup(|var| (var == "LOGIN_LIMIT_PER_ACCOUNT").then(|| "ten".into()))
            .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("LOGIN_LIMIT_PER_ACCOUNT=\"ten\""),
        "{err}"
    );
}

#[test]
fn the_client_address_is_the_sockets_unless_a_proxy_header_is_trusted() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-forwarded-for",
        HeaderValue::from_static("1.1.1.1, 192.0.2.44"),
    );
    let socket = peer("10.0.0.2");
    assert_eq!(
        LoginThrottle::new().client_address(socket, &headers),
        socket.ip(),
        "a header nobody trusted chose the address"
    );
    let behind_proxy =
        LoginThrottle::new().trust_proxy_header(HeaderName::from_static("x-forwarded-for"));
    assert_eq!(
        behind_proxy.client_address(socket, &headers),
        "192.0.2.44".parse::<IpAddr>().unwrap(),
        "the entry the proxy appended is the last one"
    );
    for bad in ["", "not-an-ip", "1.1.1.1, 300.1.1.1"] {
        headers.insert("x-forwarded-for", HeaderValue::from_str(bad).unwrap());
        assert_eq!(
            behind_proxy.client_address(socket, &headers),
            socket.ip(),
            "{bad:?}"
        );
    }
    headers.remove("x-forwarded-for");
    assert_eq!(behind_proxy.client_address(socket, &headers), socket.ip());
}

#[tokio::test]
async fn verifications_beyond_the_slots_wait_then_are_busy() {
    // The outcome does not depend on timing: the slot cannot free before the test says so,
    // so the second verification is busy whatever the machine's speed; the wait only sets
    // how long that takes.
    let throttle = LoginThrottle::new()
        .max_concurrent_verifications(1)
        .max_wait(Duration::from_millis(100));
    // The one slot is held until the test lets the work finish.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let first = {
        let throttle = throttle.clone();
        tokio::spawn(async move {
            throttle
                .verify(move || {
                    started_tx.send(()).unwrap();
                    held.recv().unwrap();
                    "verified"
                })
                .await
        })
    };
    started.await.unwrap();
    // The second waits for the slot, in vain.
    let busy = throttle.verify(|| "never runs").await.unwrap_err();
    assert_eq!(
        busy,
        Throttled::Busy {
            retry_after: Duration::from_secs(1)
        }
    );
    assert_eq!(busy.status(), 503);
    let response = busy.response::<String>();
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.body(), r#"{"error":"busy"}"#);
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap(), "verified");
    // Free again.
    assert_eq!(throttle.verify(|| 7).await.unwrap(), 7);
}

#[test]
fn a_refusal_answers_429_with_retry_after_and_a_json_body() {
    let refused = Throttled::TooManyAttempts {
        retry_after: Duration::from_millis(5_001),
    };
    let response = refused.response::<String>();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "6");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.body(), r#"{"error":"too_many_attempts"}"#);
}

#[test]
fn ipv6_clients_are_counted_by_their_64_prefix() {
    let throttle = LoginThrottle::new()
        .per_account(0)
        .per_address(3)
        .clock(ManualClock::starting_now());
    // Three addresses of one /64: one budget.
    for ip in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::ffff",
        "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
    ] {
        throttle
            .admit(ip.parse().unwrap(), "someone@example.com")
            .unwrap();
    }
    assert!(throttle
        .admit("2001:db8:1:2:ffff::9".parse().unwrap(), "x@example.com")
        .is_err());
    // The next /64 has its own.
    throttle
        .admit("2001:db8:1:3::1".parse().unwrap(), "x@example.com")
        .unwrap();
    // IPv4 addresses stay one by one (a /64 rule must not merge 198.51.100.0/…).
    let v4 = LoginThrottle::new()
        .per_account(0)
        .per_address(1)
        .clock(ManualClock::starting_now());
    v4.admit("198.51.100.1".parse().unwrap(), "x@example.com")
        .unwrap();
    v4.admit("198.51.100.2".parse().unwrap(), "x@example.com")
        .unwrap();
}

/// A request whose Cookie header is `cookie`.
fn with_cookie(cookie: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_str(cookie).unwrap());
    headers
}

/// The `name=value` pair of a Set-Cookie.
fn pair(set_cookie: &HeaderValue) -> String {
    set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_known_device_has_its_own_budget_untouched_by_guesses_from_elsewhere() {
    let clock = ManualClock::starting_now();
    let devices = DeviceCookies::new(&[42; 32]).unwrap().clock(clock.clone());
    let throttle = LoginThrottle::new()
        .per_account(10)
        .per_device(5)
        .clock(clock.clone());
    let owner = with_cookie(&pair(
        &devices
            .issue(&HeaderMap::new(), "kate@example.com")
            .unwrap(),
    ));
    let device = devices.recognize(&owner, "kate@example.com").unwrap();
    // The account's budget for unknown devices is spent, from many addresses.
    for n in 0..10u8 {
        throttle
            .admit(IpAddr::from([203, 0, 113, n]), "kate@example.com")
            .unwrap();
    }
    assert!(throttle
        .admit("192.0.2.1".parse().unwrap(), "kate@example.com")
        .is_err());
    // The owner's device: its own five.
    for _ in 0..5 {
        throttle.admit_device(&device).unwrap();
    }
    let refused = throttle.admit_device(&device).unwrap_err();
    assert_eq!(
        refused,
        Throttled::TooManyAttempts {
            retry_after: Duration::from_secs(12)
        }
    );
    // Another device of the same account is another budget.
    let other = with_cookie(&pair(
        &devices
            .issue(&HeaderMap::new(), "kate@example.com")
            .unwrap(),
    ));
    throttle
        .admit_device(&devices.recognize(&other, "kate@example.com").unwrap())
        .unwrap();
    clock.advance(Duration::from_secs(12));
    throttle.admit_device(&device).unwrap();
}

#[test]
fn reauthentication_is_counted_per_session() {
    let throttle = LoginThrottle::new()
        .per_session(3)
        .clock(ManualClock::starting_now());
    let stolen = tower_app_sessions::SessionId::generate().unwrap().handle();
    let owners = tower_app_sessions::SessionId::generate().unwrap().handle();
    for _ in 0..3 {
        throttle.admit_reauthentication(&stolen).unwrap();
    }
    assert!(throttle.admit_reauthentication(&stolen).is_err());
    throttle.admit_reauthentication(&owners).unwrap();
    // Neither touches the account's or the address's budgets.
    let only_one = LoginThrottle::new()
        .per_account(1)
        .per_address(1)
        .per_session(100)
        .clock(ManualClock::starting_now());
    for _ in 0..50 {
        only_one.admit_reauthentication(&stolen).unwrap();
    }
    only_one
        .admit("203.0.113.1".parse().unwrap(), "kate@example.com")
        .unwrap();
}

#[test]
fn the_device_and_session_limits_come_from_the_environment() {
    let vars = |device: &'static str, session: &'static str| {
        move |var: &str| match var {
            "LOGIN_LIMIT_PER_DEVICE" => Some(device.to_owned()),
            "LOGIN_LIMIT_PER_SESSION" => Some(session.to_owned()),
            _ => None,
        }
    };
    let throttle = LoginThrottle::from_lookup(vars("1", "0"))
        .unwrap()
        .clock(ManualClock::starting_now());
    let devices = DeviceCookies::new(&[1; 32]).unwrap();
    let known = with_cookie(&pair(
        &devices.issue(&HeaderMap::new(), "a@example.com").unwrap(),
    ));
    let device = devices.recognize(&known, "a@example.com").unwrap();
    throttle.admit_device(&device).unwrap();
    assert!(throttle.admit_device(&device).is_err());
    let session = tower_app_sessions::SessionId::generate().unwrap().handle();
    for _ in 0..1000 {
        throttle.admit_reauthentication(&session).unwrap();
    }
    for (device, session) in [("x", "1"), ("1", "-1")] {
        let err = LoginThrottle::from_lookup(vars(device, session)).unwrap_err();
        assert!(err.to_string().starts_with("LOGIN_LIMIT_PER_"), "{err}");
    }
}

#[test]
fn device_cookies_hostile_and_stale_values_are_unknown_devices() {
    let clock = ManualClock::starting_now();
    let devices = DeviceCookies::new(&[9; 32]).unwrap().clock(clock.clone());
    let issued = pair(
        &devices
            .issue(&HeaderMap::new(), "kate@example.com")
            .unwrap(),
    );
    let (name, value) = issued.split_once('=').unwrap();
    assert_eq!(name, "__Host-device");
    assert_eq!(value.len(), 43);
    let other_key = DeviceCookies::new(&[8; 32]).unwrap().clock(clock.clone());
    let foreign = pair(
        &other_key
            .issue(&HeaderMap::new(), "kate@example.com")
            .unwrap(),
    );
    let mut flipped = value.as_bytes().to_vec();
    flipped[30] = if flipped[30] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let rows: Vec<(&str, String)> = vec![
        ("no cookie", String::new()),
        ("another cookie name", format!("device={value}")),
        ("empty", format!("{name}=")),
        ("not base64", format!("{name}=!!!!")),
        ("one character short", format!("{name}={}", &value[1..])),
        ("one character long", format!("{name}={value}A")),
        ("a flipped tag byte", format!("{name}={flipped}")),
        ("signed with another key", foreign.clone()),
        (
            "twice, with different values",
            format!("{issued}; {name}=A{}", &value[1..]),
        ),
        (
            "longer than four entries",
            format!("{name}={}", [value; 5].join(".")),
        ),
        ("huge", format!("{name}={}", "A".repeat(10_000))),
        ("quoted garbage", format!("{name}=\"{}\"", "-".repeat(43))),
    ];
    for (what, cookie) in &rows {
        let headers = if cookie.is_empty() {
            HeaderMap::new()
        } else {
            with_cookie(cookie)
        };
        assert!(
            devices.recognize(&headers, "kate@example.com").is_none(),
            "{what}: recognized"
        );
    }
    // The valid one: for its account only, in any spelling of it; among other cookies, or
    // twice with the same value, or quoted.
    for cookie in [
        issued.clone(),
        format!("a=b; {issued}; c=d"),
        format!("{issued}; {issued}"),
        format!("{name}=\"{value}\""),
    ] {
        let headers = with_cookie(&cookie);
        assert!(
            devices.recognize(&headers, " KATE@example.com").is_some(),
            "{cookie}"
        );
        assert!(devices.recognize(&headers, "sam@example.com").is_none());
        assert!(devices.recognize(&headers, "kate\0@example.com").is_none());
    }
    // It expires with the lifetime, whatever the browser keeps.
    let headers = with_cookie(&issued);
    clock.advance(tower_app_sessions::throttle::DEFAULT_LIFETIME - Duration::from_secs(1));
    assert!(devices.recognize(&headers, "kate@example.com").is_some());
    clock.advance(Duration::from_secs(1));
    assert!(devices.recognize(&headers, "kate@example.com").is_none());
    // An entry from the future (another instance's clock) is accepted within 5 minutes only.
    let ahead = ManualClock::starting_now();
    let early = devices.clone().clock(ahead.clone());
    ahead.advance(Duration::from_secs(600));
    let from_the_future = with_cookie(&pair(
        &early.issue(&HeaderMap::new(), "kate@example.com").unwrap(),
    ));
    let now = devices.clone().clock(ManualClock::starting_now());
    assert!(now
        .recognize(&from_the_future, "kate@example.com")
        .is_none());
}

#[test]
fn a_device_cookie_keeps_up_to_four_accounts_newest_first() {
    let devices = DeviceCookies::new(&[3; 32])
        .unwrap()
        .clock(ManualClock::starting_now());
    let mut cookie = String::new();
    let accounts = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "e@example.com",
    ];
    for account in accounts {
        let headers = if cookie.is_empty() {
            HeaderMap::new()
        } else {
            with_cookie(&cookie)
        };
        let set = devices.issue(&headers, account).unwrap();
        let text = set.to_str().unwrap();
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=15552000",
        ] {
            assert!(
                text.split("; ").any(|a| a == attr),
                "{attr} missing: {text}"
            );
        }
        cookie = pair(&set);
    }
    let headers = with_cookie(&cookie);
    let known: Vec<bool> = accounts
        .iter()
        .map(|a| devices.recognize(&headers, a).is_some())
        .collect();
    assert_eq!(
        known,
        [false, true, true, true, true],
        "the oldest is dropped"
    );
    // Signing in again to an account replaces its entry (first), keeps the others.
    let again = pair(&devices.issue(&headers, "c@example.com").unwrap());
    let entries: Vec<&str> = again.split_once('=').unwrap().1.split('.').collect();
    assert_eq!(entries.len(), 4);
    let before: Vec<&str> = cookie.split_once('=').unwrap().1.split('.').collect();
    assert!(!before.contains(&entries[0]), "a fresh entry");
    let again = with_cookie(&again);
    for account in &accounts[1..] {
        assert!(devices.recognize(&again, account).is_some(), "{account}");
    }
    // An email without a canonical form gets nothing.
    assert!(devices.issue(&HeaderMap::new(), "not an email").is_none());
}

#[test]
fn the_device_key_comes_from_the_environment() {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let from_env =
        DeviceCookies::from_lookup(|var| (var == "SESSION_DEVICE_KEY").then(|| key.clone()))
            .unwrap();
    let same = DeviceCookies::new(&[5; 32]).unwrap();
    let cookie = with_cookie(&pair(
        &same.issue(&HeaderMap::new(), "kate@example.com").unwrap(),
    ));
    assert!(
        from_env.recognize(&cookie, "kate@example.com").is_some(),
        "instances sharing SESSION_DEVICE_KEY recognize each other's devices"
    );
    // Unset: a random key of this process; another process does not know its devices.
    let random = DeviceCookies::from_lookup(|_| None).unwrap();
    assert!(random.recognize(&cookie, "kate@example.com").is_none());
    let short = base64::engine::general_purpose::STANDARD.encode([5u8; 31]);
    for bad in ["not base64!", short.as_str()] {
        let err =
            DeviceCookies::from_lookup(|var| (var == "SESSION_DEVICE_KEY").then(|| bad.to_owned()))
                .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("SESSION_DEVICE_KEY is not valid"),
            "{text}"
        );
        assert!(!text.contains(bad), "the secret is repeated: {text}");
    }
    assert_eq!(DeviceCookies::new(&[0; 16]).unwrap_err().len, 16);
}
