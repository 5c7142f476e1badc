// SPDX-License-Identifier: GPL-2.0-only
//! Wall time of each kpatch-build phase for `examples/meminfo.patch`, cold and warm.
//!
//! `cargo bench -p kpatch-build` (optionally `-- 6.12` for the other series).
//!
//! - cold: the kernel's packages are present (the main cache's pool, hard-linked into a
//!   scratch cache, whose apt lists and build roots are the main cache's) but nothing is
//!   prepared: nothing unpacked, no source tree, no `modules_prepare`, no debug vmlinux
//!   extracted, no original objects, no struct sizes;
//! - warm: a second build in that same cache;
//! - module: then the first patch to a module in that cache (`binfmt_misc`, corpus patch
//!   05): its parent symbol table comes from the -dbg index built during the cold
//!   preparation, so nothing is extracted from the package.
//!
//! It also prints the one-time -dbg index pass (part of the cold preparation) and the
//! disk space the index takes, and the time the build root of the kernel's distribution
//! took to create (once, with mmdebstrap) from its stamp.
//!
//! The main cache (`$KPATCH_CACHE`, else `~/.kpatch`) is filled first by an ordinary
//! build if needed (downloads are not part of either number). The scratch cache lives
//! next to it (hard links need the same file system) and is removed afterwards.
//! Targets on the 2-core reference machine: warm ≤ 10 s, cold ≤ 120 s (build root
//! existing), first module patch ≤ 15 s, index pass ≤ 60 s.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const WARM_TARGET: f64 = 10.0;
const COLD_TARGET: f64 = 120.0;
const MODULE_TARGET: f64 = 15.0;
const INDEX_TARGET: f64 = 60.0;

struct Run {
    wall: f64,
    phases: Vec<(String, f64)>,
    release: String,
}

fn kpatch_build(cache: &Path, series: &str, name: &str, out: &Path) -> Run {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    kpatch_build_patch(cache, series, name, out, &example)
}

fn kpatch_build_patch(cache: &Path, series: &str, name: &str, out: &Path, example: &Path) -> Run {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(["-a", series, "-n", name, "--json", "--cache-dir"])
        .arg(cache)
        .arg("-o")
        .arg(out)
        .arg(example)
        .output()
        .expect("run kpatch-build");
    let wall = t.elapsed().as_secs_f64();
    if !o.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
        panic!("kpatch-build failed ({})", o.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json output");
    let phases = v["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or("?").to_string(),
                p[1].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    Run {
        wall,
        phases,
        release: v["release"].as_str().unwrap_or("?").to_string(),
    }
}

/// Bytes under a directory (files' allocated sizes).
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// Hard links of every file of `from` (the pool and its verification stamps) into `to`.
fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            link_tree(&e.path(), &dest);
        } else if std::fs::hard_link(e.path(), &dest).is_err() {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// What the build roots' stamps say about their creation.
fn build_root_times(cache: &Path) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(cache.join("roots"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let stamp = e.path().join(".kpatch-buildroot.json");
        let Ok(text) = std::fs::read_to_string(&stamp) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        out.push((
            v["codename"].as_str().unwrap_or("?").to_string(),
            v["seconds"].as_f64().unwrap_or(0.0),
        ));
    }
    out
}

fn main() {
    let series = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "6.1".into());
    let cache = std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".kpatch")
        });
    let out = tempfile::tempdir().unwrap();

    println!("kpatch-build phases, examples/meminfo.patch, Debian {series}");
    // Fill the main cache (packages downloaded); not measured.
    let prime = kpatch_build(&cache, &series, "bench-prime", out.path());
    let release = prime.release.clone();
    let scratch = cache.join(".bench-cold");
    let _ = std::fs::remove_dir_all(&scratch);
    link_tree(&cache.join("debs"), &scratch.join("debs"));
    for shared in ["apt", "roots"] {
        std::os::unix::fs::symlink(cache.join(shared), scratch.join(shared)).unwrap();
    }
    let cold = kpatch_build(&scratch, &release, "bench-cold", out.path());
    let warm = kpatch_build(&scratch, &release, "bench-warm", out.path());
    let patches = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/patches");
    let module_patch = [series.as_str(), "6.1"]
        .iter()
        .map(|s| patches.join(s).join("05-module-function.patch"))
        .find(|p| p.exists())
        .expect("a module patch in the corpus");
    let module = kpatch_build_patch(
        &scratch,
        &release,
        "bench-module",
        out.path(),
        &module_patch,
    );
    let index_dir = scratch.join(&release).join("index");
    let index: serde_json::Value = std::fs::read(index_dir.join("units.json"))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default();
    let index_secs = index["seconds"].as_f64().unwrap_or(f64::NAN);
    let index_bytes = du(&index_dir);
    let _ = std::fs::remove_dir_all(&scratch);

    println!("kernel {release}");
    for (codename, secs) in build_root_times(&cache) {
        println!("build root {codename}: created once in {secs:.1} s (mmdebstrap)");
    }
    println!();
    println!(
        "{:<32} {:>9} {:>9} {:>9}",
        "phase", "cold s", "warm s", "module s"
    );
    let phase = |r: &Run, name: &str| {
        r.phases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .unwrap_or(0.0)
    };
    for (name, c) in &cold.phases {
        println!(
            "{name:<32} {c:>9.1} {:>9.1} {:>9.1}",
            phase(&warm, name),
            phase(&module, name)
        );
    }
    let sum = |r: &Run| r.phases.iter().map(|(_, s)| s).sum::<f64>();
    println!(
        "{:<32} {:>9.1} {:>9.1} {:>9.1}",
        "sum of phases",
        sum(&cold),
        sum(&warm),
        sum(&module)
    );
    println!(
        "{:<32} {:>9.1} {:>9.1} {:>9.1}",
        "wall (process)", cold.wall, warm.wall, module.wall
    );
    println!(
        "\n-dbg index pass (in the cold preparation): {index_secs:.1} s, {} binaries, {:.1} MB on disk",
        index["binaries"].as_array().map(|a| a.len()).unwrap_or(0),
        index_bytes as f64 / 1e6
    );
    let verdict = |v: f64, t: f64| if v <= t { "ok" } else { "OVER" };
    println!(
        "\ntargets: cold {:.1} s <= {COLD_TARGET} s {}; warm {:.1} s <= {WARM_TARGET} s {}; \
         first module patch {:.1} s <= {MODULE_TARGET} s {}; index {:.1} s <= {INDEX_TARGET} s {}",
        cold.wall,
        verdict(cold.wall, COLD_TARGET),
        warm.wall,
        verdict(warm.wall, WARM_TARGET),
        module.wall,
        verdict(module.wall, MODULE_TARGET),
        index_secs,
        verdict(index_secs, INDEX_TARGET)
    );
    // The verify phase (issue 13): at most 10% of a warm build.
    let verify = warm
        .phases
        .iter()
        .filter(|(n, _)| n.starts_with("verify"))
        .map(|(_, s)| s)
        .sum::<f64>();
    let share = 100.0 * verify / warm.wall.max(f64::EPSILON);
    println!(
        "verify phase: {verify:.2} s of the warm build, {share:.1}% <= 10% {}",
        verdict(share, 10.0)
    );
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the end: {}", l.trim());
    }
}
