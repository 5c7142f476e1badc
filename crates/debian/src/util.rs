//! Running commands, file locks, sizes.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use crate::error::{io, Error, Result};

/// A command line for messages.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; its stdout and stderr together, or an error with their tail.
pub fn run(cmd: &mut Command) -> Result<String> {
    let command = display(cmd);
    tracing::debug!(%command, "run");
    let out = cmd.output().map_err(|e| Error::Command {
        command: command.clone(),
        status: "not started".into(),
        output: e.to_string(),
    })?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            output: tail(&text, 30),
        });
    }
    Ok(text)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An exclusive `flock` held until drop.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock on `path` (created if needed), waiting for other holders.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            tracing::info!(lock = %path.display(), "waiting for another process");
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
                Error::Io {
                    path: path.display().to_string(),
                    source: e.into(),
                }
            })?;
        }
        Ok(FileLock { _file: file })
    }
}

/// Disk usage of a tree in bytes (allocated blocks, hard links counted once per call),
/// without following symbolic links.
pub fn disk_usage(path: &Path) -> u64 {
    usage(path, &mut Default::default())
}

/// As [`disk_usage`], counting files already in `seen` (by device and inode) as free.
pub fn usage(path: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
        return 0;
    }
    let mut total = m.blocks() * 512;
    if m.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                total += usage(&e.path(), seen);
            }
        }
    }
    total
}

/// `1.2 GB`-style sizes.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
