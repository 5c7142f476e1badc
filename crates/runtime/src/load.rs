// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch load`: a load either completes its transition or leaves the
//! kernel as it was.
//!
//! Steps: check the file (live patch, built for this kernel); report overlaps
//! with loaded patches; write the interrupted-load marker; `finit_module`;
//! wait / signal / wait for the transition; on a stall, report the blocking
//! tasks, reverse the transition, unload the module and clear the marker.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::env::Runtime;
use crate::error::{Error, IoContext, Result};
use crate::install::{self, clear_marker, read_marker, write_marker};
use crate::kernel::load_error_reason;
use crate::kmsg;
use crate::modinfo::ModuleFile;
use crate::sysfs;
use crate::transition::{self, Outcome};
use crate::unload;

/// Resolves what the user named: an existing file, or an installed module
/// of the running kernel (by file or module name).
pub fn resolve(rt: &Runtime<'_>, spec: &str) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    install::find_installed(&rt.env, &rt.env.kernel_release, spec)
        .map(|i| i.file)
        .ok_or_else(|| Error::NotFound {
            spec: spec.to_string(),
            release: rt.env.kernel_release.clone(),
        })
}

/// `kpatch load <module> [param=value]...`.
pub fn load(rt: &mut Runtime<'_>, spec: &str, params: &[String]) -> Result<()> {
    rt.env.require_root("load")?;
    rt.env.require_livepatch()?;
    let path = resolve(rt, spec)?;
    let module = ModuleFile::read(&path)?;
    module.check_for(&rt.env.kernel_release, "the running kernel")?;
    let release = rt.env.kernel_release.clone();
    if let Some(mark) = read_marker(&rt.env, &release, &module.name) {
        rt.say(format!(
            "warning: a previous load of {} never finished ({mark}); loading it because it was asked for by name",
            module.name
        ));
    }
    load_module(rt, &module, &params.join(" "))
}

/// `kpatch load --all`: every module installed for the running kernel,
/// except those whose previous load was interrupted. Goes on after a
/// failure and fails at the end if any did.
pub fn load_all(rt: &mut Runtime<'_>) -> Result<()> {
    rt.env.require_root("load")?;
    rt.env.require_livepatch()?;
    let release = rt.env.kernel_release.clone();
    let all = install::installed(&rt.env, Some(&release));
    let mut failed = 0;
    for inst in &all {
        if let Some(mark) = &inst.interrupted {
            rt.say(format!(
                "skipping {}: its previous load never finished ({mark}); run 'kpatch install {}' again to re-enable it",
                inst.name,
                inst.file.display()
            ));
            continue;
        }
        let res = ModuleFile::read(&inst.file).and_then(|m| {
            m.check_for(&release, "the running kernel")?;
            load_module(rt, &m, "")
        });
        if let Err(e) = res {
            rt.say(format!("kpatch: {e}"));
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(Error::SomeFailed(failed, all.len()));
    }
    Ok(())
}

/// Loads a checked module and drives its transition.
pub fn load_module(rt: &mut Runtime<'_>, module: &ModuleFile, params: &str) -> Result<()> {
    let name = module.name.clone();
    let policy = crate::signature::Policy::read(&rt.env);
    if policy.requires_signature() && !module.signed {
        return Err(Error::Unsigned {
            path: module.path.clone(),
            why: policy.reason(),
            advice: crate::signature::unsigned_advice(),
        });
    }
    if let Some(p) = sysfs::read_patch(&rt.env, &name) {
        if p.transition {
            return Err(Error::Busy(name));
        }
        if p.enabled {
            rt.say(format!("patch module {name} is already loaded and enabled"));
            return Ok(());
        }
    }
    if let Some(p) = sysfs::transition_patch(&rt.env) {
        return Err(Error::Busy(p.name));
    }
    if sysfs::module_loaded(&rt.env, &name) {
        // A disabled (or replaced) patch whose module is still loaded:
        // remove it first, as a new load needs the name.
        if !sysfs::module_is_livepatch(&rt.env, &name) {
            return Err(Error::NotAPatchModule(name));
        }
        unload::remove_module(rt, &name, true)?;
    }
    check_identity(rt, module)?;
    if rt.env.checks.verify {
        let spec = module.path.display().to_string();
        let report = crate::runpre::verify(rt, &spec)?;
        rt.say(report.to_text().trim_end());
        if let Some(e) = report.failure() {
            return Err(e);
        }
    }
    report_overlaps(rt, module);

    let before = sysfs::patch_names(&rt.env);
    let file = File::open(&module.path).at(&module.path)?;
    if let Err(e) = write_marker(&rt.env, &name, &module.path) {
        rt.say(format!(
            "warning: cannot write the interrupted-load marker ({e}); a crash during this load would go unnoticed at boot"
        ));
    }
    rt.say(format!("loading patch module: {}", module.path.display()));
    let params = with_force_param(rt, module, params);
    let mut klog = rt.kernel.kernel_log();
    if let Err(e) = rt.kernel.load_module(&file, &name, &params) {
        forget_marker(rt, &name);
        let said = klog
            .as_mut()
            .map(|l| kmsg::relevant(&l.new_messages(), &name))
            .unwrap_or_default();
        let reason = match kmsg::refusal_from_log(&said) {
            Some(why) => format!("{why} ({e})"),
            None => load_error_reason(&e),
        };
        for m in &said {
            rt.say(format!("kernel: {m}"));
        }
        return Err(Error::LoadRefused { name, reason });
    }

    if sysfs::read_patch(&rt.env, &name).is_none() && sysfs::transition_patch(&rt.env).is_none() {
        // Loaded, but it did not register a patch: not a working live patch.
        let removed = unload::remove_module(rt, &name, true);
        forget_marker(rt, &name);
        removed?;
        return Err(Error::LoadRefused {
            name: name.clone(),
            reason: format!(
                "the module loaded but registered no patch in {}; unloaded it",
                rt.env.livepatch_dir().display()
            ),
        });
    }

    match transition::complete(rt, &name, 1) {
        Outcome::Finished(_) => {
            forget_marker(rt, &name);
            unload_replaced(rt, &before, &name);
            Ok(())
        }
        Outcome::Stalled(blocked) => {
            transition::report_blocked(rt, &blocked);
            let secs = (rt.env.timeouts.enable_wait + rt.env.timeouts.signal_wait).as_secs();
            let outcome = roll_back(rt, &name)?;
            Err(Error::Stalled {
                name,
                what: "patching",
                secs,
                tasks: blocked.len(),
                outcome,
            })
        }
    }
}

/// Reverses a stalled patching transition and unloads the module. Returns
/// what happened, for the error line.
fn roll_back(rt: &mut Runtime<'_>, name: &str) -> Result<String> {
    rt.say(format!("reversing the transition of {name}..."));
    let enabled = rt.env.patch_dir(name).join("enabled");
    rt.kernel.write_attr(&enabled, "0").at(&enabled)?;
    match transition::complete(rt, name, 0) {
        Outcome::Finished(_) => {}
        Outcome::Stalled(blocked) => {
            transition::report_blocked(rt, &blocked);
            // The marker stays: the kernel is not as it was before.
            return Ok(format!(
                "the reverse transition stalled too ({} task(s)); the patch is still partly applied",
                blocked.len()
            ));
        }
    }
    unload::wait_gone(rt, name);
    unload::remove_module(rt, name, false)?;
    forget_marker(rt, name);
    Ok("rolled back and unloaded: the kernel is as it was".into())
}

/// The build-ids the module records against the running ones: a mismatch refuses the
/// load (unless forced); a module that is not loaded yet is named.
fn check_identity(rt: &mut Runtime<'_>, module: &ModuleFile) -> Result<()> {
    let checks = crate::identity::check(&rt.env, module);
    let mut differ = Vec::new();
    for c in &checks {
        match c.status {
            crate::identity::Status::Matches => {}
            crate::identity::Status::Differs => differ.push(format!(
                "{} build-id {} expected, {} running",
                c.object,
                c.expected,
                c.running.as_deref().unwrap_or("?")
            )),
            _ => rt.say(format!("note: {}", c.describe())),
        }
    }
    if differ.is_empty() {
        return Ok(());
    }
    if rt.env.checks.force_mismatch {
        rt.say(format!(
            "warning: --force-mismatch: loading {} although {}",
            module.name,
            differ.join("; ")
        ));
        return Ok(());
    }
    Err(Error::IdentityMismatch {
        name: module.name.clone(),
        what: differ.join("; "),
    })
}

/// With `--force-mismatch`, a module whose hook checks the build-ids of modules patched
/// later (its `force_mismatch` parameter) is told to patch them anyway.
fn with_force_param(rt: &Runtime<'_>, module: &ModuleFile, params: &str) -> String {
    let declared = module
        .modinfo
        .0
        .iter()
        .any(|(k, v)| k == "parmtype" && v.starts_with("force_mismatch:"));
    if rt.env.checks.force_mismatch && declared && !params.contains("force_mismatch=") {
        format!("{params} force_mismatch=1")
            .trim_start()
            .to_string()
    } else {
        params.to_string()
    }
}

/// After an atomic replace the replaced patches vanish from sysfs but their
/// modules stay loaded; unload them.
fn unload_replaced(rt: &mut Runtime<'_>, before: &[String], new: &str) {
    for old in before.iter().filter(|o| *o != new) {
        if sysfs::read_patch(&rt.env, old).is_none() && sysfs::module_loaded(&rt.env, old) {
            rt.say(format!("{new} replaced {old}; unloading {old}"));
            if let Err(e) = unload::remove_module(rt, old, true) {
                rt.say(format!("warning: {e}"));
            }
        }
    }
}

/// Before a patch that does not replace the others: name the functions
/// that loaded patches already patch and that this one patches too. The
/// patch loaded last wins, so the new one will.
pub fn report_overlaps(rt: &mut Runtime<'_>, module: &ModuleFile) {
    if module.replace_hint() == Some(true) {
        let others = sysfs::patch_names(&rt.env);
        if !others.is_empty() {
            rt.say(format!(
                "{} replaces all loaded patches ({})",
                module.name,
                others.join(", ")
            ));
        }
        return;
    }
    let mut lines = Vec::new();
    for patch in sysfs::read_patches(&rt.env) {
        for (obj, func) in patch.functions() {
            // vmlinux is named by a NULL object name, so only module objects
            // can be checked for.
            let obj_named = obj == "vmlinux" || module.strings.contains(obj);
            if module.strings.contains(&func.name) && obj_named {
                lines.push(format!(
                    "  {obj}:{},{} is patched by {}; {} will win",
                    func.name, func.sympos, patch.name, module.name
                ));
            }
        }
    }
    if !lines.is_empty() {
        rt.say(format!(
            "{} patches functions that loaded patches already patch{}:",
            module.name,
            if module.replace_hint().is_none() {
                " (unless it is an atomic-replace patch, which supersedes them all)"
            } else {
                ""
            }
        ));
        for l in lines {
            rt.say(l);
        }
    }
}

/// Removes the interrupted-load marker; failing to is only a warning (the
/// kernel change it guarded is already done or undone).
fn forget_marker(rt: &mut Runtime<'_>, name: &str) {
    let release = rt.env.kernel_release.clone();
    if let Err(e) = clear_marker(&rt.env, &release, name) {
        rt.say(format!(
            "warning: cannot remove the interrupted-load marker: {e}"
        ));
    }
}
