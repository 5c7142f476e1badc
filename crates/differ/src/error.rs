//! Error kinds and their exit codes (upstream's convention, which scripts rely on).

pub use crate::refusal::{Refusal, Refused};

/// Why the differ stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input or an internal inconsistency: exit 1.
    #[error("{0}")]
    Fatal(String),
    /// The change cannot be live-patched safely: exit 2. Carries every refusal found.
    #[error("{0}")]
    Unpatchable(Box<Refused>),
}

impl Error {
    /// The command line's exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Fatal(_) => 1,
            Error::Unpatchable(_) => 2,
        }
    }
}

/// Result of the differ's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn fatal(msg: impl Into<String>) -> Error {
    Error::Fatal(msg.into())
}

pub(crate) fn unpatchable(msg: impl Into<String>) -> Error {
    Error::Unpatchable(Box::new(Refused::one(msg.into())))
}
