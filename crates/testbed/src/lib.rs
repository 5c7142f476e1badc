//! # testbed: Debian's real kernel under QEMU, driven by tests
//!
//! Everything that touches a running kernel is tested against Debian's own kernel images
//! (Debian 12's 6.1 and 6.12, Debian 13's 6.12 in its flavours), booted with
//! `qemu-system-x86_64 -accel tcg` from a busybox initramfs:
//!
//! 1. [`prepare`] (or `testbed prepare`) installs the host packages, and has the `debian`
//!    crate resolve a [`KernelSeries`] to its current release, download the image, headers
//!    and source packages pinned to the image's version into the cache shared with
//!    kpatch-build, and create the build root of the kernel's distribution ([`Cache`],
//!    [`Kernel`]).
//! 2. [`ModuleBuild`] builds out-of-tree modules against the cached headers, in that build
//!    root ([`build_livepatch_sample`], [`build_selftest_modules`]).
//! 3. [`Initramfs`] collects busybox, modules, host binaries (with their shared libraries)
//!    and files; a [`Scenario`] adds a generated `/init` running shell steps. The kernel's
//!    own modules come from its image package ([`Kernel::image_modules`],
//!    [`Initramfs::add_image_modules`]), with their dependencies.
//! 4. [`Guest::run`] boots it under a hard timeout and parses the serial output into a
//!    [`BootReport`]: each step's outcome and output, dmesg, taint, kernel errors, timings.
//!
//! ```no_run
//! use testbed::{Guest, Initramfs, KernelSeries, Scenario};
//! let kernel = testbed::ensure_packages(KernelSeries::V6_1)?;
//! let sample = testbed::build_livepatch_sample(&kernel)?;
//! let mut img = Initramfs::with_busybox()?;
//! let ko = img.add_module(&sample)?;
//! let scenario = Scenario::new("sample")
//!     .step("load", &format!("klp_load {ko}"))
//!     .step("patched", r#"expect_eq "$(cat /proc/cmdline)" "this has been live patched""#);
//! let report = Guest::new(&kernel).run(img, &scenario)?;
//! report.ensure_passed()?;
//! # Ok::<(), testbed::Error>(())
//! ```

pub mod apt;
mod cache;
pub mod cpio;
mod error;
mod guest;
mod image_modules;
mod initramfs;
mod kbuild;
mod report;
pub mod samples;
mod scenario;
pub mod selftests;
mod series;
mod util;
pub mod vm;
mod vmlinux;

use std::time::{Duration, Instant};

pub use cache::{Cache, DebugSymbols, Kernel, PrepareOptions, SOURCE_SUBSET};
pub use error::{Error, Result};
pub use guest::{boot_lock_path, Guest, DEFAULT_CMDLINE};
pub use image_modules::ImageModules;
pub use initramfs::{shared_libraries, Initramfs, GUEST_HOST_BIN, GUEST_MODULE_DIR, HOST_BUSYBOX};
pub use kbuild::{
    build_livepatch_sample, build_selftest_modules, module_name, BuiltModules, ModuleBuild,
    SELFTEST_MODULE_DIRS,
};
pub use report::{
    taint_letters, BootReport, DmesgLine, Outcome, StepResult, Timings, KERNEL_ERROR_PATTERNS,
};
pub use scenario::{Scenario, Step, LIB_SH, MARK};
pub use series::KernelSeries;
pub use util::{tail, FileLock};
pub use vmlinux::extract_vmlinux;

/// What [`prepare`] set up.
#[derive(Clone, Debug)]
pub struct PrepareReport {
    /// Host packages that were installed now.
    pub installed_host_packages: Vec<String>,
    /// The cached kernel.
    pub kernel: Kernel,
    /// The sample livepatch module built against its headers (a smoke test of the headers).
    pub sample_module: std::path::PathBuf,
    /// Wall time.
    pub elapsed: Duration,
}

/// Prepares everything for `series` from nothing: host packages, the pinned kernel packages in
/// `cache`, and a build of the livepatch sample against the headers.
pub fn prepare(
    cache: &Cache,
    series: KernelSeries,
    opts: &PrepareOptions,
) -> Result<PrepareReport> {
    let start = Instant::now();
    let installed_host_packages = if opts.offline {
        Vec::new()
    } else {
        apt::install_host_packages(apt::HOST_PACKAGES, opts.install_host_packages)?
    };
    let missing = apt::missing_host_packages(apt::HOST_PACKAGES);
    if !missing.is_empty() {
        return Err(Error::MissingHostPackages(missing));
    }
    let kernel = cache.ensure_kernel(&series, opts)?;
    let sample_module = build_livepatch_sample(&kernel)?;
    Ok(PrepareReport {
        installed_host_packages,
        kernel,
        sample_module,
        elapsed: start.elapsed(),
    })
}

/// The kernel of `series` from the default cache, downloading it if needed (host packages
/// must already be there; [`prepare`] installs them).
pub fn ensure_packages(series: KernelSeries) -> Result<Kernel> {
    Cache::from_env().ensure_kernel(&series, &PrepareOptions::default())
}

/// For real-kernel tests: the prepared kernel of `series`. Such a test carries
/// `#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]` (its crate's
/// `build.rs` calls `testgate::emit_build_cfg`), so `KPATCH_TESTBED_SKIP=1` shows it as
/// ignored. Reaching this with the skip asked for means the test lacks that attribute or
/// runs under `CI=true`, where nothing may be skipped: it panics, as it does when the test
/// bed is not usable, so a real-kernel test never passes without a kernel.
pub fn test_kernel(series: KernelSeries) -> Kernel {
    if testgate::testbed_skip_requested() {
        if testgate::is_ci() {
            panic!("KPATCH_TESTBED_SKIP is set under CI=true: real-kernel tests may not be skipped in CI");
        }
        panic!(
            "KPATCH_TESTBED_SKIP is set, but this real-kernel test is not marked \
             #[cfg_attr(testbed_skip, ignore = \"KPATCH_TESTBED_SKIP is set\")] (or its crate has no \
             build.rs calling testgate::emit_build_cfg)"
        );
    }
    let cache = Cache::from_env();
    match prepare(&cache, series.clone(), &PrepareOptions::default()) {
        Ok(r) => r.kernel,
        Err(e) => panic!(
            "the real-kernel test bed is not usable ({e}); run `testbed prepare --series {series}` \
             (or set KPATCH_TESTBED_SKIP=1 to skip these tests)"
        ),
    }
}

/// Installs a `tracing` subscriber for tests (honours `RUST_LOG`); safe to call repeatedly.
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}
