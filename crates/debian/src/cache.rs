//! The one cache shared by kpatch-build and the test bed.
//!
//! Root: `--cache-dir`, else `$KPATCH_CACHE`, else `~/.kpatch`. Layout:
//! ```text
//! apt/                    the private apt configuration and its lists (crate::apt)
//! debs/                   every downloaded .deb, once (name_version_arch.deb)
//! debs/.verified/         what was checked about each (hash from the signed index, or
//!                         control fields only), keyed by size, mtime and inode
//! roots/<codename>/       build roots (crate::buildroot)
//! <release>/pkg/          unpacked packages: headers, kbuild, boot/, the source tarball,
//!                         the -dbg vmlinux and modules (crate::unpack)
//! <release>/…             kpatch-build's prepared tree (src/, orig/, …) and the test
//!                         bed's files (testbed/)
//! ```
//! Caches of earlier versions are read: a `.deb` found in `<root>/<release>/debs/` (the old
//! kpatch-build layout) or in the old test bed cache (`~/.cache/kpatch-testbed/<release>/debs`)
//! is hard-linked into the pool and verified like a download, so nothing is fetched twice.

use std::path::{Path, PathBuf};

use crate::error::{io, Result};
use crate::util::{human, usage};

/// The cache root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `$KPATCH_CACHE`, else `~/.kpatch`.
    pub fn from_env() -> Cache {
        if let Some(d) = std::env::var_os("KPATCH_CACHE").filter(|d| !d.is_empty()) {
            return Cache::new(d);
        }
        Cache::new(home().join(".kpatch"))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The `.deb` pool.
    pub fn pool(&self) -> PathBuf {
        self.root.join("debs")
    }
    /// The private apt configuration.
    pub fn apt_dir(&self) -> PathBuf {
        self.root.join("apt")
    }
    /// Build roots.
    pub fn roots_dir(&self) -> PathBuf {
        self.root.join("roots")
    }
    /// One release's directory.
    pub fn release_dir(&self, release: &str) -> PathBuf {
        self.root.join(release)
    }

    /// Directories where earlier versions kept `.deb` files.
    pub fn legacy_deb_dirs(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.root.clone()];
        let xdg = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home().join(".cache"));
        roots.push(xdg.join("kpatch-testbed"));
        if let Some(t) = std::env::var_os("KPATCH_TESTBED_CACHE") {
            roots.push(PathBuf::from(t));
        }
        let mut out = Vec::new();
        for r in roots {
            let Ok(rd) = std::fs::read_dir(&r) else {
                continue;
            };
            for e in rd.flatten() {
                let d = e.path().join("debs");
                if d.is_dir() && d != self.pool() {
                    out.push(d);
                }
            }
        }
        out
    }

    /// What the cache holds, by part.
    pub fn size_report(&self) -> SizeReport {
        let mut parts = Vec::new();
        // Hard links (a kernel's old debs/ and the pool) count once, in the first part.
        let mut seen = std::collections::HashSet::new();
        let mut add = |name: String, path: PathBuf| {
            if path.exists() {
                let size = usage(&path, &mut seen);
                parts.push((name, path, size));
            }
        };
        add("apt lists".into(), self.apt_dir());
        add("downloaded packages".into(), self.pool());
        if let Ok(rd) = std::fs::read_dir(self.roots_dir()) {
            let mut v: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            v.sort();
            for p in v {
                let n = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                add(format!("build root {n}"), p);
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            let mut v: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    !matches!(n.as_ref(), "apt" | "debs" | "roots")
                })
                .collect();
            v.sort();
            for p in v {
                let n = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                match n.as_str() {
                    "logs" => add("build logs".into(), p),
                    _ => add(format!("kernel {n}"), p),
                }
            }
        }
        SizeReport {
            root: self.root.clone(),
            parts,
        }
    }

    /// Removes what `what` selects; returns the bytes freed.
    pub fn clean(&self, what: Clean) -> Result<u64> {
        let mut freed = 0;
        let report = self.size_report();
        for (name, path, size) in &report.parts {
            let remove = match what {
                Clean::All => true,
                Clean::Kernels => {
                    name.starts_with("kernel ")
                        || name == "downloaded packages"
                        || name == "build logs"
                }
            };
            if remove {
                if path.is_dir() {
                    std::fs::remove_dir_all(path).map_err(io(path))?;
                } else {
                    std::fs::remove_file(path).map_err(io(path))?;
                }
                freed += size;
            }
        }
        Ok(freed)
    }
}

/// What [`Cache::clean`] removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clean {
    /// Downloaded packages and every kernel's files; build roots and apt lists stay.
    Kernels,
    /// Everything.
    All,
}

/// Sizes of the cache's parts.
#[derive(Clone, Debug)]
pub struct SizeReport {
    /// The cache root.
    pub root: PathBuf,
    /// `(name, path, bytes)`.
    pub parts: Vec<(String, PathBuf, u64)>,
}

impl SizeReport {
    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.2).sum()
    }
}

impl std::fmt::Display for SizeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "cache {}:", self.root.display())?;
        for (name, _, size) in &self.parts {
            writeln!(f, "  {:>10}  {name}", human(*size))?;
        }
        write!(f, "  {:>10}  total", human(self.total()))
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_report_and_clean() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(dir.path());
        for d in [
            "apt/lists",
            "debs",
            "roots/trixie",
            "6.12.1+deb13-amd64/pkg",
            "logs",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("debs/a.deb"), vec![1u8; 100_000]).unwrap();
        // A hard link (an old cache's debs/) counts once, in the pool.
        std::fs::create_dir_all(dir.path().join("6.12.1+deb13-amd64/debs")).unwrap();
        std::fs::hard_link(
            dir.path().join("debs/a.deb"),
            dir.path().join("6.12.1+deb13-amd64/debs/a.deb"),
        )
        .unwrap();
        std::fs::write(dir.path().join("roots/trixie.lock"), "").unwrap();
        let r = c.size_report();
        let names: Vec<&str> = r.parts.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "apt lists",
                "downloaded packages",
                "build root trixie",
                "kernel 6.12.1+deb13-amd64",
                "build logs"
            ]
        );
        let pool = r.parts[1].2;
        assert!(pool >= 100_000, "{pool}");
        assert!(r.parts[3].2 < 100_000, "the hard link counted twice");
        assert!(r.to_string().contains("total"));
        c.clean(Clean::Kernels).unwrap();
        assert!(dir.path().join("roots/trixie").exists() && dir.path().join("apt").exists());
        assert!(!dir.path().join("debs").exists() && !dir.path().join("logs").exists());
        c.clean(Clean::All).unwrap();
        assert!(!dir.path().join("roots/trixie").exists());
    }
}
