//! What can be wrong with a node address.

/// Why a string is not a node address. Each variant says where the problem is and what
/// to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The string does not start with `p2pdN:`.
    #[error("not a p2pd node address: it must start with 'p2pd1:' (it starts with '{found}')")]
    MissingPrefix {
        /// The first characters found.
        found: String,
    },
    /// A newer (or unknown) format version.
    #[error(
        "node address format version {version} is not supported: this p2pd reads version 1; upgrade p2pd to read newer addresses"
    )]
    UnsupportedVersion {
        /// The version in the prefix.
        version: String,
    },
    /// Longer than any valid address.
    #[error(
        "node address is {len} characters long; the longest valid one has {max}: was something else pasted with it?"
    )]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside base32.
    #[error(
        "character '{ch}' at position {position} cannot appear in a node address (only a-z and 2-7): copy the address again"
    )]
    BadCharacter {
        /// The character.
        ch: char,
        /// Its byte offset in the string.
        position: usize,
    },
    /// The last character carries bits that no encoder writes: the end was cut or typed wrong.
    #[error(
        "the node address ends wrongly at position {position}: it was truncated or mistyped; copy it again"
    )]
    BadEnding {
        /// Byte offset of the last character.
        position: usize,
    },
    /// The checksum does not match.
    #[error(
        "node address checksum mismatch: the address was mistyped, truncated or altered; copy it again"
    )]
    Checksum,
    /// The payload ends inside a field.
    #[error("node address ends inside {field}: it is incomplete")]
    Truncated {
        /// The field being read.
        field: String,
    },
    /// A field holds a value it may not.
    #[error("node address field {field} is invalid: {problem}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Bytes follow the last interface.
    #[error(
        "node address has {0} unexpected bytes after the last interface: written by a different format?"
    )]
    TrailingBytes(usize),
}
