//! Building a guest's initramfs: busybox, kernel modules, host binaries with their shared
//! libraries, arbitrary files, and a [`Scenario`]'s generated `/init`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::write::GzEncoder;

use crate::cpio::{EntryKind, NewcWriter};
use crate::error::{Error, IoContext, Result};
use crate::kbuild::module_name;
use crate::scenario::Scenario;

/// Where busybox-static installs its binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";
/// Guest directory for modules added with [`Initramfs::add_module`].
pub const GUEST_MODULE_DIR: &str = "/testbed/modules";
/// Guest directory for host binaries (first in the guest's `PATH`).
pub const GUEST_HOST_BIN: &str = "/usr/local/bin";

#[derive(Clone, Debug)]
struct Entry {
    kind: EntryKind,
    perm: u32,
}

/// An initramfs under construction. Paths are absolute guest paths; a later addition at the
/// same path replaces the earlier one.
#[derive(Clone, Debug, Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

fn normalise(path: &str) -> Result<String> {
    let p = path.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::Invalid(format!("bad guest path {path:?}")));
    }
    Ok(p.to_owned())
}

impl Initramfs {
    /// An initramfs with the usual top-level directories and nothing else.
    pub fn new() -> Self {
        let mut me = Self::default();
        for d in [
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "usr/local/bin",
            "usr/local/sbin",
            "lib",
            "lib64",
            "etc",
            "proc",
            "sys",
            "dev",
            "tmp",
            "run",
            "root",
            "testbed",
        ] {
            me.entries.insert(
                d.to_owned(),
                Entry {
                    kind: EntryKind::Dir,
                    perm: 0o755,
                },
            );
        }
        me
    }

    /// [`Initramfs::new`] plus the host's static busybox and a link for each of its applets.
    pub fn with_busybox() -> Result<Self> {
        let mut me = Self::new();
        me.add_busybox(Path::new(HOST_BUSYBOX))?;
        Ok(me)
    }

    /// Adds `busybox` at `/bin/busybox` and links its applets where busybox installs them.
    pub fn add_busybox(&mut self, busybox: &Path) -> Result<&mut Self> {
        let data = fs::read(busybox).at(busybox)?;
        if !is_static_elf(&data) {
            return Err(Error::Invalid(format!(
                "{} is not a static executable (install busybox-static)",
                busybox.display()
            )));
        }
        let list = crate::util::run_stdout(Command::new(busybox).arg("--list-full"))?;
        self.add_file("/bin/busybox", data, 0o755)?;
        for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if applet == "bin/busybox" || applet.ends_with("/init") || applet == "linuxrc" {
                continue;
            }
            self.add_symlink(applet, "/bin/busybox")?;
        }
        Ok(self)
    }

    fn ensure_parents(&mut self, path: &str) {
        let mut acc = String::new();
        let comps: Vec<&str> = path.split('/').collect();
        for c in &comps[..comps.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(c);
            self.entries.entry(acc.clone()).or_insert(Entry {
                kind: EntryKind::Dir,
                perm: 0o755,
            });
        }
    }

    fn insert(&mut self, path: &str, kind: EntryKind, perm: u32) -> Result<()> {
        let p = normalise(path)?;
        self.ensure_parents(&p);
        self.entries.insert(p, Entry { kind, perm });
        Ok(())
    }

    /// Adds a file with the given contents and permission bits.
    pub fn add_file(
        &mut self,
        guest: &str,
        data: impl Into<Vec<u8>>,
        perm: u32,
    ) -> Result<&mut Self> {
        self.insert(guest, EntryKind::File(data.into()), perm)?;
        Ok(self)
    }

    /// Adds a directory.
    pub fn add_dir(&mut self, guest: &str) -> Result<&mut Self> {
        self.insert(guest, EntryKind::Dir, 0o755)?;
        Ok(self)
    }

    /// Adds a symbolic link.
    pub fn add_symlink(&mut self, guest: &str, target: &str) -> Result<&mut Self> {
        self.insert(guest, EntryKind::Symlink(target.to_owned()), 0o777)?;
        Ok(self)
    }

    /// Copies a host file (following links), keeping its permission bits.
    pub fn add_host_file(&mut self, host: &Path, guest: &str) -> Result<&mut Self> {
        use std::os::unix::fs::PermissionsExt;
        let data = fs::read(host).at(host)?;
        let perm = fs::metadata(host).at(host)?.permissions().mode() & 0o7777;
        self.add_file(guest, data, perm)
    }

    /// Copies a host directory tree (regular files and directories) to `guest`.
    pub fn add_host_tree(&mut self, host: &Path, guest: &str) -> Result<&mut Self> {
        self.add_dir(guest)?;
        let mut entries: Vec<PathBuf> = fs::read_dir(host)
            .at(host)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let g = format!("{}/{name}", guest.trim_end_matches('/'));
            if p.is_dir() {
                self.add_host_tree(&p, &g)?;
            } else if p.is_file() {
                self.add_host_file(&p, &g)?;
            }
        }
        Ok(self)
    }

    /// Adds a kernel module as `/testbed/modules/<file name>`; returns that guest path.
    pub fn add_module(&mut self, ko: &Path) -> Result<String> {
        let name = ko
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{} has no file name", ko.display())))?
            .to_string_lossy()
            .into_owned();
        let guest = format!("{GUEST_MODULE_DIR}/{name}");
        self.add_host_file(ko, &guest)?;
        Ok(guest)
    }

    /// Adds modules under `/lib/modules/<release>/extra/` so that `modprobe <name>` finds them
    /// once the guest has run `depmod` (use the host's kmod: busybox's modprobe is limited).
    pub fn add_modprobe_modules(&mut self, release: &str, kos: &[PathBuf]) -> Result<&mut Self> {
        for ko in kos {
            let file = format!("{}.ko", module_name(ko));
            self.add_host_file(ko, &format!("/lib/modules/{release}/extra/{file}"))?;
        }
        Ok(self)
    }

    /// Adds a host executable as `<guest_dir>/<name>` together with every shared library
    /// `ldd` lists for it (at the same paths as on the host); static binaries need none.
    pub fn add_host_binary(&mut self, host: &Path, guest_dir: &str) -> Result<String> {
        let name = host
            .file_name()
            .ok_or_else(|| Error::Invalid(format!("{} has no file name", host.display())))?
            .to_string_lossy()
            .into_owned();
        let guest = format!("{}/{name}", guest_dir.trim_end_matches('/'));
        self.add_host_file(host, &guest)?;
        for lib in shared_libraries(host)? {
            let g = lib.display().to_string();
            if !self.entries.contains_key(&normalise(&g)?) {
                self.add_host_file(&lib, &g)?;
            }
        }
        Ok(guest)
    }

    /// Adds the scenario's `/init`, its step scripts and the shell helper library.
    pub fn add_scenario(&mut self, scenario: &Scenario) -> Result<&mut Self> {
        for (path, text, perm) in scenario.guest_files()? {
            self.add_file(&path, text, perm)?;
        }
        Ok(self)
    }

    /// `(path without the leading '/', contents)` of the regular files under `prefix`
    /// (a guest path without the leading '/').
    pub(crate) fn files_under(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.entries
            .range(prefix.to_owned()..)
            .take_while(|(p, _)| p.starts_with(prefix))
            .filter_map(|(p, e)| match &e.kind {
                EntryKind::File(d) => Some((p.clone(), d.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether `guest` is in the archive.
    pub fn contains(&self, guest: &str) -> bool {
        normalise(guest).is_ok_and(|p| self.entries.contains_key(&p))
    }

    /// Serialises the archive as gzip-compressed newc cpio.
    pub fn to_gzip_cpio(&self) -> Result<Vec<u8>> {
        let gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut w = NewcWriter::new(gz);
        let io = |e| Error::Io(pathio::PathError::new("<initramfs>", e));
        for (path, entry) in &self.entries {
            w.entry(path, &entry.kind, entry.perm).map_err(io)?;
        }
        let gz = w.finish().map_err(io)?;
        gz.finish().map_err(io)
    }

    /// Writes the archive to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let data = self.to_gzip_cpio()?;
        let mut f = fs::File::create(path).at(path)?;
        f.write_all(&data).at(path)
    }
}

/// Whether an ELF image has no `PT_INTERP` (so needs no dynamic loader).
fn is_static_elf(data: &[u8]) -> bool {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 > data.len()
            || u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) != 3
    })
}

/// Shared libraries (including the dynamic loader) that `ldd` reports for `binary`.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let data = fs::read(binary).at(binary)?;
    if is_static_elf(&data) {
        return Ok(Vec::new());
    }
    let out = crate::util::run_stdout(Command::new("ldd").arg(binary))?;
    Ok(parse_ldd(&out))
}

pub(crate) fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    libs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed_into_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn parents_are_created_and_paths_validated() {
        let mut i = Initramfs::default();
        i.add_file("/a/b/c", "x", 0o644).unwrap();
        assert!(i.contains("/a") && i.contains("/a/b") && i.contains("/a/b/c"));
        assert!(i.add_file("/a/../etc", "x", 0o644).is_err());
        assert!(i.to_gzip_cpio().unwrap().starts_with(&[0x1f, 0x8b]));
    }

    #[test]
    fn dynamic_host_binary_brings_its_loader() {
        let mut i = Initramfs::new();
        let g = i
            .add_host_binary(Path::new("/bin/sh"), "/usr/local/bin")
            .unwrap();
        assert_eq!(g, "/usr/local/bin/sh");
        assert!(i.contains("/lib64/ld-linux-x86-64.so.2"));
    }
}
