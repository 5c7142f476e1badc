//! How the workspace's tests skip, so that a skip is always visible.
//!
//! Two kinds of tests depend on the machine: real-kernel tests (QEMU and Debian's kernel
//! packages; `KPATCH_TESTBED_SKIP=1` skips them) and tests that need host tools (gcc,
//! binutils). A skipped test must show as *ignored* in `cargo test`'s output, never as
//! *ok*, and under `CI=true` nothing may be skipped.
//!
//! - Crates with real-kernel tests call [`emit_build_cfg`] from their `build.rs`. It sets
//!   `cfg(testbed_skip)` when `KPATCH_TESTBED_SKIP` asks for a skip (and `CI` is not
//!   `true`), and each real-kernel test carries
//!   `#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]`. Under `CI=true`
//!   the cfg is not set, the tests run, and `testbed::test_kernel` fails them because a
//!   skip was asked for.
//! - Custom harnesses (`harness = false`) mark their trials ignored with [`skip`].

#![warn(missing_docs)]

/// The environment variable that asks to skip the real-kernel tests.
pub const TESTBED_SKIP: &str = "KPATCH_TESTBED_SKIP";

/// The cfg set for test crates when real-kernel tests are skipped.
pub const TESTBED_SKIP_CFG: &str = "testbed_skip";

/// Whether `KPATCH_TESTBED_SKIP` is set to something other than empty or `0`.
pub fn testbed_skip_requested() -> bool {
    std::env::var_os(TESTBED_SKIP).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether this is a CI run (`CI=true`), where no test may be skipped.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// For `build.rs`: declare `cfg(testbed_skip)`, set it when the real-kernel tests are to
/// be skipped, and rebuild when `KPATCH_TESTBED_SKIP` or `CI` changes.
pub fn emit_build_cfg() {
    println!("cargo:rerun-if-env-changed={TESTBED_SKIP}");
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rustc-check-cfg=cfg({TESTBED_SKIP_CFG})");
    if testbed_skip_requested() && !is_ci() {
        println!("cargo:rustc-cfg={TESTBED_SKIP_CFG}");
    }
}

/// What a harness does with a test whose prerequisite is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Show it as ignored.
    Ignore,
    /// Run it as failed, with this message (under `CI=true`).
    Fail(String),
}

/// A test cannot run because of `why` (a missing tool, ...): ignored, or a failure under
/// `CI=true`.
pub fn skip(why: &str) -> Skip {
    if is_ci() {
        Skip::Fail(format!("CI=true, and this test would be skipped: {why}"))
    } else {
        Skip::Ignore
    }
}
