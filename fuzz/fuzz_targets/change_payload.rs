//! The invalidation message decoder that PostgreSQL's notification payloads (and the Redis
//! bus) go through (`src/change.rs`, reached through `tower_app_sessions::fuzzing`): a
//! decoded message re-encodes to a message that decodes to the same thing, a session message
//! names an id that passed `SessionId::parse` (the id's bytes, unchanged), and anything
//! unreadable drops everything rather than nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_app_sessions::fuzzing::decode_change;
use tower_app_sessions::SessionId;

fuzz_target!(|message: &[u8]| {
    let decoded = decode_change(message);

    // Idempotent: what it decoded to, written back, decodes to itself.
    if let Some(canonical) = &decoded {
        assert_eq!(
            decode_change(canonical.as_bytes()).as_ref(),
            Some(canonical)
        );
    }

    let text = std::str::from_utf8(message).ok();
    let kind = text.and_then(|t| t.get(..2));
    match kind {
        Some("s:") => {
            let text = text.unwrap_or_default();
            match &decoded {
                // Well-formed but naming nothing this crate holds.
                None => {}
                Some(all) if all == "all" => {
                    assert!(
                        !text[2..].contains(':'),
                        "{text:?}: a context and an id, read as garbage"
                    );
                }
                Some(session) => {
                    let id = session
                        .rsplit_once(':')
                        .map(|(_, id)| id)
                        .unwrap_or_default();
                    assert!(SessionId::parse(id).is_some());
                    assert!(
                        text.ends_with(&format!(":{id}")),
                        "{text:?} decoded to {session:?}"
                    );
                    assert!(session.starts_with("s:"));
                }
            }
        }
        Some("u:") => {
            let decoded = decoded.expect("a user message is a user or everything");
            if decoded != "all" {
                let id: uuid::Uuid = text.unwrap_or_default()[2..]
                    .parse()
                    .expect("the user id parses");
                assert_eq!(decoded, format!("u:{id}"));
            }
        }
        // Anything else, not UTF-8 included, is unreadable: every entry goes.
        _ => assert_eq!(decoded.as_deref(), Some("all"), "{message:?}"),
    }
});
