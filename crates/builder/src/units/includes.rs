//! Which sources include a file: `#include` lines scanned through the tree (headers
//! through other headers, `.c` files included by other `.c` files).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// `.c` files of the same directory that `#include` `source` (a `.c`).
pub fn c_includers(tree: &Path, source: &Path) -> Vec<String> {
    let dir = source.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(tree.join(dir)) else {
        return out;
    };
    for e in rd.flatten() {
        let rel = dir.join(e.file_name());
        if rel.extension().is_none_or(|x| x != "c") || rel == source {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if includes_of(&text)
            .iter()
            .any(|(local, f)| *local && normalize(&dir.join(f)) == source)
        {
            out.push(rel.display().to_string());
        }
    }
    out.sort();
    out
}

/// Directories searched for `#include <...>` on x86.
const INCLUDE_DIRS: &[&str] = &[
    "include",
    "arch/x86/include",
    "arch/x86/include/generated",
    "include/uapi",
    "arch/x86/include/uapi",
];

fn includes_of(text: &str) -> Vec<(bool, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix('#')?
                .trim_start()
                .strip_prefix("include")?
                .trim();
            if let Some(r) = rest.strip_prefix('"') {
                Some((true, r.split('"').next()?.to_string()))
            } else if let Some(r) = rest.strip_prefix('<') {
                Some((false, r.split('>').next()?.to_string()))
            } else {
                None
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.starts_with('.')
            || n == "Documentation"
            || n == "tools"
            || n == "scripts"
            || n == "samples"
        {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t)
                if t.is_file() && (n.ends_with(".c") || n.ends_with(".h") || n.ends_with(".S")) =>
            {
                out.push(p)
            }
            _ => {}
        }
    }
}

/// Every `.c` and `.S` of the tree that includes `header`, directly or through other
/// headers (and `.c` files that include it through another `.c`).
pub fn units_including(tree: &Path, header: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    walk(tree, &mut files);
    // file -> the files that include it (resolved, tree-relative)
    let mut included_by: HashMap<PathBuf, Vec<PathBuf>> = HashMap::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let rel = f.strip_prefix(tree).unwrap_or(f).to_path_buf();
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        for (local, inc) in includes_of(&text) {
            let mut targets = Vec::new();
            if local {
                targets.push(dir.join(&inc));
            }
            for d in INCLUDE_DIRS {
                targets.push(Path::new(d).join(&inc));
            }
            if let Some(t) = targets.into_iter().find(|t| tree.join(t).exists()) {
                included_by
                    .entry(normalize(&t))
                    .or_default()
                    .push(rel.clone());
            }
        }
    }
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut work = vec![normalize(header)];
    let mut units = BTreeSet::new();
    while let Some(h) = work.pop() {
        for f in included_by.get(&h).cloned().unwrap_or_default() {
            if !seen.insert(f.clone()) {
                continue;
            }
            if f.extension().is_some_and(|e| e == "c" || e == "S") {
                units.insert(f.display().to_string());
            }
            // A .c or .S can itself be included by another unit.
            work.push(f);
        }
    }
    units
}

pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_lines() {
        let inc = includes_of("#include <linux/seq_file.h>\n# include \"internal.h\"\nint x;\n");
        assert_eq!(
            inc,
            vec![
                (false, "linux/seq_file.h".to_string()),
                (true, "internal.h".to_string())
            ]
        );
    }

    #[test]
    fn header_reaches_units_through_headers_and_c_includes() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w("include/linux/a.h", "int a(void);\n");
        w("include/linux/b.h", "#include <linux/a.h>\n");
        w("kernel/x.c", "#include <linux/b.h>\n");
        w("kernel/sched/clock.c", "#include <linux/a.h>\n");
        w("kernel/sched/build_utility.c", "#include \"clock.c\"\n");
        w("arch/x86/entry/entry.S", "#include <linux/a.h>\n");
        w("lib/y.c", "#include \"../include/linux/b.h\"\n");
        let found = units_including(d.path(), Path::new("include/linux/a.h"));
        let want: BTreeSet<String> = [
            "kernel/x.c",
            "kernel/sched/clock.c",
            "kernel/sched/build_utility.c",
            "arch/x86/entry/entry.S",
            "lib/y.c",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        assert_eq!(found, want);
        assert_eq!(
            c_includers(d.path(), Path::new("kernel/sched/clock.c")),
            vec!["kernel/sched/build_utility.c".to_string()]
        );
    }
}
