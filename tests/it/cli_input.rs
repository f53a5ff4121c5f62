//! Hostile command-line input, as tables: every argument of the operator CLI that takes a
//! value, and the flags given values. Each bad value is refused with exit status 2 and a
//! message naming the argument (quoted and escaped: no control character reaches the
//! terminal), and changes nothing (the keys and sessions seeded are all still there).
#![cfg(feature = "cli")]

use redis::AsyncCommands;
use tower_app_sessions::store::redis::keys;
use tower_app_sessions::{AppContext, SessionId};
use uuid::Uuid;

use crate::cli::{cli, record};
use crate::common::redis_server::RedisServer;

/// What the hostile runs must leave untouched: one legacy key and one indexed web session.
async fn untouched(
    conn: &mut redis::aio::MultiplexedConnection,
    legacy: &str,
    web: &str,
    index: &str,
) {
    let (legacy, web): (bool, bool) = (
        conn.exists(legacy).await.unwrap(),
        conn.exists(web).await.unwrap(),
    );
    let members: u64 = conn.zcard(index).await.unwrap();
    assert!(
        legacy && web && members == 1,
        "something changed: {legacy} {web} {members}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_argument_refuses_bad_values_and_changes_nothing() {
    let server = tokio::task::block_in_place(RedisServer::start_plain);
    let url = server.url();
    let env = [("SESSION_ENV", "development"), ("REDIS_URL", url.as_str())];
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let user = Uuid::new_v4();
    let uuid = user.to_string();
    let (legacy_id, web_id) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let (legacy, web, index) = (
        keys::legacy(&legacy_id),
        keys::session(&AppContext::Web, &web_id),
        keys::user_index(&user),
    );
    let () = conn.set_ex(&legacy, record(user), 3600).await.unwrap();
    let () = conn.set_ex(&web, record(user), 3600).await.unwrap();
    let () = conn
        .zadd(
            &index,
            keys::index_member(&AppContext::Web, &web_id),
            tower_app_sessions::record::now_ms() + 3_600_000,
        )
        .await
        .unwrap();

    let long = "a".repeat(100_000);
    let escape = "\u{1b}[31mred@example.com";
    // (what, args, a word the error must contain)
    let table: Vec<(&str, Vec<&str>, &str)> = vec![
        // --user: a UUID or an email address, nothing else.
        (
            "user empty",
            vec!["revoke", "--user", "", "--all"],
            "--user",
        ),
        (
            "user word",
            vec!["revoke", "--user", "not-a-uuid", "--all"],
            "neither a UUID nor an email address",
        ),
        (
            "user half email",
            vec!["revoke", "--user", "a@", "--all"],
            "--user",
        ),
        (
            "user no local part",
            vec!["revoke", "--user", "@example.com", "--all"],
            "--user",
        ),
        (
            "user two @",
            vec!["revoke", "--user", "a@b@c", "--all"],
            "--user",
        ),
        (
            "user space",
            vec!["revoke", "--user", "a b@example.com", "--all"],
            "--user",
        ),
        (
            "user escape sequence",
            vec!["revoke", "--user", escape, "--all"],
            "--user",
        ),
        (
            "user zero width",
            vec!["sessions", "--user", "ad\u{200b}a@example.com"],
            "--user",
        ),
        (
            "user not NFC",
            vec!["sessions", "--user", "\u{212a}ate@example.com"],
            "--user",
        ),
        ("user 100k", vec!["sessions", "--user", &long], "--user"),
        (
            "user uuid with junk",
            vec![
                "sessions",
                "--user",
                "6f1c1d34-8a34-4f4e-9d3a-1a2b3c4d5e6f'--",
            ],
            "--user",
        ),
        ("user missing value", vec!["sessions", "--user"], "--user"),
        // --context: a context name.
        (
            "context empty",
            vec!["revoke", "--user", &uuid, "--context", ""],
            "--context",
        ),
        (
            "context upper",
            vec!["revoke", "--user", &uuid, "--context", "WEB"],
            "--context",
        ),
        (
            "context pattern",
            vec!["revoke", "--user", &uuid, "--context", "*"],
            "--context",
        ),
        (
            "context colon",
            vec!["sessions", "--user", &uuid, "--context", "web:x"],
            "--context",
        ),
        (
            "context escape",
            vec!["sessions", "--user", &uuid, "--context", "\u{1b}]0;x\u{7}"],
            "--context",
        ),
        (
            "context 100k",
            vec!["sessions", "--user", &uuid, "--context", &long],
            "--context",
        ),
        (
            "context and all",
            vec!["revoke", "--user", &uuid, "--context", "web", "--all"],
            "--all",
        ),
        // --batch (migrate-legacy, purge): 1 to 100000.
        (
            "batch zero",
            vec!["migrate-legacy", "--move", "--batch", "0"],
            "--batch",
        ),
        (
            "batch negative",
            vec!["migrate-legacy", "--move", "--batch=-1"],
            "--batch",
        ),
        (
            "batch too big",
            vec!["migrate-legacy", "--move", "--batch", "100001"],
            "--batch",
        ),
        (
            "batch huge",
            vec![
                "migrate-legacy",
                "--move",
                "--batch",
                "99999999999999999999",
            ],
            "--batch",
        ),
        (
            "batch float",
            vec!["migrate-legacy", "--move", "--batch", "1e3"],
            "--batch",
        ),
        (
            "batch word",
            vec!["migrate-legacy", "--move", "--batch", "all"],
            "--batch",
        ),
        (
            "batch empty",
            vec!["migrate-legacy", "--move", "--batch", ""],
            "--batch",
        ),
        (
            "purge batch zero",
            vec![
                "purge",
                "--revoked-older-than",
                "1d",
                "--expired-older-than",
                "1d",
                "--batch",
                "0",
            ],
            "--batch",
        ),
        // --sample (doctor): 1 to 1000000.
        ("sample zero", vec!["doctor", "--sample", "0"], "--sample"),
        ("sample negative", vec!["doctor", "--sample=-5"], "--sample"),
        (
            "sample too big",
            vec!["doctor", "--sample", "1000001"],
            "--sample",
        ),
        // Durations (purge).
        (
            "duration word",
            vec![
                "purge",
                "--revoked-older-than",
                "soon",
                "--expired-older-than",
                "7d",
            ],
            "--revoked-older-than",
        ),
        (
            "duration empty",
            vec![
                "purge",
                "--revoked-older-than",
                "",
                "--expired-older-than",
                "7d",
            ],
            "--revoked-older-than",
        ),
        (
            "duration negative",
            vec![
                "purge",
                "--revoked-older-than",
                "30d",
                "--expired-older-than=-1d",
            ],
            "--expired-older-than",
        ),
        (
            "duration overflow",
            vec![
                "purge",
                "--revoked-older-than",
                "99999999999999999999y",
                "--expired-older-than",
                "7d",
            ],
            "--revoked-older-than",
        ),
        // Flags take no value.
        (
            "dry-run with a value",
            vec!["migrate-legacy", "--move", "--dry-run=no"],
            "--dry-run",
        ),
        (
            "quarantine with a value",
            vec!["migrate-legacy", "--quarantine=1"],
            "--quarantine",
        ),
        (
            "move with a value",
            vec!["migrate-legacy", "--move=true"],
            "--move",
        ),
        (
            "migrate dry-run with a value",
            vec!["migrate", "--dry-run=false"],
            "--dry-run",
        ),
        ("unknown flag", vec!["migrate-legacy", "--force"], "--force"),
        (
            "unknown command",
            vec!["drop-everything"],
            "drop-everything",
        ),
    ];
    for (what, args, named) in &table {
        for json in [false, true] {
            let mut args = args.clone();
            if json {
                args.push("--json");
            }
            let run = cli(&env, &args);
            assert_eq!(run.status, 2, "{what} {json}: {}", run.all());
            assert!(
                run.all().contains(named),
                "{what}: {named} not named: {}",
                run.all()
            );
            assert!(
                !run.all().contains('\u{1b}') && !run.all().contains('\u{7}'),
                "{what}: a control character reached the output: {:?}",
                run.all()
            );
            assert!(run.all().len() < 4_000, "{what}: the value is echoed whole");
            untouched(&mut conn, &legacy, &web, &index).await;
        }
    }
    // The same values where they are good pass (the table's failures are the values).
    let fine = cli(
        &env,
        &["sessions", "--user", &uuid, "--context", "web", "--json"],
    );
    assert_eq!(
        (
            fine.status,
            fine.json()["sessions"].as_array().map(Vec::len)
        ),
        (0, Some(1))
    );
    let dry = cli(
        &env,
        &[
            "migrate-legacy",
            "--move",
            "--batch",
            "100000",
            "--dry-run",
            "--quarantine",
        ],
    );
    assert_eq!(dry.status, 0, "{}", dry.all());
    untouched(&mut conn, &legacy, &web, &index).await;
}
