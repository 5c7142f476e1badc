//! The kernel's own modules from Debian's image package load in the guest with their
//! dependencies: xfs (hard dependency libcrc32c, soft dependency crc32c) with kmod's
//! `modprobe`, and joydev with `insmod` of the returned files. 6.1 ships uncompressed
//! modules, 6.12 ships `.ko.xz`.

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

fn image_modules_load(series: KernelSeries) {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(series);
    let t = std::time::Instant::now();
    let mods = kernel.image_modules().unwrap();
    eprintln!("image modules ready in {:.1}s", t.elapsed().as_secs_f64());
    let xfs = mods.load_order("xfs").unwrap();
    let names: Vec<String> = xfs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.last().unwrap().starts_with("xfs.ko"),
        "xfs comes last: {names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("libcrc32c.ko")),
        "libcrc32c is a dependency of xfs: {names:?}"
    );
    assert!(mods.load_order("no_such_module_kpatch").is_err());

    let mut img = Initramfs::with_busybox().unwrap();
    let orders = img.add_image_modules(&mods, &["xfs", "joydev"]).unwrap();
    let joydev = orders[1].join(" ");
    assert!(joydev.ends_with("/joydev.ko"), "{joydev}");
    let scenario = Scenario::new("image-modules")
        .step(
            "absent",
            "[ ! -e /sys/module/xfs ] || fail 'xfs already loaded'",
        )
        .step("modprobe-xfs", "/sbin/modprobe xfs || fail 'modprobe xfs'")
        .step(
            "xfs-loaded",
            "[ -e /sys/fs/xfs ] && grep -q '^xfs ' /proc/modules && grep -q xfs /proc/filesystems \
             || fail 'xfs not registered'",
        )
        .step(
            "insmod-joydev",
            &format!("for m in {joydev}; do insmod $m || fail \"insmod $m\"; done"),
        )
        .step(
            "joydev-loaded",
            "grep -q '^joydev ' /proc/modules || fail 'no joydev'",
        )
        .step("rmmod", "rmmod xfs && rmmod joydev || fail rmmod");
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
    assert!(
        report.kernel_errors.is_empty(),
        "{:?}",
        report.kernel_errors
    );
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn image_modules_load_on_6_1() {
    image_modules_load(KernelSeries::V6_1);
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn image_modules_load_xz_on_6_12() {
    image_modules_load(KernelSeries::V6_12);
}
