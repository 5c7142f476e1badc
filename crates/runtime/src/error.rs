// SPDX-License-Identifier: GPL-2.0-only
//! Errors of the runtime tool. Every variant renders as one line that says
//! what went wrong and, where it helps, what to do about it.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make a `kpatch` command fail.
#[derive(Debug, Error)]
pub enum Error {
    #[error("'kpatch {0}' must be run as root")]
    NotRoot(&'static str),

    #[error("{} does not exist: the kernel has no livepatch support (CONFIG_LIVEPATCH) or sysfs is not mounted", .0.display())]
    NoLivepatchSysfs(PathBuf),

    #[error("{}: not a livepatch module (its modinfo has no 'livepatch=Y')", .0.display())]
    NotLivepatch(PathBuf),

    #[error("{}: built for kernel {module} but {wanted} is {target}", .path.display())]
    WrongKernel {
        path: PathBuf,
        module: String,
        target: String,
        wanted: &'static str,
    },

    #[error("{}: {reason}", .path.display())]
    BadModule { path: PathBuf, reason: String },

    #[error(transparent)]
    Io(#[from] pathio::PathError),

    #[error("can't find patch '{spec}': no such file, and nothing by that name is installed for kernel {release}")]
    NotFound { spec: String, release: String },

    #[error("patch module '{0}' is not loaded")]
    NotLoaded(String),

    #[error("module '{0}' is loaded but is not a live patch; use rmmod for it")]
    NotAPatchModule(String),

    #[error(
        "patch '{0}' is in a transition; wait for it, or use 'kpatch signal' or 'kpatch force'"
    )]
    Busy(String),

    #[error("no patch is in a transition")]
    NoTransition,

    #[error("the kernel refused to load {name}: {reason}")]
    LoadRefused { name: String, reason: String },

    #[error("failed to unload module {name}: {reason}")]
    UnloadFailed { name: String, reason: String },

    #[error("{name}: the {what} transition did not finish within {secs} s, blocked by {tasks} task(s); {outcome}")]
    Stalled {
        name: String,
        what: &'static str,
        secs: u64,
        tasks: usize,
        outcome: String,
    },

    #[error("'{0}' is not installed for kernel {1}")]
    NotInstalled(String, String),

    #[error("{name} was built for another build of this kernel: {what}; the running code may not be the code it replaces (use --force-mismatch to load it anyway)")]
    IdentityMismatch { name: String, what: String },

    #[error("{name}: the running code differs from the code the patch was built against: {what}")]
    VerifyFailed { name: String, what: String },
    #[error("{}: not signed, and {why}, so the kernel would refuse it; {advice}", .path.display())]
    Unsigned {
        path: PathBuf,
        why: String,
        advice: &'static str,
    },

    #[error("{0} of {1} patch module(s) failed")]
    SomeFailed(usize, usize),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<std::path::Path>, source: io::Error) -> Self {
        Error::Io(pathio::PathError::new(path, source))
    }
}

/// Adds the path to an `io::Result` (shared with the other crates).
pub use pathio::IoContext;
