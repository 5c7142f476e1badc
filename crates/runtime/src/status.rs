// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch status`: what an operator or a monitor needs to know in one look.
//!
//! - the *effective kernel version*: the running release plus the live patches applied
//!   to it (`6.1.0-57-amd64+meminfo+cve-2026-1234`), as Ksplice's `uptrack-uname` shows
//!   the version a patched kernel is equivalent to;
//! - each patch's [`State`], from the patches loaded (`/sys/kernel/livepatch`) and those
//!   installed for the running kernel (`/var/lib/kpatch/<release>`);
//! - an overall [`Health`] whose number is the exit code, in the convention of Nagios
//!   plugins (which Icinga, check_mk, Zabbix and Sensu also read):
//!
//! | exit | health | when |
//! |---|---|---|
//! | 0 | ok | every patch installed for the running kernel is loaded and enabled (or none is installed) |
//! | 1 | warning | a transition is in progress, or a patch is loaded but not installed (it will not come back after a reboot), or disabled |
//! | 2 | critical | an installed patch is not loaded: never loaded, skipped after an interrupted boot-time load, or refused |
//! | 3 | unknown | the state cannot be read (no `/sys/kernel/livepatch`) |
//!
//! [`StatusReport::to_prometheus`] renders the same as node_exporter's textfile format.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::env::{normalize_name, Env};
use crate::install::{self, Installed};
use crate::modinfo::ModuleFile;
use crate::signature::Policy;
use crate::sysfs::{self, PatchState};

/// One patch's state.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Loaded, enabled, transition finished: the running kernel uses it.
    Loaded,
    /// Loaded and in a patching or unpatching transition.
    Transition,
    /// Loaded but disabled (its module is still in memory).
    Disabled,
    /// Installed for the running kernel but not loaded.
    InstalledNotLoaded,
    /// Installed, but its last load (at boot) never finished: `kpatch load --all` skips
    /// it until it is installed again.
    SkippedInterrupted,
}

impl State {
    /// Every state, in the order metrics list them.
    pub const ALL: [State; 5] = [
        State::Loaded,
        State::Transition,
        State::Disabled,
        State::InstalledNotLoaded,
        State::SkippedInterrupted,
    ];

    /// The name used in text, JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Loaded => "loaded",
            State::Transition => "transition",
            State::Disabled => "disabled",
            State::InstalledNotLoaded => "installed-not-loaded",
            State::SkippedInterrupted => "skipped-interrupted",
        }
    }
}

/// Overall health; its number is `kpatch status`'s exit code.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Exit 0.
    Ok = 0,
    /// Exit 1.
    Warning = 1,
    /// Exit 2.
    Critical = 2,
    /// Exit 3.
    Unknown = 3,
}

impl Health {
    /// The exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One patch in the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PatchStatus {
    /// The module name (`livepatch_meminfo`).
    pub name: String,
    pub state: State,
    /// The installed file for the running kernel, if it is installed.
    pub installed: Option<PathBuf>,
    /// Whether the installed file is signed (`None` when not installed or unreadable).
    pub signed: Option<bool>,
    /// Functions it patches now (0 when not loaded).
    pub functions: usize,
    /// What an operator should know or do, if anything.
    pub note: Option<String>,
}

/// The whole report (`kpatch status --json`).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// `uname -r`.
    pub kernel_release: String,
    /// The release plus the loaded patches' names.
    pub effective_version: String,
    /// Whether `/sys/kernel/livepatch` exists.
    pub livepatch_supported: bool,
    /// Module signature requirements of the running kernel.
    pub signatures: Policy,
    pub patches: Vec<PatchStatus>,
    pub health: Health,
    /// `health` as a number: the exit code.
    pub exit_code: u8,
}

/// A patch's short name: the module name without `livepatch_`, with dashes.
fn short_name(module: &str) -> String {
    module
        .strip_prefix("livepatch_")
        .unwrap_or(module)
        .replace('_', "-")
}

fn loaded_state(p: &PatchState) -> State {
    match (p.enabled, p.transition) {
        (_, true) => State::Transition,
        (true, false) => State::Loaded,
        (false, false) => State::Disabled,
    }
}

/// Builds the report for the running kernel.
pub fn status(env: &Env) -> StatusReport {
    let livepatch_supported = env.livepatch_dir().is_dir();
    let loaded = sysfs::read_patches(env);
    let installed = install::installed(env, Some(&env.kernel_release));
    let mut patches = Vec::new();
    for p in &loaded {
        let inst = installed.iter().find(|i| i.name == p.name);
        patches.push(PatchStatus {
            name: p.name.clone(),
            state: loaded_state(p),
            installed: inst.map(|i| i.file.clone()),
            signed: inst.and_then(signed),
            functions: p.functions().count(),
            note: match (inst, loaded_state(p)) {
                (_, State::Transition) => Some(format!(
                    "{} in progress; `kpatch list` names the tasks that block it",
                    if p.enabled { "patching" } else { "unpatching" }
                )),
                (_, State::Disabled) => Some("disabled; `kpatch unload` removes it".into()),
                (None, _) => Some(
                    "loaded but not installed: it will not be loaded after a reboot \
                     (`kpatch install` it)"
                        .into(),
                ),
                _ => None,
            },
        });
    }
    for i in &installed {
        if loaded.iter().any(|p| p.name == i.name) {
            continue;
        }
        let (state, note) = match &i.interrupted {
            Some(mark) => (
                State::SkippedInterrupted,
                format!(
                    "its last load never finished ({mark}); skipped at boot until \
                     `kpatch install {}` again",
                    i.file.display()
                ),
            ),
            None => (
                State::InstalledNotLoaded,
                format!(
                    "installed but not loaded: `kpatch load {}` (its error says why it \
                     did not load)",
                    i.name
                ),
            ),
        };
        patches.push(PatchStatus {
            name: i.name.clone(),
            state,
            installed: Some(i.file.clone()),
            signed: signed(i),
            functions: 0,
            note: Some(note),
        });
    }
    let effective = std::iter::once(env.kernel_release.clone())
        .chain(
            loaded
                .iter()
                .filter(|p| p.enabled && !p.transition)
                .map(|p| short_name(&p.name)),
        )
        .collect::<Vec<_>>()
        .join("+");
    let health = health(livepatch_supported, &patches);
    StatusReport {
        kernel_release: env.kernel_release.clone(),
        effective_version: effective,
        livepatch_supported,
        signatures: Policy::read(env),
        patches,
        health,
        exit_code: health.code(),
    }
}

fn signed(i: &Installed) -> Option<bool> {
    ModuleFile::read(&i.file).ok().map(|m| m.signed)
}

fn health(supported: bool, patches: &[PatchStatus]) -> Health {
    if !supported {
        return Health::Unknown;
    }
    patches
        .iter()
        .map(|p| match p.state {
            State::Loaded if p.installed.is_some() => Health::Ok,
            State::Loaded | State::Transition | State::Disabled => Health::Warning,
            State::InstalledNotLoaded | State::SkippedInterrupted => Health::Critical,
        })
        .max()
        .unwrap_or(Health::Ok)
}

impl StatusReport {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "kernel: {}\neffective: {}\n",
            self.kernel_release, self.effective_version
        );
        if !self.livepatch_supported {
            s.push_str("this kernel has no /sys/kernel/livepatch: no live patch can load\n");
        }
        if self.signatures.requires_signature() {
            let _ = writeln!(s, "signatures: required ({})", self.signatures.reason());
        }
        if self.patches.is_empty() {
            s.push_str("patches: none\n");
        } else {
            s.push_str("patches:\n");
            let w = self.patches.iter().map(|p| p.name.len()).max().unwrap_or(0);
            for p in &self.patches {
                let _ = write!(s, "  {:<w$}  {}", p.name, p.state.as_str());
                if p.functions > 0 {
                    let _ = write!(s, " ({} function(s))", p.functions);
                }
                if p.signed == Some(false) {
                    s.push_str(" [unsigned]");
                }
                s.push('\n');
                if let Some(n) = &p.note {
                    let _ = writeln!(s, "  {:<w$}  {n}", "");
                }
            }
        }
        let _ = writeln!(
            s,
            "status: {} (exit {})",
            serde_json::to_value(self.health)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            self.exit_code
        );
        s
    }

    /// node_exporter's textfile format (Prometheus text exposition format 0.0.4).
    pub fn to_prometheus(&self, now_secs: u64) -> String {
        let mut s = String::new();
        let metric = |s: &mut String, name: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        metric(
            &mut s,
            "kpatch_status",
            "Health of the live patches: 0 ok, 1 warning, 2 critical, 3 unknown (the exit code of kpatch status).",
        );
        let _ = writeln!(s, "kpatch_status {}", self.exit_code);
        metric(
            &mut s,
            "kpatch_kernel_info",
            "The running kernel release and its effective version with the loaded live patches.",
        );
        let _ = writeln!(
            s,
            "kpatch_kernel_info{{release=\"{}\",effective=\"{}\"}} 1",
            escape(&self.kernel_release),
            escape(&self.effective_version)
        );
        metric(
            &mut s,
            "kpatch_patch_state",
            "State of each live patch known for the running kernel (1 for its current state).",
        );
        for p in &self.patches {
            for st in State::ALL {
                let _ = writeln!(
                    s,
                    "kpatch_patch_state{{patch=\"{}\",state=\"{}\"}} {}",
                    escape(&p.name),
                    st.as_str(),
                    u8::from(p.state == st)
                );
            }
        }
        metric(
            &mut s,
            "kpatch_patches",
            "Number of live patches in each state.",
        );
        for st in State::ALL {
            let n = self.patches.iter().filter(|p| p.state == st).count();
            let _ = writeln!(s, "kpatch_patches{{state=\"{}\"}} {n}", st.as_str());
        }
        metric(
            &mut s,
            "kpatch_signatures_required",
            "1 when the kernel loads only signed modules (lockdown or module.sig_enforce).",
        );
        let _ = writeln!(
            s,
            "kpatch_signatures_required {}",
            u8::from(self.signatures.requires_signature())
        );
        metric(
            &mut s,
            "kpatch_status_timestamp_seconds",
            "When kpatch status wrote this file (Unix time).",
        );
        let _ = writeln!(s, "kpatch_status_timestamp_seconds {now_secs}");
        s
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The status of a named patch, for scripts: `None` when neither loaded nor installed.
pub fn patch_state(report: &StatusReport, spec: &str) -> Option<State> {
    let name = normalize_name(spec);
    report
        .patches
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_and_escaping() {
        assert_eq!(short_name("livepatch_cve_2026_1"), "cve-2026-1");
        assert_eq!(short_name("test_klp_livepatch"), "test-klp-livepatch");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn health_is_the_worst_patch() {
        let p = |state, installed: bool| PatchStatus {
            name: "x".into(),
            state,
            installed: installed.then(|| PathBuf::from("/x.ko")),
            signed: None,
            functions: 0,
            note: None,
        };
        assert_eq!(health(true, &[]), Health::Ok);
        assert_eq!(health(false, &[]), Health::Unknown);
        assert_eq!(health(true, &[p(State::Loaded, true)]), Health::Ok);
        assert_eq!(health(true, &[p(State::Loaded, false)]), Health::Warning);
        assert_eq!(
            health(
                true,
                &[p(State::Loaded, true), p(State::SkippedInterrupted, true)]
            ),
            Health::Critical
        );
        assert_eq!(Health::Critical.code(), 2);
    }
}
