//! The kernel-artefact cache and [`Kernel`], the paths a test or a build needs.
//!
//! Layout, under the cache root (`$KPATCH_TESTBED_CACHE`, else `$XDG_CACHE_HOME/kpatch-testbed`,
//! else `~/.cache/kpatch-testbed`):
//!
//! ```text
//! <root>/lock                         flock held while anything below is created
//! <root>/<release>/manifest.json      written last: the kernel is complete (a `Kernel`)
//! <root>/<release>/debs/*.deb         the exact packages, pinned to the image's version
//! <root>/<release>/root/boot/vmlinuz-<release>
//! <root>/<release>/root/usr/src/linux-headers-<release>/   (Makefile include rewritten)
//! <root>/<release>/root/usr/src/linux-source-<series>.tar.xz
//! <root>/<release>/source/linux-source-<series>/{samples/livepatch,lib/livepatch,
//!                                                 tools/testing/selftests/livepatch}
//! <root>/<release>/modules/<name>-<hash>/             out-of-tree module builds
//! <root>/<release>/linux-source-<series>/              full tree (Kernel::full_source_tree)
//! <root>/<release>/root/usr/lib/debug/boot/{vmlinux,System.map}-<release>
//!                                                     (Kernel::debug_symbols)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::apt;
use crate::error::{Error, IoContext, Result};
use crate::series::{resolve, KernelSeries, Resolved};
use crate::util::{run, FileLock};

/// Source paths extracted from the tarball into `source/` (missing ones are tolerated except
/// the first).
pub const SOURCE_SUBSET: &[&str] = &[
    "samples/livepatch",
    "lib/livepatch",
    "tools/testing/selftests/livepatch",
];

/// The cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

/// How [`Cache::ensure_kernel`] may reach outside.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    /// Install missing host packages with apt-get (root only).
    pub install_host_packages: bool,
    /// Run `apt-get update` before resolving.
    pub update: bool,
    /// Never ask apt: use what the cache already holds for the series.
    pub offline: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            install_host_packages: true,
            update: false,
            offline: std::env::var_os("KPATCH_TESTBED_OFFLINE").is_some(),
        }
    }
}

/// One prepared kernel: every path is absolute and exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// Series and exact packages.
    pub resolved: Resolved,
    /// `<root>/<release>`.
    pub dir: PathBuf,
    /// The bootable, compressed kernel image.
    pub vmlinuz: PathBuf,
    /// `…/usr/src/linux-headers-<release>`, usable as `make -C <dir> M=…`.
    pub headers_dir: PathBuf,
    /// The headers' `.config`: the exact build configuration.
    pub config: PathBuf,
    /// `…/usr/src/linux-source-<series>.tar.xz`: Debian's patched source of this image.
    pub source_tarball: PathBuf,
    /// `source/linux-source-<series>`: the [`SOURCE_SUBSET`] of that tarball.
    pub source_subset: PathBuf,
    /// The downloaded packages.
    pub debs: Vec<PathBuf>,
}

impl Kernel {
    /// `uname -r` of this kernel.
    pub fn release(&self) -> &str {
        &self.resolved.release
    }
    /// Debian version all packages are pinned to.
    pub fn version(&self) -> &str {
        &self.resolved.version
    }
    /// The series.
    pub fn series(&self) -> KernelSeries {
        self.resolved.series
    }
    /// Directory for out-of-tree module builds against this kernel.
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("modules")
    }

    /// Unpacks the whole source tarball (≈1.3 GB) once into `<dir>/linux-source-<series>` and
    /// returns that tree; for tools (kpatch-build) that need the full source.
    pub fn full_source_tree(&self) -> Result<PathBuf> {
        let tree = self.dir.join(self.series().source_top_dir());
        let done = self.dir.join(".full-source-done");
        if done.exists() {
            return Ok(tree);
        }
        let _lock = FileLock::acquire(&self.dir.join("lock"))?;
        if !done.exists() {
            if tree.exists() {
                fs::remove_dir_all(&tree).at(&tree)?;
            }
            run(Command::new("tar")
                .arg("-xJf")
                .arg(&self.source_tarball)
                .arg("-C")
                .arg(&self.dir))?;
            fs::write(&done, b"").at(&done)?;
        }
        Ok(tree)
    }
}

/// The symbol-rich files of the `linux-image-<release>-dbg` package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugSymbols {
    /// `…/usr/lib/debug/boot/vmlinux-<release>`: the kernel with symbols and DWARF.
    pub vmlinux: PathBuf,
    /// `…/usr/lib/debug/boot/System.map-<release>`.
    pub system_map: PathBuf,
}

impl Kernel {
    /// Downloads `linux-image-<release>-dbg` (pinned; ≈0.9–1 GB) once and extracts only its
    /// `vmlinux` and `System.map` into `root/usr/lib/debug/boot` (≈1 minute); the `.deb` is
    /// deleted afterwards. For tools that need the running kernel's symbols (kpatch-build).
    pub fn debug_symbols(&self) -> Result<DebugSymbols> {
        let release = self.release();
        let boot = self.dir.join("root/usr/lib/debug/boot");
        let syms = DebugSymbols {
            vmlinux: boot.join(format!("vmlinux-{release}")),
            system_map: boot.join(format!("System.map-{release}")),
        };
        let done = self.dir.join(".debug-symbols-done");
        if done.exists() && syms.vmlinux.exists() && syms.system_map.exists() {
            return Ok(syms);
        }
        let _lock = FileLock::acquire(&self.dir.join("lock"))?;
        if !(done.exists() && syms.vmlinux.exists()) {
            let package = format!("linux-image-{release}-dbg");
            let debs = self.dir.join("debs");
            let deb = apt::download(&[(package, self.version().to_owned())], &debs)?;
            apt::extract_deb_members(
                &deb[0],
                &self.dir.join("root"),
                &[
                    &format!("./usr/lib/debug/boot/vmlinux-{release}"),
                    &format!("./usr/lib/debug/boot/System.map-{release}"),
                ],
            )?;
            fs::remove_file(&deb[0]).at(&deb[0])?;
            fs::write(&done, b"").at(&done)?;
        }
        Ok(syms)
    }
}

impl Cache {
    /// The cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default cache: `$KPATCH_TESTBED_CACHE`, `$XDG_CACHE_HOME/kpatch-testbed` or
    /// `$HOME/.cache/kpatch-testbed`.
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os("KPATCH_TESTBED_CACHE") {
            return Self::new(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Self::new(PathBuf::from(dir).join("kpatch-testbed"));
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
        Self::new(PathBuf::from(home).join(".cache/kpatch-testbed"))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the cache-wide lock (other processes preparing wait for it).
    pub fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.root.join("lock"))
    }

    /// The newest complete kernel of `series` already in the cache, without asking apt.
    pub fn cached_kernel(&self, series: KernelSeries) -> Result<Option<Kernel>> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(None);
        };
        let mut found: Vec<(std::time::SystemTime, Kernel)> = Vec::new();
        for entry in entries.flatten() {
            let manifest = entry.path().join("manifest.json");
            let Ok(meta) = fs::metadata(&manifest) else {
                continue;
            };
            let Ok(kernel) = read_manifest(&manifest) else {
                continue;
            };
            if kernel.series() == series {
                found.push((meta.modified().at(&manifest)?, kernel));
            }
        }
        found.sort_by_key(|(t, _)| *t);
        Ok(found.pop().map(|(_, k)| k))
    }

    /// Makes sure the current kernel of `series` is downloaded and extracted; returns its paths.
    pub fn ensure_kernel(&self, series: KernelSeries, opts: &PrepareOptions) -> Result<Kernel> {
        if opts.offline {
            return self.cached_kernel(series)?.ok_or_else(|| {
                Error::Cache(format!(
                    "offline, and {} holds no {series} kernel: run `testbed prepare --series {series}`",
                    self.root.display()
                ))
            });
        }
        fs::create_dir_all(&self.root).at(&self.root)?;
        let _lock = self.lock()?;
        if opts.update {
            apt::apt_get_update()?;
        }
        let resolved = match resolve(series) {
            Ok(r) => r,
            Err(first) if !opts.update => {
                tracing::warn!(error = %first, "resolving failed; running apt-get update");
                apt::apt_get_update().map_err(|_| first)?;
                resolve(series)?
            }
            Err(e) => return Err(e),
        };
        let dir = self.root.join(&resolved.release);
        let manifest = dir.join("manifest.json");
        if manifest.exists() {
            match read_manifest(&manifest) {
                Ok(kernel) if kernel.resolved == resolved && kernel.vmlinuz.exists() => {
                    return Ok(kernel)
                }
                Ok(_) => {
                    tracing::info!(dir = %dir.display(), "cached kernel is stale; rebuilding it")
                }
                Err(e) => tracing::warn!(error = %e, "unreadable manifest; rebuilding"),
            }
            fs::remove_file(&manifest).at(&manifest)?;
        }
        let start = Instant::now();
        let kernel = match populate(&dir, &resolved) {
            Ok(k) => k,
            Err(e) if !opts.update => {
                // Stale lists can name packages the mirror no longer has.
                tracing::warn!(error = %e, "populating failed; retrying after apt-get update");
                apt::apt_get_update().map_err(|_| e)?;
                let resolved = resolve(series)?;
                populate(&self.root.join(&resolved.release), &resolved)?
            }
            Err(e) => return Err(e),
        };
        tracing::info!(release = %kernel.release(), elapsed = ?start.elapsed(), "kernel cached");
        Ok(kernel)
    }
}

fn read_manifest(path: &Path) -> Result<Kernel> {
    let text = fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::Cache(format!("{}: {e}", path.display())))
}

/// Downloads and extracts everything for `resolved` into `dir`, then writes the manifest.
fn populate(dir: &Path, resolved: &Resolved) -> Result<Kernel> {
    let root = dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root).at(&root)?;
    }
    // Lazily made extras belong to the previous contents.
    for marker in [".full-source-done", ".debug-symbols-done"] {
        let m = dir.join(marker);
        if m.exists() {
            fs::remove_file(&m).at(&m)?;
        }
    }
    let debs = apt::download(&resolved.packages(), &dir.join("debs"))?;
    let [image, headers, common, kbuild, source] = <[PathBuf; 5]>::try_from(debs.clone())
        .map_err(|_| Error::Cache("expected five packages".into()))?;

    apt::extract_deb_members(&image, &root, &["./boot"])?;
    for deb in [&headers, &common, &kbuild, &source] {
        apt::extract_deb(deb, &root)?;
    }
    let release = &resolved.release;
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    let headers_dir = root.join(format!("usr/src/linux-headers-{release}"));
    let source_tarball = root.join(format!(
        "usr/src/{}.tar.xz",
        resolved.series.source_top_dir()
    ));
    for p in [&vmlinuz, &headers_dir, &source_tarball] {
        if !p.exists() {
            return Err(Error::Cache(format!(
                "expected {} after extraction",
                p.display()
            )));
        }
    }
    rewrite_headers_makefile(&headers_dir, &root)?;

    let source_dir = dir.join("source");
    let source_subset = extract_source_subset(&source_tarball, &source_dir, resolved.series)?;

    let kernel = Kernel {
        resolved: resolved.clone(),
        dir: dir.to_owned(),
        vmlinuz,
        config: headers_dir.join(".config"),
        headers_dir,
        source_tarball,
        source_subset,
        debs,
    };
    let manifest = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&kernel)
        .map_err(|e| Error::Cache(format!("serialising manifest: {e}")))?;
    fs::write(&manifest, text).at(&manifest)?;
    Ok(kernel)
}

/// The headers' Makefile includes the `-common` Makefile by absolute `/usr/src/…` path; point
/// it (and any other absolute `/usr/src` or `/usr/lib/linux-kbuild` include) into `root`.
fn rewrite_headers_makefile(headers_dir: &Path, root: &Path) -> Result<()> {
    let makefile = headers_dir.join("Makefile");
    let text = fs::read_to_string(&makefile).at(&makefile)?;
    let prefix = root.display().to_string();
    let rewritten: String = text
        .lines()
        .map(|line| match line.strip_prefix("include /usr/") {
            Some(rest) => format!("include {prefix}/usr/{rest}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    fs::write(&makefile, rewritten).at(&makefile)
}

/// Extracts [`SOURCE_SUBSET`] (without decompressing to disk the rest) into `dest`.
fn extract_source_subset(tarball: &Path, dest: &Path, series: KernelSeries) -> Result<PathBuf> {
    if dest.exists() {
        fs::remove_dir_all(dest).at(dest)?;
    }
    fs::create_dir_all(dest).at(dest)?;
    let top = series.source_top_dir();
    let members: Vec<String> = SOURCE_SUBSET.iter().map(|p| format!("{top}/{p}")).collect();
    let result = run(Command::new("tar")
        .arg("-xJf")
        .arg(tarball)
        .arg("-C")
        .arg(dest)
        .args(&members));
    if let Err(Error::Command { output, .. }) = &result {
        // GNU tar exits 2 when a member is absent; accept that for the optional members.
        let only_missing = output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.contains("Not found in archive") || l.contains("Exiting with failure"));
        if !only_missing {
            result?;
        }
    }
    let subset = dest.join(&top);
    let required = subset.join(SOURCE_SUBSET[0]);
    if !required.exists() {
        return Err(Error::Cache(format!(
            "{} has no {}",
            tarball.display(),
            SOURCE_SUBSET[0]
        )));
    }
    Ok(subset)
}
