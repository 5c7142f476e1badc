// SPDX-License-Identifier: GPL-2.0-only
//! Reading a kernel module file (`.ko`): its `.modinfo` fields, its name as
//! the kernel will know it, and the strings it carries (used to guess which
//! functions it patches before it is loaded).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, SectionKind};
use serde::Serialize;

use crate::env::normalize_name;
use crate::error::{Error, IoContext, Result};

/// Offset of `name` in `struct module` on 64-bit kernels: after the state
/// enum (padded to 8 bytes) and the `list_head`.
const THIS_MODULE_NAME_OFFSET: usize = 24;
/// `MODULE_NAME_LEN` on 64-bit kernels.
const MODULE_NAME_LEN: usize = 56;

/// `.modinfo` in file order; keys may repeat (`depends`, `alias`, ...).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ModInfo(pub Vec<(String, String)>);

impl ModInfo {
    /// Parses the NUL-separated `key=value` records of a `.modinfo` section.
    pub fn parse(data: &[u8]) -> Self {
        let fields = data
            .split(|&b| b == 0)
            .filter(|rec| !rec.is_empty())
            .filter_map(|rec| {
                let rec = String::from_utf8_lossy(rec);
                let (k, v) = rec.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect();
        ModInfo(fields)
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the module declares itself a live patch.
    pub fn is_livepatch(&self) -> bool {
        matches!(self.get("livepatch"), Some(v) if v.eq_ignore_ascii_case("y"))
    }

    /// The kernel release in `vermagic` (its first word).
    pub fn vermagic_release(&self) -> Option<&str> {
        self.get("vermagic")?.split_whitespace().next()
    }
}

/// What the tool needs to know about a module file.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    pub path: PathBuf,
    /// The name the kernel gives the module (`/sys/module/<name>`).
    pub name: String,
    pub modinfo: ModInfo,
    /// Identifier-like strings from the module's read-only data. The
    /// `old_name` of every function the module patches is among them.
    pub strings: BTreeSet<String>,
    /// Whether the file carries an appended signature (`sign-file`).
    pub signed: bool,
}

impl ModuleFile {
    /// Reads and parses a module file.
    pub fn read(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).at(path)?;
        Self::parse(path, &data)
    }

    /// Parses module bytes; `path` is only used in messages and as a last
    /// resort for the module name.
    pub fn parse(path: &Path, data: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::BadModule {
            path: path.to_path_buf(),
            reason,
        };
        let file =
            object::File::parse(data).map_err(|e| bad(format!("not an ELF module ({e})")))?;
        let section = file
            .section_by_name(".modinfo")
            .ok_or_else(|| bad("no .modinfo section: not a kernel module".into()))?;
        let raw = section
            .data()
            .map_err(|e| bad(format!("unreadable .modinfo section ({e})")))?;
        let modinfo = ModInfo::parse(raw);

        let name = modinfo
            .get("name")
            .map(str::to_string)
            .or_else(|| this_module_name(&file))
            .unwrap_or_else(|| normalize_name(&path.to_string_lossy()));

        let mut strings = BTreeSet::new();
        for section in file.sections() {
            let wanted = matches!(
                section.kind(),
                SectionKind::ReadOnlyString | SectionKind::ReadOnlyData
            ) || section
                .name()
                .is_ok_and(|n| n.starts_with(".kpatch.strings"));
            if !wanted {
                continue;
            }
            if let Ok(bytes) = section.data() {
                strings.extend(
                    bytes
                        .split(|&b| b == 0)
                        .filter(|s| s.len() > 1 && s.iter().all(|&c| is_symbol_char(c)))
                        .map(|s| String::from_utf8_lossy(s).into_owned()),
                );
            }
        }

        Ok(ModuleFile {
            path: path.to_path_buf(),
            name,
            modinfo,
            strings,
            signed: crate::signature::is_signed(data),
        })
    }

    /// Checks that the module is a live patch built for `release`, saying
    /// exactly what does not match.
    pub fn check_for(&self, release: &str, wanted: &'static str) -> Result<()> {
        if !self.modinfo.is_livepatch() {
            return Err(Error::NotLivepatch(self.path.clone()));
        }
        match self.modinfo.vermagic_release() {
            Some(v) if v == release => Ok(()),
            Some(v) => Err(Error::WrongKernel {
                path: self.path.clone(),
                module: format!(
                    "'{v}' (vermagic '{}')",
                    self.modinfo.get("vermagic").unwrap_or("").trim()
                ),
                target: format!("'{release}'"),
                wanted,
            }),
            None => Err(Error::BadModule {
                path: self.path.clone(),
                reason: "no vermagic in modinfo: cannot tell which kernel it was built for".into(),
            }),
        }
    }

    /// Whether the module says it replaces all other patches. Modules from
    /// this project's kpatch-build carry `replace=Y` or `replace=N` (from
    /// `crates/klp/src/c/patch-hook.c`); for others it is unknown. (Once
    /// loaded, newer kernels show it in `/sys/kernel/livepatch/<p>/replace`:
    /// 6.12 has the attribute, 6.1 does not.)
    pub fn replace_hint(&self) -> Option<bool> {
        self.modinfo
            .get("replace")
            .map(|v| v.eq_ignore_ascii_case("y") || v == "1")
    }
}

fn is_symbol_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'$'
}

/// The module name stored in `struct module` in `.gnu.linkonce.this_module`
/// of the module bytes `data`, if it can be read.
pub fn module_struct_name(data: &[u8]) -> Option<String> {
    this_module_name(&object::File::parse(data).ok()?)
}

fn this_module_name(file: &object::File<'_>) -> Option<String> {
    let data = file
        .section_by_name(".gnu.linkonce.this_module")?
        .data()
        .ok()?;
    let field = data.get(THIS_MODULE_NAME_OFFSET..)?;
    let field = &field[..field.len().min(MODULE_NAME_LEN)];
    let end = field.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&field[..end]).ok()?;
    (!name.is_empty() && name.bytes().all(is_symbol_char)).then(|| name.to_string())
}
