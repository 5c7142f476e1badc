// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch unload`: disable a patch, drive the unpatching transition (with
//! the same wait / signal / wait as a load), roll it back if it stalls, and
//! remove the module.

use std::time::Instant;

use crate::env::{normalize_name, Runtime};
use crate::error::{Error, IoContext, Result};
use crate::sysfs;
use crate::transition::{self, Outcome};

/// `kpatch unload <name>`.
pub fn unload(rt: &mut Runtime<'_>, spec: &str) -> Result<()> {
    rt.env.require_root("unload")?;
    rt.env.require_livepatch()?;
    let name = normalize_name(spec);
    unload_one(rt, &name)
}

/// `kpatch unload --all`: newest patch first. Goes on after a failure.
pub fn unload_all(rt: &mut Runtime<'_>) -> Result<()> {
    rt.env.require_root("unload")?;
    rt.env.require_livepatch()?;
    let mut names: Vec<String> = sysfs::read_patches(&rt.env)
        .into_iter()
        .rev()
        .map(|p| p.name)
        .collect();
    names.extend(sysfs::orphan_patch_modules(&rt.env));
    let total = names.len();
    let mut failed = 0;
    for name in names {
        if let Err(e) = unload_one(rt, &name) {
            rt.say(format!("kpatch: {e}"));
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Error::SomeFailed(failed, total));
    }
    Ok(())
}

fn unload_one(rt: &mut Runtime<'_>, name: &str) -> Result<()> {
    match sysfs::read_patch(&rt.env, name) {
        Some(p) if p.transition => return Err(Error::Busy(name.to_string())),
        Some(p) if p.enabled => disable(rt, name)?,
        Some(_) => {}
        None => {
            if !sysfs::module_loaded(&rt.env, name) {
                return Err(Error::NotLoaded(name.to_string()));
            }
            if !sysfs::module_is_livepatch(&rt.env, name) {
                return Err(Error::NotAPatchModule(name.to_string()));
            }
        }
    }
    wait_gone(rt, name);
    remove_module(rt, name, false)
}

/// Disables an enabled patch and drives the transition; on a stall, reports
/// the blockers and re-enables it (reversing the transition).
fn disable(rt: &mut Runtime<'_>, name: &str) -> Result<()> {
    if let Some(p) = sysfs::transition_patch(&rt.env) {
        return Err(Error::Busy(p.name));
    }
    rt.say(format!("disabling patch module: {name}"));
    let enabled = rt.env.patch_dir(name).join("enabled");
    rt.kernel.write_attr(&enabled, "0").at(&enabled)?;
    match transition::complete(rt, name, 0) {
        Outcome::Finished(_) => Ok(()),
        Outcome::Stalled(blocked) => {
            transition::report_blocked(rt, &blocked);
            let secs = (rt.env.timeouts.enable_wait + rt.env.timeouts.signal_wait).as_secs();
            rt.say(format!("reversing the transition of {name}..."));
            rt.kernel.write_attr(&enabled, "1").at(&enabled)?;
            let outcome = match transition::complete(rt, name, 1) {
                Outcome::Finished(_) => "re-enabled: the patch stays applied as before".to_string(),
                Outcome::Stalled(again) => {
                    transition::report_blocked(rt, &again);
                    format!(
                        "the reverse transition stalled too ({} task(s)); the patch is partly applied",
                        again.len()
                    )
                }
            };
            Err(Error::Stalled {
                name: name.to_string(),
                what: "unpatching",
                secs,
                tasks: blocked.len(),
                outcome,
            })
        }
    }
}

/// Waits (up to the refcount wait) until the kernel has freed the patch's
/// sysfs directory, which it does asynchronously after the transition.
pub fn wait_gone(rt: &mut Runtime<'_>, name: &str) {
    let start = Instant::now();
    while rt.env.patch_dir(name).exists() && start.elapsed() < rt.env.timeouts.refcount_wait {
        std::thread::sleep(rt.env.timeouts.poll);
    }
}

/// Removes a module once nothing holds it, waiting up to the refcount wait.
pub fn remove_module(rt: &mut Runtime<'_>, name: &str, quiet: bool) -> Result<()> {
    let start = Instant::now();
    let limit = rt.env.timeouts.refcount_wait;
    let mut said = false;
    while sysfs::module_refcnt(&rt.env, name).is_some_and(|r| r > 0) && start.elapsed() < limit {
        if !said {
            rt.say(format!(
                "waiting (up to {} s) for module {name} to be released...",
                limit.as_secs()
            ));
            said = true;
        }
        std::thread::sleep(rt.env.timeouts.poll);
    }
    if !quiet {
        rt.say(format!("unloading patch module: {name}"));
    }
    loop {
        match rt.kernel.delete_module(name) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < limit => {
                std::thread::sleep(rt.env.timeouts.poll);
            }
            Err(e) => {
                let reason = match e.kind() {
                    std::io::ErrorKind::WouldBlock => format!(
                        "it is still in use after {} s (a forced patch can never be unloaded)",
                        limit.as_secs()
                    ),
                    _ => e.to_string(),
                };
                return Err(Error::UnloadFailed {
                    name: name.to_string(),
                    reason,
                });
            }
        }
    }
}
