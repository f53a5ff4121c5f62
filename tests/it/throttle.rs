//! The login throttle through its public API: attempt limits per account and per address
//! (driven by a manual clock, so the refill is exact), the bound on concurrent
//! verifications (forced with a channel, not timing), and the client address.
#![cfg(feature = "throttle")]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::throttle::{LoginThrottle, Throttled};

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
