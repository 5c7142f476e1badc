//! A kernel release's working area in the cache: its unpacked packages, the source tree
//! prepared once (configured exactly as Debian built it, `modules_prepare`d), and the
//! debug symbols the parent symbol tables come from.
//!
//! Layout under `<cache>/<release>/`:
//! ```text
//! debs/                      downloaded .deb files
//! pkg/                       unpacked headers, kbuild, debug vmlinux/modules
//! src/linux-source-<series>/ the prepared source tree
//! orig/                      cached original objects (the tree stays pristine)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::run;
use crate::distro::{self, Release};
use crate::error::{io, step, step_hint, Result};
use crate::progress::Progress;

/// The stamp of a prepared tree (and of unpacked headers).
pub const READY: &str = ".kpatch-ready";

/// Where the source tree that objects are compiled in comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TreeSource {
    /// Debian's `linux-source` package of the exact version, configured with `config`
    /// (the headers package's `.config` unless `-c` gave another), prepared once in the
    /// cache.
    Package {
        /// The `.config` the tree is configured with.
        config: PathBuf,
    },
    /// The user's configured tree (`-s`), used in place; `config` (from `-c`) is copied
    /// in first when it differs from the tree's own `.config`.
    User {
        /// The tree.
        dir: PathBuf,
        /// `-c`'s configuration, if given.
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Debug)]
/// A kernel release's cache directory and the tree objects are built in.
pub struct Kernel {
    /// The release and its packages.
    pub rel: Release,
    /// `<cache>/<release>`.
    pub root: PathBuf,
    /// Compiler the kernel was built with.
    pub cc: String,
    /// Where the tree comes from.
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
    /// The release's area in `cache`, building in Debian's source with the headers'
    /// `.config`.
    pub fn new(rel: Release, cache: &Path) -> Kernel {
        let root = cache.join(&rel.release);
        let config = root
            .join("pkg/usr/src")
            .join(format!("linux-headers-{}", rel.release))
            .join(".config");
        Kernel {
            rel,
            state: root.clone(),
            root,
            cc: "gcc-12".into(),
            source: TreeSource::Package { config },
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

    /// Downloaded packages.
    pub fn debs(&self) -> PathBuf {
        self.root.join("debs")
    }
    /// Unpacked packages.
    pub fn pkg(&self) -> PathBuf {
        self.root.join("pkg")
    }
    /// The unpacked headers package (kbuild for the patch module).
    pub fn headers(&self) -> PathBuf {
        self.pkg()
            .join("usr/src")
            .join(format!("linux-headers-{}", self.rel.release))
    }
    /// The `.config` objects are built with.
    pub fn config(&self) -> PathBuf {
        match &self.source {
            TreeSource::Package { config } => config.clone(),
            TreeSource::User { dir, config } => config.clone().unwrap_or(dir.join(".config")),
        }
    }
    /// The kernel's `Module.symvers` (exported symbols).
    pub fn symvers(&self) -> PathBuf {
        self.headers().join("Module.symvers")
    }
    /// The source tree objects are built in.
    pub fn tree(&self) -> PathBuf {
        match &self.source {
            TreeSource::Package { .. } => self
                .state
                .join("src")
                .join(format!("linux-source-{}", self.rel.series)),
            TreeSource::User { dir, .. } => dir.clone(),
        }
    }
    /// Original objects built from the pristine tree, each with the proof of its inputs
    /// ([`crate::inputs`]).
    pub fn orig_cache(&self) -> PathBuf {
        self.state.join("orig")
    }
    /// Is the tree the user's own (`-s`)?
    pub fn user_tree(&self) -> bool {
        matches!(self.source, TreeSource::User { .. })
    }
    /// The debug vmlinux, once unpacked.
    pub fn dbg_vmlinux(&self) -> PathBuf {
        self.pkg()
            .join("usr/lib/debug/boot")
            .join(format!("vmlinux-{}", self.rel.release))
    }
    /// Debug copy of a module, `ko` relative to `/lib/modules/<release>/`.
    pub fn dbg_module(&self, ko: &str) -> PathBuf {
        self.pkg()
            .join("usr/lib/debug/lib/modules")
            .join(&self.rel.release)
            .join(ko)
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
    /// at the unpacked common directory.
    pub fn ensure_headers(&self, p: &mut Progress) -> Result<()> {
        let stamp = self.headers().join(READY);
        if stamp.exists() {
            return Ok(());
        }
        p.note(&format!(
            "fetching headers for {} ({})",
            self.rel.release, self.rel.version
        ));
        let mut pkgs = vec![self.rel.headers_package()];
        pkgs.extend(self.rel.headers_deps.iter().cloned());
        for deb in distro::download(&pkgs, &self.rel.version, &self.debs())? {
            distro::extract(&deb, &self.pkg(), &[])?;
        }
        let mk = self.headers().join("Makefile");
        let text = std::fs::read_to_string(&mk).map_err(io(&mk))?;
        let fixed = text.replace(
            "include /usr/src/",
            &format!("include {}/usr/src/", self.pkg().display()),
        );
        std::fs::write(&mk, fixed).map_err(io(&mk))?;
        std::fs::write(&stamp, &self.rel.version).map_err(io(&stamp))?;
        Ok(())
    }

    /// The debug vmlinux (the parent symbol table with file symbols and sympos).
    pub fn ensure_dbg_vmlinux(&self, p: &mut Progress) -> Result<PathBuf> {
        let v = self.dbg_vmlinux();
        if v.exists() {
            return Ok(v);
        }
        p.note(&format!(
            "fetching {} (about 1 GB) for vmlinux's symbol table",
            self.rel.dbg_package()
        ));
        let deb = distro::download(&[self.rel.dbg_package()], &self.rel.version, &self.debs())?;
        let member = format!("usr/lib/debug/boot/vmlinux-{}", self.rel.release);
        distro::extract(&deb[0], &self.pkg(), &[&member])?;
        if !v.exists() {
            return Err(step(format!("{} has no {member}", deb[0].display())));
        }
        Ok(v)
    }

    /// A debug module (parent symbol table of a module), unpacked on demand.
    pub fn ensure_dbg_module(&self, ko: &str, p: &mut Progress) -> Result<PathBuf> {
        let m = self.dbg_module(ko);
        if m.exists() {
            return Ok(m);
        }
        p.note(&format!("extracting debug module {ko}"));
        let deb = distro::download(&[self.rel.dbg_package()], &self.rel.version, &self.debs())?;
        let member = format!("usr/lib/debug/lib/modules/{}/{ko}", self.rel.release);
        distro::extract(&deb[0], &self.pkg(), &[&member])?;
        if !m.exists() {
            return Err(step(format!(
                "no debug copy of {ko} in {}",
                deb[0].display()
            )));
        }
        Ok(m)
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
            self.rel.source_package(),
            self.rel.version
        ));
        let deb = distro::download(
            &[self.rel.source_package()],
            &self.rel.version,
            &self.debs(),
        )?;
        let tarball = format!("usr/src/{}.tar.xz", self.rel.source_package());
        let staged = self.state.join("pkg-src");
        distro::extract(&deb[0], &staged, &[&tarball])?;
        let src_parent = self.state.join("src");
        std::fs::create_dir_all(&src_parent).map_err(io(&src_parent))?;
        p.note("unpacking the kernel source");
        run(
            Command::new("tar")
                .arg("-xJf")
                .arg(staged.join(&tarball))
                .arg("-C")
                .arg(&src_parent),
            "unpack source",
            p,
        )?;
        let _ = std::fs::remove_dir_all(&staged);
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
        run(Command::new("make").args(&args), "make olddefconfig", p)?;
        let mut args = self.make_args(jobs);
        args.push("modules_prepare".into());
        run(Command::new("make").args(&args), "make modules_prepare", p)?;
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
            run(Command::new("make").args(&args), "make olddefconfig", p)?;
            let mut args = self.make_args(jobs);
            args.push("modules_prepare".into());
            run(Command::new("make").args(&args), "make modules_prepare", p)?;
        }
        Ok(())
    }
}
