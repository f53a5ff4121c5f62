//! The operator CLI (`tower-app-sessions`, feature `cli`) run as a binary against real
//! servers with known data (a private `redis-server`, a throwaway PostgreSQL database): its
//! output (text and `--json`) and its exit status (`0` clean, `1` a check failed, a problem
//! was found or something was skipped, `2` it could not run). PostgreSQL: `cli_pg.rs`;
//! hostile arguments: `cli_input.rs`.
#![cfg(feature = "cli")]

use std::process::{Command, Stdio};
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use tower_app_sessions::record::now_ms;
use tower_app_sessions::store::redis::keys;
use tower_app_sessions::{AppContext, SessionId, SessionMetadata, SessionRecord};
use uuid::Uuid;

use crate::common::redis_server::{RedisCluster, RedisServer};

pub(crate) struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    /// Both streams, for assertion messages and for searching.
    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn command(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tower-app-sessions"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args);
    command
}

/// Runs the binary with `env` only (nothing inherited that configures sessions).
pub(crate) fn cli(env: &[(&str, &str)], args: &[&str]) -> Run {
    let output = command(env, args).output().expect("the CLI runs");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub(crate) fn record(user: Uuid) -> String {
    let record = SessionRecord::new(
        user,
        SessionMetadata::new().ip("203.0.113.9"),
        now_ms(),
        Duration::from_secs(3600),
    );
    serde_json::to_string(&record).unwrap()
}

/// `legacy` legacy keys and `web` context keys (not indexed) of one user, with `conn`.
pub(crate) async fn seed(conn: &mut impl AsyncCommands, user: Uuid, legacy: usize, web: usize) {
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

/// No id of any `session:*` key appears in `run`'s output.
async fn no_ids_in(run: &Run, conn: &mut impl AsyncCommands) {
    let keys: Vec<String> = conn.keys("session:*").await.unwrap();
    for key in &keys {
        let id = key.rsplit(':').next().unwrap();
        assert!(
            !run.all().contains(id),
            "an id in the output: {}",
            run.all()
        );
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

    // 25 legacy keys left, and what to run about them: the checklist fails, the PostgreSQL
    // part is skipped.
    let status = cli(&env, &["status"]);
    assert_eq!(status.status, 1, "{}", status.all());
    assert!(
        status.stdout.contains(
            "[FAIL] no legacy session:<id> keys left (25 left: 25 session records to migrate: \
             run `tower-app-sessions migrate-legacy --move`)"
        ),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("[PASS] the legacy fallback is off"));
    assert!(status.stdout.contains("skipped: PostgreSQL"));
    let json = cli(&env, &["status", "--json"]);
    assert_eq!(json.status, 1);
    assert_eq!(json.json()["legacy_keys"], 25);
    assert_eq!(json.json()["legacy"]["to_migrate"], 25);
    assert_eq!(json.json()["contexts"]["web"]["redis_sessions"], 4);

    // Doctor: the 4 context keys were written without the per-user index; one sentence
    // says so, with the fix.
    let doctor = cli(&env, &["doctor", "--json"]);
    assert_eq!(doctor.status, 1, "{}", doctor.stdout);
    let found = doctor.json();
    assert_eq!(found["redis"]["checked"], 29);
    let problems = found["redis"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 4, "{found}");
    assert!(problems.iter().all(|p| p["problem"] == "not_indexed"));
    assert!(problems.iter().all(|p| p["user"] == user.to_string()));
    let text = cli(&env, &["doctor"]);
    assert!(
        text.stdout.contains(
            "4 session keys (session ") && text.stdout.contains(
            "are not in the user's index user-sessions:{<uuid>}, so `sessions` and `revoke` miss them"
        ) && text.stdout.contains(". Fix: they join the index the next time"),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains("{\""),
        "no JSON fragments: {}",
        text.stdout
    );
    no_ids_in(&doctor, &mut conn).await;

    // The dry run reads and checks what the move would, and writes nothing; the move's
    // counts add up and agree with it; a rerun finds nothing.
    let dry = cli(&env, &["migrate-legacy", "--move", "--dry-run", "--json"]);
    assert_eq!(dry.status, 0, "{}", dry.all());
    let preview = dry.json();
    assert_eq!(
        (
            preview["dry_run"].as_bool(),
            preview["scanned"].as_u64(),
            preview["moved"].as_u64()
        ),
        (Some(true), Some(25), Some(25))
    );
    assert_eq!(cli(&env, &["status", "--json"]).json()["legacy_keys"], 25);
    let moved = cli(
        &env,
        &["migrate-legacy", "--move", "--batch", "7", "--json"],
    );
    assert_eq!(moved.status, 0, "{}", moved.stderr);
    let report = moved.json();
    for count in ["scanned", "copied", "moved", "skipped", "failed"] {
        assert_eq!(
            report[count], preview[count],
            "{count}: {report} vs {preview}"
        );
    }
    assert_eq!(report["dry_run"], false);
    // One line per step (a SCAN page that found legacy keys), none repeated, on stderr
    // when it is not a terminal. (SCAN's COUNT is a hint: the pages' sizes vary.)
    let done: Vec<u64> = moved
        .stderr
        .lines()
        .map(|line| {
            let n = line
                .strip_prefix("migrate-legacy: ")
                .and_then(|l| l.strip_suffix(" of 25"));
            n.and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{line:?}"))
        })
        .collect();
    assert!(
        done.len() >= 2 && done.windows(2).all(|w| w[0] < w[1]),
        "{}",
        moved.stderr
    );
    assert_eq!(done.last(), Some(&25), "{}", moved.stderr);
    let again = cli(&env, &["migrate-legacy", "--move", "--json"]);
    assert_eq!(again.json()["scanned"], 0);
    let clean = cli(&env, &["status"]);
    assert_eq!(clean.status, 0, "{}", clean.stdout);
    assert!(clean.stdout.contains("web: redis 29"), "{}", clean.stdout);
    assert!(clean
        .stdout
        .contains("[PASS] no legacy session:<id> keys left (none left)"));

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

/// A legacy key stored as a list, one that is not JSON, a session key stored as a hash, a
/// user index stored as a string: each is named by handle and skipped, the run goes on,
/// and the exit status is 1 (never 2, never WRONGTYPE); the quarantine clears the way for
/// the checklist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_the_wrong_type_are_named_and_skipped() {
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let url = server.url();
    let env = [("SESSION_ENV", "development"), ("REDIS_URL", url.as_str())];
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (ada, bob) = (Uuid::new_v4(), Uuid::new_v4());
    seed(&mut conn, ada, 3, 0).await;
    let (list, junk, hash) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let () = conn.rpush(keys::legacy(&list), &["a", "b"]).await.unwrap();
    let () = conn.expire(keys::legacy(&list), 600).await.unwrap();
    let () = conn
        .set_ex(keys::legacy(&junk), "not a record", 600)
        .await
        .unwrap();
    let () = conn
        .hset(
            keys::session(&AppContext::Web, &hash),
            "user_id",
            ada.to_string(),
        )
        .await
        .unwrap();
    let () = conn
        .zadd(
            keys::user_index(&ada),
            keys::index_member(&AppContext::Web, &hash),
            now_ms() + 3_600_000,
        )
        .await
        .unwrap();
    // Bob: a web session, whose index is a string.
    let bobs = SessionId::generate().unwrap();
    let () = conn
        .set_ex(keys::session(&AppContext::Web, &bobs), record(bob), 3600)
        .await
        .unwrap();
    let () = conn
        .set(keys::user_index(&bob), "not an index")
        .await
        .unwrap();

    // The dry run and the run check the same and count the same; the counts add up.
    let dry = cli(&env, &["migrate-legacy", "--dry-run", "--json"]);
    let run = cli(&env, &["migrate-legacy", "--json"]);
    for (r, what) in [(&dry, "dry run"), (&run, "run")] {
        assert_eq!(r.status, 1, "{what}: {}", r.all());
        let j = r.json();
        assert_eq!(
            (
                j["scanned"].as_u64(),
                j["copied"].as_u64(),
                j["moved"].as_u64(),
                j["skipped"].as_u64(),
                j["failed"].as_u64()
            ),
            (Some(5), Some(3), Some(0), Some(0), Some(2)),
            "{what}: {j}"
        );
        let failures = j["failures"].as_array().unwrap();
        let mut named: Vec<(String, String)> = failures
            .iter()
            .map(|f| {
                (
                    f["session"].as_str().unwrap().to_owned(),
                    f["problem"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        named.sort();
        let mut expected = vec![
            (list.handle().to_string(), "wrong_type".to_owned()),
            (junk.handle().to_string(), "unparseable".to_owned()),
        ];
        expected.sort();
        assert_eq!(named, expected, "{what}");
    }
    let text = cli(&env, &["migrate-legacy"]);
    assert_eq!(text.status, 1);
    assert!(
        text.stdout.starts_with(
            "scanned 5: copied 0, moved 0, skipped 3 (3 already there, 0 expired or gone), \
             failed 2 (not session records, left in place)"
        ),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!(
            "session {} holds a list, not a session record: left in place",
            list.handle()
        )),
        "{}",
        text.stdout
    );
    no_ids_in(&text, &mut conn).await;

    // Status names what blocks it.
    let status = cli(&env, &["status"]);
    assert_eq!(status.status, 1);
    assert!(
        status
            .stdout
            .contains("2 keys that are not session records (session ")
            && status
                .stdout
                .contains("run `tower-app-sessions migrate-legacy --move --quarantine`"),
        "{}",
        status.stdout
    );

    // Doctor: by handle, with the fix; the index of the wrong type by its user.
    let doctor = cli(&env, &["doctor", "--json"]);
    assert_eq!(doctor.status, 1, "{}", doctor.all());
    let problems = doctor.json()["redis"]["problems"]
        .as_array()
        .unwrap()
        .clone();
    let has = |session: &SessionId, problem: &str| {
        problems
            .iter()
            .any(|p| p["session"] == session.handle().to_string() && p["problem"] == problem)
    };
    assert!(
        has(&hash, "wrong_type") && has(&list, "wrong_type") && has(&junk, "unparseable"),
        "{problems:?}"
    );
    assert!(has(&bobs, "index_wrong_type"), "{problems:?}");
    let doctor = cli(&env, &["doctor"]);
    assert!(
        doctor.stdout.contains(&format!(
            "the session index of {bob} holds another Redis type than a sorted set"
        )) && doctor
            .stdout
            .contains("Fix: run `tower-app-sessions migrate-legacy --quarantine`"),
        "{}",
        doctor.stdout
    );

    // Sessions and revoke go on past them: exit 1, each one named on stderr.
    let listed = cli(&env, &["sessions", "--user", &ada.to_string(), "--json"]);
    assert_eq!(listed.status, 1, "{}", listed.all());
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(3));
    assert!(
        listed
            .stderr
            .contains(&format!("session={}", hash.handle())),
        "{}",
        listed.stderr
    );
    let revoked = cli(&env, &["revoke", "--user", &bob.to_string(), "--all"]);
    assert_eq!(revoked.status, 1, "{}", revoked.all());
    assert!(
        revoked.stdout.contains("ended 0 sessions"),
        "{}",
        revoked.stdout
    );
    assert!(
        revoked
            .stderr
            .contains("per-user session index holds another Redis type than a sorted set"),
        "{}",
        revoked.stderr
    );
    assert!(!revoked.all().contains("WRONGTYPE"), "{}", revoked.all());

    // The quarantine: out of session:*, TTL kept, listed by handle; then the checklist passes.
    let quarantined = cli(
        &env,
        &["migrate-legacy", "--move", "--quarantine", "--json"],
    );
    assert_eq!(quarantined.status, 0, "{}", quarantined.all());
    let q = quarantined.json();
    assert_eq!(
        (
            q["failed"].as_u64(),
            q["quarantined"].as_u64(),
            q["moved"].as_u64()
        ),
        (Some(2), Some(2), Some(3))
    );
    for id in [&list, &junk] {
        let key = format!("session-quarantine:{}", id.handle());
        assert!(
            q["failures"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["quarantined_as"] == key),
            "{q}"
        );
        let ttl: i64 = conn.ttl(&key).await.unwrap();
        assert!((590..=600).contains(&ttl), "TTL kept: {ttl}");
        let left: bool = conn.exists(keys::legacy(id)).await.unwrap();
        assert!(!left);
    }
    let status = cli(&env, &["status"]);
    assert_eq!(status.status, 0, "{}", status.stdout);
    let again = cli(
        &env,
        &["migrate-legacy", "--move", "--quarantine", "--json"],
    );
    assert_eq!(
        (again.status, again.json()["scanned"].as_u64()),
        (0, Some(0))
    );
}

/// `sessions … | head -1`: the reader goes away; the command ends quietly with its own
/// status, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_output_quietly() {
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let url = server.url();
    let env = [("SESSION_ENV", "development"), ("REDIS_URL", url.as_str())];
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let user = Uuid::new_v4();
    seed(&mut conn, user, 50, 0).await;
    let moved = cli(&env, &["migrate-legacy", "--move"]);
    assert_eq!(moved.status, 0, "{}", moved.all());
    for args in [
        vec!["sessions", "--user", &user.to_string()],
        vec!["sessions", "--user", &user.to_string(), "--json"],
        vec!["status"],
        vec!["doctor"],
    ] {
        // A pipe whose reading end is already closed: every write to it fails (EPIPE).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = command(&env, &args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert!(
            matches!(output.status.code(), Some(0 | 1)),
            "{args:?}: {:?} {stderr}",
            output.status
        );
    }
}

/// `revoke` publishes on `REDIS_URL`'s invalidation channel: an app that caches the session
/// for ten minutes stops serving it as soon as the message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_reaches_the_apps_caches() {
    use crate::common::{get, login, routes, send, Finish};
    use tower_app_sessions::cache::InvalidationBus;
    use tower_app_sessions::store::redis::{RedisConfig, RedisStore};
    use tower_app_sessions::{MemoryUsers, Role, Sessions, User};

    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let url = server.url();
    let env = [("SESSION_ENV", "development"), ("REDIS_URL", url.as_str())];
    let users = MemoryUsers::new();
    let user = users
        .insert(User::new("cached@example.com", Role::User))
        .unwrap()
        .id;
    let store = RedisStore::connect(RedisConfig::new(url.clone()))
        .await
        .unwrap();
    let bus = InvalidationBus::redis(&url).await.unwrap();
    let sessions = Sessions::new(store, users).cache(&bus, 100, Duration::from_secs(600));
    let web = routes().layer(sessions.layer(AppContext::Web));
    let token = login(&web, user).await;
    let me = || send(&web, get("/me").cookie("sessionId", &token).empty());
    assert_eq!(me().await.status, 200, "cached from here on");
    let revoked = cli(&env, &["revoke", "--user", &user.to_string(), "--all"]);
    assert_eq!(revoked.status, 0, "{}", revoked.all());
    assert_eq!(
        revoked.stdout,
        format!("ended 1 session of {user} (every context)\n")
    );
    // The message crosses processes: wait for it, within a bound that fails the test.
    let dropped = tokio::time::timeout(Duration::from_secs(5), async {
        while me().await.status == 200 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(dropped.is_ok(), "the cache kept serving a revoked session");
    assert_eq!(me().await.status, 401);
}

/// `--help` defines each count of the legacy migration's report.
#[test]
fn the_report_counts_are_defined_in_help() {
    let help = cli(&[], &["migrate-legacy", "--help"]);
    assert_eq!(help.status, 0);
    for definition in [
        "scanned = copied + moved + skipped + failed",
        "copied   copied to session:web:<id>",
        "moved    in place under session:web:<id>",
        "skipped  nothing to migrate",
        "failed   not a session record",
    ] {
        assert!(
            help.stdout.contains(definition),
            "{definition}: {}",
            help.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_migrate_on_a_redis_cluster() {
    let cluster = tokio::task::block_in_place(RedisCluster::start);
    let urls = cluster.urls().join(",");
    let env = [("SESSION_ENV", "development"), ("REDIS_URL", urls.as_str())];
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    seed(&mut conn, Uuid::new_v4(), 300, 0).await;
    let list = SessionId::generate().unwrap();
    let () = conn.rpush(keys::legacy(&list), &["a"]).await.unwrap();
    let () = conn.expire(keys::legacy(&list), 900).await.unwrap();
    let status = cli(&env, &["--cluster", "status", "--json"]);
    assert_eq!(status.status, 1, "{}", status.all());
    assert_eq!(status.json()["legacy_keys"], 301);
    // REDIS_CLUSTER=true is the same as --cluster.
    let mut by_env = env.to_vec();
    by_env.push(("REDIS_CLUSTER", "true"));
    let dry = cli(
        &by_env,
        &[
            "migrate-legacy",
            "--move",
            "--quarantine",
            "--dry-run",
            "--json",
        ],
    );
    let moved = cli(
        &env,
        &[
            "--cluster",
            "migrate-legacy",
            "--move",
            "--quarantine",
            "--json",
        ],
    );
    assert_eq!(
        (dry.status, moved.status),
        (0, 0),
        "{}{}",
        dry.all(),
        moved.all()
    );
    for count in ["scanned", "moved", "failed", "quarantined"] {
        assert_eq!(dry.json()[count], moved.json()[count], "{count}");
    }
    assert_eq!(
        (
            moved.json()["moved"].as_u64(),
            moved.json()["quarantined"].as_u64()
        ),
        (Some(300), Some(1))
    );
    // Across slots: restored under the quarantine key with its TTL, the legacy key gone.
    let key = keys::QUARANTINE_PREFIX.to_owned() + &list.handle().to_string();
    let (kind, ttl): (String, i64) = (
        redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap(),
        conn.ttl(&key).await.unwrap(),
    );
    assert_eq!(kind, "list");
    assert!((890..=900).contains(&ttl), "{ttl}");
    let status = cli(&by_env, &["status", "--json"]);
    assert_eq!(status.status, 0, "{}", status.all());
    assert_eq!(status.json()["legacy_keys"], 0);
    assert_eq!(status.json()["contexts"]["web"]["redis_sessions"], 300);
}
