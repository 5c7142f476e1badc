//! Which translation units a changed file affects, and where each one is linked.
//! (Implementation in progress on a separate branch.)

use std::path::PathBuf;

/// Where an object file ends up in the running kernel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Parent {
    Vmlinux,
    /// A loadable module: its name as the kernel knows it (`-` turned into `_`) and the
    /// path of its `.ko` relative to `/lib/modules/<release>/`.
    Module {
        name: String,
        ko: String,
    },
}

/// One translation unit to rebuild.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    /// Source file, relative to the kernel tree (e.g. `fs/proc/meminfo.c`).
    pub source: PathBuf,
    /// Object file kbuild builds for it, relative to the tree (e.g. `fs/proc/meminfo.o`).
    pub object: PathBuf,
    pub parent: Parent,
}
