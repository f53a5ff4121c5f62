//! The checker can fail: histories with one planted violation of each invariant are caught,
//! the same histories without it pass, and the bounds are applied where they should be.

use super::{check, Verdict};
use crate::history::{
    App, Bounds, Event, Fault, FaultKind, Op, Outcome, Prefs, Request, Setup, Via,
};

/// A history under construction; times in milliseconds.
struct H {
    events: Vec<Event>,
    seq: u64,
}

fn status(code: u16) -> Outcome {
    Outcome::Status { code, error: None }
}

fn error(code: u16, error: &str) -> Outcome {
    Outcome::Status {
        code,
        error: Some(error.into()),
    }
}

fn prefs(pairs: &[(&str, Option<&str>)]) -> Prefs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

impl H {
    fn new() -> Self {
        let setup = Setup {
            instances: 2,
            admins: vec!["admin".into()],
            seed: 1,
            duration_secs: 60,
            bounds: Bounds::default(),
        };
        Self {
            events: vec![Event::Setup(setup)],
            seq: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn at(
        &mut self,
        app: App,
        session: Option<&str>,
        start: u64,
        end: u64,
        op: Op,
        outcome: Outcome,
    ) -> u64 {
        self.seq += 1;
        self.events.push(Event::Request(Request {
            seq: self.seq,
            client: "c1".into(),
            instance: Some((self.seq % 2) as usize),
            app,
            session: session.map(str::to_string),
            via: session.map(|_| Via::Bearer),
            start_us: start * 1000,
            end_us: end * 1000,
            op,
            outcome,
        }));
        self.seq
    }

    fn web(
        &mut self,
        session: Option<&str>,
        start: u64,
        end: u64,
        op: Op,
        outcome: Outcome,
    ) -> u64 {
        self.at(App::Web, session, start, end, op, outcome)
    }

    fn direct(
        &mut self,
        session: Option<&str>,
        start: u64,
        end: u64,
        op: Op,
        outcome: Outcome,
    ) -> u64 {
        let seq = self.web(session, start, end, op, outcome);
        if let Some(Event::Request(r)) = self.events.last_mut() {
            r.instance = None;
        }
        seq
    }

    fn fault(&mut self, kind: FaultKind, instance: Option<usize>, start: u64, heal: u64) -> u64 {
        self.seq += 1;
        self.events.push(Event::Fault(Fault {
            seq: self.seq,
            kind,
            instance,
            start_us: start * 1000,
            heal_us: heal * 1000,
        }));
        self.seq
    }

    fn with_instance(&mut self, seq: u64, instance: usize) {
        for e in &mut self.events {
            if let Event::Request(r) = e {
                if r.seq == seq {
                    r.instance = Some(instance);
                }
            }
        }
    }

    fn verdict(&self) -> Verdict {
        check(&self.events).unwrap()
    }

    /// The violations' invariants and descriptions.
    fn found(&self) -> Vec<(char, String)> {
        self.verdict()
            .violations
            .into_iter()
            .map(|v| (v.invariant, v.what))
            .collect()
    }

    fn login(&mut self, user: &str, label: &str, at: u64) {
        self.web(
            None,
            at,
            at + 50,
            Op::Register { user: user.into() },
            status(201),
        );
        self.web(
            None,
            at + 100,
            at + 150,
            Op::Login {
                user: user.into(),
                password_ok: true,
                new_session: Some(label.into()),
            },
            status(200),
        );
    }

    fn me(&mut self, session: &str, at: u64, code: u16, user: Option<&str>) -> u64 {
        self.web(
            Some(session),
            at,
            at + 10,
            Op::Me {
                user: user.map(str::to_string),
            },
            status(code),
        )
    }
}

/// A clean history exercising every path, faults included.
fn clean() -> H {
    let mut h = H::new();
    h.login("u1", "s1", 0);
    h.login("u2", "s2", 200);
    h.me("s1", 400, 200, Some("u1"));
    // A wrong password, a web session on the admin app, a credential never issued: refused.
    h.web(
        None,
        500,
        550,
        Op::Login {
            user: "u1".into(),
            password_ok: false,
            new_session: None,
        },
        error(401, "invalid email or password"),
    );
    h.at(
        App::Admin,
        Some("s1"),
        600,
        610,
        Op::Me { user: None },
        error(401, "unauthorized"),
    );
    h.me("forged1", 620, 401, None);
    // Preferences: a write, read back; a write that got no answer, applied whole.
    h.web(
        Some("s1"),
        700,
        720,
        Op::PatchPrefs {
            set: prefs(&[("soak_a", Some("v1")), ("soak_b", Some("v1"))]),
            seen: Some(prefs(&[("soak_a", Some("v1")), ("soak_b", Some("v1"))])),
        },
        status(200),
    );
    h.web(
        Some("s1"),
        2_000,
        2_010,
        Op::ReadPrefs {
            seen: Some(prefs(&[
                ("soak_a", Some("v1")),
                ("soak_b", Some("v1")),
                ("other", Some("x")),
            ])),
        },
        status(200),
    );
    let killed = h.web(
        Some("s1"),
        2_100,
        2_200,
        Op::PatchPrefs {
            set: prefs(&[("soak_a", Some("v2")), ("soak_b", None)]),
            seen: None,
        },
        Outcome::NoAnswer {
            reason: "reset".into(),
        },
    );
    h.with_instance(killed, 0);
    h.fault(FaultKind::InstanceKill, Some(0), 2_150, 2_250);
    h.web(
        Some("s1"),
        2_300,
        2_310,
        Op::ReadPrefs {
            seen: Some(prefs(&[("soak_a", Some("v2"))])),
        },
        status(200),
    );
    // Logout, then the old credential refused.
    h.web(Some("s1"), 20_000, 20_020, Op::Logout, status(204));
    h.me("s1", 20_500, 200, Some("u1")); // within the delivery bound
    h.me("s1", 22_000, 401, None);
    // The admin ends u2's sessions; u2's next request is refused.
    h.web(
        None,
        23_000,
        23_050,
        Op::Register {
            user: "admin".into(),
        },
        status(201),
    );
    h.at(
        App::Admin,
        None,
        23_100,
        23_150,
        Op::Login {
            user: "admin".into(),
            password_ok: true,
            new_session: Some("a1".into()),
        },
        status(200),
    );
    h.at(
        App::Admin,
        Some("a1"),
        24_000,
        24_100,
        Op::AdminRevoke { user: "u2".into() },
        status(204),
    );
    h.me("s2", 24_050, 401, None); // racing the revocation: may be refused
    h.me("s2", 26_000, 401, None);
    // A login answered just after the admin's revocation of its user ended: the session
    // existed before the answer was out, so the revocation may have ended it.
    h.web(
        None,
        26_100,
        26_200,
        Op::Login {
            user: "u2".into(),
            password_ok: true,
            new_session: Some("s5".into()),
        },
        status(200),
    );
    h.at(
        App::Admin,
        Some("a1"),
        26_120,
        26_180,
        Op::AdminRevoke { user: "u2".into() },
        status(204),
    );
    h.me("s5", 26_300, 401, None);
    // A bare Redis DEL: a cached copy may serve for the cache's TTL.
    h.login("u3", "s3", 27_000);
    h.direct(
        Some("s3"),
        28_000,
        28_010,
        Op::RedisDel,
        Outcome::Done { changed: 1 },
    );
    h.me("s3", 31_000, 200, Some("u3"));
    h.me("s3", 35_000, 401, None);
    // A Redis kill: a 503 during it and one after healing, within the allowance.
    h.login("u4", "s4", 45_000);
    h.fault(FaultKind::RedisKill, None, 50_000, 52_000);
    h.me("s4", 50_500, 503, None);
    h.me("s4", 56_000, 503, None);
    h.me("s4", 63_000, 200, Some("u4"));
    // An instance killed: no answer from it while it is down.
    let lost = h.web(
        Some("s4"),
        64_100,
        64_150,
        Op::Me { user: None },
        Outcome::NoAnswer {
            reason: "connection refused".into(),
        },
    );
    h.with_instance(lost, 1);
    h.fault(FaultKind::InstanceKill, Some(1), 64_000, 65_000);
    h
}

#[test]
fn a_clean_history_passes() {
    let h = clean();
    let verdict = h.verdict();
    assert_eq!(h.found(), vec![], "{}", verdict.report(&h.events));
    assert_eq!(verdict.faults, 3);
    let report = verdict.report(&h.events);
    assert!(
        report.ends_with("soak: 34 operations, 3 faults, 0 violations"),
        "{report}"
    );
    assert_eq!(verdict.figures.probes_after_end, (5, 3), "{report}");
}

fn assert_found(h: &H, invariant: char, words: &str) {
    let found = h.found();
    assert!(
        found
            .iter()
            .any(|(i, what)| *i == invariant && what.contains(words)),
        "expected ({invariant}) {words:?}, found {found:?}"
    );
    let report = h.verdict().report(&h.events);
    assert!(
        report.contains(&format!("VIOLATION ({invariant})")),
        "{report}"
    );
    assert!(!report.ends_with(" 0 violations"), "{report}");
}

#[test]
fn a_planted_false_acceptance_is_found() {
    let mut h = clean();
    h.web(
        None,
        40_000,
        40_050,
        Op::Login {
            user: "u1".into(),
            password_ok: false,
            new_session: Some("s9".into()),
        },
        status(200),
    );
    assert_found(&h, 'a', "wrong password was let in");

    let mut h = clean();
    h.me("s3", 27_500, 500, None);
    assert_found(&h, 'a', "a 500 answer");

    let mut h = clean();
    h.at(
        App::Admin,
        Some("s1"),
        1_000,
        1_010,
        Op::Me {
            user: Some("u1".into()),
        },
        status(200),
    );
    assert_found(&h, 'a', "a web session, was served by the admin app");

    let mut h = clean();
    h.me("forged2", 1_000, 200, Some("u1"));
    assert_found(&h, 'a', "never issued, was served");

    let mut h = clean();
    h.me("s1", 1_000, 200, Some("u2"));
    assert_found(&h, 'a', "was answered as u2");

    let mut h = clean();
    h.at(
        App::Admin,
        None,
        1_000,
        1_050,
        Op::Login {
            user: "u1".into(),
            password_ok: true,
            new_session: Some("a9".into()),
        },
        status(200),
    );
    assert_found(&h, 'a', "not an admin, was let into the admin app");
}

#[test]
fn a_planted_session_served_after_its_end_is_found() {
    // 1.5 s after an acknowledged logout, with no fault around: over the 1 s delivery bound.
    let mut h = clean();
    h.me("s1", 21_520, 200, Some("u1"));
    assert_found(&h, 'b', "s1 was served 1.500s after its end");

    // After the admin's revocation.
    let mut h = clean();
    h.me("s2", 30_000, 200, Some("u2"));
    assert_found(&h, 'b', "s2 was served");

    // After a bare DEL, past the cache's TTL.
    let mut h = clean();
    h.me("s3", 34_100, 200, Some("u3"));
    assert_found(&h, 'b', "the bound for a RedisDel end here is 6.000s");
}

#[test]
fn a_fault_around_an_end_extends_its_bound_to_the_documented_one() {
    let mut h = clean();
    h.fault(FaultKind::ListenerCut, Some(0), 19_000, 21_000);
    // 1.5 s late: allowed, the notifications were down (1 s + 5 s + 3 s).
    h.me("s1", 21_520, 200, Some("u1"));
    assert_eq!(h.found(), vec![]);
    // 10 s late: not.
    h.me("s1", 30_100, 200, Some("u1"));
    assert_found(&h, 'b', "the bound for a Crate end here is 9.000s");

    // A Redis kill healed two seconds before the logout loosens nothing (the bus
    // resubscribed; caches did not serve meanwhile), nor does an instance killed during it.
    let mut h = clean();
    h.fault(FaultKind::RedisKill, None, 16_000, 18_000);
    h.fault(FaultKind::InstanceKill, Some(1), 19_990, 20_500);
    h.me("s1", 21_520, 200, Some("u1"));
    assert_found(&h, 'b', "the bound for a Crate end here is 1.000s");
}

#[test]
fn a_planted_lost_or_half_applied_write_is_found() {
    // The acknowledged write of soak_a=v1 is not visible a second later.
    let mut h = clean();
    h.web(
        Some("s1"),
        1_800,
        1_810,
        Op::ReadPrefs {
            seen: Some(prefs(&[("soak_b", Some("v1"))])),
        },
        status(200),
    );
    assert_found(&h, 'c', "soak_a: the acknowledged write #");

    // Within its bound the old state may still be read.
    let mut h = clean();
    h.web(
        Some("s1"),
        1_000,
        1_010,
        Op::ReadPrefs {
            seen: Some(prefs(&[])),
        },
        status(200),
    );
    assert_eq!(h.found(), vec![]);

    // The write that got no answer set soak_a and removed soak_b: seeing one without the
    // other is half of it.
    let mut h = clean();
    h.web(
        Some("s1"),
        2_400,
        2_410,
        Op::ReadPrefs {
            seen: Some(prefs(&[("soak_a", Some("v2")), ("soak_b", Some("v1"))])),
        },
        status(200),
    );
    assert_found(
        &h,
        'c',
        "is half-applied: soak_b is \"v1\" instead of nothing",
    );

    // A value nobody wrote to this session.
    let mut h = clean();
    h.web(
        Some("s2"),
        2_400,
        2_410,
        Op::ReadPrefs {
            seen: Some(prefs(&[("soak_a", Some("v1"))])),
        },
        status(200),
    );
    assert_found(&h, 'c', "which no write to this session set");
}

#[test]
fn a_planted_outage_answered_wrongly_is_found() {
    // A 503 with no fault.
    let mut h = clean();
    h.me("s1", 1_000, 503, None);
    assert_found(&h, 'd', "503 with no fault to explain it");

    // Still 503 past the recovery allowance after the Redis kill healed.
    let mut h = clean();
    h.me("s4", 62_500, 503, None);
    assert_found(&h, 'd', "503 with no fault");

    // A live session refused during the fault.
    let mut h = clean();
    h.me("s4", 51_000, 401, None);
    assert_found(
        &h,
        'd',
        "s4, a live session (nothing had ended it), was refused",
    );

    // A correct password refused.
    let mut h = clean();
    h.web(
        None,
        51_000,
        51_100,
        Op::Login {
            user: "u2".into(),
            password_ok: true,
            new_session: None,
        },
        error(401, "invalid email or password"),
    );
    assert_found(&h, 'd', "u2's correct password was refused");

    // An answer slower than the documented timeouts.
    let mut h = clean();
    h.me("s4", 51_000, 503, None);
    if let Some(Event::Request(r)) = h.events.last_mut() {
        r.end_us = 63_000_000;
    }
    assert_found(&h, 'd', "over the documented 10.000s");

    // Silence from an instance that was up.
    let mut h = clean();
    h.web(
        Some("s1"),
        1_000,
        1_010,
        Op::Me { user: None },
        Outcome::NoAnswer {
            reason: "reset".into(),
        },
    );
    assert_found(&h, 'd', "no answer (reset) while the instance was up");

    // The login throttle's load shedding is not an outage.
    let mut h = clean();
    h.web(
        None,
        1_000,
        1_100,
        Op::Login {
            user: "u2".into(),
            password_ok: true,
            new_session: None,
        },
        error(503, "busy"),
    );
    assert_eq!(h.found(), vec![]);
}

#[test]
fn a_history_survives_its_file_format() {
    let h = clean();
    let text = crate::history::write(&h.events);
    assert!(!text.contains("token"), "labels only");
    let read = crate::history::read(&text).unwrap();
    assert_eq!(read, h.events);
    assert_eq!(check(&read).unwrap().violations, vec![]);
}
