//! kpatch-build's robustness on Debian 12's real 6.1 tree, continued (see robust_6_1.rs):
//! odd patches and arguments refused precisely before any work, and the soak of builds
//! killed at random moments (`KPATCH_SOAK_BUILDS`, default 6).

mod common;
mod robust_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

use robust_support::*;

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn odd_patches_and_arguments_are_refused_precisely_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    // The limit kpatch-build checks up front is the one in the target's headers.
    assert_eq!(
        builder::pipeline::resolve::module_name_len(&s.tree),
        Some(builder::pipeline::resolve::MODULE_NAME_LEN)
    );

    // Refused before any work (no phase ran): not a patch, a name too long, -o unusable.
    let garbage = o.join("garbage.patch");
    std::fs::write(&garbage, std::fs::read("/bin/true").unwrap()).unwrap();
    let b = s.build(&garbage, "garbage", o, &[]);
    assert!(
        b.code == 1 && b.stderr.contains("not a patch") && b.stderr.contains("binary"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("resolve target kernel"), "{}", b.stderr);
    let json = b.json.as_ref().expect("--json prints the error");
    assert_eq!(json["exit_code"], 1);
    assert!(json["error"].as_str().unwrap().contains("not a patch"));
    let b = s.build(&patch("cmdline"), &"n".repeat(46), o, &[]);
    assert!(
        b.code == 1 && b.stderr.contains("at most 45"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("resolve target kernel"), "{}", b.stderr);
    let file = o.join("a-file");
    std::fs::write(&file, "").unwrap();
    for bad in [file.as_path(), Path::new("/proc/kpatch-no-such-dir")] {
        let b = s.build(&patch("cmdline"), "cmdline", bad, &[]);
        assert!(
            b.code == 1 && b.stderr.contains("output directory"),
            "{}",
            b.stderr
        );
        assert!(!b.stderr.contains("resolve target kernel"), "{}", b.stderr);
    }

    // Refused when checked against the tree, naming the file, the hunk, the reason.
    let b = s.build(&patch("missing-file"), "missing", o, &[]);
    assert!(
        b.code == 1
            && b.stderr
                .contains("fs/proc/kpatch_missing.c: the patch changes this file"),
        "{}",
        b.stderr
    );
    let b = s.build(&patch("new-file-unbuilt"), "new", o, &[]);
    assert!(
        b.code == 1
            && b.stderr
                .contains("fs/proc/kpatch_new.c: the patch adds this file, but no Makefile")
            && b.stderr.contains("add kpatch_new.o to fs/proc/Makefile"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("not built in this"), "{}", b.stderr);
    let b = s.build(&patch("makefile-flags"), "flags", o, &[]);
    assert!(
        b.code == 1
            && b.stderr
                .contains("fs/proc/Makefile: the patch adds the line 'CFLAGS_cmdline.o += -O1'"),
        "{}",
        b.stderr
    );
    let b = s.build(&patch("meminfo-fuzz"), "fuzz", o, &[]);
    assert!(
        b.code == 1
            && b.stderr.contains("fs/proc/meminfo.c: hunk #1")
            && b.stderr.contains("fuzz 1"),
        "{}",
        b.stderr
    );
    s.assert_pristine("after the refused patches");

    // A compile error: shown, the compiler's whole output in the build's own log.
    let b = s.build(&patch("compile-error"), "broken", o, &[]);
    assert!(
        b.code == 1 && b.stderr.contains("building patched objects failed"),
        "{}",
        b.stderr
    );
    let log = PathBuf::from(b.json.as_ref().unwrap()["log"].as_str().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("meminfo.c:131") && text.contains("error: expected"),
        "{}",
        log.display()
    );
    s.assert_pristine("after a compile error");
    // A refused patch's work directory is removed, unless --skip-cleanup.
    let init = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/patches/6.1/08-init-function.patch");
    for (extra, kept) in [(&[][..], false), (&["--skip-cleanup"][..], true)] {
        let b = s.build(&init, "init", o, extra);
        assert_eq!(b.code, 2, "{}", b.stderr);
        assert_eq!(s.work("init").join("patched").exists(), kept, "{extra:?}");
    }
    std::fs::remove_dir_all(s.work("init")).unwrap();

    // --allow-fuzz applies it and says so in the module, whose name has the longest
    // length the kernel takes (livepatch_ + 45 = 55 characters).
    let long = "f".repeat(45);
    let b = s.build(&patch("meminfo-fuzz"), &long, o, &["--allow-fuzz"]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert!(
        b.stderr
            .contains("warning: fs/proc/meminfo.c: hunk #1 applied with fuzz 1"),
        "{}",
        b.stderr
    );
    let info = modinfo(b.module.as_ref().unwrap());
    assert!(info.contains("kpatch_fuzz=fs/proc/meminfo.c:1:1"), "{info}");
    assert!(info.contains(&format!("name=livepatch_{long}")), "{info}");
    s.assert_pristine("after the fuzzy build");
}

/// A small deterministic generator (the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn soak_builds_some_killed_6_1() {
    let builds: u64 = std::env::var("KPATCH_SOAK_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
        .max(4);
    let kills = (builds / 5).max(2);
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let patches = [("two", patch("two-files")), ("cmdline", patch("cmdline"))];
    // A warm build of each patch once, untimed (the first may compile originals), then
    // timed: signals land between 100 ms and 90% of the slower warm build.
    let mut warm_ms = 0u64;
    let refs: Vec<Built> = patches
        .iter()
        .map(|(n, p)| {
            let b = s.build(p, &format!("{n}-soakref"), out.path(), &[]);
            assert_eq!(b.code, 0, "{}", b.stderr);
            let t = Instant::now();
            let again = s.build(p, &format!("{n}-soakref"), out.path(), &[]);
            assert_eq!(again.code, 0, "{}", again.stderr);
            warm_ms = warm_ms.max(t.elapsed().as_millis() as u64);
            again
        })
        .collect();
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    eprintln!("soak seed {seed} (SOAK_SEED={seed} repeats it)");
    let mut rng = Lcg(seed);
    let mut kill_at: Vec<u64> = Vec::new();
    while (kill_at.len() as u64) < kills {
        let i = rng.next(builds);
        if !kill_at.contains(&i) {
            kill_at.push(i);
        }
    }
    let (mut completed, mut killed, mut finished_first) = (Vec::new(), 0, 0);
    let t0 = Instant::now();
    for i in 0..builds {
        let k = (i % 2) as usize;
        let (n, p) = &patches[k];
        let name = format!("{n}-soak");
        if kill_at.contains(&i) {
            let delay = Duration::from_millis(100 + rng.next((warm_ms * 9 / 10).max(200)));
            let r = s.spawn(p, &name, out.path(), &[]);
            std::thread::sleep(delay);
            let sig = if rng.next(2) == 0 { "KILL" } else { "INT" };
            r.signal(sig);
            let (code, _) = r.finish();
            eprintln!("soak {i}: {n} SIG{sig} after {delay:?}: exit {code}");
            if code == 0 {
                finished_first += 1;
            } else {
                killed += 1;
            }
            let _ = std::fs::remove_file(out.path().join(format!("livepatch-{name}.ko")));
            continue;
        }
        let b = s.build(p, &name, out.path(), &[]);
        assert_eq!(b.code, 0, "soak {i}: {n}\n{}", b.stderr);
        assert_eq!(b.functions(), refs[k].functions(), "soak {i}");
        let ko = b.module.unwrap();
        // The first completed module of each patch is the one the others must equal.
        let renamed = out.path().join(format!("soak-{i}.ko"));
        std::fs::rename(&ko, &renamed).unwrap();
        if completed.iter().all(|(kk, _): &(usize, PathBuf)| *kk != k) {
            completed.push((k, renamed.clone()));
        } else {
            same_module(
                &completed.iter().find(|(kk, _)| *kk == k).unwrap().1,
                &renamed,
                &format!("soak {i}"),
            );
            std::fs::remove_file(&renamed).unwrap();
        }
    }
    eprintln!(
        "soak: {builds} builds in {:.0} s, {killed} killed, {finished_first} finished before their signal, {} distinct modules checked",
        t0.elapsed().as_secs_f64(),
        completed.len()
    );
    let final_check = s.build(&patches[0].1, "two-soak", out.path(), &[]);
    assert_eq!(final_check.code, 0, "{}", final_check.stderr);
    s.assert_pristine("after the soak");

    // Three modules in the guest: the two references and the last soak build.
    let mut img = Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let mut scenario = Scenario::new("soak-6.1").keep_going();
    let checks = [
        "grep -q VMALLOCChunk /proc/meminfo && grep -q ' kpatched$' /proc/cmdline",
        "grep -q ' kpatched$' /proc/cmdline",
    ];
    let modules = [
        (refs[0].module.clone().unwrap(), checks[0]),
        (refs[1].module.clone().unwrap(), checks[1]),
        (final_check.module.clone().unwrap(), checks[0]),
    ];
    for (i, (ko, check)) in modules.iter().enumerate() {
        let g = img.add_module(ko).unwrap();
        let m = testbed::module_name(ko);
        scenario = scenario
            .step(
                &format!("{i}:before"),
                &format!("if {check}; then fail 'check passes before loading'; fi"),
            )
            .step(&format!("{i}:load"), &format!("{kpatch} load {g}"))
            .step(
                &format!("{i}:patched"),
                &format!("{check} || fail 'check fails while patched'"),
            )
            .step(&format!("{i}:unload"), &format!("{kpatch} unload {m}"));
    }
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
}
