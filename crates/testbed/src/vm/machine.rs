//! A running Debian guest: `qemu-system-x86_64 -accel tcg` booting the disk image
//! through UEFI, driven over SSH (forwarded to 127.0.0.1 only), with its serial console
//! in a file and a QMP socket for a hard reset.
//!
//! A [`Machine`] holds the test bed's boot lock for its whole life: the guest keeps the
//! host's cores busy, and only one guest runs at a time on the machine.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::firmware::Firmware;
use super::image::DebianImage;
use crate::error::{Error, IoContext, Result};
use crate::util::{display, run, tail, FileLock};

/// How to run the guest.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// UEFI with or without Secure Boot, and the MOKs.
    pub firmware: Firmware,
    /// MiB of memory.
    pub memory_mb: u32,
    /// vCPUs.
    pub smp: u32,
    /// A host directory shared read-only over 9p, with its mount tag.
    pub share: Option<(PathBuf, String)>,
    /// Where QEMU dies whatever happens (a backstop for a test that hangs).
    pub hard_limit: Duration,
    /// Keep the run directory (overlay, console, variable store) here.
    pub keep_dir: Option<PathBuf>,
    /// The directory for tools installed on demand (`virt-fw-vars`).
    pub tools: PathBuf,
}

impl MachineConfig {
    /// UEFI without Secure Boot, 1.5 GiB, 2 vCPUs, a 40-minute backstop.
    pub fn new(tools: &Path) -> Self {
        MachineConfig {
            firmware: Firmware::Uefi { moks: Vec::new() },
            memory_mb: 1536,
            smp: 2,
            share: None,
            hard_limit: Duration::from_secs(2400),
            keep_dir: std::env::var_os("KPATCH_TESTBED_KEEP").map(PathBuf::from),
            tools: tools.to_path_buf(),
        }
    }
}

/// The running guest.
pub struct Machine {
    child: Child,
    /// Run directory: overlay disk, variable store, console log, QMP socket.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    console: PathBuf,
    qmp: PathBuf,
    ssh_key: PathBuf,
    /// The host port forwarded to the guest's port 22 (on 127.0.0.1).
    pub ssh_port: u16,
    /// When QEMU started.
    pub started: Instant,
    _lock: FileLock,
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").at("127.0.0.1:0")?;
    Ok(l.local_addr().at("127.0.0.1:0")?.port())
}

impl Machine {
    /// Boots a throw-away overlay of `image` (nothing is written to the image itself).
    pub fn start(image: &DebianImage, config: &MachineConfig) -> Result<Machine> {
        let lock = FileLock::acquire(&crate::guest::boot_lock_path())?;
        let (tmp, dir) = match &config.keep_dir {
            Some(base) => {
                let d = base.join(format!("debian-vm-{}", std::process::id()));
                fs::create_dir_all(&d).at(&d)?;
                (None, d)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kpatch-debian-vm-")
                    .tempdir()
                    .at(std::env::temp_dir())?;
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let overlay = dir.join("disk.qcow2");
        let _ = fs::remove_file(&overlay);
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&image.disk)
            .arg(&overlay))?;
        let vars = dir.join("vars.fd");
        config.firmware.write_vars(&config.tools, &vars)?;
        let console = dir.join("console.log");
        let qmp = dir.join("qmp.sock");
        let _ = fs::remove_file(&qmp);
        let ssh_port = free_port()?;
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL"])
            .arg(config.hard_limit.as_secs().to_string())
            .arg("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-nodefaults",
                "-no-user-config",
            ])
            .args(["-display", "none", "-rtc", "base=utc"])
            .args(config.firmware.machine_args())
            .args(["-m", &config.memory_mb.to_string()])
            .args(["-smp", &config.smp.to_string()])
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                config.firmware.code()
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ))
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"
            ))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()));
        if let Some((path, tag)) = &config.share {
            cmd.arg("-virtfs").arg(format!(
                "local,path={},mount_tag={tag},security_model=none,readonly=on",
                path.display()
            ));
        }
        let qemu_log = dir.join("qemu.log");
        let log = fs::File::create(&qemu_log).at(&qemu_log)?;
        let log2 = log.try_clone().at(&qemu_log)?;
        let command = display(&cmd);
        tracing::info!(%command, "starting the Debian guest");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| Error::Spawn { command, source })?;
        Ok(Machine {
            child,
            dir,
            _tmp: tmp,
            console,
            qmp,
            ssh_key: image.ssh_key.clone(),
            ssh_port,
            started: Instant::now(),
            _lock: lock,
        })
    }

    /// Everything the serial console printed so far (escape sequences and all).
    pub fn console_text(&self) -> String {
        fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Bytes the console has printed so far (a mark for [`Machine::wait_console`]).
    pub fn console_mark(&self) -> usize {
        fs::metadata(&self.console).map_or(0, |m| m.len() as usize)
    }

    fn failure(&self, what: &str) -> Error {
        let qemu = fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default();
        Error::GuestFailed(format!(
            "{what}\n--- console (last lines) ---\n{}\n--- qemu ---\n{}",
            tail(&strip_ansi(&self.console_text()), 40),
            tail(&qemu, 10)
        ))
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(self.failure(&format!("QEMU exited ({status})")));
        }
        Ok(())
    }

    /// Waits until the console shows `needle` after byte `from`; returns when (since
    /// QEMU started).
    pub fn wait_console(&mut self, needle: &str, from: usize, limit: Duration) -> Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.console_text();
            if text.get(from..).is_some_and(|t| t.contains(needle)) {
                return Ok(self.started.elapsed());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self.failure(&format!(
                    "the console did not show {needle:?} within {limit:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The `ssh` command for this guest (`root@127.0.0.1`, the image's key, no host-key
    /// checks: the guest is new every run).
    pub fn ssh_command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_options())
            .arg("-p")
            .arg(self.ssh_port.to_string())
            .arg("root@127.0.0.1");
        c
    }

    /// Options for `ssh`/`scp`/Ansible.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.ssh_key.display().to_string(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ]
    }

    /// root's private key.
    pub fn ssh_key(&self) -> &Path {
        &self.ssh_key
    }

    /// Waits until SSH answers; returns when (since QEMU started).
    pub fn wait_ssh(&mut self, limit: Duration) -> Result<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self
                .ssh_command()
                .arg("true")
                .stdin(Stdio::null())
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return Ok(self.started.elapsed());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(self.failure(&format!("SSH did not answer within {limit:?}")));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Runs `script` with bash in the guest (on its standard input); the output whatever
    /// the exit status.
    pub fn sh(&self, script: &str) -> Result<Output> {
        let mut cmd = self.ssh_command();
        cmd.args(["bash", "-s"]);
        let command = format!("ssh … bash -s <<< {script:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(script.as_bytes());
        }
        child
            .wait_with_output()
            .map_err(|source| Error::Spawn { command, source })
    }

    /// Runs `script` (bash, `set -e`) in the guest and returns its standard output;
    /// fails with both outputs when it exits non-zero.
    pub fn sh_ok(&self, script: &str) -> Result<String> {
        let out = self.sh(&format!("set -e\n{script}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(Error::GuestFailed(format!(
                "in the guest: {script}\nexit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                out.status,
                tail(&stdout, 40),
                tail(&String::from_utf8_lossy(&out.stderr), 40)
            )));
        }
        Ok(stdout)
    }

    /// Copies host files into a guest directory (`scp`).
    pub fn copy_to(&self, files: &[&Path], guest_dir: &str) -> Result<()> {
        let mut c = Command::new("scp");
        c.args(self.ssh_options())
            .arg("-P")
            .arg(self.ssh_port.to_string())
            .args(files)
            .arg(format!("root@127.0.0.1:{guest_dir}"));
        run(&mut c).map(drop)
    }

    /// Copies a guest file to the host.
    pub fn copy_from(&self, guest_file: &str, host: &Path) -> Result<()> {
        let mut c = Command::new("scp");
        c.args(self.ssh_options())
            .arg("-P")
            .arg(self.ssh_port.to_string())
            .arg(format!("root@127.0.0.1:{guest_file}"))
            .arg(host);
        run(&mut c).map(drop)
    }

    /// `systemctl reboot` in the guest; returns the console mark and the time it was
    /// asked (the next boot's console output comes after the mark).
    pub fn reboot(&self) -> Result<(usize, Instant)> {
        let mark = self.console_mark();
        let at = Instant::now();
        // The connection may drop before ssh reports the command's status.
        let _ = self
            .ssh_command()
            .arg("systemctl reboot")
            .stdin(Stdio::null())
            .output();
        Ok((mark, at))
    }

    /// A hard reset, as the reset button does (QMP `system_reset`): nothing in the guest
    /// runs or flushes anything first.
    pub fn hard_reset(&self) -> Result<()> {
        self.qmp("system_reset")
    }

    fn qmp(&self, command: &str) -> Result<()> {
        let stream = std::os::unix::net::UnixStream::connect(&self.qmp).at(&self.qmp)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .at(&self.qmp)?;
        let mut reader = BufReader::new(stream.try_clone().at(&self.qmp)?);
        let mut w = stream;
        let mut line = String::new();
        reader.read_line(&mut line).at(&self.qmp)?; // greeting
        for cmd in ["qmp_capabilities", command] {
            writeln!(w, "{{\"execute\": \"{cmd}\"}}").at(&self.qmp)?;
            loop {
                line.clear();
                if reader.read_line(&mut line).at(&self.qmp)? == 0 {
                    return Err(self.failure(&format!("QMP closed during {cmd}")));
                }
                if line.contains("\"return\"") {
                    break;
                }
                if line.contains("\"error\"") {
                    return Err(self.failure(&format!("QMP {cmd}: {line}")));
                }
            }
        }
        Ok(())
    }

    /// Powers the guest off and waits for QEMU to exit.
    pub fn poweroff(mut self) -> Result<()> {
        let _ = self
            .ssh_command()
            .arg("systemctl poweroff")
            .stdin(Stdio::null())
            .output();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = self.qmp("quit");
        Ok(())
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.qmp("quit");
            std::thread::sleep(Duration::from_millis(500));
        }
        if let Ok(None) = self.child.try_wait() {
            // `timeout` leads QEMU's process group: kill both.
            match i32::try_from(self.child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                Some(pgid) => {
                    let _ =
                        rustix::process::kill_process_group(pgid, rustix::process::Signal::Kill);
                }
                None => {
                    let _ = self.child.kill();
                }
            }
        }
        let _ = self.child.wait();
    }
}

/// The console without terminal escape sequences.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_are_removed() {
        let t = "\u{1b}[0;32m  OK  \u{1b}[0m] Started x\r\n\u{1b}[2J\u{1b}[01;01Hlogin:";
        assert_eq!(super::strip_ansi(t), "  OK  ] Started x\nlogin:");
    }
}
