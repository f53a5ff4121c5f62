//! The crate's migrations (`migrations/`) on a real PostgreSQL server (`DATABASE_URL`): from an
//! empty database, from the pre-migration Prisma database with data, from a database Prisma
//! already migrated, from the TypeScript apps' `identity.prisma` variant, twice, rolled back and reapplied,
//! and on 100 000 sessions. "Same shape" means the same catalog snapshot (`pg::snapshot`) as a
//! database built from `tests/fixtures/schema/prisma-target.sql` itself.
#![cfg(feature = "postgres")]

use crate::common::pg;

use pg::{assert_same_shape, rows, target_snapshot, TestDb};
use tower_app_sessions::store::postgres::migrate;

const ROLLBACK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/migrations/rollback/0001_multi_app_identity.down.sql"
);

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
const CAROL: &str = "ca201000-0000-4000-8000-000000000003";
const DAVE: &str = "da7e0000-0000-4000-8000-000000000004";

/// Rows for the pre-migration shape: users of every role (one with `session_id` set, one
/// created with the column defaults), sessions with and without data, a revoked one with an
/// IPv6 address and a user agent.
const BEFORE_DATA: &str = r#"
INSERT INTO "users" ("id", "email", "hashed_password", "is_verified", "role", "created_at", "last_login_at", "session_id") VALUES
  ('a11ce000-0000-4000-8000-000000000001', 'alice@example.com', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA', true, 'user', '2024-01-02 03:04:05.123456+00', '2024-06-01 12:00:00+02', 'alice-web-session-0001'),
  ('b0b00000-0000-4000-8000-000000000002', 'bob@example.com', NULL, false, 'admin', '2024-02-03 04:05:06+00', NULL, NULL),
  ('ca201000-0000-4000-8000-000000000003', 'carol@example.com', 'x', true, 'operator', '2024-03-04 05:06:07+00', '2024-03-05 00:00:00+00', NULL),
  ('da7e0000-0000-4000-8000-000000000004', 'dave@example.com', NULL, true, 'support', '2024-04-05 06:07:08+00', NULL, NULL);
INSERT INTO "users" ("email") VALUES ('eve@example.com');

INSERT INTO "sessions" ("id", "user_id", "data", "expires_at", "created_at", "last_activity", "ip_address", "user_agent", "revoked", "revoked_at") VALUES
  ('alice-web-session-0001', 'a11ce000-0000-4000-8000-000000000001', '{"cart": [1, 2], "theme": "dark"}', '2030-01-01 00:00:00+00', '2024-06-01 10:00:00+00', '2024-06-01 11:00:00+00', '192.0.2.10', 'Mozilla/5.0 (X11; Linux x86_64)', false, NULL),
  ('bob-session-active-01', 'b0b00000-0000-4000-8000-000000000002', NULL, '2030-01-01 00:00:00+00', '2024-06-02 10:00:00+00', '2024-06-02 10:30:00+00', '10.0.0.1/32', NULL, false, NULL),
  ('bob-session-revoked-1', 'b0b00000-0000-4000-8000-000000000002', '{}', '2024-07-01 00:00:00+00', '2024-06-03 10:00:00+00', '2024-06-03 10:05:00+00', '2001:db8::1', 'curl/8.5.0', true, '2024-06-03 10:06:00.5+00'),
  ('carol-session-0000001', 'ca201000-0000-4000-8000-000000000003', '{"k": null}', '2030-01-01 00:00:00+00', '2024-06-04 10:00:00+00', '2024-06-04 10:00:00+00', NULL, NULL, false, NULL);
INSERT INTO "sessions" ("id", "user_id", "expires_at") VALUES
  ('dave-session-defaults', 'da7e0000-0000-4000-8000-000000000004', '2030-01-01 00:00:00+00');
"#;

async fn migrate_ok(db: &TestDb) {
    migrate(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("migrate on {}: {e}", db.name));
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `(version, checksum)` of every successful row of `_sqlx_migrations`, by version.
async fn applied(db: &TestDb) -> Vec<(i64, Vec<u8>)> {
    sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&db.pool)
        .await
        .expect("read _sqlx_migrations")
}

fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

#[tokio::test]
async fn empty_database_reaches_the_prisma_target_shape() {
    let db = TestDb::create().await;
    migrate_ok(&db).await;
    assert_same_shape(
        &db.snapshot().await,
        &target_snapshot().await,
        "empty + migrate",
    );
}

#[tokio::test]
async fn pre_migration_database_is_upgraded_in_place_keeping_every_row() {
    let db = TestDb::create().await;
    db.apply_schema("prisma-before.sql").await;
    db.run_script(BEFORE_DATA).await;
    let users = rows(&db.pool, "users", &[]).await;
    let sessions = rows(&db.pool, "sessions", &[]).await;
    assert_eq!((users.len(), sessions.len()), (5, 5));

    migrate_ok(&db).await;

    assert_same_shape(
        &db.snapshot().await,
        &target_snapshot().await,
        "before + migrate",
    );
    assert_eq!(
        rows(&db.pool, "users", &[]).await,
        users,
        "users rows changed"
    );
    assert_eq!(
        rows(&db.pool, "sessions", &["application_context"]).await,
        sessions,
        "sessions rows changed"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sessions WHERE application_context = 'web'"
        )
        .await,
        5,
        "every existing session is a web session"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM user_permissions").await, 0);
}

#[tokio::test]
async fn database_prisma_already_migrated_is_left_unchanged() {
    let db = TestDb::create().await;
    db.apply_schema("prisma-target.sql").await;
    db.run_script(&format!(
        r#"
        INSERT INTO "users" ("id", "email", "role") VALUES ('{BOB}', 'bob@example.com', 'admin');
        INSERT INTO "sessions" ("id", "user_id", "expires_at", "ip_address", "user_agent", "application_context")
          VALUES ('bob-admin-session-001', '{BOB}', '2030-01-01 00:00:00+00', '10.1.2.3', 'Mozilla/5.0', 'admin');
        INSERT INTO "user_permissions" ("user_id", "permission", "application_context", "granted_by")
          VALUES ('{BOB}', 'users.read', 'admin', '{ALICE}');
        "#
    ))
    .await;
    let before = db.snapshot().await;
    let tables = ["users", "sessions", "user_permissions"];
    let mut data = Vec::new();
    for table in tables {
        data.push(rows(&db.pool, table, &[]).await);
    }

    migrate_ok(&db).await;

    assert_same_shape(&db.snapshot().await, &before, "target + migrate");
    for (table, rows_before) in tables.into_iter().zip(data) {
        assert_eq!(
            rows(&db.pool, table, &[]).await,
            rows_before,
            "{table} rows changed"
        );
    }
}

#[tokio::test]
async fn migrating_twice_is_the_same_as_once() {
    let db = TestDb::create().await;
    migrate_ok(&db).await;
    let once = db.snapshot().await;
    let applied_once = applied(&db).await;

    migrate_ok(&db).await;

    assert_same_shape(&db.snapshot().await, &once, "second migrate");
    let expected: Vec<(i64, Vec<u8>)> = migrator()
        .iter()
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect();
    assert_eq!(
        applied(&db).await,
        expected,
        "_sqlx_migrations after two runs"
    );
    assert_eq!(applied_once, expected);
    assert_eq!(
        count(&db, "SELECT count(*) FROM _sqlx_migrations").await,
        expected.len() as i64,
        "no failed or extra rows in _sqlx_migrations"
    );
    // The rollback script in migrations/rollback/ is not a migration.
    assert!(
        migrator()
            .iter()
            .all(|m| !m.migration_type.is_down_migration()),
        "sqlx::migrate! picked up the rollback script"
    );
}

#[tokio::test]
async fn identity_prisma_enums_get_their_missing_labels_in_order() {
    // The TypeScript apps' identity.prisma: `enum UserRole { USER ADMIN }`, `enum ApplicationType { WEB }`.
    let target = pg::schema_sql("prisma-target.sql");
    let full_roles = r#"CREATE TYPE "UserRole" AS ENUM ('user', 'admin', 'operator', 'support');"#;
    let full_apps = r#"CREATE TYPE "ApplicationType" AS ENUM ('web', 'admin');"#;
    assert!(target.contains(full_roles) && target.contains(full_apps));
    let identity = target
        .replace(
            full_roles,
            r#"CREATE TYPE "UserRole" AS ENUM ('user', 'admin');"#,
        )
        .replace(
            full_apps,
            r#"CREATE TYPE "ApplicationType" AS ENUM ('web');"#,
        );

    let db = TestDb::create().await;
    db.run_script(&identity).await;
    db.run_script(&format!(
        r#"
        INSERT INTO "users" ("id", "email", "role") VALUES ('{ALICE}', 'alice@example.com', 'admin');
        INSERT INTO "sessions" ("id", "user_id", "expires_at") VALUES ('alice-web-session-0001', '{ALICE}', '2030-01-01 00:00:00+00');
        "#
    ))
    .await;
    let sessions = rows(&db.pool, "sessions", &[]).await;

    migrate_ok(&db).await;

    let snapshot = db.snapshot().await;
    let expected = target_snapshot().await;
    for name in ["enum \"UserRole\"", "enum \"ApplicationType\""] {
        assert_eq!(snapshot.0.get(name), expected.0.get(name), "{name}");
    }
    assert_same_shape(&snapshot, &expected, "identity.prisma + migrate");
    assert_eq!(rows(&db.pool, "sessions", &[]).await, sessions);
    // The new labels are committed and usable.
    db.run_script(&format!(
        r#"
        INSERT INTO "users" ("id", "email", "role") VALUES ('{CAROL}', 'carol@example.com', 'operator'), ('{DAVE}', 'dave@example.com', 'support');
        INSERT INTO "sessions" ("id", "user_id", "expires_at", "application_context") VALUES ('alice-admin-session-01', '{ALICE}', '2030-01-01 00:00:00+00', 'admin');
        "#
    ))
    .await;
}

#[tokio::test]
async fn rollback_returns_to_the_pre_migration_shape_and_migrate_works_again() {
    let db = TestDb::create().await;
    db.apply_schema("prisma-before.sql").await;
    db.run_script(BEFORE_DATA).await;
    let before = db.snapshot().await;
    let users = rows(&db.pool, "users", &[]).await;
    let sessions = rows(&db.pool, "sessions", &[]).await;

    migrate_ok(&db).await;
    db.run_script(&format!(
        r#"
        INSERT INTO "sessions" ("id", "user_id", "expires_at", "application_context")
          VALUES ('bob-admin-session-001', '{BOB}', '2030-01-01 00:00:00+00', 'admin');
        INSERT INTO "user_permissions" ("user_id", "permission", "application_context")
          VALUES ('{BOB}', 'users.read', 'admin');
        "#
    ))
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM sessions").await, 6);

    let rollback = std::fs::read_to_string(ROLLBACK).expect("read the rollback script");
    db.run_script(&rollback).await;

    assert_same_shape(&db.snapshot().await, &before, "rollback");
    assert_eq!(
        rows(&db.pool, "users", &[]).await,
        users,
        "users rows changed"
    );
    assert_eq!(
        rows(&db.pool, "sessions", &[]).await,
        sessions,
        "web sessions kept, the admin session deleted"
    );
    assert!(
        applied(&db).await.is_empty(),
        "_sqlx_migrations row deleted"
    );

    // Idempotent: a second run changes nothing.
    db.run_script(&rollback).await;
    assert_same_shape(&db.snapshot().await, &before, "rollback twice");

    migrate_ok(&db).await;
    assert_same_shape(
        &db.snapshot().await,
        &target_snapshot().await,
        "migrate after rollback",
    );
    assert_eq!(
        rows(&db.pool, "sessions", &["application_context"]).await,
        sessions
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sessions WHERE application_context = 'web'"
        )
        .await,
        5
    );
}

#[tokio::test]
async fn upgrading_100k_sessions_does_not_rewrite_the_table() {
    const SESSIONS: i64 = 100_000;
    let db = TestDb::create().await;
    db.apply_schema("prisma-before.sql").await;
    db.run_script(&format!(
        r#"
        INSERT INTO "users" ("email", "role")
        SELECT 'user' || g || '@example.com', (ARRAY['user', 'admin', 'operator', 'support'])[1 + g % 4]::"UserRole"
        FROM generate_series(1, 1000) g;
        INSERT INTO "sessions" ("id", "user_id", "data", "expires_at", "ip_address", "user_agent", "revoked", "revoked_at")
        SELECT 'bulk-session-' || lpad(g::text, 10, '0'), u.id, jsonb_build_object('n', g),
               now() + interval '1 day', ('10.' || (g / 65536) || '.' || (g / 256 % 256) || '.' || (g % 256))::inet,
               'Mozilla/5.0 (bench ' || g || ')', g % 10 = 0, CASE WHEN g % 10 = 0 THEN now() END
        FROM generate_series(1, {SESSIONS}) g
        JOIN (SELECT "id", row_number() OVER (ORDER BY "email") AS rn FROM "users") u ON u.rn = 1 + g % 1000;
        ANALYZE "users";
        ANALYZE "sessions";
        "#
    ))
    .await;
    let filenode = "SELECT pg_relation_filenode('sessions')::bigint";
    let filenode_before = count(&db, filenode).await;

    let started = std::time::Instant::now();
    migrate_ok(&db).await;
    let elapsed = started.elapsed();

    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let in_sql = count(
        &db,
        "SELECT execution_time FROM _sqlx_migrations WHERE version = 1",
    )
    .await;
    eprintln!(
        "migrate on {SESSIONS} sessions: {elapsed:?} in total, {:?} for the migration's SQL \
         (PostgreSQL {server}, {} CPUs)",
        std::time::Duration::from_nanos(in_sql as u64),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sessions WHERE application_context = 'web'"
        )
        .await,
        SESSIONS
    );
    assert_eq!(
        count(&db, filenode).await,
        filenode_before,
        "adding application_context rewrote the sessions table"
    );
}
