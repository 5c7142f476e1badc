//! Debian 13's kernels (6.12+deb13, built with gcc-14; `amd64` and `cloud-amd64`) boot and
//! apply the livepatch sample built against their headers in the trixie build root; the
//! kernel's own livepatch selftests pass on the `amd64` flavour.

use testbed::samples::sample_scenario;
use testbed::{Guest, Initramfs, KernelSeries};

fn sample_on(series: KernelSeries, flavour_suffix: &str) {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(series);
    assert!(
        kernel.release().ends_with(flavour_suffix),
        "{}",
        kernel.release()
    );
    assert_eq!(kernel.resolved.codename, "trixie");
    let config = std::fs::read_to_string(&kernel.config).unwrap();
    assert!(
        config.contains("CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-14 "),
        "not a gcc-14 kernel"
    );
    assert!(config.contains("CONFIG_X86_KERNEL_IBT=y") && config.contains("CONFIG_LIVEPATCH=y"));
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
    let taint = report.taint.unwrap();
    assert_ne!(taint & (1 << 15), 0, "no livepatch taint");
    assert_eq!(taint & (1 << 9), 0, "warning taint {taint}");
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sample_on_debian_13() {
    sample_on(KernelSeries::TRIXIE, "+deb13-amd64");
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sample_on_debian_13_cloud() {
    sample_on(KernelSeries::TRIXIE_CLOUD, "+deb13-cloud-amd64");
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn kernel_livepatch_selftests_on_debian_13() {
    use testbed::selftests::{run_selftests, selftest_cases, DEFAULT_SCRIPTS};
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::TRIXIE);
    let report = run_selftests(&kernel, DEFAULT_SCRIPTS, &Guest::new(&kernel)).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
    let cases: Vec<_> = report.steps.iter().flat_map(selftest_cases).collect();
    assert!(cases.len() >= 19, "{cases:?}");
    assert!(cases.iter().all(|c| c.ok), "{cases:?}");
}
