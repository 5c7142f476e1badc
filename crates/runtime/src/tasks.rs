// SPDX-License-Identifier: GPL-2.0-only
//! Tasks that hold up a patch transition, from procfs.
//!
//! During a transition every task has `/proc/<pid>/task/<tid>/patch_state`:
//! `1` once it runs in the patched universe, `0` while it is still in the
//! unpatched one, `-1` when no transition is going on. A task blocks the
//! transition while its state differs from the target (`enabled`).

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::env::Env;
use crate::sysfs::{read_attr, PatchState};

/// `PF_KTHREAD` in the `flags` field of `/proc/<pid>/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// A task that has not switched to the transition's target universe.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockedTask {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Scheduler state letter from `stat` (`S`, `D`, `R`, ...).
    pub sched_state: String,
    pub kthread: bool,
    pub patch_state: i32,
    /// Kernel stack, one frame a line; empty if it could not be read.
    pub stack: Vec<String>,
    /// Frames of the stack that are in a function the patch replaces, or in
    /// the patch module itself.
    pub patched_frames: Vec<String>,
}

impl BlockedTask {
    /// One line naming the task and, if found, the patched function on its stack.
    pub fn summary(&self) -> String {
        let kind = if self.kthread {
            "kernel thread"
        } else {
            "task"
        };
        let mut s = format!(
            "{kind} {} ({}) pid {} state {}",
            self.tid, self.comm, self.pid, self.sched_state
        );
        if self.patched_frames.is_empty() {
            s.push_str(": no patched function found on its stack");
        } else {
            s.push_str(": in patched function ");
            s.push_str(&self.patched_frames.join(", "));
        }
        s
    }
}

/// Every task whose `patch_state` differs from `target` (1 = patching,
/// 0 = unpatching), with its stack searched for the patch's functions.
pub fn blocked_tasks(env: &Env, patch: &PatchState, target: i32) -> Vec<BlockedTask> {
    let mut found = Vec::new();
    for pid in numeric_dirs(&env.proc) {
        let task_dir = env.proc.join(pid.to_string()).join("task");
        let tids = numeric_dirs(&task_dir);
        for tid in tids {
            let dir = task_dir.join(tid.to_string());
            let Some(state) =
                read_attr(&dir.join("patch_state")).and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if state == -1 || state == target {
                continue;
            }
            found.push(describe(&dir, pid, tid, state, patch));
        }
    }
    found
}

fn describe(dir: &Path, pid: u32, tid: u32, patch_state: i32, patch: &PatchState) -> BlockedTask {
    let comm = read_attr(&dir.join("comm")).unwrap_or_default();
    let (sched_state, flags) = read_attr(&dir.join("stat"))
        .map(|s| parse_stat(&s))
        .unwrap_or_default();
    let stack: Vec<String> = fs::read_to_string(dir.join("stack"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let patched_frames = patched_frames(&stack, patch);
    BlockedTask {
        pid,
        tid,
        comm,
        sched_state,
        kthread: flags & PF_KTHREAD != 0,
        patch_state,
        stack,
        patched_frames,
    }
}

/// Scheduler state and `flags` from the text of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> (String, u64) {
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().copied().unwrap_or("?").to_string();
    let flags = fields.get(6).and_then(|f| f.parse().ok()).unwrap_or(0);
    (state, flags)
}

/// The function name of a stack frame such as
/// `[<0>] busymod_work_func+0x3e/0x60 [test_klp_callbacks_busy]`.
pub fn frame_function(frame: &str) -> Option<&str> {
    let rest = frame.trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']')?.1.trim_start(),
        None => rest,
    };
    let sym = rest.split_whitespace().next()?;
    Some(sym.split('+').next().unwrap_or(sym))
}

/// The frame's `[module]` suffix, if any.
fn frame_module(frame: &str) -> Option<&str> {
    let t = frame.trim_end();
    let inner = t.strip_suffix(']')?;
    let (_, m) = inner.rsplit_once('[')?;
    (!m.starts_with('<')).then_some(m)
}

/// Frames in a function the patch replaces (old code) or in the patch module
/// (new code). Each entry is `function` or `function [module]`.
pub fn patched_frames(stack: &[String], patch: &PatchState) -> Vec<String> {
    let mut hits = Vec::new();
    for frame in stack {
        let Some(func) = frame_function(frame) else {
            continue;
        };
        let module = frame_module(frame);
        let old = patch.functions().any(|(_, f)| f.name == func);
        let new = module == Some(patch.name.as_str());
        if old || new {
            let label = match module {
                Some(m) => format!("{func} [{m}]"),
                None => func.to_string(),
            };
            if !hits.contains(&label) {
                hits.push(label);
            }
        }
    }
    hits
}

fn numeric_dirs(dir: &Path) -> Vec<u32> {
    let mut ids: Vec<u32> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}
