// SPDX-License-Identifier: GPL-2.0-only
//! Driving a patch transition to its end: wait, signal the blocking tasks,
//! wait again; report the tasks that still block; force.

use std::time::{Duration, Instant};

use crate::env::Runtime;
use crate::error::{Error, IoContext, Result};
use crate::sysfs::{self, PatchState};
use crate::tasks::{self, BlockedTask};

/// How a transition ended.
#[derive(Debug)]
pub enum Outcome {
    /// It finished, after about this long.
    Finished(Duration),
    /// It was still going after both waits; these tasks blocked it.
    Stalled(Vec<BlockedTask>),
}

/// Waits until `name` is no longer in a transition (or gone). Returns
/// whether it finished within `limit`.
pub fn wait_for(rt: &mut Runtime<'_>, name: &str, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        match sysfs::read_patch(&rt.env, name) {
            None => return true,
            Some(p) if !p.transition => return true,
            Some(_) => {}
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(rt.env.timeouts.poll);
    }
}

/// Runs the wait / signal / wait sequence for a transition towards `target`
/// (1 = patched, 0 = unpatched).
pub fn complete(rt: &mut Runtime<'_>, name: &str, target: i32) -> Outcome {
    let start = Instant::now();
    let t = rt.env.timeouts;
    if in_transition(rt, name) {
        rt.say(format!(
            "waiting (up to {} seconds) for patch transition to complete...",
            t.enable_wait.as_secs()
        ));
    }
    if wait_for(rt, name, t.enable_wait) {
        return done(rt, start);
    }
    rt.say("patch transition has stalled!");
    if let Some(patch) = sysfs::read_patch(&rt.env, name) {
        signal_blockers(rt, &patch, target);
    }
    rt.say(format!(
        "waiting (up to {} seconds) for patch transition to complete...",
        t.signal_wait.as_secs()
    ));
    if wait_for(rt, name, t.signal_wait) {
        return done(rt, start);
    }
    let blocked = match sysfs::read_patch(&rt.env, name) {
        Some(p) => tasks::blocked_tasks(&rt.env, &p, target),
        None => Vec::new(),
    };
    Outcome::Stalled(blocked)
}

fn in_transition(rt: &Runtime<'_>, name: &str) -> bool {
    sysfs::read_patch(&rt.env, name).is_some_and(|p| p.transition)
}

fn done(rt: &mut Runtime<'_>, start: Instant) -> Outcome {
    let took = start.elapsed();
    rt.say(format!("transition complete ({} seconds)", took.as_secs()));
    Outcome::Finished(took)
}

/// Makes the tasks blocking `patch` move on. Kernels before 5.1 have a
/// `signal` attribute for that. Later ones signal blockers themselves, but
/// only every 15 s, and have no attribute: there we interrupt each blocking
/// user task once (ptrace interrupt), which sends it through the kernel exit
/// path where its patch state switches. Kernel threads and tasks in
/// uninterruptible sleep cannot be moved from user space; they are reported.
pub fn signal_blockers(rt: &mut Runtime<'_>, patch: &PatchState, target: i32) {
    let attr = rt.env.patch_dir(&patch.name).join("signal");
    if attr.exists() {
        rt.say(format!("signalling the tasks blocking {}", patch.name));
        if let Err(e) = rt.kernel.write_attr(&attr, "1") {
            rt.say(format!("warning: writing {}: {e}", attr.display()));
        }
        return;
    }
    let blocked = tasks::blocked_tasks(&rt.env, patch, target);
    if blocked.is_empty() {
        rt.say("no blocking task found");
        return;
    }
    for task in blocked {
        if task.kthread {
            rt.say(format!(
                "kernel thread {} ({}) cannot be signalled from user space; the kernel wakes it every 15 s",
                task.tid, task.comm
            ));
        } else if task.sched_state != "S" {
            rt.say(format!(
                "task {} ({}) is not in an interruptible sleep (state {}); not signalled",
                task.tid, task.comm, task.sched_state
            ));
        } else {
            match rt.kernel.interrupt_task(task.tid) {
                Ok(true) => rt.say(format!("signalled task {} ({})", task.tid, task.comm)),
                Ok(false) => rt.say(format!(
                    "signalled task {} ({}), it has not left the kernel yet",
                    task.tid, task.comm
                )),
                Err(e) => rt.say(format!(
                    "could not signal task {} ({}): {e}",
                    task.tid, task.comm
                )),
            }
        }
    }
}

/// Prints the blocking tasks with their stacks.
pub fn report_blocked(rt: &mut Runtime<'_>, blocked: &[BlockedTask]) {
    if blocked.is_empty() {
        rt.say("no blocking task could be identified");
        return;
    }
    rt.say(format!(
        "tasks blocking the transition ({}):",
        blocked.len()
    ));
    for task in blocked {
        rt.say(format!("  {}", task.summary()));
        if task.stack.is_empty() {
            rt.say("    (stack not readable)");
        }
        for frame in &task.stack {
            rt.say(format!("    {frame}"));
        }
    }
}

/// `kpatch signal`: signal the tasks blocking the patch in transition.
pub fn signal_command(rt: &mut Runtime<'_>) -> Result<()> {
    rt.env.require_root("signal")?;
    rt.env.require_livepatch()?;
    let Some(patch) = sysfs::transition_patch(&rt.env) else {
        rt.say("no patch transition in progress");
        return Ok(());
    };
    let target = i32::from(patch.enabled);
    signal_blockers(rt, &patch, target);
    Ok(())
}

/// The warning `kpatch force` prints before it acts.
pub const FORCE_WARNING: &str = "\
warning: forcing a transition marks every task as switched without checking its stack.
A task that is still running old code may now mix old and new functions: the
consistency the transition exists for is given up, and a patch whose semantics
changed can corrupt data or crash the kernel. The kernel also pins the module of
a forced patch: it can never be unloaded until reboot.";

/// `kpatch force [<patch>]`: finish the transition without the consistency check.
pub fn force_command(rt: &mut Runtime<'_>, name: Option<&str>) -> Result<()> {
    rt.env.require_root("force")?;
    rt.env.require_livepatch()?;
    let patch = match name {
        Some(n) => {
            let n = crate::env::normalize_name(n);
            sysfs::read_patch(&rt.env, &n).ok_or(Error::NotLoaded(n))?
        }
        None => sysfs::transition_patch(&rt.env).ok_or(Error::NoTransition)?,
    };
    if !patch.transition {
        return Err(Error::NoTransition);
    }
    rt.say(FORCE_WARNING);
    let attr = rt.env.patch_dir(&patch.name).join("force");
    rt.kernel.write_attr(&attr, "1").at(&attr)?;
    rt.say(format!("forced the transition of {}", patch.name));
    Ok(())
}
