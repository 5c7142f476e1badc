//! The two answers to "which binary is this file built into" agree for the whole tree:
//! the release's -dbg index (the DWARF compile units of Debian's vmlinux and modules)
//! and Kbuild's own evaluation of the Makefiles in the prepared tree (what `--kallsyms`,
//! `-s` and `-c` builds use). Every `.c` file the index lists must get the same module
//! name and builtin-ness from Kbuild, and Kbuild must build no `.c` file the index does
//! not list.

use std::path::{Path, PathBuf};

use testbed::KernelSeries;

fn cache_dir() -> PathBuf {
    std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".kpatch"))
}

fn selfcheck(series: KernelSeries) {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(series);
    // An ordinary build prepares the tree and the index (or finds them ready).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(["-a", kernel.release(), "-n", "selfcheck", "-o"])
        .arg(out.path())
        .arg(&example)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let cache = debian::Cache::new(cache_dir());
    let mut archive = debian::Archive::open(&cache, debian::Options::from_env()).unwrap();
    let rel = archive.resolve(kernel.release()).unwrap();
    let k = builder::kernel::Kernel::new(std::sync::Arc::new(archive), rel);
    let index = builder::index::DbgIndex::load(&k.index_dir()).expect("the -dbg index");
    let t = std::time::Instant::now();
    let mut p = builder::progress::Progress::new(None, builder::progress::Verbosity::Quiet);
    let r = builder::selfcheck::run(&k, &index, 2, &mut p).unwrap();
    eprintln!(
        "{}: {} .c files of the -dbg index checked against Kbuild ({} directories reached, {:.1} s): \
         {} disagreement(s), {} file(s) only Kbuild builds",
        kernel.release(),
        r.checked,
        r.reached,
        t.elapsed().as_secs_f64(),
        r.disagreements.len(),
        r.kbuild_only.len()
    );
    let show = |v: &[(
        String,
        std::collections::BTreeSet<String>,
        std::collections::BTreeSet<String>,
    )]| {
        v.iter()
            .take(40)
            .map(|(f, a, b)| format!("  {f}: index {a:?}, Kbuild {b:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(r.checked > 5000, "only {} files checked", r.checked);
    assert!(
        r.disagreements.is_empty(),
        "index and Kbuild disagree on {} file(s):\n{}",
        r.disagreements.len(),
        show(&r.disagreements)
    );
    assert!(
        r.kbuild_only.is_empty(),
        "Kbuild builds {} file(s) the index does not list: {:?}",
        r.kbuild_only.len(),
        &r.kbuild_only[..r.kbuild_only.len().min(40)]
    );
    // The files of issue 18, which a Makefile reader got wrong.
    for (file, module) in [
        ("fs/lockd/svcsubs.c", "lockd"),
        ("fs/smb/server/mgmt/user_config.c", "ksmbd"),
        ("arch/x86/kvm/svm/sev.c", "kvm_amd"),
    ] {
        let a = builder::selfcheck::index_answer(&index, file);
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            vec![module.to_string()],
            "{file}"
        );
    }
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn units_index_agrees_with_kbuild_6_1() {
    selfcheck(KernelSeries::V6_1);
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn units_index_agrees_with_kbuild_6_12() {
    selfcheck(KernelSeries::V6_12);
}
