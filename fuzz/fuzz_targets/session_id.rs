//! `SessionId::parse` and `SessionHandle::parse` (every credential and every handle in a path
//! or form goes through them): a value is accepted exactly when it has the documented shape,
//! an accepted value re-serializes to itself, and an invalid one is never constructed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_app_sessions::{SessionHandle, SessionId};

/// `[A-Za-z0-9_-]`, written out independently of the crate's table.
fn base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(s) = std::str::from_utf8(bytes) else {
        return;
    };

    let shaped = (16..=128).contains(&s.len()) && s.bytes().all(base64url);
    match SessionId::parse(s) {
        Some(id) => {
            assert!(shaped, "accepted an id of the wrong shape: {s:?}");
            assert_eq!(id.as_str(), s, "a parsed id re-serializes to itself");
            assert_eq!(SessionId::parse(id.as_str()).as_ref(), Some(&id));
            // The id is a secret: its Debug form never shows it.
            assert!(!format!("{id:?}").contains(s));
            // Its handle is a handle, reads back as itself, and does not reveal the id.
            let handle = id.handle();
            assert_eq!(handle.as_str().len(), 16);
            assert_eq!(SessionHandle::parse(handle.as_str()), Ok(handle));
            assert_eq!(handle, SessionId::parse(s).map(|id| id.handle()).unwrap());
        }
        None => assert!(!shaped, "refused an id of the right shape: {s:?}"),
    }

    let handle_shaped = s.len() == 16 && s.bytes().all(base64url);
    match SessionHandle::parse(s) {
        Ok(handle) => {
            assert!(handle_shaped, "accepted a handle of the wrong shape: {s:?}");
            assert_eq!(handle.as_str(), s);
            assert_eq!(handle.to_string(), s);
            assert_eq!(s.parse::<SessionHandle>(), Ok(handle));
            assert_eq!(
                serde_json::to_string(&handle).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        Err(_) => {
            assert!(!handle_shaped, "refused a handle of the right shape: {s:?}");
            assert!(s.parse::<SessionHandle>().is_err());
        }
    }
});
