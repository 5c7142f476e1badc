//! The target kernel's own modules, from Debian's image package, for guests.
//!
//! [`Kernel::image_modules`] unpacks `lib/modules/<release>` of the image package once into
//! `<release dir>/image-modules` (≈400 MB for 6.1, whose modules are uncompressed; 6.12
//! ships `.ko.xz`) and runs the host's `depmod` over it: the package ships no
//! `modules.dep`, its postinst generates it. [`ImageModules::load_order`] asks kmod
//! (`modprobe --show-depends`) what loading a module takes, dependencies and soft
//! dependencies first (xfs: crc32c-intel, crc32c_generic, libcrc32c, xfs).
//!
//! [`Initramfs::add_image_modules`] copies that closure into the guest's
//! `/lib/modules/<release>`, decompressed, with a `modules.dep` made by `depmod` for
//! exactly those files, and installs the host's kmod as `/sbin/modprobe` (the path the
//! kernel runs for `request_module`). In the guest, either `insmod` the returned files in
//! order or run `/sbin/modprobe <name>` (name kmod by path: busybox `sh` prefers its own
//! `modprobe` applet).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::Kernel;
use crate::error::{Error, IoContext, Result};
use crate::initramfs::{Initramfs, GUEST_HOST_BIN};
use crate::util::{run, run_stdout, which, FileLock};

/// Where kmod goes in the guest, and the names it answers to there.
const GUEST_MODPROBE: &str = "/sbin/modprobe";

/// The unpacked modules of a kernel's image package.
#[derive(Clone, Debug)]
pub struct ImageModules {
    /// Directory holding `lib/modules/<release>` (a `depmod -b` base).
    root: PathBuf,
    release: String,
}

/// Marker written once the modules are unpacked and indexed; holds the image package's
/// file name, so that another build of the same release is unpacked again.
const DONE: &str = ".image-modules-done";

impl Kernel {
    /// The modules of this kernel's image package, unpacked and indexed once (≈10 s).
    pub fn image_modules(&self) -> Result<ImageModules> {
        let image = self
            .debs
            .iter()
            .find(|d| {
                d.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with("linux-image-"))
            })
            .ok_or_else(|| Error::Cache(format!("no image package for {}", self.release())))?;
        let stamp = image
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mods = ImageModules {
            root: self.dir.join("image-modules"),
            release: self.release().to_owned(),
        };
        let done = self.dir.join(DONE);
        let current = |d: &Path| fs::read_to_string(d).is_ok_and(|s| s == stamp);
        if current(&done) {
            return Ok(mods);
        }
        let _lock = FileLock::acquire(&self.dir.join("lock"))?;
        if !current(&done) {
            if done.exists() {
                fs::remove_file(&done).at(&done)?;
            }
            if mods.root.exists() {
                fs::remove_dir_all(&mods.root).at(&mods.root)?;
            }
            debian::unpack::extract(image, &mods.root, &["./lib/modules"])?;
            depmod(&mods.root, &mods.release)?;
            fs::write(&done, &stamp).at(&done)?;
        }
        Ok(mods)
    }
}

fn depmod(base: &Path, release: &str) -> Result<()> {
    let depmod = host_tool("depmod")?;
    run(Command::new(depmod).arg("-b").arg(base).arg(release))?;
    Ok(())
}

fn host_tool(name: &str) -> Result<PathBuf> {
    which(name)
        .or_else(|| {
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| Error::MissingHostPackages(vec![format!("kmod (program {name})")]))
}

impl ImageModules {
    /// `<root>/lib/modules/<release>`.
    pub fn dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// The files `modprobe <name>` would load, in order: soft and hard dependencies
    /// first, `name` last. Modules built into the kernel are left out; an unknown name
    /// is an error.
    pub fn load_order(&self, name: &str) -> Result<Vec<PathBuf>> {
        let out = run_stdout(
            Command::new(host_tool("modprobe")?)
                .arg("-d")
                .arg(&self.root)
                .arg("-S")
                .arg(&self.release)
                .arg("--show-depends")
                .arg(name),
        )
        .map_err(|e| Error::Invalid(format!("module {name} of {}: {e}", self.release)))?;
        Ok(parse_show_depends(&out))
    }

    /// The guest path of an unpacked module file: the same path under `/`, without the
    /// compression suffix (the guest gets it decompressed).
    fn guest_path(&self, host: &Path) -> Result<String> {
        let rel = host.strip_prefix(&self.root).map_err(|_| {
            Error::Invalid(format!(
                "{} is not under {}",
                host.display(),
                self.root.display()
            ))
        })?;
        let rel = rel.to_string_lossy();
        let rel = strip_compression(&rel).0;
        Ok(format!("/{rel}"))
    }
}

/// `insmod <path>` lines of `modprobe --show-depends` (`builtin <name>` lines need nothing).
fn parse_show_depends(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.strip_prefix("insmod "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(PathBuf::from)
        .collect()
}

/// `(name without suffix, compression)` of a module file name.
fn strip_compression(name: &str) -> (&str, Option<&'static str>) {
    for (suffix, kind) in [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")] {
        if let Some(n) = name.strip_suffix(suffix) {
            return (n, Some(kind));
        }
    }
    (name, None)
}

/// The contents of a module file, decompressed.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    match strip_compression(&name).1 {
        None => fs::read(path).at(path),
        Some("gzip") => {
            use std::io::Read;
            let f = fs::File::open(path).at(path)?;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(f)
                .read_to_end(&mut out)
                .at(path)?;
            Ok(out)
        }
        Some(tool) => {
            let out = run(Command::new(host_tool(tool)?).arg("-dc").arg(path))?;
            Ok(out.stdout)
        }
    }
}

impl Initramfs {
    /// Adds image modules `names` with everything they need to load (see the module
    /// docs): decompressed under `/lib/modules/<release>`, with a `modules.dep` for every
    /// module added so far, and kmod as `/sbin/modprobe`. Returns, for each name, the
    /// guest files to `insmod` in order.
    pub fn add_image_modules(
        &mut self,
        mods: &ImageModules,
        names: &[&str],
    ) -> Result<Vec<Vec<String>>> {
        let mut orders = Vec::new();
        for name in names {
            let mut order = Vec::new();
            for host in mods.load_order(name)? {
                let guest = mods.guest_path(&host)?;
                if !self.contains(&guest) {
                    self.add_file(&guest, read_module(&host)?, 0o644)?;
                }
                order.push(guest);
            }
            orders.push(order);
        }
        self.index_modules(mods)?;
        let kmod = self.add_host_binary(&host_tool("kmod")?, GUEST_HOST_BIN)?;
        self.add_symlink(GUEST_MODPROBE, &kmod)?;
        Ok(orders)
    }

    /// Runs `depmod` over the modules under the guest's `/lib/modules/<release>` (with the
    /// kernel's list of built-in modules) and adds its index files.
    fn index_modules(&mut self, mods: &ImageModules) -> Result<()> {
        let stage = tempfile::tempdir().at(std::env::temp_dir())?;
        let prefix = format!("lib/modules/{}/", mods.release);
        for (path, data) in self.files_under(&prefix) {
            if path.ends_with(".ko") {
                let staged = stage.path().join(&path);
                if let Some(d) = staged.parent() {
                    fs::create_dir_all(d).at(d)?;
                }
                fs::write(&staged, data).at(&staged)?;
            }
        }
        let staged_dir = stage.path().join(&prefix);
        fs::create_dir_all(&staged_dir).at(&staged_dir)?;
        for f in [
            "modules.builtin",
            "modules.builtin.modinfo",
            "modules.order",
        ] {
            let src = mods.dir().join(f);
            if src.exists() {
                fs::copy(&src, staged_dir.join(f)).at(&src)?;
            }
        }
        depmod(stage.path(), &mods.release)?;
        for entry in fs::read_dir(&staged_dir).at(&staged_dir)?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with("modules.") {
                self.add_host_file(&entry.path(), &format!("/{prefix}{file}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_depends_lines_become_load_order() {
        let text = "insmod /r/lib/modules/6.1/kernel/arch/x86/crypto/crc32c-intel.ko \n\
                    builtin crc32c\n\
                    insmod /r/lib/modules/6.1/kernel/fs/xfs/xfs.ko.xz  opt=1\n";
        assert_eq!(
            parse_show_depends(text),
            vec![
                PathBuf::from("/r/lib/modules/6.1/kernel/arch/x86/crypto/crc32c-intel.ko"),
                PathBuf::from("/r/lib/modules/6.1/kernel/fs/xfs/xfs.ko.xz"),
            ]
        );
    }

    #[test]
    fn compression_suffixes_are_recognised() {
        assert_eq!(strip_compression("a/xfs.ko.xz"), ("a/xfs.ko", Some("xz")));
        assert_eq!(
            strip_compression("a/xfs.ko.zst"),
            ("a/xfs.ko", Some("zstd"))
        );
        assert_eq!(strip_compression("a/xfs.ko"), ("a/xfs.ko", None));
    }
}
