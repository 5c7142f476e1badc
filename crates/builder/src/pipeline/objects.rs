//! Phase 4, objects: build each unit's original object from the pristine tree and its
//! patched object with the patch applied (the tree is restored right after), with the
//! kernel's own command lines plus [`KCFLAGS`]; and read the special-section entry sizes
//! the differ needs from the kernel's DWARF.

use std::path::{Path, PathBuf};

use super::prepare::Prepared;
use super::units::Units;
use super::{BuildOptions, KCFLAGS};
use crate::error::{io, Error, Result};
use crate::kernel::Kernel;
use crate::patch;
use crate::progress::Progress;
use crate::units::Unit;

/// Both builds of every unit, side by side under two directories.
pub struct Objects {
    /// Original objects, at each unit's object path below this directory.
    pub orig: PathBuf,
    /// Patched objects, likewise.
    pub patched: PathBuf,
    /// Special-section entry sizes of this kernel.
    pub sizes: differ::StructSizes,
}

/// Phase entry point.
pub fn run(
    opts: &BuildOptions,
    target: &super::resolve::Target,
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
    let orig = original_objects(k, opts.jobs, &prepared.include, &normal, p)?;
    check_objects(k, opts.jobs, &prepared.include, &check, &orig, p)?;

    p.phase("build patched objects");
    let work = &prepared.work;
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(io(work))?;
    }
    let patched = work.join("patched");
    let tree = k.tree();
    {
        let applied = patch::apply(&tree, &target.patch_file, &target.files)?;
        let objs: Vec<PathBuf> = normal.iter().map(|u| u.object.clone()).collect();
        let built = make_objects(
            k,
            opts.jobs,
            &prepared.include,
            &objs,
            "building patched objects",
            p,
        );
        let copied = built
            .and_then(|_| copy_objects(&tree, &normal, &patched))
            .and_then(|_| check_objects(k, opts.jobs, &prepared.include, &check, &patched, p));
        applied.revert()?;
        copied?;
    }

    p.phase("read special-section layout");
    let sizes = crate::sizes::cached_struct_sizes(k, opts.jobs, p)?;
    Ok(Objects {
        orig,
        patched,
        sizes,
    })
}

fn make_objects(
    k: &Kernel,
    jobs: usize,
    include_dir: &Path,
    objects: &[PathBuf],
    what: &str,
    p: &mut Progress,
) -> Result<()> {
    let mut args = k.make_args(jobs);
    args.push(format!("KCFLAGS={KCFLAGS} -I{}", include_dir.display()));
    args.extend(objects.iter().map(|o| o.display().to_string()));
    crate::cmd::run(k.command("make").args(&args), what, p)?;
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

/// Original objects, cached: the tree is always pristine outside a build, so an
/// object built from it is valid until the tree changes.
fn original_objects(
    k: &Kernel,
    jobs: usize,
    inc: &Path,
    units: &[Unit],
    p: &mut Progress,
) -> Result<PathBuf> {
    let cache = k.orig_cache();
    if k.user_tree() && cache.exists() {
        std::fs::remove_dir_all(&cache).map_err(io(&cache))?;
    }
    let missing: Vec<PathBuf> = units
        .iter()
        .filter(|u| !cache.join(&u.object).exists())
        .map(|u| u.object.clone())
        .collect();
    if missing.is_empty() {
        p.note(&format!("{} original object(s) from cache", units.len()));
        return Ok(cache);
    }
    make_objects(k, jobs, inc, &missing, "building original objects", p)?;
    let todo: Vec<Unit> = units
        .iter()
        .filter(|u| missing.contains(&u.object))
        .cloned()
        .collect();
    copy_objects(&k.tree(), &todo, &cache)?;
    p.note(&format!(
        "{} built, {} from cache",
        missing.len(),
        units.len() - missing.len()
    ));
    Ok(cache)
}
