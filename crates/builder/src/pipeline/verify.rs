//! Phase 5, verify: the rebuilt original objects are the code the target runs. Every
//! function of every original object is compared with the same function in the target's
//! shipped binary (the `-dbg` vmlinux or `-v`'s; with `--kallsyms`, the kernel image
//! extracted from the image package's `vmlinuz`, located by the dump's addresses; a
//! module's `.ko` from the image package), relocation-aware (`verify::compare`). Functions the patch replaces,
//! and every function its code calls or jumps into, are among them.
//!
//! Any difference stops the build (exit 2) naming the function, the first differing
//! instruction on both sides and the likely cause ([`super::verify_cause`]);
//! `--skip-verify` turns that into warnings recorded in the module's modinfo. The phase
//! also collects what the module records for load time: the build-ids of the targets and,
//! for each function, the code the kernel runs (`verify::record`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use verify::compare::Verdict;
use verify::image::{Image, KernelImage, ModuleImage};
use verify::record::FunctionRecord;
use verify::sites::{Layout, SiteIndex};

use super::objects::Objects;
use super::prepare::Prepared;
use super::resolve::Target;
use super::units::Units;
use super::BuildOptions;
use crate::error::{io, step, Error, Result};
use crate::progress::Progress;
use crate::units::{Parent, Unit};

/// One function's result.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionResult {
    /// The function's symbol name.
    pub name: String,
    /// Identical, differing (where and why), missing or overridden in the target.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What the module records about it for `kpatch verify` (identical functions).
    #[serde(skip)]
    pub record: Option<FunctionRecord>,
}

/// One original object's results.
#[derive(Clone, Debug, Serialize)]
pub struct UnitResult {
    /// The object, relative to the tree.
    pub object: PathBuf,
    /// Its source file.
    pub source: PathBuf,
    /// `vmlinux` or the module.
    pub parent: String,
    /// The binary it was compared with.
    pub against: String,
    /// Each function of the object.
    pub functions: Vec<FunctionResult>,
}

impl UnitResult {
    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.functions.iter().filter(|r| f(&r.verdict)).count()
    }
    fn differing(&self) -> impl Iterator<Item = &FunctionResult> {
        self.functions
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Differs { .. } | Verdict::Missing))
    }
}

/// What the phase established.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// Each rebuilt original object's results.
    pub units: Vec<UnitResult>,
    /// The targets' GNU build-ids: vmlinux first, then each patched module.
    pub build_ids: Vec<(String, String)>,
    /// Link-time address of vmlinux's `_text`.
    pub kernel_text: u64,
    /// Set when differences were overridden with `--skip-verify`: what the module's
    /// modinfo says about it.
    pub skipped: Option<String>,
}

impl Verified {
    /// The record of function `name` of unit `object`, if verified.
    pub fn record(&self, object: &Path, name: &str) -> Option<&FunctionRecord> {
        self.units
            .iter()
            .filter(|u| u.object == object)
            .flat_map(|u| u.functions.iter())
            .find(|f| f.name == name)
            .and_then(|f| f.record.as_ref())
    }
}

/// Phase entry point.
pub fn run(
    opts: &BuildOptions,
    target: &Target,
    prepared: &Prepared,
    units: &Units,
    objects: &Objects,
    p: &mut Progress,
) -> Result<Verified> {
    p.phase("verify original objects");
    let mut kernel = open_kernel(opts, prepared, p)?;
    let mut out = Verified {
        kernel_text: kernel.text_address().unwrap_or(0),
        ..Verified::default()
    };
    if let Some(id) = kernel.build_id().map_err(verr)? {
        out.build_ids
            .push(("vmlinux".into(), verify::buildid::hex(&id)));
    }
    let layout = Layout {
        jump: objects.sizes.jump.unwrap_or(16),
        alt: objects.sizes.alt.unwrap_or(12),
        para: objects.sizes.para.unwrap_or(16),
        static_call: objects.sizes.static_call.unwrap_or(8),
    };
    let mut modules: BTreeMap<String, ModuleImage> = BTreeMap::new();
    // Check-only units (vDSO code, assembly a header reaches) run nowhere a patch could
    // replace: the diff phase proves they do not change.
    for u in units.units.iter().filter(|u| u.unpatchable.is_none()) {
        let orig = objects.orig.join(&u.object);
        if !orig.exists() {
            p.note(&format!("{}: not built, not verified", u.object.display()));
            continue;
        }
        let result = match &u.parent {
            Parent::Vmlinux => unit(&orig, u, &mut kernel, &layout)?,
            Parent::Module { name, ko } => {
                if !modules.contains_key(name) {
                    let m = open_module(prepared, ko, p)?;
                    if let Some(id) = m.build_id().map_err(verr)? {
                        out.build_ids
                            .push((name.clone(), verify::buildid::hex(&id)));
                    }
                    modules.insert(name.clone(), m);
                }
                let m = modules
                    .get_mut(name)
                    .ok_or_else(|| step("module image lost"))?;
                unit_module(&orig, u, name, m, &kernel, &layout)?
            }
        };
        say(&result, p);
        out.units.push(result);
    }
    let bad: Vec<&UnitResult> = out
        .units
        .iter()
        .filter(|u| u.differing().next().is_some())
        .collect();
    if bad.is_empty() {
        return Ok(out);
    }
    let text = super::verify_cause::report(&bad, target, prepared, objects, &kernel);
    if opts.skip_verify {
        p.warn(&format!(
            "{text}\n--skip-verify: building anyway; the module's modinfo records it"
        ));
        let names: Vec<String> = bad
            .iter()
            .flat_map(|u| u.differing().map(|f| f.name.clone()))
            .collect();
        out.skipped = Some(format!(
            "skipped: {} function(s) differ from the target: {}",
            names.len(),
            names.join(" ")
        ));
        return Ok(out);
    }
    let details = serde_json::to_value(&out.units).unwrap_or_default();
    Err(Error::Mismatch { msg: text, details })
}

fn verr(e: verify::Error) -> Error {
    step(e.to_string())
}

/// The target's kernel: the vmlinux with symbols, or the image's located by kallsyms.
fn open_kernel(opts: &BuildOptions, prepared: &Prepared, p: &mut Progress) -> Result<KernelImage> {
    match (&prepared.vmlinux, &opts.kallsyms) {
        (Some(v), _) => KernelImage::open(v).map_err(verr),
        (None, Some(ks)) => {
            let image = crate::shipped::image_vmlinux(&prepared.kernel, p)?;
            let dump = std::fs::read_to_string(ks).map_err(io(ks))?;
            p.note(&format!(
                "comparing with {} located by {}",
                image.display(),
                ks.display()
            ));
            KernelImage::with_kallsyms(&image, &dump).map_err(verr)
        }
        (None, None) => Err(step("no vmlinux to verify against")),
    }
}

/// The target's copy of module `ko`, from the image package (the `-dbg` index keeps only
/// the modules' symbol tables, and the image package is a tenth of the `-dbg` package's
/// size to read).
fn open_module(prepared: &Prepared, ko: &str, p: &mut Progress) -> Result<ModuleImage> {
    let path = crate::shipped::image_module(&prepared.kernel, ko, p)?;
    ModuleImage::open(&path).map_err(verr)
}

/// Compares every function of `orig` with `image`; records kernel functions.
fn unit(orig: &Path, u: &Unit, image: &mut KernelImage, layout: &Layout) -> Result<UnitResult> {
    let mut file = verify::func::RelFile::open(orig).map_err(verr)?;
    let index = SiteIndex::build(&mut file, layout).map_err(verr)?;
    let mut functions = Vec::new();
    for f in file.functions().map_err(verr)? {
        let sites = index.for_function(&f);
        let (verdict, copy) = verify::compare::function_copy(image, &f, &sites).map_err(verr)?;
        let record = copy.map(|c| verify::record::build::kernel_function(&f, &c, &sites));
        functions.push(FunctionResult {
            name: f.name,
            verdict,
            record,
        });
    }
    Ok(UnitResult {
        object: u.object.clone(),
        source: u.source.clone(),
        parent: "vmlinux".to_string(),
        against: image.describe(),
        functions,
    })
}

/// As [`unit`] for a module's object, against the module's `.ko`.
fn unit_module(
    orig: &Path,
    u: &Unit,
    parent: &str,
    m: &mut ModuleImage,
    kernel: &KernelImage,
    layout: &Layout,
) -> Result<UnitResult> {
    let mut file = verify::func::RelFile::open(orig).map_err(verr)?;
    let index = SiteIndex::build(&mut file, layout).map_err(verr)?;
    let mut functions = Vec::new();
    for f in file.functions().map_err(verr)? {
        let sites = index.for_function(&f);
        let (verdict, copy) = verify::compare::function_copy(m, &f, &sites).map_err(verr)?;
        let record = match copy {
            Some(c) => Some(
                verify::record::build::module_function(m, Some(kernel), &f, &c, &sites)
                    .map_err(verr)?,
            ),
            None => None,
        };
        functions.push(FunctionResult {
            name: f.name,
            verdict,
            record,
        });
    }
    Ok(UnitResult {
        object: u.object.clone(),
        source: u.source.clone(),
        parent: parent.to_string(),
        against: m.describe(),
        functions,
    })
}

/// One line per object.
fn say(u: &UnitResult, p: &mut Progress) {
    let same = u.count(Verdict::is_identical);
    let over = u.count(|v| matches!(v, Verdict::Overridden));
    let bad = u.functions.len() - same - over;
    let mut line = format!(
        "{}: {same} function(s) identical to {}",
        u.object.display(),
        u.against
    );
    if over > 0 {
        line.push_str(&format!(
            ", {over} weak definition(s) overridden in the target"
        ));
    }
    if bad > 0 {
        line.push_str(&format!(", {bad} DIFFER"));
    }
    p.note(&line);
    for f in &u.functions {
        if let Verdict::Identical {
            fields, unchecked, ..
        } = f.verdict
        {
            if unchecked > 0 {
                p.debug(&format!(
                    "{}: {}: {fields} relocated field(s) checked, {unchecked} not nameable (bytes skipped)",
                    u.object.display(),
                    f.name
                ));
            }
        }
    }
}
