//! Building the livepatch module: link the differ's outputs, compile the patch hook
//! with kbuild against the headers package (`M=`), then turn the intermediate klp
//! records into `.klp.rela.*`/`.klp.sym.*` in the linked module.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{io, step, step_hint, Result};
use crate::kernel::run;
use crate::progress::Progress;

/// What kbuild and the klp conversion produced.
pub struct Built {
    pub ko: PathBuf,
    pub klp_relocations: usize,
    pub klp_symbols: usize,
    /// Symbols modpost could not resolve (they would make the module fail to load).
    pub undefined: Vec<String>,
}

/// Modpost's "undefined!" warnings.
pub fn undefined_symbols(make_output: &str) -> Vec<String> {
    make_output
        .lines()
        .filter(|l| l.contains("undefined!"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        // Placeholders for klp relocations are resolved by the livepatch core.
        .filter(|s| !s.starts_with(".klp.sym."))
        .collect()
}

/// Build `<stem>.ko` in `dir` from the differ outputs, with kbuild in `kbuild_dir`
/// (the headers package or a full tree).
pub fn build(
    kbuild_dir: &Path,
    cc: &str,
    outputs: &[PathBuf],
    stem: &str,
    replace: bool,
    dir: &Path,
    p: &mut Progress,
) -> Result<Built> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let linked = dir.join("output.o");
    let mut ld = Command::new("ld");
    ld.arg("-r").arg("-o").arg(&linked).args(outputs);
    p.log(&run(&mut ld, "linking the changed objects (ld -r)")?);
    // kbuild expects a .cmd file for every object of a module.
    std::fs::write(dir.join(".output.o.cmd"), "").map_err(io(dir))?;
    klp::sources::write_module_dir(dir, stem, replace).map_err(|e| step(e.to_string()))?;

    let mut make = Command::new("make");
    make.arg("-C")
        .arg(kbuild_dir)
        .arg(format!("M={}", dir.display()))
        .arg(format!("CC={cc}"))
        .arg("KBUILD_MODPOST_WARN=1")
        .arg("modules");
    let out = run(&mut make, "building the patch module (kbuild)")?;
    p.log(&out);
    let undefined = undefined_symbols(&out);
    let raw = dir.join(format!("{stem}.ko"));
    if !raw.exists() {
        return Err(step(format!("kbuild did not produce {}", raw.display())));
    }
    let ko = dir.join(format!("{stem}.klp.ko"));
    let stats = klp::convert::convert_file(&raw, &ko).map_err(|e| step(e.to_string()))?;
    Ok(Built {
        ko,
        klp_relocations: stats.klp_relocations,
        klp_symbols: stats.klp_symbols,
        undefined,
    })
}

/// The `name=value` pairs of a module's `.modinfo`.
pub fn modinfo(ko: &Path) -> Result<Vec<(String, String)>> {
    let obj = kelf::read::read_file(ko).map_err(|e| step(e.to_string()))?;
    let sec = obj
        .find_section(".modinfo")
        .ok_or_else(|| step(format!("{}: no .modinfo", ko.display())))?;
    Ok(obj
        .sec(sec)
        .data
        .split(|b| *b == 0)
        .filter_map(|e| std::str::from_utf8(e).ok())
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Refuse a module that modpost says cannot load.
pub fn check_undefined(built: &Built) -> Result<()> {
    if built.undefined.is_empty() {
        return Ok(());
    }
    Err(step_hint(
        format!(
            "the patch module references symbols the running kernel does not provide: {}",
            built.undefined.join(", ")
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
    }
}
