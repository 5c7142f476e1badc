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

    let bin = Path::new(env!("CARGO_BIN_EXE_create-diff-object"));
    fixture_support::run_all(&fixtures_dir(), bin, filter.as_deref())
}
