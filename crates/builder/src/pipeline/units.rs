//! Phase 3, units: check that the patch applies to the prepared tree, and map each file
//! it changes to the translation units that must be rebuilt (see [`crate::units`] for
//! the rules: vmlinux membership from DWARF, modules from Makefiles, headers by include
//! search).

use super::prepare::Prepared;
use super::resolve::Target;
use super::{BuildOptions, UnitResolver};
use crate::error::{step, Result};
use crate::patch;
use crate::progress::Progress;
use crate::units::Unit;

/// The translation units to rebuild, in a stable order.
pub struct Units {
    /// Each unit once.
    pub units: Vec<Unit>,
}

/// Phase entry point.
pub fn run(
    _opts: &BuildOptions,
    target: &Target,
    prepared: &Prepared,
    resolver: &dyn UnitResolver,
    p: &mut Progress,
) -> Result<Units> {
    p.phase("check patch");
    let k = &prepared.kernel;
    patch::check_applies(&k.tree(), &target.patch_file)?;
    let mut units: Vec<Unit> = Vec::new();
    for f in &target.files {
        let found = resolver.units_for(k, prepared.vmlinux.as_deref(), f)?;
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
        target.files.len(),
        units.len()
    ));
    Ok(Units { units })
}
