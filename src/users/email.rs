//! [`canonical_email`]: the one form in which emails are stored, compared and looked up.

use unicode_normalization::is_nfc;

/// The longest address accepted, in bytes: a 64-byte local part, `@` and a 255-byte domain.
pub const MAX_EMAIL_BYTES: usize = 320;

/// Why an address has no canonical form. Handlers answer `422` on registration and the
/// wrong-password answer (`401`, same body) on login; nothing reaches a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    /// Nothing but spaces.
    #[error("the email address is empty")]
    Empty,
    /// Longer than [`MAX_EMAIL_BYTES`].
    #[error("the email address is longer than {MAX_EMAIL_BYTES} bytes")]
    TooLong,
    /// A control character, a space or an invisible formatting character.
    #[error("the email address contains a control, space or invisible character")]
    ForbiddenCharacter,
    /// Not `local@domain` with exactly one `@`.
    #[error("the email address is not of the form local@domain")]
    Shape,
    /// Not in Unicode normalization form C.
    #[error("the email address is not in Unicode normalization form C")]
    NotNormalized,
}

/// Characters that render as nothing (or reorder text) and have no place in an address.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                       // soft hyphen
        | '\u{061C}'                     // Arabic letter mark
        | '\u{180E}'                     // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}'        // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}'        // bidirectional embeddings and overrides
        | '\u{2060}'..='\u{2064}'        // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}'        // bidirectional isolates
        | '\u{FEFF}'                     // byte-order mark
    )
}

/// The canonical form of `raw`, or why it has none.
///
/// Every resolver ([`MemoryUsers`](crate::MemoryUsers), [`PgUsers`](crate::users::PgUsers))
/// and every handler that takes an email passes it through this function, before any I/O.
///
/// # The canonical form
///
/// 1. spaces and tabs around the address are dropped;
/// 2. the address is refused if it is empty, longer than [`MAX_EMAIL_BYTES`], contains a
///    control character, a space of any kind or an invisible formatting character
///    (zero-width, bidirectional overrides, soft hyphen, byte-order mark), or is not
///    `local@domain` with exactly one `@` and both parts non-empty;
/// 3. the address is refused if it is not in Unicode normalization form C: normalizing would
///    change it, and some normalizations turn a non-ASCII character into an ASCII one (the
///    KELVIN SIGN `U+212A` becomes `K`), which would let `\u{212A}ate@example.com` claim
///    `kate@example.com`;
/// 4. ASCII letters are lowercased, and nothing else is: no non-ASCII character is ever
///    mapped, so an address can only ever equal another one that already looked the same in
///    ASCII (`ſ`, fullwidth letters, `ı`, `İ` stay what they are, and distinct).
///
/// Rows the TypeScript apps wrote keep the case the user typed (`Grace@Example.com`); they
/// are found by comparing their ASCII-lowercased form with the canonical one.
///
/// ```
/// use tower_app_sessions::users::{canonical_email, EmailError};
///
/// assert_eq!(canonical_email("  Ada.Lovelace@Example.COM ").unwrap(), "ada.lovelace@example.com");
/// // The Kelvin sign would normalize to an ASCII K: refused, not folded.
/// assert_eq!(canonical_email("\u{212A}ate@example.com"), Err(EmailError::NotNormalized));
/// assert_eq!(canonical_email("kate\0@example.com"), Err(EmailError::ForbiddenCharacter));
/// // Non-ASCII letters are kept as they are: this is not kate@example.com.
/// assert_eq!(canonical_email("ＫATE@example.com").unwrap(), "Ｋate@example.com");
/// ```
///
/// # Errors
/// [`EmailError`] for an address that is empty, too long, contains a forbidden character,
/// is not `local@domain`, or is not in normalization form C.
pub fn canonical_email(raw: &str) -> Result<String, EmailError> {
    let email = raw.trim_matches([' ', '\t']);
    if email.is_empty() {
        return Err(EmailError::Empty);
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err(EmailError::TooLong);
    }
    if email
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || is_invisible(c))
    {
        return Err(EmailError::ForbiddenCharacter);
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {}
        _ => return Err(EmailError::Shape),
    }
    if !is_nfc(email) {
        return Err(EmailError::NotNormalized);
    }
    Ok(email.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use EmailError::*;
        let long_local = format!("{}@example.com", "a".repeat(MAX_EMAIL_BYTES - 12));
        let too_long = format!("{}@example.com", "a".repeat(MAX_EMAIL_BYTES - 12 + 1));
        let cases: Vec<(&str, &str, Result<&str, EmailError>)> = vec![
            ("plain", "kate@example.com", Ok("kate@example.com")),
            (
                "ASCII case folds",
                "Kate@EXAMPLE.com",
                Ok("kate@example.com"),
            ),
            (
                "spaces around",
                " \tkate@example.com \t",
                Ok("kate@example.com"),
            ),
            ("Kelvin sign", "\u{212A}ate@example.com", Err(NotNormalized)),
            (
                "Kelvin sign, lower",
                "\u{212A}ATE@EXAMPLE.COM",
                Err(NotNormalized),
            ),
            (
                "long s stays",
                "\u{017F}am@example.com",
                Ok("\u{017F}am@example.com"),
            ),
            (
                "fullwidth stays",
                "\u{FF4B}ate@example.com",
                Ok("\u{FF4B}ate@example.com"),
            ),
            (
                "fullwidth capital stays",
                "\u{FF2B}ATE@example.com",
                Ok("\u{FF2B}ate@example.com"),
            ),
            (
                "dotless i stays",
                "\u{0131}van@example.com",
                Ok("\u{0131}van@example.com"),
            ),
            (
                "dotted capital I stays",
                "\u{0130}VAN@example.com",
                Ok("\u{0130}van@example.com"),
            ),
            (
                "precomposed",
                "ren\u{00E9}@example.com",
                Ok("ren\u{00E9}@example.com"),
            ),
            (
                "combining sequence",
                "rene\u{0301}@example.com",
                Err(NotNormalized),
            ),
            ("NUL", "kate\0@example.com", Err(ForbiddenCharacter)),
            (
                "CR LF",
                "kate@example.com\r\nBcc: x",
                Err(ForbiddenCharacter),
            ),
            ("tab inside", "ka\tte@example.com", Err(ForbiddenCharacter)),
            ("DEL", "kate\u{7F}@example.com", Err(ForbiddenCharacter)),
            (
                "C1 control",
                "kate\u{85}@example.com",
                Err(ForbiddenCharacter),
            ),
            (
                "no-break space",
                "kate\u{A0}@example.com",
                Err(ForbiddenCharacter),
            ),
            (
                "ideographic space",
                "kate\u{3000}@example.com",
                Err(ForbiddenCharacter),
            ),
            (
                "zero-width space",
                "ka\u{200B}te@example.com",
                Err(ForbiddenCharacter),
            ),
            (
                "right-to-left override",
                "\u{202E}moc.elpmaxe@etak",
                Err(ForbiddenCharacter),
            ),
            (
                "byte-order mark",
                "\u{FEFF}kate@example.com",
                Err(ForbiddenCharacter),
            ),
            (
                "soft hyphen",
                "ka\u{AD}te@example.com",
                Err(ForbiddenCharacter),
            ),
            ("empty", "", Err(Empty)),
            ("only spaces", "   ", Err(Empty)),
            ("no at", "kate.example.com", Err(Shape)),
            ("two ats", "kate@evil@example.com", Err(Shape)),
            ("no local part", "@example.com", Err(Shape)),
            ("no domain", "kate@", Err(Shape)),
            ("longest", long_local.as_str(), Ok(long_local.as_str())),
            ("one byte too long", too_long.as_str(), Err(TooLong)),
        ];
        for (name, raw, want) in cases {
            assert_eq!(
                canonical_email(raw).as_deref().map_err(|e| *e),
                want,
                "{name}"
            );
        }
        let huge = "a".repeat(1 << 20);
        assert_eq!(canonical_email(&huge), Err(TooLong));
    }

    #[test]
    fn no_non_ascii_character_ever_becomes_ascii() {
        // Every character outside ASCII, alone in a local part: either refused, or kept.
        for c in (0x80u32..=0x2_FFFF).filter_map(char::from_u32) {
            let raw = format!("{c}@example.com");
            if let Ok(canonical) = canonical_email(&raw) {
                assert!(
                    canonical.starts_with(c),
                    "U+{:04X} became {canonical:?}",
                    c as u32
                );
            }
        }
    }
}
