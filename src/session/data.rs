//! What a handler keeps in its session: typed reads of the data the layer loaded with the
//! record, and writes buffered during the request and saved once, as a patch of the keys that
//! changed (see [`data`](crate::data)).

use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Change, Session, SessionError};
use crate::data::{check_key, decode, DataError, SessionData, FLASH_PREFIX};

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
        Ok(match state.patch.change(key) {
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
        data.apply(&state.patch);
        Ok(data)
    }

    /// Sets `key` to `value` in the session's data. Saved when the handler is done (or at
    /// [`save`](Self::save)), as a patch of the keys this request changed: a concurrent
    /// request that changes other keys keeps its change; of the same key, the later save
    /// wins.
    ///
    /// # Errors
    /// [`DataError::NoSession`], [`DataError::InvalidKey`], [`DataError::Encode`], or
    /// [`DataError::TooLarge`] if the data would pass
    /// [`max_data_bytes`](crate::SessionLayer::max_data_bytes); nothing changes then.
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), SessionError> {
        let limit = self.inner.shared.settings.max_data_bytes;
        let mut guard = self.state();
        let state = &mut *guard;
        let current = state.current.as_ref().ok_or(DataError::NoSession)?;
        let previous = state.patch.change(key).map(|c| c.map(ToOwned::to_owned));
        state.patch.set(key, value)?;
        let size = current.record.data.encoded_len_with(&state.patch);
        if size > limit {
            state.patch.restore(key, previous);
            return Err(DataError::TooLarge { size, limit }.into());
        }
        self.inner.unsaved.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes `key` from the session's data (saved as [`insert`](Self::insert) is).
    ///
    /// # Errors
    /// [`DataError::NoSession`] or [`DataError::InvalidKey`].
    pub fn remove(&self, key: &str) -> Result<(), SessionError> {
        let mut state = self.state();
        if state.current.is_none() {
            return Err(DataError::NoSession.into());
        }
        state.patch.remove(key)?;
        self.inner.unsaved.store(true, Ordering::Release);
        Ok(())
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
    /// otherwise). Nothing to save is `Ok`.
    ///
    /// A pre-migration (legacy) session holds no data: it is first moved to a session of the
    /// layer's context, under a new id ([`rotate`](Self::rotate)).
    ///
    /// # Errors
    /// [`SessionError::Ended`] if the session was logged out, revoked or expired meanwhile:
    /// nothing was written, the request is anonymous from here on and its cookie is removed;
    /// [`SessionError::Store`] if the store failed (the changes may or may not be stored).
    pub async fn save(&self) -> Result<(), SessionError> {
        if !self.inner.unsaved.swap(false, Ordering::AcqRel) {
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
            (id, std::mem::take(&mut state.patch))
        };
        if patch.is_empty() {
            return Ok(());
        }
        let shared = &self.inner.shared;
        let now = self.now();
        let saved = shared
            .store
            .update_data(&shared.context, &id, &patch, now)
            .await?;
        let mut state = self.state();
        let same = state.current.as_ref().is_some_and(|c| c.id == id);
        if saved {
            if let Some(current) = state.current.as_mut().filter(|_| same) {
                current.record.to_mut().data.apply(&patch);
            }
            return Ok(());
        }
        tracing::info!(context = %shared.context, "data of a session that ended meanwhile not saved");
        if same {
            state.current = None;
            drop(state);
            self.set_change(Change::Removed);
        }
        Err(SessionError::Ended)
    }

    /// Whether the request changed data that is not saved yet.
    pub(crate) fn has_unsaved_data(&self) -> bool {
        self.inner.unsaved.load(Ordering::Acquire)
    }

    /// Forgets this request's unsaved changes (the session they were for is gone).
    pub(super) fn discard_data(&self) {
        self.inner.unsaved.store(false, Ordering::Release);
        self.state().patch = Default::default();
    }
}

fn flash_key(key: &str) -> Result<String, DataError> {
    check_key(key)?;
    let key = format!("{FLASH_PREFIX}{key}");
    check_key(&key)?;
    Ok(key)
}
