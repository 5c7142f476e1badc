//! Phase 2, prepare: lock the release's cache, and make sure its tree is ready to build
//! in (Debian's source configured as Debian built it, `modules_prepare`d, once per
//! release), the compiler is the kernel's, and the parent symbol table is at hand.

use std::path::PathBuf;

use super::resolve::Target;
use super::BuildOptions;
use crate::error::{io, Result};
use crate::kernel::Kernel;
use crate::lock::Lock;
use crate::progress::Progress;
use crate::units::Truth;

/// A kernel tree ready for this build, locked for it until this value is dropped.
pub struct Prepared {
    /// The release's cache and tree.
    pub kernel: Kernel,
    /// The debug vmlinux (or `-v`'s), `None` when the parent symbol tables come from a
    /// kallsyms dump.
    pub vmlinux: Option<PathBuf>,
    /// Who says which binary each source is built into.
    pub truth: Truth,
    /// The directory with the patch-author headers (`kpatch-macros.h`, `kpatch-syscall.h`), put on the include path of every object.
    pub include: PathBuf,
    /// This build's work directory (`work/<name>` in the release's cache).
    pub work: PathBuf,
    _lock: Lock,
}

/// Phase entry point.
pub fn run(opts: &BuildOptions, target: &Target, p: &mut Progress) -> Result<Prepared> {
    let mut k = Kernel::new(target.archive.clone(), target.release.clone())
        .with_tree(opts.sourcedir.as_deref(), opts.config.as_deref())?;
    if let Some(dir) = &opts.sourcedir {
        p.note(&format!("using the kernel tree {}", dir.display()));
    }
    if let Some(c) = &opts.config {
        p.note(&format!("building with the configuration {}", c.display()));
    }
    std::fs::create_dir_all(&k.state).map_err(io(&k.state))?;
    let lock = Lock::acquire(&k.root.join(".lock"))?;

    p.phase("prepare kernel tree");
    k.ensure_headers(p)?;
    if !opts.host_toolchain {
        k.ensure_build_root(p)?;
    }
    crate::sizes::check_compiler(&k, opts.skip_compiler_check, p)?;
    let vmlinux = tree_and_vmlinux(&k, opts, p)?;
    let include = k.root.join("include");
    std::fs::create_dir_all(&include).map_err(io(&include))?;
    klp::sources::write_author_headers(&include).map_err(|e| crate::error::step(e.to_string()))?;

    if let Some(ks) = &opts.kallsyms {
        p.note(&format!("parent symbol tables from {}", ks.display()));
    }
    if let Some(v) = &vmlinux {
        crate::sizes::check_producer(&k, v, opts.skip_compiler_check, p)?;
    }
    let truth = truth(&k, opts, p)?;
    Ok(Prepared {
        work: k.root.join("work").join(&target.name),
        kernel: k,
        vmlinux,
        truth,
        include,
        _lock: lock,
    })
}

/// Who says where each source is linked: the release's -dbg index for Debian's own
/// build, Kbuild in the prepared tree otherwise (`--kallsyms`, `-v`, `-s`, `-c`).
fn truth(k: &Kernel, opts: &BuildOptions, p: &mut Progress) -> Result<Truth> {
    let debian_build = opts.sourcedir.is_none() && opts.config.is_none();
    if debian_build && opts.kallsyms.is_none() && opts.vmlinux.is_none() {
        return Ok(Truth::Index {
            dir: k.index_dir(),
            index: k.ensure_index(p)?,
        });
    }
    let vmlinux_units = match &opts.vmlinux {
        Some(v) => Some(crate::units::vmlinux_units(v)?),
        None => None,
    };
    p.note("which objects are built, and where: asked of Kbuild in the tree");
    Ok(Truth::Kbuild { vmlinux_units })
}

/// The prepared tree, and the parent vmlinux (`-v`, none with `--kallsyms`, else the `-dbg`
/// package's). A first build runs the `-dbg` index pass (a minute of decompression, which
/// also writes the debug vmlinux) in a thread while the tree is unpacked and
/// `modules_prepare`d.
fn tree_and_vmlinux(k: &Kernel, opts: &BuildOptions, p: &mut Progress) -> Result<Option<PathBuf>> {
    match (&opts.vmlinux, &opts.kallsyms) {
        (Some(v), _) => {
            k.ensure_tree(opts.jobs, p)?;
            Ok(Some(v.clone()))
        }
        (None, Some(_)) => {
            k.ensure_tree(opts.jobs, p)?;
            Ok(None)
        }
        (None, None) if k.index_ready() => {
            k.ensure_tree(opts.jobs, p)?;
            Ok(Some(k.dbg_vmlinux()))
        }
        (None, None) => {
            p.note(&format!(
                "reading {} once for this release (compile units, debug vmlinux, module \
                 symbol tables), while the tree is prepared",
                k.rel.dbg.name
            ));
            let (idx, warning) = std::thread::scope(|s| {
                let dbg = s.spawn(|| -> Result<_> {
                    let deb = k
                        .archive
                        .fetch(&k.rel.dbg)
                        .map_err(crate::kernel::debian_err)?;
                    Ok((k.build_index(&deb.path)?, deb.warning))
                });
                let tree = k.ensure_tree(opts.jobs, p);
                let dbg = dbg
                    .join()
                    .map_err(|_| crate::error::step("reading the -dbg package panicked"))?;
                tree?;
                dbg
            })?;
            if let Some(w) = warning {
                p.note(&format!("WARNING: {w}"));
            }
            k.report_index(&idx, p);
            Ok(Some(k.dbg_vmlinux()))
        }
    }
}

impl Prepared {
    /// Remove the work directory, unless asked to keep it (`--skip-cleanup`, `-d`).
    pub fn clean_up(self, opts: &BuildOptions, _succeeded: bool, p: &mut Progress) {
        if opts.skip_cleanup || opts.debug {
            p.note(&format!("work directory kept: {}", self.work.display()));
            return;
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
