//! PostgreSQL helpers for the integration tests: a throwaway database per test (created on the
//! server at `DATABASE_URL`, dropped when the guard goes out of scope, also on panic), the
//! shared Prisma schema files, and a catalog snapshot that two databases can be compared by.
#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// The server the tests use when `DATABASE_URL` is not set (trust auth, superuser).
pub(crate) const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Prisma schemas the migration must reach and upgrade from: `prisma-before.sql` (a
/// database before the multi-app migration) and `prisma-target.sql` (the shape after it), as
/// the TypeScript apps' Prisma setup writes them.
pub(crate) const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema");

/// The three tables the Prisma schema owns.
pub(crate) const PRISMA_TABLES: [&str; 3] = ["users", "sessions", "user_permissions"];

/// Connection options of the server's maintenance database (`DATABASE_URL`).
pub(crate) fn admin_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    PgConnectOptions::from_str(&url).expect("DATABASE_URL is not a PostgreSQL URL")
}

/// A database of its own for one test: `tas_mig_<random hex>`, dropped (`WITH (FORCE)`) when
/// this value is dropped, whether the test passed or panicked.
pub(crate) struct TestDb {
    pub pool: PgPool,
    pub name: String,
    // Declared last: dropped after the pool.
    _guard: DropGuard,
}

impl TestDb {
    pub(crate) async fn create() -> Self {
        let admin = admin_options();
        let name = format!(
            "tas_mig_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .expect("connect to DATABASE_URL (is PostgreSQL running? see scripts/test)");
        conn.execute(format!("CREATE DATABASE {name} TEMPLATE template0").as_str())
            .await
            .expect("CREATE DATABASE");
        conn.close().await.ok();
        // From here on the database is dropped even if the rest panics.
        let guard = DropGuard {
            name: name.clone(),
            admin: admin.clone(),
        };
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(admin.database(&name))
            .await
            .expect("connect to the test database");
        TestDb {
            pool,
            name,
            _guard: guard,
        }
    }

    /// Runs a multi-statement SQL script (simple query protocol: one implicit transaction
    /// unless the script has its own BEGIN/COMMIT).
    pub(crate) async fn run_script(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("script failed on {}: {e}", self.name));
    }

    /// Applies `tests/fixtures/schema/<file>` (`prisma-before.sql`, `prisma-target.sql`).
    pub(crate) async fn apply_schema(&self, file: &str) {
        self.run_script(&schema_sql(file)).await;
    }

    pub(crate) async fn snapshot(&self) -> Snapshot {
        snapshot(&self.pool).await
    }
}

struct DropGuard {
    name: String,
    admin: PgConnectOptions,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        // Drop runs inside the test's async runtime, where blocking on a future is not allowed:
        // drop the database from a thread with a runtime of its own, and wait for it. FORCE
        // ends the connections the test's pool may still hold.
        let name = self.name.clone();
        let admin = self.admin.clone();
        let dropped = std::thread::spawn(move || -> Result<(), sqlx::Error> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                conn.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

/// The text of `tests/fixtures/schema/<file>`.
pub(crate) fn schema_sql(file: &str) -> String {
    let path = format!("{SCHEMA_DIR}/{file}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The catalog facts that `prisma migrate` compares, as sorted strings: extensions, the public
/// tables (except sqlx's `_sqlx_migrations`) and enums with their labels in order; for each of
/// the three Prisma tables its columns (name, type, NOT NULL, default; by name, so attnums of
/// dropped columns do not matter), indexes (name, definition) and constraints (name, kind,
/// definition).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Snapshot(pub BTreeMap<String, Vec<String>>);

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, lines) in &self.0 {
            writeln!(f, "{key}:")?;
            for line in lines {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

impl Snapshot {
    /// What differs between `self` (actual) and `other` (expected), line by line: `+` is only
    /// in `self`, `-` only in `other`; same lines in another order are shown as both lists.
    pub(crate) fn diff(&self, other: &Snapshot) -> String {
        let mut out = String::new();
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(other.0.keys()).collect();
        let empty = Vec::new();
        for key in keys {
            let a = self.0.get(key).unwrap_or(&empty);
            let b = other.0.get(key).unwrap_or(&empty);
            if a == b {
                continue;
            }
            out.push_str(&format!("{key}:\n"));
            let extra: Vec<&String> = a.iter().filter(|l| !b.contains(l)).collect();
            let missing: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
            if extra.is_empty() && missing.is_empty() {
                out.push_str(&format!("    order: {a:?}\n    expected: {b:?}\n"));
            }
            for line in extra {
                out.push_str(&format!("  + {line}\n"));
            }
            for line in missing {
                out.push_str(&format!("  - {line}\n"));
            }
        }
        out
    }
}

/// Asserts two snapshots are equal, showing only the entries that differ.
#[track_caller]
pub(crate) fn assert_same_shape(actual: &Snapshot, expected: &Snapshot, what: &str) {
    assert!(
        actual == expected,
        "{what}: catalog differs (+ only in the database, - only in the expected shape)\n{}",
        actual.diff(expected)
    );
}

/// `pg_get_indexdef` always schema-qualifies the table (`ON public.users`), and
/// `pg_get_constraintdef` qualifies a referenced table not on the search path: drop the
/// `public.` so that the text compares the same whatever the connection's search_path.
fn unqualify(def: &str) -> String {
    def.replace(" ON public.", " ON ")
        .replace(" ON ONLY public.", " ON ONLY ")
        .replace("REFERENCES public.", "REFERENCES ")
}

pub(crate) async fn snapshot(pool: &PgPool) -> Snapshot {
    let mut map = BTreeMap::new();

    let extensions: Vec<String> =
        sqlx::query_scalar("SELECT extname::text FROM pg_extension ORDER BY 1")
            .fetch_all(pool)
            .await
            .expect("snapshot: extensions");
    map.insert("extensions".to_owned(), extensions);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text || ' (' || c.relkind::text || ')'
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND c.relname <> '_sqlx_migrations'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("snapshot: tables");
    map.insert("tables".to_owned(), tables);

    let enums: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT t.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
         FROM pg_type t
         JOIN pg_namespace n ON n.oid = t.typnamespace
         JOIN pg_enum e ON e.enumtypid = t.oid
         WHERE n.nspname = 'public'
         GROUP BY t.typname",
    )
    .fetch_all(pool)
    .await
    .expect("snapshot: enums");
    for (name, labels) in enums {
        map.insert(format!("enum \"{name}\""), labels);
    }

    for table in PRISMA_TABLES {
        let columns: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid)
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = 'public' AND c.relname = $1
               AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attname",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .expect("snapshot: columns");
        let columns = columns
            .into_iter()
            .map(|(name, ty, not_null, default)| {
                let mut line = format!("{name} {ty}");
                if not_null {
                    line.push_str(" NOT NULL");
                }
                if let Some(default) = default {
                    line.push_str(" DEFAULT ");
                    line.push_str(&default);
                }
                line
            })
            .collect();
        map.insert(format!("{table} columns"), columns);

        let indexes: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT ic.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid
             FROM pg_index i
             JOIN pg_class ic ON ic.oid = i.indexrelid
             JOIN pg_class tc ON tc.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = tc.relnamespace
             WHERE n.nspname = 'public' AND tc.relname = $1
             ORDER BY 1",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .expect("snapshot: indexes");
        let indexes = indexes
            .into_iter()
            .map(|(name, def, valid)| {
                let invalid = if valid { "" } else { " [INVALID]" };
                format!("{name}: {}{invalid}", unqualify(&def))
            })
            .collect();
        map.insert(format!("{table} indexes"), indexes);

        let constraints: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT co.conname::text, co.contype::text, pg_get_constraintdef(co.oid)
             FROM pg_constraint co
             JOIN pg_class c ON c.oid = co.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relname = $1
             ORDER BY 1",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .expect("snapshot: constraints");
        let constraints = constraints
            .into_iter()
            .map(|(name, kind, def)| format!("{name} ({kind}): {}", unqualify(&def)))
            .collect();
        map.insert(format!("{table} constraints"), constraints);
    }

    Snapshot(map)
}

/// Every row of `table` as JSON (`to_jsonb`), minus the `except` columns, ordered by `id`.
pub(crate) async fn rows(pool: &PgPool, table: &str, except: &[&str]) -> Vec<serde_json::Value> {
    let mut expr = "to_jsonb(t)".to_owned();
    for column in except {
        expr.push_str(&format!(" - '{column}'"));
    }
    let sql = format!("SELECT {expr} FROM \"{table}\" t ORDER BY t.id");
    sqlx::query_scalar(&sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("rows of {table}: {e}"))
}

/// A database built from `tests/fixtures/schema/prisma-target.sql` alone: what the migration must reach.
pub(crate) async fn target_snapshot() -> Snapshot {
    let db = TestDb::create().await;
    db.apply_schema("prisma-target.sql").await;
    db.snapshot().await
}

// ---- Helpers for the store, user and layer tests (tests/pg*.rs). -------------------------

/// The URL of database `name` on the test server: `DATABASE_URL` (or the default) with its
/// database replaced, credentials and query parameters kept.
#[allow(dead_code)]
pub(crate) fn database_url(name: &str) -> String {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url.as_str(), String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{root}/{name}{query}")
}

#[allow(dead_code)]
impl TestDb {
    /// A throwaway database with the crate's migrations applied (`migrate(&pool)`).
    pub(crate) async fn migrated() -> Self {
        let db = Self::create().await;
        tower_app_sessions::store::postgres::migrate(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("migrate {}: {e}", db.name));
        db
    }

    /// This database's URL (see [`database_url`]).
    pub(crate) fn url(&self) -> String {
        database_url(&self.name)
    }

    /// Connection options of this database (as [`admin_options`], other database).
    pub(crate) fn options(&self) -> PgConnectOptions {
        admin_options().database(&self.name)
    }
}

/// `(revoked, revoked_at is set, application_context)` of a `sessions` row.
#[allow(dead_code)]
pub(crate) async fn row_state(pool: &PgPool, id: &str) -> Option<(bool, bool, String)> {
    sqlx::query_as(
        "SELECT revoked, revoked_at IS NOT NULL, application_context::text FROM sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .expect("read sessions row")
}

/// A login role of its own for one test, with no privileges beyond PostgreSQL's defaults
/// (`CONNECT` and `TEMP` on databases, through `PUBLIC`): `tas_role_<random hex>`, dropped
/// when this value is dropped. Declare it before the [`TestDb`]s it connects to, so that they
/// are dropped first (`DROP DATABASE … WITH (FORCE)` ends its sessions and their temporary
/// objects, which would otherwise keep the role from being dropped).
#[allow(dead_code)]
pub(crate) struct TestRole {
    pub name: String,
    admin: PgConnectOptions,
}

#[allow(dead_code)]
impl TestRole {
    pub(crate) async fn create() -> Self {
        let admin = admin_options();
        let name = format!(
            "tas_role_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .expect("connect to DATABASE_URL");
        conn.execute(format!("CREATE ROLE {name} LOGIN").as_str())
            .await
            .expect("CREATE ROLE");
        conn.close().await.ok();
        TestRole { name, admin }
    }

    /// A connection to `db` as this role.
    pub(crate) async fn connect(&self, db: &TestDb) -> PgConnection {
        PgConnection::connect_with(&db.options().username(&self.name))
            .await
            .unwrap_or_else(|e| panic!("connect as {}: {e}", self.name))
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        // As `DropGuard`: from a thread with a runtime of its own.
        let name = self.name.clone();
        let admin = self.admin.clone();
        let dropped = std::thread::spawn(move || -> Result<(), sqlx::Error> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect_with(&admin).await?;
                conn.execute(format!("DROP ROLE IF EXISTS {name}").as_str())
                    .await?;
                conn.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test role {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test role {} panicked", self.name),
        }
    }
}
