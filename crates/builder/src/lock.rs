//! An exclusive lock on a cache directory, so two builds never share a tree at once.

use std::fs::File;
use std::path::Path;

use crate::error::{io, step_hint, Result};

pub struct Lock {
    _file: File,
}

impl Lock {
    pub fn acquire(path: &Path) -> Result<Lock> {
        let file = File::create(path).map_err(io(path))?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            eprintln!("waiting for another kpatch-build using {}", path.display());
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
                step_hint(
                    format!("cannot lock {}: {e}", path.display()),
                    "is the cache directory on a local file system?",
                )
            })?;
        }
        Ok(Lock { _file: file })
    }
}
