//! The place of a source file the patch adds. Kbuild cannot be asked about it (the tree
//! is not patched yet when units are resolved), so the directory's Makefile *as the patch
//! leaves it* is read for the lines that name the new object: `obj-y`/`obj-m`/
//! `obj-$(CONFIG_X)` and composite members (`<comp>-y`, `<comp>-objs`, `<comp>-$(CONFIG_X)`),
//! continuation lines joined, conditionals ignored. This reading is used for new files
//! only; every existing source is placed by the -dbg index or by Kbuild.

use std::collections::HashMap;
use std::path::Path;

use super::{read_config, Parent, Unit};
use crate::error::Result;

/// The kbuild view of one directory: which objects are modules, and module membership.
#[derive(Default, Debug)]
struct DirMakefile {
    /// Object -> enabled as `y` or `m` (or unconditional).
    objs: Vec<(String, char)>,
    /// Composite object -> member objects.
    composite: HashMap<String, Vec<String>>,
}

fn config_value(config: &HashMap<String, String>, var: &str) -> Option<char> {
    match config.get(var).map(String::as_str) {
        Some("y") => Some('y'),
        Some("m") => Some('m'),
        _ => None,
    }
}

/// Parse the assignments of a kbuild Makefile that matter here (continuation lines
/// joined; conditionals ignored, so both branches count).
fn parse_makefile(text: &str, config: &HashMap<String, String>) -> DirMakefile {
    let mut mk = DirMakefile::default();
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((lhs, rhs)) = line
            .split_once("+=")
            .or_else(|| line.split_once(":="))
            .or_else(|| line.split_once('='))
        else {
            continue;
        };
        let lhs = lhs.trim().trim_end_matches(':');
        let words: Vec<String> = rhs
            .split_whitespace()
            .filter(|w| w.ends_with(".o"))
            .map(str::to_string)
            .collect();
        if words.is_empty() {
            continue;
        }
        // obj-y, obj-m, obj-$(CONFIG_X)
        if let Some(kind) = lhs.strip_prefix("obj-") {
            let state = match kind {
                "y" => Some('y'),
                "m" => Some('m'),
                k => k
                    .strip_prefix("$(")
                    .and_then(|v| v.strip_suffix(')'))
                    .and_then(|v| config_value(config, v)),
            };
            if let Some(s) = state {
                for w in words {
                    mk.objs.push((w, s));
                }
            }
            continue;
        }
        // <composite>-y, <composite>-objs, <composite>-$(CONFIG_X)
        for suffix in ["-y", "-objs", "-m"] {
            if let Some(name) = lhs.strip_suffix(suffix) {
                mk.composite
                    .entry(format!("{name}.o"))
                    .or_default()
                    .extend(words.clone());
            }
        }
        if let Some((name, cond)) = lhs.split_once("-$(") {
            if cond
                .strip_suffix(')')
                .and_then(|v| config_value(config, v))
                .is_some()
            {
                mk.composite
                    .entry(format!("{name}.o"))
                    .or_default()
                    .extend(words);
            }
        }
    }
    mk
}

/// Read `CONFIG_*` values from a .config.
/// `fs/proc/meminfo.c` → `meminfo.o`.
fn object_name(source: &Path) -> String {
    format!(
        "{}.o",
        source
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    )
}

/// The Makefile (`Kbuild` first) of a source file's directory, parsed.
impl DirMakefile {
    /// Is `obj` built into vmlinux (`obj-y`, or a member of a composite object that is)?
    fn builtin(&self, obj: &str) -> bool {
        let builtin = |o: &str| self.objs.iter().any(|(x, s)| x == o && *s == 'y');
        builtin(obj)
            || self
                .composite
                .iter()
                .any(|(comp, members)| members.iter().any(|m| m == obj) && builtin(comp))
    }

    /// The module `obj` of directory `dir` is built into: its name and `.ko` path.
    fn module(&self, obj: &str, dir: &Path) -> Option<(String, String)> {
        let module_for = |o: &str| {
            self.objs
                .iter()
                .find(|(x, s)| x == o && *s == 'm')
                .map(|(x, _)| x.clone())
        };
        let m = module_for(obj).or_else(|| {
            self.composite
                .iter()
                .filter(|(_, members)| members.iter().any(|m| m == obj))
                .find_map(|(comp, _)| module_for(comp))
        })?;
        let stem = m.trim_end_matches(".o").to_string();
        let ko = format!("kernel/{}/{stem}.ko", dir.display());
        Some((stem.replace('-', "_"), ko))
    }
}

/// Is a source file built into vmlinux, by its directory's Makefile? Used when no debug
/// The unit of a source file the patch adds, built by its directory's Makefile as the
/// patch changes it (`makefile`, that Makefile's new text); `None` when that Makefile
/// does not build it in this configuration.
pub fn new_unit(source: &Path, makefile: &str, config_path: &Path) -> Result<Option<Unit>> {
    let config = read_config(config_path)?;
    let mk = parse_makefile(makefile, &config);
    let obj = object_name(source);
    let dir = source.parent().unwrap_or(Path::new(""));
    let parent = if mk.builtin(&obj) {
        Parent::Vmlinux
    } else if let Some((name, ko)) = mk.module(&obj, dir) {
        Parent::Module { name, ko }
    } else {
        return Ok(None);
    };
    Ok(Some(Unit {
        source: source.to_path_buf(),
        object: source.with_extension("o"),
        parent,
        unpatchable: None,
        new: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn makefile_modules() {
        let config: HashMap<String, String> = [("CONFIG_FOO", "m"), ("CONFIG_BAR", "y")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mk = parse_makefile(
            "obj-$(CONFIG_FOO) += foo.o\nfoo-y := a.o \\\n  b.o\nobj-$(CONFIG_BAR) += bar.o\nobj-$(CONFIG_NO) += no.o\n",
            &config,
        );
        assert!(mk.objs.contains(&("foo.o".into(), 'm')));
        assert!(mk.objs.contains(&("bar.o".into(), 'y')));
        assert!(!mk.objs.iter().any(|(o, _)| o == "no.o"));
        assert_eq!(
            mk.composite["foo.o"],
            vec!["a.o".to_string(), "b.o".to_string()]
        );
    }

    #[test]
    fn new_units_from_the_patched_makefile() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join(".config");
        std::fs::write(&cfg, "CONFIG_FOO=m\nCONFIG_PROC_FS=y\n").unwrap();
        let mk = "obj-y += proc.o\nproc-y += inode.o\nproc-y += new.o\nobj-$(CONFIG_FOO) += foo.o\nfoo-y := a.o b.o\n";
        let u = new_unit(Path::new("fs/proc/new.c"), mk, &cfg)
            .unwrap()
            .unwrap();
        assert_eq!((u.parent, u.new), (Parent::Vmlinux, true));
        assert_eq!(u.object, PathBuf::from("fs/proc/new.o"));
        let u = new_unit(Path::new("fs/proc/b.c"), mk, &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(
            u.parent,
            Parent::Module {
                name: "foo".into(),
                ko: "kernel/fs/proc/foo.ko".into()
            }
        );
        assert_eq!(
            new_unit(Path::new("fs/proc/other.c"), mk, &cfg).unwrap(),
            None
        );
    }
}
