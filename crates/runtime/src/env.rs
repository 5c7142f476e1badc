// SPDX-License-Identifier: GPL-2.0-only
//! Where the tool looks for things and how long it waits.
//!
//! All file-system roots are configurable so that the whole state machine can
//! run against a fake `/sys` and `/proc` tree in a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::kernel::Kernel;

/// Default time to wait for a transition before signalling blockers.
pub const DEFAULT_ENABLE_WAIT: Duration = Duration::from_secs(15);
/// Default time to wait after signalling blockers.
pub const DEFAULT_SIGNAL_WAIT: Duration = Duration::from_secs(60);
/// Default time to wait for a module's reference count to drop to zero.
pub const DEFAULT_REFCOUNT_WAIT: Duration = Duration::from_secs(15);

/// Waiting limits.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Wait this long for a transition before signalling the blocking tasks.
    pub enable_wait: Duration,
    /// Wait this long after signalling before giving up and rolling back.
    pub signal_wait: Duration,
    /// Wait this long for a disabled patch module to become unloadable.
    pub refcount_wait: Duration,
    /// How often to look at sysfs while waiting.
    pub poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            enable_wait: DEFAULT_ENABLE_WAIT,
            signal_wait: DEFAULT_SIGNAL_WAIT,
            refcount_wait: DEFAULT_REFCOUNT_WAIT,
            poll: Duration::from_millis(200),
        }
    }
}

/// What `kpatch load` checks before it loads a module.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadChecks {
    /// Load even when a build-id the module records differs from the running one.
    pub force_mismatch: bool,
    /// Run `kpatch verify` first, and refuse a module whose replaced code differs.
    pub verify: bool,
}

/// The system the tool acts on.
#[derive(Debug, Clone)]
pub struct Env {
    /// Root of sysfs, normally `/sys`.
    pub sys: PathBuf,
    /// Root of procfs, normally `/proc`.
    pub proc: PathBuf,
    /// Where patch modules are installed, normally `/var/lib/kpatch`.
    pub lib_dir: PathBuf,
    /// Release of the running kernel (`uname -r`).
    pub kernel_release: String,
    /// Whether the caller has the privileges to change the kernel.
    pub is_root: bool,
    /// Whether `install` should enable the boot service through systemctl.
    pub enable_service: bool,
    pub timeouts: Timeouts,
    pub checks: LoadChecks,
}

impl Env {
    /// The running system: `/sys`, `/proc`, `/var/lib/kpatch`, `uname -r`, euid.
    pub fn system() -> Self {
        let uname = rustix::system::uname();
        Env {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
            lib_dir: PathBuf::from("/var/lib/kpatch"),
            kernel_release: uname.release().to_string_lossy().into_owned(),
            is_root: rustix::process::geteuid().is_root(),
            enable_service: true,
            timeouts: Timeouts::default(),
            checks: LoadChecks::default(),
        }
    }

    /// A tree rooted at `root` (`root/sys`, `root/proc`, `root/var/lib/kpatch`).
    pub fn rooted(root: &Path, kernel_release: &str) -> Self {
        Env {
            sys: root.join("sys"),
            proc: root.join("proc"),
            lib_dir: root.join("var/lib/kpatch"),
            kernel_release: kernel_release.to_string(),
            is_root: true,
            enable_service: false,
            timeouts: Timeouts::default(),
            checks: LoadChecks::default(),
        }
    }

    /// `/sys/kernel/livepatch`.
    pub fn livepatch_dir(&self) -> PathBuf {
        self.sys.join("kernel/livepatch")
    }

    /// `/sys/kernel/livepatch/<patch>`.
    pub fn patch_dir(&self, name: &str) -> PathBuf {
        self.livepatch_dir().join(name)
    }

    /// `/sys/module/<module>`.
    pub fn module_dir(&self, name: &str) -> PathBuf {
        self.sys.join("module").join(name)
    }

    /// `/var/lib/kpatch/<release>`.
    pub fn install_dir(&self, release: &str) -> PathBuf {
        self.lib_dir.join(release)
    }

    /// Fails with a one-line error unless the caller is root.
    pub fn require_root(&self, command: &'static str) -> Result<()> {
        if self.is_root {
            Ok(())
        } else {
            Err(Error::NotRoot(command))
        }
    }

    /// Fails unless `/sys/kernel/livepatch` exists.
    pub fn require_livepatch(&self) -> Result<PathBuf> {
        let dir = self.livepatch_dir();
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(Error::NoLivepatchSysfs(dir))
        }
    }
}

/// One invocation of the tool: the system, the kernel interface and where
/// progress messages go.
pub struct Runtime<'a> {
    pub env: Env,
    pub kernel: &'a dyn Kernel,
    pub out: &'a mut dyn Write,
}

impl<'a> Runtime<'a> {
    pub fn new(env: Env, kernel: &'a dyn Kernel, out: &'a mut dyn Write) -> Self {
        Runtime { env, kernel, out }
    }

    /// Prints one progress line. Output errors (a closed pipe) are ignored:
    /// they must never turn a finished kernel change into a failure.
    pub fn say(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
        let _ = self.out.flush();
    }
}

/// The kernel's name for a module given as a file name or a name with dashes.
pub fn normalize_name(spec: &str) -> String {
    let base = spec.rsplit('/').next().unwrap_or(spec);
    let base = base.strip_suffix(".ko").unwrap_or(base);
    base.replace('-', "_")
}
