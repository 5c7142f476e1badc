//! Errors of kpatch-build. Each says what failed and, where there is one, what to do.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step failed; `hint` tells the user what to do about it.
    #[error("{msg}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Step { msg: String, hint: Option<String> },
    /// The patch cannot be live-patched (the differ refused it).
    #[error("{0}")]
    Unpatchable(String),
    /// The rebuilt original code is not the code the target runs (the verify phase):
    /// `msg` names each function and the likely cause, `details` has every function's
    /// result (`--json`).
    #[error("{msg}")]
    Mismatch {
        msg: String,
        details: serde_json::Value,
    },
    /// The patch changes nothing that a live patch could carry.
    #[error("no functional change found in the patch")]
    NoChange,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn step(msg: impl Into<String>) -> Error {
    Error::Step {
        msg: msg.into(),
        hint: None,
    }
}

pub fn step_hint(msg: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Step {
        msg: msg.into(),
        hint: Some(hint.into()),
    }
}

pub fn io(path: impl AsRef<std::path::Path>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.as_ref().display().to_string();
    move |source| Error::Io { path, source }
}
