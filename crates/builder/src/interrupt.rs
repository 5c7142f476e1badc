//! Interruption. SIGINT, SIGTERM and SIGHUP do not kill kpatch-build: a thread catches
//! them, stops the build's child processes (each runs in its own process group, see
//! [`crate::cmd`]), and the build unwinds through its ordinary error path, which puts the
//! kernel tree back (the journal) before the release lock is released. A third signal
//! exits at once, after killing the children; the next build then rolls the journal back.
//!
//! A build that is killed outright (SIGKILL) cannot do that, and its children may go on
//! writing in the tree. So every child's process group is also recorded in a file of the
//! release's cache; the next build kills what is left of those groups before it rolls
//! the journal back ([`reap`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::error::{io, step, Error, Result};

/// The first signal received (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);
static GROUPS: Mutex<Groups> = Mutex::new(Groups {
    running: Vec::new(),
    record: None,
});

/// How long children get to exit after SIGTERM before they are killed.
const GRACE: Duration = Duration::from_secs(3);

struct Groups {
    running: Vec<i32>,
    record: Option<PathBuf>,
}

fn groups() -> std::sync::MutexGuard<'static, Groups> {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The name of a signal number, for messages.
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Catch SIGINT, SIGTERM and SIGHUP for the rest of the process (kpatch-build calls it
/// first thing).
pub fn install() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| step(format!("cannot catch signals: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })
        .map_err(|e| step(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

fn on_signal(sig: i32) {
    let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    let n = COUNT.fetch_add(1, Ordering::SeqCst);
    let running: Vec<i32> = groups().running.clone();
    if n >= 2 {
        eprintln!(
            "kpatch-build: {}: exiting now; the next build restores the kernel tree",
            signal_name(sig)
        );
        for g in &running {
            kill_group(*g, Signal::Kill);
        }
        std::process::exit(128 + sig);
    }
    if n == 0 {
        eprintln!(
            "kpatch-build: {}: stopping, and restoring the kernel tree",
            signal_name(sig)
        );
    }
    for g in &running {
        kill_group(*g, Signal::Term);
    }
}

/// The signal that interrupts the build, if one came.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// `Err(Error::Interrupted)` once a signal came: called between steps.
pub fn check() -> Result<()> {
    match received() {
        None => Ok(()),
        Some(s) => Err(Error::Interrupted(s)),
    }
}

/// Test hook: with `KPATCH_BUILD_PAUSE=<point>` in the environment, the first time the
/// build reaches `point` it says `kpatch-build: paused at <point>` on stderr and waits
/// there until a signal comes (at most a minute), so that a test can interrupt it at
/// that moment. Points: `apply` (after the first file of the patch is written).
pub fn pause_point(point: &str) {
    static PAUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("KPATCH_BUILD_PAUSE").ok().as_deref() != Some(point)
        || PAUSED.swap(true, Ordering::SeqCst)
    {
        return;
    }
    eprintln!("kpatch-build: paused at {point}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while received().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Record children's process groups in `path` from now on (`None`: stop recording).
pub fn record_children_in(path: Option<&Path>) {
    groups().record = path.map(Path::to_path_buf);
}

/// A child process group started (its leader's pid is the group id).
pub(crate) fn started(pgid: u32) {
    let pgid = pgid as i32;
    let mut g = groups();
    g.running.push(pgid);
    if let Some(path) = &g.record {
        if let Some(start) = start_time(pgid) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{pgid} {start}");
            }
        }
    }
    drop(g);
    // A signal that came before the group was listed has not stopped it.
    if received().is_some() {
        kill_group(pgid, Signal::Term);
    }
}

/// A child's leader exited. After an interruption, wait until its whole group is gone
/// (killing what outlives the grace period), so that nothing writes in the tree when
/// the build puts it back.
pub(crate) fn finished(pgid: u32) {
    let pgid = pgid as i32;
    groups().running.retain(|g| *g != pgid);
    if received().is_some() {
        stop_group(pgid, 0);
    }
}

fn kill_group(pgid: i32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

/// `(pgrp, starttime)` of a live process (not a zombie), from `/proc/<pid>/stat`.
fn stat(pid: &str) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) ... starttime(22).
    if *f.first()? == "Z" {
        return None;
    }
    Some((f.get(2)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

fn start_time(pid: i32) -> Option<u64> {
    stat(&pid.to_string()).map(|(_, s)| s)
}

/// Processes of group `pgid` that started at or after `since` (clock ticks since boot).
fn members(pgid: i32, since: u64) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| stat(name))?
        })
        .filter(|(g, start)| *g == pgid && *start >= since)
        .count()
}

/// Terminate group `pgid` (members started at or after `since`), wait for it to be gone.
fn stop_group(pgid: i32, since: u64) {
    let deadline = Instant::now() + GRACE;
    let mut killed = false;
    while members(pgid, since) > 0 {
        if !killed && Instant::now() >= deadline {
            kill_group(pgid, Signal::Kill);
            killed = true;
        } else if !killed {
            kill_group(pgid, Signal::Term);
        }
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() >= deadline + GRACE * 4 {
            break;
        }
    }
}

/// Kill what is left of the process groups a dead build recorded in `path` (the
/// groups' members that started no earlier than their recorded leader, so that a
/// recycled group id is left alone), then empty the record. The number of groups
/// that were still there.
pub fn reap(path: &Path) -> Result<usize> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(path)(e)),
    };
    let mut alive = 0;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(Ok(pgid)), Some(Ok(since))) = (
            it.next().map(str::parse::<i32>),
            it.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        if pgid > 1 && members(pgid, since) > 0 {
            alive += 1;
            kill_group(pgid, Signal::Kill);
            stop_group(pgid, since);
        }
    }
    std::fs::write(path, "").map_err(io(path))?;
    Ok(alive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn orphaned_groups_are_reaped_and_others_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let record = d.path().join("children");
        // A "build" that left a process group behind: sh and its sleep child.
        let mut orphan = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & sleep 60; wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = orphan.id() as i32;
        std::thread::sleep(Duration::from_millis(200));
        let start = start_time(pgid).unwrap();
        assert_eq!(members(pgid, start), 3);
        // A recycled id: a group recorded with a later start time is not touched.
        std::fs::write(&record, format!("{pgid} {}\n", start + 1_000_000)).unwrap();
        assert_eq!(reap(&record).unwrap(), 0);
        assert_eq!(members(pgid, start), 3);
        std::fs::write(&record, format!("{pgid} {start}\n")).unwrap();
        assert_eq!(reap(&record).unwrap(), 1);
        let _ = orphan.wait();
        assert_eq!(members(pgid, start), 0);
        assert_eq!(std::fs::read_to_string(&record).unwrap(), "");
    }
}
