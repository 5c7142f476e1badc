//! Fixture-driven end-to-end tests of `create-diff-object`.
//!
//! Each fixture is one C file, `crates/differ/tests/fixtures/<name>.c`, compiled twice
//! with kernel-like flags: without and with `-DPATCHED`. The original object's own
//! `readelf -s --wide` output plays the parent symbol table (as in upstream kpatch's
//! unit tests), Module.symvers is `/dev/null`, and the struct sizes are upstream's
//! x86_64 defaults. The fixture states what must happen in `//#Key: value` comment
//! lines (see [`Directives`] and `crates/differ/tests/fixtures/README.md`).
//!
//! Environment: `FIXTURE=<substring>` runs only matching fixtures; `FIXTURES_KEEP=1`
//! keeps (and prints) each fixture's work directory; `CC` overrides `gcc`.

mod fixture_support;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fixture_support::{run_fixture, Fixture, Outcome};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/differ/tests/fixtures")
}

fn main() -> ExitCode {
    // libtest-style flags (`--nocapture`, a filter, ...) are accepted and ignored,
    // except a bare filter word, which selects fixtures like FIXTURE does.
    let mut arg_filter = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if matches!(
            a.as_str(),
            "--test-threads" | "--skip" | "--format" | "--color" | "--logfile" | "-Z"
        ) {
            args.next();
        } else if !a.starts_with('-') {
            arg_filter = Some(a);
        }
    }
    let filter = std::env::var("FIXTURE").ok().or(arg_filter);

    if let Some(why) = fixture_support::unsupported_host() {
        println!("fixtures: skipped: {why}");
        return ExitCode::SUCCESS;
    }

    let dir = fixtures_dir();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "c"))
            .collect(),
        Err(e) => {
            println!("fixtures: can't read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    paths.sort();

    let bin = Path::new(env!("CARGO_BIN_EXE_create-diff-object"));
    let (mut passed, mut failed, mut known) = (0, 0, 0);
    for path in &paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let outcome = match Fixture::load(path) {
            Ok(f) => run_fixture(&f, bin, &dir.join("include")),
            Err(e) => Outcome::Fail(vec![format!("bad fixture: {e}")]),
        };
        match outcome {
            Outcome::Pass => {
                passed += 1;
                println!("fixture {name} ... ok");
            }
            Outcome::KnownBug(why, observed) => {
                known += 1;
                println!("fixture {name} ... known bug, skipped ({why})");
                let first = observed.first().and_then(|o| o.lines().next());
                println!("    observed: {}", first.unwrap_or("?"));
            }
            Outcome::Fail(reasons) => {
                failed += 1;
                println!("fixture {name} ... FAILED");
                for r in reasons {
                    for line in r.lines() {
                        println!("    {line}");
                    }
                }
            }
        }
    }
    println!("\nfixtures: {passed} passed, {failed} failed, {known} known bugs (skipped)");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
