// SPDX-License-Identifier: GPL-2.0-only
//! The `kpatch` runtime: managing live patches on a running kernel,
//! transactionally. A load either completes its transition or leaves the
//! kernel as it was, and says why.
//!
//! All kernel state is read from configurable `/sys` and `/proc` roots
//! ([`Env`]) and all changes go through the [`Kernel`] trait, so the state
//! machine is tested against a fake tree.

pub mod env;
pub mod error;
pub mod identity;
pub mod install;
pub mod kernel;
pub mod kmsg;
pub mod load;
pub mod modinfo;
pub mod report;
pub mod runpre;
pub mod signature;
pub mod status;
pub mod sysfs;
pub mod tasks;
pub mod transition;
pub mod unload;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use env::{Env, LoadChecks, Runtime, Timeouts};
pub use error::{Error, Result};
pub use kernel::{Kernel, LinuxKernel};
