//! The checker: proves from the history alone that
//!
//! - **(a)** no answer was a `500` (or any `5xx` but `503`) or a status the route never
//!   gives, and nothing was let in that should have been refused: a wrong password, a plain
//!   user on the admin app, a credential never issued, a web session on the admin app, a
//!   session answering as another user;
//! - **(b)** no session was served after an acknowledged logout or revocation beyond the
//!   bound of its path ([`model::Model::staleness_bound`]);
//! - **(c)** every acknowledged preference write is readable afterwards (within the same
//!   bound) while the session lives, reads see only values that were written, and no write
//!   that was not acknowledged is half-applied;
//! - **(d)** outages were answered `503` — not `401` for a live session, not a refused
//!   correct password, not silence — within the documented timeouts, and only while a fault
//!   (or its recovery allowance after healing) explains them.
//!
//! Each violation carries the smallest slice of history that shows it.

pub(crate) mod model;

mod auth;
mod data;
mod ended;
mod outage;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use crate::history::{Event, FaultKind, Micros, Op, Outcome, Request, Via};
pub(crate) use data::KEY_PREFIX;
use model::Model;

/// One broken promise, with the events that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// `a`, `b`, `c` or `d`.
    pub invariant: char,
    pub what: String,
    /// Request and fault `seq`s, the witness last.
    pub slice: Vec<u64>,
}

/// The checker's answer.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    pub operations: usize,
    pub faults: usize,
    pub violations: Vec<Violation>,
    pub figures: Figures,
}

/// What the run measured, for the report.
#[derive(Debug, Default)]
pub(crate) struct Figures {
    pub faults_by_kind: Vec<(FaultKind, usize)>,
    /// Per outcome class: `2xx`, `401`, `503`, `no answer`, …
    pub outcomes: Vec<(String, usize)>,
    /// The longest span from a fault's first `503` to its last.
    pub max_503_window_us: Micros,
    /// Per fault kind, the longest time from healing to the last failure it explains.
    pub recovery_us: Vec<(FaultKind, Micros)>,
    /// The longest answer time, overall and of `503`s.
    pub max_answer_us: Micros,
    pub max_503_answer_us: Micros,
    /// Per ending path, without and with a fault around the end: how many uses of a session
    /// came after the end was acknowledged, and the latest one still served (within the
    /// bound).
    pub served_after_end: Vec<(String, (usize, Micros))>,
    /// How many requests used a session after one of its ends was acknowledged, and how
    /// many of them were refused.
    pub probes_after_end: (usize, usize),
    /// Reads of preferences checked against the writes.
    pub data_reads: usize,
}

pub(crate) fn check(events: &[Event]) -> anyhow::Result<Verdict> {
    let model = Model::new(events)?;
    let mut violations = Vec::new();
    let mut figures = Figures::default();
    auth::check(&model, &mut violations);
    ended::check(&model, &mut violations, &mut figures);
    data::check(&model, &mut violations, &mut figures);
    outage::check(&model, &mut violations, &mut figures);
    let mut by_kind = std::collections::BTreeMap::new();
    for f in &model.faults {
        *by_kind.entry(f.kind).or_insert(0) += 1;
    }
    figures.faults_by_kind = by_kind.into_iter().collect();
    let mut outcomes = std::collections::BTreeMap::new();
    for r in &model.requests {
        *outcomes.entry(outcome_class(&r.outcome)).or_insert(0) += 1;
    }
    figures.outcomes = outcomes.into_iter().collect();
    Ok(Verdict {
        operations: model.requests.len(),
        faults: model.faults.len(),
        violations,
        figures,
    })
}

fn outcome_class(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Status { code, .. } if (200..300).contains(code) => "2xx".into(),
        Outcome::Status { code, .. } => code.to_string(),
        Outcome::NoAnswer { .. } => "no answer".into(),
        Outcome::Done { .. } => "direct write done".into(),
        Outcome::Failed { .. } => "direct write failed".into(),
    }
}

/// Whether the answer served `r`'s session (an authenticated route answered 2xx).
pub(crate) fn served(r: &Request) -> bool {
    r.session.is_some()
        && r.instance.is_some()
        && r.outcome.code().is_some_and(|c| (200..300).contains(&c))
        && !matches!(r.op, Op::Login { .. } | Op::Register { .. })
}

pub(crate) fn secs(us: Micros) -> String {
    format!("{:.3}s", us as f64 / 1e6)
}

/// One history event as a line a person can read.
fn describe_request(r: &Request) -> String {
    let target = match r.instance {
        Some(i) => format!("i{i}"),
        None => "direct".into(),
    };
    let app = match r.app {
        crate::history::App::Web => "web",
        crate::history::App::Admin => "admin",
    };
    let what = match &r.op {
        Op::Register { user } => format!("POST /{app}/register {user}"),
        Op::Login {
            user,
            password_ok,
            new_session,
        } => format!(
            "POST /{app}/login {user}{}{}",
            if *password_ok {
                ""
            } else {
                " (wrong password)"
            },
            new_session
                .as_ref()
                .map(|s| format!(" -> new session {s}"))
                .unwrap_or_default()
        ),
        Op::Me { user } => format!(
            "GET /{app}/me{}",
            user.as_ref()
                .map(|u| format!(" (answered as {u})"))
                .unwrap_or_default()
        ),
        Op::ReadPrefs { seen } => format!("GET /{app}/preferences{}", prefs(seen.as_ref())),
        Op::PatchPrefs { set, seen } => format!(
            "PATCH /{app}/preferences set {}{}",
            prefs_map(set),
            prefs(seen.as_ref())
        ),
        Op::ListSessions => format!("GET /{app}/sessions"),
        Op::RevokeOthers {
            password_ok,
            new_session,
        } => format!(
            "POST /{app}/sessions/revoke-others{}{}",
            if *password_ok {
                ""
            } else {
                " (wrong password)"
            },
            new_session
                .as_ref()
                .map(|s| format!(" -> moved to {s}"))
                .unwrap_or_default()
        ),
        Op::Logout => format!("POST /{app}/logout"),
        Op::FindUser { user } => format!("GET /admin/users?email=<{user}>"),
        Op::AdminRevoke { user } => format!("DELETE /admin/users/<{user}>/sessions"),
        Op::SqlRevoke { user } => format!("SQL: UPDATE sessions SET revoked = true (user {user})"),
        Op::RedisDel => "Redis: DEL session:web:<id>".into(),
    };
    let outcome = match &r.outcome {
        Outcome::Status { code, error } => match error {
            Some(e) => format!("{code} {e:?}"),
            None => code.to_string(),
        },
        Outcome::NoAnswer { reason } => format!("no answer ({reason})"),
        Outcome::Done { changed } => format!("done ({changed} changed)"),
        Outcome::Failed { reason } => format!("failed ({reason})"),
    };
    let session = match (&r.session, r.via) {
        (Some(s), Some(Via::Cookie)) => format!(" {s} (cookie)"),
        (Some(s), _) => format!(" {s}"),
        (None, _) => String::new(),
    };
    format!(
        "[{} -> {}] #{} {} {}{} {} => {}",
        secs(r.start_us),
        secs(r.end_us),
        r.seq,
        r.client,
        target,
        session,
        what,
        outcome
    )
}

fn prefs(seen: Option<&crate::history::Prefs>) -> String {
    seen.map(|p| format!(" saw {}", prefs_map(p)))
        .unwrap_or_default()
}

fn prefs_map(p: &crate::history::Prefs) -> String {
    let fields: Vec<String> = p
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => format!("{k}=<none>"),
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}

impl Verdict {
    /// The report: figures, each violation with its slice, and the verdict line last.
    pub(crate) fn report(&self, events: &[Event]) -> String {
        let model = Model::new(events).ok();
        let mut out = String::new();
        let f = &self.figures;
        let _ = writeln!(out, "faults by kind:");
        for (kind, n) in &f.faults_by_kind {
            let recovery = f
                .recovery_us
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, us)| *us);
            let _ = writeln!(
                out,
                "  {:<14} {n:>4}  (longest recovery after healing: {})",
                kind.name(),
                secs(recovery)
            );
        }
        let outcomes: Vec<String> = f
            .outcomes
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(out, "outcomes: {}", outcomes.join(", "));
        let _ = writeln!(
            out,
            "longest 503 window of a fault: {}; longest answer: {} (of a 503: {})",
            secs(f.max_503_window_us),
            secs(f.max_answer_us),
            secs(f.max_503_answer_us)
        );
        let _ = writeln!(
            out,
            "uses of a session after an acknowledged end: {} ({} refused)",
            f.probes_after_end.0, f.probes_after_end.1,
        );
        for (path, (uses, late)) in &f.served_after_end {
            let _ = writeln!(
                out,
                "  after a {path} end: {uses} uses, the latest still served {} after it",
                secs(*late)
            );
        }
        let _ = writeln!(out, "preference reads checked: {}", f.data_reads);
        for v in &self.violations {
            let _ = writeln!(out, "VIOLATION ({}) {}", v.invariant, v.what);
            if let Some(model) = &model {
                for seq in &v.slice {
                    if let Some(r) = model.request(*seq) {
                        let _ = writeln!(out, "    {}", describe_request(r));
                    } else if let Some(fault) = model.fault(*seq) {
                        let _ = writeln!(
                            out,
                            "    [{} -> {}] #{} fault {}{}",
                            secs(fault.start_us),
                            secs(fault.heal_us),
                            fault.seq,
                            fault.kind.name(),
                            fault
                                .instance
                                .map(|i| format!(" on i{i}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        let _ = write!(
            out,
            "soak: {} operations, {} faults, {} violations",
            self.operations,
            self.faults,
            self.violations.len()
        );
        out
    }
}
