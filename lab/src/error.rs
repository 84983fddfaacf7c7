//! The crate's single error type.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while building, driving or tearing down a lab.
///
/// Messages say what failed and what to do about it, because they end up in the
/// output of a failed integration test and are often read on a CI log.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A prerequisite (root, `ip netns`, a program) is missing.
    #[error("lab prerequisite missing: {0}")]
    Prerequisite(String),

    /// A command ran but exited unsuccessfully.
    #[error(
        "`{command}` failed ({status}) while trying to {what}; stderr: {stderr}\n\
         hint: run the same command by hand as root to see why"
    )]
    Command {
        /// What the lab was trying to do.
        what: String,
        /// The command line, for copy and paste.
        command: String,
        /// Exit status, as text.
        status: String,
        /// Captured standard error (trimmed).
        stderr: String,
    },

    /// A bounded wait ran out.
    #[error("timed out after {after:?} while trying to {what}; {detail}")]
    Timeout {
        /// What the lab was waiting for.
        what: String,
        /// How long it waited.
        after: Duration,
        /// Extra context, e.g. the tail of a server log.
        detail: String,
    },

    /// A server process died or never became ready.
    #[error(
        "{server} in namespace {netns} is not ready: {reason}; its log ({log}) ends with:\n{log_tail}"
    )]
    Server {
        /// Server name (`turnserver`, `mosquitto`, ...).
        server: String,
        /// Namespace it runs in.
        netns: String,
        /// Why it is considered not ready.
        reason: String,
        /// Path of its log file.
        log: PathBuf,
        /// Last lines of the log.
        log_tail: String,
    },

    /// The caller asked for something the topology cannot do.
    #[error("invalid lab request: {0}")]
    Invalid(String),

    /// An I/O error on a file or socket of the lab.
    #[error("I/O error while trying to {what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A system call failed.
    #[error("system call failed while trying to {what}: {source}")]
    Sys {
        /// What the lab was doing.
        what: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

impl LabError {
    /// Wraps an I/O error with what the lab was doing.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            source,
        }
    }

    /// Wraps a `nix` error with what the lab was doing.
    pub(crate) fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        LabError::Sys {
            what: what.into(),
            source,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
