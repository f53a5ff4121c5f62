//! What a handler keeps in its session: typed reads of the data the layer loaded with the
//! record, and writes buffered during the request and saved once, as a patch of the keys that
//! changed, all or nothing (see [`data`](crate::data)).

use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Session, SessionError};
use crate::data::{check_key, decode, DataError, SessionData, FLASH_PREFIX};
use crate::store::DataUpdate;

impl Session {
    /// The value of `key` in the session's data, as a `T`; `None` if there is none. Reads
    /// the data loaded with the session (no round trip), with this request's changes.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use axum::{routing::{get, post}, Router};
    /// use tower::ServiceExt;
    /// use tower_app_sessions::{AppContext, MemoryUsers, Role, Session, SessionLayer, SessionMetadata, User};
    ///
    /// let users = MemoryUsers::new();
    /// let user = users.insert(User::new("kate@example.com", Role::User)).unwrap().id;
    /// let app = Router::new()
    ///     .route("/login", post(move |session: Session| async move {
    ///         session.login(user, SessionMetadata::new()).await.map(|_| "in")
    ///     }))
    ///     .route("/theme", post(|session: Session, theme: String| async move {
    ///         session.insert("theme", &theme).map(|()| "saved")
    ///     }).get(|session: Session| async move {
    ///         session.get::<String>("theme").map(Option::unwrap_or_default)
    ///     }))
    ///     .layer(SessionLayer::for_context(AppContext::Web).users(users));
    ///
    /// let req = http::Request::post("/login").body(axum::body::Body::empty()).unwrap();
    /// let res = app.clone().oneshot(req).await.unwrap();
    /// let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    /// let set = http::Request::post("/theme").header("cookie", &cookie).body(axum::body::Body::from("dark")).unwrap();
    /// assert_eq!(app.clone().oneshot(set).await.unwrap().status(), 200);
    /// let read = http::Request::get("/theme").header("cookie", &cookie).body(axum::body::Body::empty()).unwrap();
    /// let body = app.oneshot(read).await.unwrap().into_body();
    /// assert_eq!(&axum::body::to_bytes(body, 64).await.unwrap()[..], b"dark");
    /// # });
    /// ```
    ///
    /// # Errors
    /// [`DataError::NoSession`] on a request without a session, [`DataError::InvalidKey`],
    /// or [`DataError::WrongType`] if the stored value is not a `T` (never a panic).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        check_key(key)?;
        let state = self.state();
        let current = state.current.as_ref().ok_or(DataError::NoSession)?;
        Ok(match state.draft.patch().change(key) {
            Some(Some(raw)) => Some(decode(key, raw)?),
            Some(None) => None,
            None => current.record.data.get(key)?,
        })
    }

    /// All of the session's data, with this request's changes (a snapshot: cheap, the
    /// stored map is shared).
    ///
    /// # Errors
    /// [`DataError::NoSession`].
    pub fn data(&self) -> Result<SessionData, SessionError> {
        let state = self.state();
        let current = state.current.as_ref().ok_or(DataError::NoSession)?;
        let mut data = current.record.data.clone();
        data.apply(state.draft.patch());
        Ok(data)
    }

    /// Sets `key` to `value` in the session's data. Saved when the handler is done (or at
    /// [`save`](Self::save)), as a patch of the keys this request changed: a concurrent
    /// request that changes other keys keeps its change; of the same key, the later save
    /// wins. Costs the key and the value, whatever the session or the request holds.
    ///
    /// **All or nothing**: the layer saves the request's changes only if the handler
    /// answers with a status below 400, and a refused change (an error here or from
    /// [`remove`](Self::remove)) drops every change of the request, those before it and
    /// those after it ([`DataError::Abandoned`]): a handler that validates its input as it
    /// goes never stores half of it.
    ///
    /// # Errors
    /// [`DataError::NoSession`], [`DataError::InvalidKey`], [`DataError::Encode`],
    /// [`DataError::NulCharacter`], [`DataError::TooLarge`] or [`DataError::TooManyKeys`]
    /// if the data would pass [`max_data_bytes`](crate::SessionLayer::max_data_bytes) or
    /// [`max_data_keys`](crate::SessionLayer::max_data_keys), and
    /// [`DataError::Abandoned`] after an earlier refusal.
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), SessionError> {
        let limits = self.inner.shared.settings.data_limits;
        let mut guard = self.state();
        let state = &mut *guard;
        let current = state.current.as_ref().ok_or(DataError::NoSession)?;
        let changed = state.draft.set(&current.record.data, key, value, limits);
        self.buffered(changed)
    }

    /// Removes `key` from the session's data (saved, all or nothing, as
    /// [`insert`](Self::insert) is).
    ///
    /// # Errors
    /// [`DataError::NoSession`], [`DataError::InvalidKey`], [`DataError::TooManyKeys`] if
    /// the request removes more keys than
    /// [`max_data_keys`](crate::SessionLayer::max_data_keys), [`DataError::Abandoned`]
    /// after an earlier refusal.
    pub fn remove(&self, key: &str) -> Result<(), SessionError> {
        let limits = self.inner.shared.settings.data_limits;
        let mut guard = self.state();
        let state = &mut *guard;
        let current = state.current.as_ref().ok_or(DataError::NoSession)?;
        let changed = state.draft.remove(&current.record.data, key, limits);
        self.buffered(changed)
    }

    /// Notes the outcome of a change: something to save, or nothing at all any more.
    fn buffered(&self, changed: Result<(), DataError>) -> Result<(), SessionError> {
        // The draft dropped every change if this one was refused: nothing left to save.
        self.inner.unsaved.store(changed.is_ok(), Ordering::Release);
        Ok(changed?)
    }

    /// Keeps a message for the next request that asks for it with
    /// [`take_flash`](Self::take_flash) (stored under `flash.<key>`).
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub fn flash<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), SessionError> {
        self.insert(&flash_key(key)?, value)
    }

    /// The message kept by [`flash`](Self::flash), removed as it is read: a second call (in
    /// this request or a later one) gets `None`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn take_flash<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let key = flash_key(key)?;
        let value = self.get(&key)?;
        if value.is_some() {
            self.remove(&key)?;
        }
        Ok(value)
    }

    /// Saves this request's data changes now (the layer does it after the handler
    /// otherwise, when the handler's answer is a success). Nothing to save is `Ok`.
    ///
    /// The store checks the limits again, atomically with the write, against what
    /// concurrent requests stored since this one loaded the session.
    ///
    /// A pre-migration (legacy) session holds no data: it is first moved to a session of the
    /// layer's context, under a new id ([`rotate`](Self::rotate)).
    ///
    /// # Errors
    /// [`SessionError::Ended`] if the session was logged out, revoked, expired or rotated
    /// by another request meanwhile: nothing was written and the request is anonymous from
    /// here on. The cookie is left as it is: a concurrent rotation may have handed the
    /// browser a new id already, which a removal would delete (see
    /// [`rotate`](Self::rotate)). [`DataError::NoRoom`] if the store refused the changes
    /// over a limit, [`DataError::Abandoned`] if a refused change abandoned them (nothing
    /// written in either case); [`SessionError::Store`] if the store failed (the changes
    /// may or may not be stored).
    pub async fn save(&self) -> Result<(), SessionError> {
        if !self.inner.unsaved.swap(false, Ordering::AcqRel) {
            if self.state().draft.is_abandoned() {
                return Err(DataError::Abandoned.into());
            }
            return Ok(());
        }
        if self.state().current.as_ref().is_some_and(|c| c.legacy) {
            self.rotate().await?;
        }
        let (id, patch) = {
            let mut state = self.state();
            let Some(current) = state.current.as_ref() else {
                return Ok(());
            };
            let id = current.id.clone();
            (id, state.draft.take())
        };
        if patch.is_empty() {
            return Ok(());
        }
        let shared = &self.inner.shared;
        let now = self.now();
        let limits = shared.settings.data_limits;
        let outcome = shared
            .store
            .update_data(&shared.context, &id, &patch, limits, now)
            .await?;
        let mut state = self.state();
        let same = state.current.as_ref().is_some_and(|c| c.id == id);
        match outcome {
            DataUpdate::Applied => {
                if let Some(current) = state.current.as_mut().filter(|_| same) {
                    current.record.to_mut().data.apply(&patch);
                }
                Ok(())
            }
            DataUpdate::OverLimit => {
                tracing::info!(context = %shared.context, "session data over its limit in the store: the request's changes not saved");
                Err(DataError::NoRoom.into())
            }
            DataUpdate::NotLive => {
                tracing::info!(context = %shared.context, "data of a session that ended meanwhile not saved");
                if same {
                    state.current = None;
                }
                Err(SessionError::Ended)
            }
        }
    }

    /// Whether the request changed data that is not saved yet.
    pub(crate) fn has_unsaved_data(&self) -> bool {
        self.inner.unsaved.load(Ordering::Acquire)
    }

    /// Forgets this request's unsaved changes: the session they were for is gone, or the
    /// handler's answer was an error (all or nothing).
    pub(crate) fn discard_data(&self) {
        self.inner.unsaved.store(false, Ordering::Release);
        self.state().draft.clear(false);
    }
}

fn flash_key(key: &str) -> Result<String, DataError> {
    check_key(key)?;
    let key = format!("{FLASH_PREFIX}{key}");
    check_key(&key)?;
    Ok(key)
}
