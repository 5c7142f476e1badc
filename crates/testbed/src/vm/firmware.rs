//! UEFI firmware for the Debian guest: Debian's OVMF (package `ovmf`), with or without
//! Secure Boot, and its variable store prepared on the host, non-interactively, with
//! `virt-fw-vars` (PyPI package `virt-firmware`, installed in a virtual environment in
//! the cache): machine-owner keys go into shim's `MokList` variable, as if `mokutil
//! --import` and MokManager had run.
//!
//! `OVMF_VARS_4M.ms.fd` has Microsoft's keys enrolled and Secure Boot on: the firmware
//! starts Debian's shim (signed by Microsoft's UEFI CA), shim checks GRUB and the kernel
//! against Debian's CA built into it, and the kernel, seeing Secure Boot, locks itself
//! down and takes the `MokList` keys for module signatures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::util::run;

/// Firmware code without Secure Boot.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// Firmware code with Secure Boot (needs SMM).
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// An empty variable store.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// A variable store with Microsoft's keys enrolled and Secure Boot enabled.
pub const OVMF_VARS_MS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";
/// The pinned `virt-firmware` release.
pub const VIRT_FIRMWARE: &str = "virt-firmware==26.10";
/// The owner GUID of shim's `MokList` entries (`SHIM_LOCK_GUID`).
pub const SHIM_LOCK_GUID: &str = "605dab50-e046-4300-abb6-3dd810dd8b23";

/// How the guest's firmware is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// UEFI, Secure Boot off; certificates enrolled as machine-owner keys.
    Uefi {
        /// DER or PEM certificates for `MokList`.
        moks: Vec<PathBuf>,
    },
    /// UEFI with Secure Boot on (Microsoft's keys); certificates as machine-owner keys.
    SecureBoot {
        /// DER or PEM certificates for `MokList`.
        moks: Vec<PathBuf>,
    },
}

impl Firmware {
    /// The read-only code image.
    pub fn code(&self) -> &'static str {
        match self {
            Firmware::Uefi { .. } => OVMF_CODE,
            Firmware::SecureBoot { .. } => OVMF_CODE_SECBOOT,
        }
    }

    /// QEMU's machine arguments: q35, with SMM and a secure flash for Secure Boot.
    pub fn machine_args(&self) -> Vec<String> {
        match self {
            Firmware::Uefi { .. } => vec!["-machine".into(), "q35".into()],
            Firmware::SecureBoot { .. } => vec![
                "-machine".into(),
                "q35,smm=on".into(),
                "-global".into(),
                "driver=cfi.pflash01,property=secure,value=on".into(),
            ],
        }
    }

    /// Writes the variable store for this firmware to `out`.
    pub fn write_vars(&self, tools: &Path, out: &Path) -> Result<()> {
        let (template, moks) = match self {
            Firmware::Uefi { moks } => (OVMF_VARS, moks),
            Firmware::SecureBoot { moks } => (OVMF_VARS_MS, moks),
        };
        for f in [template, self.code()] {
            if !Path::new(f).exists() {
                return Err(Error::MissingHostPackages(vec!["ovmf".into()]));
            }
        }
        if moks.is_empty() {
            fs::copy(template, out).at(out)?;
            return Ok(());
        }
        let mut cmd = Command::new(virt_fw_vars(tools)?);
        cmd.arg("--input").arg(template);
        for cert in moks {
            cmd.arg("--add-mok").arg(SHIM_LOCK_GUID).arg(cert);
        }
        cmd.arg("--output").arg(out);
        run(&mut cmd).map(drop)
    }
}

/// `virt-fw-vars` from a virtual environment under `tools`, installed with pip on first use.
pub fn virt_fw_vars(tools: &Path) -> Result<PathBuf> {
    let venv = tools.join(VIRT_FIRMWARE.replace("==", "-"));
    let exe = venv.join("bin/virt-fw-vars");
    if exe.exists() {
        return Ok(exe);
    }
    let _lock = crate::util::FileLock::acquire(&tools.join("venv.lock"))?;
    if exe.exists() {
        return Ok(exe);
    }
    if venv.exists() {
        fs::remove_dir_all(&venv).at(&venv)?;
    }
    tracing::info!(venv = %venv.display(), "pip install {VIRT_FIRMWARE}");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        VIRT_FIRMWARE,
    ]))?;
    if !exe.exists() {
        return Err(Error::Cache(format!(
            "pip installed {VIRT_FIRMWARE} but {} is missing",
            exe.display()
        )));
    }
    Ok(exe)
}
