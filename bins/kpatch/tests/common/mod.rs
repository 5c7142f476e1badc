//! Shared by the real-kernel tests of `kpatch`.

#![allow(dead_code)]

use testbed::{BootReport, Initramfs};

/// What a step printed.
pub fn output(report: &BootReport, step: &str) -> String {
    report
        .step(step)
        .map(|s| s.output.join("\n"))
        .unwrap_or_default()
}

/// A busybox initramfs with our `kpatch` in it, and its path in the guest.
pub fn image_with_kpatch() -> (Initramfs, String) {
    let mut img = Initramfs::with_busybox().unwrap();
    let k = img
        .add_host_binary(
            std::path::Path::new(env!("CARGO_BIN_EXE_kpatch")),
            "/usr/local/bin",
        )
        .unwrap();
    (img, k)
}

/// Prints the run's summary and fails the test unless every step passed and the kernel
/// reported no error.
pub fn ensure_passed(report: &BootReport) {
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
}
