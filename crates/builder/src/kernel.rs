//! A kernel release's working area in the cache: its unpacked packages, the source tree
//! prepared once (configured exactly as Debian built it, `modules_prepare`d), and the
//! debug symbols the parent symbol tables come from.
//!
//! Packages come from the `debian` crate (resolution, verified downloads, unpacking into the
//! shared cache); every compiler, linker and `make` runs in the build root of the kernel's
//! distribution ([`Kernel::command`]). Layout under `<cache>/<release>/`:
//! ```text
//! pkg/                       unpacked packages (debian::KernelFiles; shared with the test bed)
//! index/                     what the -dbg binaries were built from, module symbol tables
//! src/linux-source-<series>/ the prepared source tree
//! orig/                      cached original objects (the tree stays pristine)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use debian::{Archive, BuildRoot, KernelFiles, Release};

use crate::cmd::run;
use crate::error::{io, step, step_hint, Result};
use crate::index::{self, DbgIndex};
use crate::progress::Progress;

pub const READY: &str = ".kpatch-ready";

/// Where the source tree that objects are compiled in comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeSource {
    /// Debian's `linux-source` package of the exact version, configured with `config`
    /// (the headers package's `.config` unless `-c` gave another), prepared once in the
    /// cache.
    Package { config: PathBuf },
    /// The user's configured tree (`-s`), used in place; `config` (from `-c`) is copied
    /// in first when it differs from the tree's own `.config`.
    User {
        dir: PathBuf,
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Debug)]
pub struct Kernel {
    pub rel: Release,
    pub root: PathBuf,
    /// Compiler the kernel was built with (the program `CONFIG_CC_VERSION_TEXT` names, once
    /// the headers are unpacked; until then the compiler package the headers depend on).
    pub cc: String,
    /// The archive packages are fetched from.
    pub archive: Arc<Archive>,
    /// The release's packages in the cache.
    pub files: KernelFiles,
    /// Where compilers run: the build root of the kernel's distribution, or the host
    /// (`--host-toolchain`).
    pub build_root: Option<BuildRoot>,
    pub source: TreeSource,
    /// Per-tree state (prepared tree, original objects, struct sizes): `root` for
    /// Debian's configuration, a subdirectory for another `.config` or a user tree.
    pub state: PathBuf,
}

/// A short, stable tag for a file's content or a path.
fn tag(bytes: &[u8]) -> String {
    format!("{:012x}", xxhash_rust::xxh3::xxh3_64(bytes) >> 16)
}

impl Kernel {
    pub fn new(archive: Arc<Archive>, rel: Release) -> Kernel {
        let files = KernelFiles::new(archive.cache(), rel.clone());
        let root = files.dir.clone();
        let config = files.config();
        Kernel {
            cc: rel.compiler.clone().unwrap_or_else(|| "gcc".into()),
            rel,
            state: root.clone(),
            root,
            source: TreeSource::Package { config },
            archive,
            files,
            build_root: None,
        }
    }

    /// Use another `.config` (`-c`) and/or the user's own tree (`-s`).
    pub fn with_tree(mut self, sourcedir: Option<&Path>, config: Option<&Path>) -> Result<Kernel> {
        let config = match config {
            Some(c) => Some(std::fs::canonicalize(c).map_err(io(c))?),
            None => None,
        };
        if let Some(c) = &config {
            let text = std::fs::read(c).map_err(io(c))?;
            if !String::from_utf8_lossy(&text).contains("CONFIG_") {
                return Err(step(format!(
                    "{}: not a kernel .config (no CONFIG_ lines)",
                    c.display()
                )));
            }
        }
        match sourcedir {
            Some(dir) => {
                let dir = std::fs::canonicalize(dir).map_err(io(dir))?;
                if !dir.join("Makefile").is_file() || !dir.join("Kconfig").is_file() {
                    return Err(step_hint(
                        format!("{}: not a kernel source tree", dir.display()),
                        "-s takes the top directory of a kernel source tree (with Makefile and Kconfig)",
                    ));
                }
                if config.is_none() && !dir.join(".config").is_file() {
                    return Err(step_hint(
                        format!("{}: the tree is not configured (no .config)", dir.display()),
                        "configure it, or give the kernel's .config with -c",
                    ));
                }
                // Struct sizes depend on the configuration too.
                let mut key = dir.as_os_str().as_encoded_bytes().to_vec();
                let cfg = config.clone().unwrap_or(dir.join(".config"));
                key.extend(std::fs::read(&cfg).map_err(io(&cfg))?);
                self.state = self.root.join(format!("tree-{}", tag(&key)));
                self.source = TreeSource::User { dir, config };
            }
            None => {
                if let Some(c) = config {
                    let text = std::fs::read(&c).map_err(io(&c))?;
                    self.state = self.root.join(format!("config-{}", tag(&text)));
                    self.source = TreeSource::Package { config: c };
                }
            }
        }
        Ok(self)
    }

    pub fn pkg(&self) -> PathBuf {
        self.files.pkg()
    }
    pub fn headers(&self) -> PathBuf {
        self.files.headers_dir()
    }
    /// The `.config` objects are built with.
    pub fn config(&self) -> PathBuf {
        match &self.source {
            TreeSource::Package { config } => config.clone(),
            TreeSource::User { dir, config } => config.clone().unwrap_or(dir.join(".config")),
        }
    }
    pub fn symvers(&self) -> PathBuf {
        self.headers().join("Module.symvers")
    }
    pub fn tree(&self) -> PathBuf {
        match &self.source {
            TreeSource::Package { .. } => self
                .state
                .join("src")
                .join(format!("linux-source-{}", self.rel.series)),
            TreeSource::User { dir, .. } => dir.clone(),
        }
    }
    /// Original objects built from the pristine tree. A user's tree may change between
    /// builds, so its originals are rebuilt every time (the pipeline clears them).
    pub fn orig_cache(&self) -> PathBuf {
        self.state.join("orig")
    }
    pub fn user_tree(&self) -> bool {
        matches!(self.source, TreeSource::User { .. })
    }
    pub fn dbg_vmlinux(&self) -> PathBuf {
        self.files.dbg_vmlinux_path()
    }
    /// Debug copy of a module, `ko` relative to `/lib/modules/<release>/`.
    pub fn dbg_module(&self, ko: &str) -> PathBuf {
        self.files.dbg_module_path(ko)
    }

    /// `program` to run where this kernel is built: in its build root, with the release's
    /// cache directory (and a user tree) mounted at the same paths; on the host with
    /// `--host-toolchain`.
    pub fn command(&self, program: &str) -> Command {
        match &self.build_root {
            Some(r) => {
                let mut binds = vec![self.root.as_path()];
                if let TreeSource::User { dir, .. } = &self.source {
                    binds.push(dir.as_path());
                }
                r.command(program, &binds, Path::new("/"))
            }
            None => Command::new(program),
        }
    }

    /// Creates (once) the build root of the kernel's distribution, with its compiler.
    pub fn ensure_build_root(&mut self, p: &mut Progress) -> Result<()> {
        let compiler = self.rel.compiler.clone().unwrap_or_else(|| "gcc".into());
        let cache = self.archive.cache();
        if BuildRoot::existing(cache, &self.rel.codename).is_none() {
            p.note(&format!(
                "creating the {} build root with mmdebstrap (once; about a minute)",
                self.rel.codename
            ));
        }
        let root = BuildRoot::ensure(cache, self.archive.apt(), &self.rel.codename, &compiler)
            .map_err(debian_err)?;
        if let Some(t) = root.created_in {
            p.note(&format!(
                "build root {} created in {:.1} s",
                root.dir.display(),
                t.as_secs_f64()
            ));
        }
        self.build_root = Some(root);
        Ok(())
    }

    /// `make` arguments that build in the prepared tree exactly as Debian did.
    pub fn make_args(&self, jobs: usize) -> Vec<String> {
        vec![
            "-C".into(),
            self.tree().display().to_string(),
            format!("-j{jobs}"),
            format!("CC={}", self.cc),
            format!("KERNELRELEASE={}", self.rel.release),
        ]
    }

    /// Headers, kbuild and common headers, unpacked, with the headers' Makefile pointed
    /// at the unpacked common directory; then the compiler is the one the `.config` names.
    pub fn ensure_headers(&mut self, p: &mut Progress) -> Result<()> {
        if !self.headers().join(READY).exists() {
            p.note(&format!(
                "fetching headers for {} ({})",
                self.rel.release, self.rel.version
            ));
        }
        let (_, warnings) = self
            .files
            .ensure_headers(&self.archive)
            .map_err(debian_err)?;
        for w in warnings {
            p.note(&format!("WARNING: {w}"));
        }
        let text = crate::toolchain::config_cc_text(&self.files.config())?;
        self.cc = crate::toolchain::cc_program(&text);
        Ok(())
    }

    /// Where the release's `-dbg` index lives (see [`crate::index`]).
    pub fn index_dir(&self) -> PathBuf {
        index::dir(&self.root)
    }

    /// Whether the release's `-dbg` index and debug vmlinux are there.
    pub fn index_ready(&self) -> bool {
        DbgIndex::load(&self.index_dir()).is_some() && self.dbg_vmlinux().exists()
    }

    /// The release's `-dbg` index, built once per release by one pass over the `-dbg`
    /// package, which also writes the debug vmlinux and each module's symbol table.
    pub fn ensure_index(&self, p: &mut Progress) -> Result<DbgIndex> {
        let dir = self.index_dir();
        if let Some(idx) = DbgIndex::load(&dir) {
            if self.dbg_vmlinux().exists() {
                return Ok(idx);
            }
        }
        let deb = self.archive.fetch(&self.rel.dbg).map_err(debian_err)?;
        if let Some(w) = &deb.warning {
            p.note(&format!("WARNING: {w}"));
        }
        p.note(&format!(
            "reading {} once for this release: compile units, debug vmlinux, module symbol tables",
            self.rel.dbg.name
        ));
        let idx = self.build_index(&deb.path)?;
        self.report_index(&idx, p);
        Ok(idx)
    }

    /// One pass over the fetched `-dbg` package (see [`crate::index::build`]); safe to run
    /// in a thread while the tree is prepared.
    pub fn build_index(&self, deb: &Path) -> Result<DbgIndex> {
        index::build(
            deb,
            &self.rel.release,
            &self.index_dir(),
            &self.dbg_vmlinux(),
        )
    }

    /// Say what the index pass found.
    pub fn report_index(&self, idx: &DbgIndex, p: &mut Progress) {
        p.note(&format!(
            "indexed {} compile units of vmlinux and {} modules in {:.1} s",
            idx.units.len(),
            idx.binaries
                .iter()
                .filter(|b| b.kind == index::Kind::Module)
                .count(),
            idx.seconds
        ));
        for (ko, e) in &idx.unreadable {
            p.note(&format!("warning: cannot read the debug module {ko}: {e}"));
        }
    }

    /// The debug vmlinux (the parent symbol table with file symbols and sympos).
    pub fn ensure_dbg_vmlinux(&self, p: &mut Progress) -> Result<PathBuf> {
        self.ensure_index(p)?;
        Ok(self.dbg_vmlinux())
    }

    /// The parent symbol table of a module (`ko` relative to `/lib/modules/<release>/`):
    /// its symbol table kept by the index, else the debug module unpacked on demand.
    pub fn module_symtab(&self, ko: &str, p: &mut Progress) -> Result<PathBuf> {
        self.ensure_index(p)?;
        let kept = DbgIndex::module_symtab(&self.index_dir(), ko);
        if kept.exists() {
            return Ok(kept);
        }
        self.ensure_dbg_module(ko, p)
    }

    /// A debug module (parent symbol table of a module), unpacked on demand.
    pub fn ensure_dbg_module(&self, ko: &str, p: &mut Progress) -> Result<PathBuf> {
        let m = self.dbg_module(ko);
        if m.exists() {
            return Ok(m);
        }
        p.note(&format!("extracting debug module {ko}"));
        self.files
            .ensure_dbg_module(&self.archive, ko)
            .map_err(debian_err)
    }

    /// Unpack the source, configure it as Debian did and run `modules_prepare`, once.
    pub fn ensure_tree(&self, jobs: usize, p: &mut Progress) -> Result<()> {
        if let TreeSource::User { dir, config } = &self.source {
            return self.ensure_user_tree(dir, config.as_deref(), jobs, p);
        }
        let tree = self.tree();
        if tree.join(READY).exists() {
            return Ok(());
        }
        if tree.exists() {
            std::fs::remove_dir_all(&tree).map_err(io(&tree))?;
        }
        p.note(&format!(
            "fetching {} {}",
            self.rel.source.name, self.rel.version
        ));
        let (tarball, warning) = self
            .files
            .ensure_source_tarball(&self.archive)
            .map_err(debian_err)?;
        if let Some(w) = warning {
            p.note(&format!("WARNING: {w}"));
        }
        let src_parent = self.state.join("src");
        std::fs::create_dir_all(&src_parent).map_err(io(&src_parent))?;
        p.note("unpacking the kernel source");
        run(
            Command::new("tar")
                .arg("-xJf")
                .arg(&tarball)
                .arg("-C")
                .arg(&src_parent),
            "unpack source",
            p,
        )?;
        if !tree.exists() {
            return Err(step(format!(
                "the source package did not unpack to {}",
                tree.display()
            )));
        }
        std::fs::copy(self.config(), tree.join(".config")).map_err(io(tree.join(".config")))?;
        p.note("configuring (olddefconfig) and running modules_prepare");
        let mut args = self.make_args(jobs);
        args.push("olddefconfig".into());
        run(self.command("make").args(&args), "make olddefconfig", p)?;
        let mut args = self.make_args(jobs);
        args.push("modules_prepare".into());
        run(self.command("make").args(&args), "make modules_prepare", p)?;
        std::fs::write(tree.join(READY), &self.rel.version).map_err(io(tree.join(READY)))?;
        Ok(())
    }
}

impl Kernel {
    /// A user's tree: install `-c`'s config if it differs, and run `modules_prepare`
    /// when the configuration is newer than the prepared state.
    fn ensure_user_tree(
        &self,
        dir: &Path,
        config: Option<&Path>,
        jobs: usize,
        p: &mut Progress,
    ) -> Result<()> {
        let dot = dir.join(".config");
        if let Some(c) = config {
            let want = std::fs::read(c).map_err(io(c))?;
            if std::fs::read(&dot).ok().as_deref() != Some(&want[..]) {
                p.note(&format!("installing {} as {}", c.display(), dot.display()));
                std::fs::write(&dot, &want).map_err(io(&dot))?;
            }
        }
        let mtime = |f: &Path| std::fs::metadata(f).and_then(|m| m.modified()).ok();
        let autoconf = dir.join("include/generated/autoconf.h");
        let prepared = dir.join("scripts/mod/modpost").exists()
            && matches!((mtime(&autoconf), mtime(&dot)), (Some(a), Some(c)) if a >= c);
        if !prepared {
            p.note(&format!(
                "configuring (olddefconfig) and running modules_prepare in {}",
                dir.display()
            ));
            let mut args = self.make_args(jobs);
            args.push("olddefconfig".into());
            run(self.command("make").args(&args), "make olddefconfig", p)?;
            let mut args = self.make_args(jobs);
            args.push("modules_prepare".into());
            run(self.command("make").args(&args), "make modules_prepare", p)?;
        }
        Ok(())
    }
}
/// A Debian-layer error as a build error (message and hint kept).
pub fn debian_err(e: debian::Error) -> crate::error::Error {
    match e.hint() {
        Some(h) => step_hint(e.message(), h),
        None => step(e.to_string()),
    }
}
