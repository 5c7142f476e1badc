//! The kpatch-build pipeline, one module per phase, each taking the previous phases'
//! typed results (see DESIGN.md):
//!
//! [`resolve`] → [`prepare`] → [`units`] → [`objects`] → [`verify`] → [`diff`] → [`module`]
//!
//! [`build`] is only that list.

pub mod carry;
pub mod diff;
pub mod module;
pub mod narrow;
pub mod objects;
pub mod prepare;
pub mod resolve;
pub mod units;
pub mod verify;
pub mod verify_cause;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::units::{Resolved, Truth, Unit};

pub use resolve::{patch_name, resolve_target};

/// Flags every object is compiled with: one section per function and per object.
pub const KCFLAGS: &str = "-ffunction-sections -fdata-sections";

/// What the command line asks for.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The patch file (a unified diff, `-p1`).
    pub patch: PathBuf,
    /// Target: a release (`6.1.0-56-amd64`) or an alias (`6.1`, `trixie`, `trixie-cloud`);
    /// default the running kernel.
    pub target: Option<String>,
    /// Use this (configured) kernel tree instead of Debian's source package.
    pub sourcedir: Option<PathBuf>,
    /// Build with this `.config` instead of the headers package's.
    pub config: Option<PathBuf>,
    /// vmlinux with symbols (instead of the -dbg package).
    pub vmlinux: Option<PathBuf>,
    /// The target's `/proc/kallsyms` as the parent symbol table (no -dbg package needed).
    pub kallsyms: Option<PathBuf>,
    /// Parallel jobs for `make`.
    pub jobs: usize,
    /// The patch name (`-n`); default the patch file's name.
    pub name: Option<String>,
    /// Where the module is written.
    pub output_dir: PathBuf,
    /// Keep the work directory and log everything (`-d`).
    pub debug: bool,
    /// Atomic replace: the module replaces every other loaded live patch.
    pub replace: bool,
    /// Keep the work directory, also of a failed build.
    pub skip_cleanup: bool,
    /// Warn instead of refusing a compiler that differs from the kernel's.
    pub skip_compiler_check: bool,
    /// Apply hunks whose context differs by up to two lines (recorded in the module's
    /// modinfo as `kpatch_fuzz`); refused otherwise.
    pub allow_fuzz: bool,
    /// Build even when the rebuilt original code differs from the target's (recorded in
    /// the module's modinfo).
    pub skip_verify: bool,
    /// Say why each unit a changed header reaches is rebuilt or left out (`--explain`).
    pub explain: bool,
    /// Rebuild every unit a changed header reaches, without the impact analysis
    /// (`--all-includers`).
    pub all_includers: bool,
    /// Compile with the host's tools instead of the build root of the kernel's
    /// distribution (the compiler check still applies).
    pub host_toolchain: bool,
    /// The cache directory (`~/.kpatch`).
    pub cache: PathBuf,
    /// Whether and with which key the module is signed.
    pub sign: Signing,
    /// Also write the module as a Debian package (`--deb`).
    pub deb: Option<crate::package::DebOptions>,
}

/// Module signing (`--sign-key`/`--sign-cert`, `--no-sign`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Signing {
    /// With the key pair at DKMS's or shim-signed's usual location, if there is one.
    #[default]
    Auto,
    /// With this private key and certificate.
    Key {
        /// The private key (PEM).
        key: PathBuf,
        /// Its X.509 certificate (DER or PEM).
        cert: PathBuf,
    },
    /// Not at all.
    Off,
}

/// A function the module replaces or adds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FunctionChange {
    /// `vmlinux` or the module the function lives in.
    pub object: String,
    /// The function's name.
    pub function: String,
    /// New (not in the running kernel) rather than changed.
    pub new: bool,
    /// The original object it comes from (relative to the tree).
    #[serde(skip)]
    pub unit: PathBuf,
    /// Why a changed function changed: its first differing instruction, source lines
    /// and cause (from the differ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<differ::Explanation>,
}

/// What a successful build produced (the `--json` summary).
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildReport {
    /// The module written.
    pub module: PathBuf,
    /// The patch name.
    pub name: String,
    /// The kernel release it is for.
    pub release: String,
    /// The Debian version of that kernel's packages.
    pub version: String,
    /// The translation units rebuilt.
    pub units: Vec<Unit>,
    /// Changed and new functions.
    pub functions: Vec<FunctionChange>,
    /// Relocations the livepatch core resolves at load time.
    pub klp_relocations: usize,
    /// Every function of every original object against the target's binary.
    pub verify: Vec<verify::UnitResult>,
    /// The targets' GNU build-ids the module records (vmlinux, patched modules).
    pub build_ids: Vec<(String, String)>,
    /// Each phase's wall time in seconds.
    pub phases: Vec<(String, f64)>,
    /// The build's log file.
    pub log: Option<PathBuf>,
    /// The hash the module was signed with (`CONFIG_MODULE_SIG_HASH`), if it was.
    pub signed: Option<String>,
    /// The Debian package written with `--deb`.
    pub deb: Option<PathBuf>,
    /// The impact analysis of changed headers, when it ran.
    pub impact: Option<narrow::Narrowing>,
}

/// Which translation units the changed files affect, and where each is linked.
pub trait UnitResolver {
    /// Resolve every changed file of the patch; `truth` says who knows where a source is
    /// built (the release's -dbg index, or Kbuild in the tree).
    fn resolve(
        &self,
        k: &Kernel,
        truth: &Truth,
        files: &[PathBuf],
        jobs: usize,
        p: &mut Progress,
    ) -> Result<Resolved>;
}

/// Run the whole pipeline.
pub fn build(
    opts: &BuildOptions,
    resolver: &dyn UnitResolver,
    p: &mut Progress,
) -> Result<BuildReport> {
    // Between phases, a signal ends the build (`interrupt::check`).
    use crate::interrupt::check;
    let target = resolve::run(opts, p)?;
    check()?;
    let prepared = prepare::run(opts, &target, p)?;
    let result = (|| {
        let mut units = check().and_then(|_| units::run(opts, &target, &prepared, resolver, p))?;
        let (verified, diffed) = loop {
            let objects = check().and_then(|_| objects::run(opts, &prepared, &units, p))?;
            // verify: the original objects against the target's code.
            let verified =
                check().and_then(|_| verify::run(opts, &target, &prepared, &units, &objects, p))?;
            let diffed =
                check().and_then(|_| diff::run(opts, &target, &prepared, &units, &objects, p))?;
            // A change carried through callers in other objects: once more with their
            // units (see `carry`).
            match diffed.carry {
                Some(plan) if units.carry.is_empty() => {
                    units.units.extend(plan.units.iter().cloned());
                    units.carry = plan;
                }
                _ => break (verified, diffed),
            }
        };
        let module = check()
            .and_then(|_| module::run(opts, &target, &prepared, &units, &diffed, &verified, p))?;
        let deb = match &opts.deb {
            Some(d) => Some(package(
                opts,
                d,
                &target,
                &module.path,
                &diffed.functions,
                p,
            )?),
            None => None,
        };
        p.end_phase();
        Ok(BuildReport {
            module: module.path,
            name: target.name.clone(),
            release: target.release.release.clone(),
            version: target.release.version.clone(),
            impact: units.narrowing,
            units: units.units,
            functions: diffed.functions,
            verify: verified.units,
            build_ids: verified.build_ids,
            klp_relocations: module.klp_relocations,
            phases: p
                .phases
                .iter()
                .map(|(n, d)| (n.clone(), d.as_secs_f64()))
                .collect(),
            log: p.log_path().map(Path::to_path_buf),
            signed: module.signed,
            deb,
        })
    })();
    // The tree is already back as it was (the objects phase rolled its journal back);
    // the lock is released when `prepared` goes.
    prepared.clean_up(opts, p);
    result
}

/// The last step of `--deb`: the module as `livepatch-<name>_<ver>_amd64.deb` beside it.
fn package(
    opts: &BuildOptions,
    deb: &crate::package::DebOptions,
    target: &resolve::Target,
    module: &Path,
    functions: &[FunctionChange],
    p: &mut Progress,
) -> Result<PathBuf> {
    p.phase("debian package");
    let module_name = target.stem.replace('-', "_");
    let path = crate::package::write(
        &crate::package::PatchPackage {
            name: &target.name,
            module,
            module_name: &module_name,
            release: &target.release.release,
            kernel_version: &target.release.version,
            patch_file: &target.patch_file,
            functions,
        },
        deb,
        &opts.output_dir,
    )?;
    p.note(&format!("package {}", path.display()));
    Ok(path)
}
