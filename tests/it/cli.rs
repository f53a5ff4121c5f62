//! The operator CLI (`tower-app-sessions`, feature `cli`) run as a binary against real
//! servers with known data: its output (text and `--json`) and its exit status (`0` clean,
//! `1` a check failed or a problem was found, `2` it could not run).
#![cfg(feature = "cli")]

use std::process::Command;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::redis::keys;
use tower_app_sessions::{AppContext, SessionId, SessionMetadata, SessionRecord};
use uuid::Uuid;

use crate::common::redis_server::{RedisCluster, RedisServer};

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// Runs the binary with `env` only (nothing inherited that configures sessions).
fn cli(env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_tower-app-sessions"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("the CLI runs");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn record(user: Uuid) -> String {
    let record = SessionRecord::new(
        user,
        SessionMetadata::new().ip("203.0.113.9"),
        now_ms(),
        Duration::from_secs(3600),
    );
    serde_json::to_string(&record).unwrap()
}

/// `legacy` legacy keys and `web` context keys (not indexed) of one user, with `conn`.
async fn seed(conn: &mut impl AsyncCommands, user: Uuid, legacy: usize, web: usize) {
    let json = record(user);
    for _ in 0..legacy {
        let key = keys::legacy(&SessionId::generate().unwrap());
        let () = conn.set_ex(key, &json, 3600).await.unwrap();
    }
    for _ in 0..web {
        let key = keys::session(&AppContext::Web, &SessionId::generate().unwrap());
        let () = conn.set_ex(key, &json, 3600).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_migrate_and_doctor_on_redis_alone() {
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let url = server.url();
    let env = [("SESSION_ENV", "development"), ("REDIS_URL", url.as_str())];
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let user = Uuid::new_v4();
    seed(&mut conn, user, 25, 4).await;

    // 25 legacy keys left: the checklist fails, the PostgreSQL part is skipped.
    let status = cli(&env, &["status"]);
    assert_eq!(status.status, 1, "{}{}", status.stdout, status.stderr);
    assert!(
        status
            .stdout
            .contains("[FAIL] no legacy session:<id> keys left (25 left)"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("[PASS] the legacy fallback is off"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("skipped: PostgreSQL"),
        "{}",
        status.stdout
    );
    let json = cli(&env, &["status", "--json"]);
    assert_eq!(json.status, 1);
    assert_eq!(json.json()["legacy_keys"], 25);
    assert_eq!(json.json()["contexts"]["web"]["redis_sessions"], 4);

    // Doctor: the 4 context keys were written without the per-user index.
    let doctor = cli(&env, &["doctor", "--json"]);
    assert_eq!(doctor.status, 1, "{}", doctor.stdout);
    let found = doctor.json();
    assert_eq!(found["redis"]["checked"], 29);
    let problems = found["redis"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 4, "{found}");
    assert!(problems.iter().all(|p| p["problem"] == "not_indexed"));
    // Named by handle, never by the id in the key.
    let keys: Vec<String> = conn.keys("session:*").await.unwrap();
    for key in &keys {
        let id = key.rsplit(':').next().unwrap();
        assert!(!doctor.stdout.contains(id), "an id in the doctor's output");
    }

    // A dry run writes nothing; the move leaves no legacy key; a rerun finds nothing.
    let dry = cli(&env, &["migrate-legacy", "--move", "--dry-run", "--json"]);
    assert_eq!(
        (dry.status, dry.json()["legacy_keys"].as_u64()),
        (0, Some(25))
    );
    let moved = cli(
        &env,
        &["migrate-legacy", "--move", "--batch", "7", "--json"],
    );
    assert_eq!(moved.status, 0, "{}", moved.stderr);
    let report = moved.json();
    assert_eq!(
        (report["copied"].as_u64(), report["moved"].as_u64()),
        (Some(25), Some(25))
    );
    assert_eq!(report["failed"], 0);
    assert!(
        moved.stderr.contains("migrate-legacy: 25 of 25"),
        "plain progress lines: {}",
        moved.stderr
    );
    let again = cli(&env, &["migrate-legacy", "--move", "--json"]);
    assert_eq!(again.json()["scanned"], 0);
    let clean = cli(&env, &["status"]);
    assert_eq!(clean.status, 0, "{}", clean.stdout);
    assert!(clean.stdout.contains("web: redis 29"), "{}", clean.stdout);

    // Sessions and revoke by UUID (no database: emails cannot be looked up).
    let listed = cli(&env, &["sessions", "--user", &user.to_string(), "--json"]);
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    assert_eq!(
        listed.json()["sessions"].as_array().map(Vec::len),
        Some(25),
        "the migrated ones are indexed"
    );
    let by_email = cli(&env, &["sessions", "--user", "someone@example.com"]);
    assert_eq!(by_email.status, 2);
    assert!(
        by_email.stderr.contains("needs DATABASE_URL"),
        "{}",
        by_email.stderr
    );
    let revoked = cli(
        &env,
        &["revoke", "--user", &user.to_string(), "--all", "--json"],
    );
    assert_eq!(
        (revoked.status, revoked.json()["ended"].as_u64()),
        (0, Some(25))
    );
    let scope_missing = cli(&env, &["revoke", "--user", &user.to_string()]);
    assert_eq!(scope_missing.status, 2, "--context or --all is required");

    // Bad configuration: exit 2, the variable named.
    let down = cli(
        &[
            ("SESSION_ENV", "development"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
        &["status"],
    );
    assert_eq!(down.status, 2);
    assert!(down.stderr.contains("REDIS_URL"), "{}", down.stderr);
    let mock = cli(&[("SESSION_ENV", "mock")], &["status", "--json"]);
    assert_eq!(mock.status, 2);
    assert!(mock.json()["error"].as_str().unwrap().contains("in-memory"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_migrate_on_a_redis_cluster() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let urls = cluster.urls().join(",");
    let env = [("SESSION_ENV", "development"), ("REDIS_URL", urls.as_str())];
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    seed(&mut conn, Uuid::new_v4(), 300, 0).await;
    let status = cli(&env, &["--cluster", "status", "--json"]);
    assert_eq!(status.status, 1, "{}{}", status.stdout, status.stderr);
    assert_eq!(status.json()["legacy_keys"], 300);
    let moved = cli(&env, &["--cluster", "migrate-legacy", "--move", "--json"]);
    assert_eq!(moved.status, 0, "{}", moved.stderr);
    assert_eq!(moved.json()["moved"], 300);
    let status = cli(&env, &["--cluster", "status", "--json"]);
    assert_eq!(status.status, 0);
    assert_eq!(status.json()["legacy_keys"], 0);
    assert_eq!(status.json()["contexts"]["web"]["redis_sessions"], 300);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_sessions_revoke_and_the_schema_on_postgres() {
    use crate::common::pg::TestDb;
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
    assert_eq!(status.status, 0, "{}{}", status.stdout, status.stderr);
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
            "--json",
        ],
    );
    assert_eq!(purged.status, 0, "{}", purged.stderr);
    assert_eq!(
        (
            purged.json()["revoked"].as_u64(),
            purged.json()["expired"].as_u64()
        ),
        (Some(4), Some(5))
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 7);
    let tombstone: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE revoked AND expires_at > now()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        tombstone, 1,
        "a revoked row of an unexpired session was purged"
    );
    let bad = cli(
        &env,
        &[
            "purge",
            "--revoked-older-than",
            "soon",
            "--expired-older-than",
            "7d",
        ],
    );
    assert_eq!(bad.status, 2);

    // By email through PostgreSQL: the three live rows.
    let listed = cli(&env, &["sessions", "--user", &email, "--json"]);
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(3));
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

    // The schema matches the Prisma target; a column dropped is named.
    let doctor = cli(&env, &["doctor", "--json"]);
    assert_eq!(doctor.status, 0, "{}", doctor.stdout);
    sqlx::query("ALTER TABLE sessions DROP COLUMN last_activity")
        .execute(&db.pool)
        .await
        .unwrap();
    let doctor = cli(&env, &["doctor"]);
    assert_eq!(doctor.status, 1);
    assert!(
        doctor.stdout.contains("sessions.last_activity is missing"),
        "{}",
        doctor.stdout
    );
}
