//! Ready-made scenarios around the kernel's `samples/livepatch/livepatch-sample.c`, which
//! replaces `cmdline_proc_show` so that `/proc/cmdline` reads "this has been live patched".

use crate::scenario::Scenario;

/// What `/proc/cmdline` shows while the sample is applied.
pub const SAMPLE_PATCHED_CMDLINE: &str = "this has been live patched";

/// The sample's livepatch (and module) name.
pub const SAMPLE_NAME: &str = "livepatch_sample";

/// Load the sample from `ko` (a guest path), check `/proc/cmdline`, disable, check it is
/// restored, unload, check again.
pub fn sample_scenario(ko: &str) -> Scenario {
    Scenario::new("livepatch-sample")
        .step(
            "cmdline-before",
            &format!(
                "cat /proc/cmdline > /tmp/cmdline.orig\n\
                 expect_not_contains \"$(cat /proc/cmdline)\" \"{SAMPLE_PATCHED_CMDLINE}\" /proc/cmdline"
            ),
        )
        .step(
            "load",
            &format!(
                "klp_load {ko}\n\
                 expect_eq \"$(cat /sys/kernel/livepatch/{SAMPLE_NAME}/enabled)\" 1 enabled"
            ),
        )
        .step(
            "cmdline-patched",
            &format!("expect_eq \"$(cat /proc/cmdline)\" \"{SAMPLE_PATCHED_CMDLINE}\" /proc/cmdline"),
        )
        .step("disable", &format!("klp_disable {SAMPLE_NAME}"))
        .step(
            "cmdline-restored",
            "expect_eq \"$(cat /proc/cmdline)\" \"$(cat /tmp/cmdline.orig)\" /proc/cmdline",
        )
        .step(
            "unload",
            &format!(
                "klp_unload {SAMPLE_NAME}\n\
                 expect_eq \"$(cat /proc/cmdline)\" \"$(cat /tmp/cmdline.orig)\" /proc/cmdline"
            ),
        )
}
