// SPDX-License-Identifier: GPL-2.0-only
//! The kernel's own words on a refused load: the livepatch core logs why it
//! refused a patch ("pre-patch callback failed for object 'vmlinux'", "... is
//! not compatible with the already installed livepatches") while
//! `finit_module` only returns an errno, which for a callback is whatever the
//! callback returned.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

/// Kernel log messages written after a point in time.
pub trait KernelLog {
    /// The messages logged since the reader was opened (or since the last call).
    fn new_messages(&mut self) -> Vec<String>;
}

/// `/dev/kmsg`, positioned at its end when opened.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    /// Opens `/dev/kmsg` for reading the records written from now on.
    pub fn open() -> io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open("/dev/kmsg")?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self { file })
    }
}

impl KernelLog for Kmsg {
    fn new_messages(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            // One record per read; EAGAIN when there is none left, EPIPE when
            // records were overwritten before we read them (go on).
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(parse_record(&buf[..n])),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => {}
                Err(_) => break,
            }
        }
        out
    }
}

/// The message of a `/dev/kmsg` record: `prio,seq,usec,flags;text\n[ KEY=value\n]...`.
fn parse_record(rec: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(rec);
    let first = text.lines().next()?;
    let (_, msg) = first.split_once(';')?;
    Some(msg.to_string())
}

/// The messages that concern loading patch module `name`: the livepatch
/// core's, and any that name the module (its callbacks may say why they
/// refused). The last few, in order.
pub fn relevant(messages: &[String], name: &str) -> Vec<String> {
    const KEEP: usize = 8;
    let hits: Vec<String> = messages
        .iter()
        .filter(|m| m.starts_with("livepatch:") || m.contains(name))
        .cloned()
        .collect();
    hits[hits.len().saturating_sub(KEEP)..].to_vec()
}

/// A reason for a refused load from what the kernel logged, when it says
/// more than the errno does.
pub fn refusal_from_log(messages: &[String]) -> Option<String> {
    if let Some(m) = messages
        .iter()
        .find(|m| m.contains("pre-patch callback failed"))
    {
        let object = m
            .split('\'')
            .nth(1)
            .map(|o| format!(" for {o}"))
            .unwrap_or_default();
        return Some(format!(
            "the patch's pre-patch callback{object} refused the patch (its return value is the \
             error below); nothing was patched and the module was unloaded"
        ));
    }
    if messages
        .iter()
        .any(|m| m.contains("is not compatible with the already installed"))
    {
        return Some(
            "it is not compatible with the loaded patches: an atomic-replace patch must keep \
             every system state (KPATCH_STATE) the loaded patches declare, at the same or a \
             higher version; the loaded patches stay as they are"
                .to_string(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_relevant_messages() {
        assert_eq!(
            parse_record(b"4,1234,5678,-;livepatch: pre-patch callback failed for object 'vmlinux'\n SUBSYSTEM=x\n").as_deref(),
            Some("livepatch: pre-patch callback failed for object 'vmlinux'")
        );
        let msgs: Vec<String> = [
            "random: crng init done",
            "livepatch: enabling patch 'livepatch_x'",
            "livepatch_x: refusing: the fix is already there",
            "livepatch: pre-patch callback failed for object 'vmlinux'",
        ]
        .map(String::from)
        .to_vec();
        let r = relevant(&msgs, "livepatch_x");
        assert_eq!(r.len(), 3);
        let why = refusal_from_log(&r).unwrap();
        assert!(
            why.contains("pre-patch callback for vmlinux refused"),
            "{why}"
        );
        let why = refusal_from_log(&["livepatch: Livepatch patch (livepatch_b) is not compatible with the already installed livepatches.".to_string()]).unwrap();
        assert!(why.contains("KPATCH_STATE"), "{why}");
        assert!(refusal_from_log(&msgs[..2]).is_none());
    }
}
