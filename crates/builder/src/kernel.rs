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

use crate::distro::{self, Release};
use crate::error::{io, step, step_hint, Result};
use crate::progress::Progress;

pub const READY: &str = ".kpatch-ready";

#[derive(Clone, Debug)]
pub struct Kernel {
    pub rel: Release,
    pub root: PathBuf,
    /// Compiler the kernel was built with.
    pub cc: String,
}

impl Kernel {
    pub fn new(rel: Release, cache: &Path) -> Kernel {
        let root = cache.join(&rel.release);
        Kernel {
            rel,
            root,
            cc: "gcc-12".into(),
        }
    }

    pub fn debs(&self) -> PathBuf {
        self.root.join("debs")
    }
    pub fn pkg(&self) -> PathBuf {
        self.root.join("pkg")
    }
    pub fn headers(&self) -> PathBuf {
        self.pkg()
            .join("usr/src")
            .join(format!("linux-headers-{}", self.rel.release))
    }
    pub fn config(&self) -> PathBuf {
        self.headers().join(".config")
    }
    pub fn symvers(&self) -> PathBuf {
        self.headers().join("Module.symvers")
    }
    pub fn tree(&self) -> PathBuf {
        self.root
            .join("src")
            .join(format!("linux-source-{}", self.rel.series))
    }
    pub fn orig_cache(&self) -> PathBuf {
        self.root.join("orig")
    }
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
        let staged = self.root.join("pkg-src");
        distro::extract(&deb[0], &staged, &[&tarball])?;
        let src_parent = self.root.join("src");
        std::fs::create_dir_all(&src_parent).map_err(io(&src_parent))?;
        p.note("unpacking the kernel source");
        run(
            Command::new("tar")
                .arg("-xJf")
                .arg(staged.join(&tarball))
                .arg("-C")
                .arg(&src_parent),
            "unpack source",
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
        run(Command::new("make").args(&args), "make olddefconfig")?;
        let mut args = self.make_args(jobs);
        args.push("modules_prepare".into());
        run(Command::new("make").args(&args), "make modules_prepare")?;
        std::fs::write(tree.join(READY), &self.rel.version).map_err(io(tree.join(READY)))?;
        Ok(())
    }
}

/// Run a command; on failure, the error carries the tail of its output.
pub fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| step(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(step_hint(
            format!("{what} failed:\n    {}", tail.join("\n    ")),
            "see the full log in the cache directory",
        ));
    }
    Ok(text)
}
