//! `kpatch signal`, `kpatch force` and `kpatch uninstall` against Debian's real 6.1 and
//! 6.12 kernels under QEMU.
//!
//! A transition is held open by the kernel's own selftest modules: `test_klp_callbacks_busy`
//! (with `block_transition=Y`) parks a kernel worker inside `busymod_work_func`, which
//! `test_klp_callbacks_demo` patches. Neither kernel has the old
//! `/sys/kernel/livepatch/<patch>/signal` attribute (6.1 has `enabled`, `transition`,
//! `force`; 6.12 adds `replace`), so `kpatch signal` takes its task-by-task path on both:
//! the blocking task here is a kernel thread, which it names and leaves alone. (Interrupting
//! a sleeping user task with ptrace is tested on the host, `crates/runtime/tests/interrupt.rs`.)

mod common;

use common::output;
use testbed::{Guest, KernelSeries, Scenario};

fn signal_force_uninstall(series: KernelSeries) {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(series);
    let sample = testbed::build_livepatch_sample(&kernel).unwrap();
    let selftests = testbed::build_selftest_modules(&kernel).unwrap();
    let (mut img, k) = common::image_with_kpatch();
    let s = img.add_module(&sample).unwrap();
    let busy = img
        .add_module(selftests.get("test_klp_callbacks_busy").unwrap())
        .unwrap();
    let demo = img
        .add_module(selftests.get("test_klp_callbacks_demo").unwrap())
        .unwrap();
    let lp = "/sys/kernel/livepatch/test_klp_callbacks_demo";
    let scenario = Scenario::new("kpatch-admin")
        .step(
            "nothing-to-do",
            &format!(
                "{k} signal > /tmp/out && expect_contains \"$(cat /tmp/out)\" 'no patch transition in progress' \
                 && if {k} force 2>/tmp/err; then fail 'force without a transition succeeded'; fi \
                 && expect_contains \"$(cat /tmp/err)\" 'no patch is in a transition'"
            ),
        )
        .step(
            "stalled",
            &format!(
                "insmod {busy} block_transition=Y && sleep 1 && insmod {demo} \
                 && expect_eq \"$(cat {lp}/transition)\" 1 transition \
                 && [ ! -e {lp}/signal ] && echo 'no signal attribute'"
            ),
        )
        .step(
            "signal",
            &format!(
                "{k} signal > /tmp/out; rc=$?; cat /tmp/out; expect_eq $rc 0 'exit status' \
                 && expect_contains \"$(cat /tmp/out)\" 'cannot be signalled from user space' \
                 && expect_eq \"$(cat {lp}/transition)\" 1 'transition after signal'"
            ),
        )
        .step(
            "force",
            &format!(
                "{k} force > /tmp/out; rc=$?; cat /tmp/out; expect_eq $rc 0 'exit status' \
                 && expect_contains \"$(cat /tmp/out)\" 'warning: forcing a transition' \
                 && expect_contains \"$(cat /tmp/out)\" 'forced the transition of test_klp_callbacks_demo' \
                 && wait_until 10 \"[ \\\"\\$(cat {lp}/transition)\\\" = 0 ]\" \
                 && expect_eq \"$(cat {lp}/enabled)\" 1 enabled"
            ),
        )
        .step(
            "release-busy",
            "echo 0 > /sys/module/test_klp_callbacks_busy/parameters/block_transition",
        )
        .step(
            "uninstall",
            &format!(
                "d=/var/lib/kpatch/$(uname -r); {k} install {s} && [ -f $d/livepatch-sample.ko ] \
                 && {k} uninstall livepatch-sample.ko && [ ! -e $d/livepatch-sample.ko ] \
                 && {k} list | tee /tmp/list && ! grep -q 'livepatch-sample.ko' /tmp/list \
                 && if {k} uninstall livepatch-sample.ko 2>/tmp/err; then fail 'second uninstall succeeded'; fi \
                 && expect_contains \"$(cat /tmp/err)\" 'is not installed'"
            ),
        );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    common::ensure_passed(&report);
    assert!(
        output(&report, "signal").contains("busymod_work_func")
            || output(&report, "signal").contains("kworker"),
        "{}",
        output(&report, "signal")
    );
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn signal_force_uninstall_on_debian_6_1() {
    signal_force_uninstall(KernelSeries::V6_1);
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn signal_force_uninstall_on_debian_6_12() {
    signal_force_uninstall(KernelSeries::V6_12);
}
