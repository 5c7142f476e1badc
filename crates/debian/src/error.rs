//! Errors of the Debian layer: what failed and, where there is one, what to do about it.

use std::path::Path;

/// An error of the Debian layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the archive or apt could not give; `hint` says what to do.
    #[error("{msg}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Archive {
        /// What failed.
        msg: String,
        /// What the user can do.
        hint: Option<String>,
    },
    /// A downloaded or cached file is not what the index or its name says it is.
    #[error("integrity check failed for {path}: {msg}")]
    Integrity {
        /// The file.
        path: String,
        /// What did not match.
        msg: String,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// The tail of its output.
        output: String,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An [`Error::Archive`] without a hint.
pub fn archive(msg: impl Into<String>) -> Error {
    Error::Archive {
        msg: msg.into(),
        hint: None,
    }
}

/// An [`Error::Archive`] with a hint.
pub fn archive_hint(msg: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Archive {
        msg: msg.into(),
        hint: Some(hint.into()),
    }
}

/// Maps an I/O error to [`Error::Io`] naming `path`.
pub fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Io { path, source }
}

impl Error {
    /// The message without the hint.
    pub fn message(&self) -> String {
        match self {
            Error::Archive { msg, .. } => msg.clone(),
            other => other.to_string(),
        }
    }
    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Archive { hint, .. } => hint.as_deref(),
            _ => None,
        }
    }
}
