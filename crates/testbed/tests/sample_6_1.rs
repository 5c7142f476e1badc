//! The livepatch sample on Debian 12's 6.1 kernel, plus the test bed's own failure detection:
//! a wrong expectation, a step timeout, a kernel crash and a hung guest must all be reported
//! as failures. The sample boots the real way (bzImage, KASLR); the failure-detection tests
//! use the faster PVH boot.

use std::time::Duration;

use testbed::samples::{sample_scenario, SAMPLE_NAME, SAMPLE_PATCHED_CMDLINE};
use testbed::{Error, Guest, Initramfs, KernelSeries, Outcome, Scenario};

const TAINT_OOT_MODULE: u64 = 1 << 12;
const TAINT_LIVEPATCH: u64 = 1 << 15;

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sample_patches_proc_cmdline_and_unloading_restores_it() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let ko = testbed::build_livepatch_sample(&kernel).unwrap();
    let mut img = Initramfs::with_busybox().unwrap();
    let guest_ko = img.add_module(&ko).unwrap();
    let report = Guest::new(&kernel)
        .run(img, &sample_scenario(&guest_ko))
        .unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();

    assert_eq!(report.release.as_deref(), Some(kernel.release()));
    assert_eq!(report.steps.len(), 6);
    let patched = report.step("cmdline-patched").unwrap();
    assert!(
        patched
            .output
            .iter()
            .any(|l| l.contains(&format!("[{SAMPLE_PATCHED_CMDLINE}]"))),
        "{patched:?}"
    );
    for line in [
        format!("livepatch: enabling patch '{SAMPLE_NAME}'"),
        format!("livepatch: '{SAMPLE_NAME}': patching complete"),
        format!("livepatch: '{SAMPLE_NAME}': unpatching complete"),
    ] {
        assert!(report.dmesg_contains(&line), "dmesg lacks {line:?}");
    }
    let taint = report.taint.expect("taint reported");
    assert_ne!(taint & TAINT_LIVEPATCH, 0, "taint {taint}");
    assert_ne!(taint & TAINT_OOT_MODULE, 0, "taint {taint}");
    assert!(
        report.kernel_errors.is_empty(),
        "{:?}",
        report.kernel_errors
    );
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn wrong_expectation_and_step_timeout_are_reported_as_failures() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let ko = testbed::build_livepatch_sample(&kernel).unwrap();
    let mut img = Initramfs::with_busybox().unwrap();
    let guest_ko = img.add_module(&ko).unwrap();
    // A dynamically linked host binary, with its libraries found by ldd.
    let bash = img
        .add_host_binary(std::path::Path::new("/bin/bash"), testbed::GUEST_HOST_BIN)
        .unwrap();
    let scenario = Scenario::new("negative-control")
        .keep_going()
        .step("load", &format!("klp_load {guest_ko}"))
        .step(
            "wrong-expectation",
            r#"expect_eq "$(cat /proc/cmdline)" "this has NOT been live patched" /proc/cmdline"#,
        )
        .step_with_timeout("step-timeout", "sleep 30", Duration::from_secs(2))
        .step(
            "host-binary",
            &format!(r#"expect_contains "$({bash} -c 'echo bash $BASH_VERSION')" "bash 5""#),
        )
        .step("exit-status", "exit 7");
    let report = Guest::pvh(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());

    assert!(report.completed);
    assert_eq!(report.step("load").unwrap().outcome, Outcome::Pass);
    let wrong = report.step("wrong-expectation").unwrap();
    assert_eq!(wrong.outcome, Outcome::Fail { rc: 1 });
    assert!(
        wrong
            .output
            .iter()
            .any(|l| l.contains(SAMPLE_PATCHED_CMDLINE)),
        "the failure shows the actual value: {wrong:?}"
    );
    let timed_out = report.step("step-timeout").unwrap();
    assert!(
        matches!(timed_out.outcome, Outcome::Fail { .. }),
        "{timed_out:?}"
    );
    assert!(timed_out.duration.unwrap() < Duration::from_secs(10));
    assert_eq!(report.step("host-binary").unwrap().outcome, Outcome::Pass);
    assert_eq!(
        report.step("exit-status").unwrap().outcome,
        Outcome::Fail { rc: 7 }
    );
    assert!(!report.passed());
    let err = report.ensure_passed().unwrap_err().to_string();
    assert!(err.contains("step wrong-expectation failed"), "{err}");
    assert!(err.contains("step step-timeout failed"), "{err}");
    assert!(!err.contains("step load"), "{err}");
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn stop_on_failure_skips_later_steps() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let scenario = Scenario::new("stop-on-failure")
        .step("fails", "fail deliberately")
        .step("skipped", "true");
    let report = Guest::pvh(&kernel)
        .run(Initramfs::with_busybox().unwrap(), &scenario)
        .unwrap();
    assert!(report.completed);
    assert_eq!(
        report.step("fails").unwrap().outcome,
        Outcome::Fail { rc: 1 }
    );
    assert_eq!(report.step("skipped").unwrap().outcome, Outcome::Skipped);
    assert_eq!(report.taint, Some(0));
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn kernel_crash_is_a_failure_not_a_hang() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let scenario = Scenario::new("crash")
        .step("crash", "echo c > /proc/sysrq-trigger; sleep 30")
        .step("after", "true");
    let report = Guest::pvh(&kernel)
        .timeout(Duration::from_secs(90))
        .run(Initramfs::with_busybox().unwrap(), &scenario)
        .unwrap();
    eprintln!("{}", report.summary());
    assert!(!report.completed);
    assert_eq!(report.step("crash").unwrap().outcome, Outcome::NotRun);
    assert!(
        report
            .kernel_errors
            .iter()
            .any(|l| l.contains("Kernel panic")),
        "{:?}",
        report.kernel_errors
    );
    let err = report.ensure_passed().unwrap_err().to_string();
    assert!(err.contains("kernel errors"), "{err}");
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn hung_guest_is_killed_at_the_hard_timeout() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let scenario = Scenario::new("hang").step_with_timeout(
        "hang",
        "echo about to hang; sleep 600",
        Duration::from_secs(600),
    );
    // The hard timeout counts from QEMU's start (after waiting for the boot lock); the boot
    // takes 6-8 s, so 30 s leaves room on a loaded machine.
    let err = Guest::pvh(&kernel)
        .timeout(Duration::from_secs(30))
        .run(Initramfs::with_busybox().unwrap(), &scenario)
        .unwrap_err();
    match err {
        Error::Timeout {
            init_tail, timeout, ..
        } => {
            assert_eq!(timeout, Duration::from_secs(30));
            assert!(init_tail.contains("@@TB BEGIN hang"), "{init_tail}");
            assert!(init_tail.contains("about to hang"), "{init_tail}");
        }
        other => panic!("expected a timeout, got {other}"),
    }
}
