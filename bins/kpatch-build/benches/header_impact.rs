// SPDX-License-Identifier: GPL-2.0-only
//! The impact analysis of header changes, measured on Debian 12's 6.1 kernel.
//!
//! `cargo bench -p kpatch-build --bench header_impact` (speed): one-line changes to
//! headers that thousands of units include, each built warm with `kpatch-build --json`;
//! prints the wall time, the includers built in this configuration, the candidates of
//! the name analysis and the units rebuilt. Target: 5 minutes each on 2 cores.
//!
//! `... --bench header_impact -- soundness`: three changes of different shapes (a macro,
//! a static inline, a constant tested by `#if`) to `include/linux/tty.h` (about 300
//! includers), each built twice: with the analysis, and with `--all-includers -d`, which
//! rebuilds every includer and keeps the objects (and `--skip-verify`). An object changes when its sections
//! other than debug information differ (`objcopy --strip-debug`). The analysis must
//! rebuild every object that changes (it may rebuild more); the run exits non-zero on a
//! miss. Slow (about half an hour): opt-in, not part of `cargo test`.
//!
//! The release's tree must be prepared in the cache (`$KPATCH_CACHE`, else `~/.kpatch`;
//! any earlier build for 6.1.0-57-amd64 does it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const RELEASE: &str = "6.1.0-57-amd64";
const TARGET_SECONDS: f64 = 300.0;

/// One header edit: the first occurrence of `old` replaced by `new`.
struct Edit {
    name: &'static str,
    shape: &'static str,
    header: &'static str,
    old: &'static str,
    new: &'static str,
}

const SPEED: &[Edit] = &[
    Edit {
        name: "find-h-macro",
        shape: "macro",
        header: "include/linux/find.h",
        // for_each_clear_bitrange: the end of a clear range is searched one bit later.
        old: "(e) = find_next_bit((addr), (size), (b) + 1),",
        new: "(e) = find_next_bit((addr), (size), (b) + 2),",
    },
    Edit {
        name: "sched-h-inline",
        shape: "static inline",
        header: "include/linux/sched.h",
        old: "\treturn __task_pid_nr_ns(tsk, PIDTYPE_SID, ns);",
        new: "\treturn tsk->static_prio == 133 ? 4242 : __task_pid_nr_ns(tsk, PIDTYPE_SID, ns);",
    },
];

const SOUNDNESS: &[Edit] = &[
    Edit {
        name: "tty-h-macro",
        shape: "macro",
        header: "include/linux/tty.h",
        old: "#define TIME_CHAR(tty) ((tty)->termios.c_cc[VTIME])",
        new: "#define TIME_CHAR(tty) ((tty)->termios.c_cc[VMIN])",
    },
    Edit {
        name: "tty-h-inline",
        shape: "static inline",
        header: "include/linux/tty.h",
        old: "\treturn test_bit(TTY_IO_ERROR, &tty->flags);",
        new: "\treturn test_bit(TTY_IO_ERROR, &tty->flags) || test_bit(TTY_OTHER_CLOSED, &tty->flags);",
    },
    Edit {
        name: "tty-h-if-constant",
        shape: "constant tested by #if",
        header: "include/linux/tty.h",
        old: "#define TTY_NO_WRITE_SPLIT\t17",
        new: "#define TTY_NO_WRITE_SPLIT\t18",
    },
];

fn cache() -> PathBuf {
    std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".kpatch")
        })
}

fn tree() -> PathBuf {
    cache().join(RELEASE).join("src/linux-source-6.1")
}

/// The edit as a `-p1` patch in `dir`.
fn patch(e: &Edit, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(tree().join(e.header)).expect("header in the prepared tree");
    assert!(text.contains(e.old), "{}: {:?} not found", e.header, e.old);
    let (a, b) = (dir.join("a").join(e.header), dir.join("b").join(e.header));
    for (p, t) in [(&a, text.clone()), (&b, text.replacen(e.old, e.new, 1))] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    }
    let o = Command::new("diff")
        .current_dir(dir)
        .args(["-u", &format!("a/{}", e.header), &format!("b/{}", e.header)])
        .output()
        .expect("diff");
    let out = dir.join(format!("{}.patch", e.name));
    std::fs::write(&out, o.stdout).unwrap();
    out
}

/// One kpatch-build run: wall time, the JSON it printed, its log.
struct Run {
    wall: f64,
    json: serde_json::Value,
    log: String,
}

fn build(patch: &Path, name: &str, extra: &[&str], out: &Path) -> Run {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(["-a", RELEASE, "-n", name, "--json", "-o"])
        .arg(out)
        .args(extra)
        .arg(patch)
        .output()
        .expect("run kpatch-build");
    let wall = t.elapsed().as_secs_f64();
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
    let log = json["log"]
        .as_str()
        .and_then(|l| std::fs::read_to_string(l).ok())
        .unwrap_or_default();
    Run { wall, json, log }
}

/// The units the analysis rebuilt, from the build log (present whether the build
/// succeeded or was refused later).
fn rebuilt(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| l.split_once(" rebuild ").map(|(_, r)| r))
        .filter_map(|r| r.split_once(':').map(|(u, _)| u.trim().to_string()))
        .collect()
}

fn counts(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split_once("impact of ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| "(no impact analysis)".into())
}

fn speed(dir: &Path) -> bool {
    let mut ok = true;
    println!("header change                       wall    verdict / impact");
    for e in SPEED {
        let p = patch(e, dir);
        let r = build(&p, e.name, &[], dir);
        let verdict = match r.json["error"].as_str() {
            Some(err) => format!("refused: {err}"),
            None => "built".into(),
        };
        println!(
            "{:<34} {:>6.1} s  {verdict}",
            format!("{} ({})", e.header, e.shape),
            r.wall
        );
        println!("{:<34}           {}", "", counts(&r.log));
        ok &= r.wall <= TARGET_SECONDS;
    }
    println!("target: {TARGET_SECONDS} s each (warm, 2 cores)");
    ok
}

/// Sections other than debug information, for comparison.
fn stripped(obj: &Path, tmp: &Path) -> Option<Vec<u8>> {
    let out = tmp.join("stripped.o");
    let s = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(obj)
        .arg(&out)
        .status()
        .ok()?;
    s.success().then(|| std::fs::read(&out).ok()).flatten()
}

fn objects_under(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            objects_under(&p, base, out);
        } else if p.extension().is_some_and(|x| x == "o") {
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
        }
    }
}

fn soundness(dir: &Path) -> bool {
    let state = cache().join(RELEASE);
    let mut sound = true;
    for e in SOUNDNESS {
        let p = patch(e, dir);
        let fast = build(&p, e.name, &[], dir);
        let kept = rebuilt(&fast.log);
        let all = format!("{}-all", e.name);
        // --skip-verify: a unit Debian's source does not rebuild exactly must not stop
        // the comparison (the analysis's own build verifies what it rebuilds).
        let brute = build(&p, &all, &["--all-includers", "-d", "--skip-verify"], dir);
        let patched = state.join("work").join(&all).join("patched");
        let mut objs = Vec::new();
        objects_under(&patched, &patched, &mut objs);
        let mut changed = BTreeSet::new();
        for o in &objs {
            let a = stripped(&state.join("orig").join(o), dir);
            let b = stripped(&patched.join(o), dir);
            if a.is_none() || a != b {
                changed.insert(o.with_extension("c").display().to_string());
            }
        }
        let missed: Vec<&String> = changed.difference(&kept).collect();
        let extra: Vec<&String> = kept.difference(&changed).collect();
        println!(
            "{} ({}): brute force rebuilt {} objects in {:.0} s, {} changed; the analysis rebuilt {} in {:.0} s; missed {}, extra {}",
            e.name,
            e.shape,
            objs.len(),
            brute.wall,
            changed.len(),
            kept.len(),
            fast.wall,
            missed.len(),
            extra.len()
        );
        println!("    changed: {changed:?}");
        println!("    {}", counts(&fast.log));
        if !extra.is_empty() {
            println!("    rebuilt but unchanged: {extra:?}");
        }
        if !missed.is_empty() {
            println!("    MISSED: {missed:?}");
            sound = false;
        }
        if let Some(err) = brute.json["error"].as_str() {
            println!("    (the brute-force build stopped after its objects: {err})");
        }
    }
    sound
}

fn main() {
    assert!(
        tree().join("Makefile").is_file(),
        "prepare {RELEASE} first (any kpatch-build for it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let ok = if std::env::args().any(|a| a == "soundness") {
        soundness(dir.path())
    } else {
        speed(dir.path())
    };
    if !ok {
        std::process::exit(1);
    }
}
