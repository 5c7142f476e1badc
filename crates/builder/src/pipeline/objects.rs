//! Phase 4, objects: build each unit's original object from the pristine tree and its
//! patched object with the patch applied (the tree is restored right after), with the
//! kernel's own command lines plus [`KCFLAGS`]; and read the special-section entry sizes
//! the differ needs from the kernel's DWARF.

use std::path::{Path, PathBuf};

use super::prepare::Prepared;
use super::units::Units;
use super::{BuildOptions, KCFLAGS};
use crate::error::{io, Result};
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
    p.phase("build original objects");
    let orig = original_objects(k, opts.jobs, &prepared.include, &units.units, p)?;

    p.phase("build patched objects");
    let work = &prepared.work;
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(io(work))?;
    }
    let patched = work.join("patched");
    let tree = k.tree();
    {
        let applied = patch::apply(&tree, &target.patch_file, &target.files)?;
        let objs: Vec<PathBuf> = units.units.iter().map(|u| u.object.clone()).collect();
        let built = make_objects(
            k,
            opts.jobs,
            &prepared.include,
            &objs,
            "building patched objects",
            p,
        );
        let copied = built.and_then(|_| copy_objects(&tree, &units.units, &patched));
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
