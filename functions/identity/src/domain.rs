//! Identity's domain types: parsed, never re-validated (`Email`, `Password`).

use std::fmt;

/// Longest address SMTP can carry (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
pub const MIN_PASSWORD_LEN: usize = 8;
/// Caps the work one request can make argon2 do.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Why an input was refused; the message is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("email is not a valid address")]
    Email,
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    PasswordTooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} characters")]
    PasswordTooLong,
}

/// A plausible email address: trimmed, at most 254 characters, exactly one `@`, a non-empty
/// local part, a domain containing a dot, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let s = raw.trim();
        if s.is_empty() || s.chars().count() > MAX_EMAIL_LEN || s.chars().any(char::is_whitespace) {
            return Err(InvalidInput::Email);
        }
        let mut parts = s.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(InvalidInput::Email);
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || !domain_ok {
            return Err(InvalidInput::Email);
        }
        Ok(Email(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password acceptable for a new account: 8 to 1024 characters, used as given (no
/// trimming: spaces are characters too). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let len = raw.chars().count();
        if len < MIN_PASSWORD_LEN {
            return Err(InvalidInput::PasswordTooShort);
        }
        if len > MAX_PASSWORD_LEN {
            return Err(InvalidInput::PasswordTooLong);
        }
        Ok(Password(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normal_address_is_accepted_and_trimmed() {
        let e = Email::parse("  Ada.Lovelace@Example.com \n").expect("valid");
        assert_eq!(e.as_str(), "Ada.Lovelace@Example.com");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "   ",
            "no-at-sign.example.com",
            "@example.com",
            "two@@example.com",
            "a@b@example.com",
            "user@localhost",
            "user@exa mple.com",
            "us er@example.com",
            "user@.com",
            "user@example.",
            "user@example..com",
        ] {
            assert_eq!(Email::parse(bad), Err(InvalidInput::Email), "{bad:?}");
        }
    }

    #[test]
    fn an_address_longer_than_254_characters_is_refused() {
        let local = "a".repeat(64);
        let ok = format!("{local}@{}.com", "d".repeat(254 - 64 - 1 - 4));
        assert_eq!(ok.len(), 254);
        assert!(Email::parse(&ok).is_ok());
        let too_long = format!("{local}@{}.com", "d".repeat(254 - 64 - 4));
        assert_eq!(Email::parse(&too_long), Err(InvalidInput::Email));
    }

    #[test]
    fn passwords_need_8_to_1024_characters() {
        assert_eq!(
            Password::parse("1234567"),
            Err(InvalidInput::PasswordTooShort)
        );
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(1024)).is_ok());
        assert_eq!(
            Password::parse(&"x".repeat(1025)),
            Err(InvalidInput::PasswordTooLong)
        );
    }

    #[test]
    fn password_length_counts_characters_not_bytes() {
        assert_eq!(
            Password::parse("ééééééé"),
            Err(InvalidInput::PasswordTooShort)
        );
        assert!(Password::parse("éééééééé").is_ok());
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let p = Password::parse("correct horse").expect("valid");
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}
