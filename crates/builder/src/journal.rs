//! The journal of a build's changes to a kernel tree: every file is recorded (its
//! content saved, or noted as absent) before it is touched, so that the tree can be put
//! back exactly — at the end of the build, when it fails or is interrupted, and, for a
//! build that was killed, by the next build before it does anything else (under the
//! release lock).
//!
//! Layout of the journal directory:
//! ```text
//! manifest.json   the tree and the entries, in the order they were recorded
//! <n>             saved content of entry n
//! ```
//! The manifest is replaced atomically after each saved file is synced, so it never
//! names a file that is not there.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{io, step, step_hint, Result};

const MANIFEST: &str = "manifest.json";

/// One recorded path (relative to the tree).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    path: PathBuf,
    /// The saved content's file in the journal, with its hash and mode; `None`: the path
    /// did not exist (it is removed on roll-back, recursively for a directory).
    saved: Option<Saved>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Saved {
    file: String,
    hash: u64,
    mode: u32,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Manifest {
    tree: PathBuf,
    entries: Vec<Entry>,
}

/// An open journal for changes to one tree.
pub struct Journal {
    dir: PathBuf,
    manifest: Manifest,
    done: bool,
}

/// The content hash the journal and the pristine record use.
pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write `bytes` to `path` through a synced temporary file in the same directory.
pub fn write_synced(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.kpatch-tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    if let Some(m) = mode {
        f.set_permissions(std::fs::Permissions::from_mode(m))
            .map_err(io(&tmp))?;
    }
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir);
    Ok(())
}

impl Journal {
    /// Start a journal in `dir` for changes to `tree`. A journal already there is an
    /// error: [`Journal::recover`] must have run first.
    pub fn begin(dir: &Path, tree: &Path) -> Result<Journal> {
        if dir.join(MANIFEST).exists() {
            return Err(step_hint(
                format!(
                    "{}: a journal of an earlier build is still there",
                    dir.display()
                ),
                "this is a bug: the journal should have been rolled back when the build started",
            ));
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let j = Journal {
            dir: dir.to_path_buf(),
            manifest: Manifest {
                tree: tree.to_path_buf(),
                entries: Vec::new(),
            },
            done: false,
        };
        j.save()?;
        Ok(j)
    }

    fn save(&self) -> Result<()> {
        let text =
            serde_json::to_vec_pretty(&self.manifest).map_err(|e| step(format!("journal: {e}")))?;
        write_synced(&self.dir.join(MANIFEST), &text, None)
    }

    /// The tree this journal is about.
    pub fn tree(&self) -> &Path {
        &self.manifest.tree
    }

    /// Is `path` (relative to the tree) recorded already?
    pub fn has(&self, path: &Path) -> bool {
        self.manifest.entries.iter().any(|e| e.path == path)
    }

    /// Record `path` (relative to the tree) before it is changed: its content is saved
    /// (or its absence noted). Missing parent directories are recorded too, so that a
    /// roll-back removes the directories a new file needed.
    pub fn record(&mut self, path: &Path) -> Result<()> {
        if self.has(path) {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut parent = path.parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            if self.manifest.tree.join(d).exists() {
                break;
            }
            missing.push(d.to_path_buf());
            parent = d.parent();
        }
        for d in missing.into_iter().rev() {
            if !self.has(&d) {
                self.manifest.entries.push(Entry {
                    path: d,
                    saved: None,
                });
            }
        }
        let full = self.manifest.tree.join(path);
        let saved = match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.is_file() => {
                let bytes = std::fs::read(&full).map_err(io(&full))?;
                let file = self.manifest.entries.len().to_string();
                write_synced(&self.dir.join(&file), &bytes, None)?;
                Some(Saved {
                    file,
                    hash: hash(&bytes),
                    mode: meta.permissions().mode() & 0o7777,
                })
            }
            Ok(_) => {
                return Err(step(format!(
                    "{}: not a regular file; the patch cannot change it",
                    full.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&full)(e)),
        };
        self.manifest.entries.push(Entry {
            path: path.to_path_buf(),
            saved,
        });
        self.save()
    }

    /// Put every recorded path back as it was and remove the journal; the paths that
    /// were put back.
    pub fn roll_back(mut self) -> Result<Vec<PathBuf>> {
        self.done = true;
        restore(&self.dir, &self.manifest)
    }

    /// Roll back the journal a killed build left in `dir`, if there is one; the paths
    /// that were put back.
    pub fn recover(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
        if !dir.exists() {
            return Ok(None);
        }
        let m = dir.join(MANIFEST);
        let manifest: Manifest = match std::fs::read(&m) {
            Ok(text) => serde_json::from_slice(&text).map_err(|e| {
                step_hint(
                    format!("{}: unreadable journal: {e}", m.display()),
                    "the kernel tree may be modified: remove the release's cache directory so that it is prepared again",
                )
            })?,
            // Nothing was recorded, so nothing was touched.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(e) => return Err(io(&m)(e)),
        };
        restore(dir, &manifest).map(Some)
    }
}

fn restore(dir: &Path, m: &Manifest) -> Result<Vec<PathBuf>> {
    let mut restored = Vec::new();
    for e in m.entries.iter().rev() {
        let full = m.tree.join(&e.path);
        match &e.saved {
            Some(s) => {
                let from = dir.join(&s.file);
                let bytes = std::fs::read(&from).map_err(io(&from))?;
                if hash(&bytes) != s.hash {
                    return Err(step(format!(
                        "{}: the journal's copy of {} is damaged",
                        from.display(),
                        e.path.display()
                    )));
                }
                let same = std::fs::read(&full)
                    .map(|b| hash(&b) == s.hash)
                    .unwrap_or(false);
                if !same {
                    write_synced(&full, &bytes, Some(s.mode))?;
                    restored.push(e.path.clone());
                }
            }
            None => match std::fs::symlink_metadata(&full) {
                Ok(meta) => {
                    if meta.is_dir() {
                        std::fs::remove_dir_all(&full).map_err(io(&full))?;
                    } else {
                        std::fs::remove_file(&full).map_err(io(&full))?;
                    }
                    restored.push(e.path.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(io(&full)(err)),
            },
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    Ok(restored)
}

impl Drop for Journal {
    /// A journal dropped without [`Journal::roll_back`] (a panic) is rolled back here.
    fn drop(&mut self) {
        if !self.done {
            let _ = restore(&self.dir, &self.manifest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("t/fs")).unwrap();
        std::fs::write(d.path().join("t/fs/a.c"), "one\n").unwrap();
        std::fs::write(d.path().join("t/fs/b.c"), "two\n").unwrap();
        d
    }

    #[test]
    fn roll_back_restores_changed_created_and_deleted() {
        let d = tree();
        let t = d.path().join("t");
        let mut j = Journal::begin(&d.path().join("j"), &t).unwrap();
        for p in ["fs/a.c", "fs/b.c", "fs/new/dir/c.c"] {
            j.record(Path::new(p)).unwrap();
        }
        std::fs::write(t.join("fs/a.c"), "changed\n").unwrap();
        std::fs::remove_file(t.join("fs/b.c")).unwrap();
        std::fs::create_dir_all(t.join("fs/new/dir")).unwrap();
        std::fs::write(t.join("fs/new/dir/c.c"), "new\n").unwrap();
        let mut back = j.roll_back().unwrap();
        back.sort();
        assert_eq!(back.len(), 5, "{back:?}");
        assert_eq!(std::fs::read_to_string(t.join("fs/a.c")).unwrap(), "one\n");
        assert_eq!(std::fs::read_to_string(t.join("fs/b.c")).unwrap(), "two\n");
        assert!(!t.join("fs/new").exists());
        assert!(!d.path().join("j").exists());
    }

    #[test]
    fn a_killed_build_is_recovered_from_the_manifest() {
        let d = tree();
        let t = d.path().join("t");
        let jdir = d.path().join("j");
        let mut j = Journal::begin(&jdir, &t).unwrap();
        j.record(Path::new("fs/a.c")).unwrap();
        std::fs::write(t.join("fs/a.c"), "changed\n").unwrap();
        // As if the process died: no roll-back, no Drop.
        std::mem::forget(j);
        assert!(Journal::begin(&jdir, &t).is_err());
        let back = Journal::recover(&jdir).unwrap().unwrap();
        assert_eq!(back, vec![PathBuf::from("fs/a.c")]);
        assert_eq!(std::fs::read_to_string(t.join("fs/a.c")).unwrap(), "one\n");
        assert_eq!(Journal::recover(&jdir).unwrap(), None);
    }

    #[test]
    fn drop_rolls_back() {
        let d = tree();
        let t = d.path().join("t");
        {
            let mut j = Journal::begin(&d.path().join("j"), &t).unwrap();
            j.record(Path::new("fs/a.c")).unwrap();
            std::fs::write(t.join("fs/a.c"), "changed\n").unwrap();
        }
        assert_eq!(std::fs::read_to_string(t.join("fs/a.c")).unwrap(), "one\n");
    }
}
