//! Benchmark: the differ over upstream's 55 x86_64 unit pairs, in process.
//! Prints the total (best of several rounds per pair) and the five slowest pairs.
//!
//! Run: `cargo bench -p differ` (reads ../shared/kpatch-unit-test-objs, or
//! $KPATCH_UNIT_OBJS). Reference: upstream's C tool takes 2.3-2.8 s in total on this
//! machine class and 1.1 s on unique-id-pr-1314 alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn objs_dir() -> PathBuf {
    std::env::var("KPATCH_UNIT_OBJS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kpatch-unit-test-objs")
        })
}

fn sizes() -> differ::StructSizes {
    differ::StructSizes {
        para: Some(16),
        ex: Some(12),
        bug: Some(12),
        alt: Some(13),
        jump: Some(24),
        orc: Some(6),
        static_call: Some(8),
        printk_index: Some(44),
        fixup: None,
    }
}

fn main() {
    let dir = objs_dir().join("x86_64");
    let tsv = std::fs::read_to_string(objs_dir().join("expected-functions.tsv"))
        .expect("expected-functions.tsv");
    let tmp = tempfile::tempdir().unwrap();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut results: Vec<(String, Duration)> = Vec::new();
    for line in tsv.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f[0] != "x86_64" {
            continue;
        }
        let test = f[1];
        let (orig, patched) = if let Some(t) = test.strip_suffix(".NOSTRIP") {
            (
                dir.join(format!("{t}.NOSTRIP.ORIG.o")),
                dir.join(format!("{t}.NOSTRIP.PATCHED.o")),
            )
        } else if f[2] == "success" {
            (
                dir.join(format!("{test}.ORIG.o")),
                dir.join(format!("{test}.PATCHED.o")),
            )
        } else {
            (
                dir.join(format!("{test}.ORIG.o")),
                dir.join(format!("{test}.PATCHED.FAIL.o")),
            )
        };
        let symtab = Command::new("readelf")
            .args(["-s", "--wide"])
            .arg(&orig)
            .output()
            .expect("readelf");
        let symtab_path = tmp.path().join(format!("{test}.symtab"));
        std::fs::write(&symtab_path, &symtab.stdout).unwrap();
        let mut opts = differ::Options {
            orig: orig.to_string_lossy().into(),
            patched: patched.to_string_lossy().into(),
            parent_name: "vmlinux".into(),
            parent_symtab: symtab_path.to_string_lossy().into(),
            symvers: "/dev/null".into(),
            patch_name: format!("test_{test}"),
            output: tmp
                .path()
                .join(format!("{test}.o"))
                .to_string_lossy()
                .into(),
            sizes: sizes(),
            log: differ::silent_log(),
            klp_placeholders: false,
            explain: differ::Explain::default(),
            changed_files: Vec::new(),
            carry: Default::default(),
        };
        opts.sizes.jump = if dir.join(format!("{test}.env")).exists() {
            Some(16)
        } else {
            Some(24)
        };
        let mut best = Duration::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            let _ = differ::run(&opts);
            best = best.min(t.elapsed());
        }
        results.push((test.to_string(), best));
    }
    let total: Duration = results.iter().map(|r| r.1).sum();
    results.sort_by_key(|r| std::cmp::Reverse(r.1));
    println!(
        "differ over {} x86_64 unit pairs (best of {rounds} per pair)",
        results.len()
    );
    println!("total: {:.1} ms", total.as_secs_f64() * 1e3);
    println!("slowest:");
    for (name, d) in results.iter().take(5) {
        println!("  {:>8.2} ms  {name}", d.as_secs_f64() * 1e3);
    }
}
