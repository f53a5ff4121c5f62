//! The [store contract](crate::store#the-contract) as a test anyone can run: [`check_store`]
//! runs every rule against a [`SessionStore`] and reports each rule it breaks, by name.
//!
//! Every store and decorator of this crate passes it through this entry point, in its own
//! test suite; a store written elsewhere runs the same check in its own tests. Behind the
//! `testing` feature (a dev-dependency feature: `tower-app-sessions = { …, features =
//! ["testing"] }` under `[dev-dependencies]`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use tower_app_sessions::{testing::check_store, MemoryStore};
//!
//! // A fresh store for each rule: rules never see each other's records.
//! let report = check_store(|| async { MemoryStore::new() }).await;
//! assert!(report.is_ok(), "{report}");
//! report.assert_ok(); // the same, panicking with every violation
//! # });
//! ```
//!
//! Time is an input: the check drives one [`ManualClock`] through every rule, forward only,
//! so expiry is checked at exact instants without waiting. Each rule uses ids and (unless
//! [`Contract::users`] fixes them) users of its own, so a check can share a backend with other
//! tests. A rule that panics, in the store or in the check, is reported as broken (a store
//! never panics): each rule runs as a Tokio task, so call `check_store` inside a Tokio runtime.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use uuid::Uuid;

use crate::clock::ManualClock;
use crate::{AppContext, SessionStore};

mod agree;
mod data;
mod rules;
mod support;

use rules::Rule;
use support::{Failure, Setup};

/// The rules [`check_store`] runs, by the name a [`Violation`] gives: isolation of contexts,
/// `extend`, `delete`, data patches, data limits, stored metadata, `rotate`, expiry, a user's
/// sessions by scope, and listing as of `now`.
pub const RULES: &[&str] = &[
    "isolation",
    "extend",
    "delete",
    "data_patch",
    "data_limits",
    "metadata_bounds",
    "rotate",
    "expiry",
    "user_sessions",
    "listing_as_of_now",
];

/// Runs every rule of the store contract against stores made by `fresh` (called once per
/// rule) and reports the rules they break.
///
/// The same as [`Contract::new`]`().check(fresh)`; see [`Contract`] for stores whose records
/// must reference existing users, that know fewer contexts, or that answer in process.
pub async fn check_store<S, F, Fut>(fresh: F) -> Report
where
    S: SessionStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    Contract::new().check(fresh).await
}

/// What [`check_store`] checks, for stores that need more than the defaults.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use tower_app_sessions::{testing::Contract, AppContext, MemoryStore};
///
/// Contract::new()
///     .users(uuid::Uuid::new_v4(), uuid::Uuid::new_v4()) // rows that exist in a users table
///     .third_context(AppContext::Admin) // a store that knows web and admin only
///     .ready_loads() // an in-process store: loads answer without waiting
///     .check(|| async { MemoryStore::new() })
///     .await
///     .assert_ok();
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Contract {
    users: Option<(Uuid, Uuid)>,
    third: Option<AppContext>,
    ready_loads: bool,
}

impl Default for Contract {
    fn default() -> Self {
        Self::new()
    }
}

impl Contract {
    /// Every rule of [`RULES`], fresh users per rule, `web`, `admin` and a custom context.
    pub fn new() -> Self {
        Self {
            users: None,
            third: None,
            ready_loads: false,
        }
    }

    /// The two users the records belong to, for a store whose records reference a users
    /// table (PostgreSQL's `sessions.user_id`). Records of `user` and `other` that the rules
    /// leave behind are never live when the next rule starts: the clock has moved past them.
    #[must_use]
    pub fn users(mut self, user: Uuid, other: Uuid) -> Self {
        self.users = Some((user, other));
        self
    }

    /// The third context the rules use beside `web` and `admin` (a custom one, `telegram-bot`,
    /// unless a store knows fewer contexts).
    #[must_use]
    pub fn third_context(mut self, context: AppContext) -> Self {
        self.third = Some(context);
        self
    }

    /// Adds the rule `ready_loads`: a load, found or not, is answered without a future to
    /// await ([`StoreFuture::ready`](crate::StoreFuture::ready)), as an in-process store and
    /// every decorator around one must answer.
    #[must_use]
    pub fn ready_loads(mut self) -> Self {
        self.ready_loads = true;
        self
    }

    /// Runs the rules, each against a store `fresh` makes for it, one after the other.
    pub async fn check<S, F, Fut>(self, mut fresh: F) -> Report
    where
        S: SessionStore,
        F: FnMut() -> Fut,
        Fut: Future<Output = S>,
    {
        let third = match self.third {
            Some(context) => context,
            // A valid name: `custom` cannot refuse it; admin if it ever did.
            None => AppContext::custom("telegram-bot").unwrap_or(AppContext::Admin),
        };
        let clock = ManualClock::starting_now();
        let mut rules: Vec<Rule> = Rule::ALL.to_vec();
        if self.ready_loads {
            rules.push(Rule::ReadyLoads);
        }
        let mut report = Report::default();
        for rule in rules {
            let (user, other) = self
                .users
                .unwrap_or_else(|| (Uuid::new_v4(), Uuid::new_v4()));
            let setup = Setup {
                user,
                other,
                third: third.clone(),
                clock: clock.clone(),
            };
            let mut failure = run(rule, fresh().await, setup.clone()).await;
            if failure.is_none() {
                // The same rule again, reading through `load_with_user`, the layer's read
                // (see `agree`); whatever the first run left is past its expiry.
                clock.advance(Duration::from_secs(3_600));
                failure = run(rule, agree::ThroughJoin(fresh().await), setup)
                    .await
                    .map(|message| format!("through load_with_user: {message}"));
            }
            match failure {
                None => report.passed.push(rule.name()),
                Some(message) => report.violations.push(Violation {
                    rule: rule.name(),
                    message,
                }),
            }
            // Whatever the rule left is past its expiry for the next one.
            clock.advance(Duration::from_secs(3_600));
        }
        report
    }
}

/// Runs `rule` on `store` in a task of its own, so that a panic (the store's or an
/// assertion's) is this rule's violation, not the end of the check.
async fn run<S: SessionStore>(rule: Rule, store: S, setup: Setup) -> Option<String> {
    let outcome = tokio::spawn(async move { rule.run(&store, &setup).await }).await;
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(Failure(message))) => Some(message),
        Err(error) if error.is_panic() => Some(panic_message(error.into_panic())),
        Err(error) => Some(format!("the rule's task ended: {error}")),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("panicked (a store never panics): {text}")
}

/// One rule a store broke: its name (one of [`RULES`], or `ready_loads`) and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule's name.
    pub rule: &'static str,
    /// What the check saw instead of what the rule requires.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.message)
    }
}

/// What [`check_store`] found: the rules kept and the rules broken.
#[derive(Debug, Clone, Default)]
#[must_use = "a report says nothing unless it is asserted"]
pub struct Report {
    passed: Vec<&'static str>,
    violations: Vec<Violation>,
}

impl Report {
    /// Whether the store kept every rule.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The rules broken, in the order they ran.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The names of the rules kept.
    pub fn passed(&self) -> &[&'static str] {
        &self.passed
    }

    /// Panics with every violation unless the store kept every rule: for tests.
    ///
    /// # Panics
    /// If any rule is broken.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.is_ok(), "the store breaks the contract:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            return write!(f, "all {} rules kept", self.passed.len());
        }
        write!(
            f,
            "{} of {} rules broken",
            self.violations.len(),
            self.violations.len() + self.passed.len()
        )?;
        for violation in &self.violations {
            write!(f, "\n  - {violation}")?;
        }
        Ok(())
    }
}
