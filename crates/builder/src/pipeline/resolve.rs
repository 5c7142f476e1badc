//! Phase 1, resolve: the patch's name and the files it changes, and the target kernel
//! resolved to Debian's packages of one exact version.

use std::path::PathBuf;
use std::sync::Arc;

use debian::{Archive, Release};

use super::BuildOptions;
use crate::error::{io, step, step_hint, Result};
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
    /// Debian's archive (private apt lists in the cache), where the packages come from.
    pub archive: Arc<Archive>,
}

/// Phase entry point.
pub fn run(opts: &BuildOptions, p: &mut Progress) -> Result<Target> {
    let name = patch_name(opts)?;
    let patch_text = std::fs::read_to_string(&opts.patch).map_err(io(&opts.patch))?;
    let files = patch::changed_files(&patch_text)?;
    let patch_file = std::fs::canonicalize(&opts.patch).map_err(io(&opts.patch))?;

    p.phase("resolve target kernel");
    let (archive, release) = resolve_target(opts)?;
    p.note(&format!(
        "kernel {} (Debian {} {}, {})",
        release.release, release.debian, release.version, release.suite
    ));
    Ok(Target {
        stem: format!("livepatch-{name}"),
        name,
        patch_file,
        files,
        release,
        archive,
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

/// The running kernel's release (`uname -r`).
pub fn running_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// Resolve the target kernel against Debian's archive (the private apt lists in the cache,
/// re-read when older than a day or when the target is not in them).
pub fn resolve_target(opts: &BuildOptions) -> Result<(Arc<Archive>, Release)> {
    let target = opts.target.clone().unwrap_or_else(running_release);
    let cache = debian::Cache::new(&opts.cache);
    let mut archive =
        Archive::open(&cache, debian::Options::from_env()).map_err(crate::kernel::debian_err)?;
    let rel = archive.resolve(&target).map_err(|e| {
        step_hint(
            format!(
                "cannot find Debian packages for kernel {target}: {}",
                e.message()
            ),
            e.hint().unwrap_or(
                "give the target with -a <release> (e.g. 6.1.0-56-amd64) or an alias: \
                 -a 6.1 / -a 6.12 (Debian 12), -a trixie / -a trixie-cloud (Debian 13)",
            ),
        )
    })?;
    Ok((Arc::new(archive), rel))
}
