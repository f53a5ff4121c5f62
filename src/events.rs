//! Lifecycle events: what happened to which session, for audit trails and alerts.
//!
//! Every layer reports each occurrence once, synchronously, to the hooks registered with
//! [`SessionLayer::on_event`](crate::SessionLayer::on_event) (or
//! [`Sessions::on_event`](crate::Sessions::on_event) for every layer of a handle), and writes
//! one `tracing` event at target `tower_app_sessions::audit` (level `INFO`; `WARN` for
//! backend errors). Events name a session by its [`SessionHandle`], a one-way digest of the
//! id: an audit trail can correlate a session's events without holding anything that
//! authenticates.
//!
//! A hook runs on the request path: keep it cheap and non-blocking (count, push into a
//! bounded channel with `try_send`, …). A panicking hook is the hook's bug; it is not caught.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use tower_app_sessions::events::{SessionEvent, SessionEventKind};
//! use tower_app_sessions::{AppContext, MemoryUsers, SessionLayer};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! let layer = SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new()).on_event(move |event: &SessionEvent| {
//!     if matches!(event.kind, SessionEventKind::Created) {
//!         sink.lock().unwrap().push(event.session);
//!     }
//! });
//! # drop(layer);
//! ```

use std::fmt;
use std::sync::Arc;

use uuid::Uuid;

use crate::{AppContext, SessionHandle, SessionRecord};

/// Something that happened to a session (or to a credential that did not open one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionEvent {
    /// What happened.
    pub kind: SessionEventKind,
    /// The layer's context.
    pub context: AppContext,
    /// The session's user, where known.
    pub user_id: Option<Uuid>,
    /// The session, by its non-secret handle (never the id).
    pub session: Option<SessionHandle>,
    /// When, in milliseconds since the Unix epoch (the layer's clock).
    pub at_ms: i64,
    /// The client address the session was created from, where known.
    pub ip: Option<String>,
    /// The user agent the session was created with, where known.
    pub user_agent: Option<String>,
}

/// The kinds of [`SessionEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEventKind {
    /// A login created the session.
    Created,
    /// The session moved to a new id; `from` is the old one's handle.
    Rotated {
        /// The handle of the id the session had before.
        from: SessionHandle,
    },
    /// The idle timeout slid.
    Extended {
        /// The new expiry, in milliseconds since the Unix epoch.
        expires_at: i64,
    },
    /// The session was logged out.
    LoggedOut,
    /// A revoke-all ended `count` sessions of the user (the event's `context` is the one
    /// revoked, or the layer's for [`RevokedScope::AllContexts`]).
    Revoked {
        /// In the layer's context only, or in all of them.
        scope: RevokedScope,
        /// How many sessions ended.
        count: u64,
    },
    /// The session was found expired (idle or absolute) and deleted.
    Expired,
    /// A login ended this session: the user had more than the per-user limit.
    Evicted,
    /// The layer's admission policy refused the session's user.
    Refused,
    /// A credential that opened no session.
    UnknownCredential {
        /// Malformed (never looked up) or unknown to the store.
        reason: CredentialProblem,
    },
    /// A backend failed while the layer authenticated a request.
    BackendError {
        /// `"session store"` or `"user store"`.
        backend: &'static str,
    },
}

impl SessionEventKind {
    /// The kind in snake case: `created`, `rotated`, `extended`, `logged_out`, `revoked`,
    /// `expired`, `evicted`, `refused`, `unknown_credential`, `backend_error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Rotated { .. } => "rotated",
            Self::Extended { .. } => "extended",
            Self::LoggedOut => "logged_out",
            Self::Revoked { .. } => "revoked",
            Self::Expired => "expired",
            Self::Evicted => "evicted",
            Self::Refused => "refused",
            Self::UnknownCredential { .. } => "unknown_credential",
            Self::BackendError { .. } => "backend_error",
        }
    }
}

impl fmt::Display for SessionEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a revocation reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokedScope {
    /// The layer's context.
    Context,
    /// Every context.
    AllContexts,
    /// One session, by its handle ([`Session::revoke`](crate::Session::revoke)); the event
    /// names that session.
    Session,
    /// Every session of the user but the one that asked
    /// ([`Session::revoke_others`](crate::Session::revoke_others)); the event names the one
    /// kept, by its new handle.
    Others,
}

/// Why a credential opened no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialProblem {
    /// Not a well-formed id (or the cookie was given twice with different values): refused
    /// before any store saw it.
    Malformed,
    /// Well-formed, but no live session of the layer's context has it.
    Unknown,
}

/// Delivers events to an async consumer through a bounded channel: a full channel drops the
/// event and counts it, it never blocks a request.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use tower_app_sessions::events::EventChannel;
/// use tower_app_sessions::{AppContext, MemoryUsers, SessionLayer};
///
/// let (channel, mut events) = EventChannel::bounded(1024);
/// let layer = SessionLayer::for_context(AppContext::Web).users(MemoryUsers::new()).on_event(channel.hook());
/// tokio::spawn(async move {
///     while let Some(event) = events.recv().await {
///         // write it to the audit store…
///         # drop(event);
///     }
/// });
/// assert_eq!(channel.dropped(), 0);
/// # drop(layer);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct EventChannel {
    sender: tokio::sync::mpsc::Sender<SessionEvent>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl EventChannel {
    /// A channel of `capacity` events (at least 1) and its receiving end.
    pub fn bounded(capacity: usize) -> (Self, tokio::sync::mpsc::Receiver<SessionEvent>) {
        let (sender, receiver) = tokio::sync::mpsc::channel(capacity.max(1));
        let channel = Self {
            sender,
            dropped: Arc::default(),
        };
        (channel, receiver)
    }

    /// The hook to register ([`SessionLayer::on_event`](crate::SessionLayer::on_event)):
    /// `try_send`, never waiting.
    pub fn hook(&self) -> impl Fn(&SessionEvent) + Send + Sync + 'static {
        let channel = self.clone();
        move |event: &SessionEvent| {
            if channel.sender.try_send(event.clone()).is_err() {
                // Full, or the receiver is gone: the request goes on without it.
                channel
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Events dropped so far because the channel was full or closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

type Hook = Arc<dyn Fn(&SessionEvent) + Send + Sync>;

/// The hooks of a layer.
#[derive(Clone, Default)]
pub(crate) struct EventHooks(Vec<Hook>);

impl fmt::Debug for EventHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHooks({})", self.0.len())
    }
}

/// The audit trail's `tracing` target.
pub const AUDIT_TARGET: &str = "tower_app_sessions::audit";

impl EventHooks {
    pub(crate) fn push(&mut self, hook: impl Fn(&SessionEvent) + Send + Sync + 'static) {
        self.0.push(Arc::new(hook));
    }

    /// Whether anyone hears events (a hook, or a subscriber of the audit target).
    pub(crate) fn listening(&self) -> bool {
        !self.0.is_empty() || audit_enabled()
    }

    /// Reports the event `make` builds to every hook and the audit trail; builds nothing when
    /// no one listens.
    pub(crate) fn emit(&self, make: impl FnOnce() -> SessionEvent) {
        let audit = audit_enabled();
        if self.0.is_empty() && !audit {
            return;
        }
        let event = make();
        if audit {
            audit_line(&event);
        }
        for hook in &self.0 {
            hook(&event);
        }
    }
}

/// Whether a subscriber takes audit lines. `WARN` is the most a line is written at: a filter
/// at `warn` still sees backend errors, and the `info!` lines filter themselves.
fn audit_enabled() -> bool {
    tracing::enabled!(target: AUDIT_TARGET, tracing::Level::WARN)
}

/// The audit line of an event: the handle, never the id.
fn audit_line(event: &SessionEvent) {
    let session = event.session.as_ref().map(SessionHandle::as_str);
    let user = event.user_id.map(|u| u.to_string());
    let (context, kind) = (event.context.as_str(), event.kind.as_str());
    match &event.kind {
        SessionEventKind::BackendError { backend } => {
            tracing::warn!(target: AUDIT_TARGET, context, event = kind, backend, "session event");
        }
        SessionEventKind::Revoked { scope, count } => {
            tracing::info!(target: AUDIT_TARGET, context, event = kind, user, ?scope, count, "session event");
        }
        other => {
            tracing::info!(target: AUDIT_TARGET, context, event = kind, session, user, ip = event.ip, detail = ?other, "session event");
        }
    }
}

impl SessionEvent {
    /// An event of `kind` in `context` at `at_ms`, with nothing else known.
    pub(crate) fn new(kind: SessionEventKind, context: &AppContext, at_ms: i64) -> Self {
        Self {
            kind,
            context: context.clone(),
            user_id: None,
            session: None,
            at_ms,
            ip: None,
            user_agent: None,
        }
    }

    /// The same, about `session` and its record.
    pub(crate) fn about(mut self, session: SessionHandle, record: Option<&SessionRecord>) -> Self {
        self.session = Some(session);
        if let Some(record) = record {
            self.user_id = Some(record.user_id);
            self.ip.clone_from(&record.ip);
            self.user_agent.clone_from(&record.user_agent);
        }
        self
    }

    /// The same, for `user_id`.
    pub(crate) fn user(mut self, user_id: Uuid) -> Self {
        self.user_id = Some(user_id);
        self
    }
}
