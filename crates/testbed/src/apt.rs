//! Host packages the test bed needs, installed with the host's apt. (Kernel packages come
//! from the `debian` crate's private apt configuration, never from the host's.)

use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::util::{run, run_stdout};

/// Host packages the test bed uses: QEMU, busybox for the guest, module build tools, and the
/// host programs copied into guests that run the kernel's own selftest scripts.
pub const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "mmdebstrap",
    "debian-archive-keyring",
    "cpio",
    "make",
    "gcc-12",
    "dwarves",
    "kmod",
    "bash",
    "coreutils",
    "procps",
    "diffutils",
    "xz-utils",
    "zstd",
    "libelf1",
];

/// Packages of `wanted` that dpkg does not report as installed.
pub fn missing_host_packages(wanted: &[&str]) -> Vec<String> {
    wanted
        .iter()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .stderr(Stdio::null())
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|p| (*p).to_owned())
        .collect()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Installs the missing ones of `wanted` with apt-get (root only); errors name what is missing.
pub fn install_host_packages(wanted: &[&str], allow_install: bool) -> Result<Vec<String>> {
    let missing = missing_host_packages(wanted);
    if missing.is_empty() {
        return Ok(missing);
    }
    if !allow_install || !is_root() {
        return Err(Error::MissingHostPackages(missing));
    }
    tracing::info!(packages = ?missing, "installing host packages");
    let install = |update: bool| -> Result<()> {
        if update {
            apt_get_update()?;
        }
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q"])
            .arg("--no-install-recommends")
            .args(&missing))
        .map(drop)
    };
    install(false).or_else(|_| install(true))?;
    let still = missing_host_packages(wanted);
    if still.is_empty() {
        Ok(missing)
    } else {
        Err(Error::MissingHostPackages(still))
    }
}

/// `apt-get update` (root only).
pub fn apt_get_update() -> Result<()> {
    if !is_root() {
        return Err(Error::Apt(
            "apt's package lists need `apt-get update`, which needs root".into(),
        ));
    }
    tracing::info!("apt-get update");
    run(Command::new("apt-get").args(["-o", "DPkg::Lock::Timeout=600", "update", "-q"])).map(drop)
}

/// The host's `dpkg --print-architecture` (the test bed supports amd64 only).
pub fn host_architecture() -> Result<String> {
    Ok(
        run_stdout(Command::new("dpkg").arg("--print-architecture"))?
            .trim()
            .to_owned(),
    )
}
