//! kpatch-build against Debian 12's 6.12 kernel (call padding, IBT, call-depth tracking):
//! the meminfo patch builds, loads, takes effect and unloads cleanly, and the kernel
//! reports no warning (e.g. an unpatched return thunk).

mod common;

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn meminfo_patch_on_debian_6_12() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_12);
    let out = tempfile::tempdir().unwrap();
    let case = common::corpus("6.1")
        .into_iter()
        .find(|c| c.name == "01-meminfo-string")
        .expect("meminfo patch");
    let built = common::kpatch_build(&case, kernel.release(), out.path());
    assert_eq!(built.code, 0, "{}", built.stderr);
    let ko = built.module.expect("module");

    let mut img = Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let guest_ko = img.add_module(&ko).unwrap();
    let klp = testbed::module_name(&ko);
    let check = case.check.as_deref().unwrap();
    let scenario = Scenario::new("meminfo-6.12")
        .step(
            "before",
            &format!("if {check}; then fail 'patched before loading'; fi"),
        )
        .step("load", &format!("{kpatch} load {guest_ko}"))
        .step("patched", &format!("{check} || fail 'not patched'"))
        .step("unload", &format!("{kpatch} unload {klp}"))
        .step(
            "after",
            &format!("if {check}; then fail 'still patched'; fi"),
        );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
    assert!(
        report.kernel_errors.is_empty(),
        "{:?}",
        report.kernel_errors
    );
    // No W (warning) taint: objtool gave the module its return sites and ORC data.
    let taint = report.taint.expect("taint");
    assert_eq!(
        taint & (1 << 9),
        0,
        "kernel warning during the test (taint {taint})"
    );
}

/// The 6.12 corpus (tests/patches/6.12): KPATCH_SYSCALL_DEFINE, callbacks on vmlinux and
/// on a module present or loaded later, a module patch with the module from Debian's
/// image package (`.ko.xz` there), a refusing pre-patch callback, system states.
#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn patch_corpus_builds_and_patches_debian_6_12() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_12);
    let out = tempfile::tempdir().unwrap();
    let cases = common::corpus("6.12");
    assert!(cases.len() >= 9, "only {} patches", cases.len());
    let built = common::guest::build_all(&cases, kernel.release(), out.path());
    let report = common::guest::check_in_guest(&kernel, &cases, &built, "kpatch-build-6.12");
    assert!(
        report.kernel_errors.is_empty(),
        "{:?}",
        report.kernel_errors
    );
    let taint = report.taint.expect("taint");
    assert_eq!(
        taint & (1 << 9),
        0,
        "kernel warning during the test (taint {taint})"
    );
}
