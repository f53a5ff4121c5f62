//! [`Draft`]: one request's changes to its session's data, checked against the limits as they
//! are made, at a constant cost per change, and abandoned whole when one is refused.

use serde::Serialize;

use super::size::{member_len, DataLimits, DataSize};
use super::{check_key, encode, DataError, DataPatch, SessionData};

/// The changes a request buffers (saved after its handler, as one [`DataPatch`]) and the
/// size of the session's data with them.
///
/// The size is kept up to date change by change: each costs a lookup of its key and the
/// length of its own value, never a pass over the data or the other changes, so a request
/// setting `n` keys costs `O(n log n)`, not `O(n²)`.
///
/// All or nothing: once a change is refused, the draft is *abandoned*: the changes made
/// before are dropped and later ones refused ([`DataError::Abandoned`]), so no part of the
/// request is saved.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    patch: DataPatch,
    /// The data's size with `patch` applied; `None` while the patch is empty (then it is
    /// the stored data's own size).
    size: Option<DataSize>,
    abandoned: bool,
}

impl Draft {
    /// The changes buffered so far.
    pub(crate) fn patch(&self) -> &DataPatch {
        &self.patch
    }

    /// Whether a refused change abandoned the draft.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned
    }

    /// Sets `key` to `value` over `base` (the data the request loaded), if the data stays
    /// within `limits` (or, past them already, does not grow).
    ///
    /// # Errors
    /// [`DataError::Abandoned`] after an earlier refusal; otherwise the refusal of this
    /// change (the draft is then abandoned): [`DataError::InvalidKey`],
    /// [`DataError::Encode`], [`DataError::NulCharacter`], [`DataError::TooLarge`],
    /// [`DataError::TooManyKeys`].
    pub(crate) fn set<T: Serialize + ?Sized>(
        &mut self,
        base: &SessionData,
        key: &str,
        value: &T,
        limits: DataLimits,
    ) -> Result<(), DataError> {
        self.refuse_if_abandoned()?;
        let checked = check_key(key).and_then(|()| encode(value)).and_then(|raw| {
            let before = base.size();
            let after = self
                .current(base)
                .replacing(self.member(base, key), Some(member_len(key, &raw)));
            limits.check(before, after).map(|()| (raw, after))
        });
        let (raw, after) = self.or_abandon(checked)?;
        self.patch.set_raw(key, raw);
        self.size = Some(after);
        Ok(())
    }

    /// Removes `key` over `base`. A request removes at most `limits.max_keys` keys (more
    /// than a session can hold, and each costs the store a lookup).
    ///
    /// # Errors
    /// [`DataError::Abandoned`], or (abandoning the draft) [`DataError::InvalidKey`] or
    /// [`DataError::TooManyKeys`].
    pub(crate) fn remove(
        &mut self,
        base: &SessionData,
        key: &str,
        limits: DataLimits,
    ) -> Result<(), DataError> {
        self.refuse_if_abandoned()?;
        let checked = check_key(key).and_then(|()| {
            let removals = self.patch.remove.len() + usize::from(!self.patch.remove.contains(key));
            if removals > limits.max_keys {
                return Err(DataError::TooManyKeys {
                    keys: removals,
                    limit: limits.max_keys,
                });
            }
            Ok(self.current(base).replacing(self.member(base, key), None))
        });
        let after = self.or_abandon(checked)?;
        self.patch.remove_checked(key);
        self.size = Some(after);
        Ok(())
    }

    /// Takes the buffered changes to save; the draft starts over (over the data they are
    /// applied to).
    pub(crate) fn take(&mut self) -> DataPatch {
        self.size = None;
        std::mem::take(&mut self.patch)
    }

    /// Drops every change; `abandoned` says whether later changes are refused.
    pub(crate) fn clear(&mut self, abandoned: bool) {
        *self = Draft {
            abandoned,
            ..Draft::default()
        };
    }

    fn refuse_if_abandoned(&self) -> Result<(), DataError> {
        if self.abandoned {
            Err(DataError::Abandoned)
        } else {
            Ok(())
        }
    }

    fn or_abandon<T>(&mut self, checked: Result<T, DataError>) -> Result<T, DataError> {
        if checked.is_err() {
            self.clear(true);
        }
        checked
    }

    /// The size of `base` with the changes so far.
    fn current(&self, base: &SessionData) -> DataSize {
        self.size.unwrap_or_else(|| base.size())
    }

    /// The bytes of `key`'s member in `base` with the changes so far, if it has one.
    fn member(&self, base: &SessionData, key: &str) -> Option<usize> {
        match self.patch.change(key) {
            Some(Some(value)) => Some(member_len(key, value)),
            Some(None) => None,
            None => base.get_raw(key).map(|value| member_len(key, value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(base: &SessionData, draft: &Draft) -> SessionData {
        let mut data = base.clone();
        data.apply(draft.patch());
        data
    }

    #[test]
    fn the_running_size_is_the_size_of_the_data_with_the_changes() {
        let base = SessionData::from_json(r#"{"a":1,"bb":"x","c":[1, 2]}"#);
        let limits = DataLimits::default();
        let mut draft = Draft::default();
        let steps: [(&str, Option<serde_json::Value>); 7] = [
            ("a", Some(serde_json::json!(12345))),
            ("new", Some(serde_json::json!({"k": [1, 2]}))),
            ("bb", None),
            ("new", Some(serde_json::json!("short"))),
            ("absent", None),
            ("a", None),
            ("c", None),
        ];
        for (key, value) in steps {
            match value {
                Some(value) => draft.set(&base, key, &value, limits).unwrap(),
                None => draft.remove(&base, key, limits).unwrap(),
            }
            let data = applied(&base, &draft);
            assert_eq!(draft.current(&base).bytes, data.to_json().len(), "{key}");
            assert_eq!(draft.current(&base).keys, data.len(), "{key}");
        }
        assert_eq!(applied(&base, &draft).to_json(), r#"{"new":"short"}"#);
    }

    #[test]
    fn a_refused_change_abandons_every_change_of_the_request() {
        let base = SessionData::new();
        let limits = DataLimits::new(40, 2);
        let mut draft = Draft::default();
        draft.set(&base, "a", "kept?", limits).unwrap();
        assert!(matches!(
            draft.set(&base, "b b", &1, limits),
            Err(DataError::InvalidKey)
        ));
        assert!(draft.is_abandoned() && draft.patch().is_empty());
        assert!(matches!(
            draft.set(&base, "c", &1, limits),
            Err(DataError::Abandoned)
        ));
        assert!(matches!(
            draft.remove(&base, "c", limits),
            Err(DataError::Abandoned)
        ));

        type Change = fn(&mut Draft, &SessionData, DataLimits) -> Result<(), DataError>;
        let refusals: [Change; 3] = [
            |d, b, l| d.set(b, "big", &"x".repeat(40), l),
            |d, b, l| d.set(b, "nul", "a\u{0}b", l),
            |d, b, l| {
                d.set(b, "x", &1, l)?;
                d.set(b, "y", &1, l)
            },
        ];
        for refused in refusals {
            let mut draft = Draft::default();
            draft.set(&base, "a", &1, limits).unwrap();
            assert!(refused(&mut draft, &base, limits).is_err());
            assert!(draft.is_abandoned() && draft.patch().is_empty());
        }
    }

    #[test]
    fn a_request_removes_at_most_as_many_keys_as_a_session_holds() {
        let base = SessionData::new();
        let limits = DataLimits::new(1000, 3);
        let mut draft = Draft::default();
        for key in ["a", "b", "c", "a"] {
            draft.remove(&base, key, limits).unwrap();
        }
        assert!(matches!(
            draft.remove(&base, "d", limits),
            Err(DataError::TooManyKeys { keys: 4, limit: 3 })
        ));
    }
}
