//! Debian 12's 6.12 kernel boots and applies the livepatch sample built against its headers.

use testbed::samples::sample_scenario;
use testbed::{Guest, Initramfs, KernelSeries};

#[test]
fn sample_on_6_12() {
    testbed::init_test_logging();
    let Some(kernel) = testbed::test_kernel(KernelSeries::V6_12) else {
        return;
    };
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
