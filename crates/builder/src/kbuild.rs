//! Kbuild's own answer to "where is this object linked", asked in the prepared tree.
//!
//! Kbuild decides membership in `scripts/Makefile.build` and `scripts/Makefile.lib`,
//! after the directory's Makefile has run with the configuration: `real-obj-y` (built
//! into vmlinux), `lib-y` (`lib.a`), `obj-m` and the members of each composite module
//! (`<mod>-y`, `<mod>-objs`, `<mod>-m`, members in subdirectories, `$(CONFIG_...)`
//! conditionals, variable indirection: whatever the Makefile does). Rather than
//! re-implementing that, we let Kbuild evaluate it: a small makefile given to every make
//! through `MAKEFILES` adds a target `<dir>/kpatch-query.o` to `Makefile.build`, whose
//! recipe writes those variables for its directory into a file. Asking the top-level
//! Makefile for `<dir>/kpatch-query.o` makes Kbuild descend from the top exactly as a
//! build does (`obj-y += fs/` ... ), so a directory the configuration never reaches
//! writes nothing. Nothing is compiled.
//!
//! Cost on the 2-core reference machine: one directory chain ~1 s of CPU (the top-level
//! Makefile's own start-up); every directory of the tree (~1,400 reached) ~15 s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::cmd::run;
use crate::error::{io, step, Result};
use crate::kernel::Kernel;
use crate::progress::Progress;

/// The makefile read by every make of the query (`MAKEFILES`). It only acts inside
/// `scripts/Makefile.build` (which sets `obj`) and only when `KPATCH_QUERY_OUT` is set.
const QUERY_MK: &str = r#"# kpatch-build: Kbuild membership query (see crates/builder/src/kbuild.rs).
ifdef obj
ifdef KPATCH_QUERY_OUT
define kpq-nl


endef
kpq-members = $(addprefix $(obj)/,$(call suffix-search,$(patsubst $(obj)/%,%,$(1)),.o,-objs -y -m))
kpq-multi = $(foreach m,$(multi-obj-m),multi $(m) $(call kpq-members,$(m))$(kpq-nl))
$(obj)/kpatch-query.o: FORCE
	$(file >$(KPATCH_QUERY_OUT)/$(subst /,%,$(obj)),y $(filter %.o,$(real-obj-y))$(kpq-nl)lib $(filter %.o,$(lib-y))$(kpq-nl)m $(filter %.o,$(obj-m))$(kpq-nl)$(kpq-multi))
	@:
%/kpatch-query.o: ; @:
endif
endif
"#;

/// Where Kbuild links an object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Placement {
    /// `obj-y`: built into vmlinux.
    Builtin,
    /// `lib-y`: archived into `lib.a`, which is linked into vmlinux whole when
    /// `CONFIG_MODULES` is set (modules may need any of it), else member by member as
    /// vmlinux references them.
    Lib,
    /// A loadable module: its name (`-` as `_`) and `.ko` path under
    /// `/lib/modules/<release>/`.
    Module { name: String, ko: String },
}

/// Kbuild's placement of every object of the directories it was asked about.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct KbuildMap {
    /// Object (relative to the tree, `fs/lockd/svcsubs.o`) -> where it is linked.
    pub objects: BTreeMap<String, BTreeSet<Placement>>,
    /// Directories Kbuild descended into.
    pub reached: BTreeSet<String>,
    /// Objects built from a source of another name or directory (`kernel/bpf/relo_core.o`
    /// from `tools/lib/bpf/relo_core.c`, xe's `i915-display/*.o` from i915's sources):
    /// source -> objects.
    pub moved: BTreeMap<String, BTreeSet<String>>,
}

impl KbuildMap {
    /// Where the object built from `source` (a `.c` or `.S` relative to the tree) goes.
    pub fn placements(&self, source: &str) -> Vec<&Placement> {
        self.placed_objects(source)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Each object Kbuild builds from `source`, with where it is linked.
    pub fn placed_objects(&self, source: &str) -> Vec<(String, &Placement)> {
        let mut out = Vec::new();
        for object in self.objects_of(source) {
            for p in self.objects.get(&object).into_iter().flatten() {
                out.push((object.clone(), p));
            }
        }
        out
    }
}

impl KbuildMap {
    /// The object Kbuild builds from `source`: `<stem>.o`, or the object of another
    /// name a Makefile builds from it.
    pub fn objects_of(&self, source: &str) -> Vec<String> {
        let mut out: Vec<String> = source
            .rsplit_once('.')
            .map(|(stem, _)| format!("{stem}.o"))
            .into_iter()
            .collect();
        out.extend(self.moved.get(source).into_iter().flatten().cloned());
        out
    }
}

/// Ask Kbuild about `dirs` (relative to the tree; ancestors are added, since a parent
/// may list members in subdirectories, as `ksmbd-y += mgmt/user_config.o` does).
pub fn query(
    k: &Kernel,
    jobs: usize,
    dirs: &BTreeSet<String>,
    p: &mut Progress,
) -> Result<KbuildMap> {
    let mut all = BTreeSet::new();
    for d in dirs {
        let mut p = Path::new(d);
        loop {
            let s = p.to_string_lossy();
            if s.is_empty() || s == "." {
                break;
            }
            all.insert(s.into_owned());
            match p.parent() {
                Some(up) => p = up,
                None => break,
            }
        }
    }
    let work = tempfile_dir(&k.state)?;
    let mk = work.join("query.mk");
    std::fs::write(&mk, QUERY_MK).map_err(io(&mk))?;
    let out = work.join("out");
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let mut args = k.make_args(jobs);
    args.push("-s".into());
    args.push(format!("KPATCH_QUERY_OUT={}", out.display()));
    args.extend(all.iter().map(|d| format!("{d}/kpatch-query.o")));
    let ran = run(
        k.command("make").args(&args).env("MAKEFILES", &mk),
        "asking Kbuild which objects the tree builds",
        p,
    );
    let map = ran.and_then(|_| read_answers(&out));
    let _ = std::fs::remove_dir_all(&work);
    let mut map = map?;
    add_link_objects(&k.tree(), &mut map);
    find_moved_sources(k, jobs, &mut map, p)?;
    Ok(map)
}

/// Objects the final link adds to vmlinux besides Kbuild's `obj-y` (`init/version-timestamp.o`,
/// compiled with the final version string): those `scripts/link-vmlinux.sh` names whose
/// source is in the tree.
fn add_link_objects(tree: &Path, map: &mut KbuildMap) {
    let script = std::fs::read_to_string(tree.join("scripts/link-vmlinux.sh")).unwrap_or_default();
    for word in script.split(|c: char| !(c.is_ascii_alphanumeric() || "_-./".contains(c))) {
        let Some(stem) = word.strip_suffix(".o") else {
            continue;
        };
        if !stem.is_empty() && !stem.starts_with('.') && tree.join(format!("{stem}.c")).is_file() {
            add(map, word, Placement::Builtin);
        }
    }
}

/// Objects with no source of their own name in the tree: either generated sources
/// (`*.asn1.c`) or a Makefile rule compiling a source from elsewhere. A dry run of their
/// builds (`make -n`) shows Kbuild's compile command, whose input is the source.
fn find_moved_sources(
    k: &Kernel,
    jobs: usize,
    map: &mut KbuildMap,
    p: &mut Progress,
) -> Result<()> {
    let tree = k.tree();
    let lonely: Vec<&String> = map
        .objects
        .keys()
        .filter(|o| {
            let stem = o.trim_end_matches(".o");
            !["c", "S", "rs"]
                .iter()
                .any(|x| tree.join(format!("{stem}.{x}")).exists())
        })
        .collect();
    if lonely.is_empty() {
        return Ok(());
    }
    let mut args = k.make_args(jobs);
    args.push("-n".into());
    args.push("-k".into());
    args.extend(lonely.iter().map(|o| o.to_string()));
    // A dry run of generated sources may fail where the generator is not built: what it
    // printed still names the compile commands it could plan.
    let text = k
        .command("make")
        .args(&args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| step(format!("cannot run make: {e}")))?;
    p.output(
        "Kbuild dry run of objects built from sources of other names",
        &text,
    );
    let lonely: BTreeSet<String> = lonely.into_iter().cloned().collect();
    for (object, source) in compile_commands(&text) {
        let object = normalize(&object);
        let source = normalize(source.trim_start_matches("./"));
        if lonely.contains(&object)
            && object.trim_end_matches(".o") != source.rsplit_once('.').map(|s| s.0).unwrap_or("")
        {
            map.moved.entry(source).or_default().insert(object);
        }
    }
    Ok(())
}

/// `(object, source)` of each `... -c -o OBJECT SOURCE` in make's (dry-run) output.
fn compile_commands(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|w| !w.is_empty())
            .collect();
        for w in words.windows(4) {
            if w[0] == "-c" && w[1] == "-o" && (w[3].ends_with(".c") || w[3].ends_with(".S")) {
                out.push((w[2].to_string(), w[3].to_string()));
            }
        }
    }
    out
}

/// Kbuild's answer for the whole tree, cached in the tree's state directory until the
/// configuration or a Makefile changes (a whole-tree query costs ~15 s of CPU).
pub fn tree_map(k: &Kernel, jobs: usize, p: &mut Progress) -> Result<KbuildMap> {
    let tree = k.tree();
    let dirs = kbuild_dirs(&tree);
    // The format of the cached answer is part of its key.
    let mut key = b"kbuild-map 2\n".to_vec();
    key.extend(std::fs::read(k.config()).map_err(io(k.config()))?);
    key.extend(tree.as_os_str().as_encoded_bytes());
    for d in &dirs {
        for f in ["Makefile", "Kbuild"] {
            let m = std::fs::metadata(tree.join(d).join(f)).and_then(|m| m.modified());
            if let Ok(t) = m {
                key.extend(format!("{d}/{f}{t:?}").as_bytes());
            }
        }
    }
    let cached = k.state.join(format!(
        "kbuild-map-{:016x}.json",
        xxhash_rust::xxh3::xxh3_64(&key)
    ));
    if let Some(map) = std::fs::read(&cached)
        .ok()
        .and_then(|t| serde_json::from_slice::<KbuildMap>(&t).ok())
    {
        return Ok(map);
    }
    p.note(
        "asking Kbuild which objects every directory of the tree builds (once per configuration)",
    );
    let map = query(k, jobs, &dirs, p)?;
    if let Ok(text) = serde_json::to_vec(&map) {
        let part = cached.with_extension("partial");
        if std::fs::write(&part, text).is_ok() {
            let _ = std::fs::rename(&part, &cached);
        }
    }
    Ok(map)
}

/// Every directory of the tree that has a Makefile or Kbuild file (for a whole-tree
/// query).
pub fn kbuild_dirs(tree: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let rel = dir
            .strip_prefix(tree)
            .unwrap_or(&dir)
            .to_string_lossy()
            .into_owned();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    let skip = rel.is_empty()
                        && matches!(
                            name.as_str(),
                            "tools" | "Documentation" | "scripts" | "debian"
                        );
                    if !skip && !name.starts_with('.') {
                        stack.push(e.path());
                    }
                }
                Ok(t)
                    if t.is_file()
                        && (name == "Makefile" || name == "Kbuild")
                        && !rel.is_empty() =>
                {
                    out.insert(rel.clone());
                }
                _ => {}
            }
        }
    }
    out
}

fn tempfile_dir(base: &Path) -> Result<std::path::PathBuf> {
    let dir = base.join(format!("kbuild-query.{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Read the files the query wrote, one per directory reached.
fn read_answers(out: &Path) -> Result<KbuildMap> {
    let mut map = KbuildMap::default();
    for e in std::fs::read_dir(out).map_err(io(out))?.flatten() {
        let dir = e.file_name().to_string_lossy().replace('%', "/");
        let text = std::fs::read_to_string(e.path()).map_err(io(e.path()))?;
        parse_answer(&mut map, &dir, &text);
    }
    if map.reached.is_empty() {
        return Err(step(
            "Kbuild answered for no directory: the tree is not configured as expected",
        ));
    }
    Ok(map)
}

fn module_of(composite: &str) -> Placement {
    let stem = composite.trim_end_matches(".o");
    let name = Path::new(stem)
        .file_name()
        .map(|n| n.to_string_lossy().replace('-', "_"))
        .unwrap_or_default();
    Placement::Module {
        name,
        ko: format!("kernel/{stem}.ko"),
    }
}

fn parse_answer(map: &mut KbuildMap, dir: &str, text: &str) {
    map.reached.insert(dir.to_string());
    let mut multi: BTreeSet<String> = BTreeSet::new();
    let mut singles = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(kind) = words.next() else { continue };
        match kind {
            "y" => words.for_each(|o| add(map, o, Placement::Builtin)),
            "lib" => words.for_each(|o| add(map, o, Placement::Lib)),
            "m" => singles.extend(words.map(str::to_string)),
            "multi" => {
                let Some(composite) = words.next() else {
                    continue;
                };
                let composite = normalize(composite);
                let module = module_of(&composite);
                words.for_each(|o| add(map, o, module.clone()));
                multi.insert(composite);
            }
            _ => {}
        }
    }
    for o in singles {
        let o = normalize(&o);
        if !multi.contains(&o) {
            let module = module_of(&o);
            add(map, &o, module);
        }
    }
}

fn add(map: &mut KbuildMap, object: &str, p: Placement) {
    map.objects.entry(normalize(object)).or_default().insert(p);
}

/// `arch/x86/kvm/../../../virt/kvm/kvm_main.o` -> `virt/kvm/kvm_main.o`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        let mut map = KbuildMap::default();
        parse_answer(
            &mut map,
            "arch/x86/kvm",
            "y \nlib \nm arch/x86/kvm/kvm.o arch/x86/kvm/kvm-amd.o arch/x86/kvm/single.o\n\
             multi arch/x86/kvm/kvm-amd.o arch/x86/kvm/svm/svm.o arch/x86/kvm/svm/sev.o\n\
             multi arch/x86/kvm/kvm.o arch/x86/kvm/../../../virt/kvm/kvm_main.o arch/x86/kvm/x86.o\n",
        );
        parse_answer(
            &mut map,
            "lib",
            "y lib/sort.o\nlib lib/string.o\nm lib/crc-itu-t.o\n",
        );
        let kvm_amd = Placement::Module {
            name: "kvm_amd".into(),
            ko: "kernel/arch/x86/kvm/kvm-amd.ko".into(),
        };
        assert_eq!(map.placements("arch/x86/kvm/svm/sev.c"), vec![&kvm_amd]);
        assert_eq!(
            map.placements("virt/kvm/kvm_main.c"),
            vec![&Placement::Module {
                name: "kvm".into(),
                ko: "kernel/arch/x86/kvm/kvm.ko".into()
            }]
        );
        assert_eq!(
            map.placements("arch/x86/kvm/single.c"),
            vec![&Placement::Module {
                name: "single".into(),
                ko: "kernel/arch/x86/kvm/single.ko".into()
            }]
        );
        assert!(map.placements("arch/x86/kvm/kvm-amd.c").is_empty());
        assert_eq!(map.placements("lib/sort.c"), vec![&Placement::Builtin]);
        assert_eq!(map.placements("lib/string.c"), vec![&Placement::Lib]);
        assert!(map.reached.contains("lib"));
    }

    #[test]
    fn moved_sources_from_compile_commands() {
        let text = "set -e; echo '  CC      kernel/bpf/relo_core.o'; gcc-12 -Wp,-MMD,kernel/bpf/.relo_core.o.d \
                    -nostdinc -O2 -c -o kernel/bpf/relo_core.o tools/lib/bpf/relo_core.c; \
                    ./tools/objtool/objtool --hacks=jump_label kernel/bpf/relo_core.o\n";
        assert_eq!(
            compile_commands(text),
            vec![(
                "kernel/bpf/relo_core.o".to_string(),
                "tools/lib/bpf/relo_core.c".to_string()
            )]
        );
        let mut map = KbuildMap::default();
        parse_answer(&mut map, "kernel/bpf", "y kernel/bpf/relo_core.o\n");
        map.moved
            .entry("tools/lib/bpf/relo_core.c".into())
            .or_default()
            .insert("kernel/bpf/relo_core.o".into());
        assert_eq!(
            map.placed_objects("tools/lib/bpf/relo_core.c"),
            vec![("kernel/bpf/relo_core.o".to_string(), &Placement::Builtin)]
        );
    }
}
