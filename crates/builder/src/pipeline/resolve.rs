//! Phase 1, resolve: the patch's name and the files it changes, and the target kernel
//! resolved to Debian's packages of one exact version.

use std::path::PathBuf;

use super::BuildOptions;
use crate::distro::{self, Release};
use crate::error::{io, step, step_hint, Error, Result};
use crate::patch;
use crate::progress::Progress;

/// What the build is for.
#[derive(Clone, Debug)]
pub struct Target {
    /// The patch name (`-n`, else the patch file's name).
    pub name: String,
    /// The module's file stem, `livepatch-<name>`.
    pub stem: String,
    /// The patch file, absolute.
    pub patch_file: PathBuf,
    /// Files the patch changes, relative to the top of the kernel tree.
    pub files: Vec<PathBuf>,
    /// The kernel release and its packages.
    pub release: Release,
}

/// Phase entry point.
pub fn run(opts: &BuildOptions, p: &mut Progress) -> Result<Target> {
    let name = patch_name(opts)?;
    let patch_text = std::fs::read_to_string(&opts.patch).map_err(io(&opts.patch))?;
    let files = patch::changed_files(&patch_text)?;
    let patch_file = std::fs::canonicalize(&opts.patch).map_err(io(&opts.patch))?;

    p.phase("resolve target kernel");
    let release = resolve_target(opts)?;
    p.note(&format!(
        "kernel {} (Debian {})",
        release.release, release.version
    ));
    Ok(Target {
        stem: format!("livepatch-{name}"),
        name,
        patch_file,
        files,
        release,
    })
}

/// Patch name: `-n`, else the patch file's name without extension, made module-safe.
pub fn patch_name(opts: &BuildOptions) -> Result<String> {
    let raw = match &opts.name {
        Some(n) => n.clone(),
        None => opts
            .patch
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| step("cannot derive a name from the patch file; use -n"))?,
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.is_empty() || clean.len() > 48 {
        return Err(step_hint(
            format!("unusable patch name '{raw}'"),
            "use -n with a short name of letters, digits, - and _",
        ));
    }
    Ok(clean)
}

/// Resolve the target kernel.
pub fn resolve_target(opts: &BuildOptions) -> Result<Release> {
    let target = match &opts.target {
        Some(t) => t.clone(),
        None => distro::running_release()?,
    };
    distro::resolve(&target).map_err(|e| match e {
        Error::Step { msg, .. } => step_hint(
            format!("cannot find Debian packages for kernel {target}: {msg}"),
            "give the target with -a <release> (e.g. 6.1.0-56-amd64) or -a 6.1 / -a 6.12 for the current Debian 12 kernels",
        ),
        other => other,
    })
}
