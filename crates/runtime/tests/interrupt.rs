// SPDX-License-Identifier: GPL-2.0-only
//! The real task interrupt used by `kpatch signal` on kernels without a
//! `signal` attribute: a sleeping task must be taken out of its sleep
//! (through the exit-to-user path, where the kernel switches its patch
//! state), then resumed untraced, its system call restarted and its
//! result unchanged.
//!
//! The task is our own child, so no privilege is needed: an unprivileged user may
//! trace its own children (with Yama's `ptrace_scope` at 0 or 1, the usual settings;
//! at 2 only root can, at 3 no one).

use std::process::Command;
use std::time::{Duration, Instant};

use runtime::{Kernel, LinuxKernel};

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap()
}

#[test]
fn interrupt_resumes_a_sleeping_task_untraced() {
    let start = Instant::now();
    let mut child = Command::new("sleep").arg("1").spawn().unwrap();
    let pid = child.id();
    // Let it reach its sleep.
    std::thread::sleep(Duration::from_millis(200));
    assert!(status_field(pid, "State:").starts_with('S'));

    let stopped = LinuxKernel.interrupt_task(pid).unwrap();
    assert!(stopped, "the task did not reach the interrupt stop");
    assert_eq!(status_field(pid, "TracerPid:"), "0", "left traced");
    // The sleep was restarted, not cut short, and ended normally.
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(start.elapsed() >= Duration::from_millis(1000));
}

#[test]
fn interrupt_of_a_missing_task_is_an_error() {
    // pid_max is at most 2^22: this tid cannot exist.
    assert!(LinuxKernel.interrupt_task(0x7fff_fff0).is_err());
}
