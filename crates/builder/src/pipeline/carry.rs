//! Between the diff phase and a second pass: a changed global function without an
//! ftrace hook (a `lib/` function, a `notrace` one) that the differ refused because its
//! callers are in other objects. [`crate::carry`] finds those callers in the debug
//! vmlinux; when every such function can be carried, the plan adds the callers' units
//! and the build runs the objects, verify and diff phases again with it: the function
//! becomes the module's own copy and its callers are patched to call it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use object::{Object, ObjectSymbol};

use super::prepare::Prepared;
use crate::carry::Callers;
use crate::error::Result;
use crate::progress::Progress;
use crate::units::{Parent, Truth, Unit};

/// What a second pass carries.
#[derive(Clone, Debug, Default)]
pub struct CarryPlan {
    /// Object -> its global functions that become the module's own copies.
    pub out: BTreeMap<PathBuf, Vec<String>>,
    /// Object -> (callee, caller) pairs: callers patched although unchanged.
    pub force: BTreeMap<PathBuf, Vec<(String, String)>>,
    /// Every carried function (defined by the module itself).
    pub provided: Vec<String>,
    /// Units of callers that the patch does not touch, to build and diff.
    pub units: Vec<Unit>,
}

impl CarryPlan {
    /// Nothing to carry.
    pub fn is_empty(&self) -> bool {
        self.provided.is_empty()
    }

    /// The differ's options for unit object `object`.
    pub fn for_object(&self, object: &std::path::Path) -> differ::Carry {
        differ::Carry {
            out: self.out.get(object).cloned().unwrap_or_default(),
            force: self.force.get(object).cloned().unwrap_or_default(),
            provided: self.provided.clone(),
        }
    }
}

/// One refused changed function without an ftrace hook, and its unit.
pub struct Hookless<'a> {
    /// Its unit.
    pub unit: &'a Unit,
    /// The function.
    pub function: String,
}

/// Find the callers of each function; `Ok(plan)` when all can be carried, else the
/// reason for each one that cannot (function -> why).
pub fn plan(
    prepared: &Prepared,
    units: &[Unit],
    hookless: &[Hookless],
    p: &mut Progress,
) -> Result<std::result::Result<CarryPlan, BTreeMap<String, String>>> {
    let mut plan = CarryPlan::default();
    let mut refused = BTreeMap::new();
    for h in hookless {
        match callers_of(prepared, h, p)? {
            Ok(found) => add(&mut plan, units, h, &found, p),
            Err(why) => {
                refused.insert(h.function.clone(), why);
            }
        }
    }
    Ok(if refused.is_empty() {
        Ok(plan)
    } else {
        Err(refused)
    })
}

fn callers_of(
    prepared: &Prepared,
    h: &Hookless,
    p: &mut Progress,
) -> Result<std::result::Result<Callers, String>> {
    if !matches!(h.unit.parent, Parent::Vmlinux) {
        return Ok(Err(
            "it is global, and carrying a change through callers in the other objects of \
             a module is not supported"
                .into(),
        ));
    }
    let Some(vmlinux) = &prepared.vmlinux else {
        return Ok(Err(
            "it is global, and its callers in other objects can only be found \
                       in the debug vmlinux (given --kallsyms, kpatch-build does not use it)"
                .into(),
        ));
    };
    p.debug(&format!(
        "{}: looking for the callers of {} in {}",
        h.unit.object.display(),
        h.function,
        vmlinux.display()
    ));
    let own = h.unit.source.display().to_string();
    let importers = |name: &str| importers(&prepared.truth, name);
    crate::carry::find_callers(vmlinux, &h.function, &own, &importers)
}

fn add(plan: &mut CarryPlan, units: &[Unit], h: &Hookless, found: &Callers, p: &mut Progress) {
    let f = &h.function;
    plan.out
        .entry(h.unit.object.clone())
        .or_default()
        .push(f.clone());
    plan.provided.push(f.clone());
    let mut names = Vec::new();
    for c in &found.callers {
        let source = PathBuf::from(&c.source);
        let object = source.with_extension("o");
        let known = units.iter().chain(&plan.units).any(|u| u.object == object);
        if !known {
            plan.units.push(Unit {
                source: source.clone(),
                object: object.clone(),
                parent: Parent::Vmlinux,
                unpatchable: None,
                new: false,
            });
        }
        plan.force
            .entry(object)
            .or_default()
            .push((f.clone(), c.function.clone()));
        names.push(format!("{} ({})", c.function, c.source));
    }
    p.note(&format!(
        "{}: {f} has no ftrace hook; its callers in other objects carry its new version: {}",
        h.unit.object.display(),
        if names.is_empty() {
            "none (only its own object calls it)".to_string()
        } else {
            names.join(", ")
        }
    ));
    if found.exported {
        p.warn(&format!(
            "{f} is exported: no module of this release calls it, but a module built \
             elsewhere that does would keep calling the old version"
        ));
    }
}

/// The release's modules that import `name` (their symbol tables kept by the -dbg
/// index; none known without it).
fn importers(truth: &Truth, name: &str) -> Vec<String> {
    let Truth::Index { dir, index } = truth else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in &index.binaries {
        let (crate::index::Kind::Module, Some(ko)) = (b.kind, &b.ko) else {
            continue;
        };
        let path = crate::index::DbgIndex::module_symtab(dir, ko);
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        let Ok(file) = object::File::parse(&*data) else {
            continue;
        };
        if file
            .symbols()
            .any(|s| s.is_undefined() && s.name() == Ok(name))
        {
            out.push(b.name.clone());
        }
    }
    out
}
