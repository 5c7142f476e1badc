//! The kernel's own livepatch selftest scripts (6.1), run unchanged in one guest: they load the
//! `test_klp_*` modules built from `linux-source-6.1` and compare the kernel log with the
//! transcripts they expect. A doctored copy of one script is the negative control.

use testbed::selftests::{
    selftest_cases, selftest_initramfs, selftest_scenario, DEFAULT_SCRIPTS, GUEST_SELFTEST_DIR,
};
use testbed::{Guest, KernelSeries, Outcome};

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn kernel_livepatch_selftests_reproduce_expected_transcripts() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let img = selftest_initramfs(&kernel).unwrap();
    // Negative control: expect "patching COMPLETE" where the kernel says "patching complete".
    let scenario = selftest_scenario(DEFAULT_SCRIPTS).step(
        "doctored-transcript",
        &format!(
            "cd {GUEST_SELFTEST_DIR}\n\
             sed 's/patching complete/patching COMPLETE/' test-livepatch.sh > test-doctored.sh\n\
             bash ./test-doctored.sh"
        ),
    );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    assert!(report.completed, "{:?}", report.failures());
    assert!(
        report.kernel_errors.is_empty(),
        "{:?}",
        report.kernel_errors
    );

    for step in [
        "depmod",
        "test-livepatch",
        "test-callbacks",
        "test-shadow-vars",
        "test-state",
    ] {
        let s = report.step(step).unwrap();
        assert_eq!(s.outcome, Outcome::Pass, "{step}:\n{}", s.output.join("\n"));
    }
    let cases = |step: &str| selftest_cases(report.step(step).unwrap());
    let ok = |step: &str, name: &str| {
        let all = cases(step);
        assert!(
            all.iter().any(|c| c.name == name && c.ok),
            "{step}: no passing case {name:?} in {all:?}"
        );
    };
    ok("test-livepatch", "basic function patching");
    ok("test-livepatch", "atomic replace livepatch");
    ok("test-callbacks", "target module before livepatch");
    ok("test-callbacks", "busy target module");
    ok("test-callbacks", "atomic replace");
    ok("test-shadow-vars", "basic shadow variable API");
    ok("test-state", "system state modification");
    ok("test-state", "incompatible cumulative livepatches");
    for step in ["test-livepatch", "test-callbacks", "test-state"] {
        assert!(
            cases(step).iter().all(|c| c.ok),
            "{step}: {:?}",
            cases(step)
        );
    }
    assert_eq!(cases("test-callbacks").len(), 11);

    // The transcripts went through the kernel log.
    for line in [
        "% modprobe test_klp_atomic_replace replace=1",
        "livepatch: 'test_klp_atomic_replace': patching complete",
        "test_klp_callbacks_demo: pre_patch_callback: vmlinux",
        "test_klp_shadow_vars: klp_shadow_get(obj=",
    ] {
        assert!(report.dmesg_contains(line), "dmesg lacks {line:?}");
    }

    // The doctored transcript must not match.
    let doctored = report.step("doctored-transcript").unwrap();
    assert_eq!(doctored.outcome, Outcome::Fail { rc: 1 }, "{doctored:?}");
    let c = selftest_cases(doctored);
    assert_eq!(c.first().map(|c| c.ok), Some(false), "{c:?}");
    assert!(
        doctored
            .output
            .iter()
            .any(|l| l.starts_with("-livepatch: 'test_klp_livepatch': patching COMPLETE")),
        "the diff shows the doctored line:\n{}",
        doctored.output.join("\n")
    );
    assert!(!report.passed());
}
