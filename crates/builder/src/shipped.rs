//! The target's shipped binaries from Debian's image package, for verification when
//! there is no `-dbg` package (`--kallsyms`): the kernel image inside `vmlinuz`,
//! decompressed to its ELF `vmlinux` (as the kernel's `scripts/extract-vmlinux` does),
//! and a module's `.ko` (decompressed when shipped as `.ko.xz` or `.ko.zst`).
//!
//! Both are unpacked once into the release's cache (`pkg/boot/`, `pkg/lib/modules/` or
//! `pkg/usr/lib/modules/` as the package lays them out).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{io, step, Result};
use crate::kernel::{debian_err, Kernel};
use crate::progress::Progress;

use debian::vmlinuz::{decompress, extract_vmlinux, FORMATS};

/// The image package's `.deb`, downloaded once.
fn image_deb(k: &Kernel, p: &mut Progress) -> Result<PathBuf> {
    p.note(&format!(
        "using {} for the target's shipped binaries",
        k.rel.image.spec()
    ));
    k.files.image_deb(&k.archive).map_err(debian_err)
}

/// Unpack members matching the shell pattern `pattern` of `deb` into `dest`.
fn extract_matching(deb: &Path, dest: &Path, pattern: &str) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$0" | tar -x --wildcards -C "$1" "$2""#)
        .arg(deb)
        .arg(dest)
        .arg(format!("./{}", pattern.trim_start_matches("./")))
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(step(format!("{} has no {pattern}", deb.display()))),
    }
}

/// The kernel image of the target, decompressed from the image package's `vmlinuz`.
pub fn image_vmlinux(k: &Kernel, p: &mut Progress) -> Result<PathBuf> {
    let out = k
        .pkg()
        .join("boot")
        .join(format!("vmlinux-{}.extracted", k.rel.release));
    if out.exists() {
        return Ok(out);
    }
    p.note(&format!(
        "using the kernel image of {} for the target's shipped code",
        k.rel.image.spec()
    ));
    let z = k.files.ensure_vmlinuz(&k.archive).map_err(debian_err)?;
    let data = std::fs::read(&z).map_err(io(&z))?;
    let elf = extract_vmlinux(&data).ok_or_else(|| {
        step(format!(
            "{}: found no compressed ELF kernel inside (tried {})",
            z.display(),
            FORMATS.iter().map(|f| f.1).collect::<Vec<_>>().join(", ")
        ))
    })?;
    kelf::write::write_atomic(&out, &elf).map_err(|e| step(e.to_string()))?;
    Ok(out)
}

/// Where an image package keeps its modules, relative to the package root: Debian 12's
/// packages use `/lib/modules`, Debian 13's (merged `/usr`) `/usr/lib/modules`.
const MODULE_DIRS: &[&str] = &["lib/modules", "usr/lib/modules"];

/// The image package's copy of module `ko` (relative to `/lib/modules/<release>/`).
pub fn image_module(k: &Kernel, ko: &str, p: &mut Progress) -> Result<PathBuf> {
    let bases: Vec<PathBuf> = MODULE_DIRS
        .iter()
        .map(|d| k.pkg().join(d).join(&k.rel.release))
        .collect();
    if let Some(out) = bases.iter().map(|b| b.join(ko)).find(|o| o.exists()) {
        return Ok(out);
    }
    let deb = image_deb(k, p)?;
    let found = MODULE_DIRS.iter().zip(&bases).find(|(dir, _)| {
        let pattern = format!("{dir}/{}/{ko}*", k.rel.release);
        extract_matching(&deb, &k.pkg(), &pattern).is_ok()
    });
    let Some((_, base)) = found else {
        return Err(step(format!(
            "{} has no {ko} under {}",
            deb.display(),
            MODULE_DIRS.join(" or ")
        )));
    };
    let out = base.join(ko);
    for (ext, tool) in [("xz", "xz"), ("zst", "zstd"), ("gz", "gzip")] {
        let z = base.join(format!("{ko}.{ext}"));
        if !z.exists() {
            continue;
        }
        let data = std::fs::read(&z).map_err(io(&z))?;
        let plain = decompress(tool, &data)
            .filter(|d| d.starts_with(b"\x7fELF"))
            .ok_or_else(|| step(format!("{}: cannot decompress with {tool}", z.display())))?;
        kelf::write::write_atomic(&out, &plain).map_err(|e| step(e.to_string()))?;
    }
    if !out.exists() {
        return Err(step(format!("{} has no {ko}", deb.display())));
    }
    Ok(out)
}
