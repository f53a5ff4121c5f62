//! A soak run: the servers, the instances, the clients, the nemesis, then the history
//! written and checked.

mod http;
mod instances;
mod nemesis;
mod operators;
mod proxy;
mod servers;
mod user;
mod world;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;

use crate::history::{Bounds, Recorder, Setup};
use instances::Instance;
use proxy::PgProxy;
use servers::{Postgres, Redis};
use world::World;

/// What a run is asked for (from the environment, see `main`).
pub(crate) struct Config {
    pub duration: Duration,
    pub seed: u64,
    pub instances: usize,
    pub clients: usize,
    pub think: Duration,
    /// The `multi_app` binary.
    pub app: PathBuf,
    /// Where the history and the instances' logs are kept.
    pub out: PathBuf,
    /// Variables set on the instances over the soak's own (`SOAK_INSTANCE_ENV`): to see a
    /// configuration looser than the bounds caught, e.g. a longer session cache TTL.
    pub instance_env: Vec<(String, String)>,
}

/// The instances' configuration: production on the tiered store, PostgreSQL notifications
/// on, both caches on (Redis pub/sub bus following the notifications), the bounds of
/// [`Bounds::default`]. The login limits are off: every client comes from 127.0.0.1.
fn instance_env(redis: &Redis, database_url: String, bounds: &Bounds) -> Vec<(String, String)> {
    let secs = |ms: u64| (ms / 1000).to_string();
    [
        ("SESSION_ENV", "production".to_owned()),
        ("SESSION_AUTO_MIGRATE", "true".to_owned()),
        ("REDIS_URL", redis.url()),
        ("DATABASE_URL", database_url),
        ("SESSION_REVALIDATE_SECS", secs(bounds.revalidate_ms)),
        ("SESSION_NOTIFIED_REVALIDATE_SECS", "300".to_owned()),
        ("SESSION_CACHE_ENTRIES", "10000".to_owned()),
        ("SESSION_CACHE_TTL_SECS", secs(bounds.cache_ttl_ms)),
        ("SESSION_USER_CACHE_ENTRIES", "10000".to_owned()),
        ("SESSION_USER_CACHE_TTL_SECS", "300".to_owned()),
        ("LOGIN_LIMIT_PER_ACCOUNT", "0".to_owned()),
        ("LOGIN_LIMIT_PER_ADDRESS", "0".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs the soak; the verdict's report is printed, the verdict line last. Returns whether
/// there was no violation.
pub(crate) async fn run(config: Config) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new().prefix("soak.").tempdir()?;
    // The PostgreSQL owner must reach its directory inside.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let (redis_dir, pg_dir) = (dir.path().join("redis"), dir.path().join("pg"));
    std::fs::create_dir(&redis_dir)?;
    std::fs::create_dir(&pg_dir)?;
    let mut redis = Redis::start(&redis_dir).await?;
    let postgres = Arc::new(Postgres::start(&pg_dir).await?);
    let bounds = Bounds::default();
    let mut proxies = Vec::new();
    let mut instances = Vec::new();
    for index in 0..config.instances {
        let proxy = PgProxy::start(postgres.port).await?;
        let mut env = instance_env(&redis, postgres.url(proxy.port), &bounds);
        env.extend(config.instance_env.iter().cloned());
        let mut instance = Instance::new(index, &config.app, dir.path(), env)?;
        // One at a time: each runs the migrations first.
        instance.start().await?;
        proxies.push(proxy);
        instances.push(instance);
    }
    eprintln!(
        "soak: {} instances up (Redis :{}, PostgreSQL :{}), {} clients for {}s, seed {}",
        instances.len(),
        redis.port,
        postgres.port,
        config.clients,
        config.duration.as_secs(),
        config.seed
    );
    let rec = Recorder::new(Setup {
        instances: config.instances,
        admins: vec![operators::ADMIN.to_owned()],
        seed: config.seed,
        duration_secs: config.duration.as_secs(),
        bounds,
    });
    let world = Arc::new(World::new(
        rec.clone(),
        instances.iter().map(|i| i.port).collect(),
        tokio::time::Instant::now() + config.duration,
        redis.port,
        Arc::clone(&postgres),
        config.think,
    ));
    let mut clients = JoinSet::new();
    for n in 1..=config.clients {
        clients.spawn(user::run(Arc::clone(&world), n, config.seed ^ n as u64));
    }
    clients.spawn(operators::admin(Arc::clone(&world), config.seed ^ 0xad));
    clients.spawn(operators::typescript(
        Arc::clone(&world),
        config.seed ^ 0x75,
    ));
    let progress = tokio::spawn(progress(Arc::clone(&world)));
    let targets = nemesis::Targets {
        redis: &mut redis,
        postgres: &postgres,
        proxies: &proxies,
        instances: &mut instances,
    };
    let nemesis = nemesis::run(&world, targets, config.seed ^ 0x4e).await;
    while let Some(done) = clients.join_next().await {
        done.context("a client task failed")?;
    }
    progress.abort();
    for instance in &mut instances {
        instance.kill().await?;
    }
    std::fs::create_dir_all(&config.out)?;
    for instance in &instances {
        let name = instance.log().file_name().unwrap_or_default();
        let _ = std::fs::copy(instance.log(), config.out.join(name));
    }
    let events = rec.events();
    let history = config.out.join("history.jsonl");
    std::fs::write(&history, crate::history::write(&events))?;
    nemesis.context("the nemesis failed; the run is not valid")?;
    let verdict = crate::check::check(&events)?;
    println!(
        "history: {} (instance logs beside it; `soak check {}` checks it again)",
        history.display(),
        history.display()
    );
    println!("{}", verdict.report(&events));
    Ok(verdict.violations.is_empty())
}

/// A line on stderr every 30 s, so a long run shows it is alive.
async fn progress(world: Arc<World>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (operations, faults) = world.rec.counts();
        eprintln!(
            "soak: {}s, {} operations, {} faults so far",
            world.rec.now() / 1_000_000,
            operations,
            faults
        );
    }
}
