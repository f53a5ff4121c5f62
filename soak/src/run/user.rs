//! A user's client: registers, then logs in (up to three sessions at once), reads `/me`,
//! reads and patches preferences, lists its sessions, signs out its other devices (password
//! re-entered), logs out — and tries what must be refused: a wrong password, the admin app,
//! its web session on the admin app, a token never issued, and its ended sessions again.

use std::collections::VecDeque;
use std::sync::Arc;

use hyper::Method;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::http::{Answer, Credential};
use super::world::{email, lock, me, Held, World};
use crate::check::KEY_PREFIX;
use crate::history::{App, Op, Prefs, Via};

const MAX_HELD: usize = 3;
/// Ended sessions kept to try again.
const MAX_ENDED: usize = 8;
const KEYS: [&str; 3] = ["soak_a", "soak_b", "soak_c"];

struct Client {
    world: Arc<World>,
    name: String,
    user: String,
    email: String,
    password: String,
    rng: SmallRng,
    held: Vec<Held>,
    ended: VecDeque<Held>,
    forged: u64,
}

pub(super) async fn run(world: Arc<World>, n: usize, seed: u64) {
    let user = format!("u{n}");
    let mut client = Client {
        name: format!("c{n}"),
        email: email(&user),
        password: format!("password-of-{user}"),
        user,
        rng: SmallRng::seed_from_u64(seed),
        world,
        held: Vec::new(),
        ended: VecDeque::new(),
        forged: 0,
    };
    if !client.register().await {
        return;
    }
    while client.world.running() {
        let world = Arc::clone(&client.world);
        world.pause(&mut client.rng, 1.0).await;
        client.step().await;
    }
    // Last, every session still held reads its preferences: acknowledged writes must be
    // there after the last fault healed.
    for held in client.held.clone() {
        client.read_prefs(&held).await;
    }
}

fn seen_prefs(answer: Option<&Answer>) -> Option<Prefs> {
    let object = answer?.json.as_ref()?.as_object()?;
    Some(
        object
            .iter()
            .filter(|(k, _)| k.starts_with(KEY_PREFIX))
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                };
                (k.clone(), value)
            })
            .collect(),
    )
}

impl Client {
    fn instance(&mut self) -> usize {
        self.world.instance(&mut self.rng)
    }

    async fn register(&mut self) -> bool {
        while self.world.running() {
            let i = self.instance();
            let body = json!({"email": self.email, "password": self.password});
            let user = self.user.clone();
            let answer = self
                .world
                .call(
                    &self.name,
                    i,
                    App::Web,
                    None,
                    Method::POST,
                    "/web/register",
                    Some(body),
                    |_| Op::Register { user },
                )
                .await;
            if matches!(
                answer,
                Ok(Answer {
                    status: 201 | 409,
                    ..
                })
            ) {
                lock(&self.world.users).push((self.user.clone(), self.email.clone()));
                return true;
            }
            let world = Arc::clone(&self.world);
            world.pause(&mut self.rng, 5.0).await;
        }
        false
    }

    /// One operation, picked at random among those the client's state allows.
    async fn step(&mut self) {
        if self.held.is_empty() {
            return self.login(None).await;
        }
        let pick = self.rng.random_range(0..self.held.len());
        let held = self.held[pick].clone();
        match self.rng.random_range(0..100) {
            0..=5 if self.held.len() < MAX_HELD => self.login(None).await,
            6..=7 => self.login(Some(held)).await,
            8..=10 => self.wrong_password().await,
            11 => self.admin_login().await,
            12..=14 => self.foreign(&held).await,
            15..=16 => self.forged().await,
            17..=31 => self.read_prefs(&held).await,
            32..=46 => self.patch_prefs(&held).await,
            47..=49 => self.list(&held).await,
            50..=52 => self.revoke_others(&held).await,
            53..=58 => self.logout(&held).await,
            59..=68 if !self.ended.is_empty() => {
                let k = self.rng.random_range(0..self.ended.len());
                let ended = self.ended[k].clone();
                self.me(&ended).await;
            }
            _ => self.me(&held).await,
        }
    }

    /// `held` ended (or may have): kept to try again, no longer used as live.
    fn ended(&mut self, label: &str) {
        if let Some(k) = self.held.iter().position(|h| h.label == label) {
            let held = self.held.remove(k);
            lock(&self.world.live).remove(&held.label);
            self.ended.push_back(held);
            if self.ended.len() > MAX_ENDED {
                self.ended.pop_front();
            }
        }
    }

    fn hold(&mut self, label: String, token: String) {
        let read_via = if self.rng.random_bool(0.3) {
            Via::Cookie
        } else {
            Via::Bearer
        };
        lock(&self.world.live).insert(label.clone(), (self.user.clone(), token.clone()));
        self.held.push(Held {
            label,
            token,
            read_via,
        });
    }

    /// A login; with `replacing`, sent with that session's token (login ends it).
    async fn login(&mut self, replacing: Option<Held>) {
        let i = self.instance();
        let body = json!({"email": self.email, "password": self.password});
        let (world, user) = (Arc::clone(&self.world), self.user.clone());
        let mut new = None;
        let answer = world
            .call(
                &self.name,
                i,
                App::Web,
                replacing.as_ref().map(Held::writing),
                Method::POST,
                "/web/login",
                Some(body),
                |answer| {
                    let token = answer
                        .filter(|a| a.status == 200)
                        .and_then(|a| a.str("token").or_else(|| a.cookie.clone()));
                    new = token.map(|t| (world.session_label(), t));
                    Op::Login {
                        user,
                        password_ok: true,
                        new_session: new.as_ref().map(|(label, _)| label.clone()),
                    }
                },
            )
            .await;
        if let Some(old) = &replacing {
            if !matches!(&answer, Ok(a) if a.status == 401 || a.status == 429) {
                self.ended(&old.label);
            }
        }
        if let Some((label, token)) = new {
            self.hold(label, token);
        }
    }

    async fn wrong_password(&mut self) {
        let i = self.instance();
        let body = json!({"email": self.email, "password": "not-the-password"});
        let (world, user) = (Arc::clone(&self.world), self.user.clone());
        let mut new = None;
        let _ = world
            .call(
                &self.name,
                i,
                App::Web,
                None,
                Method::POST,
                "/web/login",
                Some(body),
                |a| {
                    if a.is_some_and(|a| a.status == 200) {
                        new = Some(world.session_label());
                    }
                    Op::Login {
                        user,
                        password_ok: false,
                        new_session: new.clone(),
                    }
                },
            )
            .await;
    }

    /// The right password on the admin app, which does not admit role `user`.
    async fn admin_login(&mut self) {
        let i = self.instance();
        let body = json!({"email": self.email, "password": self.password});
        let (world, user) = (Arc::clone(&self.world), self.user.clone());
        let _ = world
            .call(
                &self.name,
                i,
                App::Admin,
                None,
                Method::POST,
                "/admin/login",
                Some(body),
                |a| Op::Login {
                    user,
                    password_ok: true,
                    new_session: a.filter(|a| a.status == 200).map(|_| world.session_label()),
                },
            )
            .await;
    }

    async fn me(&mut self, held: &Held) {
        let i = self.instance();
        let world = Arc::clone(&self.world);
        let answer = world
            .call(
                &self.name,
                i,
                App::Web,
                Some(held.reading()),
                Method::GET,
                "/web/me",
                None,
                me,
            )
            .await;
        if matches!(answer, Ok(Answer { status: 401, .. })) {
            self.ended(&held.label);
        }
    }

    /// The web session's token on the admin app: never admitted.
    async fn foreign(&mut self, held: &Held) {
        let i = self.instance();
        let world = Arc::clone(&self.world);
        let _ = world
            .call(
                &self.name,
                i,
                App::Admin,
                Some(held.reading()),
                Method::GET,
                "/admin/me",
                None,
                me,
            )
            .await;
    }

    /// A well-formed token nobody issued.
    async fn forged(&mut self) {
        self.forged += 1;
        let label = format!("forged-{}-{}", self.name, self.forged);
        let token: String = (0..43)
            .map(|_| {
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                alphabet[self.rng.random_range(0..alphabet.len())] as char
            })
            .collect();
        let i = self.instance();
        let world = Arc::clone(&self.world);
        let credential = Credential {
            token: &token,
            via: Via::Bearer,
        };
        let _ = world
            .call(
                &self.name,
                i,
                App::Web,
                Some((&label, credential)),
                Method::GET,
                "/web/me",
                None,
                me,
            )
            .await;
    }

    async fn read_prefs(&mut self, held: &Held) {
        let i = self.instance();
        let world = Arc::clone(&self.world);
        let answer = world
            .call(
                &self.name,
                i,
                App::Web,
                Some(held.reading()),
                Method::GET,
                "/web/preferences",
                None,
                |a| Op::ReadPrefs {
                    seen: seen_prefs(a.filter(|a| a.status == 200)),
                },
            )
            .await;
        if matches!(answer, Ok(Answer { status: 401, .. })) {
            self.ended(&held.label);
        }
    }

    /// One or two keys set to values written nowhere else, or removed.
    async fn patch_prefs(&mut self, held: &Held) {
        let count = self.rng.random_range(1..=2);
        let mut set = Prefs::new();
        while set.len() < count {
            let key = KEYS[self.rng.random_range(0..KEYS.len())];
            let value = (!self.rng.random_bool(0.1)).then(|| self.world.value());
            set.insert(key.to_owned(), value);
        }
        let body: Map<String, Value> = set
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
            .collect();
        let i = self.instance();
        let world = Arc::clone(&self.world);
        let answer = world
            .call(
                &self.name,
                i,
                App::Web,
                Some(held.writing()),
                Method::PATCH,
                "/web/preferences",
                Some(Value::Object(body)),
                |a| Op::PatchPrefs {
                    set,
                    seen: seen_prefs(a.filter(|a| a.status == 200)),
                },
            )
            .await;
        if matches!(answer, Ok(Answer { status: 401, .. })) {
            self.ended(&held.label);
        }
    }

    async fn list(&mut self, held: &Held) {
        let i = self.instance();
        let world = Arc::clone(&self.world);
        let _ = world
            .call(
                &self.name,
                i,
                App::Web,
                Some(held.reading()),
                Method::GET,
                "/web/sessions",
                None,
                |_| Op::ListSessions,
            )
            .await;
    }

    /// "Sign out all other devices", the password re-entered (wrong one time in ten).
    async fn revoke_others(&mut self, held: &Held) {
        let password_ok = !self.rng.random_bool(0.1);
        let password = if password_ok {
            self.password.clone()
        } else {
            "not-the-password".to_owned()
        };
        let i = self.instance();
        let world = Arc::clone(&self.world);
        let mut new = None;
        let answer = world
            .call(
                &self.name,
                i,
                App::Web,
                Some(held.writing()),
                Method::POST,
                "/web/sessions/revoke-others",
                Some(json!({ "password": password })),
                |a| {
                    let token = a
                        .filter(|a| a.status == 200)
                        .and_then(|a| a.str("token").or_else(|| a.cookie.clone()));
                    new = token.map(|t| (world.session_label(), t));
                    Op::RevokeOthers {
                        password_ok,
                        new_session: new.as_ref().map(|(label, _)| label.clone()),
                    }
                },
            )
            .await;
        match answer {
            Ok(Answer { status: 200, .. }) => {
                // Every other session of the user ended, and this one moved.
                let labels: Vec<String> = self.held.iter().map(|h| h.label.clone()).collect();
                for label in labels {
                    self.ended(&label);
                }
                if let Some((label, token)) = new {
                    let read_via = held.read_via;
                    lock(&self.world.live)
                        .insert(label.clone(), (self.user.clone(), token.clone()));
                    self.held.push(Held {
                        label,
                        token,
                        read_via,
                    });
                }
            }
            Ok(a)
                if a.status == 401 && a.error().as_deref() == Some("reauthentication_required") => {
            }
            // Refused as ended, or unanswered (it may have moved): not used as live again.
            Ok(a) if a.status == 429 => {}
            _ => self.ended(&held.label),
        }
    }

    /// Logout; one time in five with a read of the same session racing it on another
    /// instance.
    async fn logout(&mut self, held: &Held) {
        let race = self.rng.random_bool(0.2);
        let i = self.instance();
        let j = (i + 1) % self.world.ports.len();
        let world = Arc::clone(&self.world);
        let name = self.name.clone();
        let logout = world.call(
            &name,
            i,
            App::Web,
            Some(held.writing()),
            Method::POST,
            "/web/logout",
            None,
            |_| Op::Logout,
        );
        let logged_out = if race {
            let read = world.call(
                &name,
                j,
                App::Web,
                Some(held.reading()),
                Method::GET,
                "/web/me",
                None,
                me,
            );
            tokio::join!(logout, read).0
        } else {
            logout.await
        };
        // One time in three, the ended session is tried at once on the other instance.
        if matches!(logged_out, Ok(Answer { status: 204, .. })) && self.rng.random_bool(0.3) {
            let credential = Credential {
                token: &held.token,
                via: Via::Bearer,
            };
            let _ = world
                .call(
                    &name,
                    j,
                    App::Web,
                    Some((&held.label, credential)),
                    Method::GET,
                    "/web/me",
                    None,
                    me,
                )
                .await;
        }
        self.ended(&held.label);
    }
}
