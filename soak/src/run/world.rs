//! What every client task shares: the recorder, the HTTP client, the instances' ports, the
//! registry of users and live sessions, and the one function that sends a request and
//! records it with its answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use rand::Rng;
use serde_json::Value;

use super::http::{Answer, Credential, Http};
use super::servers::Postgres;
use crate::history::{App, Op, Outcome, Recorder, Request, Via};

/// A session a client holds: its label in the history, its token (never recorded), and
/// how it sends it on reads (writes always go as a bearer token: a cookie-authenticated
/// write may need a CSRF token some day, which is not what this soak is about).
#[derive(Clone)]
pub(super) struct Held {
    pub label: String,
    pub token: String,
    pub read_via: Via,
}

impl Held {
    pub(super) fn reading(&self) -> (&str, Credential<'_>) {
        (
            &self.label,
            Credential {
                token: &self.token,
                via: self.read_via,
            },
        )
    }

    pub(super) fn writing(&self) -> (&str, Credential<'_>) {
        (
            &self.label,
            Credential {
                token: &self.token,
                via: Via::Bearer,
            },
        )
    }
}

pub(super) struct World {
    pub rec: Recorder,
    pub http: Http,
    pub ports: Vec<u16>,
    pub deadline: tokio::time::Instant,
    pub redis_port: u16,
    pub pg: Arc<Postgres>,
    /// The mean pause between a client's requests.
    pub think: Duration,
    /// Users an admin may target: label → email.
    pub users: Mutex<Vec<(String, String)>>,
    /// Live web sessions, label → (user, token): what the TypeScript apps' bare `DEL` picks
    /// from, and what is tried right after a user's sessions were ended.
    pub live: Mutex<BTreeMap<String, (String, String)>>,
    next_session: AtomicU64,
    next_value: AtomicU64,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn email(user: &str) -> String {
    format!("{user}@soak.example")
}

/// `GET /<app>/me` as the history records it: whom the answer named, if it was a `200`.
pub(super) fn me(answer: Option<&Answer>) -> Op {
    Op::Me {
        user: answer
            .filter(|a| a.status == 200)
            .and_then(|a| a.str("email"))
            .map(|e| user_of(&e)),
    }
}

/// The user label of an email the soak made.
pub(super) fn user_of(email: &str) -> String {
    email
        .strip_suffix("@soak.example")
        .map_or_else(|| format!("?{email}"), str::to_owned)
}

impl World {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        rec: Recorder,
        ports: Vec<u16>,
        deadline: tokio::time::Instant,
        redis_port: u16,
        pg: Arc<Postgres>,
        think: Duration,
    ) -> Self {
        Self {
            rec,
            http: Http::new(),
            ports,
            deadline,
            redis_port,
            pg,
            think,
            users: Mutex::default(),
            live: Mutex::default(),
            next_session: AtomicU64::new(1),
            next_value: AtomicU64::new(1),
        }
    }

    pub(super) fn running(&self) -> bool {
        tokio::time::Instant::now() < self.deadline
    }

    /// A label for a new session.
    pub(super) fn session_label(&self) -> String {
        format!("s{}", self.next_session.fetch_add(1, Ordering::Relaxed))
    }

    /// A preference value written nowhere else.
    pub(super) fn value(&self) -> String {
        format!("v{}", self.next_value.fetch_add(1, Ordering::Relaxed))
    }

    /// A pause of about `think` (half to one and a half of it).
    pub(super) async fn pause(&self, rng: &mut impl Rng, scale: f64) {
        let mean = self.think.as_secs_f64() * scale;
        let secs = rng.random_range(mean * 0.5..mean * 1.5);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    pub(super) fn instance(&self, rng: &mut impl Rng) -> usize {
        rng.random_range(0..self.ports.len())
    }

    /// Sends one request and records it; `op` describes it, seeing the answer (if any).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call(
        &self,
        client: &str,
        instance: usize,
        app: App,
        session: Option<(&str, Credential<'_>)>,
        method: Method,
        path: &str,
        body: Option<Value>,
        op: impl FnOnce(Option<&Answer>) -> Op,
    ) -> Result<Answer, String> {
        let start_us = self.rec.now();
        let result = self
            .http
            .send(
                self.ports[instance],
                method,
                app,
                path,
                session.map(|(_, c)| c),
                body.as_ref(),
            )
            .await;
        let end_us = self.rec.now();
        let outcome = match &result {
            Ok(answer) => Outcome::Status {
                code: answer.status,
                error: answer.error(),
            },
            Err(reason) => Outcome::NoAnswer {
                reason: reason.clone(),
            },
        };
        self.rec.request(Request {
            seq: 0,
            client: client.to_owned(),
            instance: Some(instance),
            app,
            session: session.map(|(label, _)| label.to_owned()),
            via: session.map(|(_, c)| c.via),
            start_us,
            end_us,
            op: op(result.as_ref().ok()),
            outcome,
        });
        result
    }

    /// The live sessions of `user`, at most `max` of them.
    pub(super) fn live_of(&self, user: &str, max: usize) -> Vec<(String, String)> {
        lock(&self.live)
            .iter()
            .filter(|(_, (owner, _))| owner == user)
            .take(max)
            .map(|(label, (_, token))| (label.clone(), token.clone()))
            .collect()
    }

    /// `GET /web/me` with a session that was just ended, on a random instance, as soon as
    /// the end was acknowledged: the tightest test of the bounds.
    pub(super) async fn probe(&self, client: &str, rng: &mut impl Rng, label: &str, token: &str) {
        let i = self.instance(rng);
        let credential = Credential {
            token,
            via: Via::Bearer,
        };
        let _ = self
            .call(
                client,
                i,
                App::Web,
                Some((label, credential)),
                Method::GET,
                "/web/me",
                None,
                me,
            )
            .await;
    }

    /// Records a direct write (SQL, Redis) done by `run`.
    pub(super) async fn direct(
        &self,
        session: Option<&str>,
        op: Op,
        run: impl std::future::Future<Output = anyhow::Result<u64>>,
    ) -> Option<u64> {
        let start_us = self.rec.now();
        let result = run.await;
        let end_us = self.rec.now();
        let outcome = match &result {
            Ok(changed) => Outcome::Done { changed: *changed },
            Err(e) => Outcome::Failed {
                reason: e.to_string(),
            },
        };
        self.rec.request(Request {
            seq: 0,
            client: "ts".into(),
            instance: None,
            app: App::Web,
            session: session.map(str::to_owned),
            via: None,
            start_us,
            end_us,
            op,
            outcome,
        });
        result.ok()
    }
}
