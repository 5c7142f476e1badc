//! Inputs the fuzzers (fuzz/) once crashed on, replayed on every `cargo test`.
//!
//! `fuzz/regressions/read/*`: arbitrary bytes for `kelf::read::parse`; what parses must
//! write and parse again. `fuzz/regressions/differ/*`: the `differ` target's format (a
//! selector byte, then an object that replaces ORIG or PATCHED of one upstream unit
//! pair); run through the real binary, which must exit cleanly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::shared_objs;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = repo().join("fuzz/regressions").join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no inputs in {}", dir.display());
    v
}

#[test]
fn read_regressions() {
    for path in inputs("read") {
        let data = std::fs::read(&path).unwrap();
        let Ok(obj) = kelf::read::parse(&data) else {
            continue;
        };
        let Ok(bytes) = kelf::write::to_bytes(&obj) else {
            continue;
        };
        let again = kelf::read::parse(&bytes)
            .unwrap_or_else(|e| panic!("{}: written object does not parse: {e}", path.display()));
        // As the `read` target checks: section indices may move (a `.symtab_shndx` is
        // dropped or regenerated), symbols keep their binding, type, value and size.
        let key = |o: &kelf::Object| -> Vec<(u8, u8, u64, u64)> {
            o.symbols
                .iter()
                .map(|s| (s.bind, s.kind, s.value, s.size))
                .collect()
        };
        assert_eq!(key(&again), key(&obj), "{}", path.display());
    }
}

/// The pair list of the `differ` fuzz target, read from its source.
fn differ_pairs() -> Vec<String> {
    let src = std::fs::read_to_string(repo().join("fuzz/fuzz_targets/differ.rs")).unwrap();
    let start = src.find("pub const PAIRS").expect("PAIRS");
    let end = start + src[start..].find("];").unwrap();
    src[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn differ_regressions() {
    let pairs = differ_pairs();
    let objs = shared_objs().join("x86_64");
    for path in inputs("differ") {
        let data = std::fs::read(&path).unwrap();
        let Some((&sel, bytes)) = data.split_first() else {
            continue;
        };
        let name = &pairs[usize::from(sel & 0x7f) % pairs.len()];
        let orig = std::fs::read(objs.join(format!("{name}.ORIG.o"))).unwrap();
        let patched = std::fs::read(objs.join(format!("{name}.PATCHED.o"))).unwrap();
        let (o, p) = if sel & 0x80 != 0 {
            (bytes, &patched[..])
        } else {
            (&orig[..], bytes)
        };
        let dir = tempfile::tempdir().unwrap();
        let outdir = dir.path().join("out");
        std::fs::create_dir(&outdir).unwrap();
        let (fo, fp, parent) = (
            dir.path().join("orig.o"),
            dir.path().join("patched.o"),
            dir.path().join("parent.o"),
        );
        std::fs::write(&fo, o).unwrap();
        std::fs::write(&fp, p).unwrap();
        std::fs::write(&parent, &orig).unwrap();
        let output = outdir.join("output.o");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_create-diff-object"));
        cmd.env_clear()
            .envs(common::arch_env("x86_64").iter().copied());
        if let Ok(env) = std::fs::read_to_string(objs.join(format!("{name}.env"))) {
            for kv in env.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    cmd.env(k, v);
                }
            }
        }
        let out = cmd
            .args([&fo, &fp])
            .arg("vmlinux")
            .arg(&parent)
            .arg("/dev/null")
            .arg("test_fuzz")
            .arg(&output)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let what = format!("{} ({name}): {stderr}", path.display());
        assert!(!stderr.contains("panicked"), "{what}");
        assert!(!stderr.contains("internal error"), "{what}");
        let code = out.status.code();
        assert!(matches!(code, Some(0..=3)), "exit {code:?}: {what}");
        let left = std::fs::read_dir(&outdir).unwrap().count();
        if code == Some(0) {
            let written = std::fs::read(&output).unwrap();
            kelf::read::parse(&written).unwrap_or_else(|e| panic!("output: {e}: {what}"));
            assert_eq!(left, 1, "{what}");
        } else {
            assert!(
                stderr.lines().any(|l| l.starts_with("ERROR:")) || code == Some(3),
                "{what}"
            );
            assert_eq!(left, 0, "{what}");
        }
    }
}
