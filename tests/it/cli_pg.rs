//! The operator CLI against PostgreSQL (a throwaway database per test) and a private
//! `redis-server`: `migrate` and the message every command gives on an unmigrated
//! database, retention, users by email, the schema check.
#![cfg(all(feature = "cli", feature = "postgres"))]

use tower_app_sessions::SessionId;
use uuid::Uuid;

use crate::cli::cli;
use crate::common::pg::TestDb;
use crate::common::redis_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_says_what_it_will_do_then_does_it_then_is_quiet() {
    let db = TestDb::create().await;
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let (redis_url, db_url) = (server.url(), db.url());
    let env = [
        ("SESSION_ENV", "production"),
        ("REDIS_URL", redis_url.as_str()),
        ("DATABASE_URL", db_url.as_str()),
    ];
    let user = Uuid::new_v4().to_string();
    // Unmigrated: every command that needs the schema says what to run, not the SQL error.
    for args in [
        vec!["status"],
        vec!["sessions", "--user", &user],
        vec!["revoke", "--user", &user, "--all"],
        vec![
            "purge",
            "--revoked-older-than",
            "30d",
            "--expired-older-than",
            "7d",
        ],
    ] {
        let run = cli(&env, &args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.all());
        assert!(
            run.stderr.contains("the identity database is not migrated (1 migration pending): run `tower-app-sessions migrate`"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !run.all().contains("does not exist"),
            "{args:?}: {}",
            run.all()
        );
    }
    let doctor = cli(&env, &["doctor"]);
    assert_eq!(doctor.status, 1);
    assert!(
        doctor
            .stdout
            .contains("Fix: run `tower-app-sessions migrate`."),
        "{}",
        doctor.stdout
    );

    let dry = cli(&env, &["migrate", "--dry-run"]);
    assert_eq!(dry.status, 0, "{}", dry.all());
    assert_eq!(
        dry.stdout,
        "1 to do (dry run: nothing changed):\n  identity database: apply migration 1 (multi app identity)\nrun `tower-app-sessions migrate` to apply\n"
    );
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'sessions'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(tables, 0, "the dry run created nothing");
    let applied = cli(&env, &["migrate"]);
    assert_eq!(applied.status, 0, "{}", applied.all());
    assert_eq!(
        applied.stdout,
        "applied 1:\n  identity database: apply migration 1 (multi app identity)\n"
    );
    assert_eq!(applied.stderr, "", "no NOTICE noise");
    let again = cli(&env, &["migrate"]);
    assert_eq!(
        (again.status, again.stdout.as_str(), again.stderr.as_str()),
        (0, "nothing to migrate: the database is up to date\n", "")
    );
    let status = cli(&env, &["status"]);
    assert_eq!(status.status, 0, "{}", status.all());

    // With the notifications configured, the triggers are the next thing to do.
    let notified = [
        env[0],
        env[1],
        env[2],
        ("SESSION_NOTIFIED_REVALIDATE_SECS", "300"),
    ];
    let status = cli(&notified, &["status"]);
    assert_eq!(status.status, 1, "{}", status.all());
    assert!(
        status
            .stdout
            .contains("[FAIL] the notification triggers are installed"),
        "{}",
        status.stdout
    );
    let dry = cli(&notified, &["migrate", "--dry-run", "--json"]);
    assert_eq!(
        dry.json()["pending"],
        serde_json::json!(["identity database: install the notification triggers"])
    );
    let applied = cli(&notified, &["migrate"]);
    assert_eq!(applied.status, 0, "{}", applied.all());
    let again = cli(&notified, &["migrate"]);
    assert_eq!(
        again.stdout,
        "nothing to migrate: the database is up to date\n",
        "{}",
        again.all()
    );
    assert_eq!(cli(&notified, &["status"]).status, 0);
}

/// The crate's pool asks PostgreSQL for warnings only: the idempotent migration's NOTICEs
/// (`enum label "admin" already exists, skipping`) are never sent.
#[tokio::test]
async fn the_pool_takes_no_notices() {
    let db = TestDb::create().await;
    let pool = tower_app_sessions::store::postgres::connect(&db.url())
        .await
        .unwrap();
    let level: String = sqlx::query_scalar("SHOW client_min_messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(level, "warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_sessions_revoke_and_the_schema_on_postgres() {
    use tower_app_sessions::users::PgUsers;
    use tower_app_sessions::{Role, User, UserRepository};

    let db = TestDb::migrated().await;
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let (redis_url, db_url) = (server.url(), db.url());
    let env = [
        ("SESSION_ENV", "production"),
        ("REDIS_URL", redis_url.as_str()),
        ("DATABASE_URL", db_url.as_str()),
    ];
    let users = PgUsers::new(db.pool.clone());
    let email = format!("cli-{}@example.com", Uuid::new_v4().simple());
    let user = users
        .create(User::new(email.clone(), Role::User))
        .await
        .unwrap();
    // Rows: 3 live, 4 revoked 40 days ago, 2 revoked yesterday, 5 expired 10 days ago,
    // 1 expired yesterday.
    let rows: [(i32, &str, &str); 5] = [
        (3, "false", "now() + interval '1 hour'"),
        (4, "true", "now() - interval '40 days'"),
        (2, "true", "now() - interval '1 day'"),
        (5, "false", "now() - interval '10 days'"),
        (1, "false", "now() - interval '1 day'"),
    ];
    for (n, revoked, expires) in rows {
        for _ in 0..n {
            let sql = format!(
                "INSERT INTO sessions (id, user_id, expires_at, revoked, revoked_at, application_context) \
                 VALUES ($1, $2, {expires}, {revoked}, CASE WHEN {revoked} THEN {expires} END, 'web')"
            );
            sqlx::query(&sql)
                .bind(SessionId::generate().unwrap().as_str())
                .bind(user.id)
                .execute(&db.pool)
                .await
                .unwrap();
        }
    }
    // And one revoked 40 days ago whose session has not expired yet: its row is what keeps
    // a Redis copy of it from being served, so no retention bound removes it.
    sqlx::query(
        "INSERT INTO sessions (id, user_id, expires_at, revoked, revoked_at, application_context) \
         VALUES ($1, $2, now() + interval '1 day', true, now() - interval '40 days', 'web')",
    )
    .bind(SessionId::generate().unwrap().as_str())
    .bind(user.id)
    .execute(&db.pool)
    .await
    .unwrap();
    let status = cli(&env, &["status", "--json"]);
    assert_eq!(status.status, 0, "{}", status.all());
    let web = &status.json()["contexts"]["web"]["postgres_sessions"];
    assert_eq!(
        (
            web["live"].as_u64(),
            web["revoked"].as_u64(),
            web["expired"].as_u64()
        ),
        (Some(3), Some(7), Some(6))
    );

    let purged = cli(
        &env,
        &[
            "purge",
            "--revoked-older-than",
            "30d",
            "--expired-older-than",
            "7d",
            "--batch",
            "2",
        ],
    );
    assert_eq!(purged.status, 0, "{}", purged.stderr);
    assert_eq!(
        purged.stdout,
        "removed 4 revoked rows (revoked over 30days ago, session expired) and 5 expired rows (expired over 7days ago)\n\
         kept 1 revoked row whose session has not expired yet: a revoked row stays until its session would have expired, because it is what keeps that session ended\n\
         kept 2 revoked rows revoked within the last 30days (--revoked-older-than)\n\
         kept 1 expired row expired within the last 7days (--expired-older-than)\n"
    );
    // One line per batch that changed the count, none repeated.
    let steps: Vec<&str> = purged.stderr.lines().collect();
    let mut unique = steps.clone();
    unique.dedup();
    assert_eq!(steps, unique, "{}", purged.stderr);
    assert_eq!(
        steps.last(),
        Some(&"purge: rows deleted: 9"),
        "{}",
        purged.stderr
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 7);
    let again = cli(
        &env,
        &[
            "purge",
            "--revoked-older-than",
            "30d",
            "--expired-older-than",
            "7d",
            "--json",
        ],
    );
    assert_eq!(
        again.json(),
        serde_json::json!({"revoked": 0, "expired": 0, "kept": {"revoked_unexpired": 1, "revoked_recent": 2, "expired_recent": 1}})
    );

    // By email through PostgreSQL: the three live rows.
    let listed = cli(&env, &["sessions", "--user", &email, "--json"]);
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(3));
    // mock-with-write-through: the apps serve from their own memory; the CLI works on the
    // copies written through, and says so.
    let write_through = [
        env[0],
        env[1],
        env[2],
        ("SESSION_MIGRATION_STRATEGY", "mock-with-write-through"),
    ];
    let through = cli(&write_through, &["sessions", "--user", &email, "--json"]);
    assert_eq!(through.status, 0, "{}", through.all());
    assert_eq!(through.json()["sessions"].as_array().map(Vec::len), Some(3));
    assert!(
        through
            .stderr
            .contains("note: SESSION_MIGRATION_STRATEGY=mock-with-write-through"),
        "{}",
        through.stderr
    );
    let revoked = cli(
        &env,
        &["revoke", "--user", &email, "--context", "web", "--json"],
    );
    assert_eq!(
        (revoked.status, revoked.json()["ended"].as_u64()),
        (0, Some(3)),
        "{}",
        revoked.stderr
    );

    // The schema matches the Prisma target; a column dropped, and one made nullable, are
    // named with their fix.
    let doctor = cli(&env, &["doctor", "--json"]);
    assert_eq!(doctor.status, 0, "{}", doctor.stdout);
    sqlx::query("ALTER TABLE sessions DROP COLUMN last_activity")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE sessions ALTER COLUMN application_context DROP NOT NULL")
        .execute(&db.pool)
        .await
        .unwrap();
    let doctor = cli(&env, &["doctor"]);
    assert_eq!(doctor.status, 1);
    assert!(
        doctor
            .stdout
            .contains("sessions.last_activity is missing. Fix: run `tower-app-sessions migrate`.")
            && doctor
                .stdout
                .contains("sessions.application_context accepts NULL, the target does not. Fix:"),
        "{}",
        doctor.stdout
    );
    let status = cli(&env, &["status"]);
    assert_eq!(status.status, 1);
    assert!(
        status
            .stdout
            .contains("[FAIL] the sessions table matches the Prisma target (every row has an application_context) (sessions.application_context accepts NULL, the target does not; sessions.last_activity is missing; `tower-app-sessions doctor` says how to fix it)"),
        "{}",
        status.stdout
    );
}
