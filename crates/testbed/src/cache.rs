//! The kernel artefacts a test needs, and [`Kernel`], their paths.
//!
//! Everything Debian (resolution, downloads, unpacking, build roots) is the `debian` crate's,
//! in the cache kpatch-build uses too (`$KPATCH_CACHE`, else `~/.kpatch`; see
//! `debian::cache`), so a package is downloaded once for both. The test bed's own files:
//!
//! ```text
//! <root>/<release>/pkg/…                          unpacked packages (shared with kpatch-build)
//! <root>/<release>/testbed/manifest.json          written last: the kernel is complete
//! <root>/<release>/testbed/source/linux-source-<series>/{samples/livepatch,lib/livepatch,
//!                                        tools/testing/selftests/livepatch}
//! <root>/<release>/testbed/modules/<name>-<hash>/ out-of-tree module builds
//! <root>/<release>/testbed/linux-source-<series>/ full tree (Kernel::full_source_tree)
//! <root>/<release>/testbed/vmlinux-<release>      the ELF inside the vmlinuz (Guest::pvh)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::series::KernelSeries;
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
    /// Re-read the archive's indexes first, however recent they are.
    pub update: bool,
    /// Never contact the archive: use the lists and packages already in the cache.
    pub offline: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            install_host_packages: true,
            update: false,
            offline: debian::Options::from_env().offline,
        }
    }
}

/// One prepared kernel: every path is absolute and exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// The target asked for (`6.1`, `trixie`, …).
    pub target: KernelSeries,
    /// The exact release and packages.
    pub resolved: debian::Release,
    /// The cache root (shared with kpatch-build).
    pub cache_root: PathBuf,
    /// `<root>/<release>/testbed`.
    pub dir: PathBuf,
    /// The bootable, compressed kernel image.
    pub vmlinuz: PathBuf,
    /// `…/usr/src/linux-headers-<release>`, usable as `make -C <dir> M=…` in the build root.
    pub headers_dir: PathBuf,
    /// The headers' `.config`: the exact build configuration.
    pub config: PathBuf,
    /// `…/usr/src/linux-source-<series>.tar.xz`: Debian's patched source of this image.
    pub source_tarball: PathBuf,
    /// `source/linux-source-<series>`: the [`SOURCE_SUBSET`] of that tarball.
    pub source_subset: PathBuf,
    /// The pinned packages: image, headers, their dependencies, source.
    pub debs: Vec<PathBuf>,
    /// The build root of the kernel's distribution (modules are built in it).
    pub build_root: PathBuf,
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
    /// The upstream series (`6.1`, `6.12`).
    pub fn series(&self) -> &str {
        &self.resolved.series
    }
    /// Directory for out-of-tree module builds against this kernel.
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("modules")
    }
    /// `<root>/<release>`: everything of this release (bind-mounted into the build root).
    pub fn release_dir(&self) -> PathBuf {
        self.cache_root.join(self.release())
    }
    /// The shared cache.
    pub fn cache(&self) -> debian::Cache {
        debian::Cache::new(&self.cache_root)
    }
    /// The release's unpacked packages.
    pub fn files(&self) -> debian::KernelFiles {
        debian::KernelFiles::new(&self.cache(), self.resolved.clone())
    }
    /// The build root this kernel's modules are compiled in.
    pub fn root(&self) -> Result<debian::BuildRoot> {
        debian::BuildRoot::existing(&self.cache(), &self.resolved.codename).ok_or_else(|| {
            Error::Cache(format!(
                "no build root for {} in {}: run `testbed prepare`",
                self.resolved.codename,
                self.cache_root.display()
            ))
        })
    }

    /// Unpacks the whole source tarball (≈1.3 GB) once into `<dir>/linux-source-<series>` and
    /// returns that tree; for tools that need the full source.
    pub fn full_source_tree(&self) -> Result<PathBuf> {
        let tree = self.dir.join(format!("linux-source-{}", self.series()));
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
    /// The `-dbg` package's `vmlinux` and `System.map` (≈1 GB download, shared with
    /// kpatch-build, extracted once).
    pub fn debug_symbols(&self) -> Result<DebugSymbols> {
        let archive = debian::Archive::open(&self.cache(), debian::Options::from_env())?;
        let vmlinux = self.files().ensure_dbg_vmlinux(&archive)?;
        Ok(DebugSymbols {
            system_map: vmlinux.with_file_name(format!("System.map-{}", self.release())),
            vmlinux,
        })
    }
}

impl Cache {
    /// The cache at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The shared cache: `$KPATCH_CACHE`, else `~/.kpatch` (`$KPATCH_TESTBED_CACHE`, the test
    /// bed's own cache of earlier versions, still wins when set).
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os("KPATCH_TESTBED_CACHE").filter(|d| !d.is_empty()) {
            return Self::new(dir);
        }
        Self::new(debian::Cache::from_env().root())
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes sure the kernel `target` names is downloaded, unpacked and has its build root;
    /// returns its paths.
    pub fn ensure_kernel(&self, target: &KernelSeries, opts: &PrepareOptions) -> Result<Kernel> {
        let cache = debian::Cache::new(&self.root);
        let mut archive = debian::Archive::open(
            &cache,
            debian::Options {
                offline: opts.offline,
                ..debian::Options::from_env()
            },
        )?;
        if opts.update && !opts.offline {
            archive.refresh()?;
        }
        let resolved = archive.resolve(target.as_str())?;
        let dir = cache.release_dir(&resolved.release).join("testbed");
        let manifest = dir.join("manifest.json");
        if let Ok(kernel) = read_manifest(&manifest) {
            if kernel.resolved == resolved
                && kernel.vmlinuz.exists()
                && kernel.root().is_ok()
                && kernel.target == *target
            {
                return Ok(kernel);
            }
        }
        fs::create_dir_all(&dir).at(&dir)?;
        let _lock = FileLock::acquire(&dir.join("lock"))?;
        let start = Instant::now();
        let kernel = populate(&archive, target, &resolved, &dir)?;
        tracing::info!(release = %kernel.release(), elapsed = ?start.elapsed(), "kernel ready");
        Ok(kernel)
    }
}

fn read_manifest(path: &Path) -> Result<Kernel> {
    let text = fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::Cache(format!("{}: {e}", path.display())))
}

/// Fetches and unpacks what a test needs, makes the build root, writes the manifest.
fn populate(
    archive: &debian::Archive,
    target: &KernelSeries,
    resolved: &debian::Release,
    dir: &Path,
) -> Result<Kernel> {
    let files = debian::KernelFiles::new(archive.cache(), resolved.clone());
    let (headers_dir, warnings) = files.ensure_headers(archive)?;
    let vmlinuz = files.ensure_vmlinuz(archive)?;
    let (source_tarball, warning) = files.ensure_source_tarball(archive)?;
    for w in warnings.iter().chain(&warning) {
        tracing::warn!("{w}");
    }
    let compiler = resolved.compiler.as_deref().unwrap_or("gcc");
    let root =
        debian::BuildRoot::ensure(archive.cache(), archive.apt(), &resolved.codename, compiler)?;
    if let Some(t) = root.created_in {
        tracing::info!(codename = %resolved.codename, seconds = t.as_secs_f64(), "build root created");
    }
    let source_subset =
        extract_source_subset(&source_tarball, &dir.join("source"), &resolved.series)?;
    let mut debs = Vec::new();
    for p in std::iter::once(&resolved.image).chain(resolved.build_packages().iter()) {
        debs.push(archive.fetch(p)?.path);
    }
    let kernel = Kernel {
        target: target.clone(),
        resolved: resolved.clone(),
        cache_root: archive.cache().root().to_path_buf(),
        dir: dir.to_owned(),
        vmlinuz,
        config: headers_dir.join(".config"),
        headers_dir,
        source_tarball,
        source_subset,
        debs,
        build_root: root.dir,
    };
    let manifest = dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&kernel)
        .map_err(|e| Error::Cache(format!("serialising manifest: {e}")))?;
    let tmp = manifest.with_extension("tmp");
    fs::write(&tmp, text).at(&tmp)?;
    fs::rename(&tmp, &manifest).at(&manifest)?;
    Ok(kernel)
}

/// Extracts [`SOURCE_SUBSET`] (without decompressing to disk the rest) into `dest`.
fn extract_source_subset(tarball: &Path, dest: &Path, series: &str) -> Result<PathBuf> {
    let top = format!("linux-source-{series}");
    let subset = dest.join(&top);
    let done = dest.join(".done");
    if done.exists() && subset.join(SOURCE_SUBSET[0]).exists() {
        return Ok(subset);
    }
    if dest.exists() {
        fs::remove_dir_all(dest).at(dest)?;
    }
    fs::create_dir_all(dest).at(dest)?;
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
    let required = subset.join(SOURCE_SUBSET[0]);
    if !required.exists() {
        return Err(Error::Cache(format!(
            "{} has no {}",
            tarball.display(),
            SOURCE_SUBSET[0]
        )));
    }
    fs::write(&done, b"").at(&done)?;
    Ok(subset)
}
