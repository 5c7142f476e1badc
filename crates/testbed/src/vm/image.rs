//! The Debian 12 disk image: built once per kernel and package set with `mmdebstrap`,
//! cached as a compressed qcow2; each run boots a throw-away overlay of it.
//!
//! Cache layout under `<testbed cache>/debian-vm/`:
//! ```text
//! lock                            held while an image is built
//! debs/                           packages mmdebstrap downloaded (a rebuild reuses them)
//! efi/                            shim-signed, shim-helpers-amd64-signed, grub-efi-amd64-signed
//! tools/virt-firmware-<ver>/      virt-fw-vars (pip, in a virtual environment)
//! <release>-<hash>/image.qcow2    the disk: ESP (shim, MokManager, GRUB) + ext4 root
//! <release>-<hash>/image.json     what it holds and what building it cost
//! <release>-<hash>/ssh/id_ed25519 root's login key
//! ```
//! `<hash>` covers everything that goes into the image, so a change of kernel version,
//! package list or layout builds a new one (and removes the old).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::bootstrap::{host_mirrors, mmdebstrap, Bootstrap};
use super::disk::{build_disk, DiskSpec, EfiBinaries};
use crate::error::{Error, IoContext, Result};
use crate::util::{hash_hex, run, FileLock};

/// Bumped when the image's layout or customisation changes.
const FORMAT: &str = "debian-vm-2";

/// Packages of every image besides the kernel: systemd as init, apt, SSH (the test bed
/// drives the guest over it), Python and python3-apt (Ansible's modules need them), and
/// initramfs-tools (the root file system's driver is a module).
pub const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "initramfs-tools",
    "zstd",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
];

/// What a VM never needs (kept out of the image to keep it small).
pub const PATH_EXCLUDE: &[&str] = &[
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/share/doc/*/changelog*",
    "/usr/lib/modules/*/kernel/drivers/gpu/*",
    "/usr/lib/modules/*/kernel/drivers/media/*",
    "/usr/lib/modules/*/kernel/drivers/net/wireless/*",
    "/usr/lib/modules/*/kernel/drivers/infiniband/*",
    "/usr/lib/modules/*/kernel/sound/*",
];

/// The kernel command line after `root=… ro`.
pub const CMDLINE: &str = "console=ttyS0,115200n8";

/// Size of the root file system.
const ROOT_MIB: u64 = 1536;

/// What the image holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// `bookworm`.
    pub suite: String,
    /// The kernel release, e.g. `6.1.0-57-amd64`.
    pub release: String,
    /// The Debian version of its image package.
    pub kernel_version: String,
    /// Further packages.
    pub packages: Vec<String>,
}

impl ImageSpec {
    /// Debian 12 with `release` (`version`) and [`BASE_PACKAGES`].
    pub fn bookworm(release: &str, kernel_version: &str) -> Self {
        ImageSpec {
            suite: "bookworm".into(),
            release: release.into(),
            kernel_version: kernel_version.into(),
            packages: BASE_PACKAGES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn key(&self) -> String {
        let spec = serde_json::to_string(self).unwrap_or_default();
        let excl = PATH_EXCLUDE.join(",");
        hash_hex(&[
            FORMAT.as_bytes(),
            spec.as_bytes(),
            excl.as_bytes(),
            CMDLINE.as_bytes(),
        ])
    }
}

/// What building the image cost, and what it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub spec: ImageSpec,
    /// The root file system's UUID.
    pub root_uuid: String,
    /// Seconds `mmdebstrap` took.
    pub bootstrap_secs: f64,
    /// Seconds for the whole build.
    pub build_secs: f64,
    /// Bytes of packages downloaded for this build.
    pub downloaded_bytes: u64,
    /// Bytes of all packages installed.
    pub package_bytes: u64,
    /// Size of the qcow2 file.
    pub image_bytes: u64,
}

/// A built, cached image.
#[derive(Clone, Debug)]
pub struct DebianImage {
    /// Its directory.
    pub dir: PathBuf,
    /// The qcow2 disk.
    pub disk: PathBuf,
    /// root's SSH key.
    pub ssh_key: PathBuf,
    /// What it holds.
    pub info: ImageInfo,
    /// How long this call spent building it (`None`: it was cached).
    pub built_in: Option<Duration>,
}

/// `<cache root>/debian-vm`.
pub fn vm_cache(cache_root: &Path) -> PathBuf {
    cache_root.join("debian-vm")
}

impl DebianImage {
    /// The image for `spec` from the cache under `cache_root`, built if missing.
    pub fn ensure(cache_root: &Path, spec: &ImageSpec) -> Result<DebianImage> {
        let base = vm_cache(cache_root);
        fs::create_dir_all(&base).at(&base)?;
        let dir = base.join(format!("{}-{}", spec.release, spec.key()));
        if let Some(img) = Self::cached(&dir) {
            return Ok(img);
        }
        let _lock = FileLock::acquire(&base.join("lock"))?;
        if let Some(img) = Self::cached(&dir) {
            return Ok(img);
        }
        let start = Instant::now();
        let mut img = build(&base, &dir, spec)?;
        img.built_in = Some(start.elapsed());
        // Older images are of no further use.
        for e in fs::read_dir(&base).at(&base)?.flatten() {
            let p = e.path();
            if p != dir && p.join("image.json").exists() {
                tracing::info!(dir = %p.display(), "removing an older disk image");
                let _ = fs::remove_dir_all(&p);
            }
        }
        Ok(img)
    }

    fn cached(dir: &Path) -> Option<DebianImage> {
        let info: ImageInfo =
            serde_json::from_str(&fs::read_to_string(dir.join("image.json")).ok()?).ok()?;
        let img = DebianImage {
            disk: dir.join("image.qcow2"),
            ssh_key: dir.join("ssh/id_ed25519"),
            dir: dir.to_path_buf(),
            info,
            built_in: None,
        };
        (img.disk.exists() && img.ssh_key.exists()).then_some(img)
    }
}

fn build(base: &Path, dir: &Path, spec: &ImageSpec) -> Result<DebianImage> {
    if dir.exists() {
        fs::remove_dir_all(dir).at(dir)?;
    }
    let work = dir.join("work");
    fs::create_dir_all(&work).at(&work)?;
    let start = Instant::now();
    let efi = efi_binaries(&base.join("efi"))?;
    let mirrors = host_mirrors(Path::new("/"))?;
    let mut include = spec.packages.clone();
    include.push(format!(
        "linux-image-{}={}",
        spec.release, spec.kernel_version
    ));
    let rootfs = work.join("rootfs");
    let boot = mmdebstrap(
        &Bootstrap {
            suite: spec.suite.clone(),
            include,
            path_exclude: PATH_EXCLUDE.iter().map(|s| s.to_string()).collect(),
        },
        &mirrors,
        &base.join("debs"),
        &rootfs,
    )?;
    let root_uuid = new_uuid()?;
    let ssh_dir = dir.join("ssh");
    fs::create_dir_all(&ssh_dir).at(&ssh_dir)?;
    let ssh_key = ssh_dir.join("id_ed25519");
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kpatch-testbed"])
        .arg("-f")
        .arg(&ssh_key))?;
    let pubkey = fs::read_to_string(ssh_key.with_extension("pub")).at(&ssh_key)?;
    customize(&rootfs, &root_uuid, &pubkey)?;
    let disk = dir.join("image.qcow2");
    build_disk(
        &DiskSpec {
            rootfs: &rootfs,
            root_mib: ROOT_MIB,
            root_uuid: &root_uuid,
            cmdline: CMDLINE,
            efi: &efi,
        },
        &work,
        &disk,
    )?;
    fs::remove_dir_all(&work).at(&work)?;
    let info = ImageInfo {
        spec: spec.clone(),
        root_uuid,
        bootstrap_secs: boot.elapsed.as_secs_f64(),
        build_secs: start.elapsed().as_secs_f64(),
        downloaded_bytes: boot.downloaded,
        package_bytes: boot.packages,
        image_bytes: fs::metadata(&disk).at(&disk)?.len(),
    };
    let manifest = dir.join("image.json");
    let text = serde_json::to_string_pretty(&info)
        .map_err(|e| Error::Cache(format!("serialising {}: {e}", manifest.display())))?;
    fs::write(&manifest, text).at(&manifest)?;
    tracing::info!(?info, "Debian disk image built");
    Ok(DebianImage {
        dir: dir.to_path_buf(),
        disk,
        ssh_key,
        info,
        built_in: None,
    })
}

fn new_uuid() -> Result<String> {
    let p = Path::new("/proc/sys/kernel/random/uuid");
    Ok(fs::read_to_string(p).at(p)?.trim().to_string())
}

/// What makes the bootstrapped tree a machine: its root file system in fstab, a host
/// name, DHCP on the virtual network card (systemd-networkd), root's SSH key, no apt
/// sources (the guest is offline), a persistent journal (the test reads the journal of the boot before a reset), and no
/// timers that would start apt or fstrim in the middle of a test.
fn customize(root: &Path, uuid: &str, ssh_pubkey: &str) -> Result<()> {
    let write = |rel: &str, text: &str, mode: u32| -> Result<()> {
        let p = root.join(rel);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).at(d)?;
        }
        fs::write(&p, text).at(&p)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).at(&p)
    };
    write(
        "etc/fstab",
        &format!("UUID={uuid} / ext4 errors=remount-ro 0 1\n"),
        0o644,
    )?;
    write("etc/hostname", "kpatch-vm\n", 0o644)?;
    write(
        "etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tkpatch-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    write(
        "etc/systemd/network/50-dhcp.network",
        "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n",
        0o644,
    )?;
    write("root/.ssh/authorized_keys", ssh_pubkey, 0o600)?;
    // The guest has no route to a mirror: packages come from the repositories a test
    // adds (the kpatch repository over 9p).
    write(
        "etc/apt/sources.list",
        "# This test system is offline; see /etc/apt/sources.list.d.\n",
        0o644,
    )?;
    use std::os::unix::fs::PermissionsExt;
    let ssh = root.join("root/.ssh");
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).at(&ssh)?;
    let journal = root.join("var/log/journal");
    fs::create_dir_all(&journal).at(&journal)?;
    let systemctl = |args: &[&str]| {
        run(Command::new("systemctl")
            .arg(format!("--root={}", root.display()))
            .args(args))
    };
    systemctl(&["enable", "systemd-networkd.service"])?;
    for timer in [
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "dpkg-db-backup.timer",
        "fstrim.timer",
        "e2scrub_all.timer",
    ] {
        if root.join("lib/systemd/system").join(timer).exists() {
            systemctl(&["disable", timer])?;
        }
    }
    Ok(())
}

/// Debian's signed shim, MokManager and GRUB, downloaded once into `dir` from the host's
/// apt lists and extracted there.
pub fn efi_binaries(dir: &Path) -> Result<EfiBinaries> {
    let x = dir.join("x");
    let bins = EfiBinaries {
        shim: x.join("usr/lib/shim/shimx64.efi.signed"),
        mok_manager: x.join("usr/lib/shim/mmx64.efi.signed"),
        grub: x.join("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"),
    };
    if [&bins.shim, &bins.mok_manager, &bins.grub]
        .iter()
        .all(|p| p.exists())
    {
        return Ok(bins);
    }
    fs::create_dir_all(dir).at(dir)?;
    let packages = [
        "shim-signed",
        "shim-helpers-amd64-signed",
        "grub-efi-amd64-signed",
    ];
    run(Command::new("apt-get")
        .current_dir(dir)
        .args(["download", "-q"])
        .args(packages))?;
    for e in fs::read_dir(dir).at(dir)?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "deb") {
            debian::unpack::extract(&p, &x, &[]).map_err(|e| Error::Cache(e.to_string()))?;
        }
    }
    for p in [&bins.shim, &bins.mok_manager, &bins.grub] {
        if !p.exists() {
            return Err(Error::Cache(format!(
                "{} is missing after extracting {}",
                p.display(),
                packages.join(", ")
            )));
        }
    }
    Ok(bins)
}

/// `<hash>` of a spec, for tests.
#[cfg(test)]
pub(crate) fn key_of(spec: &ImageSpec) -> String {
    spec.key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_follows_kernel_version_and_packages() {
        let a = ImageSpec::bookworm("6.1.0-57-amd64", "6.1.192-3");
        let mut b = a.clone();
        assert_eq!(key_of(&a), key_of(&b));
        b.kernel_version = "6.1.192-4".into();
        assert_ne!(key_of(&a), key_of(&b));
        let mut c = a.clone();
        c.packages.push("vim".into());
        assert_ne!(key_of(&a), key_of(&c));
    }
}
