//! Source patches. [`parse`] reads one as GNU patch and git do; [`plan`] applies it in
//! memory to the tree's files, so that every file's final content is known (and every
//! refusal made: missing files, hunks that do not apply, fuzz) before anything in the
//! tree is touched; [`write`] then writes that plan, each path recorded in the journal
//! (see [`crate::journal`]) before it is changed.

pub mod hunks;
pub mod parse;

use std::path::{Path, PathBuf};

pub use hunks::Placed;
pub use parse::{parse, FilePatch, Hunk, Line, Patch};

use crate::error::{io, step, step_hint, Error, Result};
use crate::journal::{write_synced, Journal};
use crate::pristine::Pristine;

/// What a file patch does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The file is edited.
    Modify,
    /// The file is new.
    Create,
    /// The file is removed.
    Delete,
    /// The file is `from`, renamed (and maybe edited).
    Rename {
        /// The old name.
        from: PathBuf,
    },
    /// The file is made from `from`, which stays.
    Copy {
        /// The file copied.
        from: PathBuf,
    },
}

/// One file patch, resolved against the tree.
#[derive(Clone, Debug)]
pub struct Planned {
    /// The file (the new name of a rename or copy).
    pub path: PathBuf,
    /// What happens to it.
    pub change: Change,
    /// Where each hunk applied.
    pub placed: Vec<Placed>,
}

/// The whole patch applied in memory.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The file patches, in order.
    pub files: Vec<Planned>,
    /// The final state of every path the patch touches (`None`: removed), each once, in
    /// the order first touched.
    pub writes: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// The hunks applied with fuzz (`--allow-fuzz`), as `file:hunk:fuzz`.
    pub fuzz: Vec<String>,
}

/// The tree's files as the patch has changed them so far.
struct Overlay<'a> {
    tree: &'a Path,
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Overlay<'_> {
    fn get(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        if let Some((_, c)) = self.files.iter().find(|(p, _)| p == path) {
            return Ok(c.clone());
        }
        let full = self.tree.join(path);
        match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => std::fs::read(&full).map(Some).map_err(io(&full)),
            Ok(_) => Err(step(format!(
                "{}: the patch changes it, but it is not a regular file in the kernel tree",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&full)(e)),
        }
    }

    fn set(&mut self, path: &Path, content: Option<Vec<u8>>) {
        match self.files.iter_mut().find(|(p, _)| p == path) {
            Some(slot) => slot.1 = content,
            None => self.files.push((path.to_path_buf(), content)),
        }
    }
}

/// Which file a plain (non-git) `--- a/X` / `+++ b/Y` with X ≠ Y changes: the one that
/// exists, as GNU patch chooses; both or neither is an error.
fn pick_mismatched(o: &Overlay, f: &FilePatch, old: &Path, new: &Path) -> Result<PathBuf> {
    match (o.get(old)?.is_some(), o.get(new)?.is_some()) {
        (true, false) => Ok(old.to_path_buf()),
        (false, true) => Ok(new.to_path_buf()),
        (true, true) => Err(step_hint(
            format!(
                "patch line {}: the header names two files, --- {} and +++ {}, and both exist \
                 (GNU patch would change {}, git apply would refuse)",
                f.line,
                old.display(),
                new.display(),
                old.display()
            ),
            "make the --- and +++ names agree, or use git's rename headers for a rename",
        )),
        (false, false) => Err(missing(f.line, old)),
    }
}

fn missing(line: usize, path: &Path) -> Error {
    step_hint(
        format!(
            "{}: the patch changes this file (patch line {line}), but the kernel source has no such file",
            path.display()
        ),
        "check that the patch is for this kernel (-a) and that its paths have a/ and b/ prefixes",
    )
}

fn change_of(o: &Overlay, f: &FilePatch) -> Result<(PathBuf, Change)> {
    if f.binary {
        return Err(step(format!(
            "{}: a binary change (patch line {}) cannot be applied",
            f.path().display(),
            f.line
        )));
    }
    Ok(match (&f.old, &f.new) {
        (None, Some(n)) => (n.clone(), Change::Create),
        (Some(o), None) => (o.clone(), Change::Delete),
        (Some(old), Some(new)) if f.rename => (new.clone(), Change::Rename { from: old.clone() }),
        (Some(old), Some(new)) if f.copy => (new.clone(), Change::Copy { from: old.clone() }),
        (Some(old), Some(new)) if old == new => (new.clone(), Change::Modify),
        (Some(old), Some(new)) => (pick_mismatched(o, f, old, new)?, Change::Modify),
        (None, None) => {
            return Err(step(format!(
                "patch line {}: a file header without a file",
                f.line
            )))
        }
    })
}

/// Apply `f`'s hunks to `content`; `allow_fuzz` lets context differ by up to
/// [`hunks::FUZZ_SEARCH`] lines (recorded in `plan.fuzz`).
fn apply_hunks(
    f: &FilePatch,
    path: &Path,
    content: &[u8],
    allow_fuzz: bool,
    plan: &mut Plan,
) -> Result<(Vec<u8>, Vec<Placed>)> {
    let max = if allow_fuzz { hunks::FUZZ_SEARCH } else { 0 };
    let (out, placed) = hunks::apply(content, &f.hunks, max).map_err(|(i, miss)| {
        let h = &f.hunks[i];
        // The `@@ ... @@` part, without the function name git adds after it.
        let header = h.header.match_indices("@@").nth(1).map_or(h.header.as_str(), |(i, _)| &h.header[..i + 2]);
        let what = format!("{}: hunk #{} ({header}, patch line {})", path.display(), i + 1, h.line);
        match miss {
            hunks::Miss::NotFound => step_hint(
                format!("{what} does not apply: its context and removed lines are not in the file"),
                "rebase the patch onto the exact source of the target kernel (the linux-source package of the same Debian version)",
            ),
            hunks::Miss::AlreadyApplied => step_hint(
                format!("{what} is already applied: the file has its result (a reversed or previously applied patch)"),
                "the target's source already carries this change (a Debian backport?); drop it from the patch",
            ),
            hunks::Miss::NeedsFuzz(at) => step_hint(
                format!(
                    "{what} applies only with fuzz {} at line {}: {} line(s) of its context at an end do not match the source",
                    at.fuzz, at.line, at.fuzz
                ),
                "check the hunk against the target's source and rebase the patch; --allow-fuzz applies it anyway \
                 (recorded in the module's modinfo as kpatch_fuzz)",
            ),
        }
    })?;
    for (i, at) in placed.iter().enumerate() {
        if at.fuzz > 0 {
            plan.fuzz
                .push(format!("{}:{}:{}", path.display(), i + 1, at.fuzz));
        }
    }
    Ok((out, placed))
}

/// Apply the patch in memory to `tree`'s files.
pub fn plan(patch: &Patch, tree: &Path, allow_fuzz: bool) -> Result<Plan> {
    let mut o = Overlay {
        tree,
        files: Vec::new(),
    };
    let mut plan = Plan::default();
    for f in &patch.files {
        let (path, change) = change_of(&o, f)?;
        let source = match &change {
            Change::Rename { from } | Change::Copy { from } => from.clone(),
            _ => path.clone(),
        };
        let before = o.get(&source)?;
        let content = match (&change, before) {
            (Change::Create, Some(_)) => {
                return Err(step(format!(
                    "{}: the patch creates this file (patch line {}), but the kernel source has it already",
                    path.display(),
                    f.line
                )))
            }
            (Change::Create, None) => Vec::new(),
            (_, None) => return Err(missing(f.line, &source)),
            (_, Some(c)) => c,
        };
        if matches!(change, Change::Rename { .. } | Change::Copy { .. }) && o.get(&path)?.is_some()
        {
            return Err(step(format!(
                "{}: the patch renames or copies {} onto it (patch line {}), but it exists already",
                path.display(),
                source.display(),
                f.line
            )));
        }
        let (after, placed) = apply_hunks(f, &path, &content, allow_fuzz, &mut plan)?;
        match &change {
            Change::Delete if !after.is_empty() => {
                return Err(step(format!(
                    "{}: the patch deletes this file (patch line {}), but its removed lines are not the whole file",
                    path.display(),
                    f.line
                )))
            }
            Change::Delete => o.set(&path, None),
            Change::Rename { from } => {
                o.set(from, None);
                o.set(&path, Some(after));
            }
            _ => o.set(&path, Some(after)),
        }
        plan.files.push(Planned {
            path,
            change,
            placed,
        });
    }
    plan.writes = o.files;
    Ok(plan)
}

/// Write `plan` into the journal's tree: each path is recorded first (and, for a
/// package tree, remembered as pristine).
pub fn write(
    plan: &Plan,
    journal: &mut Journal,
    mut pristine: Option<&mut Pristine>,
) -> Result<()> {
    let tree = journal.tree().to_path_buf();
    for (path, _) in &plan.writes {
        if let Some(p) = pristine.as_deref_mut() {
            p.remember(&tree, path)?;
        }
        journal.record(path)?;
    }
    for (path, content) in &plan.writes {
        let full = tree.join(path);
        match content {
            Some(bytes) => {
                if let Some(d) = full.parent() {
                    std::fs::create_dir_all(d).map_err(io(d))?;
                }
                let mode = std::fs::metadata(&full).ok().map(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o7777
                });
                write_synced(&full, bytes, mode)?;
            }
            None => match std::fs::remove_file(&full) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&full)(e)),
                _ => {}
            },
        }
        crate::interrupt::pause_point("apply");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
