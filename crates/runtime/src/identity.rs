// SPDX-License-Identifier: GPL-2.0-only
//! Load-time identity: a module built by kpatch-build records the GNU build-id of each
//! object it patches (`kpatch_build_id=<object>:<hex>` in its modinfo): vmlinux's, and
//! each patched module's. The running kernel shows its own in `/sys/kernel/notes`, a
//! loaded module in `/sys/module/<name>/notes/.note.gnu.build-id`. A release string
//! (`vermagic`) names a kernel version; a build-id names one build of it.

use serde::Serialize;

use crate::env::Env;
use crate::modinfo::ModuleFile;

/// The modinfo key.
pub const KEY: &str = "kpatch_build_id";

/// What an object's check found.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The running object is the build the patch was made for.
    Matches,
    /// Another build.
    Differs,
    /// A module that is not loaded: checked when it is (`kpatch verify`).
    NotLoaded,
    /// The running object's build-id cannot be read.
    Unknown,
}

/// One patched object's identity.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub object: String,
    /// The build-id the module was built against.
    pub expected: String,
    /// The running object's, when known.
    pub running: Option<String>,
    pub status: Status,
    /// Why `running` is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Check {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self.status {
            Status::Matches => format!("{} build-id {}: matches the running one", self.object, self.expected),
            Status::Differs => format!(
                "{} build-id {} expected, the running one is {}",
                self.object,
                self.expected,
                self.running.as_deref().unwrap_or("?")
            ),
            Status::NotLoaded => format!(
                "{} build-id {}: {} is not loaded, so it cannot be checked now; `kpatch verify` checks it once it is",
                self.object, self.expected, self.object
            ),
            Status::Unknown => format!(
                "{} build-id {}: the running one cannot be read ({})",
                self.object,
                self.expected,
                self.note.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

/// The build-ids `module` records, `(object, hex)`, vmlinux first as recorded.
pub fn expected(module: &ModuleFile) -> Vec<(String, String)> {
    module
        .modinfo
        .0
        .iter()
        .filter(|(k, _)| k == KEY)
        .filter_map(|(_, v)| v.rsplit_once(':'))
        .map(|(o, id)| (o.to_string(), id.trim().to_ascii_lowercase()))
        .collect()
}

/// Compares each recorded build-id with the running system's.
pub fn check(env: &Env, module: &ModuleFile) -> Vec<Check> {
    expected(module)
        .into_iter()
        .map(|(object, expected)| {
            let found = if object == "vmlinux" {
                verify::buildid::running_kernel(&env.sys).map(Some)
            } else if !env.module_dir(&object).exists() {
                Ok(None)
            } else {
                verify::buildid::loaded_module(&env.sys, &object).map(Some)
            };
            let (running, status, note) = match found {
                Ok(None) => (None, Status::NotLoaded, None),
                Ok(Some(None)) => (None, Status::Unknown, Some("no build-id note".into())),
                Ok(Some(Some(id))) if id == expected => (Some(id), Status::Matches, None),
                Ok(Some(Some(id))) => (Some(id), Status::Differs, None),
                Err(e) => (None, Status::Unknown, Some(e.to_string())),
            };
            Check {
                object,
                expected,
                running,
                status,
                note,
            }
        })
        .collect()
}
