//! The password policy, after OWASP ASVS 5 (V6.2): 8 to 128 characters (see
//! [`crate::domain::Password`]), no composition rules, nothing truncated, none
//! of the 10,000 most common passwords, and nothing built from the account's
//! own email or display name.

use std::collections::HashSet;
use std::sync::LazyLock;

/// The shipped list (`data/common-passwords.txt`, see `data/README.md`).
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../data/common-passwords.txt").lines().filter(|l| !l.is_empty()).collect());

/// The number of passwords on the list.
pub fn common_count() -> usize {
    COMMON.len()
}

/// Why `password` may not be used by the account with `email` and
/// `display_name`, if it may not.
pub fn check(password: &str, email: &str, display_name: &str) -> Result<(), &'static str> {
    let lowered = password.to_lowercase();
    if COMMON.contains(lowered.as_str()) {
        return Err("is one of the most common passwords; choose another");
    }
    let email = email.trim().to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    // Short parts ("al", "jo") occur in many good passwords by chance.
    let contains = |part: &str| part.chars().count() >= 3 && lowered.contains(part);
    if contains(&email) || contains(local) {
        return Err("must not contain your email address");
    }
    let name = display_name.trim().to_lowercase();
    if contains(&name) || name.split_whitespace().any(|w| w.chars().count() >= 4 && lowered.contains(w)) {
        return Err("must not contain your display name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_holds_ten_thousand_passwords() {
        assert_eq!(common_count(), 10_000);
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        for p in ["password", "Password", "12345678", "iloveyou", "TRUSTNO1", "qwertyuiop"] {
            assert!(check(p, "ada@example.com", "Ada").is_err(), "{p}");
        }
        assert!(check("correct horse battery staple", "ada@example.com", "Ada").is_ok());
    }

    #[test]
    fn passwords_built_from_the_account_are_refused() {
        assert!(check("ada.lovelace@example.com!", "ada.lovelace@example.com", "Ada").is_err());
        assert!(check("xxada.lovelace99", "ada.lovelace@example.com", "Ada").is_err());
        assert!(check("my name is Countess Lovelace", "c@example.com", "Countess Lovelace").is_err());
        assert!(check("lovelace-forever-2024", "c@example.com", "Ada Lovelace").is_err());
        // Short names are not held against a password.
        assert!(check("adamant granite river", "zz@example.com", "Ad").is_ok());
    }
}
