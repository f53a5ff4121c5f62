//! [`Plan`]: what the environment asks for, read without connecting to anything.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, Environment, MigrationStrategy};
use crate::cross_origin::CrossOriginPolicy;
use crate::AppContext;

/// The backends a [`Plan`] builds.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Backends {
    /// In-memory sessions and users (`SESSION_ENV=mock`).
    Memory,
    /// Redis sessions, in-memory users (`development` without a database).
    Redis {
        /// `REDIS_URL`.
        url: String,
        /// `REDIS_MAX_RETRIES`.
        max_retries: usize,
    },
    /// Redis in front of PostgreSQL, users from PostgreSQL.
    RedisAndPostgres {
        /// `REDIS_URL`.
        redis_url: String,
        /// `REDIS_MAX_RETRIES`.
        max_retries: usize,
        /// Which variable named the database: `DATABASE_IDENTITY_URL` or `DATABASE_URL`.
        database_var: &'static str,
        /// Its URL.
        database_url: String,
        /// `mock-with-write-through`: served from memory, written through to both.
        write_through: bool,
    },
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = crate::redact::url;
        match self {
            Backends::Memory => f.write_str("Memory"),
            Backends::Redis { url, max_retries } => f
                .debug_struct("Redis")
                .field("url", &redact(url))
                .field("max_retries", max_retries)
                .finish(),
            Backends::RedisAndPostgres {
                redis_url,
                max_retries,
                database_var,
                database_url,
                write_through,
            } => f
                .debug_struct("RedisAndPostgres")
                .field("redis_url", &redact(redis_url))
                .field("max_retries", max_retries)
                .field("database_var", database_var)
                .field("database_url", &redact(database_url))
                .field("write_through", write_through)
                .finish(),
        }
    }
}

/// What [`Sessions::from_env`](crate::Sessions::from_env) builds: the environment read and
/// checked, nothing connected yet. Build one with [`Plan::from_lookup`] to see (or test) what
/// a configuration means; [`Sessions::from_plan`](crate::Sessions::from_plan) connects it.
/// Crate-private: users configure through [`Sessions::from_lookup`](crate::Sessions::from_lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct Plan {
    /// `SESSION_ENV`.
    pub(crate) environment: Environment,
    /// `SESSION_MIGRATION_STRATEGY`.
    pub(crate) strategy: MigrationStrategy,
    /// The stores to build.
    pub(crate) backends: Backends,
    /// `DATABASE_WEB_URL`: the web app's own database.
    pub(crate) web_database: Option<WebDatabaseUrl>,
    /// `SESSION_REVALIDATE_SECS`.
    pub(crate) revalidate: Duration,
    /// `SESSION_NOTIFIED_REVALIDATE_SECS`: with PostgreSQL, listen for its notifications and
    /// trust a checked Redis copy this long while they are heard (`None`: not listening).
    pub(crate) notified_revalidate: Option<Duration>,
    /// Contexts that read legacy sessions (`web` with `gradual`).
    pub(crate) legacy_contexts: Vec<AppContext>,
    /// `SESSION_MAX_PER_USER` (`0`: none).
    pub(crate) max_sessions_per_user: usize,
    /// `SESSION_TRUSTED_ORIGINS`.
    pub(crate) cross_origin: CrossOriginPolicy,
    /// `REDIS_CLUSTER=true`: `REDIS_URL` lists the nodes of a Redis Cluster, comma-separated.
    pub(crate) redis_cluster: bool,
    /// `SESSION_CACHE_ENTRIES`, `SESSION_CACHE_TTL_SECS`: every layer's session cache
    /// ([`Sessions::cache`](crate::Sessions::cache); `None`: no cache).
    pub(crate) session_cache: Option<CachePlan>,
    /// `SESSION_USER_CACHE_ENTRIES`, `SESSION_USER_CACHE_TTL_SECS`: the user cache
    /// ([`Sessions::user_cache`](crate::Sessions::user_cache); `None`: no cache).
    pub(crate) user_cache: Option<CachePlan>,
}

/// How big a cache is and how long it keeps an entry. Caches built from the environment
/// share one [`InvalidationBus`](crate::cache::InvalidationBus): Redis pub/sub on `REDIS_URL`
/// (in-process with `SESSION_ENV=mock`), following PostgreSQL's notifications when
/// `SESSION_NOTIFIED_REVALIDATE_SECS` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct CachePlan {
    /// At most this many entries.
    pub(crate) max_entries: u64,
    /// Each for at most this long.
    pub(crate) ttl: Duration,
}

/// A database URL whose `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WebDatabaseUrl(pub String);

impl fmt::Debug for WebDatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&crate::redact::url(&self.0), f)
    }
}

impl Plan {
    /// Reads the variables through `lookup` (the process environment:
    /// `|var| std::env::var(var).ok()`); blank values count as unset.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable to set or fix.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let environment: Environment = match get("SESSION_ENV") {
            Some(v) => v.parse()?,
            None => Environment::Mock,
        };
        let explicit_strategy = get("SESSION_MIGRATION_STRATEGY");
        let strategy: MigrationStrategy = match &explicit_strategy {
            Some(v) => v.parse()?,
            None if environment == Environment::Mock => MigrationStrategy::MockOnly,
            None => MigrationStrategy::ProductionOnly,
        };
        let backends = if strategy == MigrationStrategy::MockOnly {
            if environment != Environment::Mock {
                // Real backends but a memory-only strategy: one of the two is a mistake, and
                // guessing which could put production sessions in process memory.
                return Err(ConfigError::Invalid {
                    var: "SESSION_MIGRATION_STRATEGY",
                    value: strategy.to_string(),
                    expected: "production-only, gradual or mock-with-write-through with SESSION_ENV=development|production (mock-only needs SESSION_ENV=mock)",
                });
            }
            Backends::Memory
        } else {
            real_backends(&get, environment, strategy, explicit_strategy.is_some())?
        };
        let cross_origin = match get("SESSION_TRUSTED_ORIGINS") {
            None => CrossOriginPolicy::default(),
            Some(list) => CrossOriginPolicy::default()
                .trust_origins(list.split(',').map(str::trim).filter(|o| !o.is_empty()))
                .map_err(|e| ConfigError::Invalid {
                    var: "SESSION_TRUSTED_ORIGINS",
                    value: e.origin,
                    expected: "comma-separated origins such as https://admin.example.com,http://localhost:3000",
                })?,
        };
        let revalidate = number(&get, "SESSION_REVALIDATE_SECS", 5)?;
        let notified_revalidate =
            Some(number(&get, "SESSION_NOTIFIED_REVALIDATE_SECS", 0)?).filter(|secs| *secs > 0);
        // A session cache sees no notification of a bare Redis `DEL`: the short bound. Users
        // are rows, notified when they change: the long one while notifications are heard.
        let session_cache = cache(
            &get,
            "SESSION_CACHE_ENTRIES",
            "SESSION_CACHE_TTL_SECS",
            revalidate,
        )?;
        let user_cache = cache(
            &get,
            "SESSION_USER_CACHE_ENTRIES",
            "SESSION_USER_CACHE_TTL_SECS",
            notified_revalidate.unwrap_or(revalidate),
        )?;
        Ok(Self {
            environment,
            strategy,
            backends,
            web_database: get("DATABASE_WEB_URL").map(WebDatabaseUrl),
            revalidate: Duration::from_secs(revalidate),
            notified_revalidate: notified_revalidate.map(Duration::from_secs),
            legacy_contexts: if strategy == MigrationStrategy::Gradual {
                vec![AppContext::Web]
            } else {
                Vec::new()
            },
            max_sessions_per_user: usize::try_from(number(&get, "SESSION_MAX_PER_USER", 0)?)
                .unwrap_or(usize::MAX),
            cross_origin,
            redis_cluster: flag(&get, "REDIS_CLUSTER")?,
            session_cache,
            user_cache,
        })
    }
}

/// A cache sized by `entries_var` (unset or `0`: none), its TTL from `ttl_var`, by default
/// `default_ttl_secs`; a zero TTL would make a cache that never serves, so it is an error.
fn cache(
    get: &impl Fn(&str) -> Option<String>,
    entries_var: &'static str,
    ttl_var: &'static str,
    default_ttl_secs: u64,
) -> Result<Option<CachePlan>, ConfigError> {
    let max_entries = number(get, entries_var, 0)?;
    let ttl = number(get, ttl_var, default_ttl_secs)?;
    if max_entries == 0 {
        return Ok(None);
    }
    if ttl == 0 {
        return Err(ConfigError::Invalid {
            var: ttl_var,
            value: "0".into(),
            expected: "a number of seconds of at least 1 (it defaults to the revalidation bound, here 0), or leave the cache off",
        });
    }
    Ok(Some(CachePlan {
        max_entries,
        ttl: Duration::from_secs(ttl),
    }))
}

/// Redis (and PostgreSQL, when named or required) for the environment and strategy.
fn real_backends(
    get: &impl Fn(&str) -> Option<String>,
    environment: Environment,
    strategy: MigrationStrategy,
    explicit_strategy: bool,
) -> Result<Backends, ConfigError> {
    let needed_by = if explicit_strategy && environment == Environment::Mock {
        format!("SESSION_MIGRATION_STRATEGY={strategy}")
    } else {
        format!("SESSION_ENV={environment}")
    };
    let Some(redis_url) = get("REDIS_URL") else {
        return Err(ConfigError::Missing {
            var: "REDIS_URL",
            needed_by,
            fix: "set REDIS_URL=redis://host:6379 (or rediss://user:password@host:port), or use SESSION_ENV=mock for in-memory sessions",
        });
    };
    let max_retries = usize::try_from(number(get, "REDIS_MAX_RETRIES", 3)?).unwrap_or(usize::MAX);
    // DATABASE_IDENTITY_URL (the multi-database setup) wins over DATABASE_URL.
    let identity = get("DATABASE_IDENTITY_URL")
        .map(|url| ("DATABASE_IDENTITY_URL", url))
        .or_else(|| get("DATABASE_URL").map(|url| ("DATABASE_URL", url)));
    let database_required = environment == Environment::Production
        || strategy == MigrationStrategy::MockWithWriteThrough
        || (environment == Environment::Mock && explicit_strategy);
    Ok(match identity {
        Some((database_var, database_url)) => Backends::RedisAndPostgres {
            redis_url,
            max_retries,
            database_var,
            database_url,
            write_through: strategy == MigrationStrategy::MockWithWriteThrough,
        },
        None if database_required => {
            return Err(ConfigError::Missing {
                var: "DATABASE_URL",
                needed_by,
                fix: "set DATABASE_URL (or DATABASE_IDENTITY_URL) to the PostgreSQL user database, e.g. postgres://user:password@host:5432/db",
            })
        }
        None => Backends::Redis {
            url: redis_url,
            max_retries,
        },
    })
}

/// A yes/no variable: `true`/`1` or `false`/`0` (any case); unset is `false`.
fn flag(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(ConfigError::Invalid {
            var,
            value: v.chars().take(64).collect(),
            expected: "true or false",
        }),
    }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match get(var) {
        Some(v) => v.trim().parse().map_err(|_| ConfigError::NotANumber {
            var,
            value: v.chars().take(64).collect(),
            example: default,
        }),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_with_redis_plans_redis() {
        let vars = [
            ("SESSION_ENV", "development"),
            ("REDIS_URL", "redis://cache:6379"),
        ];
        let plan = Plan::from_lookup(|var| {
            vars.iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        });
        let plan = plan.map_err(|e| e.to_string());
        assert!(
            matches!(&plan, Ok(p) if p.environment == Environment::Development
                && matches!(p.backends, Backends::Redis { .. })),
            "{plan:?}"
        );
    }

    fn plan(vars: &[(&str, &str)]) -> Result<Plan, ConfigError> {
        Plan::from_lookup(|k| {
            vars.iter()
                .find(|(var, _)| *var == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn mock_is_the_default() {
        let p = plan(&[]).unwrap();
        assert_eq!(p.environment, Environment::Mock);
        assert_eq!(p.strategy, MigrationStrategy::MockOnly);
        assert_eq!(p.backends, Backends::Memory);
        assert_eq!(p.revalidate, Duration::from_secs(5));
        assert!(p.legacy_contexts.is_empty());
        assert_eq!((p.session_cache, p.user_cache), (None, None));
    }

    #[test]
    fn caches_are_off_unless_sized_and_default_to_the_bounds() {
        let sized = |entries, ttl| {
            Some(CachePlan {
                max_entries: entries,
                ttl: Duration::from_secs(ttl),
            })
        };
        // TTLs alone turn nothing on; `0` entries is off.
        let p = plan(&[
            ("SESSION_CACHE_TTL_SECS", "9"),
            ("SESSION_USER_CACHE_ENTRIES", "0"),
        ])
        .unwrap();
        assert_eq!((p.session_cache, p.user_cache), (None, None));
        // The session cache defaults to the revalidation bound, the user cache too without
        // notifications...
        let p = plan(&[
            ("SESSION_CACHE_ENTRIES", "1000"),
            ("SESSION_USER_CACHE_ENTRIES", "500"),
            ("SESSION_REVALIDATE_SECS", "7"),
        ])
        .unwrap();
        assert_eq!(
            (p.session_cache, p.user_cache),
            (sized(1000, 7), sized(500, 7))
        );
        // ...and to the notified bound with them; explicit TTLs win.
        let p = plan(&[
            ("SESSION_CACHE_ENTRIES", "1000"),
            ("SESSION_USER_CACHE_ENTRIES", "500"),
            ("SESSION_NOTIFIED_REVALIDATE_SECS", "300"),
        ])
        .unwrap();
        assert_eq!(
            (p.session_cache, p.user_cache),
            (sized(1000, 5), sized(500, 300))
        );
        let p = plan(&[
            ("SESSION_CACHE_ENTRIES", "10"),
            ("SESSION_CACHE_TTL_SECS", "2"),
            ("SESSION_USER_CACHE_ENTRIES", "20"),
            ("SESSION_USER_CACHE_TTL_SECS", "60"),
            ("SESSION_NOTIFIED_REVALIDATE_SECS", "300"),
        ])
        .unwrap();
        assert_eq!(
            (p.session_cache, p.user_cache),
            (sized(10, 2), sized(20, 60))
        );
    }

    #[test]
    fn bad_cache_settings_name_their_variable() {
        for (vars, var) in [
            (
                &[("SESSION_CACHE_ENTRIES", "many")][..],
                "SESSION_CACHE_ENTRIES",
            ),
            (
                &[("SESSION_CACHE_ENTRIES", "-1")][..],
                "SESSION_CACHE_ENTRIES",
            ),
            (
                &[("SESSION_USER_CACHE_ENTRIES", "1e3")][..],
                "SESSION_USER_CACHE_ENTRIES",
            ),
            (
                &[("SESSION_CACHE_TTL_SECS", "5s")][..],
                "SESSION_CACHE_TTL_SECS",
            ),
            (&[("SESSION_USER_CACHE_TTL_SECS", "")][..], ""),
            (
                &[
                    ("SESSION_CACHE_ENTRIES", "10"),
                    ("SESSION_CACHE_TTL_SECS", "0"),
                ][..],
                "SESSION_CACHE_TTL_SECS",
            ),
            (
                &[
                    ("SESSION_CACHE_ENTRIES", "10"),
                    ("SESSION_REVALIDATE_SECS", "0"),
                ][..],
                "SESSION_CACHE_TTL_SECS",
            ),
            (
                &[
                    ("SESSION_USER_CACHE_ENTRIES", "10"),
                    ("SESSION_USER_CACHE_TTL_SECS", "0"),
                ][..],
                "SESSION_USER_CACHE_TTL_SECS",
            ),
        ] {
            match plan(vars) {
                // A blank value counts as unset.
                Ok(p) if var.is_empty() => assert_eq!(p.user_cache, None),
                Ok(p) => panic!("{vars:?} was accepted: {p:?}"),
                Err(err) => assert!(
                    err.to_string().starts_with(&format!("{var}=")),
                    "{vars:?}: {err}"
                ),
            }
        }
    }

    #[test]
    fn every_strategy_builds_what_it_says() {
        let redis = ("REDIS_URL", "redis://r:6379");
        let db = ("DATABASE_URL", "postgres://u:secret@db/app");
        let p = plan(&[("SESSION_ENV", "development"), redis]).unwrap();
        assert!(matches!(p.backends, Backends::Redis { max_retries: 3, .. }));
        let p = plan(&[("SESSION_ENV", "production"), redis, db]).unwrap();
        assert_eq!(p.strategy, MigrationStrategy::ProductionOnly);
        assert!(matches!(
            p.backends,
            Backends::RedisAndPostgres {
                write_through: false,
                database_var: "DATABASE_URL",
                ..
            }
        ));
        assert!(!format!("{p:?}").contains("secret"), "{p:?}");
        let p = plan(&[
            ("SESSION_ENV", "production"),
            ("SESSION_MIGRATION_STRATEGY", "gradual"),
            redis,
            db,
        ])
        .unwrap();
        assert_eq!(p.legacy_contexts, [AppContext::Web]);
        let p = plan(&[
            ("SESSION_MIGRATION_STRATEGY", "mock-with-write-through"),
            redis,
            db,
        ])
        .unwrap();
        assert!(matches!(
            p.backends,
            Backends::RedisAndPostgres {
                write_through: true,
                ..
            }
        ));
        let p = plan(&[
            ("SESSION_ENV", "production"),
            redis,
            db,
            ("DATABASE_IDENTITY_URL", "postgres://identity/db"),
            ("SESSION_REVALIDATE_SECS", "30"),
            ("SESSION_MAX_PER_USER", "4"),
        ])
        .unwrap();
        assert!(matches!(
            p.backends,
            Backends::RedisAndPostgres {
                database_var: "DATABASE_IDENTITY_URL",
                ..
            }
        ));
        assert_eq!(
            (p.revalidate, p.max_sessions_per_user),
            (Duration::from_secs(30), 4)
        );
        assert!(!p.redis_cluster);
        let p = plan(&[
            ("SESSION_ENV", "development"),
            ("REDIS_URL", "redis://a:7000,redis://b:7001"),
            ("REDIS_CLUSTER", "TRUE"),
        ])
        .unwrap();
        assert!(p.redis_cluster);
    }

    #[test]
    fn errors_name_the_variable() {
        let err = plan(&[("SESSION_ENV", "staging")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SESSION_ENV=\"staging\" is not valid"),
            "{err}"
        );
        let err = plan(&[("SESSION_MIGRATION_STRATEGY", "fast")]).unwrap_err();
        assert!(
            err.to_string().contains("SESSION_MIGRATION_STRATEGY"),
            "{err}"
        );
        let err = plan(&[("SESSION_ENV", "production")]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Missing {
                    var: "REDIS_URL",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("SESSION_ENV=production"), "{err}");
        let err = plan(&[
            ("SESSION_ENV", "production"),
            ("REDIS_URL", "redis://127.0.0.1"),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Missing {
                    var: "DATABASE_URL",
                    ..
                }
            ),
            "{err}"
        );
        let err = plan(&[
            ("SESSION_ENV", "development"),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("REDIS_MAX_RETRIES", "many"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("REDIS_MAX_RETRIES=\"many\""),
            "{err}"
        );
        let err = plan(&[
            ("SESSION_ENV", "production"),
            ("SESSION_MIGRATION_STRATEGY", "mock-only"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SESSION_MIGRATION_STRATEGY=\"mock-only\""),
            "{err}"
        );
        let err =
            plan(&[("SESSION_TRUSTED_ORIGINS", "https://ok.example, no origin")]).unwrap_err();
        assert!(
            err.to_string().starts_with("SESSION_TRUSTED_ORIGINS="),
            "{err}"
        );
        for bad in ["yes", "2", "on\0", "t rue"] {
            let err = plan(&[("REDIS_CLUSTER", bad)]).unwrap_err();
            assert!(err.to_string().starts_with("REDIS_CLUSTER="), "{err}");
        }
        let err = plan(&[("SESSION_MAX_PER_USER", "-1")]).unwrap_err();
        assert!(
            err.to_string().starts_with("SESSION_MAX_PER_USER="),
            "{err}"
        );
    }
}
