//! The two answers to "where is this file built" checked against each other: the
//! release's `-dbg` index (what Debian's binaries were built from) and Kbuild's own
//! evaluation of the Makefiles in the prepared tree, for every `.c` file of the tree.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Result;
use crate::index::{DbgIndex, Kind};
use crate::kbuild::{self, KbuildMap, Placement};
use crate::kernel::Kernel;
use crate::progress::Progress;

/// One side's answer for a source: `vmlinux` and/or module names.
pub type Answer = BTreeSet<String>;

/// The comparison over a whole tree.
#[derive(Debug, Default)]
pub struct SelfCheck {
    /// `.c` files of the tree that the index lists as compile units (and that exist in
    /// the tree: generated sources are left out).
    pub checked: usize,
    /// Files Kbuild builds that the index does not list (nor as an included `.c`).
    pub kbuild_only: Vec<(String, Answer)>,
    /// Files whose answers differ: (file, index, Kbuild).
    pub disagreements: Vec<(String, Answer, Answer)>,
    /// Directories Kbuild reached.
    pub reached: usize,
}

/// The index's answer: the vmlinux and modules (not vDSO images) a unit is linked into.
pub fn index_answer(index: &DbgIndex, source: &str) -> Answer {
    index
        .binaries_of(source)
        .into_iter()
        .filter(|b| b.kind != Kind::Vdso)
        .map(|b| b.name.clone())
        .collect()
}

/// Kbuild's answer, with `lib.a` linked whole into vmlinux when `modules` is set.
pub fn kbuild_answer(map: &KbuildMap, source: &str, modules: bool) -> Answer {
    map.placements(source)
        .into_iter()
        .filter_map(|p| match p {
            Placement::Builtin => Some("vmlinux".to_string()),
            Placement::Lib if modules => Some("vmlinux".to_string()),
            Placement::Lib => None,
            Placement::Module { name, .. } => Some(name.clone()),
        })
        .collect()
}

/// Compare the index with a whole-tree Kbuild query in `k`'s prepared tree.
pub fn run(k: &Kernel, index: &DbgIndex, jobs: usize, p: &mut Progress) -> Result<SelfCheck> {
    // Builds apply patches to the tree: ask Kbuild only while none runs.
    let _lock = crate::lock::Lock::acquire(&k.root.join(".lock"), p)?;
    let tree = k.tree();
    let config = crate::units::read_config(&k.config())?;
    let modules = config.get("CONFIG_MODULES").is_some_and(|v| v == "y");
    let map = kbuild::tree_map(k, jobs, p)?;
    Ok(compare(&tree, index, &map, modules))
}

/// [`run`]'s comparison, given both answers.
pub fn compare(tree: &Path, index: &DbgIndex, map: &KbuildMap, modules: bool) -> SelfCheck {
    let mut out = SelfCheck {
        reached: map.reached.len(),
        ..Default::default()
    };
    for source in index.units.keys() {
        // scripts/ holds host tools and the stubs modpost links into every module
        // (6.12's scripts/module-common.c), which no Kbuild directory lists.
        if !source.ends_with(".c") || source.starts_with("scripts/") || !tree.join(source).is_file()
        {
            continue;
        }
        out.checked += 1;
        let a = index_answer(index, source);
        let b = kbuild_answer(map, source, modules);
        if a != b {
            out.disagreements.push((source.clone(), a, b));
        }
    }
    for object in map.objects.keys() {
        let Some(stem) = object.strip_suffix(".o") else {
            continue;
        };
        let source = format!("{stem}.c");
        if index.units.contains_key(&source) || !tree.join(&source).is_file() {
            continue;
        }
        let b = kbuild_answer(map, &source, modules);
        if !b.is_empty() {
            out.kbuild_only.push((source, b));
        }
    }
    out
}
