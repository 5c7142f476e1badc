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

use libtest_mimic::Arguments;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/differ/tests/fixtures")
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    if let Ok(f) = std::env::var("FIXTURE") {
        args.filter.get_or_insert(f);
    }
    let skip = fixture_support::unsupported_host().map(|why| testgate::skip(&why));
    let dir = fixtures_dir();
    let bin = Path::new(env!("CARGO_BIN_EXE_create-diff-object"));
    match fixture_support::trials(&dir, bin, skip.as_ref()) {
        Ok(trials) => libtest_mimic::run(&args, trials).exit_code(),
        Err(e) => {
            eprintln!("fixtures: {e}");
            ExitCode::FAILURE
        }
    }
}
