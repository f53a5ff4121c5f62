//! (c) Preference writes: an acknowledged write is readable afterwards (once its bound has
//! passed) while the session lives, through every rotation; a read sees only values written
//! to that session; a write that was not acknowledged is applied whole or not at all.
//!
//! Every value the clients write is unique, so a value read names the write it came from.
//! A lineage's writes are issued one after another (one client owns it), so their order is
//! their start order.

use std::collections::{HashMap, HashSet};

use super::model::{EndPath, Model};
use super::{Figures, Violation};
use crate::history::{Op, Outcome, Prefs, Request};

/// Only the soak's own keys are checked: the app may keep others.
pub(crate) const KEY_PREFIX: &str = "soak_";

/// A write that may have applied: acknowledged, or with no answer / a `503`. Refused ones
/// (`401`: the session ended; `4xx`) write nothing.
fn may_apply(r: &Request) -> bool {
    match &r.outcome {
        Outcome::Status { code, .. } => *code == 200 || *code == 503,
        Outcome::NoAnswer { .. } => true,
        _ => false,
    }
}

fn acked(r: &Request) -> bool {
    r.outcome.code() == Some(200)
}

fn set_of(r: &Request) -> &Prefs {
    match &r.op {
        Op::PatchPrefs { set, .. } => set,
        _ => unreachable!("only patches are writes"),
    }
}

fn seen_of(r: &Request) -> Option<&Prefs> {
    if r.outcome.code() != Some(200) {
        return None;
    }
    match &r.op {
        Op::ReadPrefs { seen } | Op::PatchPrefs { seen, .. } => seen.as_ref(),
        _ => None,
    }
}

pub(super) fn check(model: &Model<'_>, out: &mut Vec<Violation>, figures: &mut Figures) {
    // Per lineage, its writes and reads in start order.
    let mut writes: HashMap<&str, Vec<&Request>> = HashMap::new();
    let mut reads: HashMap<&str, Vec<&Request>> = HashMap::new();
    for r in &model.requests {
        let Some(session) = r.session.as_deref().and_then(|s| model.sessions.get(s)) else {
            continue;
        };
        if matches!(r.op, Op::PatchPrefs { .. }) && may_apply(r) {
            writes.entry(&session.lineage).or_default().push(r);
        }
        if seen_of(r).is_some() {
            reads.entry(&session.lineage).or_default().push(r);
        }
    }
    let mut reported = HashSet::new();
    for (lineage, reads) in &reads {
        let writes = writes.get(lineage).map(Vec::as_slice).unwrap_or_default();
        for read in reads {
            figures.data_reads += 1;
            check_read(model, writes, read, &mut reported, out);
        }
    }
}

fn check_read(
    model: &Model<'_>,
    writes: &[&Request],
    read: &Request,
    reported: &mut HashSet<(u64, String)>,
    out: &mut Vec<Violation>,
) {
    let Some(seen) = seen_of(read) else {
        return;
    };
    // Writes that may be visible to this read: those that started before it ended.
    let before: Vec<&Request> = writes
        .iter()
        .copied()
        .filter(|w| w.start_us < read.end_us)
        .collect();
    let mut keys: Vec<&String> = before.iter().flat_map(|w| set_of(w).keys()).collect();
    keys.extend(seen.keys().filter(|k| k.starts_with(KEY_PREFIX)));
    keys.sort();
    keys.dedup();
    let observed = |key: &str| seen.get(key).cloned().flatten();
    for key in keys {
        let touching: Vec<&Request> = before
            .iter()
            .copied()
            .filter(|w| set_of(w).contains_key(key))
            .collect();
        // The last write of the key that must be visible by now.
        let settled = touching.iter().rposition(|w| {
            acked(w)
                && w.end_us + model.staleness_bound(EndPath::Crate, w.start_us, w.end_us)
                    < read.start_us
        });
        let from = settled.unwrap_or(0);
        let mut allowed: Vec<Option<String>> = touching[from..]
            .iter()
            .map(|w| set_of(w)[key].clone())
            .collect();
        if settled.is_none() {
            allowed.push(None);
        }
        let value = observed(key);
        if allowed.contains(&value) {
            continue;
        }
        let never_written = value.is_some() && !touching.iter().any(|w| set_of(w)[key] == value);
        let saw = if never_written {
            format!("{}, which no write to this session set", show(&value))
        } else {
            show(&value)
        };
        let (what, mut slice) = match settled {
            Some(i) => (
                format!(
                    "{key}: the acknowledged write #{} was not visible; the read saw {saw}",
                    touching[i].seq
                ),
                vec![touching[i].seq],
            ),
            None => (format!("{key}: the read saw {saw}"), vec![]),
        };
        if !reported.insert((slice.first().copied().unwrap_or(read.seq), key.clone())) {
            continue;
        }
        slice.extend(
            model
                .faults_loosening(slice_start(model, &slice, read), read.end_us)
                .iter()
                .map(|f| f.seq),
        );
        slice.push(read.seq);
        out.push(Violation {
            invariant: 'c',
            what,
            slice,
        });
    }
    half_applied(model, &before, read, seen, reported, out);
}

/// An unacknowledged write seen in one key must be seen (or overwritten) in all of its keys.
fn half_applied(
    model: &Model<'_>,
    before: &[&Request],
    read: &Request,
    seen: &Prefs,
    reported: &mut HashSet<(u64, String)>,
    out: &mut Vec<Violation>,
) {
    for (i, w) in before.iter().enumerate() {
        let set = set_of(w);
        if acked(w) || set.len() < 2 {
            continue;
        }
        let applied = set
            .iter()
            .any(|(k, v)| v.is_some() && seen.get(k).cloned().flatten() == *v);
        if !applied {
            continue;
        }
        for (key, value) in set {
            let now = seen.get(key).cloned().flatten();
            let overwritten = before[i + 1..]
                .iter()
                .any(|later| set_of(later).get(key).is_some_and(|v| *v == now));
            if now == *value || overwritten {
                continue;
            }
            if !reported.insert((w.seq, key.clone())) {
                continue;
            }
            let mut slice = vec![w.seq];
            slice.extend(
                model
                    .faults_loosening(w.start_us, read.end_us)
                    .iter()
                    .map(|f| f.seq),
            );
            slice.push(read.seq);
            out.push(Violation {
                invariant: 'c',
                what: format!(
                    "the unacknowledged write #{} is half-applied: {key} is {} instead of {}",
                    w.seq,
                    show(&now),
                    show(value)
                ),
                slice,
            });
        }
    }
}

fn slice_start(model: &Model<'_>, slice: &[u64], read: &Request) -> u64 {
    slice
        .first()
        .and_then(|seq| model.request(*seq))
        .map_or(read.start_us, |w| w.start_us)
}

fn show(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "nothing".into(),
    }
}
