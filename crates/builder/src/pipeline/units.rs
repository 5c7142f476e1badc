//! Phase 3, units: apply the patch in memory to the prepared tree (every refusal made
//! before the tree is touched: missing files, hunks that do not apply, fuzz; offsets
//! reported), and map each file it changes to the translation units that must be
//! rebuilt (see [`crate::units`] for the rules: membership from the release's -dbg index
//! or from Kbuild, `.c` files included by other units, headers by include search and
//! line tables; a source file the patch adds by the Makefile the patch changes).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    /// What a second pass carries through callers in other objects (empty at first).
    pub carry: super::carry::CarryPlan,
    /// What the impact analysis of changed headers found, if it ran.
    pub narrowing: Option<super::narrow::Narrowing>,
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
    let mut changed: Vec<PathBuf> = Vec::new();
    let mut narrowing = None;
    for f in &plan.files {
        crate::interrupt::check()?;
        match own_units(f, &plan, prepared, resolver, opts.jobs, p)? {
            Some(found) => add_units(&mut units, found),
            None => changed.push(f.path.clone()),
        }
    }
    if !changed.is_empty() {
        let k = &prepared.kernel;
        let resolved = resolver.resolve(k, &prepared.truth, &changed, opts.jobs, p)?;
        for n in &resolved.notes {
            p.note(n);
        }
        let via_header: BTreeSet<PathBuf> = resolved
            .via_header
            .iter()
            .filter(|s| !units.iter().any(|u| &u.source == *s))
            .cloned()
            .collect();
        add_units(&mut units, resolved.units);
        narrowing = super::narrow::run(opts, prepared, &plan, &mut units, &via_header, p)?;
        if units.is_empty() {
            return Err(step_hint(
                "the patch changes no code: the preprocessed code of every unit that includes the changed \
                 header(s) is the same before and after",
                "run with --explain to see each includer and why it was left out",
            ));
        }
    }
    if units.is_empty() {
        return Err(step(
            "the patch touches no object built in this kernel configuration",
        ));
    }
    let checked = units.iter().filter(|u| u.unpatchable.is_some()).count();
    p.note(&format!(
        "{} file(s), {} object(s) to rebuild{}",
        plan.files.len(),
        units.len(),
        if checked > 0 {
            format!(" ({checked} of them only to check that they do not change)")
        } else {
            String::new()
        }
    ));
    Ok(Units {
        units,
        plan,
        carry: Default::default(),
        narrowing,
    })
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

fn add_units(units: &mut Vec<Unit>, found: Vec<Unit>) {
    for u in found {
        if !units.contains(&u) {
            units.push(u);
        }
    }
}

/// The units of a file the patch adds, removes, renames or copies, of a build file and
/// of documentation (`Some`, or the reason it cannot be live-patched); `None` for a
/// source or header the patch changes, which the resolver maps with the others.
fn own_units(
    f: &Planned,
    plan: &Plan,
    prepared: &Prepared,
    resolver: &dyn UnitResolver,
    jobs: usize,
    p: &mut Progress,
) -> Result<Option<Vec<Unit>>> {
    let path = &f.path;
    let name = path.display();
    let units_of = |file: &Path, p: &mut Progress| {
        resolver
            .resolve(
                &prepared.kernel,
                &prepared.truth,
                &[file.to_path_buf()],
                jobs,
                p,
            )
            .map(|r| r.units)
    };
    if is_documentation(path)
        && matches!(f.change, Change::Modify | Change::Create | Change::Delete)
    {
        p.note(&format!(
            "{name}: documentation, no object is built from it"
        ));
        return Ok(Some(Vec::new()));
    }
    let found = match &f.change {
        Change::Modify if is_build_file(path) => build_file_change(path, plan, prepared)?,
        Change::Modify => return Ok(None),
        Change::Create => new_file(path, plan, prepared, p)?,
        Change::Delete => {
            let units = units_of(path, p);
            removed_file(path, "deletes", units, p)?
        }
        Change::Rename { from } => {
            let units = units_of(from, p);
            removed_file(from, "renames", units, p)?;
            new_file(path, plan, prepared, p)?
        }
        Change::Copy { .. } => new_file(path, plan, prepared, p)?,
    };
    Ok(Some(found))
}

/// The objects of the C source files the patch adds in `dir` (`kpatch_new.o`).
fn new_objects_in(plan: &Plan, dir: Option<&Path>) -> Vec<String> {
    plan.files
        .iter()
        .filter(|f| {
            matches!(
                f.change,
                Change::Create | Change::Copy { .. } | Change::Rename { .. }
            ) && f.path.extension().is_some_and(|e| e == "c")
                && f.path.parent() == dir
        })
        .filter_map(|f| {
            f.path
                .with_extension("o")
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .collect()
}

/// A change to a build file is accepted only when all it does is add lines naming the
/// objects of the source files the patch adds next to it: anything else would change how
/// existing objects are built, which the build here would not see.
fn build_file_change(path: &Path, plan: &Plan, prepared: &Prepared) -> Result<Vec<Unit>> {
    let name = path.display();
    let refuse = |what: String| {
        Err(step_hint(
            format!("{name}: the patch {what}"),
            "build files decide how objects are built, not the code a live patch carries; \
             a patch may only add the objects of the new source files it adds",
        ))
    };
    let objs = new_objects_in(plan, path.parent());
    if objs.is_empty() {
        return refuse("changes a build file".into());
    }
    let full = prepared.kernel.tree().join(path);
    let old = std::fs::read(&full).map_err(crate::error::io(&full))?;
    let new = plan
        .writes
        .iter()
        .find(|(w, _)| w == path)
        .and_then(|(_, c)| c.clone())
        .unwrap_or_default();
    let (removed, added) = line_changes(&old, &new);
    if let Some(l) = removed.first() {
        return refuse(format!(
            "removes or changes the line '{}' of a build file",
            l.trim()
        ));
    }
    if let Some(l) = added
        .iter()
        .find(|l| !l.trim().is_empty() && !objs.iter().any(|o| l.contains(o.as_str())))
    {
        return refuse(format!(
            "adds the line '{}' to a build file, which does not name a new source file's object ({})",
            l.trim(),
            objs.join(", ")
        ));
    }
    Ok(Vec::new())
}

/// Lines only in `old` (removed) and only in `new` (added), counting repeats.
fn line_changes(old: &[u8], new: &[u8]) -> (Vec<String>, Vec<String>) {
    use std::collections::HashMap;
    let text = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (old, new) = (text(old), text(new));
    let mut count: HashMap<&str, i64> = HashMap::new();
    for l in &old {
        *count.entry(l).or_default() += 1;
    }
    let mut added = Vec::new();
    for l in &new {
        match count.get_mut(l.as_str()) {
            Some(c) if *c > 0 => *c -= 1,
            _ => added.push(l.clone()),
        }
    }
    let mut removed = Vec::new();
    for l in &old {
        if let Some(c) = count.get_mut(l.as_str()) {
            if *c > 0 {
                *c -= 1;
                removed.push(l.clone());
            }
        }
    }
    (removed, added)
}

/// A file the patch adds: a header is fine (the units that include it are changed by the
/// patch, and rebuilt for that); a C source is a new unit when a Makefile the patch
/// changes builds it in this configuration, and refused otherwise.
fn new_file(path: &Path, plan: &Plan, prepared: &Prepared, p: &mut Progress) -> Result<Vec<Unit>> {
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
            // The directory's build file as the patch leaves it (Kbuild wins, as in kbuild).
            let makefile = ["Kbuild", "Makefile"].iter().find_map(|f| {
                let want = dir.join(f);
                plan.writes
                    .iter()
                    .find(|(w, c)| *w == want && c.is_some())
                    .and_then(|(_, c)| c.as_deref())
            });
            let unit = match makefile {
                Some(text) => crate::units::new_unit(
                    path,
                    &String::from_utf8_lossy(text),
                    &prepared.kernel.config(),
                )?,
                None => None,
            };
            match unit {
                Some(u) => {
                    p.note(&format!("{name}: new source file, built into {}", parent_name(&u)));
                    Ok(vec![u])
                }
                None => Err(step_hint(
                    format!(
                        "{name}: the patch adds this file, but no Makefile the patch changes builds it in this kernel configuration"
                    ),
                    format!(
                        "add {} to {} in the same patch (obj-y, or the object of the module it belongs to), or put the new functions in a file that is built",
                        path.with_extension("o").file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
                        dir.join("Makefile").display()
                    ),
                )),
            }
        }
        _ => Err(step(format!(
            "{name}: the patch adds a file that is neither C source nor a header"
        ))),
    }
}

fn parent_name(u: &Unit) -> String {
    match &u.parent {
        crate::units::Parent::Vmlinux => "vmlinux".into(),
        crate::units::Parent::Module { name, .. } => format!("module {name}"),
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
        Err(e) if !code => Err(e),
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

#[cfg(test)]
mod tests {
    #[test]
    fn build_file_line_changes() {
        let old = b"obj-y += a.o\nobj-y += b.o\nobj-y += b.o\n";
        let new = b"obj-y += a.o\nobj-y += new.o\nobj-y += b.o\n";
        let (removed, added) = super::line_changes(old, new);
        assert_eq!(removed, vec!["obj-y += b.o".to_string()]);
        assert_eq!(added, vec!["obj-y += new.o".to_string()]);
        assert_eq!(super::line_changes(old, old), (vec![], vec![]));
    }
}
