//! A real Debian 12 system for the tests, besides the busybox guest: a disk image made
//! with `mmdebstrap` (systemd, apt, SSH, the target kernel), booted from its disk through
//! UEFI (Debian's signed shim and GRUB, optionally with Secure Boot and machine-owner
//! keys), driven over SSH, reset through QMP, and fed packages from a local signed apt
//! repository shared over 9p.
//!
//! ```no_run
//! use testbed::vm::{DebianImage, ImageSpec, Machine, MachineConfig};
//! let kernel = testbed::ensure_packages(testbed::KernelSeries::V6_1)?;
//! let cache = testbed::Cache::from_env();
//! let image = DebianImage::ensure(cache.root(), &ImageSpec::bookworm(kernel.release(), kernel.version()))?;
//! let mut vm = Machine::start(&image, &MachineConfig::new(&testbed::vm::tools_dir(cache.root())))?;
//! vm.wait_ssh(std::time::Duration::from_secs(600))?;
//! println!("{}", vm.sh_ok("uname -r")?);
//! vm.poweroff()?;
//! # Ok::<(), testbed::Error>(())
//! ```

mod bootstrap;
mod disk;
mod firmware;
mod image;
mod machine;
mod metrics;
mod repo;

pub use bootstrap::{host_mirrors, mmdebstrap, Bootstrap, BootstrapReport, Mirrors};
pub use disk::{grub_cfg, EfiBinaries};
pub use firmware::{virt_fw_vars, Firmware, SHIM_LOCK_GUID, VIRT_FIRMWARE};
pub use image::{efi_binaries, vm_cache, DebianImage, ImageInfo, ImageSpec, BASE_PACKAGES};
pub use machine::{strip_ansi, Machine, MachineConfig};
pub use metrics::{node_exporter, node_exporter_parse_with};
pub use repo::{publish_script, AptRepo};

/// Host packages the Debian guest needs: image building (`mmdebstrap`, `mkfs.vfat`,
/// `mcopy`, `sfdisk`, `qemu-img`), UEFI firmware, the repository tools and SSH.
pub const HOST_PACKAGES: &[&str] = &[
    "mmdebstrap",
    "qemu-utils",
    "ovmf",
    "dosfstools",
    "mtools",
    "fdisk",
    "e2fsprogs",
    "apt-utils",
    "gnupg",
    "openssh-client",
    "python3-venv",
];

/// Where tools installed on demand live (`virt-fw-vars`).
pub fn tools_dir(cache_root: &std::path::Path) -> std::path::PathBuf {
    vm_cache(cache_root).join("tools")
}

/// [`node_exporter_parse_with`] with the default cache's tools.
pub fn node_exporter_parse(file: &std::path::Path) -> crate::Result<String> {
    node_exporter_parse_with(&tools_dir(crate::Cache::from_env().root()), file)
}
