//! Which translation units a patch affects, and where each is linked.
//!
//! Two sources of truth, never a hand-written reading of Makefiles (except for a source
//! file the patch adds, placed by the lines of the patched Makefile that name it, see
//! `newfile`):
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub(crate) mod includes;
mod newfile;
mod unchanged;

pub use newfile::new_unit;
pub use unchanged::object_change;

pub(crate) use includes::normalize;
use includes::{c_includers, units_including};

use crate::error::{io, step, step_hint, Error, Result};
use crate::index::{self, DbgIndex, Kind};
use crate::kbuild::{self, KbuildMap, Placement};
use crate::kernel::Kernel;
use crate::progress::Progress;

/// Where an object file ends up in the running kernel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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
    /// Set for a unit a live patch cannot change (assembly, vDSO code) that a changed
    /// header reaches: it is built before and after only to prove that its object does
    /// not change; if it does, the patch is refused with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpatchable: Option<String>,
    /// The patch adds its source: there is no original object (the original is built
    /// from an empty file).
    #[serde(default)]
    pub new: bool,
}

/// Who says which binary a source file is built into.
pub enum Truth {
    /// The release's `-dbg` index (in `dir`).
    Index {
        /// Where the index files are.
        dir: PathBuf,
        /// The index.
        index: DbgIndex,
    },
    /// Kbuild in the prepared tree; `vmlinux_units` are the compile units of a vmlinux
    /// given with `-v`, which decide what is built in.
    Kbuild {
        /// `-v`'s compile units.
        vmlinux_units: Option<BTreeSet<String>>,
    },
}

/// The units of a patch, and what was left out and why.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The units to rebuild.
    pub units: Vec<Unit>,
    /// What was left out and why.
    pub notes: Vec<String>,
    /// Sources reached only through a changed header (what the impact analysis may
    /// narrow).
    pub via_header: BTreeSet<PathBuf>,
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
        placer.kbuild = Some(kbuild_for(k, jobs, p)?);
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
    place_header_units(&placer, &tree, &via_header, &mut res);
    fix_objects(k, &mut placer, &mut res.units, jobs, p)?;
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

/// The units a changed header reaches, placed (generated units and units this
/// configuration does not build are left out, counted in a note).
fn place_header_units(
    placer: &Placer,
    tree: &Path,
    via_header: &BTreeMap<String, BTreeSet<String>>,
    res: &mut Resolved,
) {
    let mut unbuilt = 0usize;
    let few = via_header.len() < 20;
    for (src, headers) in via_header {
        // Generated units (`*.mod.c`, `.vmlinux.export.c`: modpost's module metadata)
        // are not in the source tree and carry no code of the patch.
        if !tree.join(src).is_file() {
            continue;
        }
        let placed = places_with_includers(placer, tree, src);
        if placed.is_empty() {
            if few && src.starts_with("lib/") {
                res.notes.push(format!("skipped {}", placer.not_built(src)));
            } else {
                unbuilt += 1;
            }
        }
        for (unit_src, place) in placed {
            if !res
                .units
                .iter()
                .any(|u| u.source == Path::new(&unit_src) && u.unpatchable.is_none())
            {
                res.via_header.insert(PathBuf::from(&unit_src));
            }
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
}

/// Is `source` in a directory Kbuild has a Makefile for? A source elsewhere is compiled by
/// a rule of another directory (`kernel/bpf/relo_core.o` from `tools/lib/bpf/relo_core.c`).
fn in_kbuild_dir(tree: &Path, source: &str) -> bool {
    let dir = tree.join(Path::new(source).parent().unwrap_or(Path::new("")));
    dir.join("Makefile").is_file() || dir.join("Kbuild").is_file()
}

/// Kbuild's answer for the whole tree (cached per configuration): a source can be
/// compiled by a rule of another directory too (xe's `i915-display/%.o` from i915's
/// sources), which no query of the source's own directories would show.
fn kbuild_for(k: &Kernel, jobs: usize, p: &mut Progress) -> Result<KbuildMap> {
    kbuild::tree_map(k, jobs, p)
}

/// Each unit's object as Kbuild names it: `<stem>.o` next to the source, except where a
/// rule of another directory compiles the source for this parent (xe's `i915-display/`
/// objects, `kernel/bpf/relo_core.o`). With the index, Kbuild is asked only for units
/// that look compiled elsewhere: a module's source outside the module's directory, a
/// vmlinux source outside Kbuild's directories.
fn fix_objects(
    k: &Kernel,
    placer: &mut Placer,
    units: &mut [Unit],
    jobs: usize,
    p: &mut Progress,
) -> Result<()> {
    let tree = k.tree();
    let elsewhere = |u: &Unit| match &u.parent {
        Parent::Module { ko, .. } => {
            let dir = Path::new(ko.trim_start_matches("kernel/"))
                .parent()
                .unwrap_or(Path::new(""));
            !u.source.starts_with(dir)
        }
        Parent::Vmlinux => !in_kbuild_dir(&tree, &u.source.display().to_string()),
    };
    if placer.kbuild.is_none() {
        if !units.iter().any(elsewhere) {
            return Ok(());
        }
        placer.kbuild = Some(kbuild_for(k, jobs, p)?);
    }
    let Some(map) = &placer.kbuild else {
        return Ok(());
    };
    for u in units.iter_mut() {
        let wanted = |pl: &Placement| match (&u.parent, pl) {
            (Parent::Vmlinux, Placement::Builtin | Placement::Lib) => true,
            (Parent::Module { name, .. }, Placement::Module { name: n, .. }) => name == n,
            _ => false,
        };
        if let Some((object, _)) = map
            .placed_objects(&u.source.display().to_string())
            .into_iter()
            .find(|(_, pl)| wanted(pl))
        {
            u.object = PathBuf::from(object);
        }
    }
    Ok(())
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
        new: false,
    });
}
