//! Fixture-driven end-to-end tests of `create-diff-object`.
//!
//! Each fixture is one C file, `crates/differ/tests/fixtures/<name>.c`, compiled twice
//! with kernel-like flags: without and with `-DPATCHED`. The original object's own
//! `readelf -s --wide` output plays the parent symbol table (as in upstream kpatch's
//! unit tests), Module.symvers is `/dev/null`, and the struct sizes are those of
//! Debian's x86_64 kernels (see the fixtures' README). The fixture states what must happen in `//#Key: value` comment
//! lines (see [`Directives`] and `crates/differ/tests/fixtures/README.md`).
//!
//! Each fixture is one test of this harness (libtest-mimic): `cargo test --test fixtures --
//! cold` runs those whose name contains `cold`, as `FIXTURE=cold` does. Without gcc or
//! binutils the fixtures show as ignored (and fail under `CI=true`). `FIXTURES_KEEP=1`
//! keeps (and prints) each fixture's work directory; `CC` overrides `gcc`.

mod fixture_support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fixture_support::{run_fixture, Fixture, Outcome};
use libtest_mimic::{Arguments, Failed, Trial};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/differ/tests/fixtures")
}

/// One fixture as a test: ok when every expectation holds (or, for a `//#Known-bug`
/// fixture, when the known wrong behaviour still reproduces: it is listed as `known-bug`).
fn trial(path: PathBuf, skip: Option<&testgate::Skip>) -> Trial {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fixture = Fixture::load(&path);
    let known_bug = fixture.as_ref().is_ok_and(|f| f.d.known_bug.is_some());
    let failure = match skip {
        Some(testgate::Skip::Fail(why)) => Some(why.clone()),
        _ => None,
    };
    let t = Trial::test(name, move || {
        if let Some(why) = failure {
            return Err(Failed::from(why));
        }
        let fixture = fixture.map_err(|e| format!("bad fixture: {e}"))?;
        let bin = Path::new(env!("CARGO_BIN_EXE_create-diff-object"));
        match run_fixture(&fixture, bin, &fixtures_dir().join("include")) {
            Outcome::Pass => Ok(()),
            Outcome::KnownBug(why, observed) => {
                let first = observed.first().and_then(|o| o.lines().next());
                println!("known bug ({why}); observed: {}", first.unwrap_or("?"));
                Ok(())
            }
            Outcome::Fail(reasons) => Err(Failed::from(reasons.join("\n"))),
        }
    });
    let t = if known_bug {
        t.with_kind("known-bug")
    } else {
        t
    };
    t.with_ignored_flag(skip == Some(&testgate::Skip::Ignore))
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    if let Ok(f) = std::env::var("FIXTURE") {
        args.filter.get_or_insert(f);
    }
    let skip = fixture_support::unsupported_host().map(|why| testgate::skip(&why));
    let dir = fixtures_dir();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "c"))
            .collect(),
        Err(e) => {
            eprintln!("fixtures: can't read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    paths.sort();
    let trials = paths.into_iter().map(|p| trial(p, skip.as_ref())).collect();
    libtest_mimic::run(&args, trials).exit_code()
}
