//! Phase 3, units: check that the patch applies to the prepared tree, and map each file
//! it changes to the translation units that must be rebuilt (see [`crate::units`] for
//! the rules: membership from the release's -dbg index or from Kbuild, `.c` files
//! included by other units, headers by include search and line tables).

use super::prepare::Prepared;
use super::resolve::Target;
use super::{BuildOptions, UnitResolver};
use crate::error::Result;
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
    opts: &BuildOptions,
    target: &Target,
    prepared: &Prepared,
    resolver: &dyn UnitResolver,
    p: &mut Progress,
) -> Result<Units> {
    p.phase("check patch");
    let k = &prepared.kernel;
    patch::check_applies(&k.tree(), &target.patch_file)?;
    let resolved = resolver.resolve(k, &prepared.truth, &target.files, opts.jobs, p)?;
    for n in &resolved.notes {
        p.note(n);
    }
    let units = resolved.units;
    let checked = units.iter().filter(|u| u.unpatchable.is_some()).count();
    p.note(&format!(
        "{} file(s), {} object(s) to rebuild{}",
        target.files.len(),
        units.len(),
        if checked > 0 {
            format!(" ({checked} of them only to check that they do not change)")
        } else {
            String::new()
        }
    ));
    Ok(Units { units })
}
