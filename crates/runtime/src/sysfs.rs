// SPDX-License-Identifier: GPL-2.0-only
//! Reading the livepatch state the kernel exposes in sysfs and procfs:
//! `/sys/kernel/livepatch/<patch>/{enabled,transition,...}`,
//! `/sys/kernel/livepatch/<patch>/<object>/<function,sympos>`,
//! `/sys/module/<module>/{refcnt,taint}` and `/proc/modules`.
//!
//! Patches come and go while we read (a disabled patch is freed by the
//! kernel asynchronously), so a file that vanished reads as "gone", never as
//! an error.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::env::Env;

/// One patched function: `<function>,<sympos>` in sysfs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct FuncRef {
    pub name: String,
    pub sympos: u64,
}

/// One patched object (`vmlinux` or a module name).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ObjectState {
    pub name: String,
    /// The object's `patched` attribute (kernels from 6.1 on); `None` when absent.
    pub patched: Option<bool>,
    pub functions: Vec<FuncRef>,
}

/// One patch under `/sys/kernel/livepatch`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PatchState {
    pub name: String,
    pub enabled: bool,
    pub transition: bool,
    /// `enabled`, `enabling...`, `disabled` or `disabling...`.
    pub state: String,
    /// The `replace` attribute where the kernel has it.
    pub replace: Option<bool>,
    /// The `stack_order` attribute where the kernel has it (1 = bottom).
    pub stack_order: Option<u64>,
    pub objects: Vec<ObjectState>,
}

impl PatchState {
    /// Every `(object, function)` the patch touches.
    pub fn functions(&self) -> impl Iterator<Item = (&str, &FuncRef)> {
        self.objects
            .iter()
            .flat_map(|o| o.functions.iter().map(move |f| (o.name.as_str(), f)))
    }
}

/// Reads a small sysfs attribute, trimmed; `None` if it does not exist.
pub fn read_attr(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_bool(path: &Path) -> Option<bool> {
    match read_attr(path)?.as_str() {
        "1" | "Y" | "y" => Some(true),
        "0" | "N" | "n" => Some(false),
        _ => None,
    }
}

/// Sorted names of the subdirectories of `dir`; empty if it does not exist.
pub fn subdirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Names of the patches in `/sys/kernel/livepatch`.
pub fn patch_names(env: &Env) -> Vec<String> {
    subdirs(&env.livepatch_dir())
}

/// State of one patch; `None` if it is not (or no longer) there.
pub fn read_patch(env: &Env, name: &str) -> Option<PatchState> {
    let dir = env.patch_dir(name);
    let enabled = read_bool(&dir.join("enabled"))?;
    let transition = read_bool(&dir.join("transition")).unwrap_or(false);
    let state = match (enabled, transition) {
        (true, false) => "enabled",
        (true, true) => "enabling...",
        (false, false) => "disabled",
        (false, true) => "disabling...",
    };
    let objects = subdirs(&dir)
        .into_iter()
        .map(|obj| {
            let odir = dir.join(&obj);
            let mut functions: Vec<FuncRef> = subdirs(&odir)
                .into_iter()
                .map(|f| parse_func_dir(&f))
                .collect();
            functions.sort();
            ObjectState {
                patched: read_bool(&odir.join("patched")),
                name: obj,
                functions,
            }
        })
        .collect();
    Some(PatchState {
        name: name.to_string(),
        enabled,
        transition,
        state: state.to_string(),
        replace: read_bool(&dir.join("replace")),
        stack_order: read_attr(&dir.join("stack_order")).and_then(|s| s.parse().ok()),
        objects,
    })
}

/// Splits a function directory name `name,sympos`.
pub fn parse_func_dir(dir: &str) -> FuncRef {
    match dir.rsplit_once(',') {
        Some((name, pos)) if pos.parse::<u64>().is_ok() => FuncRef {
            name: name.to_string(),
            sympos: pos.parse().unwrap_or(0),
        },
        _ => FuncRef {
            name: dir.to_string(),
            sympos: 0,
        },
    }
}

/// All patches, bottom of the stack first (the last one wins where they overlap).
pub fn read_patches(env: &Env) -> Vec<PatchState> {
    let mut patches: Vec<PatchState> = patch_names(env)
        .iter()
        .filter_map(|n| read_patch(env, n))
        .collect();
    let newest_first = load_order(env);
    let n = newest_first.len() as u64;
    patches.sort_by_key(|p| {
        // /proc/modules lists the newest module first; without stack_order
        // (before 6.11) the load order is the stack order.
        let from_proc = newest_first
            .iter()
            .position(|m| *m == p.name)
            .map_or(0, |i| n - i as u64);
        (p.stack_order.unwrap_or(from_proc), p.name.clone())
    });
    patches
}

/// The patch currently in a transition, if any (the kernel allows one).
pub fn transition_patch(env: &Env) -> Option<PatchState> {
    patch_names(env)
        .iter()
        .filter_map(|n| read_patch(env, n))
        .find(|p| p.transition)
}

/// Module names in `/proc/modules` order: most recently loaded first.
pub fn load_order(env: &Env) -> Vec<String> {
    read_attr(&env.proc.join("modules"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Whether `/sys/module/<name>` exists.
pub fn module_loaded(env: &Env, name: &str) -> bool {
    env.module_dir(name).is_dir()
}

/// `/sys/module/<name>/refcnt`.
pub fn module_refcnt(env: &Env, name: &str) -> Option<u64> {
    read_attr(&env.module_dir(name).join("refcnt"))?
        .parse()
        .ok()
}

/// Whether a loaded module carries the livepatch taint (`K`).
pub fn module_is_livepatch(env: &Env, name: &str) -> bool {
    read_attr(&env.module_dir(name).join("taint")).is_some_and(|t| t.contains('K'))
}

/// Loaded livepatch modules that have no patch in sysfs any more (disabled
/// or replaced, but not unloaded).
pub fn orphan_patch_modules(env: &Env) -> Vec<String> {
    let patches = patch_names(env);
    subdirs(&env.sys.join("module"))
        .into_iter()
        .filter(|m| !patches.contains(m) && module_is_livepatch(env, m))
        .collect()
}
