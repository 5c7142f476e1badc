//! The differ's C fixtures compiled with Debian 13's compiler (gcc-14, which orders and
//! names local symbols differently from gcc-12: sympos, `.cold`, `.part.N`, `.constprop.N`),
//! run in the trixie build root that kpatch-build and the test bed create
//! (`kpatch-build -a trixie` or `testbed prepare --series trixie`).
//!
//! Without that root the run is skipped and says so; under `CI=true` that is a failure.

mod fixture_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("FIXTURE").ok());
    let cache = debian::Cache::from_env();
    let Some(root) = debian::BuildRoot::existing(&cache, "trixie") else {
        println!(
            "fixtures_gcc14: skipped: no trixie build root in {} (kpatch-build -a trixie or \
             testbed prepare --series trixie creates it)",
            cache.root().display()
        );
        return if std::env::var("CI").is_ok_and(|v| v == "true") {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    };
    // A `CC` that runs the root's gcc-14 with the fixtures' directories (the work
    // directories under $TMPDIR and this repository) mounted at their own paths.
    let work = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let repo = repo.canonicalize().unwrap();
    let tmp = std::env::temp_dir().canonicalize().unwrap();
    let script = root.wrapper_script("x86_64-linux-gnu-gcc-14", &[&tmp, &repo]);
    let cc = work.path().join("gcc-14");
    std::fs::write(&cc, script).unwrap();
    std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::env::set_var("CC", &cc);
    if let Some(why) = fixture_support::unsupported_host() {
        println!(
            "fixtures_gcc14: cannot run gcc-14 of {}: {why}",
            root.dir.display()
        );
        return ExitCode::FAILURE;
    }
    let dir = repo.join("crates/differ/tests/fixtures");
    let bin = Path::new(env!("CARGO_BIN_EXE_create-diff-object"));
    fixture_support::run_all(&dir, bin, filter.as_deref())
}
