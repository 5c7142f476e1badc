// SPDX-License-Identifier: GPL-2.0-only
//! Parsing real kernel modules: the kernel's livepatch sample and selftest modules,
//! built by the test bed against Debian's 6.1 headers (and, when `KPATCH_REAL_MODULES`
//! names a directory, every `*.ko` under it as well).

use std::path::{Path, PathBuf};

use runtime::modinfo::{module_struct_name, ModuleFile};
use testbed::KernelSeries;

fn kos(dir: &Path, found: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            kos(&p, found);
        } else if p.extension().is_some_and(|x| x == "ko") {
            found.push(p);
        }
    }
}

/// The modules the test bed builds against Debian's 6.1 headers.
#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn test_bed_modules_parse() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let mut found = vec![testbed::build_livepatch_sample(&kernel).expect("livepatch sample")];
    let selftests = testbed::build_selftest_modules(&kernel).expect("selftest modules");
    found.extend(selftests.modules.values().cloned());
    let seen = check_modules(&found);
    for want in [
        "livepatch-sample.ko",
        "test_klp_callbacks_demo.ko",
        "test_klp_callbacks_busy.ko",
    ] {
        assert!(seen.contains(want), "{want} not built: {seen:?}");
    }
}

/// Every `*.ko` under the directory `KPATCH_REAL_MODULES` names (for example a
/// distribution's `/lib/modules/<release>`): run it with `--ignored`.
#[test]
#[ignore = "needs KPATCH_REAL_MODULES=<directory of .ko files>; run with --ignored"]
fn listed_modules_parse() {
    let dir = std::env::var_os("KPATCH_REAL_MODULES")
        .expect("KPATCH_REAL_MODULES must name a directory of kernel modules");
    let mut found = Vec::new();
    kos(Path::new(&dir), &mut found);
    assert!(!found.is_empty(), "no .ko file under {dir:?}");
    check_modules(&found);
}

/// Reads each module and checks what the runtime relies on; returns the file names seen.
fn check_modules(found: &[PathBuf]) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for ko in found {
        let m = ModuleFile::read(ko).unwrap();
        let data = std::fs::read(ko).unwrap();
        assert_eq!(
            module_struct_name(&data).as_deref(),
            Some(m.name.as_str()),
            "{ko:?}"
        );
        assert!(m.modinfo.vermagic_release().is_some(), "{ko:?}");
        let file = ko.file_name().unwrap().to_string_lossy().into_owned();
        match file.as_str() {
            "livepatch-sample.ko" => {
                assert!(m.modinfo.is_livepatch());
                assert!(m.strings.contains("cmdline_proc_show"));
            }
            "test_klp_callbacks_demo.ko" => {
                assert!(m.modinfo.is_livepatch());
                assert!(m.strings.contains("busymod_work_func"));
                assert!(m.strings.contains("test_klp_callbacks_busy"));
            }
            "test_klp_callbacks_busy.ko" => assert!(!m.modinfo.is_livepatch()),
            _ => {}
        }
        seen.insert(file);
    }
    seen
}
