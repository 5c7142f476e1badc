//! Which translation units a changed file affects, and where each is linked.
//!
//! - vmlinux's translation units come from the DWARF of the debug vmlinux: one compile
//!   unit per `.c` built into it, named relative to the tree. That is authoritative for
//!   this exact build and cached per release.
//! - Modules come from kbuild Makefiles: `obj-m`/`obj-$(CONFIG_X)` with `CONFIG_X=m`,
//!   and composite objects (`<mod>-y`, `<mod>-objs`, `<mod>-$(CONFIG_X)`).
//! - A `.c` that is `#include`d by another `.c` maps to the including unit; a header maps
//!   to every unit of this configuration that includes it, directly or through headers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{io, step, step_hint, Result};
use crate::kernel::Kernel;
use crate::pipeline::UnitResolver;

/// Where an object file ends up in the running kernel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Parent {
    /// Built into the kernel image.
    Vmlinux,
    /// A loadable module: its name as the kernel knows it (`-` turned into `_`) and the
    /// path of its `.ko` relative to `/lib/modules/<release>/`.
    Module {
        /// Its name (`-` as `_`).
        name: String,
        /// Its `.ko`, relative to `/lib/modules/<release>/`.
        ko: String,
    },
}

/// One translation unit to rebuild.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    /// Source file, relative to the kernel tree (e.g. `fs/proc/meminfo.c`).
    pub source: PathBuf,
    /// Object file kbuild builds for it, relative to the tree (e.g. `fs/proc/meminfo.o`).
    pub object: PathBuf,
    /// Where it is linked.
    pub parent: Parent,
    /// The patch adds its source: there is no original object (the original is built
    /// from an empty file).
    #[serde(default)]
    pub new: bool,
}

/// Compile units of a vmlinux (source paths relative to the tree).
pub fn vmlinux_units(vmlinux: &Path) -> Result<BTreeSet<String>> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(vmlinux).map_err(io(vmlinux))?;
    let file =
        object::File::parse(&*data).map_err(|e| step(format!("{}: {e}", vmlinux.display())))?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> std::result::Result<std::borrow::Cow<[u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or_default())
    };
    let sections =
        gimli::DwarfSections::load(load).map_err(|e: gimli::Error| step(format!("DWARF: {e}")))?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
    let mut out = BTreeSet::new();
    let mut headers = dwarf.units();
    while let Ok(Some(h)) = headers.next() {
        let Ok(unit) = dwarf.unit(h) else { continue };
        let Some(name) = unit.name else { continue };
        let name = name.to_string_lossy().into_owned();
        if name.ends_with(".c") {
            out.insert(name.trim_start_matches("./").to_string());
        }
    }
    if out.is_empty() {
        return Err(step_hint(
            format!("{} has no DWARF compile units", vmlinux.display()),
            "give a vmlinux with debug information (the -dbg package's)",
        ));
    }
    Ok(out)
}

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
pub fn read_config(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect())
}

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
fn dir_makefile(
    tree: &Path,
    source: &Path,
    config: &HashMap<String, String>,
) -> Result<Option<DirMakefile>> {
    let dir = source.parent().unwrap_or(Path::new(""));
    let Some(mkpath) = [
        tree.join(dir).join("Kbuild"),
        tree.join(dir).join("Makefile"),
    ]
    .into_iter()
    .find(|p| p.exists()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&mkpath).map_err(io(&mkpath))?;
    Ok(Some(parse_makefile(&text, config)))
}

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
/// vmlinux lists vmlinux's units.
fn builtin_by_makefile(
    tree: &Path,
    source: &Path,
    config: &HashMap<String, String>,
) -> Result<bool> {
    Ok(dir_makefile(tree, source, config)?.is_some_and(|mk| mk.builtin(&object_name(source))))
}

/// The module a source file is built into, from its directory's Makefile.
fn module_of(
    tree: &Path,
    source: &Path,
    config: &HashMap<String, String>,
) -> Result<Option<(String, String)>> {
    let dir = source.parent().unwrap_or(Path::new(""));
    Ok(dir_makefile(tree, source, config)?.and_then(|mk| mk.module(&object_name(source), dir)))
}

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
        new: true,
    }))
}

/// Directories searched for `#include <...>` on x86.
const INCLUDE_DIRS: &[&str] = &[
    "include",
    "arch/x86/include",
    "arch/x86/include/generated",
    "include/uapi",
    "arch/x86/include/uapi",
];

fn includes_of(text: &str) -> Vec<(bool, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix('#')?
                .trim_start()
                .strip_prefix("include")?
                .trim();
            if let Some(r) = rest.strip_prefix('"') {
                Some((true, r.split('"').next()?.to_string()))
            } else if let Some(r) = rest.strip_prefix('<') {
                Some((false, r.split('>').next()?.to_string()))
            } else {
                None
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with('.')
            || n == "Documentation"
            || n == "tools"
            || n == "scripts"
            || n == "samples"
        {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t) if t.is_file() && (n.ends_with(".c") || n.ends_with(".h")) => out.push(p),
            _ => {}
        }
    }
}

/// Resolves changed files to units for one kernel, with the vmlinux unit list cached
/// in the release's cache directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resolver;

impl Resolver {
    /// vmlinux's units from the debug vmlinux's DWARF (cached), or `None` without one:
    /// then the Makefiles decide.
    fn vmlinux_set(&self, k: &Kernel, vmlinux: Option<&Path>) -> Result<Option<BTreeSet<String>>> {
        let Some(vmlinux) = vmlinux else {
            return Ok(None);
        };
        let cached = k.root.join("vmlinux-units.json");
        if let Ok(text) = std::fs::read_to_string(&cached) {
            if let Ok(set) = serde_json::from_str(&text) {
                return Ok(Some(set));
            }
        }
        let set = vmlinux_units(vmlinux)?;
        let _ = std::fs::write(&cached, serde_json::to_string(&set).unwrap_or_default());
        Ok(Some(set))
    }

    fn unit_for_c(
        &self,
        tree: &Path,
        src: &Path,
        vm: Option<&BTreeSet<String>>,
        config: &HashMap<String, String>,
    ) -> Result<Option<Unit>> {
        let object = src.with_extension("o");
        let in_vmlinux = match vm {
            Some(set) => set.contains(&src.display().to_string()),
            None => {
                module_of(tree, src, config)?.is_none() && builtin_by_makefile(tree, src, config)?
            }
        };
        if in_vmlinux {
            return Ok(Some(Unit {
                source: src.to_path_buf(),
                object,
                parent: Parent::Vmlinux,
                new: false,
            }));
        }
        if let Some((name, ko)) = module_of(tree, src, config)? {
            return Ok(Some(Unit {
                source: src.to_path_buf(),
                object,
                parent: Parent::Module { name, ko },
                new: false,
            }));
        }
        Ok(None)
    }
}

impl UnitResolver for Resolver {
    fn units_for(&self, k: &Kernel, vmlinux: Option<&Path>, changed: &Path) -> Result<Vec<Unit>> {
        let tree = k.tree();
        let name = changed.display().to_string();
        let ext = changed
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ext == "S" {
            return Err(step_hint(
                format!("{name}: assembly files cannot be live-patched"),
                "assembly has no per-function sections or ftrace hooks to redirect; patch the C callers instead",
            ));
        }
        if name.starts_with("lib/") {
            return Err(step_hint(
                format!("{name}: code under lib/ is not supported"),
                "lib/ objects are archived into lib.a and linked wherever they are used (vmlinux and modules), \
                 so a change cannot be matched to one parent object safely",
            ));
        }
        let config = read_config(&k.config())?;
        let vm = self.vmlinux_set(k, vmlinux)?;
        match ext.as_str() {
            "c" => {
                if let Some(u) = self.unit_for_c(&tree, changed, vm.as_ref(), &config)? {
                    return Ok(vec![u]);
                }
                // A .c included by another .c of the same directory?
                let dir = changed.parent().unwrap_or(Path::new(""));
                let base = changed
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut units = Vec::new();
                if let Ok(rd) = std::fs::read_dir(tree.join(dir)) {
                    for e in rd.flatten() {
                        let p = e.path();
                        if p.extension().map(|x| x != "c").unwrap_or(true) {
                            continue;
                        }
                        let text = std::fs::read_to_string(&p).unwrap_or_default();
                        if includes_of(&text)
                            .iter()
                            .any(|(local, f)| *local && *f == base)
                        {
                            let rel = dir.join(e.file_name());
                            if let Some(u) = self.unit_for_c(&tree, &rel, vm.as_ref(), &config)? {
                                units.push(u);
                            }
                        }
                    }
                }
                if units.is_empty() {
                    return Err(step_hint(
                        format!("{name} is not built in this kernel configuration"),
                        "check the CONFIG option that enables it in its directory's Makefile",
                    ));
                }
                Ok(units)
            }
            "h" => self.units_including(&tree, changed, vm.as_ref(), &config),
            _ => Err(step(format!("{name}: only .c and .h files can be patched"))),
        }
    }
}

impl Resolver {
    /// Every configured unit that includes `header`, directly or through other headers.
    fn units_including(
        &self,
        tree: &Path,
        header: &Path,
        vm: Option<&BTreeSet<String>>,
        config: &HashMap<String, String>,
    ) -> Result<Vec<Unit>> {
        let mut files = Vec::new();
        walk(tree, &mut files);
        // file -> the files it includes (resolved, tree-relative)
        let mut included_by: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
        for f in &files {
            let Ok(text) = std::fs::read_to_string(f) else {
                continue;
            };
            let rel = f.strip_prefix(tree).unwrap_or(f).to_path_buf();
            let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            for (local, inc) in includes_of(&text) {
                let mut targets = Vec::new();
                if local {
                    targets.push(dir.join(&inc));
                }
                for d in INCLUDE_DIRS {
                    targets.push(Path::new(d).join(&inc));
                }
                if let Some(t) = targets.into_iter().find(|t| tree.join(t).exists()) {
                    included_by
                        .entry(normalize(&t))
                        .or_default()
                        .push(rel.clone());
                }
            }
        }
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let mut work = vec![normalize(header)];
        let mut units = Vec::new();
        while let Some(h) = work.pop() {
            for f in included_by.get(&h).cloned().unwrap_or_default() {
                if !seen.insert(f.clone()) {
                    continue;
                }
                if f.extension().map(|e| e == "c").unwrap_or(false) {
                    if f.starts_with("lib") {
                        continue;
                    }
                    if let Some(u) = self.unit_for_c(tree, &f, vm, config)? {
                        units.push(u);
                    } else {
                        work.push(f);
                    }
                } else {
                    work.push(f);
                }
            }
        }
        units.sort_by(|a, b| a.object.cmp(&b.object));
        if units.is_empty() {
            return Err(step(format!(
                "no object of this kernel configuration includes {}",
                header.display()
            )));
        }
        Ok(units)
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn include_lines() {
        let inc = includes_of("#include <linux/seq_file.h>\n# include \"internal.h\"\nint x;\n");
        assert_eq!(
            inc,
            vec![
                (false, "linux/seq_file.h".to_string()),
                (true, "internal.h".to_string())
            ]
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

    #[test]
    fn module_membership() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("fs/foo")).unwrap();
        std::fs::write(
            d.path().join("fs/foo/Makefile"),
            "obj-$(CONFIG_FOO) += foofs.o\nfoofs-objs := super.o inode.o\n",
        )
        .unwrap();
        let config: HashMap<String, String> = [("CONFIG_FOO".to_string(), "m".to_string())]
            .into_iter()
            .collect();
        let m = module_of(d.path(), Path::new("fs/foo/inode.c"), &config).unwrap();
        assert_eq!(
            m,
            Some(("foofs".to_string(), "kernel/fs/foo/foofs.ko".to_string()))
        );
        assert_eq!(
            module_of(d.path(), Path::new("fs/foo/other.c"), &config).unwrap(),
            None
        );
    }
}
