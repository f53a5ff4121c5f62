//! What the history implies, derived once: the sessions (who, which app, which lineage of
//! rotations), the operations that ended them (surely, once acknowledged, or possibly), the
//! users known to exist, the faults.

use std::collections::HashMap;

use crate::history::{App, Bounds, Event, Fault, FaultKind, Micros, Op, Outcome, Request, Setup};

/// A session the history created (a login or a rotation answered with its token).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub user: String,
    pub app: App,
    /// The login it descends from through rotations: its data carries over.
    pub lineage: String,
    pub created_seq: u64,
}

/// How an ending reaches other instances, which decides its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndPath {
    /// Through the crate (logout, revoke-others, a login replacing a session, the admin's
    /// revoke-all): Redis deleted and the bus told before the answer; "at once" on every
    /// instance, so the bound is the delivery.
    Crate,
    /// By SQL (the TypeScript admin panel): the PostgreSQL notification's delivery.
    Sql,
    /// A bare Redis `DEL` (the TypeScript apps' logout): publishes nothing, so a session cache
    /// may serve the session for its TTL.
    RedisDel,
}

/// An operation that ends sessions.
#[derive(Debug, Clone)]
pub(crate) struct End {
    pub seq: u64,
    pub path: EndPath,
    pub start_us: Micros,
    pub end_us: Micros,
    /// Ended for sure once it was acknowledged (empty when it was not).
    pub surely: Vec<String>,
    /// It may have ended these (a superset of `surely`), from its start on.
    pub maybe: Vec<String>,
}

pub(crate) struct Model<'h> {
    pub setup: &'h Setup,
    /// By start time.
    pub requests: Vec<&'h Request>,
    pub faults: Vec<&'h Fault>,
    pub sessions: HashMap<String, Session>,
    pub ends: Vec<End>,
    /// Per user: the earliest time it surely existed (its registration answered 201 or 409).
    pub registered: HashMap<String, Micros>,
    by_seq: HashMap<u64, &'h Request>,
    faults_by_seq: HashMap<u64, &'h Fault>,
    /// Per session, the ends that may have ended it (indexes into `ends`).
    ends_by_session: HashMap<String, Vec<usize>>,
    /// Per user, their sessions' labels.
    sessions_by_user: HashMap<String, Vec<String>>,
}

/// Whether `[a0, a1]` and `[b0, b1]` share a moment.
pub(crate) fn overlaps(a0: Micros, a1: Micros, b0: Micros, b1: Micros) -> bool {
    a0 <= b1 && b0 <= a1
}

pub(crate) fn ms(ms: u64) -> Micros {
    ms * 1_000
}

impl<'h> Model<'h> {
    pub(crate) fn new(events: &'h [Event]) -> anyhow::Result<Self> {
        let mut setup = None;
        let mut requests = Vec::new();
        let mut faults = Vec::new();
        for event in events {
            match event {
                Event::Setup(s) => setup = Some(s),
                Event::Request(r) => requests.push(r),
                Event::Fault(f) => faults.push(f),
            }
        }
        let setup = setup.ok_or_else(|| anyhow::anyhow!("the history has no setup line"))?;
        requests.sort_by_key(|r| (r.start_us, r.seq));
        faults.sort_by_key(|f| (f.start_us, f.seq));
        let mut model = Model {
            setup,
            by_seq: requests.iter().map(|r| (r.seq, *r)).collect(),
            faults_by_seq: faults.iter().map(|f| (f.seq, *f)).collect(),
            requests,
            faults,
            sessions: HashMap::new(),
            ends: Vec::new(),
            registered: HashMap::new(),
            ends_by_session: HashMap::new(),
            sessions_by_user: HashMap::new(),
        };
        model.derive();
        Ok(model)
    }

    pub(crate) fn bounds(&self) -> &Bounds {
        &self.setup.bounds
    }

    pub(crate) fn request(&self, seq: u64) -> Option<&'h Request> {
        self.by_seq.get(&seq).copied()
    }

    pub(crate) fn fault(&self, seq: u64) -> Option<&'h Fault> {
        self.faults_by_seq.get(&seq).copied()
    }

    /// The creating answer of a session.
    pub(crate) fn created(&self, label: &str) -> Option<&'h Request> {
        self.sessions
            .get(label)
            .and_then(|s| self.request(s.created_seq))
    }

    fn derive(&mut self) {
        // Sessions first (a rotation's new session inherits from the old one's lineage, and
        // the old one is created earlier in start order).
        for r in &self.requests {
            let ok = r.outcome.code().is_some_and(|c| (200..300).contains(&c));
            match &r.op {
                Op::Register { user } if matches!(r.outcome.code(), Some(201 | 409)) => {
                    let at = self.registered.entry(user.clone()).or_insert(r.end_us);
                    *at = (*at).min(r.end_us);
                }
                Op::Login {
                    user,
                    new_session: Some(label),
                    ..
                } if ok => {
                    self.sessions.insert(
                        label.clone(),
                        Session {
                            user: user.clone(),
                            app: r.app,
                            lineage: label.clone(),
                            created_seq: r.seq,
                        },
                    );
                }
                Op::RevokeOthers {
                    new_session: Some(label),
                    ..
                } if ok => {
                    if let Some(old) = r.session.as_ref().and_then(|s| self.sessions.get(s)) {
                        let session = Session {
                            created_seq: r.seq,
                            ..old.clone()
                        };
                        self.sessions.insert(label.clone(), session);
                    }
                }
                _ => {}
            }
        }
        for (label, session) in &self.sessions {
            self.sessions_by_user
                .entry(session.user.clone())
                .or_default()
                .push(label.clone());
        }
        let ends: Vec<End> = self
            .requests
            .iter()
            .filter_map(|r| self.end_of(r))
            .collect();
        for (k, end) in ends.iter().enumerate() {
            for label in &end.maybe {
                self.ends_by_session
                    .entry(label.clone())
                    .or_default()
                    .push(k);
            }
        }
        self.ends = ends;
    }

    /// The ends that may have ended `session` (those that surely did among them).
    pub(crate) fn ends_of(&self, session: &str) -> impl Iterator<Item = &End> {
        self.ends_by_session
            .get(session)
            .into_iter()
            .flatten()
            .map(|k| &self.ends[*k])
    }

    /// The sessions of `user` (every app) that surely existed before `before` (their
    /// creating answer came before it) or, `overlapping`, may have (their creating request
    /// had started: the session exists before the answer is out).
    fn sessions_of(&self, user: &str, before: Micros, overlapping: bool) -> Vec<String> {
        let existed = |c: &Request| {
            if overlapping {
                c.start_us < before
            } else {
                c.end_us < before
            }
        };
        let mut labels: Vec<String> = self
            .sessions_by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter(|label| {
                self.sessions
                    .get(*label)
                    .and_then(|s| self.request(s.created_seq))
                    .is_some_and(existed)
            })
            .cloned()
            .collect();
        labels.sort();
        labels
    }

    /// What `r` ends, if it is an ending operation.
    fn end_of(&self, r: &Request) -> Option<End> {
        let code = r.outcome.code();
        // Sent, but not answered or answered 503: it may have applied.
        let unsure = matches!(r.outcome, Outcome::NoAnswer { .. } | Outcome::Failed { .. })
            || code == Some(503);
        let own = || r.session.iter().cloned().collect::<Vec<_>>();
        let (path, acked, surely, maybe) = match &r.op {
            Op::Logout => (EndPath::Crate, code == Some(204), own(), own()),
            // A login ends the session the request came with (fixation).
            Op::Login { .. } if r.session.is_some() => {
                (EndPath::Crate, code == Some(200), own(), own())
            }
            Op::RevokeOthers { .. } => {
                let user = self.sessions.get(r.session.as_ref()?)?.user.clone();
                let mut surely = self.sessions_of(&user, r.start_us, false);
                // Its own old id ends too (it moved to a new one); the new one is not ended.
                surely.extend(own());
                surely.sort();
                surely.dedup();
                let mut maybe = self.sessions_of(&user, r.end_us, true);
                maybe.extend(own());
                if let Op::RevokeOthers {
                    new_session: Some(new),
                    ..
                } = &r.op
                {
                    maybe.retain(|s| s != new);
                    surely.retain(|s| s != new);
                }
                (EndPath::Crate, code == Some(200), surely, maybe)
            }
            Op::AdminRevoke { user } => (
                EndPath::Crate,
                code == Some(204),
                self.sessions_of(user, r.start_us, false),
                self.sessions_of(user, r.end_us, true),
            ),
            Op::SqlRevoke { user } => (
                EndPath::Sql,
                matches!(r.outcome, Outcome::Done { .. }),
                self.sessions_of(user, r.start_us, false),
                self.sessions_of(user, r.end_us, true),
            ),
            Op::RedisDel => (
                EndPath::RedisDel,
                matches!(r.outcome, Outcome::Done { changed } if changed > 0),
                own(),
                own(),
            ),
            _ => return None,
        };
        if !acked && !unsure {
            // Refused (401, 403, 404, a DEL of nothing): it ended nothing.
            return None;
        }
        Some(End {
            seq: r.seq,
            path,
            start_us: r.start_us,
            end_us: r.end_us,
            surely: if acked { surely } else { Vec::new() },
            maybe,
        })
    }

    /// The faults whose outage window — injection to heal, plus the recovery allowance —
    /// overlaps `[from, to]`: what may explain a `503` or a slow answer.
    pub(crate) fn faults_during(&self, from: Micros, to: Micros) -> Vec<&'h Fault> {
        let recovery = ms(self.bounds().recovery_ms);
        self.faults
            .iter()
            .filter(|f| overlaps(f.start_us, f.heal_us + recovery, from, to))
            .copied()
            .collect()
    }

    /// The faults that can make an ending or a write go unseen for longer, active at some
    /// moment of `[from, to]`: a Redis fault while it lasts (a publish lost; after it heals
    /// the bus resubscribes, and caches do not serve meanwhile), a PostgreSQL kill or a cut
    /// listener until the listener can have listened again (its backoff, then a dead
    /// connection noticed). A killed instance serves nothing, and restarts empty.
    pub(crate) fn faults_loosening(&self, from: Micros, to: Micros) -> Vec<&'h Fault> {
        let b = self.bounds();
        self.faults
            .iter()
            .filter(|f| {
                let lasts = match f.kind {
                    FaultKind::RedisKill | FaultKind::RedisPause => ms(b.delivery_ms),
                    FaultKind::PostgresKill | FaultKind::ListenerCut => {
                        ms(b.listener_backoff_ms + b.dead_connection_ms)
                    }
                    FaultKind::InstanceKill => return false,
                };
                overlaps(f.start_us, f.heal_us + lasts, from, to)
            })
            .copied()
            .collect()
    }

    /// How long after its acknowledgement an ending (or a data write, `EndPath::Crate`) may
    /// go unseen: the path's own bound, plus — when a fault loosened it
    /// ([`faults_loosening`](Self::faults_loosening)) — the polling bound or the cache's TTL
    /// (whichever is longer: a publish lost to a Redis fault, notifications not heard) and
    /// the time to notice a dead connection.
    pub(crate) fn staleness_bound(
        &self,
        path: EndPath,
        start_us: Micros,
        end_us: Micros,
    ) -> Micros {
        let b = self.bounds();
        let base = match path {
            EndPath::Crate | EndPath::Sql => ms(b.delivery_ms),
            EndPath::RedisDel => ms(b.cache_ttl_ms + b.delivery_ms),
        };
        if self.faults_loosening(start_us, end_us + base).is_empty() {
            base
        } else {
            base + ms(b.cache_ttl_ms.max(b.revalidate_ms) + b.dead_connection_ms)
        }
    }

    /// Whether some operation that started before `before` may have ended `session`.
    pub(crate) fn maybe_ended(&self, session: &str, before: Micros) -> bool {
        self.ends_of(session).any(|e| e.start_us < before)
    }
}
