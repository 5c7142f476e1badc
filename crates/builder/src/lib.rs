//! kpatch-build: build a livepatch module from a source patch, compiling only the
//! translation units the patch touches in a kernel tree prepared once per release.
//!
//! [`pipeline`] runs the phases (resolve → prepare → units → objects → verify → diff →
//! module),
//! one module each. The other modules are what the phases are made of:
//! - [`kernel`]: a release's cache: the prepared source tree; packages (resolution,
//!   verified downloads, unpacking) and build roots come from the `debian` crate.
//! - [`patch`]: the files a patch changes; applying it and taking it back out.
//! - [`units`]: which translation units a changed file affects, and where each is
//!   linked (vmlinux or which module).
//! - [`sizes`]: special-section entry sizes from DWARF, compiler identity check.
//! - [`shipped`]: the target's binaries from the image package (`vmlinuz`, `.ko`).
//! - [`toolchain`]: the kernel's compiler against the build root's and the -dbg vmlinux's.
//! - [`cmd`], [`lock`], [`progress`]: running commands, locking a cache, the build log.
//! - [`error`]: the error type, with the hint the user needs.

pub mod cmd;
pub mod error;
pub mod index;
pub mod kbuild;
pub mod kernel;
pub mod lock;
pub mod patch;
pub mod pipeline;
pub mod progress;
pub mod selfcheck;
pub mod shipped;
pub mod sizes;
pub mod toolchain;
pub mod units;

pub use error::{Error, Result};
