//! (b) No session served after an acknowledged logout or revocation, beyond the bound of
//! the path the ending took ([`Model::staleness_bound`]).

use std::collections::{BTreeMap, HashSet};

use super::model::{End, Model};
use super::{secs, served, Figures, Violation};

pub(super) fn check(model: &Model<'_>, out: &mut Vec<Violation>, figures: &mut Figures) {
    let mut reported = HashSet::new();
    // Per ending path, with or without a fault around it: uses after the end, and the
    // latest one still served.
    let mut latest: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for r in &model.requests {
        let Some(label) = r.session.as_deref() else {
            continue;
        };
        if r.instance.is_none() || r.outcome.code().is_none() {
            continue;
        }
        // The acknowledged ends of this session before the request started, the tightest
        // deadline first.
        let mut ends: Vec<(&End, u64)> = model
            .ends_of(label)
            .filter(|e| e.end_us < r.start_us && e.surely.iter().any(|s| s == label))
            .map(|e| {
                (
                    e,
                    e.end_us + model.staleness_bound(e.path, e.start_us, e.end_us),
                )
            })
            .collect();
        if ends.is_empty() {
            continue;
        }
        ends.sort_by_key(|(_, deadline)| *deadline);
        figures.probes_after_end.0 += 1;
        if r.outcome.code() == Some(401) {
            figures.probes_after_end.1 += 1;
        }
        let (end, deadline) = ends[0];
        let faulty = !model.faults_loosening(end.start_us, deadline).is_empty();
        let path = format!(
            "{:?} ({})",
            end.path,
            if faulty {
                "fault around it"
            } else {
                "no fault"
            }
        );
        let seen = latest.entry(path).or_default();
        seen.0 += 1;
        if !served(r) {
            continue;
        }
        if r.start_us <= deadline {
            seen.1 = seen.1.max(r.start_us - end.end_us);
            continue;
        }
        if !reported.insert((label.to_owned(), end.seq)) {
            continue;
        }
        let mut slice: Vec<u64> = model.created(label).map(|c| c.seq).into_iter().collect();
        slice.push(end.seq);
        slice.extend(
            model
                .faults_loosening(end.start_us, r.end_us)
                .iter()
                .map(|f| f.seq),
        );
        slice.push(r.seq);
        out.push(Violation {
            invariant: 'b',
            what: format!(
                "{label} was served {} after its end (#{}) was acknowledged; the bound for a {:?} end here is {}",
                secs(r.start_us - end.end_us),
                end.seq,
                end.path,
                secs(deadline - end.end_us),
            ),
            slice,
        });
    }
    figures.served_after_end = latest.into_iter().collect();
}
