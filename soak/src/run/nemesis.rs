//! The nemesis: one fault at a time, each kind in turn (in a shuffled order per round),
//! each held for a few seconds, then healed and given time to recover before the next.
//! Each fault is recorded with when it was injected and when it healed.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::instances::Instance;
use super::proxy::PgProxy;
use super::servers::{Postgres, Redis};
use super::world::World;
use crate::history::{Fault, FaultKind};

/// What the nemesis acts on.
pub(super) struct Targets<'a> {
    pub redis: &'a mut Redis,
    pub postgres: &'a Postgres,
    pub proxies: &'a [PgProxy],
    pub instances: &'a mut [Instance],
}

/// Quiet time before the first fault (the clients register and log in).
const WARM_UP: Duration = Duration::from_secs(8);
/// No fault starts later than this before the end, so the last one heals and its
/// recovery is seen.
const COOL_DOWN: Duration = Duration::from_secs(25);

fn secs(rng: &mut SmallRng, low: f64, high: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(low..high))
}

pub(super) async fn run(world: &World, targets: Targets<'_>, seed: u64) -> anyhow::Result<()> {
    let Targets {
        redis,
        postgres,
        proxies,
        instances,
    } = targets;
    let mut rng = SmallRng::seed_from_u64(seed);
    tokio::time::sleep(WARM_UP).await;
    let mut round: Vec<FaultKind> = Vec::new();
    while tokio::time::Instant::now() + COOL_DOWN < world.deadline {
        if round.is_empty() {
            round = FaultKind::ALL.to_vec();
            round.shuffle(&mut rng);
        }
        let kind = round.pop().unwrap_or(FaultKind::RedisKill);
        let instance = rng.random_range(0..instances.len());
        let start_us = world.rec.now();
        let target = match kind {
            FaultKind::RedisKill => {
                redis.kill().await?;
                tokio::time::sleep(secs(&mut rng, 1.0, 4.0)).await;
                redis.spawn().await?;
                None
            }
            FaultKind::RedisPause => {
                redis.pause()?;
                tokio::time::sleep(secs(&mut rng, 2.0, 5.0)).await;
                redis.resume()?;
                None
            }
            FaultKind::PostgresKill => {
                postgres.kill().await?;
                tokio::time::sleep(secs(&mut rng, 1.0, 4.0)).await;
                postgres.start_server().await?;
                None
            }
            FaultKind::ListenerCut => {
                proxies[instance].cut_listener();
                tokio::time::sleep(secs(&mut rng, 3.0, 10.0)).await;
                proxies[instance].restore_listener();
                Some(instance)
            }
            FaultKind::InstanceKill => {
                instances[instance].kill().await?;
                tokio::time::sleep(secs(&mut rng, 0.5, 2.0)).await;
                instances[instance].start().await?;
                Some(instance)
            }
        };
        world.rec.fault(Fault {
            seq: 0,
            kind,
            instance: target,
            start_us,
            heal_us: world.rec.now(),
        });
        for instance in instances.iter_mut() {
            if let Some(status) = instance.exited() {
                anyhow::bail!("instance {} exited by itself: {status}", instance.index);
            }
        }
        tokio::time::sleep(secs(&mut rng, 6.0, 12.0)).await;
    }
    Ok(())
}
