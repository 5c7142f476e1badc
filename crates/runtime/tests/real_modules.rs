// SPDX-License-Identifier: GPL-2.0-only
//! Parsing real kernel modules: the kernel's livepatch sample and selftest modules,
//! built by the test bed against Debian's 6.1 headers, and every module Debian's 6.1 image
//! package ships (or every `*.ko` under the directory `KPATCH_REAL_MODULES` names).

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

/// Every module of Debian's 6.1 image package (about 4,000 `.ko` files), or every `*.ko`
/// under the directory `KPATCH_REAL_MODULES` names (for example another distribution's
/// `/lib/modules/<release>`).
#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn image_package_modules_parse() {
    let dir = match std::env::var_os("KPATCH_REAL_MODULES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let kernel = testbed::test_kernel(KernelSeries::V6_1);
            kernel.image_modules().expect("image package modules").dir()
        }
    };
    let mut found = Vec::new();
    kos(&dir, &mut found);
    assert!(
        found.len() > 100,
        "only {} .ko files under {dir:?}",
        found.len()
    );
    let seen = check_modules(&found);
    for want in ["xfs.ko", "nls_utf8.ko", "binfmt_misc.ko"] {
        assert!(
            std::env::var_os("KPATCH_REAL_MODULES").is_some() || seen.contains(want),
            "{want} not among the image package's modules"
        );
    }
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
