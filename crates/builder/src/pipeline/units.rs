//! Phase 3, units: apply the patch in memory to the prepared tree (every refusal made
//! before the tree is touched: missing files, hunks that do not apply, fuzz; offsets
//! reported), and map each file it changes to the translation units that must be
//! rebuilt (see [`crate::units`] for the rules: vmlinux membership from DWARF, modules
//! from Makefiles, headers by include search).

use std::path::Path;

use super::prepare::Prepared;
use super::resolve::Target;
use super::{BuildOptions, UnitResolver};
use crate::error::{step, step_hint, Result};
use crate::patch::{self, Change, Plan, Planned};
use crate::progress::Progress;
use crate::units::Unit;

/// The patch, planned, and the translation units to rebuild.
pub struct Units {
    /// Each unit once, in the order the patch's files name them.
    pub units: Vec<Unit>,
    /// The patch applied in memory: what the objects phase writes into the tree.
    pub plan: Plan,
}

/// Phase entry point.
pub fn run(
    opts: &BuildOptions,
    target: &Target,
    prepared: &Prepared,
    resolver: &dyn UnitResolver,
    p: &mut Progress,
) -> Result<Units> {
    p.phase("check patch");
    let plan = patch::plan(&target.patch, &prepared.kernel.tree(), opts.allow_fuzz)?;
    report_placement(&plan, p);
    let mut units: Vec<Unit> = Vec::new();
    for f in &plan.files {
        crate::interrupt::check()?;
        for u in units_of(f, &plan, prepared, resolver, p)? {
            if !units.contains(&u) {
                units.push(u);
            }
        }
    }
    if units.is_empty() {
        return Err(step(
            "the patch touches no object built in this kernel configuration",
        ));
    }
    p.note(&format!(
        "{} file(s), {} object(s) to rebuild",
        plan.files.len(),
        units.len()
    ));
    Ok(Units { units, plan })
}

/// Offsets as notes, fuzz as warnings (it applied only because `--allow-fuzz` said so).
fn report_placement(plan: &Plan, p: &mut Progress) {
    for f in &plan.files {
        for (i, at) in f.placed.iter().enumerate() {
            let n = i + 1;
            let path = f.path.display();
            if at.fuzz > 0 {
                p.warn(&format!(
                    "{path}: hunk #{n} applied with fuzz {} at line {} (--allow-fuzz)",
                    at.fuzz, at.line
                ));
            } else if at.offset != 0 {
                p.note(&format!(
                    "{path}: hunk #{n} applied at line {} (offset {} line(s))",
                    at.line, at.offset
                ));
            }
        }
    }
}

fn is_build_file(path: &Path) -> bool {
    path.file_name()
        .map(|n| n == "Makefile" || n == "Kbuild" || n.to_string_lossy().starts_with("Kconfig"))
        .unwrap_or(false)
}

/// Documentation: no object is built from it.
fn is_documentation(path: &Path) -> bool {
    path.starts_with("Documentation")
        || path
            .extension()
            .is_some_and(|e| e == "rst" || e == "txt" || e == "md")
        || path
            .file_name()
            .is_some_and(|n| n == "MAINTAINERS" || n == "README")
}

/// The units one file patch affects, or the reason it cannot be live-patched.
fn units_of(
    f: &Planned,
    plan: &Plan,
    prepared: &Prepared,
    resolver: &dyn UnitResolver,
    p: &mut Progress,
) -> Result<Vec<Unit>> {
    let k = &prepared.kernel;
    let vmlinux = prepared.vmlinux.as_deref();
    let path = &f.path;
    let name = path.display();
    if is_documentation(path)
        && matches!(f.change, Change::Modify | Change::Create | Change::Delete)
    {
        p.note(&format!(
            "{name}: documentation, no object is built from it"
        ));
        return Ok(Vec::new());
    }
    match &f.change {
        // The Makefile of a new source file: the new file's refusal says why.
        Change::Modify if is_build_file(path) && adds_source_in(plan, path.parent()) => {
            Ok(Vec::new())
        }
        Change::Modify if is_build_file(path) => Err(step_hint(
            format!("{name}: the patch changes a build file"),
            "build files decide how objects are built, not the code a live patch carries; \
             leave them out of the patch",
        )),
        Change::Modify => {
            let found = resolver.units_for(k, vmlinux, path)?;
            if path.extension().is_some_and(|e| e == "h") {
                p.note(&format!(
                    "{name}: header included by {} object(s) of this configuration",
                    found.len()
                ));
            }
            Ok(found)
        }
        Change::Create => new_file(path, plan, p),
        Change::Delete => removed_file(path, "deletes", resolver.units_for(k, vmlinux, path), p),
        Change::Rename { from } => {
            removed_file(from, "renames", resolver.units_for(k, vmlinux, from), p)?;
            new_file(path, plan, p)
        }
        Change::Copy { .. } => new_file(path, plan, p),
    }
}

/// Does the patch add a C source file in `dir`?
fn adds_source_in(plan: &Plan, dir: Option<&Path>) -> bool {
    plan.files.iter().any(|f| {
        matches!(
            f.change,
            Change::Create | Change::Copy { .. } | Change::Rename { .. }
        ) && f.path.extension().is_some_and(|e| e == "c")
            && f.path.parent() == dir
    })
}

/// A file the patch adds: a header is fine (the units that include it are changed by the
/// patch, and rebuilt for that); a new translation unit is refused with the reason.
fn new_file(path: &Path, plan: &Plan, p: &mut Progress) -> Result<Vec<Unit>> {
    let name = path.display();
    match path.extension().and_then(|e| e.to_str()) {
        Some("h") => {
            p.note(&format!(
                "{name}: new header; the objects that include it are rebuilt as the patch changes them"
            ));
            Ok(Vec::new())
        }
        Some("c") => {
            let dir = path.parent().unwrap_or(Path::new(""));
            let built = plan
                .files
                .iter()
                .any(|f| is_build_file(&f.path) && f.path.parent() == Some(dir));
            let why = if built {
                format!(
                    "{name}: the patch adds this file and builds it from {}: a new translation unit \
                     cannot be live-patched yet",
                    dir.join("Makefile").display()
                )
            } else {
                format!(
                    "{name}: the patch adds this file, but no Makefile the patch changes builds it"
                )
            };
            Err(step_hint(
                why,
                "put the new functions in a file the running kernel already builds (as static \
                 functions next to their callers)",
            ))
        }
        _ => Err(step(format!(
            "{name}: the patch adds a file that is neither C source nor a header"
        ))),
    }
}

/// A file the patch removes (or renames away): refused when objects of this
/// configuration are built from it, ignored otherwise.
fn removed_file(
    path: &Path,
    verb: &str,
    units: Result<Vec<Unit>>,
    p: &mut Progress,
) -> Result<Vec<Unit>> {
    let code = path.extension().is_some_and(|e| e == "c" || e == "h");
    match units {
        Err(e) if !code || path.starts_with("lib") => Err(e),
        Ok(units) if !units.is_empty() => Err(step_hint(
            format!(
                "{}: the patch {verb} this file, and {} object(s) of this configuration are built \
                 from it ({})",
                path.display(),
                units.len(),
                units
                    .iter()
                    .map(|u| u.object.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "a live patch replaces functions; it cannot remove a source file from the running \
             kernel. Change the functions instead, and leave the file in place",
        )),
        _ => {
            p.note(&format!(
                "{}: the patch {verb} it; no object of this configuration is built from it",
                path.display()
            ));
            Ok(Vec::new())
        }
    }
}
