//! Running the build's commands (`make`, `ld`, `tar`, ...): each in its own process
//! group, so that an interrupted build can stop it and everything it started, with its
//! command line and full output in the build's log.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::error::{step, step_hint, Result};
use crate::interrupt;
use crate::progress::Progress;

/// How many lines of a failed command's output the error shows.
const TAIL_LINES: usize = 15;

/// The command line as it would be typed (for the log).
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        s.push(' ');
        if a.is_empty() || a.contains([' ', '\t', '\'', '"']) {
            s.push_str(&format!("'{}'", a.replace('\'', r"'\''")));
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Like [`run`], but a command that fails is not an error: its output is returned all
/// the same (a dry run whose planning is what counts). Signals are handled as in [`run`].
pub fn run_lenient(cmd: &mut Command, what: &str, p: &mut Progress) -> Result<String> {
    collect(cmd, what, None, p).map(|(_, text)| text)
}

/// Read the child's output to the end; with `counted` (the number of objects make is
/// asked for), count kbuild's `  CC` / `  CPP` lines as they come on the phase's bar.
fn read_counting(
    mut from: std::fs::File,
    bytes: &mut Vec<u8>,
    counted: Option<u64>,
    p: &mut Progress,
) -> std::io::Result<usize> {
    let Some(total) = counted else {
        return from.read_to_end(bytes);
    };
    let mut buf = [0u8; 8192];
    let mut done = 0u64;
    let mut line_start = 0usize;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(bytes.len());
        }
        bytes.extend_from_slice(&buf[..n]);
        while let Some(nl) = bytes[line_start..].iter().position(|&b| b == b'\n') {
            let line = &bytes[line_start..line_start + nl];
            if line.starts_with(b"  CC ")
                || line.starts_with(b"  CC [M] ")
                || line.starts_with(b"  CPP ")
            {
                done += 1;
                p.count(done, total);
            }
            line_start += nl + 1;
        }
    }
}

/// [`run`] for a `make` of `objects` targets: its progress shown as a count with the
/// estimated time left.
pub fn run_counted(
    cmd: &mut Command,
    what: &str,
    objects: usize,
    p: &mut Progress,
) -> Result<String> {
    let got = collect(cmd, what, Some(objects as u64), p)?;
    finish(cmd, what, got, p)
}

/// Spawn `cmd` in its own process group, registered with [`interrupt`], and collect its
/// exit status and combined output (also written to the log).
fn collect(
    cmd: &mut Command,
    what: &str,
    counted: Option<u64>,
    p: &mut Progress,
) -> Result<(std::process::ExitStatus, String)> {
    interrupt::check()?;
    p.debug(&format!("{what}: {}", display(cmd)));
    // One pipe for stdout and stderr, so that the log has the compiler's messages where
    // make printed them.
    let (read, write) =
        rustix::pipe::pipe().map_err(|e| step(format!("{what}: cannot make a pipe: {e}")))?;
    let write2 = write
        .try_clone()
        .map_err(|e| step(format!("{what}: cannot make a pipe: {e}")))?;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write2));
    let spawned = cmd.spawn();
    // Our copies of the write end go with the Command's, so that reading ends with the
    // child's output.
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child =
        spawned.map_err(|e| step(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))?;
    let pgid = child.id();
    interrupt::started(pgid);
    let mut bytes = Vec::new();
    let read_result = read_counting(std::fs::File::from(read), &mut bytes, counted, p);
    let status = child.wait();
    interrupt::finished(pgid);
    let status = status.map_err(|e| step(format!("{what}: {e}")))?;
    read_result.map_err(|e| step(format!("{what}: reading its output: {e}")))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    p.output(what, &text);
    interrupt::check()?;
    Ok((status, text))
}

/// Run `cmd` (`what` says what it does) in a process group of its own; return its
/// output (stdout and stderr as they came). On failure the error carries the last lines of the
/// output, and the log the whole of it. After a signal, the group is stopped and the
/// result is [`crate::Error::Interrupted`].
pub fn run(cmd: &mut Command, what: &str, p: &mut Progress) -> Result<String> {
    let got = collect(cmd, what, None, p)?;
    finish(cmd, what, got, p)
}

fn finish(
    cmd: &Command,
    what: &str,
    (status, text): (std::process::ExitStatus, String),
    p: &mut Progress,
) -> Result<String> {
    if status.success() {
        return Ok(text);
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    let hint = match p.log_path() {
        Some(log) => format!("the whole output is in {}", log.display()),
        None => format!("run `{}` to see the whole output", display(cmd)),
    };
    Err(step_hint(
        format!("{what} failed ({}):\n    {}", status, tail.join("\n    ")),
        hint,
    ))
}
