// SPDX-License-Identifier: GPL-2.0-only
//! The header impact analysis on a small tree compiled with gcc: which includers are
//! candidates for each shape of change (a macro, a static inline, a constant tested by
//! `#if`, a macro used by another header's inline), and what the preprocessed streams
//! (`gcc -E`) say about each candidate, checked against the objects gcc builds.

use std::path::Path;
use std::process::Command;

use builder::impact::{self, stream, Graph, HeaderChange};

const HEADER: &str = "\
#ifndef H_H
#define H_H
#define LIMIT 10
#define TWICE(x) ((x) * 2)
static inline int clamp_limit(int v) { return v > LIMIT ? LIMIT : v; }
static inline int unused_helper(int v) { return v + 1; }
struct pair { int a; int b; };
#endif
";

const OTHER: &str = "\
#include \"h.h\"
static inline int quad(int x) { return TWICE(TWICE(x)); }
";

/// Units: what each one uses.
const UNITS: &[(&str, &str)] = &[
    ("macro_user.c", "#include \"h.h\"\nint m(int x) { return TWICE(x); }\n"),
    ("inline_user.c", "#include \"h.h\"\nint i(int x) { return clamp_limit(x); }\n"),
    (
        "if_user.c",
        "#include \"h.h\"\n#if LIMIT > 5\nint big(void) { return 1; }\n#else\nint big(void) { return 0; }\n#endif\n",
    ),
    ("nothing.c", "#include \"h.h\"\nint n(void) { return 3; }\n"),
    ("via_other.c", "#include \"other.h\"\nint q(int x) { return quad(x); }\n"),
    ("other_unused.c", "#include \"other.h\"\nint u(void) { return 4; }\n"),
];

fn gcc() -> bool {
    Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn write_tree(dir: &Path, header: &str) {
    let inc = dir.join("include");
    std::fs::create_dir_all(&inc).unwrap();
    std::fs::write(inc.join("h.h"), header).unwrap();
    std::fs::write(inc.join("other.h"), OTHER).unwrap();
    for (name, text) in UNITS {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

fn preprocess(dir: &Path, unit: &str) -> stream::Stream {
    let o = Command::new("gcc")
        .current_dir(dir)
        .args(["-E", "-Iinclude", unit])
        .output()
        .expect("gcc -E");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stream::read(o.stdout)
}

fn object(dir: &Path, unit: &str) -> Vec<u8> {
    let out = dir.join("out.o");
    let s = Command::new("gcc")
        .current_dir(dir)
        .args(["-O2", "-c", "-Iinclude", unit, "-o"])
        .arg(&out)
        .status()
        .expect("gcc -c");
    assert!(s.success());
    std::fs::read(out).unwrap()
}

/// The candidates for `old` -> `new` in h.h, and the units whose streams say "rebuild",
/// with the units whose objects really change.
fn analyse(old: &str, new: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let before = tempfile::tempdir().unwrap();
    let after = tempfile::tempdir().unwrap();
    let patched = HEADER.replacen(old, new, 1);
    assert_ne!(patched, HEADER, "{old:?} not in the header");
    write_tree(before.path(), HEADER);
    write_tree(after.path(), &patched);
    let g = Graph::scan(before.path(), &[]);
    let units: Vec<String> = UNITS.iter().map(|(n, _)| n.to_string()).collect();
    let change = HeaderChange {
        path: "include/h.h".into(),
        old: HEADER.as_bytes().to_vec(),
        new: patched.into_bytes(),
    };
    let n = impact::narrow(&g, before.path(), &[change], &units);
    let mut cands: Vec<String> = n.candidates.iter().map(|(u, _)| u.clone()).collect();
    cands.sort();
    let mut rebuild = Vec::new();
    for u in &cands {
        let v = stream::compare(&preprocess(before.path(), u), &preprocess(after.path(), u));
        if matches!(v, stream::Verdict::Changed(_)) {
            rebuild.push(u.clone());
        }
    }
    let mut changed: Vec<String> = units
        .iter()
        .filter(|u| object(before.path(), u) != object(after.path(), u))
        .cloned()
        .collect();
    changed.sort();
    (cands, rebuild, changed)
}

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

#[test]
fn each_shape_of_change_reaches_exactly_the_units_whose_objects_change() {
    if !gcc() {
        panic!("gcc is needed (scripts/install-deps.sh installs it)");
    }
    // A macro: its direct user, and (through the other header's inline that uses it) the
    // unit calling that inline; other_unused.c includes other.h but never calls it.
    let (cands, rebuild, changed) =
        analyse("#define TWICE(x) ((x) * 2)", "#define TWICE(x) ((x) * 3)");
    assert_eq!(cands, v(&["macro_user.c", "via_other.c"]));
    assert_eq!(rebuild, changed);
    assert_eq!(changed, v(&["macro_user.c", "via_other.c"]));

    // A static inline: only its caller.
    let (cands, rebuild, changed) =
        analyse("return v > LIMIT ? LIMIT : v;", "return v > LIMIT ? 0 : v;");
    assert_eq!(cands, v(&["inline_user.c"]));
    assert_eq!(rebuild, changed);
    assert_eq!(changed, v(&["inline_user.c"]));

    // The same inline rewritten without changing what it computes: a candidate, and its
    // stream differs, but its object does not (the analysis may rebuild more, never less).
    let (_, rebuild, changed) = analyse(
        "return v > LIMIT ? LIMIT : v;",
        "return v >= LIMIT ? LIMIT : v;",
    );
    assert_eq!(rebuild, v(&["inline_user.c"]));
    assert!(changed.is_empty());

    // A constant tested by #if (and used by the inline): both users.
    let (cands, rebuild, changed) = analyse("#define LIMIT 10", "#define LIMIT 3");
    assert_eq!(cands, v(&["if_user.c", "inline_user.c"]));
    assert_eq!(rebuild, changed);
    assert_eq!(changed, v(&["if_user.c", "inline_user.c"]));

    // An inline nobody calls: no candidate, no object changes.
    let (cands, _, changed) = analyse("return v + 1;", "return v + 2;");
    assert!(cands.is_empty(), "{cands:?}");
    assert!(changed.is_empty(), "{changed:?}");

    // A struct nobody uses gains a member: its name is not used by any unit.
    let (cands, _, changed) = analyse(
        "struct pair { int a; int b; };",
        "struct pair { int a; int b; int c; };",
    );
    assert!(cands.is_empty(), "{cands:?}");
    assert!(changed.is_empty(), "{changed:?}");
}
