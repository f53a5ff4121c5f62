//! What the identity database lacks: the crate's migrations it has not applied
//! ([`pending_migrations`]), and how its `sessions` table differs from the Prisma target
//! ([`PgSessionStore::check_schema`]). Operators' checks, never on the request path; they
//! read the catalog and create nothing.

use sqlx::migrate::Migrator;
use sqlx::PgPool;

use super::{row::pg_error, timed, PgSessionStore};
use crate::store::StoreError;

/// A schema migration of the crate that a database has not applied yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaMigration {
    /// Its version (the number its file name starts with).
    pub version: i64,
    /// Its description (the rest of the file name).
    pub description: String,
}

/// The migrations of [`migrate`](super::migrate) that `pool`'s database has not applied
/// (all of them on a database the crate never migrated, even one Prisma already shaped: the
/// migration then changes nothing but records itself). Reads `_sqlx_migrations`, the
/// migrator's bookkeeping table, and creates nothing: a dry run of `migrate`.
///
/// # Errors
/// [`StoreError`] if PostgreSQL fails.
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<SchemaMigration>, StoreError> {
    pending_of(pool, &sqlx::migrate!("./migrations")).await
}

/// The migrations of `migrator` that `pool`'s database has not applied successfully.
pub(crate) async fn pending_of(
    pool: &PgPool,
    migrator: &Migrator,
) -> Result<Vec<SchemaMigration>, StoreError> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await
        .map_err(pg_error)?;
    let applied: Vec<i64> = match table {
        Some(_) => sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(pg_error)?,
        None => Vec::new(),
    };
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| SchemaMigration {
            version: m.version,
            description: m.description.to_string(),
        })
        .collect())
}

/// How the `sessions` table differs from the Prisma target ([`PgSessionStore::check_schema`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaProblem {
    /// There is no `sessions` table: the database is not migrated.
    MissingTable,
    /// A column of the target is missing.
    MissingColumn {
        /// The column.
        column: &'static str,
    },
    /// A column has another type than the target's (as `information_schema` names types).
    WrongType {
        /// The column.
        column: &'static str,
        /// Its type.
        found: String,
        /// The target's.
        expected: &'static str,
    },
    /// A column the target declares `NOT NULL` accepts NULL (for `application_context`: a
    /// row may then have no context).
    Nullable {
        /// The column.
        column: &'static str,
    },
    /// A column the target does not have (Prisma sees drift).
    ExtraColumn {
        /// The column.
        column: String,
        /// Its type.
        found: String,
    },
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaProblem::MissingTable => f.write_str("table sessions is missing"),
            SchemaProblem::MissingColumn { column } => write!(f, "sessions.{column} is missing"),
            SchemaProblem::WrongType {
                column,
                found,
                expected,
            } => write!(f, "sessions.{column} is {found}, not {expected}"),
            SchemaProblem::Nullable { column } => {
                write!(f, "sessions.{column} accepts NULL, the target does not")
            }
            SchemaProblem::ExtraColumn { column, found } => {
                write!(f, "sessions.{column} ({found}) is not in the target")
            }
        }
    }
}

/// The columns of `sessions` in the Prisma target schema: their types as
/// `information_schema.columns` names them (`udt_name`), and whether they are `NOT NULL`.
const SESSION_COLUMNS: [(&str, &str, bool); 11] = [
    ("application_context", "ApplicationType", true),
    ("created_at", "timestamptz", true),
    ("data", "jsonb", false),
    ("expires_at", "timestamptz", true),
    ("id", "varchar", true),
    ("ip_address", "inet", false),
    ("last_activity", "timestamptz", true),
    ("revoked", "bool", true),
    ("revoked_at", "timestamptz", false),
    ("user_agent", "text", false),
    ("user_id", "uuid", true),
];

impl PgSessionStore {
    /// How the `sessions` table differs from the Prisma target: each missing, mistyped,
    /// nullable or extra column (empty when it matches).
    ///
    /// # Errors
    /// [`StoreError`] if PostgreSQL fails.
    pub async fn check_schema(&self) -> Result<Vec<SchemaProblem>, StoreError> {
        let columns: Vec<(String, String, String)> = timed(
            self.timeout,
            sqlx::query_as(
                "SELECT column_name::text, udt_name::text, is_nullable::text \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'sessions' ORDER BY 1",
            )
            .fetch_all(&self.pool),
        )
        .await?;
        if columns.is_empty() {
            return Ok(vec![SchemaProblem::MissingTable]);
        }
        let mut problems = Vec::new();
        for (column, expected, not_null) in SESSION_COLUMNS {
            match columns.iter().find(|(c, _, _)| c == column) {
                None => problems.push(SchemaProblem::MissingColumn { column }),
                Some((_, found, _)) if found != expected => {
                    problems.push(SchemaProblem::WrongType {
                        column,
                        found: found.clone(),
                        expected,
                    });
                }
                Some((_, _, nullable)) if not_null && nullable == "YES" => {
                    problems.push(SchemaProblem::Nullable { column });
                }
                Some(_) => {}
            }
        }
        for (column, found, _) in &columns {
            if !SESSION_COLUMNS.iter().any(|(c, _, _)| c == column) {
                problems.push(SchemaProblem::ExtraColumn {
                    column: column.clone(),
                    found: found.clone(),
                });
            }
        }
        Ok(problems)
    }
}
