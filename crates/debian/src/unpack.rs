//! One kernel release's packages, unpacked on demand into `<cache>/<release>/pkg/`, once:
//! the headers (with their `-common` part and kbuild, the Makefile pointed at them), the
//! image's `/boot`, the source tarball, the `-dbg` vmlinux and debug modules.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::archive::Archive;
use crate::cache::Cache;
use crate::error::{archive, io, Result};
use crate::resolve::{Pkg, Release};
use crate::util::{display, FileLock};

/// Stamp in the headers directory (the name kpatch-build's earlier caches used, so their
/// unpacked headers are kept).
pub const HEADERS_READY: &str = ".kpatch-ready";

/// A release's files in the cache.
#[derive(Clone, Debug)]
pub struct KernelFiles {
    /// The release and its packages.
    pub rel: Release,
    /// `<cache>/<release>`.
    pub dir: PathBuf,
}

impl KernelFiles {
    /// The files of `rel` in `cache`.
    pub fn new(cache: &Cache, rel: Release) -> KernelFiles {
        KernelFiles {
            dir: cache.release_dir(&rel.release),
            rel,
        }
    }

    /// `<dir>/pkg`: the unpacked packages, laid out as on an installed system.
    pub fn pkg(&self) -> PathBuf {
        self.dir.join("pkg")
    }
    /// `…/usr/src/linux-headers-<release>`.
    pub fn headers_dir(&self) -> PathBuf {
        self.pkg()
            .join("usr/src")
            .join(format!("linux-headers-{}", self.rel.release))
    }
    /// The headers' `.config`: the exact build configuration.
    pub fn config(&self) -> PathBuf {
        self.headers_dir().join(".config")
    }
    /// `…/boot/vmlinuz-<release>`.
    pub fn vmlinuz_path(&self) -> PathBuf {
        self.pkg()
            .join(format!("boot/vmlinuz-{}", self.rel.release))
    }
    /// `…/usr/src/linux-source-<series>.tar.xz`.
    pub fn source_tarball_path(&self) -> PathBuf {
        self.pkg()
            .join(format!("usr/src/linux-source-{}.tar.xz", self.rel.series))
    }
    /// `…/usr/lib/debug/boot/vmlinux-<release>`.
    pub fn dbg_vmlinux_path(&self) -> PathBuf {
        self.pkg()
            .join("usr/lib/debug/boot")
            .join(format!("vmlinux-{}", self.rel.release))
    }
    /// Debug copy of a module, `ko` relative to `/lib/modules/<release>/`.
    pub fn dbg_module_path(&self, ko: &str) -> PathBuf {
        self.pkg()
            .join("usr/lib/debug/lib/modules")
            .join(&self.rel.release)
            .join(ko)
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.dir.join(".pkg-lock"))
    }

    /// Unpacks `members` of `p` (everything when empty) into `pkg/`, once. Returns the
    /// warning of an unverifiable download, if any.
    pub fn unpack(&self, archive: &Archive, p: &Pkg, members: &[&str]) -> Result<Option<String>> {
        let stamp = self.pkg().join(".unpacked").join(format!(
            "{}_{}{}",
            p.name,
            p.version,
            if members.is_empty() {
                String::new()
            } else {
                format!(".{:016x}", fnv(members.join("\n").as_bytes()))
            }
        ));
        if stamp.exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        if stamp.exists() {
            return Ok(None);
        }
        let fetched = archive.fetch(p)?;
        extract(&fetched.path, &self.pkg(), members)?;
        if let Some(d) = stamp.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::write(&stamp, "").map_err(io(&stamp))?;
        Ok(fetched.warning)
    }

    /// Headers, their `-common` part and kbuild, unpacked, with the headers' Makefile
    /// including the unpacked `-common` Makefile. Returns the headers directory and any
    /// download warnings.
    pub fn ensure_headers(&self, archive: &Archive) -> Result<(PathBuf, Vec<String>)> {
        let dir = self.headers_dir();
        let stamp = dir.join(HEADERS_READY);
        if std::fs::read_to_string(&stamp).is_ok_and(|v| v == self.rel.version) {
            return Ok((dir, Vec::new()));
        }
        let mut warnings = Vec::new();
        let mut pkgs = vec![self.rel.headers.clone()];
        pkgs.extend(self.rel.headers_deps.iter().cloned());
        for p in &pkgs {
            warnings.extend(self.unpack(archive, p, &[])?);
        }
        let _lock = self.lock()?;
        rewrite_makefile(&dir, &self.pkg())?;
        std::fs::write(&stamp, &self.rel.version).map_err(io(&stamp))?;
        Ok((dir, warnings))
    }

    /// The kernel image (`/boot` of the image package).
    pub fn ensure_vmlinuz(&self, archive: &Archive) -> Result<PathBuf> {
        let v = self.vmlinuz_path();
        if !v.exists() {
            self.unpack(archive, &self.rel.image, &["./boot"])?;
        }
        exists(v)
    }

    /// The source tarball of `linux-source-<series>`.
    pub fn ensure_source_tarball(&self, archive: &Archive) -> Result<(PathBuf, Option<String>)> {
        let t = self.source_tarball_path();
        let mut warning = None;
        if !t.exists() {
            let member = format!("./usr/src/linux-source-{}.tar.xz", self.rel.series);
            warning = self.unpack(archive, &self.rel.source, &[&member])?;
        }
        Ok((exists(t)?, warning))
    }

    /// The `-dbg` vmlinux (and `System.map`): about 1 GB to download, a minute to extract.
    pub fn ensure_dbg_vmlinux(&self, archive: &Archive) -> Result<PathBuf> {
        let v = self.dbg_vmlinux_path();
        if !v.exists() {
            let r = &self.rel.release;
            let vm = format!("./usr/lib/debug/boot/vmlinux-{r}");
            let map = format!("./usr/lib/debug/boot/System.map-{r}");
            self.unpack(archive, &self.rel.dbg, &[&vm, &map])?;
        }
        exists(v)
    }

    /// A debug module, unpacked on demand.
    pub fn ensure_dbg_module(&self, archive: &Archive, ko: &str) -> Result<PathBuf> {
        let m = self.dbg_module_path(ko);
        if !m.exists() {
            let member = format!("./usr/lib/debug/lib/modules/{}/{ko}", self.rel.release);
            self.unpack(archive, &self.rel.dbg, &[&member])?;
        }
        exists(m)
    }

    /// The image package's `.deb` (for modules of the image, which are not unpacked).
    pub fn image_deb(&self, archive: &Archive) -> Result<PathBuf> {
        Ok(archive.fetch(&self.rel.image)?.path)
    }
}

fn exists(p: PathBuf) -> Result<PathBuf> {
    if p.exists() {
        Ok(p)
    } else {
        Err(archive(format!("expected {} after unpacking", p.display())))
    }
}

fn fnv(b: &[u8]) -> u64 {
    // FNV-1a: a stable short tag for a member list (no need for a strong hash).
    b.iter().fold(0xcbf29ce484222325u64, |h, c| {
        (h ^ *c as u64).wrapping_mul(0x100000001b3)
    })
}

/// The headers' Makefile includes the `-common` Makefile by absolute `/usr/src/…` path
/// (and 6.12's names `/usr/lib/linux-kbuild-*`): point them into `pkg`.
fn rewrite_makefile(headers: &Path, pkg: &Path) -> Result<()> {
    let mk = headers.join("Makefile");
    let text = std::fs::read_to_string(&mk).map_err(io(&mk))?;
    let prefix = pkg.display().to_string();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_prefix("include /usr/") {
            Some(rest) => out.push_str(&format!("include {prefix}/usr/{rest}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    if out != text {
        std::fs::write(&mk, out).map_err(io(&mk))?;
    }
    Ok(())
}

/// Extracts a `.deb` (only `members`, paths like `./boot`, when given) into `dest`.
pub fn extract(deb: &Path, dest: &Path, members: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let mut cmd = if members.is_empty() {
        let mut c = Command::new("dpkg-deb");
        c.arg("-x").arg(deb).arg(dest);
        c
    } else {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(r#"set -o pipefail; dpkg-deb --fsys-tarfile "$0" | tar -x -C "$1" "${@:2}""#)
            .arg(deb)
            .arg(dest)
            .args(members);
        c
    };
    let out = cmd.stdin(Stdio::null()).output().map_err(io(deb))?;
    if !out.status.success() {
        return Err(crate::error::Error::Command {
            command: display(&cmd),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}
