//! Hostile emails against a `UserRepository`, the same table for every backend.

use tower_app_sessions::users::{EmailError, UserError};
use tower_app_sessions::{Role, User, UserRepository};
use uuid::Uuid;

/// Registers the real owners, then tries the look-alikes: none may create an account that
/// shadows, or logs in as, an existing one; bad values are refused before any I/O with a
/// typed error (never a backend error); the owners still log in in any ASCII case.
pub(crate) async fn hostile_emails(users: &dyn UserRepository) {
    let tag = Uuid::new_v4().simple().to_string();
    let domain = format!("{tag}.example.com");
    let kate = users
        .create(User::new(format!("kate@{domain}"), Role::User))
        .await
        .expect("the real kate registers");
    let sam = users
        .create(User::new(format!("sam@{domain}"), Role::User))
        .await
        .expect("the real sam registers");

    // (what is registered, what it must not be mistaken for, the expected outcome)
    let refused = |e: EmailError| Err::<(), _>(e);
    let cases: Vec<(&str, String, Result<(), EmailError>)> = vec![
        (
            "Kelvin sign",
            format!("\u{212A}ate@{domain}"),
            refused(EmailError::NotNormalized),
        ),
        (
            "Kelvin sign, upper",
            format!("\u{212A}ATE@{domain}"),
            refused(EmailError::NotNormalized),
        ),
        (
            "combining acute",
            format!("kate\u{0301}@{domain}"),
            refused(EmailError::NotNormalized),
        ),
        (
            "NUL",
            format!("kate\0@{domain}"),
            refused(EmailError::ForbiddenCharacter),
        ),
        (
            "CR LF",
            format!("kate@{domain}\r\n"),
            refused(EmailError::ForbiddenCharacter),
        ),
        (
            "zero-width space",
            format!("ka\u{200B}te@{domain}"),
            refused(EmailError::ForbiddenCharacter),
        ),
        (
            "bidi override",
            format!("\u{202E}kate@{domain}"),
            refused(EmailError::ForbiddenCharacter),
        ),
        (
            "320+ bytes",
            format!("{}@{domain}", "k".repeat(320)),
            refused(EmailError::TooLong),
        ),
        (
            "two ats",
            format!("kate@evil@{domain}"),
            refused(EmailError::Shape),
        ),
        ("empty", "   ".into(), refused(EmailError::Empty)),
        // Kept as they are: distinct accounts that shadow nobody.
        ("long s", format!("\u{017F}am@{domain}"), Ok(())),
        ("fullwidth k", format!("\u{FF4B}ate@{domain}"), Ok(())),
        ("dotless i", format!("k\u{0131}te@{domain}"), Ok(())),
        ("dotted capital I", format!("K\u{0130}TE@{domain}"), Ok(())),
    ];
    for (name, email, want) in cases {
        let created = users.create(User::new(email.clone(), Role::User)).await;
        match (want, created) {
            (Err(expected), Err(UserError::InvalidEmail(got))) => {
                assert_eq!(got, expected, "{name}");
                // Never found either, and without an error.
                assert!(
                    users.find_by_email(&email).await.expect(name).is_none(),
                    "{name}"
                );
            }
            (Ok(()), Ok(user)) => {
                assert_ne!(user.id, kate.id, "{name}");
                assert_ne!(user.id, sam.id, "{name}");
                let found = users.find_by_email(&email).await.expect(name);
                assert_eq!(found.map(|u| u.id), Some(user.id), "{name}");
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
    }
    // The owners are still who their addresses find, in any ASCII case.
    for (email, owner) in [
        (format!("kate@{domain}"), kate.id),
        (format!("KATE@{}", domain.to_uppercase()), kate.id),
        (format!("  Sam@{domain} "), sam.id),
    ] {
        let found = users.find_by_email(&email).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(owner), "{email}");
    }
    // A second kate, in another ASCII case, is taken.
    let again = users
        .create(User::new(format!("Kate@{domain}"), Role::User))
        .await;
    assert!(matches!(again, Err(UserError::EmailTaken)), "{again:?}");
}
