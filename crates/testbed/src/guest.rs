//! Booting a kernel under `qemu-system-x86_64 -accel tcg` with a hard timeout.
//!
//! Boots are serialised: within a process by a global mutex, across processes (cargo runs test
//! binaries one after another, but tests inside one binary in parallel, and developers may run
//! several) by an `flock` on [`boot_lock_path`]. A TCG guest keeps a host core busy, so running
//! two at once would make timings and timeouts unreliable on a 2-core machine.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cache::Kernel;
use crate::error::{Error, IoContext, Result};
use crate::initramfs::Initramfs;
use crate::report::BootReport;
use crate::scenario::Scenario;
use crate::util::{display, tail, FileLock};

static BOOT_MUTEX: Mutex<()> = Mutex::new(());

/// The cross-process boot lock: `$KPATCH_TESTBED_BOOT_LOCK` or `<tmp>/kpatch-testbed-boot.lock`.
pub fn boot_lock_path() -> PathBuf {
    std::env::var_os("KPATCH_TESTBED_BOOT_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kpatch-testbed-boot.lock"))
}

/// A guest configuration.
#[derive(Clone, Debug)]
pub struct Guest {
    kernel_image: PathBuf,
    memory_mb: u32,
    smp: u32,
    timeout: Duration,
    cmdline: Vec<String>,
    keep_dir: Option<PathBuf>,
}

/// Default kernel command line. `oops=panic panic=-1` plus QEMU's `-no-reboot` turn an oops
/// into an immediate QEMU exit; `loglevel=5` keeps routine messages off the console (dmesg
/// still has everything).
pub const DEFAULT_CMDLINE: &[&str] = &["console=ttyS0", "panic=-1", "oops=panic", "loglevel=5"];

impl Guest {
    /// A guest booting `kernel`'s `vmlinuz` through the BIOS, as a machine would (with
    /// KASLR): 1 GiB, one vCPU, 180 s hard timeout.
    pub fn new(kernel: &Kernel) -> Self {
        Self::with_image(&kernel.vmlinuz)
    }

    /// A faster guest (boot-and-check ≈4 s instead of ≈7 s): QEMU loads the ELF `vmlinux`
    /// extracted from the image and enters it through its PVH entry point, skipping the BIOS
    /// and the in-guest decompression. The kernel is the same, but **KASLR is off** (the
    /// decompressor is what randomises), so use [`Guest::new`] for anything where addresses
    /// matter (patch modules, relocations). Falls back to [`Guest::new`] if extraction fails.
    pub fn pvh(kernel: &Kernel) -> Self {
        match kernel.vmlinux_uncompressed() {
            Ok(vmlinux) => Self::with_image(&vmlinux),
            Err(e) => {
                tracing::warn!(error = %e, "no vmlinux to boot with PVH; booting the vmlinuz");
                Self::new(kernel)
            }
        }
    }

    /// A guest booting an arbitrary kernel image.
    pub fn with_image(image: &Path) -> Self {
        let timeout = std::env::var("KPATCH_TESTBED_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(180));
        Self {
            kernel_image: image.to_owned(),
            memory_mb: 1024,
            smp: 1,
            timeout,
            cmdline: DEFAULT_CMDLINE.iter().map(|s| (*s).to_owned()).collect(),
            keep_dir: std::env::var_os("KPATCH_TESTBED_KEEP").map(PathBuf::from),
        }
    }

    /// Hard timeout after which QEMU is killed.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Number of vCPUs.
    pub fn smp(mut self, n: u32) -> Self {
        self.smp = n.max(1);
        self
    }

    /// Memory in MiB.
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// Appends a kernel command-line parameter.
    pub fn append(mut self, param: &str) -> Self {
        self.cmdline.push(param.to_owned());
        self
    }

    /// Keeps the run directory (initramfs, logs) under `dir/<scenario>-<pid>-<n>`.
    pub fn keep_in(mut self, dir: &Path) -> Self {
        self.keep_dir = Some(dir.to_owned());
        self
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        self.cmdline.join(" ")
    }

    /// Adds the scenario to `initramfs`, boots it, and parses the result.
    ///
    /// `Err` means the test bed could not produce a result: QEMU missing or failing to start,
    /// or the hard timeout ([`Error::Timeout`], with the logs' tails). A completed boot whose
    /// steps failed, or whose kernel oopsed, is an `Ok` report that does not pass: see
    /// [`BootReport::ensure_passed`].
    pub fn run(&self, mut initramfs: Initramfs, scenario: &Scenario) -> Result<BootReport> {
        initramfs.add_scenario(scenario)?;
        let (dir_guard, dir) = self.run_dir(&scenario.name)?;
        let initrd = dir.join("initramfs.cpio.gz");
        initramfs.write(&initrd)?;
        let console = dir.join("console.log");
        let init_log = dir.join("init.log");
        let qemu_log = dir.join("qemu.log");

        // coreutils `timeout` is a backstop: it kills QEMU even if this process dies first.
        // It makes itself a process-group leader, so killing the group reaches QEMU too.
        let mut cmd = Command::new("timeout");
        cmd.args(["-s", "KILL"])
            .arg(format!("{}", self.timeout.as_secs() + 15))
            .arg("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-no-reboot", "-monitor", "none"])
        .args([
            "-m",
            &self.memory_mb.to_string(),
            "-smp",
            &self.smp.to_string(),
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", init_log.display()))
        .arg("-kernel")
        .arg(&self.kernel_image)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &self.cmdline()]);
        let command = display(&cmd);

        let _in_process = BOOT_MUTEX.lock().unwrap_or_else(|p| p.into_inner());
        let _across = FileLock::acquire(&boot_lock_path())?;
        tracing::info!(scenario = %scenario.name, %command, "booting");
        let qlog = fs::File::create(&qemu_log).at(&qemu_log)?;
        let qlog2 = qlog.try_clone().at(&qemu_log)?;
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(qlog)
            .stderr(qlog2)
            .spawn()
            .map_err(|source| Error::Spawn {
                command: command.clone(),
                source,
            })?;
        let mut first_console = None;
        let mut init_started = None;
        let status = loop {
            if let Some(status) = child.try_wait().at(&qemu_log)? {
                break status;
            }
            let elapsed = start.elapsed();
            if first_console.is_none() && file_len(&console) > 0 {
                first_console = Some(elapsed);
            }
            if init_started.is_none() && file_len(&init_log) > 0 {
                init_started = Some(elapsed);
            }
            if elapsed > self.timeout {
                kill_group(&mut child);
                tracing::warn!(scenario = %scenario.name, "guest timed out; killed");
                return Err(Error::Timeout {
                    timeout: self.timeout,
                    console_tail: tail(&read_lossy(&console), 40),
                    init_tail: tail(&read_lossy(&init_log), 40),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let total = start.elapsed();
        let console_text = read_lossy(&console);
        let init_text = read_lossy(&init_log);
        if !status.success() && init_text.is_empty() && console_text.is_empty() {
            return Err(Error::Command {
                command,
                status: status.to_string(),
                output: tail(&read_lossy(&qemu_log), 30),
            });
        }
        let mut report = BootReport::parse(scenario, &init_text, &console_text);
        report.exit_status = status.to_string();
        report.timings.total = total;
        report.timings.first_console_output = first_console;
        report.timings.init_started = init_started;
        report.work_dir = dir_guard.is_none().then(|| dir.clone());
        tracing::info!(scenario = %scenario.name, passed = report.passed(), total = ?total, "guest done");
        Ok(report)
    }

    /// A temporary directory, or a kept one when configured.
    fn run_dir(&self, name: &str) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
        match &self.keep_dir {
            Some(base) => {
                static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = base.join(format!("{name}-{}-{n}", std::process::id()));
                fs::create_dir_all(&dir).at(&dir)?;
                Ok((None, dir))
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kpatch-testbed-")
                    .tempdir()
                    .at(std::env::temp_dir())?;
                let p = t.path().to_owned();
                Ok((Some(t), p))
            }
        }
    }
}

/// Kills `timeout` and QEMU (its process group), then reaps the child.
fn kill_group(child: &mut std::process::Child) {
    let pgid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    match pgid {
        Some(pgid) => {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::Kill);
        }
        None => {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
