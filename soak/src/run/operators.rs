//! The other actors: an admin ending users' sessions through the admin app, and the
//! TypeScript apps writing behind the crate's back — the admin panel's
//! `UPDATE sessions SET revoked = true` and the logout's bare Redis `DEL`.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::Method;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::http::Answer;
use super::world::{email, lock, me, Held, World};
use crate::history::{App, Op, Via};

pub(super) const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "password-of-the-admin";

/// Registers the admin on the web app, makes it an admin by SQL, then ends a random user's
/// sessions every few seconds.
pub(super) async fn admin(world: Arc<World>, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let email = email(ADMIN);
    let body = json!({"email": email, "password": ADMIN_PASSWORD});
    // Registered (201, or 409 from an earlier attempt that got no answer).
    while world.running() {
        let i = world.instance(&mut rng);
        let answer = world
            .call(
                ADMIN,
                i,
                App::Web,
                None,
                Method::POST,
                "/web/register",
                Some(body.clone()),
                |_| Op::Register { user: ADMIN.into() },
            )
            .await;
        if matches!(
            answer,
            Ok(Answer {
                status: 201 | 409,
                ..
            })
        ) {
            break;
        }
        world.pause(&mut rng, 5.0).await;
    }
    let promote = format!("UPDATE users SET role = 'admin' WHERE email = '{email}'");
    while world.running() && world.pg.psql("soak", &promote).await.is_err() {
        world.pause(&mut rng, 5.0).await;
    }
    let mut session: Option<Held> = None;
    let mut ids: HashMap<String, String> = HashMap::new();
    while world.running() {
        world.pause(&mut rng, 25.0).await;
        let Some(held) = session.clone() else {
            session = login(&world, &mut rng, &body).await;
            continue;
        };
        let target = lock(&world.users).choose(&mut rng).cloned();
        let Some((user, user_email)) = target else {
            continue;
        };
        let i = world.instance(&mut rng);
        if !ids.contains_key(&user) {
            let path = format!("/admin/users?email={user_email}");
            let found = world
                .call(
                    ADMIN,
                    i,
                    App::Admin,
                    Some(held.writing()),
                    Method::GET,
                    &path,
                    None,
                    |_| Op::FindUser { user: user.clone() },
                )
                .await;
            match found {
                Ok(a) if a.status == 200 => {
                    if let Some(id) = a.str("id") {
                        ids.insert(user.clone(), id);
                    }
                }
                Ok(a) if a.status == 401 => session = None,
                _ => {}
            }
            continue;
        }
        let path = format!("/admin/users/{}/sessions", ids[&user]);
        let targets = world.live_of(&user, 2);
        let ended = world
            .call(
                ADMIN,
                i,
                App::Admin,
                Some(held.writing()),
                Method::DELETE,
                &path,
                None,
                |_| Op::AdminRevoke { user: user.clone() },
            )
            .await;
        match ended {
            Ok(Answer { status: 401, .. }) => session = None,
            Ok(Answer { status: 204, .. }) => {
                for (label, token) in targets {
                    world.probe(ADMIN, &mut rng, &label, &token).await;
                }
            }
            _ => {}
        }
    }
}

async fn login(world: &World, rng: &mut SmallRng, body: &serde_json::Value) -> Option<Held> {
    let i = world.instance(rng);
    let mut new = None;
    let _ = world
        .call(
            ADMIN,
            i,
            App::Admin,
            None,
            Method::POST,
            "/admin/login",
            Some(body.clone()),
            |a| {
                new = a
                    .filter(|a| a.status == 200)
                    .and_then(|a| a.str("token"))
                    .map(|token| (world.session_label(), token));
                Op::Login {
                    user: ADMIN.into(),
                    password_ok: true,
                    new_session: new.as_ref().map(|(label, _)| label.clone()),
                }
            },
        )
        .await;
    let (label, token) = new?;
    // Its first `/me` after a login carries the notice: read it (and check who it is).
    let held = Held {
        label,
        token,
        read_via: Via::Bearer,
    };
    let i = world.instance(rng);
    let _ = world
        .call(
            ADMIN,
            i,
            App::Admin,
            Some(held.reading()),
            Method::GET,
            "/admin/me",
            None,
            me,
        )
        .await;
    Some(held)
}

/// The TypeScript apps: every few seconds, an SQL revocation of a random user's sessions or
/// a bare `DEL` of a random live web session's key.
pub(super) async fn typescript(world: Arc<World>, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    while world.running() {
        world.pause(&mut rng, 35.0).await;
        if rng.random_bool(0.5) {
            let Some((user, user_email)) = lock(&world.users).choose(&mut rng).cloned() else {
                continue;
            };
            let sql = format!(
                "WITH ended AS (UPDATE sessions SET revoked = true, revoked_at = now() \
                 WHERE user_id = (SELECT id FROM users WHERE email = '{user_email}') AND NOT revoked \
                 RETURNING 1) SELECT count(*) FROM ended"
            );
            let revoke = async { Ok(world.pg.psql("soak", &sql).await?.parse()?) };
            let targets = world.live_of(&user, 2);
            if world
                .direct(None, Op::SqlRevoke { user }, revoke)
                .await
                .is_some()
            {
                for (label, token) in targets {
                    world.probe("ts", &mut rng, &label, &token).await;
                }
            }
        } else {
            let picked = {
                let live = lock(&world.live);
                let labels: Vec<&String> = live.keys().collect();
                labels
                    .choose(&mut rng)
                    .map(|label| ((*label).clone(), live[*label].1.clone()))
            };
            let Some((label, token)) = picked else {
                continue;
            };
            let del = redis_del(world.redis_port, format!("session:web:{token}"));
            if world.direct(Some(&label), Op::RedisDel, del).await > Some(0) {
                lock(&world.live).remove(&label);
                world.probe("ts", &mut rng, &label, &token).await;
            }
        }
    }
}

/// `redis-cli DEL key`, within 3 s (a paused Redis never answers).
async fn redis_del(port: u16, key: String) -> anyhow::Result<u64> {
    let mut command = tokio::process::Command::new("redis-cli");
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "DEL", &key])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(3), command.output())
        .await
        .context("redis-cli timed out")??;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("redis-cli: {}", text.trim()))
}
