//! (d) Outages are answered `503` — not `401` for a live session, not a refused correct
//! password, not silence — within the documented timeouts, and only while a fault (or the
//! recovery allowance after it healed) explains them.

use std::collections::HashMap;

use super::model::{ms, overlaps, Model};
use super::{secs, Figures, Violation};
use crate::history::{Fault, FaultKind, Op, Outcome, Request};

/// The login throttle's load shedding (`503 {"error":"busy"}`): every hashing slot stayed
/// busy for its longest wait. Load, not an outage.
const BUSY: &str = "busy";

fn hashes_a_password(r: &Request) -> bool {
    matches!(
        r.op,
        Op::Register { .. } | Op::Login { .. } | Op::RevokeOthers { .. }
    )
}

/// Instance kills of `r`'s instance while `r` was under way (no answer is then expected).
fn instance_down<'h>(model: &Model<'h>, r: &Request) -> Vec<&'h Fault> {
    model
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::InstanceKill && f.instance == r.instance)
        .filter(|f| overlaps(f.start_us, f.heal_us, r.start_us, r.end_us))
        .copied()
        .collect()
}

pub(super) fn check(model: &Model<'_>, out: &mut Vec<Violation>, figures: &mut Figures) {
    let b = *model.bounds();
    // Per fault: the first 503's start, the last 503's end, the last failure's end.
    let mut windows: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut last_failure: HashMap<u64, u64> = HashMap::new();
    for r in &model.requests {
        if r.instance.is_none() {
            continue;
        }
        let mut violation = |what: String, mut slice: Vec<u64>| {
            slice.push(r.seq);
            out.push(Violation {
                invariant: 'd',
                what,
                slice,
            });
        };
        match &r.outcome {
            Outcome::NoAnswer { reason } => {
                let down = instance_down(model, r);
                if down.is_empty() {
                    let previous = model.faults_during(r.start_us, r.end_us);
                    violation(
                        format!("no answer ({reason}) while the instance was up"),
                        previous.iter().map(|f| f.seq).collect(),
                    );
                }
                if let Some(f) = down.last() {
                    let last = last_failure.entry(f.seq).or_default();
                    *last = (*last).max(r.end_us);
                }
                continue;
            }
            Outcome::Status { .. } => {}
            _ => continue,
        }
        let code = r.outcome.code().unwrap_or_default();
        let took = r.end_us - r.start_us;
        figures.max_answer_us = figures.max_answer_us.max(took);
        let limit = if hashes_a_password(r) {
            b.password_answer_ms
        } else {
            b.answer_ms
        };
        if took > ms(limit) {
            violation(
                format!(
                    "answered {code} after {}, over the documented {}",
                    secs(took),
                    secs(ms(limit))
                ),
                model
                    .faults_during(r.start_us, r.end_us)
                    .iter()
                    .map(|f| f.seq)
                    .collect(),
            );
        }
        if code == 503 && r.outcome.error() != Some(BUSY) {
            figures.max_503_answer_us = figures.max_503_answer_us.max(took);
            let explained = model.faults_during(r.start_us, r.end_us);
            if explained.is_empty() {
                let previous: Vec<u64> = model
                    .faults
                    .iter()
                    .rfind(|f| f.start_us <= r.start_us)
                    .map(|f| f.seq)
                    .into_iter()
                    .collect();
                violation(
                    format!(
                        "503 with no fault to explain it (nor one healed within the last {})",
                        secs(ms(b.recovery_ms))
                    ),
                    previous,
                );
            }
            // Attributed to the latest fault that explains it: faults follow each other
            // closer than the recovery allowance.
            if let Some(f) = explained.iter().rfind(|f| f.start_us <= r.end_us) {
                let window = windows.entry(f.seq).or_insert((r.start_us, r.end_us));
                window.0 = window.0.min(r.start_us);
                window.1 = window.1.max(r.end_us);
                let last = last_failure.entry(f.seq).or_default();
                *last = (*last).max(r.end_us);
            }
        }
        if code == 401 {
            refused_while_live(model, r, &mut violation);
        }
    }
    figures.max_503_window_us = windows.values().map(|(a, z)| z - a).max().unwrap_or(0);
    let mut recovery: HashMap<FaultKind, u64> = HashMap::new();
    for f in &model.faults {
        let after = last_failure
            .get(&f.seq)
            .map_or(0, |last| last.saturating_sub(f.heal_us));
        let worst = recovery.entry(f.kind).or_default();
        *worst = (*worst).max(after);
    }
    let mut recovery: Vec<(FaultKind, u64)> = recovery.into_iter().collect();
    recovery.sort();
    figures.recovery_us = recovery;
}

/// A `401` is right for a session that may have ended, a credential never issued, another
/// app's session, a wrong password. Anything else was a live session or a correct password
/// refused: an outage answered as "who are you?".
fn refused_while_live(
    model: &Model<'_>,
    r: &Request,
    violation: &mut impl FnMut(String, Vec<u64>),
) {
    if let Op::Login {
        user,
        password_ok: true,
        ..
    } = &r.op
    {
        if model
            .registered
            .get(user)
            .is_some_and(|at| *at < r.start_us)
        {
            violation(
                format!("{user}'s correct password was refused (401)"),
                vec![],
            );
        }
        return;
    }
    if matches!(r.op, Op::Login { .. } | Op::Register { .. }) {
        return;
    }
    let Some(label) = r.session.as_deref() else {
        return;
    };
    let Some(session) = model.sessions.get(label) else {
        return;
    };
    if session.app != r.app || model.maybe_ended(label, r.end_us) {
        return;
    }
    let wrong_password = matches!(
        r.op,
        Op::RevokeOthers {
            password_ok: false,
            ..
        }
    );
    if wrong_password {
        return;
    }
    let what = if r.outcome.error() == Some("reauthentication_required") {
        format!("{label}'s correct password was refused on re-authentication")
    } else {
        format!("{label}, a live session (nothing had ended it), was refused (401)")
    };
    violation(what, vec![session.created_seq]);
}
