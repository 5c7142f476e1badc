// SPDX-License-Identifier: GPL-2.0-only
//! Parsing real kernel modules, when a directory of them is given in
//! `KPATCH_REAL_MODULES` (searched recursively for `*.ko`; the test bed
//! builds the kernel's livepatch samples and selftest modules).

use std::path::{Path, PathBuf};

use runtime::modinfo::{module_struct_name, ModuleFile};

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

#[test]
fn real_modules_parse() {
    let Some(dir) = std::env::var_os("KPATCH_REAL_MODULES") else {
        eprintln!("skipped: KPATCH_REAL_MODULES not set");
        return;
    };
    let mut found = Vec::new();
    kos(Path::new(&dir), &mut found);
    assert!(!found.is_empty(), "no .ko under {dir:?}");
    for ko in found {
        let m = ModuleFile::read(&ko).unwrap();
        let data = std::fs::read(&ko).unwrap();
        assert_eq!(
            module_struct_name(&data).as_deref(),
            Some(m.name.as_str()),
            "{ko:?}"
        );
        assert!(m.modinfo.vermagic_release().is_some(), "{ko:?}");
        let file = ko.file_name().unwrap().to_string_lossy();
        if file == "livepatch-sample.ko" {
            assert!(m.modinfo.is_livepatch());
            assert!(m.strings.contains("cmdline_proc_show"));
        }
        if file == "test_klp_callbacks_demo.ko" {
            assert!(m.strings.contains("busymod_work_func"));
            assert!(m.strings.contains("test_klp_callbacks_busy"));
        }
        if file == "test_klp_callbacks_busy.ko" {
            assert!(!m.modinfo.is_livepatch());
        }
    }
}
