//! An exclusive lock on a cache directory, so two builds never share a tree at once.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use rustix::fs::{flock, FlockOperation};

use crate::error::{io, step_hint, Result};
use crate::progress::Progress;

/// Held for as long as the value lives.
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Take the lock on `path` (created if need be), waiting for another build that holds
    /// it; a signal ends the wait ([`crate::interrupt`]).
    pub fn acquire(path: &Path, p: &mut Progress) -> Result<Lock> {
        // Never truncate: the file is only a lock.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        let mut said = false;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Lock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    if !said {
                        p.note(&format!(
                            "waiting for another kpatch-build using {}",
                            path.display()
                        ));
                        said = true;
                    }
                    crate::interrupt::check()?;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(step_hint(
                        format!("cannot lock {}: {e}", path.display()),
                        "is the cache directory on a local file system?",
                    ))
                }
            }
        }
    }
}
