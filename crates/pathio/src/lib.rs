//! File-system errors that say which path they happened on, and atomic writes.
//!
//! Every crate of the workspace reports I/O failures the same way: `<path>: <error>`.
//! [`PathError`] is that error; [`IoContext::at`] attaches a path to an `io::Result`, and
//! each crate's error type wraps [`PathError`] in one `Io` variant (`#[from]`).

#![warn(missing_docs)]

use std::io;
use std::path::{Path, PathBuf};

/// An I/O error on a named path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    /// The file or directory the operation was on.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

impl PathError {
    /// The error `source` on `path`.
    pub fn new(path: impl AsRef<Path>, source: io::Error) -> Self {
        PathError {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Attaches a path to an I/O result.
pub trait IoContext<T> {
    /// The result, its error naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T, PathError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, PathError> {
        self.map_err(|e| PathError::new(path, e))
    }
}

/// Writes `bytes` to a temporary file next to `path` and renames it into place, so
/// that `path` never holds a partial file. The temporary file is removed on failure.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), PathError> {
    let path = path.as_ref();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file}.tmp{}", std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.at(path)
}

/// The UTC calendar date and time `secs` seconds after the epoch (proleptic Gregorian):
/// `(year, month, day, hour, minute, second)`, for the time stamps of file names and
/// listings.
pub fn utc_civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_the_path() {
        let e = std::fs::read("/nonexistent/x")
            .at("/nonexistent/x")
            .unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/x: "), "{e}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.o");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A directory in the way: an error naming the path, no temporary left behind.
        let d = dir.path().join("sub");
        std::fs::create_dir(&d).unwrap();
        let e = write_atomic(&d, b"x").unwrap_err();
        assert_eq!(e.path, d);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
