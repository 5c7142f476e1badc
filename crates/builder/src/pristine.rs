//! Pristine copies of the files builds have touched in a prepared package tree (never in
//! a user's own tree, which the user may change between builds). Before each build,
//! every such file is compared with its copy and put back if it differs: the tree is not
//! trusted blindly, even if a journal was lost.
//!
//! Layout: `index.json` (path → content hash, or `null` for a path that did not exist)
//! and `files/<hash>` (the contents).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{io, step, Result};
use crate::journal::{hash, write_synced};

/// The pristine record of one tree.
pub struct Pristine {
    dir: PathBuf,
    index: BTreeMap<PathBuf, Option<u64>>,
}

impl Pristine {
    /// Open (or start) the record kept in `dir`.
    pub fn open(dir: &Path) -> Result<Pristine> {
        let path = dir.join("index.json");
        let index = match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text)
                .map_err(|e| step(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Pristine {
            dir: dir.to_path_buf(),
            index,
        })
    }

    fn copy(&self, h: u64) -> PathBuf {
        self.dir.join("files").join(format!("{h:016x}"))
    }

    /// Remember `path` (relative to `tree`) as it is now, unless it is known already.
    /// Call it only while the tree is pristine, before the build touches the file.
    pub fn remember(&mut self, tree: &Path, path: &Path) -> Result<()> {
        if self.index.contains_key(path) {
            return Ok(());
        }
        let full = tree.join(path);
        let h = match std::fs::read(&full) {
            Ok(bytes) => {
                let h = hash(&bytes);
                let copy = self.copy(h);
                if !copy.exists() {
                    let d = self.dir.join("files");
                    std::fs::create_dir_all(&d).map_err(io(&d))?;
                    write_synced(&copy, &bytes, None)?;
                }
                Some(h)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&full)(e)),
        };
        self.index.insert(path.to_path_buf(), h);
        let text = serde_json::to_vec_pretty(&self.index)
            .map_err(|e| step(format!("pristine index: {e}")))?;
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        write_synced(&self.dir.join("index.json"), &text, None)
    }

    /// Compare every remembered file of `tree` with its pristine state and put back
    /// those that differ; the paths put back.
    pub fn check(&self, tree: &Path) -> Result<Vec<PathBuf>> {
        let mut fixed = Vec::new();
        for (path, want) in &self.index {
            let full = tree.join(path);
            let have = match std::fs::read(&full) {
                Ok(b) => Some(hash(&b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io(&full)(e)),
            };
            if have == *want {
                continue;
            }
            match want {
                Some(h) => {
                    let copy = self.copy(*h);
                    let bytes = std::fs::read(&copy).map_err(io(&copy))?;
                    if hash(&bytes) != *h {
                        return Err(step(format!(
                            "{}: the pristine copy of {} is damaged",
                            copy.display(),
                            path.display()
                        )));
                    }
                    if let Some(d) = full.parent() {
                        std::fs::create_dir_all(d).map_err(io(d))?;
                    }
                    write_synced(&full, &bytes, None)?;
                }
                None => {
                    if full.is_dir() {
                        std::fs::remove_dir_all(&full).map_err(io(&full))?;
                    } else {
                        std::fs::remove_file(&full).map_err(io(&full))?;
                    }
                }
            }
            fixed.push(path.clone());
        }
        Ok(fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_files_are_put_back() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("fs")).unwrap();
        std::fs::write(t.join("fs/a.c"), "one\n").unwrap();
        let mut p = Pristine::open(&d.path().join("p")).unwrap();
        p.remember(&t, Path::new("fs/a.c")).unwrap();
        p.remember(&t, Path::new("fs/new.c")).unwrap();
        assert!(p.check(&t).unwrap().is_empty());
        std::fs::write(t.join("fs/a.c"), "stray change\n").unwrap();
        std::fs::write(t.join("fs/new.c"), "left behind\n").unwrap();
        // A second remember does not take the changed content as pristine.
        p.remember(&t, Path::new("fs/a.c")).unwrap();
        let p = Pristine::open(&d.path().join("p")).unwrap();
        let fixed = p.check(&t).unwrap();
        assert_eq!(fixed.len(), 2);
        assert_eq!(std::fs::read_to_string(t.join("fs/a.c")).unwrap(), "one\n");
        assert!(!t.join("fs/new.c").exists());
    }
}
