//! kpatch-build: build a livepatch module from a source patch, compiling only the
//! translation units the patch touches in a kernel tree prepared once per release.
//!
//! [`pipeline`] runs the phases (resolve → prepare → units → objects → verify → diff →
//! module),
//! one module each. The other modules are what the phases are made of:
//! - [`kernel`]: a release's cache: the prepared source tree; packages (resolution,
//!   verified downloads, unpacking) and build roots come from the `debian` crate.
//! - [`patch`]: reading a patch (GNU patch and git semantics), applying it in memory.
//! - [`journal`], [`pristine`]: every change to the tree recorded before it is made, and
//!   put back; the tree checked against pristine copies before each build.
//! - [`interrupt`]: signals stop the children (also those run in a build root) and unwind
//!   the build, tree restored.
//! - [`inputs`]: the proof that a cached original object is still valid.
//! - [`units`]: which translation units a changed file affects, and where each is
//!   linked (vmlinux or which module).
//! - [`sizes`]: special-section entry sizes from DWARF, compiler identity check.
//! - [`shipped`]: the target's binaries from the image package (`vmlinuz`, `.ko`).
//! - [`toolchain`]: the kernel's compiler against the build root's and the -dbg vmlinux's.
//! - [`sign`]: module signing with the kernel's `sign-file` and a machine-owner key.
//! - [`package`]: the module as a Debian package (`--deb`).
//! - [`cmd`], [`lock`], [`progress`]: running commands, locking a cache, the build log.
//! - [`error`]: the error type, with the hint the user needs.

#![warn(missing_docs)]

pub mod carry;
pub mod cmd;
pub mod error;
pub mod impact;
pub mod index;
pub mod inputs;
pub mod interrupt;
pub mod journal;
pub mod kbuild;
pub mod kernel;
pub mod lock;
pub mod package;
pub mod patch;
pub mod pipeline;
pub mod pristine;
pub mod progress;
pub mod selfcheck;
pub mod shipped;
pub mod sign;
pub mod sizes;
pub mod toolchain;
pub mod units;

pub use error::{Error, Result};
