// SPDX-License-Identifier: GPL-2.0-only
//! # dist: kpatch-rs as a Debian package
//!
//! [`project_package`] builds `kpatch-rs_<version>_amd64.deb` from the release binaries:
//!
//! | path | what |
//! |---|---|
//! | `/usr/sbin/kpatch` | the runtime tool (stripped) |
//! | `/usr/bin/kpatch-build` | the builder |
//! | `/usr/libexec/kpatch/create-diff-object`, `create-klp-module` | upstream-compatible low-level tools |
//! | `/lib/systemd/system/kpatch.service` | `contrib/kpatch.service`, enabled on installation |
//! | `/usr/share/man/man8/kpatch*.8.gz`, `man1/kpatch-build.1.gz` | man pages generated from the clap definitions (one per subcommand) |
//! | `/usr/share/lintian/overrides/kpatch-rs` | the tags that do not apply, with the reasons |
//! | `/usr/share/bash-completion/completions/`, `/usr/share/zsh/vendor-completions/` | completions, likewise |
//!
//! The man pages and completions come from the binaries themselves
//! (`kpatch --generate man DIR|bash|zsh`, see the `clidoc` crate), so the flags are defined
//! once. Dependencies are computed by `dpkg-shlibdeps`, as debhelper would. The
//! `kpatch-dist` command runs it: `cargo run --release -p dist -- deb`.
//!
//! The crate's tests deploy the packages on a real Debian 12 system (see `tests/`).

#![warn(missing_docs)]

mod project;

pub use project::{project_package, systemd_scripts, ProjectOptions, BINARIES};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Building the package failed.
    #[error(transparent)]
    Deb(#[from] debpkg::Error),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] pathio::PathError),
    /// A tool failed.
    #[error("{0}")]
    Tool(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The workspace's root directory (where `contrib/` is).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
