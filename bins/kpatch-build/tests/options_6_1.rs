//! kpatch-build's options against Debian's 6.1 kernel: `-R` (no atomic replace), `-j`,
//! `-v` (an explicit vmlinux), `-d` and `--skip-cleanup` (what they keep), with the
//! modules loaded in the real kernel under QEMU; and the refusals of patches to assembly,
//! to `lib/` and to a file this configuration does not build.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

/// kpatch-build's per-release cache (`$KPATCH_CACHE` or `~/.kpatch`).
fn release_cache(release: &str) -> PathBuf {
    std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".kpatch"))
        .join(release)
}

struct Run {
    code: i32,
    stderr: String,
}

fn kpatch_build(release: &str, name: &str, out: &Path, extra: &[&OsStr], patch: &Path) -> Run {
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(["-a", release, "-n", name, "-o"])
        .arg(out)
        .args(extra)
        .arg(patch)
        .output()
        .unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// The `replace=` value in a module's `.modinfo`.
fn modinfo_replace(ko: &Path) -> Option<String> {
    let data = std::fs::read(ko).unwrap();
    data.split(|b| *b == 0)
        .filter_map(|rec| rec.strip_prefix(b"replace="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .next()
}

/// Files under `dir`, recursively.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        count_files(&p)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn replace_jobs_vmlinux_debug_and_cleanup_options_6_1() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let release = kernel.release();
    let cache = release_cache(release);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    let out = tempfile::tempdir().unwrap();
    let id = std::process::id();
    let (nr, dbg, plain) = (
        format!("opt-nr-{id}"),
        format!("opt-dbg-{id}"),
        format!("opt-plain-{id}"),
    );
    let work = |name: &str| cache.join("work").join(name);

    // A build made without the default cache layout would not need -v: give the -dbg
    // vmlinux explicitly, with one make job, no atomic replace, and keep the work files.
    let vmlinux = cache
        .join("pkg/usr/lib/debug/boot")
        .join(format!("vmlinux-{release}"));
    let r = kpatch_build(
        release,
        &nr,
        out.path(),
        &[
            "-R".as_ref(),
            "-j".as_ref(),
            "1".as_ref(),
            "-v".as_ref(),
            vmlinux.as_os_str(),
            "--skip-cleanup".as_ref(),
        ],
        &example,
    );
    assert_eq!(r.code, 0, "-R -j 1 -v --skip-cleanup:\n{}", r.stderr);
    let nr_ko = out.path().join(format!("livepatch-{nr}.ko"));
    assert_eq!(modinfo_replace(&nr_ko).as_deref(), Some("N"));
    assert!(
        count_files(&work(&nr)) > 0,
        "--skip-cleanup removed {:?}",
        work(&nr)
    );

    let r = kpatch_build(release, &dbg, out.path(), &["-d".as_ref()], &example);
    assert_eq!(r.code, 0, "-d:\n{}", r.stderr);
    let dbg_ko = out.path().join(format!("livepatch-{dbg}.ko"));
    assert_eq!(modinfo_replace(&dbg_ko).as_deref(), Some("Y"));
    assert!(count_files(&work(&dbg)) > 0, "-d removed {:?}", work(&dbg));

    let r = kpatch_build(release, &plain, out.path(), &[], &example);
    assert_eq!(r.code, 0, "default build:\n{}", r.stderr);
    assert!(
        !work(&plain).exists(),
        "the work directory was kept without -d"
    );

    // -v with something that is not the kernel's vmlinux: refused, no module.
    let bogus = out.path().join("not-vmlinux");
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let bad = format!("opt-badv-{id}");
    let r = kpatch_build(
        release,
        &bad,
        out.path(),
        &["-v".as_ref(), bogus.as_os_str()],
        &example,
    );
    // (The message does not name the file yet: the bogus table reads as empty and the
    // differ reports the function missing from it.)
    assert_eq!(r.code, 1, "-v with a bogus file:\n{}", r.stderr);
    assert!(r.stderr.contains("ERROR: "), "{}", r.stderr);
    assert!(!out.path().join(format!("livepatch-{bad}.ko")).exists());
    for name in [&nr, &dbg, &bad] {
        let _ = std::fs::remove_dir_all(work(name));
    }

    // In the kernel: the -R module stacks on the sample; the default one replaces it.
    let sample = testbed::build_livepatch_sample(&kernel).unwrap();
    let mut img = Initramfs::with_busybox().unwrap();
    let k = img
        .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let s = img.add_module(&sample).unwrap();
    let nr_g = img.add_module(&nr_ko).unwrap();
    let dbg_g = img.add_module(&dbg_ko).unwrap();
    let (nr_m, dbg_m) = (nr.replace('-', "_"), dbg.replace('-', "_"));
    let meminfo = "grep -q VMALLOCChunk /proc/meminfo";
    let scenario = Scenario::new("kpatch-build-options")
        .step(
            "non-replace-stacks",
            &format!(
                "{k} load {s} && {k} load {nr_g} > /tmp/out && cat /tmp/out && {meminfo} \
                 && expect_eq \"$(ls /sys/kernel/livepatch | sort | tr '\\n' ' ')\" \
                    \"$(printf '%s\\n' livepatch_sample livepatch_{nr_m} | sort | tr '\\n' ' ')\" patches \
                 && expect_not_contains \"$(cat /tmp/out)\" 'replaces all loaded patches' \
                 && {k} unload livepatch_{nr_m} && ! {meminfo}"
            ),
        )
        .step(
            "replace-supersedes",
            &format!(
                "{k} load {dbg_g} > /tmp/out && cat /tmp/out && {meminfo} \
                 && expect_contains \"$(cat /tmp/out)\" 'replaces all loaded patches (livepatch_sample)' \
                 && expect_eq \"$(ls /sys/kernel/livepatch)\" livepatch_{dbg_m} patches \
                 && {k} unload --all && ! {meminfo}"
            ),
        );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    // (This also fails on kernel errors in dmesg.)
    report.ensure_passed().unwrap();
}

/// A patch that adds a comment after the first line of `file` in the prepared tree.
fn comment_patch(tree: &Path, file: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(tree.join(file)).unwrap();
    let lines: Vec<&str> = text.lines().take(3).collect();
    assert_eq!(lines.len(), 3, "{file} is too short");
    let patch = format!(
        "--- a/{file}\n+++ b/{file}\n@@ -1,3 +1,4 @@\n {}\n+/* kpatch-rs test */\n {}\n {}\n",
        lines[0], lines[1], lines[2]
    );
    let path = dir.join(format!("{}.patch", file.replace('/', "_")));
    std::fs::write(&path, patch).unwrap();
    path
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn assembly_and_unbuilt_files_are_refused_lib_is_diffed_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let release = kernel.release();
    let out = tempfile::tempdir().unwrap();
    // The tree is prepared by kpatch-build's first build for this release.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    let id = std::process::id();
    let r = kpatch_build(
        release,
        &format!("opt-prep-{id}"),
        out.path(),
        &[],
        &example,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tree = release_cache(release).join("src/linux-source-6.1");
    for (file, message, hint) in [
        (
            "arch/x86/entry/entry_64.S",
            "assembly files cannot be live-patched",
            "patch the C callers",
        ),
        (
            // CONFIG_X86_INTEL_CE is not set in Debian's configuration.
            "arch/x86/platform/ce4100/ce4100.c",
            "not built into",
            "CONFIG option",
        ),
    ] {
        let patch = comment_patch(&tree, file, out.path());
        let name = format!("refused-{id}");
        let r = kpatch_build(release, &name, out.path(), &[], &patch);
        assert_eq!(r.code, 1, "{file}:\n{}", r.stderr);
        assert!(
            r.stderr.contains(file) && r.stderr.contains(message) && r.stderr.contains(hint),
            "{file}: {}",
            r.stderr
        );
        assert!(!out.path().join(format!("livepatch-{name}.ko")).exists());
        let src = std::fs::read_to_string(tree.join(file)).unwrap();
        assert!(!src.contains("kpatch-rs test"), "{file} left patched");
    }
    // lib/ units are vmlinux units (lib.a is linked whole with CONFIG_MODULES): a comment
    // there is built before and after and diffed, and found to change nothing.
    let file = "lib/string.c";
    let patch = comment_patch(&tree, file, out.path());
    let name = format!("lib-{id}");
    let r = kpatch_build(release, &name, out.path(), &[], &patch);
    assert_eq!(r.code, 3, "{file}:\n{}", r.stderr);
    assert!(
        r.stderr.contains("lib/string.o: no functional change"),
        "{file}: {}",
        r.stderr
    );
    assert!(!out.path().join(format!("livepatch-{name}.ko")).exists());
    let src = std::fs::read_to_string(tree.join(file)).unwrap();
    assert!(!src.contains("kpatch-rs test"), "{file} left patched");
}
