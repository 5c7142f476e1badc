//! The differ's C fixtures compiled with Debian 13's compiler (gcc-14, which orders and
//! names local symbols differently from gcc-12: sympos, `.cold`, `.part.N`, `.constprop.N`),
//! run in the trixie build root that kpatch-build and the test bed create
//! (`kpatch-build -a trixie` or `testbed prepare --series trixie`).
//!
//! Without that root the fixtures show as ignored; under `CI=true` that is a failure.

mod fixture_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    if let Ok(f) = std::env::var("FIXTURE") {
        args.filter.get_or_insert(f);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize().unwrap();
    let dir = repo.join("crates/differ/tests/fixtures");
    let bin = Path::new(env!("CARGO_BIN_EXE_create-diff-object"));
    let cache = debian::Cache::from_env();
    // Keeps the wrapper script alive until the trials have run.
    let work = tempfile::tempdir().unwrap();
    let skip = match debian::BuildRoot::existing(&cache, "trixie") {
        None => Some(testgate::skip(&format!(
            "no trixie build root in {} (kpatch-build -a trixie or testbed prepare --series \
             trixie creates it)",
            cache.root().display()
        ))),
        Some(root) => {
            // A `CC` that runs the root's gcc-14 with the fixtures' directories (the work
            // directories under $TMPDIR and this repository) mounted at their own paths.
            let tmp = std::env::temp_dir().canonicalize().unwrap();
            let script = root.wrapper_script("x86_64-linux-gnu-gcc-14", &[&tmp, &repo]);
            let cc = work.path().join("gcc-14");
            std::fs::write(&cc, script).unwrap();
            std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::env::set_var("CC", &cc);
            fixture_support::unsupported_host().map(|why| {
                testgate::Skip::Fail(format!(
                    "cannot run gcc-14 of {}: {why}",
                    root.dir.display()
                ))
            })
        }
    };
    match fixture_support::trials(&dir, bin, skip.as_ref()) {
        Ok(trials) => libtest_mimic::run(&args, trials).exit_code(),
        Err(e) => {
            eprintln!("fixtures_gcc14: {e}");
            ExitCode::FAILURE
        }
    }
}
