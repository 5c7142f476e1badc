//! Phase 7, module: link the differ's outputs, compile our patch-hook source with kbuild
//! against the headers package (`M=`), turn the intermediate klp records into
//! `.klp.rela.*`/`.klp.sym.*` in the linked module, and write it to the output directory.

use std::path::{Path, PathBuf};

use super::diff::Diffed;
use super::prepare::Prepared;
use super::resolve::Target;
use super::units::Units;
use super::verify::Verified;
use super::BuildOptions;
use crate::cmd;
use crate::error::{io, step, step_hint, Result};
use crate::kernel::Kernel;
use crate::progress::Progress;

/// The module written.
pub struct Module {
    /// Its path in the output directory.
    pub path: PathBuf,
    /// klp relocations the livepatch core resolves at load time.
    pub klp_relocations: usize,
    /// Distinct kernel symbols they refer to.
    pub klp_symbols: usize,
    /// The signature's hash algorithm, when the module was signed.
    pub signed: Option<String>,
}

/// Phase entry point.
pub fn run(
    opts: &BuildOptions,
    target: &Target,
    prepared: &Prepared,
    units: &Units,
    diffed: &Diffed,
    verified: &Verified,
    p: &mut Progress,
) -> Result<Module> {
    p.phase("build patch module");
    let dir = prepared.work.join("module");
    let mut info = modinfo(verified);
    if !units.plan.fuzz.is_empty() {
        info.push(("kpatch_fuzz".to_string(), units.plan.fuzz.join(",")));
    }
    let sources = Sources {
        outputs: &diffed.outputs,
        stem: &target.stem,
        replace: opts.replace,
        info,
        build_ids: verified
            .build_ids
            .iter()
            .filter(|(o, _)| o != "vmlinux")
            .cloned()
            .collect(),
        record: run_pre_record(target, diffed, verified, p),
    };
    let (ko, stats) = kbuild(&prepared.kernel, &sources, &dir, p)?;
    crate::interrupt::check()?;
    p.note(&format!(
        "{} klp relocation(s) against {} kernel symbol(s)",
        stats.klp_relocations, stats.klp_symbols
    ));
    let signed = sign(opts, prepared, &ko, p)?;
    std::fs::create_dir_all(&opts.output_dir).map_err(io(&opts.output_dir))?;
    let dest = opts.output_dir.join(format!("{}.ko", target.stem));
    let bytes = std::fs::read(&ko).map_err(io(&ko))?;
    kelf::write::write_atomic(dest.display().to_string(), &bytes)
        .map_err(|e| step(e.to_string()))?;
    Ok(Module {
        path: dest,
        klp_relocations: stats.klp_relocations,
        klp_symbols: stats.klp_symbols,
        signed,
    })
}

/// Signs the finished module in the work directory, before it is written out (see
/// [`crate::sign`]).
fn sign(
    opts: &BuildOptions,
    prepared: &Prepared,
    ko: &Path,
    p: &mut Progress,
) -> Result<Option<String>> {
    let key = match &opts.sign {
        super::Signing::Off => return Ok(None),
        super::Signing::Key { key, cert } => crate::sign::find_key(Some(key), Some(cert))?,
        super::Signing::Auto => crate::sign::find_key(None, None)?,
    };
    let Some(key) = key else {
        p.note(
            "no signing key (--sign-key/--sign-cert, or DKMS's MOK in /var/lib/dkms): the \
             module is unsigned; a kernel in Secure Boot lockdown will refuse it",
        );
        return Ok(None);
    };
    p.phase("sign module");
    // The hash is the target's (the headers package's configuration), whatever -c built with.
    let headers = prepared.kernel.headers();
    crate::sign::sign(&headers, &headers.join(".config"), &key, ko, p)
}

/// What goes into the module.
struct Sources<'a> {
    /// The differ's outputs.
    outputs: &'a [PathBuf],
    /// `livepatch-<name>`.
    stem: &'a str,
    /// Atomic replace.
    replace: bool,
    /// modinfo fields.
    info: Vec<(String, String)>,
    /// The patched modules' build-ids, checked by the hook when they are patched.
    build_ids: Vec<(String, String)>,
    /// The run-pre record.
    record: verify::record::Record,
}

/// Build `<stem>.ko` in `dir` from the differ outputs with kbuild against the kernel's
/// headers package (in its build root), and convert it; the converted module's path and
/// statistics.
fn kbuild(
    k: &Kernel,
    src: &Sources<'_>,
    dir: &Path,
    p: &mut Progress,
) -> Result<(PathBuf, klp::convert::Stats)> {
    let stem = src.stem;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let linked = dir.join("output.o");
    // The kernel's distribution's binutils and compiler: in its build root.
    let mut ld = k.command("ld");
    ld.arg("-r").arg("-o").arg(&linked).args(src.outputs);
    cmd::run(&mut ld, "linking the changed objects (ld -r)", p)?;
    add_record(&linked, &src.record)?;
    // kbuild expects a .cmd file for every object of a module.
    std::fs::write(dir.join(".output.o.cmd"), "").map_err(io(dir))?;
    klp::sources::write_module_dir(dir, stem, src.replace, &src.info, &src.build_ids)
        .map_err(|e| step(e.to_string()))?;

    let mut make = k.command("make");
    make.arg("-C")
        .arg(k.headers())
        .arg(format!("M={}", dir.display()))
        .arg(format!("CC={}", k.cc))
        .arg("KBUILD_MODPOST_WARN=1")
        .arg("modules");
    let out = cmd::run(&mut make, "building the patch module (kbuild)", p)?;
    check_undefined(&undefined_symbols(&out))?;
    let raw = dir.join(format!("{stem}.ko"));
    if !raw.exists() {
        return Err(step(format!("kbuild did not produce {}", raw.display())));
    }
    let ko = dir.join(format!("{stem}.klp.ko"));
    let stats = klp::convert::convert_file(&raw, &ko).map_err(|e| step(e.to_string()))?;
    Ok((ko, stats))
}

/// What the module's modinfo says it was built against: `kpatch_build_id` per target
/// object (`<object>:<hex>`), and `kpatch_verify` (how the build verified the original
/// code).
fn modinfo(v: &Verified) -> Vec<(String, String)> {
    let mut info: Vec<(String, String)> = v
        .build_ids
        .iter()
        .map(|(o, id)| ("kpatch_build_id".to_string(), format!("{o}:{id}")))
        .collect();
    let verify = match &v.skipped {
        Some(s) => s.clone(),
        None => {
            let count = |f: &dyn Fn(&verify::compare::Verdict) -> bool| -> usize {
                v.units
                    .iter()
                    .flat_map(|u| u.functions.iter())
                    .filter(|r| f(&r.verdict))
                    .count()
            };
            let same = count(&|x| x.is_identical());
            let over = count(&|x| matches!(x, verify::compare::Verdict::Overridden));
            let mut s = format!(
                "identical: {same} function(s) of {} rebuilt object(s) match the target's binaries",
                v.units.len()
            );
            if over > 0 {
                s.push_str(&format!(" ({over} weak definition(s) overridden there)"));
            }
            s
        }
    };
    info.push(("kpatch_verify".to_string(), verify));
    info
}

/// The run-pre record: for each function the module replaces, the code the target runs
/// (from the verify phase).
fn run_pre_record(
    target: &Target,
    diffed: &Diffed,
    v: &Verified,
    p: &mut Progress,
) -> verify::record::Record {
    let mut rec = verify::record::Record {
        version: verify::record::VERSION,
        release: target.release.release.clone(),
        kernel_text: v.kernel_text,
        objects: Vec::new(),
    };
    for f in diffed.functions.iter().filter(|f| !f.new) {
        let Some(fr) = v.record(&f.unit, &f.function) else {
            p.warn(&format!(
                "{}: no verified copy of {} in the target: `kpatch verify` cannot check it",
                f.unit.display(),
                f.function
            ));
            continue;
        };
        let i = match rec.objects.iter().position(|o| o.name == f.object) {
            Some(i) => i,
            None => {
                rec.objects.push(verify::record::ObjectRecord {
                    name: f.object.clone(),
                    build_id: v
                        .build_ids
                        .iter()
                        .find(|(o, _)| *o == f.object)
                        .map(|(_, id)| id.clone()),
                    functions: Vec::new(),
                });
                rec.objects.len() - 1
            }
        };
        rec.objects[i].functions.push(fr.clone());
    }
    rec
}

/// Put the run-pre record into the linked object, in a non-allocated section that the
/// module link keeps and the module loader does not load.
fn add_record(object: &Path, record: &verify::record::Record) -> Result<()> {
    let mut obj = kelf::read::read_file(object).map_err(|e| step(e.to_string()))?;
    let mut sec = kelf::Section::new(verify::record::SECTION, kelf::consts::SHT_PROGBITS, 0);
    sec.set_data(record.to_bytes());
    obj.add_section(sec);
    kelf::write::write_object(&obj, object).map_err(|e| step(e.to_string()))
}

/// Modpost's "undefined!" warnings.
fn undefined_symbols(make_output: &str) -> Vec<String> {
    make_output
        .lines()
        .filter(|l| l.contains("undefined!"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        // Placeholders for klp relocations are resolved by the livepatch core.
        .filter(|s| !s.starts_with(".klp.sym."))
        .collect()
}

/// Refuse a module that modpost says cannot load.
fn check_undefined(undefined: &[String]) -> Result<()> {
    if undefined.is_empty() {
        return Ok(());
    }
    Err(step_hint(
        format!(
            "the patch module references symbols the running kernel does not provide: {}",
            undefined.join(", ")
        ),
        "these are neither exported nor found in the parent's symbol table; check that the \
         symbol table (-v or the -dbg package) matches the target kernel",
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn modpost_warnings() {
        let out =
            "WARNING: modpost: \"zswap_stored_pages\" [/x/livepatch-m.ko] undefined!\n  LD [M] x\n";
        assert_eq!(
            super::undefined_symbols(out),
            vec!["zswap_stored_pages".to_string()]
        );
        assert!(super::check_undefined(&[]).is_ok());
    }
}
