//! Debian 12's 6.12 kernel boots and applies the livepatch sample built against its headers.

use testbed::samples::sample_scenario;
use testbed::{Guest, Initramfs, KernelSeries};

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sample_on_6_12() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_12);
    assert!(
        kernel.release().starts_with("6.12."),
        "{}",
        kernel.release()
    );
    let ko = testbed::build_livepatch_sample(&kernel).unwrap();
    let mut img = Initramfs::with_busybox().unwrap();
    let guest_ko = img.add_module(&ko).unwrap();
    let report = Guest::new(&kernel)
        .run(img, &sample_scenario(&guest_ko))
        .unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
    assert_eq!(report.release.as_deref(), Some(kernel.release()));
    assert!(report.dmesg_contains("livepatch: 'livepatch_sample': unpatching complete"));
    assert_ne!(report.taint.unwrap() & (1 << 15), 0);
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn kernel_livepatch_selftests_on_6_12() {
    use testbed::selftests::{run_selftests, selftest_cases, DEFAULT_SCRIPTS};
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_12);
    let report = run_selftests(&kernel, DEFAULT_SCRIPTS, &Guest::new(&kernel)).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
    let cases: Vec<_> = report.steps.iter().flat_map(selftest_cases).collect();
    assert_eq!(cases.len(), 19, "{cases:?}");
    assert!(cases.iter().all(|c| c.ok), "{cases:?}");
    // 6.12's scripts load modules with insmod from test_modules/.
    assert!(report.dmesg_contains("% insmod test_modules/test_klp_livepatch.ko"));
}
