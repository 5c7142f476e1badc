//! Proof that the code a live patch was built against is the code the target kernel runs.
//!
//! - At build time ([`compare`]): every function of a rebuilt original object is compared
//!   with the same function in the target's shipped binary ([`image`]: the `-dbg` vmlinux,
//!   a vmlinux extracted from `vmlinuz` located by kallsyms, or a module `.ko`), bytes
//!   outside relocated fields equal, relocated fields designating the same symbols.
//! - Identity ([`buildid`]): the GNU build-ids of the target's vmlinux and modules.
//!
//! x86_64 only: every kernel that can take a live patch from this project is (see
//! [`x86`]).

#![warn(missing_docs)]

pub mod buildid;
pub mod compare;
pub mod elf;
pub mod func;
pub mod image;
pub mod kcore;
pub mod live;
pub mod realign;
pub mod record;
pub mod sites;
pub mod x86;

use std::path::Path;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A file is not what it should be; the message names it and says why.
    #[error("{0}")]
    Format(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
