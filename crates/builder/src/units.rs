//! Which translation units a patch affects, and where each is linked.
//!
//! Two sources of truth, never a hand-written reading of Makefiles:
//! - [`Truth::Index`]: the release's `-dbg` index (`crate::index`): the DWARF compile
//!   units of the debug vmlinux, of every debug module and of the vDSO images, with the
//!   `.c` files each unit `#include`s and the headers its line table names. Exact for
//!   Debian's own build; used whenever the target is Debian's configuration and the
//!   `-dbg` package is used.
//! - [`Truth::Kbuild`]: Kbuild's own evaluation of the Makefiles in the prepared tree
//!   (`crate::kbuild`), for `--kallsyms` (no `-dbg` package), `-s` and `-c` (another
//!   configuration). With `-v`, that vmlinux's compile units decide what is built in.
//!
//! A changed `.c` maps to its own unit and to every unit that `#include`s it; a changed
//! header to every unit that includes it, directly or through other headers (found by
//! scanning `#include` lines, and, with the index, also every unit whose line table
//! names the header). A unit built into something a live patch cannot change (assembly,
//! a vDSO image) is never dropped: it is rebuilt before and after, and if its object
//! changes the patch is refused naming it. Units that are not built at all are skipped
//! with a note. `lib/` units are ordinary vmlinux units: with `CONFIG_MODULES` (which
//! `CONFIG_LIVEPATCH` needs) Kbuild links the whole `lib.a` into vmlinux.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::{io, step, step_hint, Error, Result};
use crate::index::{self, DbgIndex, Kind};
use crate::kbuild::{self, KbuildMap, Placement};
use crate::kernel::Kernel;
use crate::progress::Progress;

/// Where an object file ends up in the running kernel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Parent {
    Vmlinux,
    /// A loadable module: its name as the kernel knows it (`-` turned into `_`) and the
    /// path of its `.ko` relative to `/lib/modules/<release>/`.
    Module {
        name: String,
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
    pub parent: Parent,
    /// Set for a unit a live patch cannot change (assembly, vDSO code) that a changed
    /// header reaches: it is built before and after only to prove that its object does
    /// not change; if it does, the patch is refused with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpatchable: Option<String>,
}

/// Who says which binary a source file is built into.
pub enum Truth {
    /// The release's `-dbg` index (in `dir`).
    Index { dir: PathBuf, index: DbgIndex },
    /// Kbuild in the prepared tree; `vmlinux_units` are the compile units of a vmlinux
    /// given with `-v`, which decide what is built in.
    Kbuild {
        vmlinux_units: Option<BTreeSet<String>>,
    },
}

/// The units of a patch, and what was left out and why.
#[derive(Debug, Default)]
pub struct Resolved {
    pub units: Vec<Unit>,
    pub notes: Vec<String>,
}

/// Where one source's object goes, according to the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Patch(Parent),
    /// Built, but into something no live patch can change.
    Unpatchable {
        parent: Parent,
        why: String,
    },
}

/// Membership answers for a set of sources.
struct Placer<'a> {
    truth: &'a Truth,
    kbuild: Option<KbuildMap>,
    modules: bool,
    release: String,
}

impl Placer<'_> {
    fn places(&self, source: &str) -> Vec<Place> {
        let asm = source.ends_with(".S");
        let wrap = |parent: Parent| {
            if asm {
                Place::Unpatchable {
                    parent,
                    why: "assembly has no per-function sections or ftrace hooks".into(),
                }
            } else {
                Place::Patch(parent)
            }
        };
        let mut out = Vec::new();
        match self.truth {
            Truth::Index { index, .. } => {
                for b in index.binaries_of(source) {
                    out.push(match b.kind {
                        Kind::Vmlinux => wrap(Parent::Vmlinux),
                        Kind::Module => wrap(Parent::Module {
                            name: b.name.clone(),
                            ko: b.ko.clone().unwrap_or_default(),
                        }),
                        Kind::Vdso => Place::Unpatchable {
                            parent: Parent::Vmlinux,
                            why: format!(
                                "it is built into the vDSO image {}, user-space code that the kernel maps into \
                                 processes and that a live patch cannot change",
                                b.name
                            ),
                        },
                    });
                }
            }
            Truth::Kbuild { vmlinux_units } => {
                let map = self.kbuild.as_ref();
                for p in map.map(|m| m.placements(source)).unwrap_or_default() {
                    match p {
                        Placement::Builtin if vmlinux_units.is_none() => {
                            out.push(wrap(Parent::Vmlinux))
                        }
                        Placement::Lib if vmlinux_units.is_none() && self.modules => {
                            out.push(wrap(Parent::Vmlinux))
                        }
                        Placement::Module { name, ko } => out.push(wrap(Parent::Module {
                            name: name.clone(),
                            ko: ko.clone(),
                        })),
                        _ => {}
                    }
                }
                if let Some(set) = vmlinux_units {
                    if set.contains(source) {
                        out.push(wrap(Parent::Vmlinux));
                    }
                }
            }
        }
        out.dedup();
        out
    }

    /// Why a source has no place, for the note.
    fn not_built(&self, source: &str) -> String {
        match self.truth {
            Truth::Index { index, .. } if !index.unreadable.is_empty() => format!(
                "{source}: not built into {} (no compile unit of its -dbg package; {} module(s) of it could not be read)",
                self.release,
                index.unreadable.len()
            ),
            Truth::Index { .. } => format!(
                "{source}: not built into {}'s vmlinux or any of its modules (no compile unit of its -dbg package)",
                self.release
            ),
            Truth::Kbuild { .. } if source.starts_with("lib/") && !self.modules => format!(
                "{source}: a lib.a member; without CONFIG_MODULES it is linked only where referenced, which \
                 cannot be told without the kernel's vmlinux"
            ),
            Truth::Kbuild { .. } => format!("{source}: not built in this kernel configuration (Kbuild)"),
        }
    }

    /// Units that `#include` the `.c` file `source`.
    fn includers(&self, tree: &Path, source: &str) -> Vec<String> {
        match self.truth {
            Truth::Index { index, .. } => index
                .includers_of(source)
                .into_iter()
                .map(str::to_string)
                .collect(),
            Truth::Kbuild { .. } => c_includers(tree, Path::new(source)),
        }
    }
}

/// `.c` files of the same directory that `#include` `source` (a `.c`).
fn c_includers(tree: &Path, source: &Path) -> Vec<String> {
    let dir = source.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(tree.join(dir)) else {
        return out;
    };
    for e in rd.flatten() {
        let rel = dir.join(e.file_name());
        if rel.extension().is_none_or(|x| x != "c") || rel == source {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if includes_of(&text)
            .iter()
            .any(|(local, f)| *local && normalize(&dir.join(f)) == source)
        {
            out.push(rel.display().to_string());
        }
    }
    out.sort();
    out
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

/// Compile units of a vmlinux (source paths relative to the tree), for `-v`.
pub fn vmlinux_units(vmlinux: &Path) -> Result<BTreeSet<String>> {
    let data = std::fs::read(vmlinux).map_err(io(vmlinux))?;
    let units =
        index::dwarf::units(&data).map_err(|e| step(format!("{}: {e}", vmlinux.display())))?;
    let out: BTreeSet<String> = index::tree_sources(&units).into_iter().collect();
    if out.is_empty() {
        return Err(step_hint(
            format!("{} has no DWARF compile units", vmlinux.display()),
            "give a vmlinux with debug information (the -dbg package's)",
        ));
    }
    Ok(out)
}

/// Resolves changed files to units (the pipeline's [`crate::pipeline::UnitResolver`]).
pub struct Resolver;

impl crate::pipeline::UnitResolver for Resolver {
    fn resolve(
        &self,
        k: &Kernel,
        truth: &Truth,
        files: &[PathBuf],
        jobs: usize,
        p: &mut Progress,
    ) -> Result<Resolved> {
        resolve(k, truth, files, jobs, p)
    }
}

/// Resolve every changed file of a patch to the units to rebuild.
pub fn resolve(
    k: &Kernel,
    truth: &Truth,
    files: &[PathBuf],
    jobs: usize,
    p: &mut Progress,
) -> Result<Resolved> {
    let tree = k.tree();
    let mut res = Resolved::default();
    // Candidate sources: (source, reached through a header?)
    let mut direct: Vec<String> = Vec::new();
    let mut via_header: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let name = f.display().to_string();
        match f.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "S" => {
                return Err(step_hint(
                    format!("{name}: assembly files cannot be live-patched"),
                    "assembly has no per-function sections or ftrace hooks to redirect; patch the C callers instead",
                ))
            }
            "c" => direct.push(name),
            "h" => {
                let mut found = units_including(&tree, f);
                if let Truth::Index { dir, .. } = truth {
                    let headers = DbgIndex::load_headers(dir)?;
                    found.extend(headers.units_naming(&name).into_iter().map(str::to_string));
                }
                for s in found {
                    via_header.entry(s).or_default().insert(name.clone());
                }
                if !via_header.values().any(|h| h.contains(&name)) {
                    res.notes
                        .push(format!("{name}: no source file of the tree includes it"));
                }
            }
            _ => return Err(step(format!("{name}: only .c and .h files can be patched"))),
        }
    }
    let config = read_config(&k.config())?;
    let mut placer = Placer {
        truth,
        kbuild: None,
        modules: config.get("CONFIG_MODULES").is_some_and(|v| v == "y"),
        release: k.rel.release.clone(),
    };
    if let Truth::Kbuild { .. } = truth {
        let dirs: BTreeSet<String> = direct
            .iter()
            .chain(via_header.keys())
            .map(|s| {
                Path::new(s)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .display()
                    .to_string()
            })
            .collect();
        placer.kbuild = Some(kbuild::query(k, jobs, &dirs, p)?);
    }

    for src in &direct {
        let before = res.units.len();
        for (unit_src, place) in places_with_includers(&placer, &tree, src) {
            match place {
                Place::Patch(parent) => push(&mut res.units, &unit_src, parent, None),
                Place::Unpatchable { why, .. } => {
                    return Err(Error::Unpatchable(format!(
                        "{src} cannot be live-patched: {why}"
                    )))
                }
            }
        }
        if res.units.len() == before {
            res.notes.push(format!("skipped {}", placer.not_built(src)));
        }
    }
    let mut unbuilt = 0usize;
    for (src, headers) in &via_header {
        let placed = places_with_includers(&placer, &tree, src);
        if placed.is_empty() {
            if src.starts_with("lib/") {
                res.notes.push(format!("skipped {}", placer.not_built(src)));
            } else {
                unbuilt += 1;
            }
        }
        for (unit_src, place) in placed {
            match place {
                Place::Patch(parent) => push(&mut res.units, &unit_src, parent, None),
                Place::Unpatchable { parent, why } => {
                    let hs: Vec<&str> = headers.iter().map(String::as_str).collect();
                    let reason = format!(
                        "{} reaches {unit_src}, which cannot be live-patched: {why}",
                        hs.join(", ")
                    );
                    push(&mut res.units, &unit_src, parent, Some(reason));
                }
            }
        }
    }
    if unbuilt > 0 {
        res.notes.push(format!(
            "{unbuilt} other file(s) including the changed header(s) are not built in this kernel"
        ));
    }
    res.units
        .sort_by(|a, b| (&a.object, &a.parent).cmp(&(&b.object, &b.parent)));
    if res.units.is_empty() {
        let why = if res.notes.is_empty() {
            String::new()
        } else {
            format!(": {}", res.notes.join("; "))
        };
        return Err(step_hint(
            format!("the patch touches no object built into {}{why}", k.rel.release),
            "check the CONFIG option that enables the file in its directory's Makefile; a file that is not \
             built cannot change the running kernel",
        ));
    }
    Ok(res)
}

/// The places of `src` itself and of every unit that `#include`s it.
fn places_with_includers(placer: &Placer, tree: &Path, src: &str) -> Vec<(String, Place)> {
    let mut out: Vec<(String, Place)> = placer
        .places(src)
        .into_iter()
        .map(|p| (src.to_string(), p))
        .collect();
    if src.ends_with(".c") {
        for inc in placer.includers(tree, src) {
            for p in placer.places(&inc) {
                out.push((inc.clone(), p));
            }
        }
    }
    out
}

fn push(units: &mut Vec<Unit>, source: &str, parent: Parent, unpatchable: Option<String>) {
    let source = PathBuf::from(source);
    let object = source.with_extension("o");
    if let Some(u) = units
        .iter_mut()
        .find(|u| u.object == object && u.parent == parent)
    {
        // A unit reached both directly and as a check-only one is patched.
        if unpatchable.is_none() {
            u.unpatchable = None;
        }
        return;
    }
    units.push(Unit {
        source,
        object,
        parent,
        unpatchable,
    });
}

/// How the object of a check-only unit changed between its original and patched
/// builds: the first allocated section whose bytes or relocations differ, or `None`
/// when they are the same (debug information and other unallocated sections aside).
pub fn object_change(orig: &Path, patched: &Path) -> Result<Option<String>> {
    let a = std::fs::read(orig).map_err(io(orig))?;
    let b = std::fs::read(patched).map_err(io(patched))?;
    let (sa, sb) = (alloc_sections(&a, orig)?, alloc_sections(&b, patched)?);
    for (x, y) in sa.iter().zip(&sb) {
        if x != y {
            return Ok(Some(format!("section {} changes", x.0)));
        }
    }
    if sa.len() != sb.len() {
        let names: Vec<&str> = sa.iter().chain(&sb).map(|s| s.0.as_str()).collect();
        return Ok(Some(format!(
            "its sections change ({} before, {} after: {})",
            sa.len(),
            sb.len(),
            names.join(" ")
        )));
    }
    Ok(None)
}

type SectionImage = (String, Vec<u8>, Vec<(u64, String, i64, String)>);

/// Name, bytes and relocations (offset, kind, addend, target name) of each allocated
/// section.
fn alloc_sections(data: &[u8], path: &Path) -> Result<Vec<SectionImage>> {
    use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionFlags};
    let f = object::File::parse(data).map_err(|e| step(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for sec in f.sections() {
        let alloc = match sec.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_ALLOC) != 0,
            _ => false,
        };
        if !alloc {
            continue;
        }
        let name = sec.name().unwrap_or("").to_string();
        let bytes = sec.data().unwrap_or_default().to_vec();
        let mut relocs = Vec::new();
        for (off, r) in sec.relocations() {
            let target = match r.target() {
                RelocationTarget::Symbol(i) => f
                    .symbol_by_index(i)
                    .map(|s| match s.name() {
                        Ok("") | Err(_) => s
                            .section_index()
                            .and_then(|si| f.section_by_index(si).ok())
                            .and_then(|t| t.name().ok().map(str::to_string))
                            .unwrap_or_default(),
                        Ok(n) => n.to_string(),
                    })
                    .unwrap_or_default(),
                other => format!("{other:?}"),
            };
            relocs.push((off, format!("{:?}", r.flags()), r.addend(), target));
        }
        out.push((name, bytes, relocs));
    }
    Ok(out)
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
            Ok(t)
                if t.is_file() && (n.ends_with(".c") || n.ends_with(".h") || n.ends_with(".S")) =>
            {
                out.push(p)
            }
            _ => {}
        }
    }
}

/// Every `.c` and `.S` of the tree that includes `header`, directly or through other
/// headers (and `.c` files that include it through another `.c`).
fn units_including(tree: &Path, header: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    walk(tree, &mut files);
    // file -> the files that include it (resolved, tree-relative)
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
    let mut units = BTreeSet::new();
    while let Some(h) = work.pop() {
        for f in included_by.get(&h).cloned().unwrap_or_default() {
            if !seen.insert(f.clone()) {
                continue;
            }
            if f.extension().is_some_and(|e| e == "c" || e == "S") {
                units.insert(f.display().to_string());
            }
            // A .c or .S can itself be included by another unit.
            work.push(f);
        }
    }
    units
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

    /// Objects built from an assembly file with and without a change to a macro it uses.
    #[test]
    fn object_change_sees_allocated_sections_only() {
        let d = tempfile::tempdir().unwrap();
        let build = |name: &str, value: u32, comment: &str| {
            let src = d.path().join(format!("{name}.S"));
            std::fs::write(
                &src,
                format!(
                    "/* {comment} */\n#define VALUE {value}\n.text\n.globl f\nf:\n  mov $VALUE, %eax\n  call g\n  ret\n"
                ),
            )
            .unwrap();
            let obj = d.path().join(format!("{name}.o"));
            let st = std::process::Command::new("gcc")
                .args(["-c", "-g", "-o"])
                .arg(&obj)
                .arg(&src)
                .status()
                .expect("gcc");
            assert!(st.success());
            obj
        };
        let a = build("a", 1, "original");
        let b = build("b", 1, "a comment and the file name change, not the code");
        let c = build("c", 2, "original");
        assert_eq!(object_change(&a, &b).unwrap(), None);
        let change = object_change(&a, &c).unwrap().expect("a change");
        assert!(change.contains(".text"), "{change}");
    }

    #[test]
    fn header_reaches_units_through_headers_and_c_includes() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w("include/linux/a.h", "int a(void);\n");
        w("include/linux/b.h", "#include <linux/a.h>\n");
        w("kernel/x.c", "#include <linux/b.h>\n");
        w("kernel/sched/clock.c", "#include <linux/a.h>\n");
        w("kernel/sched/build_utility.c", "#include \"clock.c\"\n");
        w("arch/x86/entry/entry.S", "#include <linux/a.h>\n");
        w("lib/y.c", "#include \"../include/linux/b.h\"\n");
        let found = units_including(d.path(), Path::new("include/linux/a.h"));
        let want: BTreeSet<String> = [
            "kernel/x.c",
            "kernel/sched/clock.c",
            "kernel/sched/build_utility.c",
            "arch/x86/entry/entry.S",
            "lib/y.c",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(found, want);
        assert_eq!(
            c_includers(d.path(), Path::new("kernel/sched/clock.c")),
            vec!["kernel/sched/build_utility.c".to_string()]
        );
    }
}
