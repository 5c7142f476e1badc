//! An older point release of Debian 12's 6.1 (the ABI before the current one), whose
//! `linux-kbuild-6.1` the archive's index no longer lists: kpatch-build fetches it from the
//! pool (saying so), builds the meminfo patch, and the module loads in that very kernel.

mod common;

use testbed::{Guest, KernelSeries};

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn meminfo_on_the_previous_6_1_point_release() {
    testbed::init_test_logging();
    let current = testbed::test_kernel(KernelSeries::V6_1);
    let abi: u32 = current
        .release()
        .split('-')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let older: KernelSeries = format!("6.1.0-{}-amd64", abi - 1).parse().unwrap();
    let kernel = testbed::test_kernel(older.clone());
    assert_eq!(kernel.release(), older.as_str());
    assert_ne!(kernel.version(), current.version());
    let out = tempfile::tempdir().unwrap();
    let case = common::corpus("6.1")
        .into_iter()
        .find(|c| c.name == "01-meminfo-string")
        .unwrap();
    let built =
        common::kpatch_build_with(&case, kernel.release(), out.path(), &["--json".as_ref()]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let json = built.json.clone().unwrap();
    assert_eq!(json["version"], kernel.version());
    let ko = built.module.clone().unwrap();
    let loadable = vec![(case, ko, json)];
    let (img, scenario) = common::corpus_scenario(&kernel, &loadable, out.path(), "meminfo-older");
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
    assert_eq!(report.release.as_deref(), Some(kernel.release()));
    assert_eq!(report.taint.unwrap() & (1 << 9), 0);
}
