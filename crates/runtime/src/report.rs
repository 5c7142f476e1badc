// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch list` and `kpatch info`: what is loaded, what is installed, which
//! patch wins for each patched function. Each report is a serialisable
//! value (`--json`) with a text rendering close to upstream kpatch's.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::env::{normalize_name, Env};
use crate::error::{Error, Result};
use crate::install::{self, Installed};
use crate::modinfo::{ModInfo, ModuleFile};
use crate::sysfs::{self, PatchState};
use crate::tasks::{self, BlockedTask};

/// One patched function and the patch whose version runs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ActiveFunction {
    pub object: String,
    pub function: String,
    pub sympos: u64,
    /// The patch at the top of this function's stack.
    pub module: String,
    /// Patches below it, bottom first.
    pub overridden: Vec<String>,
    pub transition: bool,
}

/// `kpatch list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    pub kernel_release: String,
    /// False when `/sys/kernel/livepatch` does not exist.
    pub livepatch_supported: bool,
    /// Bottom of the stack first.
    pub loaded: Vec<PatchState>,
    pub blocked_tasks: Vec<BlockedTask>,
    pub installed: Vec<Installed>,
    pub functions: Vec<ActiveFunction>,
}

/// Builds the `list` report.
pub fn list(env: &Env) -> ListReport {
    let loaded = sysfs::read_patches(env);
    let blocked_tasks = loaded
        .iter()
        .find(|p| p.transition)
        .map(|p| tasks::blocked_tasks(env, p, i32::from(p.enabled)))
        .unwrap_or_default();
    let mut functions: Vec<ActiveFunction> = Vec::new();
    for patch in &loaded {
        for (obj, f) in patch.functions() {
            match functions
                .iter_mut()
                .find(|a| a.object == obj && a.function == f.name && a.sympos == f.sympos)
            {
                Some(a) => {
                    let below = std::mem::replace(&mut a.module, patch.name.clone());
                    a.overridden.push(below);
                    a.transition = patch.transition;
                }
                None => functions.push(ActiveFunction {
                    object: obj.to_string(),
                    function: f.name.clone(),
                    sympos: f.sympos,
                    module: patch.name.clone(),
                    overridden: Vec::new(),
                    transition: patch.transition,
                }),
            }
        }
    }
    ListReport {
        kernel_release: env.kernel_release.clone(),
        livepatch_supported: env.livepatch_dir().is_dir(),
        loaded,
        blocked_tasks,
        installed: install::installed(env, None),
        functions,
    }
}

impl ListReport {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        s.push_str("Loaded patch modules:\n");
        if !self.livepatch_supported {
            s.push_str("(this kernel has no /sys/kernel/livepatch)\n");
        }
        for p in &self.loaded {
            let _ = writeln!(s, "{} [{}]", p.name, p.state);
        }
        if !self.blocked_tasks.is_empty() {
            s.push_str("\nStalled processes:\n");
            for t in &self.blocked_tasks {
                let _ = writeln!(s, "{}", t.summary());
                for frame in &t.stack {
                    let _ = writeln!(s, "    {frame}");
                }
            }
        }
        s.push_str("\nInstalled patch modules:\n");
        for i in &self.installed {
            let _ = write!(s, "{} ({})", i.name, i.kernel_release);
            if i.interrupted.is_some() {
                s.push_str(" [interrupted load: skipped at boot until reinstalled]");
            }
            s.push('\n');
        }
        if !self.functions.is_empty() {
            s.push_str("\nCurrently livepatched functions:\n");
            let rows: Vec<[String; 3]> = std::iter::once([
                "Module".to_string(),
                "Object".to_string(),
                "Function/Occurrence".to_string(),
            ])
            .chain(self.functions.iter().map(|f| {
                let mut func = format!("{},{}", f.function, f.sympos);
                if f.transition {
                    func.push_str(" (transition)");
                }
                if !f.overridden.is_empty() {
                    let _ = write!(func, " (overrides {})", f.overridden.join(", "));
                }
                [f.module.clone(), f.object.clone(), func]
            }))
            .collect();
            let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
            let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
            for r in rows {
                let _ = writeln!(s, "{:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]);
            }
        }
        s
    }
}

/// `kpatch info`.
#[derive(Debug, Clone, Serialize)]
pub struct InfoReport {
    pub name: String,
    pub file: Option<PathBuf>,
    /// Fields of `.modinfo`, in file order (empty if no file was found).
    pub modinfo: ModInfo,
    /// The patch's sysfs state if it is loaded, with the functions it patches.
    pub loaded: Option<PatchState>,
    /// The build-ids the module was built against, and the running ones.
    pub identity: Vec<crate::identity::Check>,
}

/// Builds the `info` report for a file path, an installed module or a
/// loaded patch.
pub fn info(env: &Env, spec: &str) -> Result<InfoReport> {
    let path = Path::new(spec);
    let file = if path.is_file() {
        Some(path.to_path_buf())
    } else {
        install::find_installed(env, &env.kernel_release, spec).map(|i| i.file)
    };
    let module = file.as_deref().map(ModuleFile::read).transpose()?;
    if let (Some(m), Some(f)) = (&module, &file) {
        if !m.modinfo.is_livepatch() {
            return Err(Error::NotLivepatch(f.clone()));
        }
    }
    let name = module
        .as_ref()
        .map_or_else(|| normalize_name(spec), |m| m.name.clone());
    let loaded = sysfs::read_patch(env, &name);
    if module.is_none() && loaded.is_none() {
        return Err(Error::NotFound {
            spec: spec.to_string(),
            release: env.kernel_release.clone(),
        });
    }
    let identity = module
        .as_ref()
        .map(|m| crate::identity::check(env, m))
        .unwrap_or_default();
    Ok(InfoReport {
        name,
        file,
        modinfo: module.map(|m| m.modinfo).unwrap_or_default(),
        loaded,
        identity,
    })
}

impl InfoReport {
    pub fn to_text(&self) -> String {
        let mut s = format!("Patch information for {}:\n", self.name);
        if let Some(f) = &self.file {
            let _ = writeln!(s, "{:<16}{}", "filename:", f.display());
        }
        for (k, v) in &self.modinfo.0 {
            let _ = writeln!(s, "{:<16}{v}", format!("{k}:"));
        }
        if !self.identity.is_empty() {
            s.push_str("\nBuilt against:\n");
            for c in &self.identity {
                let _ = writeln!(s, "  {}", c.describe());
            }
        }
        match &self.loaded {
            None => s.push_str("\nNot loaded.\n"),
            Some(p) => {
                let _ = writeln!(s, "\nLoaded [{}]", p.state);
                s.push_str("Patched functions:\n");
                for (obj, f) in p.functions() {
                    let _ = writeln!(s, "  {obj}: {},{}", f.name, f.sympos);
                }
            }
        }
        s
    }
}
