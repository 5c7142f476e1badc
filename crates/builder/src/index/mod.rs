//! What the shipped binaries of a release were built from, read once per release from
//! its `-dbg` package.
//!
//! One streaming pass over the package ([`stream`]) reads, for the debug vmlinux and for
//! every debug module, the DWARF compile units and their line tables ([`dwarf`]). The
//! result answers, for a source file of the tree, "vmlinux / module X / not built"
//! exactly; `.c` files `#include`d by another `.c` (`kernel/sched/clock.c` in
//! `build_utility.c`) and the headers each unit's debug information names come from the
//! line tables. In the same pass the debug vmlinux is written out (the parent symbol
//! table of vmlinux patches) and each module's symbol table is kept as a small ELF file
//! ([`symtab`]), so that no build ever has to open the package again.
//!
//! Layout under `<cache>/<release>/index/`:
//! ```text
//! units.json       compile units -> binaries, included .c files, the binaries
//! headers.json     header -> compile units whose line tables name it
//! modsyms/<ko>     each module's symbol table (kernel/fs/xfs/xfs.ko ...)
//! ```

pub mod dwarf;
pub mod stream;
pub mod symtab;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use crate::error::{io, step, Result};

/// Bumped when the files' meaning changes: an index of another format is rebuilt.
pub const FORMAT: u32 = 1;

/// What kind of binary a compile unit is linked into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// The kernel image.
    Vmlinux,
    /// A loadable module.
    Module,
    /// A vDSO image (`vdso64.so` ...): user-space code that vmlinux carries as data, which
    /// a live patch cannot change.
    Vdso,
}

/// A binary of the release: vmlinux (index 0), a module or a vDSO image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Binary {
    /// What it is.
    pub kind: Kind,
    /// `vmlinux`, a module's name as the kernel knows it (`-` turned into `_`), or the
    /// vDSO image's file name.
    pub name: String,
    /// A module's (or vDSO image's) path relative to `/lib/modules/<release>/`.
    pub ko: Option<String>,
}

/// The index of one release (`units.json`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DbgIndex {
    /// [`FORMAT`] of the files.
    pub format: u32,
    /// The kernel release.
    pub release: String,
    /// File name of the package it was read from.
    pub package: String,
    /// vmlinux, the modules and the vDSO images (ids are indices).
    pub binaries: Vec<Binary>,
    /// Source of each compile unit (relative to the tree) -> the binaries it is in.
    pub units: BTreeMap<String, Vec<u32>>,
    /// A `.c` file that another compile unit `#include`s -> those compile units.
    pub included: BTreeMap<String, BTreeSet<String>>,
    /// Modules whose debug information could not be read (their sources are unknown).
    pub unreadable: Vec<(String, String)>,
    /// How long the pass took, and how many bytes it decompressed.
    pub seconds: f64,
    /// Bytes decompressed.
    pub bytes: u64,
}

/// Header -> compile units whose line tables name it (`headers.json`). Unit ids are
/// indices into `units`, stored sorted and delta-encoded.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct HeaderIndex {
    /// Compile units (sources relative to the tree).
    pub units: Vec<String>,
    /// Header -> delta-encoded sorted unit ids.
    pub headers: BTreeMap<String, Vec<u32>>,
}

impl HeaderIndex {
    /// Compile units (sources relative to the tree) whose line tables name `header`.
    pub fn units_naming(&self, header: &str) -> Vec<&str> {
        let mut id = 0u32;
        self.headers
            .get(header)
            .map(|deltas| {
                deltas
                    .iter()
                    .filter_map(|d| {
                        id = id.checked_add(*d)?;
                        self.units.get(id as usize).map(String::as_str)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Where a release's index lives.
pub fn dir(release_root: &Path) -> PathBuf {
    release_root.join("index")
}

impl DbgIndex {
    /// The index in `dir`, if one of this format is complete there.
    pub fn load(dir: &Path) -> Option<DbgIndex> {
        let text = std::fs::read(dir.join("units.json")).ok()?;
        let idx: DbgIndex = serde_json::from_slice(&text).ok()?;
        (idx.format == FORMAT).then_some(idx)
    }

    /// The header part of the index in `dir`.
    pub fn load_headers(dir: &Path) -> Result<HeaderIndex> {
        let path = dir.join("headers.json");
        let text = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&text).map_err(|e| step(format!("{}: {e}", path.display())))
    }

    /// The binaries a compile unit of this source is linked into.
    pub fn binaries_of(&self, source: &str) -> Vec<&Binary> {
        self.units
            .get(source)
            .map(|ids| {
                ids.iter()
                    .filter_map(|i| self.binaries.get(*i as usize))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The compile units that `#include` this `.c` file.
    pub fn includers_of(&self, source: &str) -> Vec<&str> {
        self.included
            .get(source)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The module symbol table kept for `ko` in the index at `dir`.
    pub fn module_symtab(dir: &Path, ko: &str) -> PathBuf {
        dir.join("modsyms").join(ko)
    }
}

/// What the pass reads from one binary.
struct Read1 {
    member: String,
    units: Vec<dwarf::RawUnit>,
}

/// Read `deb` (the release's `-dbg` package) into an index in `dir`, writing the debug
/// vmlinux to `vmlinux` unless it is there already. The index appears only once
/// complete (written beside `dir` and renamed).
pub fn build(deb: &Path, release: &str, dir: &Path, vmlinux: &Path) -> Result<DbgIndex> {
    let start = Instant::now();
    let tmp = dir.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(tmp.join("modsyms")).map_err(io(&tmp))?;
    let vmlinux_member = format!("usr/lib/debug/boot/vmlinux-{release}");
    let modules_prefix = format!("usr/lib/debug/lib/modules/{release}/");
    let write_vmlinux = !vmlinux.exists();

    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let (tx, rx) = mpsc::sync_channel::<(String, Vec<u8>)>(workers);
    let rx = Mutex::new(rx);
    let results: Mutex<Vec<Read1>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut bytes = 0u64;
    let streamed = std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let job = rx.lock().map(|r| r.recv());
                let Ok(Ok((member, data))) = job else { break };
                match read_one(
                    &member,
                    &data,
                    &tmp,
                    &modules_prefix,
                    &vmlinux_member,
                    vmlinux,
                    write_vmlinux,
                ) {
                    Ok(units) => results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Read1 { member, units }),
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((member, e.to_string())),
                }
            });
        }
        let walked = stream::for_each_file(deb, |m, r| {
            bytes += m.size;
            let wanted = m.path == vmlinux_member
                || (m.path.starts_with(&modules_prefix)
                    && (m.path.ends_with(".ko") || m.path.ends_with(".so")));
            if !wanted {
                return Ok(());
            }
            let mut data = Vec::with_capacity(m.size.min(1 << 32) as usize);
            r.read_to_end(&mut data)
                .map_err(|e| step(format!("{}: {}: {e}", deb.display(), m.path)))?;
            tx.send((m.path.to_string(), data))
                .map_err(|_| step("index workers stopped"))
        });
        drop(tx);
        walked
    });
    streamed?;
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some((_, e)) = failures.iter().find(|(m, _)| *m == vmlinux_member) {
        return Err(step(format!("{}: {vmlinux_member}: {e}", deb.display())));
    }
    if !results.iter().any(|r| r.member == vmlinux_member) {
        return Err(step(format!("{} has no {vmlinux_member}", deb.display())));
    }
    let (mut index, headers) = assemble(results, &modules_prefix, &vmlinux_member);
    index.release = release.to_string();
    index.package = deb
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    index.unreadable = failures
        .into_iter()
        .map(|(m, e)| (m.trim_start_matches(&modules_prefix).to_string(), e))
        .collect();
    index.seconds = start.elapsed().as_secs_f64();
    index.bytes = bytes;
    write_json(&tmp.join("headers.json"), &headers)?;
    write_json(&tmp.join("units.json"), &index)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    Ok(index)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec(value).map_err(|e| step(format!("{}: {e}", path.display())))?;
    std::fs::write(path, text).map_err(io(path))
}

/// One binary: its compile units; a module's symbol table is written under `tmp`, the
/// vmlinux to its place (through a temporary file).
fn read_one(
    member: &str,
    data: &[u8],
    tmp: &Path,
    modules_prefix: &str,
    vmlinux_member: &str,
    vmlinux: &Path,
    write_vmlinux: bool,
) -> Result<Vec<dwarf::RawUnit>> {
    if member == vmlinux_member {
        if write_vmlinux {
            if let Some(d) = vmlinux.parent() {
                std::fs::create_dir_all(d).map_err(io(d))?;
            }
            let part = vmlinux.with_extension("partial");
            std::fs::write(&part, data).map_err(io(&part))?;
            std::fs::rename(&part, vmlinux).map_err(io(vmlinux))?;
        }
    } else if member.ends_with(".ko") {
        let ko = member.trim_start_matches(modules_prefix);
        let out = tmp.join("modsyms").join(ko);
        if let Some(d) = out.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        std::fs::write(&out, symtab::compact(data)?).map_err(io(&out))?;
    }
    dwarf::units(data)
}

/// Sources as paths relative to the tree, from the names a binary's DWARF uses.
///
/// Debian builds out of tree (`debian/build/build_<flavour>`) with the source prefix
/// mapped away: C units are named relative to the tree (`fs/lockd/svcsubs.c`) with a
/// relative `DW_AT_comp_dir` (the object directory), files generated in the object
/// directory carry that directory as a prefix, and assembler units keep absolute paths
/// under `<root>/<object directory>`. Without such a map, names are relative to or
/// under the compilation directory.
struct TreePaths {
    objdirs: Vec<String>,
    roots: Vec<String>,
}

impl TreePaths {
    fn new(units: &[dwarf::RawUnit]) -> TreePaths {
        let mut objdirs: Vec<String> = units
            .iter()
            .filter(|u| !u.comp_dir.is_empty() && !u.comp_dir.starts_with('/'))
            .map(|u| u.comp_dir.trim_end_matches('/').to_string())
            .collect();
        objdirs.sort();
        objdirs.dedup();
        let mut roots = Vec::new();
        for u in units.iter().filter(|u| u.comp_dir.starts_with('/')) {
            let cd = u.comp_dir.trim_end_matches('/');
            let root = objdirs
                .iter()
                .find_map(|od| cd.strip_suffix(od.as_str()).filter(|r| r.ends_with('/')))
                .map(str::to_string)
                .unwrap_or_else(|| format!("{cd}/"));
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        TreePaths { objdirs, roots }
    }

    /// `path` relative to the tree, or `None` when it lies outside (compiler headers).
    fn tree(&self, path: &str) -> Option<String> {
        let mut p = clean(path);
        if p.starts_with('/') {
            p = self
                .roots
                .iter()
                .find_map(|r| p.strip_prefix(r.as_str()))?
                .to_string();
        }
        for od in &self.objdirs {
            if let Some(rest) = p
                .strip_prefix(od.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                return Some(rest.to_string());
            }
        }
        (!p.is_empty() && !p.starts_with("..")).then_some(p)
    }
}

/// The sources of compile units, relative to the tree (those that lie in it).
pub fn tree_sources(units: &[dwarf::RawUnit]) -> Vec<String> {
    let paths = TreePaths::new(units);
    units.iter().filter_map(|u| paths.tree(&u.name)).collect()
}

/// `a/./b/../c` -> `a/c` (textually: the kernel tree has no symbolic links to follow).
fn clean(path: &str) -> String {
    let abs = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if abs {
        format!("/{joined}")
    } else {
        joined
    }
}

fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') || dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The per-binary readings merged into the index and the header index.
fn assemble(
    mut results: Vec<Read1>,
    modules_prefix: &str,
    vmlinux_member: &str,
) -> (DbgIndex, HeaderIndex) {
    // vmlinux first, then modules by path: stable binary numbers.
    results.sort_by(|a, b| {
        (a.member != vmlinux_member, &a.member).cmp(&(b.member != vmlinux_member, &b.member))
    });
    let mut index = DbgIndex {
        format: FORMAT,
        ..Default::default()
    };
    let mut unit_headers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &results {
        let id = index.binaries.len() as u32;
        index.binaries.push(if r.member == vmlinux_member {
            Binary {
                kind: Kind::Vmlinux,
                name: "vmlinux".into(),
                ko: None,
            }
        } else {
            let ko = r.member.trim_start_matches(modules_prefix).to_string();
            let file = Path::new(&ko);
            if ko.ends_with(".ko") {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().replace('-', "_"))
                    .unwrap_or_default();
                Binary {
                    kind: Kind::Module,
                    name: stem,
                    ko: Some(ko),
                }
            } else {
                let name = file
                    .file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Binary {
                    kind: Kind::Vdso,
                    name,
                    ko: Some(ko),
                }
            }
        });
        let paths = TreePaths::new(&r.units);
        for u in &r.units {
            let Some(source) = paths.tree(&u.name) else {
                continue;
            };
            let ids = index.units.entry(source.clone()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
            let headers = unit_headers.entry(source.clone()).or_default();
            for (d, f) in &u.files {
                let Some(file) = paths.tree(&join(d, f)) else {
                    continue;
                };
                if file == source {
                    continue;
                }
                if file.ends_with(".c") {
                    index
                        .included
                        .entry(file)
                        .or_default()
                        .insert(source.clone());
                } else {
                    headers.insert(file);
                }
            }
        }
    }
    let units: Vec<String> = unit_headers.keys().cloned().collect();
    let mut by_header: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (i, hs) in unit_headers.values().enumerate() {
        for h in hs {
            by_header.entry(h.clone()).or_default().push(i as u32);
        }
    }
    for ids in by_header.values_mut() {
        let mut prev = 0;
        for id in ids.iter_mut() {
            let d = *id - prev;
            prev = *id;
            *id = d;
        }
    }
    (
        index,
        HeaderIndex {
            units,
            headers: by_header,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, comp_dir: &str, files: &[(&str, &str)]) -> dwarf::RawUnit {
        dwarf::RawUnit {
            name: name.into(),
            comp_dir: comp_dir.into(),
            files: files
                .iter()
                .map(|(d, f)| (d.to_string(), f.to_string()))
                .collect(),
        }
    }

    #[test]
    fn debian_paths() {
        let od = "debian/build/build_amd64_none_amd64";
        let root = "/build/reproducible-path/linux-6.1.192";
        let units = vec![
            unit(
                "kernel/sched/build_utility.c",
                od,
                &[
                    ("kernel/sched", "build_utility.c"),
                    ("kernel/sched", "clock.c"),
                    ("include/linux", "sched.h"),
                    ("/usr/lib/gcc/x86_64-linux-gnu/12/include", "stdarg.h"),
                    (&format!("{od}/include/generated"), "timeconst.h"),
                ],
            ),
            unit(
                &format!("{root}/arch/x86/kernel/head_64.S"),
                &format!("{root}/{od}"),
                &[(
                    &format!("{root}/arch/x86/kernel"),
                    "../../x86/xen/xen-head.S",
                )],
            ),
            unit("./lib/oid_registry_data.c", od, &[]),
        ];
        let p = TreePaths::new(&units);
        assert_eq!(
            p.tree("kernel/sched/clock.c").as_deref(),
            Some("kernel/sched/clock.c")
        );
        assert_eq!(
            p.tree(&format!("{root}/arch/x86/kernel/head_64.S"))
                .as_deref(),
            Some("arch/x86/kernel/head_64.S")
        );
        assert_eq!(
            p.tree(&join(
                &format!("{root}/arch/x86/kernel"),
                "../../x86/xen/xen-head.S"
            ))
            .as_deref(),
            Some("arch/x86/xen/xen-head.S")
        );
        assert_eq!(
            p.tree("/usr/lib/gcc/x86_64-linux-gnu/12/include/stdarg.h"),
            None
        );
        assert_eq!(
            p.tree(&format!("{od}/include/generated/timeconst.h"))
                .as_deref(),
            Some("include/generated/timeconst.h")
        );
        assert_eq!(
            p.tree("./lib/oid_registry_data.c").as_deref(),
            Some("lib/oid_registry_data.c")
        );

        let (idx, headers) = assemble(
            vec![Read1 {
                member: "usr/lib/debug/boot/vmlinux-r".into(),
                units,
            }],
            "usr/lib/debug/lib/modules/r/",
            "usr/lib/debug/boot/vmlinux-r",
        );
        assert_eq!(
            idx.binaries_of("kernel/sched/build_utility.c")[0].name,
            "vmlinux"
        );
        assert_eq!(
            idx.includers_of("kernel/sched/clock.c"),
            vec!["kernel/sched/build_utility.c"]
        );
        assert!(idx.binaries_of("kernel/sched/clock.c").is_empty());
        assert_eq!(
            headers.units_naming("include/linux/sched.h"),
            vec!["kernel/sched/build_utility.c"]
        );
        assert_eq!(
            headers.units_naming("include/generated/timeconst.h"),
            vec!["kernel/sched/build_utility.c"]
        );
    }

    #[test]
    fn module_names_and_delta_encoding() {
        let od = "obj";
        let mk = |name: &str, h: &str| unit(name, od, &[("include/linux", h)]);
        let (idx, headers) = assemble(
            vec![
                Read1 {
                    member: "m/kernel/arch/x86/kvm/kvm-amd.ko".into(),
                    units: vec![
                        mk("arch/x86/kvm/svm/sev.c", "a.h"),
                        mk("arch/x86/kvm/svm/svm.c", "a.h"),
                    ],
                },
                Read1 {
                    member: "v".into(),
                    units: vec![mk("init/main.c", "a.h"), mk("kernel/fork.c", "b.h")],
                },
            ],
            "m/",
            "v",
        );
        assert_eq!(idx.binaries[0].name, "vmlinux");
        let b = idx.binaries_of("arch/x86/kvm/svm/sev.c");
        assert_eq!(b[0].name, "kvm_amd");
        assert_eq!(b[0].ko.as_deref(), Some("kernel/arch/x86/kvm/kvm-amd.ko"));
        let mut a = headers.units_naming("include/linux/a.h");
        a.sort();
        assert_eq!(
            a,
            vec![
                "arch/x86/kvm/svm/sev.c",
                "arch/x86/kvm/svm/svm.c",
                "init/main.c"
            ]
        );
        assert_eq!(
            headers.units_naming("include/linux/b.h"),
            vec!["kernel/fork.c"]
        );
    }
}
