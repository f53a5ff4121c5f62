//! The history: every request the clients made and what came back, every fault the nemesis
//! injected, with monotonic start and end times. It is all the checker reads, so everything
//! an invariant needs is in it — and nothing secret: sessions and users appear as local
//! labels (`s17`, `u3`), never as ids or tokens.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Microseconds since the soak started, on the monotonic clock.
pub(crate) type Micros = u64;

/// One line of the history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// The configuration the bounds come from: always the first line.
    Setup(Setup),
    Request(Request),
    Fault(Fault),
}

/// What the instances ran with, and the bounds the checker holds them to (from the README's
/// table "Revocation and caching: what each setting costs and how stale it can be").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Setup {
    pub instances: usize,
    /// The users made admins (by SQL), by label: the only ones the admin app may admit.
    pub admins: Vec<String>,
    pub seed: u64,
    pub duration_secs: u64,
    pub bounds: Bounds,
}

/// The documented bounds, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Bounds {
    /// How late an invalidation published on the bus, or a PostgreSQL notification, may
    /// reach another instance (documented: milliseconds; the slack for a shared machine).
    pub delivery_ms: u64,
    /// The session cache's TTL (`SESSION_CACHE_TTL_SECS`): what a bare Redis `DEL` and a
    /// failed publish can cost.
    pub cache_ttl_ms: u64,
    /// `SESSION_REVALIDATE_SECS`: the polling bound while the notifications are not heard.
    pub revalidate_ms: u64,
    /// How long a listening connection dead without closing can go unnoticed (three
    /// heartbeats).
    pub dead_connection_ms: u64,
    /// The listener's longest wait between attempts to listen again: after PostgreSQL or
    /// its connection is back, the notifications may stay unheard this long.
    pub listener_backoff_ms: u64,
    /// The longest a request may wait for its answer: the timeouts a request can meet in a
    /// row (2 s per PostgreSQL query, pool included; 1 s per Redis command; 1 s per
    /// publish) and a margin.
    pub answer_ms: u64,
    /// The same for routes that hash a password (login, register, re-authentication): plus
    /// the login throttle's wait for a hashing slot (5 s).
    pub password_answer_ms: u64,
    /// N: after a fault heals, answers are back to normal within this.
    pub recovery_ms: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            delivery_ms: 1_000,
            cache_ttl_ms: 5_000,
            revalidate_ms: 5_000,
            dead_connection_ms: 3_000,
            listener_backoff_ms: 5_000,
            answer_ms: 10_000,
            password_answer_ms: 15_000,
            recovery_ms: 10_000,
        }
    }
}

/// Which app a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum App {
    Web,
    Admin,
}

/// How the credential was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Via {
    Bearer,
    Cookie,
}

/// The preferences a read saw (`None`: a key absent), or a patch set (`None`: removed).
pub(crate) type Prefs = BTreeMap<String, Option<String>>;

/// One request and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Request {
    pub seq: u64,
    /// `c3` (a user's client), `admin`, `ts` (the TypeScript apps' direct writes).
    pub client: String,
    /// The instance asked (`None`: Redis or PostgreSQL directly).
    pub instance: Option<usize>,
    pub app: App,
    /// The session whose credential was sent, by label.
    pub session: Option<String>,
    pub via: Option<Via>,
    pub start_us: Micros,
    pub end_us: Micros,
    pub op: Op,
    pub outcome: Outcome,
}

/// What was asked, and what the answer said that the checker needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    /// `POST /web/register`.
    Register { user: String },
    /// `POST /<app>/login`; `new_session` is the label given to the token answered.
    Login {
        user: String,
        password_ok: bool,
        new_session: Option<String>,
    },
    /// `GET /<app>/me`; `user` is whom the answer named.
    Me { user: Option<String> },
    /// `GET /web/preferences`.
    ReadPrefs { seen: Option<Prefs> },
    /// `PATCH /web/preferences`; `seen` is the merged preferences answered.
    PatchPrefs { set: Prefs, seen: Option<Prefs> },
    /// `GET /<app>/sessions`.
    ListSessions,
    /// `POST /<app>/sessions/revoke-others` with the password (right or wrong); the session
    /// moves to `new_session`.
    RevokeOthers {
        password_ok: bool,
        new_session: Option<String>,
    },
    /// `POST /<app>/logout`.
    Logout,
    /// `GET /admin/users?email=`.
    FindUser { user: String },
    /// `DELETE /admin/users/<id>/sessions`.
    AdminRevoke { user: String },
    /// The TypeScript admin panel's `UPDATE sessions SET revoked = true` for a user.
    SqlRevoke { user: String },
    /// The TypeScript apps' logout: a bare Redis `DEL` of the session's key.
    RedisDel,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// An HTTP answer; `error` is the body's `"error"` field, if any.
    Status { code: u16, error: Option<String> },
    /// No HTTP answer: refused, reset, or no answer within the client's timeout.
    NoAnswer { reason: String },
    /// A direct write (SQL, Redis) done: rows or keys it changed.
    Done { changed: u64 },
    /// A direct write that failed or timed out: it may or may not have happened.
    Failed { reason: String },
}

impl Outcome {
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            Outcome::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn error(&self) -> Option<&str> {
        match self {
            Outcome::Status { error, .. } => error.as_deref(),
            _ => None,
        }
    }
}

/// A fault, from the moment it was injected to the moment it healed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Fault {
    pub seq: u64,
    pub kind: FaultKind,
    /// The instance it hit (listener cuts and instance kills).
    pub instance: Option<usize>,
    pub start_us: Micros,
    /// Redis answering again, `SIGCONT` sent, PostgreSQL accepting connections, the proxy
    /// letting the listener through, the instance listening.
    pub heal_us: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultKind {
    /// `SIGKILL` to redis-server (its data is lost), then a new one on the same port.
    RedisKill,
    /// `SIGSTOP` to redis-server, then `SIGCONT`.
    RedisPause,
    /// PostgreSQL's immediate shutdown (every server process aborted, crash recovery on the
    /// next start), then a start.
    PostgresKill,
    /// The proxy in front of one instance drops its notification connection and refuses
    /// new ones.
    ListenerCut,
    /// `SIGKILL` to one instance, then a new one on the same port.
    InstanceKill,
}

impl FaultKind {
    pub(crate) const ALL: [FaultKind; 5] = [
        FaultKind::RedisKill,
        FaultKind::RedisPause,
        FaultKind::PostgresKill,
        FaultKind::ListenerCut,
        FaultKind::InstanceKill,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::RedisKill => "redis-kill",
            FaultKind::RedisPause => "redis-pause",
            FaultKind::PostgresKill => "postgres-kill",
            FaultKind::ListenerCut => "listener-cut",
            FaultKind::InstanceKill => "instance-kill",
        }
    }
}

/// The history as it is being written: shared by every client task and the nemesis.
#[derive(Clone)]
pub(crate) struct Recorder {
    started: Instant,
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
struct Recorded {
    next_seq: u64,
    events: Vec<Event>,
}

impl Recorder {
    pub(crate) fn new(setup: Setup) -> Self {
        Self {
            started: Instant::now(),
            inner: Arc::new(Mutex::new(Recorded {
                next_seq: 1,
                events: vec![Event::Setup(setup)],
            })),
        }
    }

    /// Now, on the history's clock.
    pub(crate) fn now(&self) -> Micros {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // A task that panicked while recording left a whole vector behind: keep it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a request (its `seq` is assigned here).
    pub(crate) fn request(&self, mut request: Request) {
        let mut recorded = self.lock();
        request.seq = recorded.next_seq;
        recorded.next_seq += 1;
        recorded.events.push(Event::Request(request));
    }

    pub(crate) fn fault(&self, mut fault: Fault) {
        let mut recorded = self.lock();
        fault.seq = recorded.next_seq;
        recorded.next_seq += 1;
        recorded.events.push(Event::Fault(fault));
    }

    /// Requests and faults recorded so far.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let recorded = self.lock();
        let faults = recorded
            .events
            .iter()
            .filter(|e| matches!(e, Event::Fault(_)))
            .count();
        (recorded.events.len() - faults - 1, faults)
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }
}

/// Reads a history file (one JSON event per line).
pub(crate) fn read(text: &str) -> anyhow::Result<Vec<Event>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("history line {}: {e}", n + 1))
        })
        .collect()
}

/// Writes a history as one JSON event per line.
pub(crate) fn write(events: &[Event]) -> String {
    let mut out = String::new();
    for event in events {
        // Serializing our own plain types cannot fail.
        out.push_str(&serde_json::to_string(event).unwrap_or_default());
        out.push('\n');
    }
    out
}
