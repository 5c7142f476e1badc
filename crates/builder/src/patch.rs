//! Source patches: the files they touch, applying them to the tree and taking them
//! back out, so that the prepared tree is always left pristine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{io, step, step_hint, Result};

/// Files a unified diff changes (`+++ b/<path>` with one level stripped), in order.
pub fn changed_files(patch: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut old_path: Option<String> = None;
    for line in patch.lines() {
        if let Some(rest) = line.strip_prefix("--- ") {
            old_path = Some(rest.split('\t').next().unwrap_or("").trim().to_string());
        } else if let Some(rest) = line.strip_prefix("+++ ") {
            let new_path = rest.split('\t').next().unwrap_or("").trim();
            let path = if new_path == "/dev/null" {
                old_path.take().unwrap_or_default()
            } else {
                new_path.to_string()
            };
            let stripped = path
                .split_once('/')
                .map(|(_, p)| p.to_string())
                .unwrap_or(path);
            if stripped.is_empty() || stripped.contains("..") {
                return Err(step(format!("patch names an unusable path: {rest}")));
            }
            let p = PathBuf::from(stripped);
            if !files.contains(&p) {
                files.push(p);
            }
        }
    }
    if files.is_empty() {
        return Err(step_hint(
            "the patch changes no files",
            "give a unified diff (git diff / diff -u) with a/ and b/ prefixes",
        ));
    }
    Ok(files)
}

/// A patch applied to the tree; dropping it restores every touched file.
pub struct Applied {
    tree: PathBuf,
    backups: Vec<(PathBuf, Option<Vec<u8>>)>,
}

fn patch_cmd(tree: &Path, patch_file: &Path, dry: bool) -> Command {
    let mut c = Command::new("patch");
    c.arg("-p1")
        .arg("--forward")
        .arg("--batch")
        .arg("--no-backup-if-mismatch")
        .arg("-r")
        .arg("-")
        .arg("-d");
    c.arg(tree).arg("-i").arg(patch_file);
    if dry {
        c.arg("--dry-run");
    }
    c
}

/// Check that the patch applies cleanly, and say which hunk does not.
pub fn check_applies(tree: &Path, patch_file: &Path) -> Result<()> {
    let out = patch_cmd(tree, patch_file, true)
        .output()
        .map_err(|e| step(format!("cannot run patch: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("FAILED")
                || l.contains("can't find file")
                || l.contains("No file to patch")
                || l.contains("Reversed")
        })
        .collect();
    Err(step_hint(
        format!(
            "the patch does not apply to this kernel's source:\n    {}",
            if failed.is_empty() { text.trim().to_string() } else { failed.join("\n    ") }
        ),
        "rebase the patch onto the exact source of the target kernel (the linux-source package of the same Debian version)",
    ))
}

/// Apply the patch, remembering the original contents of every file it touches.
pub fn apply(tree: &Path, patch_file: &Path, files: &[PathBuf]) -> Result<Applied> {
    let mut backups = Vec::new();
    for f in files {
        let p = tree.join(f);
        backups.push((f.clone(), std::fs::read(&p).ok()));
    }
    let applied = Applied {
        tree: tree.to_path_buf(),
        backups,
    };
    let out = patch_cmd(tree, patch_file, false)
        .output()
        .map_err(|e| step(format!("cannot run patch: {e}")))?;
    if !out.status.success() {
        return Err(step(format!(
            "patch failed: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    Ok(applied)
}

impl Applied {
    /// Put the original files back (also done on drop).
    pub fn revert(mut self) -> Result<()> {
        self.restore()
    }

    fn restore(&mut self) -> Result<()> {
        for (f, content) in self.backups.drain(..) {
            let p = self.tree.join(&f);
            match content {
                Some(c) => std::fs::write(&p, c).map_err(io(&p))?,
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files() {
        let p = "diff --git a/fs/proc/meminfo.c b/fs/proc/meminfo.c\n--- a/fs/proc/meminfo.c\n+++ b/fs/proc/meminfo.c\n@@ -1 +1 @@\n-a\n+b\n--- a/include/x.h\t2020\n+++ b/include/x.h\t2021\n";
        assert_eq!(
            changed_files(p).unwrap(),
            vec![
                PathBuf::from("fs/proc/meminfo.c"),
                PathBuf::from("include/x.h")
            ]
        );
        assert!(changed_files("hello").is_err());
    }

    #[test]
    fn apply_and_revert() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.c"), "one\ntwo\n").unwrap();
        let patch = "--- a/a.c\n+++ b/a.c\n@@ -1,2 +1,2 @@\n one\n-two\n+three\n";
        let pf = d.path().join("p.patch");
        std::fs::write(&pf, patch).unwrap();
        let files = changed_files(patch).unwrap();
        check_applies(d.path(), &pf).unwrap();
        let a = apply(d.path(), &pf, &files).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("a.c")).unwrap(),
            "one\nthree\n"
        );
        a.revert().unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("a.c")).unwrap(),
            "one\ntwo\n"
        );
        let bad = d.path().join("bad.patch");
        std::fs::write(
            &bad,
            "--- a/a.c\n+++ b/a.c\n@@ -1,2 +1,2 @@\n zero\n-nine\n+three\n",
        )
        .unwrap();
        let e = check_applies(d.path(), &bad).unwrap_err().to_string();
        assert!(e.contains("does not apply") && e.contains("FAILED"), "{e}");
    }
}
