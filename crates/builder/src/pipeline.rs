//! The kpatch-build pipeline: resolve the kernel, prepare its tree once, compile the
//! affected translation units before and after the patch, diff them, build the module.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::distro::{self, Release};
use crate::error::{io, step, step_hint, Error, Result};
use crate::kernel::{run, Kernel};
use crate::module;
use crate::patch;
use crate::progress::Progress;
use crate::units::{Parent, Unit};

/// Flags every object is compiled with: one section per function and per object.
pub const KCFLAGS: &str = "-ffunction-sections -fdata-sections";

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub patch: PathBuf,
    /// Target: a release (`6.1.0-56-amd64`) or a series (`6.1`); default the running kernel.
    pub target: Option<String>,
    /// Use this (configured) kernel tree instead of Debian's source package.
    pub sourcedir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// vmlinux with symbols (instead of the -dbg package).
    pub vmlinux: Option<PathBuf>,
    /// The target's `/proc/kallsyms` as the parent symbol table (no -dbg package needed).
    pub kallsyms: Option<PathBuf>,
    pub jobs: usize,
    pub name: Option<String>,
    pub output_dir: PathBuf,
    pub debug: bool,
    pub replace: bool,
    pub skip_cleanup: bool,
    pub skip_compiler_check: bool,
    pub cache: PathBuf,
    pub quiet: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FunctionChange {
    pub object: String,
    pub function: String,
    pub new: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildReport {
    pub module: PathBuf,
    pub name: String,
    pub release: String,
    pub version: String,
    pub units: Vec<Unit>,
    pub functions: Vec<FunctionChange>,
    pub klp_relocations: usize,
    pub phases: Vec<(String, f64)>,
    pub log: PathBuf,
}

/// Which translation units a changed file affects.
pub trait UnitResolver {
    /// `vmlinux` is the debug vmlinux of the kernel (its DWARF lists vmlinux's units).
    /// Without it (a kallsyms dump is the parent symbol table), the Makefiles decide.
    fn units_for(&self, k: &Kernel, vmlinux: Option<&Path>, changed: &Path) -> Result<Vec<Unit>>;
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

fn make_objects(
    k: &Kernel,
    jobs: usize,
    include_dir: &Path,
    objects: &[PathBuf],
    what: &str,
    p: &mut Progress,
) -> Result<()> {
    let mut args = k.make_args(jobs);
    args.push(format!("KCFLAGS={KCFLAGS} -I{}", include_dir.display()));
    args.extend(objects.iter().map(|o| o.display().to_string()));
    let out = run(Command::new("make").args(&args), what)?;
    p.log(&out);
    Ok(())
}

fn copy_objects(tree: &Path, units: &[Unit], dest: &Path) -> Result<()> {
    for u in units {
        let to = dest.join(&u.object);
        if let Some(d) = to.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::copy(tree.join(&u.object), &to).map_err(io(&to))?;
    }
    Ok(())
}

/// Original objects, cached: the tree is always pristine outside a build, so an
/// object built from it is valid until the tree changes.
fn original_objects(
    k: &Kernel,
    opts: &BuildOptions,
    inc: &Path,
    units: &[Unit],
    p: &mut Progress,
) -> Result<PathBuf> {
    let cache = k.orig_cache();
    if k.user_tree() && cache.exists() {
        std::fs::remove_dir_all(&cache).map_err(io(&cache))?;
    }
    let missing: Vec<PathBuf> = units
        .iter()
        .filter(|u| !cache.join(&u.object).exists())
        .map(|u| u.object.clone())
        .collect();
    if missing.is_empty() {
        p.note(&format!("{} original object(s) from cache", units.len()));
        return Ok(cache);
    }
    make_objects(k, opts.jobs, inc, &missing, "building original objects", p)?;
    let todo: Vec<Unit> = units
        .iter()
        .filter(|u| missing.contains(&u.object))
        .cloned()
        .collect();
    copy_objects(&k.tree(), &todo, &cache)?;
    p.note(&format!(
        "{} built, {} from cache",
        missing.len(),
        units.len() - missing.len()
    ));
    Ok(cache)
}

struct Sink(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

fn differ_log(buf: &Sink) -> differ::LogFn {
    let b = buf.0.clone();
    differ::LogFn::new(move |_, msg| {
        if let Ok(mut v) = b.lock() {
            v.push(msg.to_string());
        }
    })
}

/// Run the whole pipeline.
pub fn build(
    opts: &BuildOptions,
    resolver: &dyn UnitResolver,
    p: &mut Progress,
    log: PathBuf,
) -> Result<BuildReport> {
    let name = patch_name(opts)?;
    let stem = format!("livepatch-{name}");
    let patch_text = std::fs::read_to_string(&opts.patch).map_err(io(&opts.patch))?;
    let files = patch::changed_files(&patch_text)?;
    let patch_file = std::fs::canonicalize(&opts.patch).map_err(io(&opts.patch))?;

    p.phase("resolve target kernel");
    let rel = resolve_target(opts)?;
    p.note(&format!("kernel {} (Debian {})", rel.release, rel.version));
    let k = Kernel::new(rel.clone(), &opts.cache)
        .with_tree(opts.sourcedir.as_deref(), opts.config.as_deref())?;
    if let Some(dir) = &opts.sourcedir {
        p.note(&format!("using the kernel tree {}", dir.display()));
    }
    if let Some(c) = &opts.config {
        p.note(&format!("building with the configuration {}", c.display()));
    }
    std::fs::create_dir_all(&k.state).map_err(io(&k.state))?;
    let _lock = crate::lock::Lock::acquire(&k.root.join(".lock"))?;

    p.phase("prepare kernel tree");
    k.ensure_headers(p)?;
    k.ensure_tree(opts.jobs, p)?;
    if !opts.skip_compiler_check {
        crate::sizes::check_compiler(&k.config(), &k.cc)?;
    }
    let inc = k.root.join("include");
    std::fs::create_dir_all(&inc).map_err(io(&inc))?;
    std::fs::write(inc.join("kpatch-macros.h"), klp::sources::KPATCH_MACROS_H).map_err(io(&inc))?;

    let vmlinux = match (&opts.vmlinux, &opts.kallsyms) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(_)) => None,
        (None, None) => Some(k.ensure_dbg_vmlinux(p)?),
    };
    if let Some(ks) = &opts.kallsyms {
        p.note(&format!("parent symbol tables from {}", ks.display()));
    }

    p.phase("check patch");
    let tree = k.tree();
    patch::check_applies(&tree, &patch_file)?;
    let mut units: Vec<Unit> = Vec::new();
    for f in &files {
        let found = resolver.units_for(&k, vmlinux.as_deref(), f)?;
        if f.extension().map(|e| e == "h").unwrap_or(false) {
            p.note(&format!(
                "{}: header included by {} object(s) of this configuration",
                f.display(),
                found.len()
            ));
        }
        for u in found {
            if !units.contains(&u) {
                units.push(u);
            }
        }
    }
    if units.is_empty() {
        return Err(step(
            "the patch touches no object built in this kernel configuration",
        ));
    }
    p.note(&format!(
        "{} file(s), {} object(s) to rebuild",
        files.len(),
        units.len()
    ));

    p.phase("build original objects");
    let orig_dir = original_objects(&k, opts, &inc, &units, p)?;

    p.phase("build patched objects");
    let work = k.root.join("work").join(&name);
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io(&work))?;
    }
    let patched_dir = work.join("patched");
    {
        let applied = patch::apply(&tree, &patch_file, &files)?;
        let objs: Vec<PathBuf> = units.iter().map(|u| u.object.clone()).collect();
        let built = make_objects(&k, opts.jobs, &inc, &objs, "building patched objects", p);
        let copied = built.and_then(|_| copy_objects(&tree, &units, &patched_dir));
        applied.revert()?;
        copied?;
    }

    p.phase("read special-section layout");
    let sizes = crate::sizes::cached_struct_sizes(&k, opts.jobs, p)?;

    p.phase("diff objects");
    let out_dir = work.join("output");
    std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;
    let mut outputs = Vec::new();
    let mut functions = Vec::new();
    let sink = Sink(Default::default());
    for u in &units {
        // The vmlinux (given or -dbg) when there is one, else the kallsyms dump.
        let (parent_name, symtab) = match (&u.parent, &opts.kallsyms) {
            (Parent::Vmlinux, ks) => {
                let table = vmlinux.clone().or_else(|| ks.clone()).unwrap_or_default();
                ("vmlinux".to_string(), table)
            }
            (Parent::Module { name, .. }, Some(ks)) => (name.clone(), ks.clone()),
            (Parent::Module { name, ko }, None) => (name.clone(), k.ensure_dbg_module(ko, p)?),
        };
        let output = out_dir.join(u.object.to_string_lossy().replace('/', "__"));
        let dopts = differ::Options {
            orig: orig_dir.join(&u.object).display().to_string(),
            patched: patched_dir.join(&u.object).display().to_string(),
            parent_name: parent_name.clone(),
            parent_symtab: symtab.display().to_string(),
            symvers: k.symvers().display().to_string(),
            patch_name: stem.replace('-', "_"),
            output: output.display().to_string(),
            sizes: sizes.clone(),
            log: differ_log(&sink),
            klp_placeholders: true,
        };
        let result = differ::run(&dopts);
        for line in sink
            .0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
        {
            p.log(&format!("{}: {line}", u.object.display()));
            if line.starts_with("WARNING")
                || line.starts_with("ERROR")
                || line.contains("ignoring")
                || line.contains("callback")
            {
                p.note(&format!("{}: {line}", u.object.display()));
            }
        }
        match result {
            Ok(r) => {
                for f in &r.changed {
                    p.note(&format!("{}: changed function {f}", u.object.display()));
                    functions.push(FunctionChange {
                        object: parent_name.clone(),
                        function: f.clone(),
                        new: false,
                    });
                }
                for f in &r.new {
                    p.note(&format!("{}: new function {f}", u.object.display()));
                    functions.push(FunctionChange {
                        object: parent_name.clone(),
                        function: f.clone(),
                        new: true,
                    });
                }
                if r.wrote_output {
                    outputs.push(output);
                } else {
                    p.note(&format!("{}: no functional change", u.object.display()));
                }
            }
            Err(differ::Error::Unpatchable(msg)) => {
                return Err(Error::Unpatchable(format!(
                    "{} ({}): {msg}",
                    u.source.display(),
                    u.object.display()
                )))
            }
            Err(differ::Error::Fatal(msg)) => {
                return Err(step(format!(
                    "create-diff-object failed on {}: {msg}",
                    u.object.display()
                )))
            }
        }
    }
    if outputs.is_empty() {
        return Err(Error::NoChange);
    }

    p.phase("build patch module");
    let built = module::build(
        &k.headers(),
        &k.cc,
        &outputs,
        &stem,
        opts.replace,
        &work.join("module"),
        p,
    )?;
    module::check_undefined(&built)?;
    p.note(&format!(
        "{} klp relocation(s) against {} kernel symbol(s)",
        built.klp_relocations, built.klp_symbols
    ));
    std::fs::create_dir_all(&opts.output_dir).map_err(io(&opts.output_dir))?;
    let dest = opts.output_dir.join(format!("{stem}.ko"));
    let bytes = std::fs::read(&built.ko).map_err(io(&built.ko))?;
    kelf::write::write_atomic(&dest, &bytes).map_err(|e| step(e.to_string()))?;
    p.end_phase();
    if !opts.skip_cleanup && !opts.debug {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(BuildReport {
        module: dest,
        name,
        release: rel.release,
        version: rel.version,
        units,
        functions,
        klp_relocations: built.klp_relocations,
        phases: p
            .phases
            .iter()
            .map(|(n, d): &(String, Duration)| (n.clone(), d.as_secs_f64()))
            .collect(),
        log,
    })
}
