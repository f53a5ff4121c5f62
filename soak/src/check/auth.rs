//! (a) No `500`, no status a route never gives, and nobody let in who should have been
//! refused.

use super::model::Model;
use super::{served, Violation};
use crate::history::{App, Op, Request};

/// The statuses each route may answer (the example's documented answers, `429` and `503`
/// included where they apply).
fn allowed(r: &Request) -> &'static [u16] {
    match r.op {
        Op::Register { .. } => &[201, 409, 429, 503],
        Op::Login { .. } => &[200, 401, 403, 429, 503],
        Op::Me { .. } | Op::ReadPrefs { .. } | Op::ListSessions | Op::PatchPrefs { .. } => {
            &[200, 401, 503]
        }
        Op::RevokeOthers { .. } => &[200, 401, 429, 503],
        Op::Logout => &[204, 401, 503],
        Op::FindUser { .. } => &[200, 401, 404, 503],
        Op::AdminRevoke { .. } => &[204, 401, 403, 404, 503],
        Op::SqlRevoke { .. } | Op::RedisDel => &[],
    }
}

fn app_name(app: App) -> &'static str {
    match app {
        App::Web => "web",
        App::Admin => "admin",
    }
}

pub(super) fn check(model: &Model<'_>, out: &mut Vec<Violation>) {
    for r in &model.requests {
        let Some(code) = r.outcome.code() else {
            continue;
        };
        let mut violation = |what: String, mut slice: Vec<u64>| {
            slice.push(r.seq);
            out.push(Violation {
                invariant: 'a',
                what,
                slice,
            });
        };
        if code >= 500 && code != 503 {
            violation(format!("a {code} answer"), vec![]);
            continue;
        }
        if !allowed(r).contains(&code) {
            violation(
                format!("a {code} answer, which this route never gives"),
                vec![],
            );
            continue;
        }
        let ok = (200..300).contains(&code);
        match &r.op {
            Op::Login {
                password_ok: false, ..
            } if ok => violation("a login with a wrong password was let in".into(), vec![]),
            Op::Login { user, .. }
                if ok && r.app == App::Admin && !model.setup.admins.contains(user) =>
            {
                violation(
                    format!("{user}, not an admin, was let into the admin app"),
                    vec![],
                );
            }
            Op::RevokeOthers {
                password_ok: false, ..
            } if ok => violation(
                "revoke-others with a wrong password was carried out".into(),
                vec![],
            ),
            _ => {}
        }
        if !served(r) {
            continue;
        }
        let Some(label) = r.session.as_deref() else {
            continue;
        };
        let Some(session) = model.sessions.get(label) else {
            violation(
                format!("{label}, a credential never issued, was served"),
                vec![],
            );
            continue;
        };
        let created = vec![session.created_seq];
        if session.app != r.app {
            violation(
                format!(
                    "{label}, a {} session, was served by the {} app",
                    app_name(session.app),
                    app_name(r.app)
                ),
                created.clone(),
            );
        }
        if let Op::Me { user: Some(user) } = &r.op {
            if *user != session.user {
                violation(
                    format!(
                        "{label}, a session of {}, was answered as {user}",
                        session.user
                    ),
                    created,
                );
            }
        }
    }
}
