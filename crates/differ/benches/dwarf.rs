//! Benchmark: what the DWARF phases (type check and explanations) add to the differ on
//! real kernel objects built with -g. Each object is diffed against itself (the type
//! check reads and compares every type of both objects, whatever the patch) twice: as
//! built, and with its debug sections emptied; the difference is the cost of the check.
//!
//! Run: `cargo bench -p differ --bench dwarf`. Objects: `$DIFFER_DWARF_OBJS`
//! (colon-separated), else every original object kpatch-build cached under
//! `~/.kpatch/<release>/orig/` (or `$KPATCH_CACHE`). Target (issue 12): the check adds
//! at most 1 s to a warm one-file build, i.e. to one object's differ run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn find_objects(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_objects(&p, out);
        } else if p.extension().is_some_and(|x| x == "o") {
            out.push(p);
        }
    }
}

fn objects() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("DIFFER_DWARF_OBJS") {
        return list.split(':').map(PathBuf::from).collect();
    }
    let cache = std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kpatch")))
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&cache) {
        for e in rd.flatten() {
            find_objects(&e.path().join("orig"), &mut out);
        }
    }
    out.sort();
    out
}

fn sizes() -> differ::StructSizes {
    differ::StructSizes {
        para: Some(16),
        ex: Some(12),
        bug: Some(12),
        alt: Some(12),
        jump: Some(16),
        orc: Some(6),
        static_call: Some(8),
        printk_index: None,
        fixup: None,
    }
}

/// The object, optionally with its `.debug_info` emptied (no DWARF for the differ).
fn load(path: &Path, dwarf: bool) -> differ::Elf {
    let mut obj = kelf::read::read_file(path).expect("read object");
    if !dwarf {
        if let Some(id) = obj.find_section(".debug_info") {
            obj.sec_mut(id).set_data(Vec::new());
        }
    }
    differ::Elf::from_object(&path.display().to_string(), obj).expect("object")
}

fn time(opts: &differ::Options, path: &Path, dwarf: bool, rounds: usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let (mut a, mut b) = (load(path, dwarf), load(path, dwarf));
        let t = Instant::now();
        let _ = differ::run_objects(opts, &mut a, &mut b);
        best = best.min(t.elapsed());
    }
    best
}

fn main() {
    let objs = objects();
    if objs.is_empty() {
        println!(
            "dwarf bench: no objects (set DIFFER_DWARF_OBJS, or build a patch with kpatch-build \
             to fill ~/.kpatch/<release>/orig)"
        );
        return;
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for path in &objs {
        let symtab = Command::new("readelf")
            .args(["-s", "--wide"])
            .arg(path)
            .output()
            .expect("readelf");
        let symtab_path = tmp.path().join("parent.symtab");
        std::fs::write(&symtab_path, &symtab.stdout).unwrap();
        let opts = differ::Options {
            orig: path.display().to_string(),
            patched: path.display().to_string(),
            parent_name: "vmlinux".into(),
            parent_symtab: symtab_path.display().to_string(),
            symvers: "/dev/null".into(),
            patch_name: "bench".into(),
            output: tmp.path().join("out.o").display().to_string(),
            sizes: sizes(),
            log: differ::silent_log(),
            klp_placeholders: true,
            explain: differ::Explain::Line,
            changed_files: Vec::new(),
            carry: Default::default(),
        };
        let with = time(&opts, path, true, rounds);
        let without = time(&opts, path, false, rounds);
        rows.push((path.clone(), with, without));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "differ with and without the DWARF phases, {} kernel objects diffed against \
         themselves (best of {rounds})",
        rows.len()
    );
    println!("{:>9} {:>9} {:>9}  object", "with", "without", "added");
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.saturating_sub(r.2)));
    for (p, w, wo) in &rows {
        let name = p.display().to_string();
        let short = name.split("/orig/").last().unwrap_or(&name);
        println!(
            "{:>8.1}ms {:>8.1}ms {:>8.1}ms  {short}",
            ms(*w),
            ms(*wo),
            ms(w.saturating_sub(*wo))
        );
    }
    let max = rows
        .iter()
        .map(|r| r.1.saturating_sub(r.2))
        .max()
        .unwrap_or_default();
    println!(
        "largest addition: {:.1} ms (target: at most 1000 ms)",
        ms(max)
    );
}
