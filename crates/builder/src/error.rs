//! Errors of kpatch-build. Each says what failed and, where there is one, what to do.

/// Why a build stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step failed; `hint` tells the user what to do about it.
    #[error("{msg}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Step {
        /// What failed.
        msg: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The patch cannot be live-patched (the differ refused it).
    #[error("{0}")]
    Unpatchable(String),
    /// The rebuilt original code is not the code the target runs (the verify phase):
    /// `msg` names each function and the likely cause, `details` has every function's
    /// result (`--json`).
    #[error("{msg}")]
    Mismatch {
        /// The report: each differing function, its first difference and the likely cause.
        msg: String,
        /// Every function's result, as in `--json`.
        details: serde_json::Value,
    },
    /// The patch changes nothing that a live patch could carry.
    #[error("no functional change found in the patch")]
    NoChange,
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A signal (the number) stopped the build; the kernel tree was put back.
    #[error("interrupted by {}", crate::interrupt::signal_name(*.0))]
    Interrupted(i32),
}

impl Error {
    /// The exit status kpatch-build reports: 0 is success, 1 an error, 2 a change that
    /// cannot be live-patched, 3 no functional change, 128+N a signal N.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Unpatchable(_) | Error::Mismatch { .. } => 2,
            Error::NoChange => 3,
            Error::Interrupted(s) => (128 + s) as u8,
            Error::Step { .. } | Error::Io { .. } => 1,
        }
    }
}

/// The result type of kpatch-build.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error without a hint.
pub fn step(msg: impl Into<String>) -> Error {
    Error::Step {
        msg: msg.into(),
        hint: None,
    }
}

/// An error with what to do about it.
pub fn step_hint(msg: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Step {
        msg: msg.into(),
        hint: Some(hint.into()),
    }
}

/// Map an I/O error on `path` (for `map_err`).
pub fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Io { path, source }
}
