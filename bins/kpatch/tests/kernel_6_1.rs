//! The `kpatch` runtime against Debian 12's 6.1 kernel under QEMU, with the kernel's own
//! livepatch sample and selftest modules: load, list (and --json), info, unload, atomic
//! replace, refusals, install + a simulated boot (`kpatch load --all`), an interrupted
//! load skipped at boot, and a transition that cannot finish being rolled back.

mod common;

use common::output;
use testbed::{BootReport, Guest, KernelSeries, Scenario};

/// The JSON document a step printed (its output may carry other lines before it).
fn json(report: &BootReport, step: &str) -> serde_json::Value {
    let text = output(report, step);
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("{step}: no JSON in {text:?}"));
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{step}: {e}: {text}"))
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn load_list_info_unload_replace_install_on_debian_6_1() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let sample = testbed::build_livepatch_sample(&kernel).unwrap();
    let selftests = testbed::build_selftest_modules(&kernel).unwrap();
    let (mut img, k) = common::image_with_kpatch();
    let s = img.add_module(&sample).unwrap();
    let lp = img
        .add_module(selftests.get("test_klp_livepatch").unwrap())
        .unwrap();
    let ar = img
        .add_module(selftests.get("test_klp_atomic_replace").unwrap())
        .unwrap();
    let busy = img
        .add_module(selftests.get("test_klp_callbacks_busy").unwrap())
        .unwrap();
    let patched = testbed::samples::SAMPLE_PATCHED_CMDLINE;
    let scenario = Scenario::new("kpatch-runtime")
        .step("load", &format!("{k} load {s} && grep -q '{patched}' /proc/cmdline"))
        .step("list", &format!("{k} list | tee /dev/stderr | grep -q 'livepatch_sample.*enabled'"))
        .step("list-json", &format!("{k} list --json"))
        .step("info-json", &format!("{k} info --json livepatch_sample"))
        .step(
            "unload",
            &format!(
                "{k} unload livepatch_sample && ! grep -q '{patched}' /proc/cmdline \
                 && [ -z \"$(ls /sys/kernel/livepatch)\" ] && ! grep -q '^livepatch_sample ' /proc/modules"
            ),
        )
        .step(
            "atomic-replace",
            &format!(
                "{k} load {lp} && {k} load {ar} replace=1 \
                 && expect_eq \"$(ls /sys/kernel/livepatch)\" test_klp_atomic_replace patches \
                 && ! grep -q '^test_klp_livepatch ' /proc/modules && {k} unload --all \
                 && [ -z \"$(ls /sys/kernel/livepatch)\" ]"
            ),
        )
        .step(
            "not-a-livepatch",
            &format!("if {k} load {busy} 2>/tmp/err; then fail loaded; fi; cat /tmp/err; grep -q 'not a livepatch' /tmp/err"),
        )
        .step(
            "install-and-boot",
            &format!(
                "{k} install {s} && [ -f /var/lib/kpatch/$(uname -r)/livepatch-sample.ko ] \
                 && {k} load --all && grep -q '{patched}' /proc/cmdline && {k} unload --all"
            ),
        )
        .step(
            "interrupted-load-skipped",
            &format!(
                "echo 'simulated crash' > /var/lib/kpatch/$(uname -r)/livepatch_sample.loading; \
                 {k} load --all > /tmp/out 2>&1; cat /tmp/out; grep -q 'skipping livepatch_sample' /tmp/out \
                 && [ -z \"$(ls /sys/kernel/livepatch)\" ] \
                 && {k} install {s} && {k} load --all && grep -q '{patched}' /proc/cmdline && {k} unload --all"
            ),
        );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    common::ensure_passed(&report);

    let list = json(&report, "list-json");
    let loaded = &list["loaded"][0];
    assert_eq!(loaded["name"], "livepatch_sample", "{list}");
    assert_eq!(loaded["enabled"], true, "{list}");
    assert_eq!(
        loaded["objects"][0]["functions"][0]["name"], "cmdline_proc_show",
        "{list}"
    );
    let info = json(&report, "info-json");
    assert_eq!(info["name"], "livepatch_sample", "{info}");
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn stalled_transition_is_reported_and_rolled_back_on_debian_6_1() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let selftests = testbed::build_selftest_modules(&kernel).unwrap();
    let (mut img, k) = common::image_with_kpatch();
    let busy = img
        .add_module(selftests.get("test_klp_callbacks_busy").unwrap())
        .unwrap();
    let demo = img
        .add_module(selftests.get("test_klp_callbacks_demo").unwrap())
        .unwrap();
    let scenario = Scenario::new("kpatch-stall")
        .step("busy", &format!("insmod {busy} block_transition=Y && sleep 1"))
        .step(
            "load-stalls",
            &format!(
                "if {k} load --enable-wait 2 --signal-wait 3 {demo} >/tmp/out 2>/tmp/err; then fail 'load succeeded'; fi; \
                 cat /tmp/out /tmp/err; grep -q busymod_work_func /tmp/out && grep -q 'rolled back' /tmp/err"
            ),
        )
        .step(
            "no-trace",
            "[ -z \"$(ls /sys/kernel/livepatch)\" ] && [ ! -e /sys/module/test_klp_callbacks_demo ] \
             && ! grep -q '^test_klp_callbacks_demo ' /proc/modules \
             && [ ! -e /var/lib/kpatch/$(uname -r)/test_klp_callbacks_demo.loading ]",
        )
        .step(
            "cleanup",
            "echo 0 > /sys/module/test_klp_callbacks_busy/parameters/block_transition; sleep 1; rmmod test_klp_callbacks_busy",
        );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    common::ensure_passed(&report);
    let out = output(&report, "load-stalls");
    assert!(out.contains("busymod_work_func"), "{out}");
}
