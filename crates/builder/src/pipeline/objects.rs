//! Phase 4, objects: each unit's original object built from the pristine tree and its
//! patched object built with the patch applied, both from a known state, with the
//! kernel's own command lines plus [`KCFLAGS`]; and the special-section entry sizes the
//! differ needs, from the kernel's DWARF.
//!
//! Known state: a unit's object is deleted from the tree before every `make`, so it is
//! always compiled, never taken from an earlier build. Original objects are cached
//! between builds with the proof of their inputs (see [`crate::inputs`]) and rebuilt
//! when any input differs. The patch is written under the tree's journal and rolled back
//! as soon as the patched objects are copied out, before anything else happens.

use std::path::{Path, PathBuf};

use super::prepare::Prepared;
use super::units::Units;
use super::{BuildOptions, KCFLAGS};
use crate::error::{io, Error, Result};
use crate::inputs::Inputs;
use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::units::Unit;

/// Both builds of every unit, side by side under two directories.
pub struct Objects {
    /// Original objects, at each unit's object path below this directory.
    pub orig: PathBuf,
    /// The originals of the units the patch adds (built from empty files), likewise.
    pub new_orig: PathBuf,
    /// Patched objects, likewise.
    pub patched: PathBuf,
    /// Special-section entry sizes of this kernel.
    pub sizes: differ::StructSizes,
}

impl Objects {
    /// The original object of `u`.
    pub fn orig_of(&self, u: &Unit) -> PathBuf {
        let dir = if u.new { &self.new_orig } else { &self.orig };
        dir.join(&u.object)
    }
}

/// Phase entry point.
pub fn run(
    opts: &BuildOptions,
    prepared: &Prepared,
    units: &Units,
    p: &mut Progress,
) -> Result<Objects> {
    let k = &prepared.kernel;
    // Units only checked for not changing (assembly, vDSO code a header reaches) are built
    // apart: some cannot be built on their own at all, which refuses the patch.
    let (check, normal): (Vec<Unit>, Vec<Unit>) = units
        .units
        .iter()
        .cloned()
        .partition(|u| u.unpatchable.is_some());
    p.phase("build original objects");
    let known: Vec<Unit> = normal.iter().filter(|u| !u.new).cloned().collect();
    let orig = original_objects(k, opts.jobs, &prepared.include, &known, p)?;
    check_objects(k, opts.jobs, &prepared.include, &check, &orig, p)?;
    crate::interrupt::check()?;

    p.phase("build patched objects");
    let work = &prepared.work;
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(io(work))?;
    }
    let patched = work.join("patched");
    let new_orig = work.join("orig-new");
    let split = Split {
        normal: &normal,
        check: &check,
    };
    patched_objects(opts, prepared, units, split, &new_orig, &patched, p)?;
    crate::interrupt::check()?;

    p.phase("read special-section layout");
    let sizes = {
        let mut journal = prepared.journal()?;
        journal.record(Path::new(crate::sizes::PROBE_DIR))?;
        let sizes = crate::sizes::cached_struct_sizes(k, opts.jobs, p);
        journal.roll_back()?;
        sizes?
    };
    Ok(Objects {
        orig,
        new_orig,
        patched,
        sizes,
    })
}

/// The units built for the patch, and those built only to show that they do not change.
#[derive(Clone, Copy)]
struct Split<'a> {
    normal: &'a [Unit],
    check: &'a [Unit],
}

/// Write the patch under the journal, build the units, copy them to `dest`, and roll
/// the tree back whatever happened. The originals of new units are built first, in
/// that same tree, from empty source files (into `new_orig`).
fn patched_objects(
    opts: &BuildOptions,
    prepared: &Prepared,
    units: &Units,
    split: Split,
    new_orig: &Path,
    dest: &Path,
    p: &mut Progress,
) -> Result<()> {
    let k = &prepared.kernel;
    let tree = k.tree();
    let inc = &prepared.include;
    let mut journal = prepared.journal()?;
    let mut pristine = prepared.pristine()?;
    let new: Vec<Unit> = split.normal.iter().filter(|u| u.new).cloned().collect();
    let built = (|| {
        for u in &units.units {
            journal.record(&u.object)?;
        }
        if !new.is_empty() {
            let empty = empty_sources(&units.plan, &new);
            crate::patch::write(&empty, &mut journal, pristine.as_mut())?;
            let what = "building the new units' originals (empty)";
            make_objects(k, opts.jobs, inc, &new, what, p)?;
            copy_objects(&tree, &new, new_orig)?;
        }
        crate::patch::write(&units.plan, &mut journal, pristine.as_mut())?;
        let what = "building patched objects";
        make_objects(k, opts.jobs, inc, split.normal, what, p)?;
        copy_objects(&tree, split.normal, dest)?;
        check_objects(k, opts.jobs, inc, split.check, dest, p)
    })();
    let restored = journal.roll_back();
    match (&built, &restored) {
        (Err(e), _) => p.debug(&format!(
            "patched build stopped ({e}); the tree is restored"
        )),
        (Ok(()), Ok(paths)) => p.debug(&format!("{} path(s) of the tree restored", paths.len())),
        _ => {}
    }
    built.and(restored.map(|_| ()))
}

/// The plan's build files, with the new units' sources empty: the tree in which their
/// original objects are built.
fn empty_sources(plan: &crate::patch::Plan, new: &[Unit]) -> crate::patch::Plan {
    let dirs: Vec<&Path> = new.iter().filter_map(|u| u.source.parent()).collect();
    let writes = plan
        .writes
        .iter()
        .filter_map(|(path, content)| {
            if new.iter().any(|u| &u.source == path) {
                return Some((path.clone(), Some(Vec::new())));
            }
            let build_file = path
                .file_name()
                .is_some_and(|n| n == "Makefile" || n == "Kbuild");
            (build_file && path.parent().is_some_and(|d| dirs.contains(&d)))
                .then(|| (path.clone(), content.clone()))
        })
        .collect();
    crate::patch::Plan {
        writes,
        ..Default::default()
    }
}

/// `make` the units' objects, each deleted first so that it is compiled.
fn make_objects(
    k: &Kernel,
    jobs: usize,
    include_dir: &Path,
    units: &[Unit],
    what: &str,
    p: &mut Progress,
) -> Result<()> {
    let tree = k.tree();
    for u in units {
        let o = tree.join(&u.object);
        match std::fs::remove_file(&o) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&o)(e)),
            _ => {}
        }
    }
    let mut args = k.make_args(jobs);
    args.push(format!("KCFLAGS={KCFLAGS} -I{}", include_dir.display()));
    args.extend(units.iter().map(|u| u.object.display().to_string()));
    crate::cmd::run_counted(k.command("make").args(&args), what, units.len(), p)?;
    for u in units {
        let o = tree.join(&u.object);
        if !o.is_file() {
            return Err(crate::error::step(format!(
                "{what}: make did not produce {}",
                u.object.display()
            )));
        }
    }
    Ok(())
}

/// Build check-only units (`make -k`, so that one that fails does not hide the others)
/// and copy them to `dest`; a unit whose object could not be built refuses the patch,
/// named, since nothing then shows that it does not change.
fn check_objects(
    k: &Kernel,
    jobs: usize,
    inc: &Path,
    check: &[Unit],
    dest: &Path,
    p: &mut Progress,
) -> Result<()> {
    if check.is_empty() {
        return Ok(());
    }
    let tree = k.tree();
    // Whatever exists afterwards was built now.
    for u in check {
        let _ = std::fs::remove_file(tree.join(&u.object));
    }
    let mut args = k.make_args(jobs);
    args.push("-k".into());
    args.push(format!("KCFLAGS={KCFLAGS} -I{}", inc.display()));
    args.extend(check.iter().map(|u| u.object.display().to_string()));
    let made = crate::cmd::run(
        k.command("make").args(&args),
        "building units that must not change",
        p,
    );
    if let Some(u) = check
        .iter()
        .find(|u| made.is_err() && !tree.join(&u.object).is_file())
    {
        return Err(Error::Unpatchable(format!(
            "{}; and {} cannot be rebuilt on its own to show that it does not change",
            u.unpatchable.as_deref().unwrap_or(""),
            u.object.display()
        )));
    }
    copy_objects(&tree, check, dest)
}

fn copy_objects(tree: &Path, units: &[Unit], dest: &Path) -> Result<()> {
    for u in units {
        let to = dest.join(&u.object);
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::copy(tree.join(&u.object), &to).map_err(io(&to))?;
    }
    Ok(())
}

/// Original objects: taken from the cache when the proof of their inputs still holds,
/// else built in the pristine tree (and their proof written beside them).
fn original_objects(
    k: &Kernel,
    jobs: usize,
    inc: &Path,
    units: &[Unit],
    p: &mut Progress,
) -> Result<PathBuf> {
    let cache = k.orig_cache();
    let tree = k.tree();
    let mut hasher = k.hasher();
    let mut todo = Vec::new();
    for u in units {
        let reason = match Inputs::load(&cache, &u.object) {
            None => "not built before".to_string(),
            Some(inputs) => match inputs.first_change(&mut hasher, &u.object, inc) {
                None if cache.join(&u.object).is_file() => continue,
                None => "its cached copy is missing".to_string(),
                Some(why) => why,
            },
        };
        p.debug(&format!(
            "original {}: building ({reason})",
            u.object.display()
        ));
        todo.push(u.clone());
    }
    if todo.is_empty() {
        p.note(&format!(
            "{} original object(s) from cache (inputs unchanged)",
            units.len()
        ));
        return Ok(cache);
    }
    make_objects(k, jobs, inc, &todo, "building original objects", p)?;
    copy_objects(&tree, &todo, &cache)?;
    for u in &todo {
        Inputs::record(&mut hasher, &u.object, inc)?.save(&cache, &u.object)?;
        let o = tree.join(&u.object);
        std::fs::remove_file(&o).map_err(io(&o))?;
    }
    p.note(&format!(
        "{} built, {} from cache (inputs unchanged)",
        todo.len(),
        units.len() - todo.len()
    ));
    Ok(cache)
}
