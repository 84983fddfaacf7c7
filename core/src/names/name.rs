//! A validated name: what people type instead of a node address.

use std::fmt;
use std::str::FromStr;

/// Longest name, in bytes (one DNS label: short enough to read aloud and type).
pub const MAX_NAME_LEN: usize = 63;
/// Shortest name. Very short names would be claimed first by whoever is fastest; three
/// characters leave 46 000+ of them while keeping names short.
pub const MIN_NAME_LEN: usize = 3;

/// Why text is not a name. Every message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Fewer than [`MIN_NAME_LEN`] or more than [`MAX_NAME_LEN`] characters.
    #[error("name '{name}' has {len} characters; a name has {MIN_NAME_LEN} to {MAX_NAME_LEN}")]
    Length {
        /// The name, shortened for display.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A character other than a-z, 0-9 and '-'.
    #[error(
        "name '{name}' contains {found:?} at position {position}; use only letters a-z, digits 0-9 and '-'"
    )]
    Character {
        /// The name, shortened for display.
        name: String,
        /// The offending character.
        found: char,
        /// Its position (characters, from 0).
        position: usize,
    },
    /// Starts or ends with '-'.
    #[error("name '{0}' starts or ends with '-'; begin and end with a letter or digit")]
    Hyphen(String),
}

/// A name: 3 to 63 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`
/// (the DNS host-name rule, RFC 1123 §2.1, minus the shortest names).
///
/// Upper-case letters are folded to lower case when parsing, so `Alice` and `alice` are
/// the same name and nobody can claim a look-alike that differs only in case. Nothing
/// outside ASCII is allowed: Unicode look-alikes (Cyrillic `а` for Latin `a`) would let
/// one person impersonate another's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Checks and lower-cases `text`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let shown = || text.chars().take(80).collect::<String>();
        for (position, c) in text.chars().enumerate() {
            if !(c.is_ascii_alphanumeric() || c == '-') {
                return Err(NameError::Character {
                    name: shown(),
                    found: c,
                    position,
                });
            }
        }
        // Only ASCII from here on: bytes are characters.
        let len = text.len();
        if !(MIN_NAME_LEN..=MAX_NAME_LEN).contains(&len) {
            return Err(NameError::Length { name: shown(), len });
        }
        if text.starts_with('-') || text.ends_with('-') {
            return Err(NameError::Hyphen(shown()));
        }
        Ok(Name(text.to_ascii_lowercase()))
    }

    /// The name (lower case).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Name::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_fold_case() {
        assert_eq!(Name::parse("Alice-2").unwrap().as_str(), "alice-2");
        assert_eq!(Name::parse("abc").unwrap().to_string(), "abc");
        assert!(Name::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn invalid_names_say_why() {
        let e = Name::parse("ab").unwrap_err();
        assert!(matches!(e, NameError::Length { len: 2, .. }), "{e}");
        assert!(e.to_string().contains("3 to 63"));
        assert!(matches!(
            Name::parse(&"a".repeat(64)),
            Err(NameError::Length { len: 64, .. })
        ));
        let e = Name::parse("bob.smith").unwrap_err();
        assert_eq!(
            e,
            NameError::Character {
                name: "bob.smith".into(),
                found: '.',
                position: 3
            }
        );
        assert!(e.to_string().contains("a-z"), "{e}");
        // Cyrillic 'а' (2 bytes) is refused, not folded; so is a long name with a bad character.
        assert!(matches!(
            Name::parse(&format!("{}!", "a".repeat(70))),
            Err(NameError::Character {
                found: '!',
                position: 70,
                ..
            })
        ));
        assert!(matches!(
            Name::parse("\u{430}lice"),
            Err(NameError::Character {
                found: '\u{430}',
                position: 0,
                ..
            })
        ));
        assert!(matches!(Name::parse("-abc"), Err(NameError::Hyphen(_))));
        assert!(matches!(Name::parse("abc-"), Err(NameError::Hyphen(_))));
        assert!(matches!(
            Name::parse("p2pd1:xyz"),
            Err(NameError::Character { found: ':', .. })
        ));
    }
}
