//! The request path through the public API: axum `Router` + `oneshot`, memory backend.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::routing;
use axum::Router;
use common::{get, post, routes, send, CountingStore, Finish};
use http::StatusCode;
use http_body_util::BodyExt;
use routing::post as route_post;
use tower::ServiceExt;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::require::{FORBIDDEN_BODY, UNAUTHORIZED_BODY, UNAVAILABLE_BODY};
use tower_app_sessions::{
    AppContext, MemoryUsers, Role, Scope, Session, SessionId, SessionLayer, SessionMetadata,
    SessionRecord, SessionStore, Sessions, User,
};

struct World {
    store: CountingStore,
    users: MemoryUsers,
    app: Router,
    alice: Arc<User>,
    root: Arc<User>,
    /// The layers' clock: time moves only when a test advances it.
    clock: ManualClock,
}

fn world_with(configure: impl Fn(SessionLayer) -> SessionLayer) -> World {
    let store = CountingStore::default();
    let users = MemoryUsers::new();
    let alice = users
        .insert(User::new("alice@example.com", Role::User))
        .unwrap();
    let root = users
        .insert(User::new("root@example.com", Role::Admin))
        .unwrap();
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(store.clone(), users.clone()).clock(clock.clone());
    let app = Router::new()
        .nest(
            "/web",
            routes().layer(configure(
                sessions.layer(AppContext::Web).cookie_name("web_sid"),
            )),
        )
        .nest(
            "/admin",
            routes().layer(configure(
                sessions
                    .layer(AppContext::Admin)
                    .cookie_name("admin_sid")
                    .admit_roles([Role::Admin, Role::Operator, Role::Support]),
            )),
        );
    World {
        store,
        users,
        app,
        alice,
        root,
        clock,
    }
}

fn world() -> World {
    world_with(|layer| layer)
}

impl World {
    async fn login(&self, app: &str, user: &User) -> String {
        common::login_at(&self.app, &format!("/{app}"), user.id).await
    }

    async fn me_by_cookie(&self, app: &str, cookie: &str, id: &str) -> u16 {
        common::me_cookie_at(&self.app, &format!("/{app}"), cookie, id)
            .await
            .0
    }

    async fn me_by_bearer(&self, app: &str, id: &str) -> u16 {
        common::me_bearer_at(&self.app, &format!("/{app}"), id)
            .await
            .0
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The stored record of `id` in `web`, read at the layers' time.
    async fn web_record(&self, id: &str) -> Option<SessionRecord> {
        let sid = SessionId::parse(id).unwrap();
        self.store
            .inner
            .load(&AppContext::Web, &sid, self.now())
            .await
            .unwrap()
    }
}

/// `Max-Age` of a `Set-Cookie` value.
fn max_age(set_cookie: &str) -> u64 {
    set_cookie
        .split(';')
        .find_map(|part| part.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age in {set_cookie}"))
}

#[tokio::test]
async fn a_session_opens_only_its_own_context() {
    let w = world();
    let web = w.login("web", &w.root).await;
    let admin = w.login("admin", &w.root).await;

    assert_eq!(w.me_by_cookie("web", "web_sid", &web).await, 200);
    assert_eq!(w.me_by_bearer("web", &web).await, 200);
    assert_eq!(w.me_by_cookie("admin", "admin_sid", &admin).await, 200);
    assert_eq!(w.me_by_bearer("admin", &admin).await, 200);

    // web id presented to admin, by cookie (under the admin cookie name) and by bearer
    assert_eq!(w.me_by_cookie("admin", "admin_sid", &web).await, 401);
    assert_eq!(w.me_by_bearer("admin", &web).await, 401);
    // and the reverse
    assert_eq!(w.me_by_cookie("web", "web_sid", &admin).await, 401);
    assert_eq!(w.me_by_bearer("web", &admin).await, 401);

    let body = send(&w.app, get("/web/whoami").cookie("web_sid", &web).empty())
        .await
        .body;
    assert_eq!(body, "root@example.com in web");
}

#[tokio::test]
async fn unauthorized_answers_cannot_be_told_apart() {
    let w = world();
    let web = w.login("web", &w.alice).await;
    let gone = w.login("web", &w.alice).await;
    send(&w.app, post("/web/logout").bearer(&gone).empty()).await;

    let cases = [
        get("/admin/me").bearer(&web).empty(), // foreign context
        get("/web/me").bearer(&gone).empty(),  // logged out
        get("/web/me").bearer(&"A".repeat(43)).empty(), // unknown
        get("/web/me").bearer("bad:id").empty(), // malformed
        get("/web/me").empty(),                // none
        get(&format!("/web/me?session={web}")).empty(), // query parameters are ignored
    ];
    for req in cases {
        let reply = send(&w.app, req).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body, UNAUTHORIZED_BODY);
        assert!(reply.set_cookies.is_empty());
    }
}

#[tokio::test]
async fn login_rotates_the_id_and_kills_the_old_one() {
    let w = world();
    let first = w.login("web", &w.alice).await;
    let reply = send(
        &w.app,
        post(&format!("/web/login/{}", w.alice.id))
            .cookie("web_sid", &first)
            .empty(),
    )
    .await;
    let second = reply.body.clone();
    assert_ne!(first, second);
    assert_eq!(reply.issued().as_deref(), Some(second.as_str()));
    assert_eq!(w.me_by_cookie("web", "web_sid", &first).await, 401);
    assert_eq!(w.me_by_cookie("web", "web_sid", &second).await, 200);

    // rotation (privilege change) moves the session to a new id as well
    let reply = send(
        &w.app,
        post("/web/rotate").cookie("web_sid", &second).empty(),
    )
    .await;
    let third = reply.body.clone();
    assert_eq!(reply.issued().as_deref(), Some(third.as_str()));
    assert_ne!(third, second);
    assert_eq!(w.me_by_cookie("web", "web_sid", &second).await, 401);
    assert_eq!(w.me_by_cookie("web", "web_sid", &third).await, 200);
}

#[tokio::test]
async fn ids_the_server_did_not_issue_are_never_adopted() {
    let w = world();
    let planted = "PlantedByAnAttacker_0123456789abcdefABCDEF";
    let writes = w.store.writes();
    assert_eq!(w.me_by_cookie("web", "web_sid", planted).await, 401);
    assert_eq!(w.store.writes(), writes, "an unknown id causes no write");

    let reply = send(
        &w.app,
        post(&format!("/web/login/{}", w.alice.id))
            .cookie("web_sid", planted)
            .empty(),
    )
    .await;
    assert_ne!(reply.body, planted);
    assert_eq!(
        w.store.writes(),
        writes + 1,
        "login saves the new session and deletes nothing"
    );
    assert_eq!(w.me_by_cookie("web", "web_sid", planted).await, 401);
}

#[tokio::test]
async fn logout_is_server_side_and_cannot_be_replayed() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    let reply = send(&w.app, post("/web/logout").cookie("web_sid", &id).empty()).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "bye"));
    assert_eq!(reply.set_cookies.len(), 1);
    let removal = &reply.set_cookies[0];
    assert!(
        removal.starts_with("web_sid=;") && removal.contains("Max-Age=0"),
        "{removal}"
    );

    assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 401);
    assert_eq!(w.me_by_bearer("web", &id).await, 401);
    assert!(w.web_record(&id).await.is_none());
}

#[tokio::test]
async fn bearer_requests_never_get_cookies() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    let reply = send(&w.app, post("/web/rotate").bearer(&id).empty()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.set_cookies.is_empty());
    let rotated = reply.body;
    let reply = send(&w.app, post("/web/logout").bearer(&rotated).empty()).await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "bye"));
    assert!(reply.set_cookies.is_empty());
    assert_eq!(w.me_by_bearer("web", &rotated).await, 401);
}

#[tokio::test]
async fn unchanged_sessions_get_no_set_cookie() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    for _ in 0..3 {
        let reply = send(&w.app, get("/web/me").cookie("web_sid", &id).empty()).await;
        assert_eq!(reply.status, 200);
        assert!(reply.set_cookies.is_empty());
    }
}

#[tokio::test]
async fn sliding_expiry_extends_at_most_once_per_interval() {
    let w = world_with(|l| {
        l.idle_timeout(Duration::from_secs(60))
            .touch_interval(Duration::from_secs(10))
    });
    let id = w.login("web", &w.alice).await;
    let login_at = w.now();
    let first = w.web_record(&id).await.unwrap().expires_at;
    assert_eq!(first, login_at + 60_000);

    // Within the interval: no extension, no write, no cookie.
    let writes = w.store.writes();
    for step in [0, 5_000, 4_999] {
        w.clock.advance(Duration::from_millis(step));
        let reply = send(&w.app, get("/web/me").cookie("web_sid", &id).empty()).await;
        assert_eq!(reply.status, 200);
        assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    }
    assert_eq!(
        w.store.writes(),
        writes,
        "a request inside the interval wrote"
    );
    assert_eq!(w.web_record(&id).await.unwrap().expires_at, first);

    // The interval is over: one write moves expires_at to now + idle, and the response
    // carries no Set-Cookie (the cookie lives as long as the absolute lifetime).
    w.clock.advance(Duration::from_millis(1));
    let reply = send(&w.app, get("/web/me").cookie("web_sid", &id).empty()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.set_cookies.is_empty(), "{:?}", reply.set_cookies);
    assert_eq!(w.store.writes(), writes + 1);
    assert_eq!(
        w.web_record(&id).await.unwrap().expires_at,
        w.now() + 60_000
    );

    // Keep using it past the original idle deadline: each use after the interval slides it.
    for _ in 0..4 {
        w.clock.advance(Duration::from_secs(20));
        assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 200);
        assert_eq!(
            w.web_record(&id).await.unwrap().expires_at,
            w.now() + 60_000
        );
    }
    assert!(w.now() > first, "used past the original idle deadline");
    assert_eq!(w.store.writes(), writes + 5);

    // Idle for a millisecond less than the timeout: alive (and slid); for the full timeout:
    // gone, and deleted.
    w.clock.advance(Duration::from_millis(59_999));
    assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 200);
    w.clock.advance(Duration::from_secs(60));
    assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 401);
    assert!(w.store.inner.is_empty());
}

#[tokio::test]
async fn the_absolute_lifetime_is_never_passed() {
    let w = world_with(|l| {
        l.idle_timeout(Duration::from_secs(30 * 60))
            .absolute_timeout(Duration::from_secs(2 * 3600))
            .touch_interval(Duration::from_secs(60))
    });
    let id = w.login("web", &w.alice).await;
    let created = w.now();
    let deadline = created + 2 * 3600 * 1000;
    // Used every 10 minutes: it outlives the 30-minute idle timeout many times over...
    while w.now() + 600_000 < deadline {
        w.clock.advance(Duration::from_secs(600));
        assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 200);
        let expires = w.web_record(&id).await.unwrap().expires_at;
        assert!(
            expires <= deadline,
            "slid past the absolute lifetime: {expires} > {deadline}"
        );
    }
    // ...up to the last millisecond of the absolute lifetime, and not one more.
    w.clock.set(deadline - 1);
    assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 200);
    assert_eq!(w.web_record(&id).await.unwrap().expires_at, deadline);
    w.clock.set(deadline);
    assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 401);
    assert!(
        w.store.inner.is_empty(),
        "an expired record was left in the store"
    );
}

#[tokio::test]
async fn the_cookie_lives_what_is_left_of_the_absolute_lifetime() {
    let week = 7 * 24 * 3600;
    let w = world_with(|l| l.touch_interval(Duration::from_secs(60)));
    let reply = send(&w.app, post(&format!("/web/login/{}", w.alice.id)).empty()).await;
    assert_eq!(max_age(&reply.set_cookies[0]), week);
    let id = reply.body;

    // An hour later the session slides (no cookie), then rotates: the new cookie's Max-Age
    // is what is left of the lifetime counted from the login, not a fresh week.
    w.clock.advance(Duration::from_secs(3600));
    let slid = send(&w.app, get("/web/me").cookie("web_sid", &id).empty()).await;
    assert_eq!(slid.status, 200);
    assert!(slid.set_cookies.is_empty());
    assert_eq!(
        w.web_record(&id).await.unwrap().expires_at,
        w.now() + 24 * 3600 * 1000
    );
    let rotated = send(&w.app, post("/web/rotate").cookie("web_sid", &id).empty()).await;
    assert_eq!(rotated.status, 200);
    assert_eq!(max_age(&rotated.set_cookies[0]), week - 3600);
    // Rotation keeps the record's times: same creation, same (slid) expiry.
    let moved = w.web_record(&rotated.body).await.unwrap();
    assert_eq!(moved.expires_at, w.now() + 24 * 3600 * 1000);
    assert_eq!(moved.created_at, w.now() - 3600 * 1000);

    // A minute and a half later, another rotation: 90 s less again.
    w.clock.advance(Duration::from_secs(90));
    let again = send(
        &w.app,
        post("/web/rotate").cookie("web_sid", &rotated.body).empty(),
    )
    .await;
    assert_eq!(max_age(&again.set_cookies[0]), week - 3600 - 90);
}

#[tokio::test]
async fn expired_records_written_elsewhere_are_rejected_and_deleted() {
    let w = world();
    let id = SessionId::generate().unwrap();
    let now = w.now();
    let record = SessionRecord {
        user_id: w.alice.id,
        created_at: now - 10_000,
        expires_at: now + 5_000,
        ip: None,
        user_agent: None,
        data: Default::default(),
    };
    w.store
        .inner
        .save(&AppContext::Web, &id, &record, now)
        .await
        .unwrap();
    assert_eq!(w.me_by_bearer("web", id.as_str()).await, 200);
    // The same id with an absolute lifetime already over (created long ago).
    let old = SessionRecord {
        created_at: now - 8 * 24 * 3600 * 1000,
        ..record
    };
    w.store
        .inner
        .save(&AppContext::Web, &id, &old, now)
        .await
        .unwrap();
    assert_eq!(w.me_by_bearer("web", id.as_str()).await, 401);
    assert!(w.web_record(id.as_str()).await.is_none());
}

#[tokio::test]
async fn the_admin_policy_is_checked_on_every_request() {
    let w = world();
    // Another system wrote an admin-context session for a plain user.
    let id = SessionId::generate().unwrap();
    let record = SessionRecord::new(
        w.alice.id,
        SessionMetadata::new(),
        w.now(),
        Duration::from_secs(60),
    );
    w.store
        .inner
        .save(&AppContext::Admin, &id, &record, w.now())
        .await
        .unwrap();
    assert_eq!(w.me_by_bearer("admin", id.as_str()).await, 401);

    // A demoted admin loses the panel on the next request.
    let root = w.login("admin", &w.root).await;
    assert_eq!(w.me_by_cookie("admin", "admin_sid", &root).await, 200);
    let mut demoted = (*w.root).clone();
    demoted.role = Role::User;
    tower_app_sessions::UserRepository::update(&w.users, demoted)
        .await
        .unwrap();
    assert_eq!(w.me_by_cookie("admin", "admin_sid", &root).await, 401);
}

#[tokio::test]
async fn a_user_deleted_after_login_is_anonymous_at_once() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    let admin = w.login("admin", &w.root).await;
    assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 200);
    assert!(w.users.remove(&w.alice.id).is_some());
    let reply = send(&w.app, get("/web/me").cookie("web_sid", &id).empty()).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY)
    );
    let maybe = send(&w.app, get("/web/maybe").cookie("web_sid", &id).empty()).await;
    assert_eq!(maybe.body, "anonymous");
    // Other users are not affected.
    assert_eq!(w.me_by_cookie("admin", "admin_sid", &admin).await, 200);
}

#[tokio::test]
async fn revoke_all_ends_every_session_of_the_user_at_once() {
    let w = world();
    let a = w.login("web", &w.root).await;
    let b = w.login("web", &w.root).await;
    let c = w.login("admin", &w.root).await;
    let other = w.login("web", &w.alice).await;
    let reply = send(
        &w.app,
        post("/web/revoke-all").cookie("web_sid", &a).empty(),
    )
    .await;
    assert_eq!(reply.body, "3");
    assert_eq!(w.me_by_bearer("web", &a).await, 401);
    assert_eq!(w.me_by_bearer("web", &b).await, 401);
    assert_eq!(w.me_by_bearer("admin", &c).await, 401);
    assert_eq!(w.me_by_bearer("web", &other).await, 200);
}

#[tokio::test]
async fn a_failing_store_is_503_on_required_routes_and_anonymous_elsewhere() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    w.store.set_failing(true);

    // Every way of requiring a user answers 503 with `Retry-After: 1` and the same body: the
    // extractor, RequireUserLayer, RequirePermissionLayer, and a failed session operation
    // (login) returned from a handler.
    let required = [
        ("extractor", get("/web/me").cookie("web_sid", &id).empty()),
        ("RequireUserLayer", get("/web/required").bearer(&id).empty()),
        (
            "RequirePermissionLayer",
            get("/web/exports").bearer(&id).empty(),
        ),
        ("login", post(&format!("/web/login/{}", w.alice.id)).empty()),
    ];
    for (what, req) in required {
        let res = w.app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 503, "{what}");
        assert_eq!(res.headers()["retry-after"], "1", "{what}");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, UNAVAILABLE_BODY.as_bytes(), "{what}");
    }
    // Optional users never reject, whatever the store says: Option<CurrentUser>.
    let reply = send(&w.app, get("/web/maybe").cookie("web_sid", &id).empty()).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
    // Without a credential the store is not asked, so a required route is a plain 401.
    let reply = send(&w.app, get("/web/required").empty()).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::UNAUTHORIZED, UNAUTHORIZED_BODY)
    );

    w.store.set_failing(false);
    assert_eq!(w.me_by_cookie("web", "web_sid", &id).await, 200);
    assert_eq!(
        send(&w.app, get("/web/required").bearer(&id).empty())
            .await
            .status,
        200
    );
    let optional = send(&w.app, get("/web/maybe").bearer(&id).empty()).await;
    assert_eq!(optional.body, w.alice.email);
}

#[tokio::test]
async fn require_permission_in_a_handler_and_as_a_layer_answer_403() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    for req in [post("/web/refund"), get("/web/exports")] {
        let reply = send(
            &w.app,
            req.header("cookie", format!("web_sid={id}")).empty(),
        )
        .await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (StatusCode::FORBIDDEN, FORBIDDEN_BODY)
        );
    }
    for permission in ["orders:refund", "orders:export"] {
        tower_app_sessions::UserRepository::grant(
            &w.users,
            tower_app_sessions::users::PermissionGrant {
                user_id: &w.alice.id,
                context: &AppContext::Web,
                permission,
                granted_by: None,
                expires_at: None,
            },
        )
        .await
        .unwrap();
    }
    for (req, ok) in [
        (post("/web/refund"), "refunded"),
        (get("/web/exports"), "exported"),
    ] {
        let reply = send(
            &w.app,
            req.header("cookie", format!("web_sid={id}")).empty(),
        )
        .await;
        assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, ok));
    }
    // Without a session: 401, not 403.
    let reply = send(&w.app, post("/web/refund").empty()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn require_user_layer_guards_a_whole_router() {
    let w = world();
    assert_eq!(
        send(&w.app, get("/admin/required").empty()).await.status,
        401
    );
    let id = w.login("admin", &w.root).await;
    let reply = send(
        &w.app,
        get("/admin/required").cookie("admin_sid", &id).empty(),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "inside")
    );
}

#[tokio::test]
async fn concurrent_logins_lose_and_duplicate_nothing() {
    let w = Arc::new(world());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let w = Arc::clone(&w);
            tokio::spawn(async move { w.login("web", &w.alice).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        assert!(ids.insert(task.await.unwrap()), "duplicate id");
    }
    assert_eq!(ids.len(), 100);
    let listed = w
        .store
        .inner
        .list_user_sessions(&w.alice.id, Scope::Context(&AppContext::Web), w.now())
        .await
        .unwrap();
    assert_eq!(listed.len(), 100);
    for id in &ids {
        assert_eq!(w.me_by_bearer("web", id).await, 200);
    }
}

#[tokio::test]
async fn login_metadata_is_stored_in_the_seed_format() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    let record = w.web_record(&id).await.unwrap();
    assert_eq!(record.user_id, w.alice.id);
    assert_eq!(record.ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(record.user_agent.as_deref(), Some("rust-test"));
    assert_eq!(record.expires_at - record.created_at, 24 * 3600 * 1000);
    let json: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["created_at", "expires_at", "ip", "user_agent", "user_id"]
    );
}

#[tokio::test]
async fn bad_credentials_never_reach_the_store() {
    let w = world();
    let valid = w.login("web", &w.alice).await;
    let calls = w.store.calls();
    let long = format!("web_sid={}", "a".repeat(8192));
    let two_values = format!("web_sid={valid}; web_sid={}", "B".repeat(43));
    type Headers<'a> = Vec<(&'a str, Vec<u8>)>;
    let table: Vec<(&str, Headers<'_>)> = vec![
        ("no header", vec![]),
        ("empty cookie", vec![("cookie", b"web_sid=".to_vec())]),
        (
            "duplicate cookie names",
            vec![("cookie", two_values.into_bytes())],
        ),
        (
            "duplicate names in two headers",
            vec![
                ("cookie", format!("web_sid={valid}").into_bytes()),
                ("cookie", format!("web_sid={}", "C".repeat(43)).into_bytes()),
            ],
        ),
        (
            "non-UTF-8 cookie",
            vec![(
                "cookie",
                b"web_sid=\xff\xfe\xfdAAAAAAAAAAAAAAAAAAAA".to_vec(),
            )],
        ),
        ("8 KiB cookie", vec![("cookie", long.into_bytes())]),
        (
            "bearer without token",
            vec![("authorization", b"Bearer".to_vec())],
        ),
        (
            "basic scheme",
            vec![("authorization", b"Basic YWxpY2U6cGFzc3dvcmQ=".to_vec())],
        ),
        (
            "id with colon",
            vec![("cookie", format!("web_sid=admin:{valid}").into_bytes())],
        ),
        (
            "id with star",
            vec![(
                "authorization",
                b"Bearer session*AAAAAAAAAAAAAAAAAAAA".to_vec(),
            )],
        ),
        (
            "id with glob",
            vec![("authorization", b"Bearer AAAAAAAAAAAAAAAA[a-z]?".to_vec())],
        ),
        (
            "unicode id",
            vec![(
                "authorization",
                "Bearer сессиясессиясессия".as_bytes().to_vec(),
            )],
        ),
        ("too short", vec![("cookie", b"web_sid=abc".to_vec())]),
        (
            "quoted garbage",
            vec![("cookie", b"web_sid=\"a b c d e f g h i j k l\"".to_vec())],
        ),
        (
            "invalid cookie hides a valid bearer",
            vec![
                ("cookie", b"web_sid=../../etc/passwd".to_vec()),
                ("authorization", format!("Bearer {valid}").into_bytes()),
            ],
        ),
    ];
    for (name, headers) in table {
        let mut req = get("/web/me");
        for (header, value) in &headers {
            req = req.header(*header, http::HeaderValue::from_bytes(value).unwrap());
        }
        let reply = send(&w.app, req.empty()).await;
        assert_eq!(reply.status, 401, "case {name}");
        assert_eq!(reply.body, UNAUTHORIZED_BODY, "case {name}");
        assert_eq!(w.store.calls(), calls, "case {name} reached the store");
    }
    // Control: the valid id does reach the store and authenticates.
    assert_eq!(w.me_by_cookie("web", "web_sid", &valid).await, 200);
    assert!(w.store.calls() > calls);
}

#[tokio::test]
async fn a_quoted_cookie_value_is_read_as_rfc_6265_says() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    let req = get("/web/me")
        .header("cookie", format!("web_sid=\"{id}\""))
        .empty();
    assert_eq!(send(&w.app, req).await.status, 200);
}

#[tokio::test]
async fn split_cookie_headers_are_joined() {
    let w = world();
    let id = w.login("web", &w.alice).await;
    let req = get("/web/me")
        .header("cookie", "theme=dark")
        .header("cookie", format!("web_sid={id}"))
        .header("cookie", "lang=ru")
        .empty();
    assert_eq!(send(&w.app, req).await.status, 200);
}

#[tokio::test]
async fn for_context_spelling_works_with_custom_contexts() {
    let bot = AppContext::custom("telegram-bot").unwrap();
    let users = MemoryUsers::new();
    let alice = users
        .insert(User::new("alice@example.com", Role::User))
        .unwrap();
    let store = tower_app_sessions::MemoryStore::new();
    let app = routes().layer(
        SessionLayer::for_context(bot.clone())
            .store(store.clone())
            .users(users),
    );
    let reply = send(&app, post(&format!("/login/{}", alice.id)).empty()).await;
    let id = SessionId::parse(&reply.body).unwrap();
    let now = now_ms();
    assert!(store.load(&bot, &id, now).await.unwrap().is_some());
    assert!(store
        .load(&AppContext::Web, &id, now)
        .await
        .unwrap()
        .is_none());
    let reply = send(&app, get("/whoami").bearer(id.as_str()).empty()).await;
    assert_eq!(reply.body, "alice@example.com in telegram-bot");

    // The build state shows in `Debug`: a layer without users is not ready to be applied
    // (applying it does not compile: `layer::NeedsUsers`'s doctest).
    let started = SessionLayer::for_context(bot.clone()).cookie_name("bot_sid");
    assert!(
        format!("{started:?}").contains(r#"state: "NeedsUsers""#),
        "{started:?}"
    );
    let ready = started.users(MemoryUsers::new());
    assert!(
        format!("{ready:?}").contains(r#"state: "Ready""#),
        "{ready:?}"
    );
}

#[tokio::test]
async fn nested_layers_do_not_leak_the_outer_user_inward() {
    // Both apps use the default cookie name; the web layer wraps everything, the admin layer
    // wraps /admin. A web session must not reach admin handlers as a user.
    let store = tower_app_sessions::MemoryStore::new();
    let users = MemoryUsers::new();
    let root = users
        .insert(User::new("root@example.com", Role::Admin))
        .unwrap();
    let sessions = Sessions::new(store, users);
    let app = Router::new()
        .nest("/admin", routes().layer(sessions.layer(AppContext::Admin)))
        .merge(routes())
        .layer(sessions.layer(AppContext::Web));
    let reply = send(&app, post(&format!("/login/{}", root.id)).empty()).await;
    let web = reply.body;
    assert_eq!(
        send(&app, get("/me").cookie("sessionId", &web).empty())
            .await
            .status,
        200
    );
    assert_eq!(
        send(&app, get("/admin/me").cookie("sessionId", &web).empty())
            .await
            .status,
        401
    );
    assert_eq!(
        send(&app, get("/admin/required").bearer(&web).empty())
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_rotation_or_a_data_save_never_revives_a_session_ended_while_the_request_ran() {
    use common::races::{held_racing, routes as race_routes, Gate, ENDERS, HELD};
    let users = MemoryUsers::new();
    let sessions = Sessions::new(tower_app_sessions::MemoryStore::new(), users.clone());
    let gate = Gate::new();
    let app = race_routes(gate.clone()).layer(sessions.layer(AppContext::Web));
    for ender in ENDERS {
        let user = users
            .insert(User::new(format!("{ender:?}@example.com"), Role::User))
            .unwrap();
        for held in HELD {
            held_racing(&sessions, &app, &gate, user.id, ender, held).await;
        }
    }
}

#[tokio::test]
async fn hostile_emails_never_shadow_an_account_in_memory() {
    common::emails::hostile_emails(&MemoryUsers::new()).await;
}

#[tokio::test]
async fn the_per_user_session_limit_evicts_the_least_recently_used_or_refuses() {
    let users = MemoryUsers::new();
    let a = users
        .insert(User::new("a@example.com", Role::User))
        .unwrap();
    let b = users
        .insert(User::new("b@example.com", Role::User))
        .unwrap();
    let sessions = Sessions::new(tower_app_sessions::MemoryStore::new(), users);
    common::limits::per_user_limit(sessions, a.id, b.id).await;
}

#[tokio::test]
async fn session_max_per_user_from_the_environment() {
    let clock = ManualClock::starting_now();
    let sessions = Sessions::from_lookup(|var| (var == "SESSION_MAX_PER_USER").then(|| "2".into()))
        .await
        .unwrap()
        .clock(clock.clone());
    let alice = sessions
        .user_repository()
        .create(User::new("alice@example.com", Role::User))
        .await
        .unwrap();
    let app = common::routes().layer(sessions.layer(AppContext::Web));
    let first = common::login(&app, alice.id).await;
    clock.advance(Duration::from_secs(1));
    let second = common::login(&app, alice.id).await;
    clock.advance(Duration::from_secs(1));
    let third = common::login(&app, alice.id).await;
    let me = |t: String| {
        let app = app.clone();
        async move { send(&app, get("/me").bearer(&t).empty()).await.status }
    };
    assert_eq!(me(first).await, 401);
    assert_eq!(me(second).await, 200);
    assert_eq!(me(third).await, 200);
    for bad in ["-1", "many"] {
        let err = Sessions::from_lookup(|var| (var == "SESSION_MAX_PER_USER").then(|| bad.into()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("SESSION_MAX_PER_USER="),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_full_memory_store_ends_the_least_recently_used_session_at_once() {
    let users = MemoryUsers::new();
    let clock = ManualClock::starting_now();
    let sessions = Sessions::new(
        tower_app_sessions::MemoryStore::with_capacity(2),
        users.clone(),
    )
    .clock(clock.clone());
    let app = common::routes().layer(sessions.layer(AppContext::Web));
    let mut tokens = Vec::new();
    for n in 0..3 {
        let user = users
            .insert(User::new(format!("u{n}@example.com"), Role::User))
            .unwrap();
        tokens.push(common::login(&app, user.id).await);
        clock.advance(Duration::from_secs(1));
    }
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for t in &tokens {
            v.push(
                send(&app, get("/me").bearer(t).empty())
                    .await
                    .status
                    .as_u16(),
            );
        }
        v
    };
    assert_eq!(statuses, [401, 200, 200]);
}

#[tokio::test]
async fn every_response_that_sets_the_cookie_is_not_stored_by_caches() {
    let w = world();
    let user = w.alice.id;
    let cache_control = |res: &http::Response<axum::body::Body>| {
        res.headers()
            .get_all("cache-control")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let call = |req: http::Request<axum::body::Body>| w.app.clone().oneshot(req);
    let login = call(post(&format!("/web/login/{user}")).empty())
        .await
        .unwrap();
    assert_eq!(cache_control(&login), ["no-store"]);
    let token = login.into_body().collect().await.unwrap().to_bytes();
    let token = String::from_utf8(token.to_vec()).unwrap();
    // No cookie written, no header added.
    let me = call(get("/web/me").cookie("web_sid", &token).empty())
        .await
        .unwrap();
    assert!(me.headers().get("set-cookie").is_none());
    assert!(cache_control(&me).is_empty());
    let rotated = call(post("/web/rotate").cookie("web_sid", &token).empty())
        .await
        .unwrap();
    assert_eq!(cache_control(&rotated), ["no-store"]);
    let token = rotated.into_body().collect().await.unwrap().to_bytes();
    let token = String::from_utf8(token.to_vec()).unwrap();
    let logout = call(post("/web/logout").cookie("web_sid", &token).empty())
        .await
        .unwrap();
    assert!(logout.headers().get("set-cookie").is_some());
    assert_eq!(cache_control(&logout), ["no-store"]);

    // A handler's own Cache-Control stands.
    let own = Router::new()
        .route(
            "/login",
            route_post(move |session: Session| async move {
                session.login(user, SessionMetadata::new()).await.unwrap();
                ([("cache-control", "private, max-age=0")], "ok")
            }),
        )
        .layer(SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new()));
    let res = own.oneshot(post("/login").empty()).await.unwrap();
    assert!(res.headers().get("set-cookie").is_some());
    assert_eq!(cache_control(&res), ["private, max-age=0"]);
}
