//! kpatch-build against Debian 13's kernels (6.12, gcc-14, IBT, call padding), built in the
//! trixie build root: every patch of tests/patches/trixie gets its expected verdict, every
//! loadable module is checked in the real kernel under QEMU (before, while loaded, after
//! unloading) with no warning taint, and every patched function keeps its ENDBR (static
//! check: IBT is not enforced under TCG). The cloud flavour builds and loads too.

mod common;

use testbed::{Guest, KernelSeries};

/// TAINT_WARN.
const TAINT_W: u64 = 1 << 9;

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn patch_corpus_builds_and_patches_debian_13() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::TRIXIE);
    assert!(kernel.release().contains("+deb13-"), "{}", kernel.release());
    let out = tempfile::tempdir().unwrap();
    let cases = common::corpus("trixie");
    assert!(cases.len() >= 14, "only {} patches", cases.len());
    let (loadable, mut failures) = common::build_corpus(&kernel, "trixie", out.path());

    // ENDBR: the patched vmlinux functions against the -dbg vmlinux kpatch-build used.
    let vmlinux = kernel.files().dbg_vmlinux_path();
    let starts = common::ibt::function_starts(&vmlinux);
    let mut checked = 0;
    for (case, ko, json) in &loadable {
        let functions = |vmlinux: bool| -> Vec<String> {
            json["functions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["new"] == false && (f["object"] == "vmlinux") == vmlinux)
                .filter_map(|f| f["function"].as_str().map(str::to_string))
                .collect()
        };
        let changed = functions(true);
        checked += changed.len();
        for p in common::ibt::check_endbr_required(ko, &case.endbr) {
            failures.push(format!("{}: {p}", case.name));
        }
        for p in common::ibt::check_endbr(ko, &starts, &changed) {
            failures.push(format!("{}: {p}", case.name));
        }
        // Functions of modules: never sealed either.
        let sealed = common::ibt::sealed_functions(ko);
        for f in functions(false).iter().filter(|f| sealed.contains(f)) {
            failures.push(format!(
                "{}: {f} is sealed by the module's .ibt_endbr_seal",
                case.name
            ));
        }
    }
    assert!(
        checked >= 8,
        "only {checked} patched vmlinux functions checked for ENDBR"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    let (img, scenario) =
        common::corpus_scenario(&kernel, &loadable, out.path(), "kpatch-build-trixie");
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    common::guest::print_verify_times(&report);
    report.ensure_passed().unwrap();
    assert!(
        report.kernel_errors.is_empty(),
        "{:?}",
        report.kernel_errors
    );
    let taint = report.taint.expect("taint");
    assert_eq!(
        taint & TAINT_W,
        0,
        "kernel warning during the test (taint {taint})"
    );
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn meminfo_on_debian_13_cloud() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::TRIXIE_CLOUD);
    assert!(
        kernel.release().ends_with("+deb13-cloud-amd64"),
        "{}",
        kernel.release()
    );
    let out = tempfile::tempdir().unwrap();
    let case = common::corpus("trixie")
        .into_iter()
        .find(|c| c.name == "01-meminfo-string")
        .unwrap();
    let built =
        common::kpatch_build_with(&case, kernel.release(), out.path(), &["--json".as_ref()]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let ko = built.module.clone().unwrap();
    let starts = common::ibt::function_starts(&kernel.files().dbg_vmlinux_path());
    let problems = common::ibt::check_endbr(&ko, &starts, &["meminfo_proc_show".to_string()]);
    assert!(problems.is_empty(), "{problems:?}");
    let loadable = vec![(case, ko, built.json.unwrap_or_default())];
    let (img, scenario) = common::corpus_scenario(&kernel, &loadable, out.path(), "meminfo-cloud");
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    common::guest::print_verify_times(&report);
    report.ensure_passed().unwrap();
    assert_eq!(report.taint.unwrap() & TAINT_W, 0);
}
