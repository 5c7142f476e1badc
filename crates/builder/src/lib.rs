//! kpatch-build: build a livepatch module from a source patch, compiling only the
//! translation units the patch touches in a kernel tree prepared once per release.
//!
//! Modules:
//! - [`error`]: error type with the hint the user needs.
//! - [`units`]: which translation units a changed file affects, and where each is linked
//!   (vmlinux or which module).
//! - [`sizes`]: special-section entry sizes from DWARF, compiler identity check.

pub mod distro;
pub mod error;
pub mod kernel;
pub mod lock;
pub mod module;
pub mod patch;
pub mod pipeline;
pub mod progress;
pub mod sizes;
pub mod units;

pub use error::{Error, Result};
