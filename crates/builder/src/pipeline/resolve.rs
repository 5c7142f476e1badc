//! Phase 1, resolve: every argument checked before any work is done (the patch read and
//! parsed, the name against the kernel's module-name limit, the files given, the output
//! directory writable), then the target kernel resolved to Debian's packages of one
//! exact version.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use debian::{Archive, Release};

use super::BuildOptions;
use crate::error::{io, step, step_hint, Error, Result};
use crate::patch::{self, Patch};
use crate::progress::Progress;

/// The kernel's `MODULE_NAME_LEN` on 64-bit targets (`64 - sizeof(unsigned long)`,
/// NUL included): a module name has at most 55 characters. [`module_name_len`] reads
/// it from the target's own headers once the tree is prepared.
pub const MODULE_NAME_LEN: usize = 56;

/// What the build is for.
#[derive(Clone, Debug)]
pub struct Target {
    /// The patch name (`-n`, else the patch file's name).
    pub name: String,
    /// The module's file stem, `livepatch-<name>`.
    pub stem: String,
    /// The patch file, absolute.
    pub patch_file: PathBuf,
    /// The patch, parsed.
    pub patch: Patch,
    /// The kernel release and its packages.
    pub release: Release,
    /// Debian's archive (private apt lists in the cache), where the packages come from.
    pub archive: Arc<Archive>,
}

/// Phase entry point.
pub fn run(opts: &BuildOptions, p: &mut Progress) -> Result<Target> {
    let (name, patch_file, patch) = validate(opts)?;
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
        patch,
        release,
        archive,
    })
}

/// Check every argument; the name, the patch file and the parsed patch.
pub fn validate(opts: &BuildOptions) -> Result<(String, PathBuf, Patch)> {
    let name = patch_name(opts)?;
    let bytes = std::fs::read(&opts.patch).map_err(io(&opts.patch))?;
    let patch = patch::parse(&bytes).map_err(|e| match e {
        Error::Step { msg, hint } => Error::Step {
            msg: format!("{}: {msg}", opts.patch.display()),
            hint,
        },
        other => other,
    })?;
    let patch_file = std::fs::canonicalize(&opts.patch).map_err(io(&opts.patch))?;
    if let Some(deb) = &opts.deb {
        // Before any work: a package needs a maintainer.
        crate::package::maintainer(deb.maintainer.as_deref())?;
    }
    if opts.jobs == 0 {
        return Err(step("-j must be at least 1"));
    }
    for (flag, file) in [
        ("-v", &opts.vmlinux),
        ("--kallsyms", &opts.kallsyms),
        ("-c", &opts.config),
    ] {
        if let Some(f) = file {
            readable_file(flag, f)?;
        }
    }
    if let Some(dir) = &opts.sourcedir {
        if !dir.is_dir() {
            return Err(step(format!("-s {}: not a directory", dir.display())));
        }
    }
    if let Some(t) = &opts.target {
        if t.is_empty() || t.contains(['/', ' ', '\t']) {
            return Err(step_hint(
                format!("-a '{t}': not a kernel release or series"),
                "give a release (6.1.0-56-amd64), a series (6.1, 6.12) or a Debian release (trixie)",
            ));
        }
    }
    writable_dir("the output directory (-o)", &opts.output_dir)?;
    let module = opts.output_dir.join(format!("livepatch-{name}.ko"));
    if module.is_dir() {
        return Err(step(format!(
            "{}: a directory is in the way of the module",
            module.display()
        )));
    }
    writable_dir("the cache directory", &opts.cache)?;
    Ok((name, patch_file, patch))
}

fn readable_file(flag: &str, f: &Path) -> Result<()> {
    match std::fs::File::open(f) {
        Ok(file) if file.metadata().map(|m| m.is_file()).unwrap_or(false) => Ok(()),
        Ok(_) => Err(step(format!("{flag} {}: not a regular file", f.display()))),
        Err(e) => Err(step(format!("{flag} {}: {e}", f.display()))),
    }
}

/// `dir` exists (it is created if need be) and a file can be created in it.
fn writable_dir(what: &str, dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(step(format!("{what} {} is not a directory", dir.display())));
    }
    std::fs::create_dir_all(dir).map_err(|e| step(format!("{what} {}: {e}", dir.display())))?;
    let probe = dir.join(format!(".kpatch-build-probe-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| step(format!("{what} {} is not writable: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Patch name: `-n`, else the patch file's name without extension, made module-safe,
/// and short enough for the kernel's module-name limit.
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
    if clean.is_empty() {
        return Err(step_hint(
            format!("unusable patch name '{raw}'"),
            "use -n with a short name of letters, digits, - and _",
        ));
    }
    let module = klp::sources::module_name(&clean);
    if module.len() >= MODULE_NAME_LEN {
        let max = MODULE_NAME_LEN - 1 - (module.len() - clean.len());
        return Err(step_hint(
            format!(
                "patch name '{clean}' is too long: the module would be {module} ({} characters), \
                 and the kernel allows {} (MODULE_NAME_LEN {MODULE_NAME_LEN} with the NUL)",
                module.len(),
                MODULE_NAME_LEN - 1
            ),
            format!("give a name of at most {max} characters with -n"),
        ));
    }
    Ok(clean)
}

/// `MODULE_NAME_LEN` as the tree's headers define it for a 64-bit target
/// (`MAX_PARAM_PREFIX_LEN`, `64 - sizeof(unsigned long)` in 6.x), if they say.
pub fn module_name_len(tree: &Path) -> Option<usize> {
    let module_h = std::fs::read_to_string(tree.join("include/linux/module.h")).ok()?;
    let def = module_h
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define MODULE_NAME_LEN"))?
        .trim();
    let expr = if def == "MAX_PARAM_PREFIX_LEN" {
        let param_h = std::fs::read_to_string(tree.join("include/linux/moduleparam.h")).ok()?;
        param_h
            .lines()
            .find_map(|l| l.trim().strip_prefix("#define MAX_PARAM_PREFIX_LEN"))?
            .trim()
            .to_string()
    } else {
        def.to_string()
    };
    let expr: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let inner = expr
        .strip_prefix('(')
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or(&expr);
    match inner.split_once('-') {
        Some((n, "sizeof(unsignedlong)")) => n.parse::<usize>().ok().map(|n| n - 8),
        None => inner.parse().ok(),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(name: &str) -> BuildOptions {
        BuildOptions {
            patch: PathBuf::from("x.patch"),
            target: None,
            sourcedir: None,
            config: None,
            vmlinux: None,
            kallsyms: None,
            jobs: 1,
            name: Some(name.into()),
            output_dir: PathBuf::from("."),
            debug: false,
            replace: true,
            skip_cleanup: false,
            skip_compiler_check: false,
            allow_fuzz: false,
            skip_verify: false,
            explain: false,
            all_includers: false,
            host_toolchain: false,
            cache: PathBuf::from("/nonexistent"),
            sign: Default::default(),
            deb: None,
        }
    }

    #[test]
    fn name_limit() {
        // livepatch_ + 45 = 55 characters: the longest name the kernel takes.
        assert!(patch_name(&opts(&"a".repeat(45))).is_ok());
        let e = patch_name(&opts(&"a".repeat(46))).unwrap_err().to_string();
        assert!(
            e.contains("56 characters") && e.contains("at most 45"),
            "{e}"
        );
        assert_eq!(patch_name(&opts("fix cve.1")).unwrap(), "fix-cve-1");
    }

    #[test]
    fn name_limit_from_headers() {
        let d = tempfile::tempdir().unwrap();
        let inc = d.path().join("include/linux");
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::write(
            inc.join("module.h"),
            "#define MODULE_NAME_LEN MAX_PARAM_PREFIX_LEN\n",
        )
        .unwrap();
        std::fs::write(
            inc.join("moduleparam.h"),
            "#define MAX_PARAM_PREFIX_LEN (64 - sizeof(unsigned long))\n",
        )
        .unwrap();
        assert_eq!(module_name_len(d.path()), Some(MODULE_NAME_LEN));
        std::fs::write(inc.join("module.h"), "#define MODULE_NAME_LEN 40\n").unwrap();
        assert_eq!(module_name_len(d.path()), Some(40));
    }
}
