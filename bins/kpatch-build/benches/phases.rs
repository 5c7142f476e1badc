// SPDX-License-Identifier: GPL-2.0-only
//! Wall time of each kpatch-build phase for `examples/meminfo.patch`, cold and warm.
//!
//! `cargo bench -p kpatch-build` (optionally `-- 6.12` for the other series).
//!
//! - cold: the kernel's packages are present (the main cache's pool, hard-linked into a
//!   scratch cache, whose apt lists and build roots are the main cache's) but nothing is
//!   prepared: nothing unpacked, no source tree, no `modules_prepare`, no debug vmlinux
//!   extracted, no original objects, no struct sizes;
//! - warm: a second build in that same cache.
//!
//! The time the build root of the kernel's distribution took to create (once, with
//! mmdebstrap) is printed from its stamp.
//!
//! The main cache (`$KPATCH_CACHE`, else `~/.kpatch`) is filled first by an ordinary
//! build if needed (downloads are not part of either number). The scratch cache lives
//! next to it (hard links need the same file system) and is removed afterwards.
//! Targets on the 2-core reference machine: warm ≤ 10 s, cold ≤ 120 s (Debian 13; the
//! same targets are printed for every series).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const WARM_TARGET: f64 = 10.0;
const COLD_TARGET: f64 = 120.0;

struct Run {
    wall: f64,
    phases: Vec<(String, f64)>,
    release: String,
}

fn kpatch_build(cache: &Path, series: &str, name: &str, out: &Path) -> Run {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(["-a", series, "-n", name, "--json", "--cache-dir"])
        .arg(cache)
        .arg("-o")
        .arg(out)
        .arg(&example)
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
    let _ = std::fs::remove_dir_all(&scratch);

    println!("kernel {release}");
    for (codename, secs) in build_root_times(&cache) {
        println!("build root {codename}: created once in {secs:.1} s (mmdebstrap)");
    }
    println!();
    println!("{:<32} {:>9} {:>9}", "phase", "cold s", "warm s");
    for (name, c) in &cold.phases {
        let w = warm
            .phases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .unwrap_or(0.0);
        println!("{name:<32} {c:>9.1} {w:>9.1}");
    }
    let sum = |r: &Run| r.phases.iter().map(|(_, s)| s).sum::<f64>();
    println!(
        "{:<32} {:>9.1} {:>9.1}",
        "sum of phases",
        sum(&cold),
        sum(&warm)
    );
    println!(
        "{:<32} {:>9.1} {:>9.1}",
        "wall (process)", cold.wall, warm.wall
    );
    let verdict = |v: f64, t: f64| if v <= t { "ok" } else { "OVER" };
    println!(
        "\ntargets: cold {:.1} s <= {COLD_TARGET} s {}; warm {:.1} s <= {WARM_TARGET} s {}",
        cold.wall,
        verdict(cold.wall, COLD_TARGET),
        warm.wall,
        verdict(warm.wall, WARM_TARGET)
    );
}
