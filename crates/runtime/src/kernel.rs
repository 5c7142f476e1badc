// SPDX-License-Identifier: GPL-2.0-only
//! Everything the tool does to the kernel goes through [`Kernel`]: loading
//! and deleting modules, writing sysfs attributes and interrupting tasks.
//! [`LinuxKernel`] does it for real; the tests use a fake that edits a
//! sysfs tree in a temporary directory the way the kernel would.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// The operations that change kernel state.
pub trait Kernel {
    /// Loads a module from an open file (`finit_module`) with module
    /// parameters `params` (`key=value` separated by spaces). `name` is the
    /// module's name, for implementations that need it.
    fn load_module(&self, file: &File, name: &str, params: &str) -> io::Result<()>;

    /// Unloads a module without waiting for its users (`delete_module` with
    /// `O_NONBLOCK`): fails with `EWOULDBLOCK` while it is still in use.
    fn delete_module(&self, name: &str) -> io::Result<()>;

    /// Writes a sysfs attribute in one `write`.
    fn write_attr(&self, path: &Path, value: &str) -> io::Result<()>;

    /// Makes a sleeping user task leave the kernel once, so that it passes
    /// through the point where the kernel switches its patch state. Returns
    /// whether the task was seen to do so.
    fn interrupt_task(&self, tid: u32) -> io::Result<bool>;

    /// A reader of the kernel log messages written from now on, to explain a
    /// refused load; `None` when the log cannot be read.
    fn kernel_log(&self) -> Option<Box<dyn crate::kmsg::KernelLog>> {
        None
    }
}

/// The real kernel: `finit_module`/`delete_module` from rustix, plain
/// writes to sysfs and a ptrace interrupt for tasks.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxKernel;

/// How long one task may take to reach the interrupt stop.
const INTERRUPT_WAIT: Duration = Duration::from_millis(500);

impl Kernel for LinuxKernel {
    fn load_module(&self, file: &File, _name: &str, params: &str) -> io::Result<()> {
        let params =
            CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        rustix::system::finit_module(file, &params, 0).map_err(io::Error::from)
    }

    fn delete_module(&self, name: &str) -> io::Result<()> {
        let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let flags = rustix::fs::OFlags::NONBLOCK.bits() as std::ffi::c_int;
        rustix::system::delete_module(&name, flags).map_err(io::Error::from)
    }

    fn write_attr(&self, path: &Path, value: &str) -> io::Result<()> {
        std::fs::write(path, value)
    }

    fn interrupt_task(&self, tid: u32) -> io::Result<bool> {
        // A ptrace tracer is a thread. Doing the attach in a short-lived
        // thread means that if the task does not stop in time, the thread's
        // exit detaches it: the task is never left traced by us.
        std::thread::spawn(move || interrupt_via_ptrace(tid))
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("ptrace helper thread failed")))
    }

    fn kernel_log(&self) -> Option<Box<dyn crate::kmsg::KernelLog>> {
        crate::kmsg::Kmsg::open()
            .ok()
            .map(|k| Box::new(k) as Box<dyn crate::kmsg::KernelLog>)
    }
}

/// `PTRACE_SEIZE` + `PTRACE_INTERRUPT`: the task's sleep is interrupted as
/// by a signal, it passes the exit-to-user path (where the kernel updates
/// its patch state) and stops; `PTRACE_DETACH` resumes it and its system
/// call is restarted. No signal is queued and its parent sees nothing.
fn interrupt_via_ptrace(tid: u32) -> io::Result<bool> {
    use nix::sys::ptrace;
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;

    let pid = Pid::from_raw(
        i32::try_from(tid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    );
    ptrace::seize(pid, ptrace::Options::empty())?;
    ptrace::interrupt(pid)?;
    let deadline = Instant::now() + INTERRUPT_WAIT;
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG))? {
            WaitStatus::StillAlive => {
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            // A real signal arrived meanwhile: hand it back on detach.
            WaitStatus::Stopped(_, sig) => {
                ptrace::detach(pid, Some(sig))?;
                return Ok(true);
            }
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return Ok(true),
            _ => {
                ptrace::detach(pid, None)?;
                return Ok(true);
            }
        }
    }
}

/// A readable reason for an errno from `finit_module`.
pub fn load_error_reason(err: &io::Error) -> String {
    use rustix::io::Errno;
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let errno = Errno::from_raw_os_error(code);
    let why = match errno {
        Errno::EXIST => "a module with this name is already loaded",
        Errno::NOEXEC => {
            "invalid module format: wrong architecture, vermagic or symbol versions (see dmesg)"
        }
        Errno::KEYREJECTED | Errno::NOKEY => {
            "the kernel requires signed modules and does not trust this module's signature: \
             enrol the certificate it was signed with as a machine-owner key \
             (mokutil --import CERT, then reboot to confirm it)"
        }
        Errno::PERM => "not permitted: module loading is disabled or the kernel is locked down",
        Errno::BUSY => "another patch transition is in progress, or a patch callback refused",
        Errno::NOENT => "a symbol or object the patch needs was not found (see dmesg)",
        Errno::INVAL => "the kernel rejected the patch (see dmesg)",
        _ => return err.to_string(),
    };
    format!("{why} ({err})")
}
