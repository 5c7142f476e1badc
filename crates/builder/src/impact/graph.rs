//! The tree's include graph, read in one parallel pass over its sources (`.c`, `.h`,
//! `.S`, `.inc`), with the headers' definitions ([`Knowledge`]) taken on the way.
//!
//! Built to be a superset of what the preprocessor opens, never less:
//! - `#include "x"` found beside the including file is that file (the preprocessor looks
//!   there first); otherwise, and for `<x>` and `#include_next`, every match in the
//!   standard include directories, and if there is none, every file of the tree whose
//!   path ends in `/x` (a directory's own `-I`).
//! - `#include MACRO` (drbd's `GENL_MAGIC_INCLUDE_FILE`) is followed through every
//!   `#define MACRO <x>` of the tree: the defining file is counted as including `x`.
//! - Files every unit includes without an `#include` line (`-include` in the top
//!   Makefile and `scripts/Makefile.*`: `kconfig.h`, `compiler_types.h`, ...) reach every
//!   unit; `-include` in a directory's Makefile reaches that directory's units.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::items::Parsed;
use super::knowledge::Knowledge;
use crate::units::normalize;

/// Directories searched for `#include <...>` on x86, in the order Kbuild gives them.
const STD_DIRS: &[&str] = &[
    "arch/x86/include",
    "arch/x86/include/generated",
    "include",
    "arch/x86/include/uapi",
    "arch/x86/include/generated/uapi",
    "include/uapi",
    "include/generated/uapi",
];

/// Makefiles whose `-include` applies to every unit.
const GLOBAL_MAKEFILES: &[&str] = &["Makefile", "scripts/Makefile.lib", "scripts/Makefile.build"];

/// Directories not part of any kernel build.
const SKIP_DIRS: &[&str] = &["Documentation", "tools", "scripts", "samples", "usr"];

/// One `#include` as written.
#[derive(Clone, Debug)]
enum Inc {
    Quoted(String),
    Angle(String),
    Next(String),
    Macro(String),
}

/// What one file contributes.
#[derive(Default)]
struct FileScan {
    incs: Vec<Inc>,
    /// `#define NAME <path>` / `"path"`: candidates for computed includes.
    include_macros: Vec<(String, String)>,
}

/// The include graph of a tree.
pub struct Graph {
    /// Tree-relative paths.
    pub files: Vec<String>,
    ids: HashMap<String, u32>,
    /// File -> the files it includes.
    pub includes: Vec<Vec<u32>>,
    /// File -> the files that include it.
    pub included_by: Vec<Vec<u32>>,
    /// Files every unit includes (`-include` of the global Makefiles).
    pub forced: Vec<u32>,
    /// Directory -> files its units include by `-include`.
    pub forced_in_dir: Vec<(String, Vec<u32>)>,
    /// The headers' definitions.
    pub knowledge: Knowledge,
    /// Wall time of the scan, and of its steps.
    pub seconds: f64,
    /// Wall time of each step of the scan.
    pub steps: Vec<(&'static str, f64)>,
}

fn walk(tree: &Path, rel: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(tree.join(rel)) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with('.') || (rel.as_os_str().is_empty() && SKIP_DIRS.contains(&&*n)) {
            continue;
        }
        let r = rel.join(&*n);
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(tree, &r, out),
            Ok(t) if t.is_file() && is_source(&n) => out.push(r.display().to_string()),
            _ => {}
        }
    }
}

fn is_source(n: &str) -> bool {
    [".c", ".h", ".S", ".inc"].iter().any(|e| n.ends_with(e))
}

fn scan_text(text: &[u8]) -> FileScan {
    let mut out = FileScan::default();
    for line in text.split(|&b| b == b'\n') {
        let l = line.trim_ascii_start();
        let Some(rest) = l.strip_prefix(b"#") else {
            continue;
        };
        let rest = rest.trim_ascii_start();
        let word_end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .unwrap_or(rest.len());
        let (word, arg) = rest.split_at(word_end);
        let arg = String::from_utf8_lossy(arg.trim_ascii()).into_owned();
        let quoted = |a: &str, open: char, close: char| {
            a.strip_prefix(open)
                .and_then(|r| r.split(close).next())
                .map(str::to_string)
        };
        match word {
            b"include" | b"import" | b"include_next" => {
                let next = word == b"include_next";
                if let Some(q) = quoted(&arg, '"', '"') {
                    out.incs
                        .push(if next { Inc::Next(q) } else { Inc::Quoted(q) });
                } else if let Some(a) = quoted(&arg, '<', '>') {
                    out.incs
                        .push(if next { Inc::Next(a) } else { Inc::Angle(a) });
                } else if let Some(m) = arg
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .next()
                {
                    if !m.is_empty() {
                        out.incs.push(Inc::Macro(m.to_string()));
                    }
                }
            }
            b"define" => {
                let mut parts = arg.splitn(2, |c: char| c.is_whitespace());
                let (Some(name), Some(body)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let body = body.trim();
                if let Some(p) = quoted(body, '<', '>').or_else(|| quoted(body, '"', '"')) {
                    if p.ends_with(".h") || p.ends_with(".c") {
                        out.include_macros.push((name.to_string(), p));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `-include FILE` arguments of a Makefile, as tree-relative paths where they can be
/// told (`$(srctree)/x`, `$(src)/x`, `$(obj)/x`, or a plain path).
fn makefile_forced(text: &str, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("-include ") {
        rest = &rest[at + "-include ".len()..];
        let arg = rest.split_whitespace().next().unwrap_or("");
        let path = if let Some(p) = arg.strip_prefix("$(srctree)/") {
            Some(p.to_string())
        } else if let Some(p) = arg
            .strip_prefix("$(src)/")
            .or_else(|| arg.strip_prefix("$(obj)/"))
            .or_else(|| arg.strip_prefix("$(srctree)/$(src)/"))
        {
            Some(format!("{dir}/{p}"))
        } else if !arg.contains('$') && !arg.is_empty() {
            Some(arg.to_string())
        } else {
            None
        };
        if let Some(p) = path {
            out.push(normalize(Path::new(&p)).display().to_string());
        }
    }
    out
}

impl Graph {
    /// Scan `tree`; `extra` are unit sources outside the scanned directories (a unit
    /// Kbuild compiles from `tools/`).
    pub fn scan(tree: &Path, extra: &[String]) -> Graph {
        let start = std::time::Instant::now();
        let mut steps = Vec::new();
        let mut lap = std::time::Instant::now();
        let mut step = |name: &'static str| {
            steps.push((name, lap.elapsed().as_secs_f64()));
            lap = std::time::Instant::now();
        };
        let mut files = Vec::new();
        walk(tree, Path::new(""), &mut files);
        step("walk");
        for e in extra {
            if !files.contains(e) && tree.join(e).is_file() {
                files.push(e.clone());
            }
        }
        let scans: Vec<(FileScan, Option<Knowledge>)> = files
            .par_iter()
            .map(|f| {
                let text = std::fs::read(tree.join(f)).unwrap_or_default();
                let scan = scan_text(&text);
                let know = (f.ends_with(".h") || f.ends_with(".inc")).then(|| {
                    let mut k = Knowledge::default();
                    k.add(f, &Parsed::new(text));
                    k
                });
                (scan, know)
            })
            .collect();
        step("read");
        let ids: HashMap<String, u32> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i as u32))
            .collect();
        let mut by_name: HashMap<&str, Vec<u32>> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let name = f.rsplit('/').next().unwrap_or(f);
            by_name.entry(name).or_default().push(i as u32);
        }
        let mut knowledge = Knowledge::default();
        let mut macro_targets: HashMap<String, Vec<(u32, String)>> = HashMap::new();
        let mut computed: HashSet<String> = HashSet::new();
        for (i, (scan, know)) in scans.iter().enumerate() {
            for (name, path) in &scan.include_macros {
                macro_targets
                    .entry(name.clone())
                    .or_default()
                    .push((i as u32, path.clone()));
            }
            for inc in &scan.incs {
                if let Inc::Macro(m) = inc {
                    computed.insert(m.clone());
                }
            }
            let _ = know;
        }
        let resolver = Resolver {
            files: &files,
            ids: &ids,
            by_name: &by_name,
        };
        let mut includes: Vec<Vec<u32>> = vec![Vec::new(); files.len()];
        for (i, (scan, _)) in scans.iter().enumerate() {
            let dir = Path::new(&files[i]).parent().unwrap_or(Path::new(""));
            let mut out: Vec<u32> = Vec::new();
            for inc in &scan.incs {
                out.extend(resolver.resolve(dir, inc));
            }
            includes[i] = out;
        }
        for m in &computed {
            for (file, path) in macro_targets.get(m).into_iter().flatten() {
                let dir = Path::new(&files[*file as usize])
                    .parent()
                    .unwrap_or(Path::new(""))
                    .to_path_buf();
                let found = resolver.resolve(&dir, &Inc::Angle(path.clone()));
                includes[*file as usize].extend(found);
            }
        }
        step("resolve");
        for (_, know) in scans {
            if let Some(k) = know {
                knowledge.merge(k);
            }
        }
        knowledge.finish();
        step("knowledge");
        let mut included_by: Vec<Vec<u32>> = vec![Vec::new(); files.len()];
        for (i, incs) in includes.iter_mut().enumerate() {
            incs.sort_unstable();
            incs.dedup();
            for &t in incs.iter() {
                included_by[t as usize].push(i as u32);
            }
        }
        let (forced, forced_in_dir) = forced_includes(tree, &files, &ids);
        Graph {
            files,
            ids,
            includes,
            included_by,
            forced,
            forced_in_dir,
            knowledge,
            seconds: start.elapsed().as_secs_f64(),
            steps,
        }
    }

    /// A file's id.
    pub fn id(&self, path: &str) -> Option<u32> {
        self.ids.get(path).copied()
    }

    /// Every file that includes `target`, directly or not (`target` not counted).
    pub fn includers(&self, target: u32) -> HashSet<u32> {
        let mut seen = closure_of(target, &self.included_by);
        seen.remove(&target);
        seen
    }

    /// Every file `from` includes, directly or not.
    pub fn reachable(&self, from: u32) -> HashSet<u32> {
        closure_of(from, &self.includes)
    }

    /// Does every unit of directory `dir` reach `target` without an `#include` line
    /// (through a file given with `-include`)? Then every such unit is an includer.
    pub fn forced_reach(&self, target: u32, unit: &str) -> bool {
        let dir = Path::new(unit).parent().unwrap_or(Path::new(""));
        let forced = self.forced.iter().chain(
            self.forced_in_dir
                .iter()
                .filter(|(d, _)| dir.starts_with(d))
                .flat_map(|(_, f)| f.iter()),
        );
        forced
            .into_iter()
            .any(|&f| f == target || self.reachable(f).contains(&target))
    }

    /// The path of a file id.
    pub fn path(&self, id: u32) -> &str {
        &self.files[id as usize]
    }
}

/// Every file reached from `start` through `edges` (not `start` itself unless a cycle
/// leads back to it).
fn closure_of(start: u32, edges: &[Vec<u32>]) -> HashSet<u32> {
    let mut seen = HashSet::new();
    let mut work = vec![start];
    while let Some(f) = work.pop() {
        for &g in &edges[f as usize] {
            if seen.insert(g) {
                work.push(g);
            }
        }
    }
    seen
}

struct Resolver<'a> {
    files: &'a [String],
    ids: &'a HashMap<String, u32>,
    by_name: &'a HashMap<&'a str, Vec<u32>>,
}

impl Resolver<'_> {
    fn id(&self, p: &Path) -> Option<u32> {
        self.ids.get(&*normalize(p).to_string_lossy()).copied()
    }

    fn resolve(&self, dir: &Path, inc: &Inc) -> Vec<u32> {
        let (name, local, next) = match inc {
            Inc::Quoted(n) => (n, true, false),
            Inc::Angle(n) => (n, false, false),
            Inc::Next(n) => (n, false, true),
            Inc::Macro(_) => return Vec::new(),
        };
        if local {
            if let Some(id) = self.id(&dir.join(name)) {
                return vec![id];
            }
        }
        let mut out: Vec<u32> = STD_DIRS
            .iter()
            .filter_map(|d| self.id(&Path::new(d).join(name)))
            .collect();
        if out.is_empty() || next {
            // A directory's own -I: any file whose path ends with the name.
            let want = normalize(Path::new(name.trim_start_matches("../")));
            let want = want.to_string_lossy();
            let last = want.rsplit('/').next().unwrap_or(&want);
            for &id in self.by_name.get(last).into_iter().flatten() {
                let f = &self.files[id as usize];
                if f == &*want || f.ends_with(&format!("/{want}")) {
                    out.push(id);
                }
            }
        }
        out
    }
}

fn forced_includes(
    tree: &Path,
    files: &[String],
    ids: &HashMap<String, u32>,
) -> (Vec<u32>, Vec<(String, Vec<u32>)>) {
    let id_of = |p: &str| ids.get(p).copied();
    let mut global = Vec::new();
    for m in GLOBAL_MAKEFILES {
        let text = std::fs::read_to_string(tree.join(m)).unwrap_or_default();
        global.extend(makefile_forced(&text, "").iter().filter_map(|p| id_of(p)));
    }
    let mut per_dir = Vec::new();
    let dirs: HashSet<PathBuf> = files
        .iter()
        .filter_map(|f| Path::new(f).parent().map(Path::to_path_buf))
        .collect();
    for d in dirs {
        for mk in ["Makefile", "Kbuild"] {
            let Ok(text) = std::fs::read_to_string(tree.join(&d).join(mk)) else {
                continue;
            };
            if !text.contains("-include ")
                || GLOBAL_MAKEFILES.iter().any(|g| d.join(mk) == Path::new(g))
            {
                continue;
            }
            let ds = d.display().to_string();
            let found: Vec<u32> = makefile_forced(&text, &ds)
                .iter()
                .filter_map(|p| id_of(p))
                .collect();
            if !found.is_empty() {
                per_dir.push((ds, found));
            }
        }
    }
    (global, per_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_follows_local_standard_suffix_and_computed_includes() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w(
            "Makefile",
            "LINUXINCLUDE += -include $(srctree)/include/linux/kconfig.h\n",
        );
        w("include/linux/kconfig.h", "#define IS_ENABLED(x) 1\n");
        w("include/linux/a.h", "#define A 1\n");
        w("include/linux/b.h", "#include <linux/a.h>\n");
        w("drivers/x/include/x/priv.h", "#define PRIV 1\n");
        w(
            "drivers/x/main.c",
            "#include <linux/b.h>\n#include <x/priv.h>\n",
        );
        w("drivers/x/local.h", "int l;\n");
        w("drivers/x/other.c", "#include \"local.h\"\n");
        w(
            "include/linux/gen_api.h",
            "#define GEN_FILE <linux/gen.h>\n#include <linux/gen_body.h>\n",
        );
        w("include/linux/gen_body.h", "#include GEN_FILE\n");
        w("include/linux/gen.h", "int g;\n");
        w("drivers/y/use.c", "#include <linux/gen_api.h>\n");
        w("kernel/sched/clock.c", "#include <linux/a.h>\n");
        w("kernel/sched/build_utility.c", "#include \"clock.c\"\n");
        let g = Graph::scan(d.path(), &[]);
        let names = |s: HashSet<u32>| {
            let mut v: Vec<&str> = s.into_iter().map(|i| g.path(i)).collect();
            v.sort();
            v
        };
        let a = g.id("include/linux/a.h").unwrap();
        assert_eq!(
            names(g.includers(a)),
            [
                "drivers/x/main.c",
                "include/linux/b.h",
                "kernel/sched/build_utility.c",
                "kernel/sched/clock.c"
            ]
        );
        let priv_h = g.id("drivers/x/include/x/priv.h").unwrap();
        assert_eq!(names(g.includers(priv_h)), ["drivers/x/main.c"]);
        let gen = g.id("include/linux/gen.h").unwrap();
        assert_eq!(
            names(g.includers(gen)),
            ["drivers/y/use.c", "include/linux/gen_api.h"]
        );
        let kc = g.id("include/linux/kconfig.h").unwrap();
        assert!(g.includers(kc).is_empty());
        assert!(g.forced_reach(kc, "drivers/x/other.c"));
        assert!(!g.forced_reach(a, "drivers/x/other.c"));
        assert!(g.knowledge.is_macro("IS_ENABLED") && g.knowledge.is_macro("PRIV"));
    }
}
