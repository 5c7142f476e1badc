//! kpatch-build against Debian 12's 6.1 kernel: every patch of tests/patches/6.1 gets its
//! expected verdict, and every loadable module is checked in the real kernel under QEMU as
//! its directives say (common/mod.rs): its check fails before loading, passes while
//! loaded, fails again after unloading; modules from the image package, callbacks' log
//! order, refused loads and replacements.

mod common;

use std::path::{Path, PathBuf};

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn patch_corpus_builds_and_patches_debian_6_1() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let out = tempfile::tempdir().unwrap();
    let cases = common::corpus("6.1");
    assert!(cases.len() >= 33, "only {} patches", cases.len());
    let built = common::guest::build_all(&cases, kernel.release(), out.path());
    let report = common::guest::check_in_guest(&kernel, &cases, &built, "kpatch-build-6.1");
    assert!(
        report.kernel_errors.is_empty(),
        "{:?}",
        report.kernel_errors
    );
}

/// `-s` (a configured tree of the user's) and `-c` (a .config): the tree kpatch-build
/// prepared from Debian's packages serves as the user's tree here, with the headers'
/// .config given explicitly. The build must give the same verdict and leave the tree
/// unpatched.
#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sourcedir_and_config_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let bin = env!("CARGO_BIN_EXE_kpatch-build");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    let out = tempfile::tempdir().unwrap();
    let run = |extra: &[&std::ffi::OsStr], name: &str| {
        let o = std::process::Command::new(bin)
            .args(["-a", kernel.release(), "-n", name, "--json", "-o"])
            .arg(out.path())
            .args(extra)
            .arg(&example)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success(),
            "kpatch-build {extra:?} failed:\n{stderr}"
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v
    };
    // Prepares (or reuses) the cached tree.
    let first = run(&[], "meminfo-pkg");
    let cache = std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".kpatch"))
        .join(kernel.release());
    let tree = cache.join("src/linux-source-6.1");
    let config = cache
        .join("pkg/usr/src")
        .join(format!("linux-headers-{}", kernel.release()))
        .join(".config");
    assert!(tree.join("Makefile").exists(), "{}", tree.display());
    let second = run(
        &[
            "-s".as_ref(),
            tree.as_os_str(),
            "-c".as_ref(),
            config.as_os_str(),
        ],
        "meminfo-src",
    );
    let funcs = |v: &serde_json::Value| v["functions"].to_string();
    assert_eq!(funcs(&first), funcs(&second));
    assert!(funcs(&second).contains("meminfo_proc_show"), "{second}");
    assert!(out.path().join("livepatch-meminfo-src.ko").exists());
    let src = std::fs::read_to_string(tree.join("fs/proc/meminfo.c")).unwrap();
    assert!(
        src.contains("\"VmallocChunk:   \""),
        "the tree was left patched"
    );
}

/// `--kallsyms`: the parent symbol tables come from the running target's
/// `/proc/kallsyms` (dumped in a first boot, with binfmt_misc loaded), not from the -dbg
/// package. The modules built that way (one for vmlinux, one for a module) are then
/// checked in a second boot.
#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn kallsyms_parent_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let out = tempfile::tempdir().unwrap();
    let cases: Vec<common::Case> = common::corpus("6.1")
        .into_iter()
        .filter(|c| c.name.starts_with("01-") || c.name.starts_with("05-"))
        .collect();
    assert_eq!(cases.len(), 2);

    // Boot 1: dump /proc/kallsyms with the patched module loaded.
    let image_modules = kernel.image_modules().unwrap();
    let mut img = Initramfs::with_busybox().unwrap();
    let mut scenario = Scenario::new("kallsyms-dump-6.1");
    for m in cases.iter().flat_map(|c| c.modules.iter()) {
        scenario = scenario.step(&format!("modprobe-{m}"), &format!("/sbin/modprobe {m}"));
    }
    let names: Vec<&str> = cases
        .iter()
        .flat_map(|c| c.modules.iter().map(String::as_str))
        .collect();
    img.add_image_modules(&image_modules, &names).unwrap();
    scenario = scenario.step("kallsyms", "cat /proc/kallsyms");
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    report.ensure_passed().unwrap();
    let dump: String = report
        .step("kallsyms")
        .unwrap()
        .output
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        dump.contains(" meminfo_proc_show\n"),
        "no meminfo_proc_show in the dump"
    );
    assert!(
        dump.contains("\t[binfmt_misc]\n"),
        "no binfmt_misc symbols in the dump"
    );
    let ks = out.path().join("kallsyms");
    std::fs::write(&ks, dump).unwrap();

    // Build both against the dump alone.
    let mut img = Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let mut scenario = Scenario::new("kallsyms-6.1").keep_going();
    for case in &cases {
        let built = common::kpatch_build_with(
            case,
            kernel.release(),
            out.path(),
            &["--kallsyms".as_ref(), ks.as_os_str()],
        );
        assert_eq!(built.code, 0, "{}:\n{}", case.name, built.stderr);
        assert!(
            built.stderr.contains("parent symbol tables from"),
            "{}",
            built.stderr
        );
        let n = &case.name;
        if !case.modules.is_empty() {
            let names: Vec<&str> = case.modules.iter().map(String::as_str).collect();
            img.add_image_modules(&image_modules, &names).unwrap();
        }
        for m in &case.modules {
            scenario = scenario.step(&format!("{n}:modprobe-{m}"), &format!("/sbin/modprobe {m}"));
        }
        if let Some(s) = &case.setup {
            scenario = scenario.step(&format!("{n}:setup"), s);
        }
        let ko = built.module.unwrap();
        let guest_ko = img.add_module(&ko).unwrap();
        let check = case.check.as_deref().unwrap();
        scenario = scenario
            .step(&format!("{n}:load"), &format!("{kpatch} load {guest_ko}"))
            .step(
                &format!("{n}:patched"),
                &format!("{check} || fail 'check fails while patched'"),
            )
            .step(
                &format!("{n}:unload"),
                &format!("{kpatch} unload {}", testbed::module_name(&ko)),
            );
    }
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
}
