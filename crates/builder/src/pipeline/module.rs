//! Phase 7, module: link the differ's outputs, compile our patch-hook source with kbuild
//! against the headers package (`M=`), turn the intermediate klp records into
//! `.klp.rela.*`/`.klp.sym.*` in the linked module, and write it to the output directory.

use std::path::{Path, PathBuf};

use super::diff::Diffed;
use super::prepare::Prepared;
use super::resolve::Target;
use super::units::Units;
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
}

/// Phase entry point.
pub fn run(
    opts: &BuildOptions,
    target: &Target,
    prepared: &Prepared,
    units: &Units,
    diffed: &Diffed,
    p: &mut Progress,
) -> Result<Module> {
    p.phase("build patch module");
    let dir = prepared.work.join("module");
    let (ko, stats) = kbuild(
        &prepared.kernel,
        &diffed.outputs,
        &target.stem,
        opts.replace,
        &units.plan.fuzz,
        &dir,
        p,
    )?;
    crate::interrupt::check()?;
    p.note(&format!(
        "{} klp relocation(s) against {} kernel symbol(s)",
        stats.klp_relocations, stats.klp_symbols
    ));
    std::fs::create_dir_all(&opts.output_dir).map_err(io(&opts.output_dir))?;
    let dest = opts.output_dir.join(format!("{}.ko", target.stem));
    let bytes = std::fs::read(&ko).map_err(io(&ko))?;
    kelf::write::write_atomic(dest.display().to_string(), &bytes)
        .map_err(|e| step(e.to_string()))?;
    Ok(Module {
        path: dest,
        klp_relocations: stats.klp_relocations,
        klp_symbols: stats.klp_symbols,
    })
}

/// Build `<stem>.ko` in `dir` from the differ outputs with kbuild against the kernel's
/// headers package (in its build root), and convert it; the converted module's path and statistics.
fn kbuild(
    k: &Kernel,
    outputs: &[PathBuf],
    stem: &str,
    replace: bool,
    fuzz: &[String],
    dir: &Path,
    p: &mut Progress,
) -> Result<(PathBuf, klp::convert::Stats)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let linked = dir.join("output.o");
    // The kernel's distribution's binutils and compiler: in its build root.
    let mut ld = k.command("ld");
    ld.arg("-r").arg("-o").arg(&linked).args(outputs);
    cmd::run(&mut ld, "linking the changed objects (ld -r)", p)?;
    // kbuild expects a .cmd file for every object of a module.
    std::fs::write(dir.join(".output.o.cmd"), "").map_err(io(dir))?;
    klp::sources::write_module_dir(dir, stem, replace).map_err(|e| step(e.to_string()))?;
    if !fuzz.is_empty() {
        add_modinfo(dir, stem, "kpatch_fuzz", &fuzz.join(","))?;
    }

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

/// One more `MODULE_INFO(tag, value)` in the module, from a source of its own.
fn add_modinfo(dir: &Path, stem: &str, tag: &str, value: &str) -> Result<()> {
    let c_string: String = value
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_ascii_graphic() || c == ' ' => vec![c],
            _ => vec!['?'],
        })
        .collect();
    let src = dir.join("kpatch-info.c");
    std::fs::write(
        &src,
        format!("#include <linux/module.h>\nMODULE_INFO({tag}, \"{c_string}\");\n"),
    )
    .map_err(io(&src))?;
    let kbuild = dir.join("Kbuild");
    let mut text = std::fs::read_to_string(&kbuild).map_err(io(&kbuild))?;
    text.push_str(&format!("{stem}-y += kpatch-info.o\n"));
    std::fs::write(&kbuild, text).map_err(io(&kbuild))
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
