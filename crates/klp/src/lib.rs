//! Livepatch module generation for kpatch-build.
//!
//! - [`convert`]: the differ's `.kpatch.relocations`/`.kpatch.symbols` records → the
//!   kernel's `.klp.rela.*` sections and `.klp.sym.*` symbols, in the linked module.
//! - [`sources`]: the module's own C source (patch hook), linker script, Kbuild file
//!   and the patch-author header, embedded in the binary.

pub mod convert;
pub mod sources;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("livepatch module: {0}")]
    Format(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
