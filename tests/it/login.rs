//! `login::PasswordLogin` through axum, as an application wires it: the order of its checks
//! (throttle before any lookup, the dummy hash for unknown emails, the role last),
//! registration's bounds, re-authentication per session, the device cookie it issues, its
//! answers as a table, and the victim-lockout scenario: twelve addresses guessing the
//! owner's password while the owner's known device signs in and ends the thief's session.
#![cfg(all(feature = "argon2", feature = "axum", feature = "memory"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, Request, StatusCode};
use tokio::sync::Barrier;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::login::{
    Argon2Params, Argon2Verifier, Credentials, LoginError, PasswordHashError, PasswordLogin,
    PasswordVerifier,
};
use tower_app_sessions::throttle::{DeviceCookies, LoginThrottle, Throttled};
use tower_app_sessions::{
    AppContext, CurrentUser, MemoryUsers, Role, Scope, Session, Sessions, User, UserRepository,
};

use crate::common::{send, Reply};

/// Every wait of the scenario fails the test after this, rather than hanging.
const WAIT: Duration = Duration::from_secs(30);

/// Argon2id, small enough for a test, counting its verifications (a dummy-hash check for an
/// unknown email counts like any other).
struct Counting {
    argon2: Option<Argon2Verifier>,
    verifications: AtomicUsize,
}

impl Counting {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            argon2: Some(Argon2Verifier::with_params(
                Argon2Params::new(1024, 1, 1, None).unwrap(),
            )),
            verifications: AtomicUsize::new(0),
        })
    }

    fn verifications(&self) -> usize {
        self.verifications.load(Ordering::SeqCst)
    }

    fn argon2(&self) -> &Argon2Verifier {
        self.argon2.as_ref().unwrap()
    }
}

impl PasswordVerifier for Counting {
    fn hash(&self, password: &str) -> Result<String, PasswordHashError> {
        self.argon2().hash(password)
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        self.argon2().verify(password, hash)
    }
}

struct Fixture {
    sessions: Sessions,
    users: MemoryUsers,
    passwords: Arc<Counting>,
    login: PasswordLogin,
    clock: ManualClock,
}

/// Memory stores, a manual clock for the sessions, the throttle and the device cookies, and
/// `kate@example.com` (role user, password `correct horse`).
async fn fixture(throttle: LoginThrottle) -> Fixture {
    let clock = ManualClock::starting_now();
    let users = MemoryUsers::new();
    let sessions =
        Sessions::new(tower_app_sessions::MemoryStore::new(), users.clone()).clock(clock.clone());
    let passwords = Counting::new();
    let hash = passwords.hash("correct horse").unwrap();
    users
        .create(User::new("kate@example.com", Role::User).hashed_password(hash))
        .await
        .unwrap();
    let login = PasswordLogin::new(
        Arc::clone(sessions.user_repository()),
        Arc::clone(&passwords),
    )
    .unwrap()
    .throttle(throttle.clock(clock.clone()))
    .device_cookies(DeviceCookies::new(&[11; 32]).unwrap().clock(clock.clone()));
    Fixture {
        sessions,
        users,
        passwords,
        login,
        clock,
    }
}

/// `/login`, `/register`, `/me` and `/revoke-others` (`{"password"}`) on `login`, as the
/// crate's answers.
fn app(fixture: &Fixture, login: PasswordLogin) -> Router {
    let (for_login, for_register, for_reauth) = (login.clone(), login.clone(), login);
    Router::new()
        .route(
            "/login",
            post(
                move |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      session: Session,
                      headers: HeaderMap,
                      Json(credentials): Json<Credentials>| async move {
                    for_login
                        .login(&session, peer, &headers, credentials)
                        .await
                        .map(|signed_in| signed_in.id.as_str().to_owned())
                },
            ),
        )
        .route(
            "/register",
            post(
                move |ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      headers: HeaderMap,
                      Json(credentials): Json<Credentials>| async move {
                    for_register
                        .register(peer, &headers, credentials, Role::User)
                        .await
                        .map(|user| user.email.clone())
                },
            ),
        )
        .route(
            "/me",
            get(|user: CurrentUser<User>| async move { user.email.clone() }),
        )
        .route(
            "/revoke-others",
            post(
                move |_: CurrentUser<User>,
                      session: Session,
                      Json(body): Json<serde_json::Value>| async move {
                    let password = body["password"].as_str().unwrap_or_default().to_owned();
                    for_reauth.reauthenticate(&session, password).await?;
                    let done = session
                        .revoke_others(Scope::AllContexts)
                        .await?
                        .ok_or(LoginError::NotSignedIn)?;
                    Ok::<_, LoginError>(done.ended.to_string())
                },
            ),
        )
        .layer(fixture.sessions.layer(AppContext::Web))
}

/// A JSON POST from `peer`, with `cookie` if any.
fn post_from(path: &str, peer: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post(path)
        .header("content-type", "application/json")
        .header("sec-fetch-site", "same-origin");
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let mut req = req.body(Body::from(body.to_owned())).unwrap();
    let peer: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn credentials(email: &str, password: &str) -> String {
    serde_json::json!({ "email": email, "password": password }).to_string()
}

/// The `name=value` pairs a reply sets: (session cookie, device cookie).
fn cookies(reply: &Reply) -> (String, String) {
    let pair = |prefix: &str| {
        reply
            .set_cookies
            .iter()
            .find(|c| c.starts_with(prefix))
            .map(|c| c.split(';').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {prefix} cookie in {:?}", reply.set_cookies))
    };
    (pair("sessionId="), pair("__Host-device="))
}

#[tokio::test]
async fn every_wrong_answer_is_the_same_and_costs_one_verification() {
    let fixture = fixture(LoginThrottle::new()).await;
    // A user without a password (created by another flow): never signs in with one.
    fixture
        .users
        .create(User::new("nopass@example.com", Role::User))
        .await
        .unwrap();
    let app = app(&fixture, fixture.login.clone());
    let long = "x".repeat(1025);
    // (what, email, password, verifications it costs)
    let rows = [
        ("wrong password", "kate@example.com", "wrong", 1),
        (
            "unknown email (the dummy hash)",
            "nobody@example.com",
            "wrong",
            1,
        ),
        ("user without a password", "nopass@example.com", "", 1),
        (
            "user without a password, any password",
            "nopass@example.com",
            "x",
            1,
        ),
        (
            "email no user can have",
            "kate\u{0}@example.com",
            "correct horse",
            0,
        ),
        (
            "Kelvin-sign look-alike",
            "\u{212A}ate@example.com",
            "correct horse",
            0,
        ),
        (
            "password over the bound",
            "kate@example.com",
            long.as_str(),
            0,
        ),
        ("empty email", "", "correct horse", 0),
    ];
    for (what, email, password, cost) in rows {
        let before = fixture.passwords.verifications();
        let reply = send(
            &app,
            post_from("/login", "203.0.113.5", None, &credentials(email, password)),
        )
        .await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid_credentials"}"#
            ),
            "{what}"
        );
        assert!(
            reply.set_cookies.is_empty(),
            "{what}: {:?}",
            reply.set_cookies
        );
        assert_eq!(fixture.passwords.verifications() - before, cost, "{what}");
    }
    // The right one, in another spelling of the email.
    let reply = send(
        &app,
        post_from(
            "/login",
            "203.0.113.5",
            None,
            &credentials(" KATE@example.com", "correct horse"),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let (session, device) = cookies(&reply);
    assert!(device.len() > 20);
    let me = Request::get("/me")
        .header("cookie", session)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, me).await.body, "kate@example.com");
}

#[tokio::test]
async fn the_throttle_answers_before_any_lookup_or_verification() {
    let fixture = fixture(LoginThrottle::new().per_account(3).per_address(0)).await;
    let app = app(&fixture, fixture.login.clone());
    for _ in 0..3 {
        let reply = send(
            &app,
            post_from(
                "/login",
                "203.0.113.5",
                None,
                &credentials("nobody@example.com", "x"),
            ),
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    let before = fixture.passwords.verifications();
    for (email, password) in [("nobody@example.com", "x"), ("NOBODY@example.com", "y")] {
        let reply = send(
            &app,
            post_from(
                "/login",
                "198.51.100.1",
                None,
                &credentials(email, password),
            ),
        )
        .await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.body, r#"{"error":"too_many_attempts"}"#);
    }
    assert_eq!(
        fixture.passwords.verifications(),
        before,
        "verified past the limit"
    );
    // Six seconds later there is room for exactly one more... (3 per minute: one per 20 s)
    fixture.clock.advance(Duration::from_secs(20));
    let reply = send(
        &app,
        post_from(
            "/login",
            "198.51.100.1",
            None,
            &credentials("nobody@example.com", "x"),
        ),
    )
    .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn a_role_the_context_does_not_admit_is_told_only_with_the_right_password() {
    let fixture = fixture(LoginThrottle::new()).await;
    let admin = fixture
        .login
        .clone()
        .admit_roles([Role::Admin, Role::Support]);
    let app = app(&fixture, admin);
    let wrong = send(
        &app,
        post_from(
            "/login",
            "203.0.113.5",
            None,
            &credentials("kate@example.com", "wrong"),
        ),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let right = send(
        &app,
        post_from(
            "/login",
            "203.0.113.5",
            None,
            &credentials("kate@example.com", "correct horse"),
        ),
    )
    .await;
    assert_eq!(
        (right.status, right.body.as_str()),
        (StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#)
    );
    assert!(right.set_cookies.is_empty(), "no session, no device cookie");
}

#[tokio::test]
async fn registration_checks_bounds_before_hashing_and_stores_an_argon2_hash() {
    let fixture = fixture(LoginThrottle::new()).await;
    let app = app(&fixture, fixture.login.clone().password_bounds(10, 64));
    let over = format!("{}x", "é".repeat(32));
    let rows = [
        (
            "no canonical form",
            "kate\u{0}x@example.com",
            "long enough pw",
            422,
            r#"{"error":"invalid_email"}"#,
        ),
        (
            "not an email",
            "kate",
            "long enough pw",
            422,
            r#"{"error":"invalid_email"}"#,
        ),
        (
            "9 characters",
            "new@example.com",
            "ñine char",
            422,
            r#"{"error":"password_too_short"}"#,
        ),
        (
            "65 bytes",
            "new@example.com",
            over.as_str(),
            422,
            r#"{"error":"password_too_long"}"#,
        ),
        (
            "taken, in another case",
            "KATE@example.com",
            "long enough pw",
            409,
            r#"{"error":"email_taken"}"#,
        ),
    ];
    for (what, email, password, status, body) in rows {
        let reply = send(
            &app,
            post_from(
                "/register",
                "203.0.113.5",
                None,
                &credentials(email, password),
            ),
        )
        .await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (status, body),
            "{what}"
        );
    }
    let reply = send(
        &app,
        post_from(
            "/register",
            "203.0.113.5",
            None,
            &credentials(" New@Example.com", "ten chars!"),
        ),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.body.as_str()),
        (200, "new@example.com")
    );
    let stored = fixture
        .users
        .find_by_email("new@example.com")
        .await
        .unwrap()
        .unwrap();
    let hash = stored.hashed_password.as_deref().unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
    assert!(!hash.contains("ten chars!"));
    assert!(Argon2Verifier::default().verify("ten chars!", hash));
}

#[tokio::test]
async fn reauthentication_is_limited_per_session_not_per_account() {
    let fixture = fixture(LoginThrottle::new().per_session(3).per_account(2)).await;
    let app = app(&fixture, fixture.login.clone());
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let reply = send(
            &app,
            post_from(
                "/login",
                "203.0.113.5",
                None,
                &credentials("kate@example.com", "correct horse"),
            ),
        )
        .await;
        assert_eq!(reply.status, 200);
        sessions.push(cookies(&reply).0);
    }
    let (stolen, owners) = (&sessions[0], &sessions[1]);
    for _ in 0..3 {
        let reply = send(
            &app,
            post_from(
                "/revoke-others",
                "192.0.2.1",
                Some(stolen),
                r#"{"password":"guess"}"#,
            ),
        )
        .await;
        assert_eq!(reply.status, 401);
    }
    let reply = send(
        &app,
        post_from(
            "/revoke-others",
            "192.0.2.1",
            Some(stolen),
            r#"{"password":"correct horse"}"#,
        ),
    )
    .await;
    assert_eq!(reply.status, 429, "the stolen session's budget is spent");
    // The account's login budget (2, spent by the two logins) does not matter here, nor
    // the other session's guesses.
    let reply = send(
        &app,
        post_from(
            "/revoke-others",
            "198.51.100.7",
            Some(owners),
            r#"{"password":"correct horse"}"#,
        ),
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "1"));
    let me = Request::get("/me")
        .header("cookie", stolen.as_str())
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, me).await.status, 401);
    // Without a session there is nothing to prove.
    let reply = send(
        &app,
        post_from(
            "/revoke-others",
            "198.51.100.7",
            None,
            r#"{"password":"correct horse"}"#,
        ),
    )
    .await;
    assert_eq!(reply.status, 401);
}

#[test]
fn every_login_error_answers_with_its_status_and_a_body_that_repeats_nothing() {
    let rows: Vec<(LoginError, u16, &str)> = vec![
        (
            LoginError::WrongCredentials,
            401,
            r#"{"error":"invalid_credentials"}"#,
        ),
        (LoginError::NotSignedIn, 401, r#"{"error":"unauthorized"}"#),
        (LoginError::NotAdmitted, 403, r#"{"error":"forbidden"}"#),
        (
            LoginError::Throttled(Throttled::TooManyAttempts {
                retry_after: Duration::from_secs(6),
            }),
            429,
            r#"{"error":"too_many_attempts"}"#,
        ),
        (
            LoginError::Throttled(Throttled::Busy {
                retry_after: Duration::from_secs(1),
            }),
            503,
            r#"{"error":"busy"}"#,
        ),
        (
            LoginError::InvalidEmail(
                tower_app_sessions::users::canonical_email("secret\u{0}@x").unwrap_err(),
            ),
            422,
            r#"{"error":"invalid_email"}"#,
        ),
        (
            LoginError::PasswordTooShort { min: 8 },
            422,
            r#"{"error":"password_too_short"}"#,
        ),
        (
            LoginError::PasswordTooLong { max: 1024 },
            422,
            r#"{"error":"password_too_long"}"#,
        ),
        (LoginError::EmailTaken, 409, r#"{"error":"email_taken"}"#),
        (
            LoginError::Session(tower_app_sessions::SessionError::LimitReached),
            409,
            r#"{"error":"session_limit"}"#,
        ),
        (
            LoginError::Session(tower_app_sessions::SessionError::Ended),
            401,
            r#"{"error":"unauthorized"}"#,
        ),
        (
            LoginError::Unavailable(tower_app_sessions::StoreError::Timeout { backend: "secret" }),
            503,
            r#"{"error":"session service unavailable"}"#,
        ),
        (
            LoginError::Hash(PasswordHashError("secret".into())),
            503,
            r#"{"error":"session service unavailable"}"#,
        ),
    ];
    for (error, status, body) in rows {
        let what = format!("{error:?}");
        assert_eq!(error.status().as_u16(), status, "{what}");
        let response = error.response::<String>();
        assert_eq!(response.status().as_u16(), status, "{what}");
        assert_eq!(response.body(), body, "{what}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{what}"
        );
        if status == 429 || status == 503 {
            assert!(response.headers().contains_key("retry-after"), "{what}");
        }
    }
    // Credentials' Debug leaves the password out.
    let debug = format!("{:?}", Credentials::new("kate@example.com", "hunter2"));
    assert!(
        debug.contains("kate@example.com") && !debug.contains("hunter2"),
        "{debug}"
    );
}

/// The victim-lockout scenario. Twelve addresses guess the owner's password continuously,
/// in rounds that the test releases together with a barrier (each under the per-address
/// limit; together far over the account's). Meanwhile the owner, on the device that signed
/// in before, signs in, then ends every other session, the thief's included, with their
/// password: both succeed. Time is a manual clock: between rounds it moves by exactly one
/// refill of the account's budget, which the attackers take.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_addresses_guessing_cannot_stop_the_owners_device_from_ending_the_thiefs_session() {
    const ATTACKERS: u8 = 12;
    const ROUNDS: usize = 4;
    const PER_ROUND: usize = 3;
    let fixture = fixture(LoginThrottle::new()).await;
    let app = app(&fixture, fixture.login.clone());
    let owner_address = "198.51.100.7";
    let login_body = credentials("kate@example.com", "correct horse");

    // Before the attack: the owner signs in on their laptop (which gets the device cookie)
    // and on their phone, which a thief then steals with its session.
    let laptop = send(&app, post_from("/login", owner_address, None, &login_body)).await;
    assert_eq!(laptop.status, 200);
    let (_, device) = cookies(&laptop);
    let phone = send(&app, post_from("/login", "203.0.113.99", None, &login_body)).await;
    let (stolen, _) = cookies(&phone);

    let start = Arc::new(Barrier::new(usize::from(ATTACKERS) + 1));
    let done = Arc::new(Barrier::new(usize::from(ATTACKERS) + 1));
    let mut attackers = Vec::new();
    for n in 1..=ATTACKERS {
        let (app, start, done) = (app.clone(), Arc::clone(&start), Arc::clone(&done));
        attackers.push(tokio::spawn(async move {
            let address = format!("192.0.2.{n}");
            let mut answers = Vec::new();
            for round in 0..ROUNDS {
                tokio::time::timeout(WAIT, start.wait())
                    .await
                    .expect("start of a round");
                for guess in 0..PER_ROUND {
                    let body =
                        credentials("kate@example.com", &format!("guess {n}-{round}-{guess}"));
                    answers.push(
                        send(&app, post_from("/login", &address, None, &body))
                            .await
                            .status,
                    );
                }
                tokio::time::timeout(WAIT, done.wait())
                    .await
                    .expect("end of a round");
            }
            answers
        }));
    }
    let round = |action: Option<Request<Body>>| {
        let (app, start, done) = (app.clone(), Arc::clone(&start), Arc::clone(&done));
        async move {
            tokio::time::timeout(WAIT, start.wait())
                .await
                .expect("start of a round");
            // The owner's request runs while the attackers send theirs.
            let reply = match action {
                Some(request) => Some(send(&app, request).await),
                None => None,
            };
            tokio::time::timeout(WAIT, done.wait())
                .await
                .expect("end of a round");
            reply
        }
    };
    let refill = Duration::from_secs(6); // 10 per minute

    // Round 0: the guesses spend the account's budget (8 left after the owner's two logins).
    round(None).await;
    // The attack works: the right password from a device without the cookie is refused.
    let unknown_device = send(&app, post_from("/login", owner_address, None, &login_body)).await;
    assert_eq!(
        unknown_device.status, 429,
        "the attack is not under way: {}",
        unknown_device.body
    );
    fixture.clock.advance(refill);

    // Round 1: the owner's laptop signs in, during the guessing.
    let signed_in = round(Some(post_from(
        "/login",
        owner_address,
        Some(&device),
        &login_body,
    )))
    .await
    .unwrap();
    assert_eq!(
        signed_in.status, 200,
        "the owner's known device was locked out: {}",
        signed_in.body
    );
    let (session, renewed_device) = cookies(&signed_in);
    fixture.clock.advance(refill);

    // Round 2: the owner ends every other session with their password, during the guessing.
    let cookie = format!("{session}; {renewed_device}");
    let ended = round(Some(post_from(
        "/revoke-others",
        owner_address,
        Some(&cookie),
        r#"{"password":"correct horse"}"#,
    )))
    .await
    .unwrap();
    assert_eq!(
        ended.status, 200,
        "re-authentication was locked out: {}",
        ended.body
    );
    assert!(ended.body.parse::<u64>().unwrap() >= 2, "{}", ended.body);
    fixture.clock.advance(refill);

    // Round 3: the guessing goes on; the thief's session is over.
    let thief = round(Some(
        Request::get("/me")
            .header("cookie", stolen.as_str())
            .body(Body::empty())
            .unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(thief.status, 401, "the thief's session survived");

    let mut admitted = 0;
    for attacker in attackers {
        let answers = tokio::time::timeout(WAIT, attacker).await.unwrap().unwrap();
        assert_eq!(answers.len(), ROUNDS * PER_ROUND);
        assert!(
            answers.iter().all(|s| *s == 401 || *s == 429),
            "an attacker got {answers:?}"
        );
        admitted += answers.iter().filter(|s| **s == 401).count();
    }
    // Exactly the account's budget: 8 at first, then one refill before each later round.
    assert_eq!(admitted, 8 + 3, "guesses the account's budget admitted");
    eprintln!(
        "lockout scenario: {} guesses from {ATTACKERS} addresses ({admitted} verified, the rest 429); \
         the owner's device signed in (200) and ended {} other sessions (200); the thief's session then 401",
        usize::from(ATTACKERS) * ROUNDS * PER_ROUND,
        ended.body
    );
}
