//! Livepatch module generation for kpatch-build.
//!
//! - [`convert`]: the differ's `.kpatch.relocations`/`.kpatch.symbols` records → the
//!   kernel's `.klp.rela.*` sections and `.klp.sym.*` symbols, in the linked module.
//! - [`sources`]: the module's own C source (patch hook), linker script, Kbuild file
//!   and the patch-author header, embedded in the binary.

#![warn(missing_docs)]

pub mod convert;
pub mod sources;

/// Why a module could not be converted or its sources written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The module's ELF or klp metadata is malformed or incomplete.
    #[error("livepatch module: {0}")]
    Format(String),
    /// Reading or writing a file failed (the message names it).
    #[error(transparent)]
    Io(#[from] pathio::PathError),
}

/// Result of the livepatch module operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
