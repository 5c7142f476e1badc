//! Thin wrappers over apt and dpkg: host packages, downloads and extraction of `.deb` files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result};
use crate::util::{display, run, run_stdout};

/// Host packages the test bed uses: QEMU, busybox for the guest, module build tools, and the
/// host programs copied into guests that run the kernel's own selftest scripts.
pub const HOST_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
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

/// Downloads `name=version` for each pair into `dir`, skipping files already there; returns
/// the `.deb` paths in the same order.
pub fn download(packages: &[(String, String)], dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).at(dir)?;
    let mut todo = Vec::new();
    for (name, version) in packages {
        if find_deb(dir, name, version)?.is_none() {
            todo.push(format!("{name}={version}"));
        }
    }
    if !todo.is_empty() {
        tracing::info!(packages = ?todo, dir = %dir.display(), "apt-get download");
        run(Command::new("apt-get")
            .current_dir(dir)
            .args(["download", "-q"])
            .args(&todo))?;
    }
    packages
        .iter()
        .map(|(name, version)| {
            find_deb(dir, name, version)?.ok_or_else(|| {
                Error::Apt(format!(
                    "apt-get download left no {name}_{version}_*.deb in {}",
                    dir.display()
                ))
            })
        })
        .collect()
}

/// The `.deb` of `name` at `version` in `dir` (apt writes an epoch's `:` as `%3a`).
fn find_deb(dir: &Path, name: &str, version: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{name}_{}_", version.replace(':', "%3a"));
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&prefix) && file.ends_with(".deb") {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

/// `dpkg-deb -x deb dest`.
pub fn extract_deb(deb: &Path, dest: &Path) -> Result<()> {
    fs::create_dir_all(dest).at(dest)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest)).map(drop)
}

/// Extracts only `members` (paths like `./boot`) of a `.deb`'s data into `dest`.
pub fn extract_deb_members(deb: &Path, dest: &Path, members: &[&str]) -> Result<()> {
    fs::create_dir_all(dest).at(dest)?;
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb);
    let command = display(&dpkg);
    let mut child = dpkg
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    let stdout = child.stdout.take().ok_or_else(|| Error::Spawn {
        command: command.clone(),
        source: std::io::Error::other("no stdout"),
    })?;
    let tar = run(Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .args(members)
        .stdin(stdout));
    let status = child.wait().at(deb)?;
    tar?;
    if !status.success() {
        return Err(Error::Command {
            command,
            status: status.to_string(),
            output: String::new(),
        });
    }
    Ok(())
}

/// The host's `dpkg --print-architecture` (the test bed supports amd64 only).
pub fn host_architecture() -> Result<String> {
    Ok(
        run_stdout(Command::new("dpkg").arg("--print-architecture"))?
            .trim()
            .to_owned(),
    )
}
