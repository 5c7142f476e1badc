//! Debian's kernel packages: resolving a release to exact package versions, downloading
//! them with apt, unpacking them into a per-release cache directory.
//!
//! Versions move with security updates, so nothing is hard-coded: a series (`6.1`,
//! `6.12`) resolves through its meta-package (`linux-image-amd64`,
//! `linux-image-6.12-amd64`) to a release (`6.1.0-56-amd64`), and every package is
//! pinned to the Debian version of that release's image.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{io, step, step_hint, Result};

/// A kernel release and the Debian version of its packages.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Release {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// Debian version of its packages, e.g. `6.1.192-2`.
    pub version: String,
    /// Upstream series, e.g. `6.1`.
    pub series: String,
    /// Packages the headers need (`linux-headers-*-common`, `linux-kbuild-*`), from apt.
    pub headers_deps: Vec<String>,
}

impl Release {
    /// `linux-source-<series>`.
    pub fn source_package(&self) -> String {
        format!("linux-source-{}", self.series)
    }

    /// `linux-image-<release>`.
    pub fn image_package(&self) -> String {
        format!("linux-image-{}", self.release)
    }

    /// `linux-headers-<release>`.
    pub fn headers_package(&self) -> String {
        format!("linux-headers-{}", self.release)
    }

    /// `linux-image-<release>-dbg` (the debug vmlinux and modules).
    pub fn dbg_package(&self) -> String {
        format!("linux-image-{}-dbg", self.release)
    }
}

fn run_capture(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| step(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        return Err(step(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `apt-cache show <pkg>` fields of the candidate version.
fn apt_show(pkg: &str) -> Result<Vec<(String, String)>> {
    let text = run_capture(Command::new("apt-cache").args(["show", "--no-all-versions", pkg]))
        .map_err(|_| {
            step_hint(
            format!("package {pkg} is unknown to apt"),
            "run `apt-get update`; on Debian 12 kernels come from bookworm and bookworm-security",
        )
        })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn series_of(release: &str) -> Result<String> {
    let mut it = release.split(['.', '-', '+']);
    match (it.next(), it.next()) {
        (Some(a), Some(b))
            if a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit()) =>
        {
            Ok(format!("{a}.{b}"))
        }
        _ => Err(step(format!(
            "cannot tell the kernel series of release {release}"
        ))),
    }
}

/// Resolve a release string (`6.1.0-56-amd64`) or a series (`6.1`, `6.12`) to packages.
pub fn resolve(target: &str) -> Result<Release> {
    let release = if target.matches('.').count() == 1 && !target.contains('-') {
        // A series: follow the meta-package to the current release.
        let meta = if target == "6.1" {
            "linux-image-amd64".to_string()
        } else {
            format!("linux-image-{target}-amd64")
        };
        let fields = apt_show(&meta)?;
        let deps = field(&fields, "Depends").unwrap_or_default();
        deps.split(',')
            .map(str::trim)
            .find_map(|d| {
                d.strip_prefix("linux-image-")
                    .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
            })
            .filter(|r| !r.is_empty())
            .ok_or_else(|| step(format!("{meta} does not depend on a kernel image")))?
    } else {
        target.to_string()
    };
    let fields = apt_show(&format!("linux-image-{release}"))?;
    let version = field(&fields, "Version")
        .ok_or_else(|| step(format!("no version for linux-image-{release}")))?;
    let headers = apt_show(&format!("linux-headers-{release}"))?;
    let headers_deps = field(&headers, "Depends")
        .unwrap_or_default()
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .filter(|d| d.starts_with("linux-headers-") || d.starts_with("linux-kbuild-"))
        .map(str::to_string)
        .collect();
    Ok(Release {
        series: series_of(&release)?,
        release,
        version,
        headers_deps,
    })
}

/// The running kernel's release.
pub fn running_release() -> Result<String> {
    Ok(run_capture(Command::new("uname").arg("-r"))?
        .trim()
        .to_string())
}

/// Download `packages` (pinned to `version`) into `dir`, skipping those already there.
pub fn download(packages: &[String], version: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for p in packages {
        match find_deb(dir, p, version) {
            Some(path) => out.push(path),
            None => missing.push(format!("{p}={version}")),
        }
    }
    if !missing.is_empty() {
        let o = Command::new("apt-get")
            .arg("download")
            .args(&missing)
            .current_dir(dir)
            .output()
            .map_err(|e| step(format!("cannot run apt-get: {e}")))?;
        if !o.status.success() {
            return Err(step_hint(
                format!("apt-get download {} failed: {}", missing.join(" "), String::from_utf8_lossy(&o.stderr).trim()),
                "run `apt-get update`, and check that the version is still in the archive (security updates replace old kernels)",
            ));
        }
        out.clear();
        for p in packages {
            out.push(
                find_deb(dir, p, version).ok_or_else(|| step(format!("{p} was not downloaded")))?,
            );
        }
    }
    Ok(out)
}

fn find_deb(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    // apt escapes ':' in versions as %3a.
    let v = version.replace(':', "%3a");
    let prefix = format!("{package}_{v}_");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|f| f.to_string_lossy().starts_with(&prefix))
                .unwrap_or(false)
                && p.extension().map(|e| e == "deb").unwrap_or(false)
        })
}

/// Unpack a .deb (optionally only some members) into `dest`.
pub fn extract(deb: &Path, dest: &Path, members: &[&str]) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let status = if members.is_empty() {
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(dest)
            .status()
    } else {
        let list: Vec<String> = members
            .iter()
            .map(|m| format!("./{}", m.trim_start_matches("./")))
            .collect();
        Command::new("bash")
            .arg("-c")
            .arg(r#"dpkg-deb --fsys-tarfile "$0" | tar -x -C "$1" "${@:2}""#)
            .arg(deb)
            .arg(dest)
            .args(&list)
            .status()
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(step(format!("cannot unpack {}", deb.display()))),
    }
}
