//! Rules for text people show each other (names, titles).

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;

/// Control characters, and format characters that render as nothing: they let
/// two names look the same, or hide text.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
            | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

pub const MAX_DISPLAY_NAME_CHARS: usize = 32;

/// A display name: NFKC-normalised, trimmed, 1 to 32 characters, no control or
/// invisible characters, one script (so `Аda` with a Cyrillic А is refused).
/// Its [`key`](Self::key) decides uniqueness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName {
    name: String,
    key: String,
}

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name: String = raw.nfkc().collect::<String>().trim().to_owned();
        let chars = name.chars().count();
        if chars == 0 {
            return Err("is required".to_owned());
        }
        if chars > MAX_DISPLAY_NAME_CHARS {
            return Err(format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters"));
        }
        if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
            return Err(format!("must not contain control or invisible characters (found U+{:04X})", u32::from(c)));
        }
        if !name.as_str().is_single_script() {
            return Err("must not mix writing systems (for example Latin and Cyrillic letters)".to_owned());
        }
        Ok(Self { key: key_of(&name), name })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The name as compared: lower-cased, then reduced to the UTS #39 skeleton,
    /// so names that look alike (`ada`, `ADA`, `аda`, `ａｄａ`) share a key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A name derived from a taken one: `Ada 2`, `Ada 3`, … (trimmed to fit).
    pub fn with_suffix(&self, n: u32) -> Self {
        let suffix = format!(" {n}");
        let room = MAX_DISPLAY_NAME_CHARS - suffix.chars().count();
        let base: String = self.name.chars().take(room).collect();
        let name = format!("{}{suffix}", base.trim_end());
        Self { key: key_of(&name), name }
    }
}

/// The comparison key of a name or of a search prefix.
pub fn key_of(s: &str) -> String {
    let folded: String = s.nfkc().collect::<String>().to_lowercase();
    unicode_security::skeleton(&folded).collect::<String>().to_lowercase()
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_width_and_bidi_controls_are_invisible_letters_are_not() {
        for c in ['\u{200B}', '\u{202E}', '\u{FEFF}', '\n', '\u{E0041}'] {
            assert!(is_invisible(c), "U+{:04X}", u32::from(c));
        }
        for c in ['a', 'Ж', '山', ' ', '😀'] {
            assert!(!is_invisible(c), "{c}");
        }
    }

    #[test]
    fn names_that_look_alike_share_a_key() {
        let plain = DisplayName::parse("Ada").unwrap();
        for alike in ["ada", "ADA", "ａｄａ", " Ada "] {
            assert_eq!(DisplayName::parse(alike).unwrap().key(), plain.key(), "{alike}");
        }
        assert_ne!(DisplayName::parse("Adam").unwrap().key(), plain.key());
        // Cyrillic а (U+0430) alone is one script, and still collides with Latin.
        assert_eq!(DisplayName::parse("\u{0430}").unwrap().key(), DisplayName::parse("a").unwrap().key());
    }

    #[test]
    fn invisible_and_mixed_script_names_are_refused() {
        assert!(DisplayName::parse("Ad\u{200B}a").unwrap_err().contains("invisible"));
        assert!(DisplayName::parse("\u{0410}da").unwrap_err().contains("writing systems"));
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(33)).is_err());
        assert!(DisplayName::parse("山田 花子").is_ok());
        assert!(DisplayName::parse("やまだ ヤマダ 山田").is_ok(), "Japanese mixes Han and kana as one script set");
    }

    #[test]
    fn suffixes_fit_the_length_limit() {
        let long = DisplayName::parse(&"x".repeat(32)).unwrap();
        let s = long.with_suffix(12);
        assert_eq!(s.as_str().chars().count(), 32);
        assert!(s.as_str().ends_with(" 12"));
    }
}
