//! Lifecycle events through the public API: a scripted sequence of requests emits each
//! event exactly once, with the right kind, context and handle, on memory, Redis and the
//! tiered store; no event and no log line (at trace level) carries a session id; the
//! request span carries context, outcome and handle. Races: `event_races`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tower_app_sessions::clock::ManualClock;
use tower_app_sessions::events::{CredentialProblem, RevokedScope, SessionEvent, SessionEventKind};
use tower_app_sessions::{AppContext, MemoryUsers, Role, SessionId, SessionStore, Sessions, User};
use uuid::Uuid;

use crate::common::{get, login_at, post, routes, send, CountingStore, Finish};

/// Every event the hook saw.
#[derive(Clone, Default)]
pub(crate) struct Collected(pub(crate) Arc<Mutex<Vec<SessionEvent>>>);

impl Collected {
    pub(crate) fn take(&self) -> Vec<SessionEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Log lines written during the test, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `/web/…` and `/admin/…` (admin admits role `admin` only) over `sessions`, events to
/// `collected`. Web: idle 1 h, slides after 60 s, at most 2 sessions per user.
pub(crate) fn apps(sessions: &Sessions, collected: &Collected) -> Router {
    let sink = collected.clone();
    let sessions = sessions
        .clone()
        .on_event(move |e: &SessionEvent| sink.0.lock().unwrap().push(e.clone()));
    let web = sessions
        .layer(AppContext::Web)
        .idle_timeout(Duration::from_secs(3600))
        .touch_interval(Duration::from_secs(60))
        .max_sessions_per_user(2);
    let admin = sessions.layer(AppContext::Admin).admit_roles([Role::Admin]);
    Router::new()
        .nest("/web", routes().layer(web))
        .nest("/admin", routes().layer(admin))
}

pub(crate) fn kind(e: &SessionEvent) -> (&str, SessionEventKind) {
    (e.context.as_str(), e.kind.clone())
}

/// The scripted sequence; returns the events and every id issued.
async fn scripted(sessions: Sessions, clock: &ManualClock, user: Uuid) -> Vec<String> {
    let collected = Collected::default();
    let app = apps(&sessions, &collected);
    let handle = |token: &str| SessionId::parse(token).unwrap().handle();
    let me = |prefix: &'static str, token: String| {
        let app = app.clone();
        async move {
            send(&app, get(&format!("{prefix}/me")).bearer(&token).empty())
                .await
                .status
                .as_u16()
        }
    };

    let a = login_at(&app, "/web", user).await;
    assert_eq!(me("/web", a.clone()).await, 200);
    let events = collected.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(kind(&events[0]), ("web", SessionEventKind::Created));
    assert_eq!(events[0].session, Some(handle(&a)));
    assert_eq!(events[0].user_id, Some(user));
    assert_eq!(events[0].ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(events[0].user_agent.as_deref(), Some("rust-test"));
    assert_eq!(events[0].at_ms, sessions.now());

    // Admin: the session is made, then the policy refuses the user on every request.
    let b = login_at(&app, "/admin", user).await;
    assert_eq!(me("/admin", b.clone()).await, 401);
    // The web session replayed on admin; a malformed cookie on web.
    assert_eq!(me("/admin", a.clone()).await, 401);
    let malformed = send(
        &app,
        get("/web/me").cookie("sessionId", "bad!value").empty(),
    )
    .await;
    assert_eq!(malformed.status, 401);
    let events = collected.take();
    let kinds: Vec<_> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            ("admin", SessionEventKind::Created),
            ("admin", SessionEventKind::Refused),
            (
                "admin",
                SessionEventKind::UnknownCredential {
                    reason: CredentialProblem::Unknown
                }
            ),
            (
                "web",
                SessionEventKind::UnknownCredential {
                    reason: CredentialProblem::Malformed
                }
            ),
        ],
        "{events:?}"
    );
    assert_eq!(events[1].session, Some(handle(&b)));
    assert_eq!(
        events[2].session,
        Some(handle(&a)),
        "the replayed id's handle"
    );
    assert_eq!(events[3].session, None, "a malformed value has no handle");

    // A slide, a rotation.
    clock.advance(Duration::from_secs(120));
    assert_eq!(me("/web", a.clone()).await, 200);
    let rotated = send(&app, post("/web/rotate").bearer(&a).empty()).await;
    assert_eq!(rotated.status, 200);
    let a2 = rotated.body;
    let events = collected.take();
    assert_eq!(events.len(), 2, "{events:?}");
    let expires_at = sessions.now() + 3_600_000;
    assert_eq!(
        kind(&events[0]),
        ("web", SessionEventKind::Extended { expires_at })
    );
    assert_eq!(events[0].session, Some(handle(&a)));
    assert_eq!(
        kind(&events[1]),
        ("web", SessionEventKind::Rotated { from: handle(&a) })
    );
    assert_eq!(events[1].session, Some(handle(&a2)));

    // Two more logins: the third web session evicts the least recently used (a2).
    clock.advance(Duration::from_secs(1));
    let c = login_at(&app, "/web", user).await;
    clock.advance(Duration::from_secs(1));
    let d = login_at(&app, "/web", user).await;
    assert_eq!(me("/web", a2.clone()).await, 401);
    let events = collected.take();
    let kinds: Vec<_> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            ("web", SessionEventKind::Created),
            ("web", SessionEventKind::Created),
            ("web", SessionEventKind::Evicted),
            (
                "web",
                SessionEventKind::UnknownCredential {
                    reason: CredentialProblem::Unknown
                }
            ),
        ],
        "{events:?}"
    );
    assert_eq!(events[0].session, Some(handle(&c)));
    assert_eq!(events[1].session, Some(handle(&d)));
    assert_eq!(events[2].session, Some(handle(&a2)));

    // A logout. A session the store let expire reads as unknown; one the store still
    // holds past the layer's absolute lifetime (kept alive by the TypeScript apps' bare
    // `EXPIRE`-style extends) is found expired and deleted.
    assert_eq!(
        send(&app, post("/web/logout").bearer(&d).empty())
            .await
            .status,
        200
    );
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(me("/web", c.clone()).await, 401);
    let old = SessionId::generate().unwrap();
    let now = sessions.now();
    let mut record = tower_app_sessions::SessionRecord::new(
        user,
        tower_app_sessions::SessionMetadata::new(),
        now - 8 * 24 * 3_600_000,
        Duration::from_secs(3600),
    );
    record.expires_at = now + 3_600_000;
    sessions
        .session_store()
        .save(&AppContext::Web, &old, &record, now)
        .await
        .unwrap();
    assert_eq!(me("/web", old.as_str().to_owned()).await, 401);
    assert_eq!(me("/web", old.as_str().to_owned()).await, 401);
    let events = collected.take();
    let kinds: Vec<_> = events.iter().map(kind).collect();
    let unknown = SessionEventKind::UnknownCredential {
        reason: CredentialProblem::Unknown,
    };
    assert_eq!(
        kinds,
        [
            ("web", SessionEventKind::LoggedOut),
            ("web", unknown.clone()),
            ("web", SessionEventKind::Expired),
            ("web", unknown),
        ],
        "{events:?}"
    );
    assert_eq!(events[0].session, Some(handle(&d)));
    assert_eq!(events[1].session, Some(handle(&c)));
    assert_eq!(events[2].session, Some(old.handle()));
    assert_eq!(events[2].user_id, Some(user));

    // Revoke-all from a new web session: it and the admin session end.
    let e = login_at(&app, "/web", user).await;
    let revoked = send(&app, post("/web/revoke-all").bearer(&e).empty()).await;
    assert_eq!(revoked.body, "2");
    let events = collected.take();
    let kinds: Vec<_> = events.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            ("web", SessionEventKind::Created),
            (
                "web",
                SessionEventKind::Revoked {
                    scope: RevokedScope::AllContexts,
                    count: 2
                }
            ),
        ],
        "{events:?}"
    );
    assert_eq!(events[1].user_id, Some(user));
    vec![a, a2, b, c, d, e, old.as_str().to_owned()]
}

/// Runs `scripted` with every log line captured at trace level, then checks that no id
/// issued appears in any of them.
async fn without_ids_in_logs(sessions: Sessions, clock: &ManualClock, user: Uuid) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let ids = scripted(sessions, clock, user).await;
    drop(guard);
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("tower_app_sessions::audit"),
        "the audit trail is written: {logs}"
    );
    for id in &ids {
        assert!(!logs.contains(id.as_str()), "an id in the logs: {logs}");
    }
}

pub(crate) fn memory_user(users: &MemoryUsers) -> Uuid {
    users
        .insert(User::new("events@example.com", Role::User))
        .unwrap()
        .id
}

#[tokio::test]
async fn every_lifecycle_event_once_and_no_id_anywhere_on_memory() {
    let users = MemoryUsers::new();
    let user = memory_user(&users);
    let clock = ManualClock::starting_now();
    let sessions =
        Sessions::new(tower_app_sessions::MemoryStore::new(), users).clock(clock.clone());
    without_ids_in_logs(sessions, &clock, user).await;
}

#[tokio::test]
async fn a_failing_store_is_one_backend_error_per_request() {
    let users = MemoryUsers::new();
    let user = memory_user(&users);
    let store = CountingStore::default();
    let collected = Collected::default();
    let app = apps(&Sessions::new(store.clone(), users), &collected);
    let token = login_at(&app, "/web", user).await;
    collected.take();
    store.set_failing(true);
    for _ in 0..3 {
        let reply = send(&app, get("/web/me").bearer(&token).empty()).await;
        assert_eq!(reply.status, 503);
    }
    let events = collected.take();
    assert_eq!(events.len(), 3, "{events:?}");
    for event in &events {
        assert_eq!(
            kind(event),
            (
                "web",
                SessionEventKind::BackendError {
                    backend: "session store"
                }
            )
        );
        assert_eq!(event.session, None);
    }
    // Anonymous requests are not events.
    let anonymous = send(&app, get("/web/maybe").empty()).await;
    assert_eq!(anonymous.body, "anonymous");
    assert!(collected.take().is_empty());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn every_lifecycle_event_once_and_no_id_anywhere_on_redis() {
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    let store = RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
        .await
        .unwrap();
    let users = MemoryUsers::new();
    let user = memory_user(&users);
    let clock = ManualClock::starting_now();
    without_ids_in_logs(
        Sessions::new(store, users).clock(clock.clone()),
        &clock,
        user,
    )
    .await;
}

#[cfg(all(feature = "redis", feature = "postgres"))]
#[tokio::test]
async fn every_lifecycle_event_once_and_no_id_anywhere_on_the_tiered_store() {
    use crate::common::pg::TestDb;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::store::{PgSessionStore, TieredStore};
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::UserRepository;

    let db = TestDb::migrated().await;
    let redis = RedisStore::connect(RedisConfig::new(crate::common::redis_server::shared_url()))
        .await
        .unwrap();
    let store = TieredStore::new(
        Arc::new(redis),
        Arc::new(PgSessionStore::new(db.pool.clone())),
    );
    let clock = ManualClock::starting_now();
    let users = PgUsers::new(db.pool.clone()).clock(clock.clone());
    let user = users
        .create(User::new(
            format!("events-{}@example.com", Uuid::new_v4().simple()),
            Role::User,
        ))
        .await
        .unwrap()
        .id;
    without_ids_in_logs(
        Sessions::new(store, users).clock(clock.clone()),
        &clock,
        user,
    )
    .await;
}

#[tokio::test]
async fn the_channel_delivers_in_order_and_drops_and_counts_when_full() {
    use tower_app_sessions::events::EventChannel;

    let users = MemoryUsers::new();
    let user = memory_user(&users);
    let (channel, mut received) = EventChannel::bounded(2);
    let sessions =
        Sessions::new(tower_app_sessions::MemoryStore::new(), users).on_event(channel.hook());
    let app = Router::new().nest("/web", routes().layer(sessions.layer(AppContext::Web)));
    // Nobody reads while four logins happen: two fit, two are dropped, no request waits.
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(login_at(&app, "/web", user).await);
    }
    assert_eq!(channel.dropped(), 2);
    for token in &tokens[..2] {
        let event = received.recv().await.unwrap();
        assert_eq!(event.kind, SessionEventKind::Created);
        assert_eq!(
            event.session,
            Some(SessionId::parse(token).unwrap().handle())
        );
    }
    assert!(
        received.try_recv().is_err(),
        "the dropped ones are not queued"
    );
    // A closed receiver drops (and counts) too.
    drop(received);
    login_at(&app, "/web", user).await;
    assert_eq!(channel.dropped(), 3);
}

/// The request span (`session`, target `tower_app_sessions`) wraps the handler with the
/// context, the outcome and the handle, on the path answered in `call` and on the awaited
/// one; a request without a credential gets none.
#[tokio::test]
async fn the_request_span_carries_context_outcome_and_handle() {
    use axum::routing;
    let users = MemoryUsers::new();
    let user = memory_user(&users);
    let store = CountingStore::default();
    let sessions = Sessions::new(store.clone(), users);
    let hello = || async {
        tracing::info!("in the handler");
        "hello"
    };
    let app = Router::new().nest(
        "/web",
        routes()
            .route("/hello", routing::get(hello))
            .layer(sessions.layer(AppContext::Web)),
    );
    let token = login_at(&app, "/web", user).await;
    let handle = SessionId::parse(&token).unwrap().handle();
    let unknown = SessionId::generate().unwrap();

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let lines = |captured: &Captured| {
        let text =
            String::from_utf8_lossy(&std::mem::take(&mut *captured.0.lock().unwrap())).into_owned();
        text.lines()
            .filter(|l| l.contains("in the handler"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let guard = tracing::subscriber::set_default(subscriber);
    let cases: [(Option<&str>, &str); 4] = [
        (Some(&token), "authenticated"),
        (Some(unknown.as_str()), "unknown"),
        (None, ""),
        (Some(&token), "error"),
    ];
    for (i, (credential, outcome)) in cases.into_iter().enumerate() {
        store.set_failing(i == 3); // the error is answered on the awaited path
        let request = match credential {
            Some(t) => get("/web/hello").bearer(t),
            None => get("/web/hello"),
        };
        assert_eq!(send(&app, request.empty()).await.status, 200);
        let got = lines(&captured);
        assert_eq!(got.len(), 1, "{got:?}");
        let line = &got[0];
        match credential {
            None => assert!(!line.contains("session{"), "{line}"),
            Some(t) => {
                let this = SessionId::parse(t).unwrap().handle();
                let span = format!(
                    r#"session{{context="web" outcome="{outcome}" session="{}"}}"#,
                    this.as_str()
                );
                assert!(line.contains(&span), "{line} lacks {span}");
                assert!(!line.contains(t), "{line}");
                // Each request's own handle: the unknown credential's line does not carry the
                // signed-in session's (a span kept from an earlier request would).
                if t != token {
                    assert!(!line.contains(handle.as_str()), "{line}");
                }
            }
        }
    }
    drop(guard);
}
