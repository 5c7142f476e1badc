//! Errors of the test bed.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while preparing, building or booting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] pathio::PathError),
    /// A program could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    /// A program ran and failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    /// apt metadata did not say what we needed.
    #[error("apt: {0}")]
    Apt(String),
    /// Host packages are missing and could not be installed.
    #[error(
        "missing host packages: {}; run `testbed prepare` as root or `apt-get install {}`",
        .0.join(" "),
        .0.join(" ")
    )]
    MissingHostPackages(Vec<String>),
    /// The cache holds something unexpected.
    #[error("cache: {0}")]
    Cache(String),
    /// An out-of-tree module build failed.
    #[error("module build in {dir} failed:\n{log}")]
    ModuleBuild { dir: PathBuf, log: String },
    /// A scenario or initramfs was described wrongly.
    #[error("invalid test-bed input: {0}")]
    Invalid(String),
    /// The guest did not power off in time and was killed.
    #[error(
        "guest killed after the hard timeout of {timeout:?}\n--- console (last lines) ---\n{console_tail}\n--- init output (last lines) ---\n{init_tail}"
    )]
    Timeout {
        timeout: Duration,
        console_tail: String,
        init_tail: String,
    },
    /// The guest ran, but the scenario or the kernel failed.
    #[error("guest run failed:\n{0}")]
    GuestFailed(String),
    /// An unknown kernel series name was given.
    #[error("unknown kernel target: {0}")]
    UnknownSeries(String),
    /// The Debian layer failed (resolution, download, build root).
    #[error(transparent)]
    Debian(#[from] debian::Error),
}

/// Result with the test bed's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attaches a path to an I/O error: the workspace's [`pathio::PathError`], as this
/// crate's [`Error::Io`].
pub(crate) trait IoContext<T> {
    fn at(self, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<std::path::Path>) -> Result<T> {
        Ok(pathio::IoContext::at(self, path)?)
    }
}
