// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch`: manage live patches on the running kernel. A thin command line
//! over the `runtime` crate.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use runtime::{report, Env, Kernel, LinuxKernel, Runtime};

#[derive(Parser)]
#[command(
    name = "kpatch",
    about = "Manage live patches on the running kernel",
    disable_version_flag = true
)]
struct Cli {
    /// Act on a fake tree (DIR/sys, DIR/proc, DIR/var/lib/kpatch) instead of
    /// the system, as its root whoever runs it; nothing is loaded or unloaded.
    /// For tests.
    #[arg(long, global = true, hide = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// With --root: the kernel release to pretend is running. For tests.
    #[arg(long, global = true, hide = true, value_name = "RELEASE")]
    running_release: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Waits {
    /// Seconds to wait for the transition before signalling blocking tasks.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    enable_wait: u64,
    /// Seconds to wait after signalling before rolling back.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    signal_wait: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Load a patch module (a .ko file or an installed patch's name), or all
    /// patches installed for the running kernel.
    Load {
        /// Load every patch installed for the running kernel (what kpatch.service runs
        /// at boot); patches whose last load was interrupted are skipped.
        #[arg(long, conflicts_with = "module")]
        all: bool,
        /// A livepatch .ko file, or the name of an installed patch.
        #[arg(required_unless_present = "all")]
        module: Option<String>,
        /// Module parameters, as for insmod.
        #[arg(value_name = "PARAM=VALUE", conflicts_with = "all")]
        params: Vec<String>,
        /// First check the code the patch replaces against the running kernel (as
        /// `kpatch verify`), and refuse the load if it differs.
        #[arg(long)]
        verify: bool,
        /// Load even when a build-id the module was built against differs from the
        /// running kernel's or module's (another build of the same release).
        #[arg(long)]
        force_mismatch: bool,
        #[command(flatten)]
        waits: Waits,
    },
    /// Check that the code a patch module replaces is the code the running kernel runs
    /// (run-pre matching, reading /proc/kcore: root only), and the build-ids it was
    /// built against. Exit status 1 if anything differs.
    Verify {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// A livepatch .ko file, or the name of an installed patch.
        module: String,
    },
    /// Disable and unload a patch module, or all of them.
    Unload {
        /// Disable and unload every loaded livepatch.
        #[arg(long, conflicts_with = "module")]
        all: bool,
        /// The patch's module name (as in `kpatch list`) or its .ko file.
        #[arg(required_unless_present = "all")]
        module: Option<String>,
        #[command(flatten)]
        waits: Waits,
    },
    /// Install a patch module to be loaded at boot.
    Install {
        /// Kernel release to install for (default: the running kernel; the module's
        /// vermagic must match it).
        #[arg(short = 'k', long, value_name = "RELEASE")]
        kernel_version: Option<String>,
        /// The livepatch .ko file.
        module: PathBuf,
    },
    /// Remove an installed patch module.
    Uninstall {
        /// Kernel release the patch was installed for (default: the running kernel).
        #[arg(short = 'k', long, value_name = "RELEASE")]
        kernel_version: Option<String>,
        /// The installed patch's name or file name.
        module: String,
    },
    /// List loaded patches (with their state), installed patches and the
    /// functions patched now.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the effective kernel version and each live patch's state, for operators and
    /// monitors. Exit status: 0 every patch installed for the running kernel is loaded,
    /// 1 warning (a transition in progress, a patch loaded but not installed or disabled),
    /// 2 critical (an installed patch is not loaded, e.g. skipped after an interrupted
    /// boot-time load), 3 unknown (no livepatch support). The Nagios plugin convention.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also write the state to FILE in node_exporter's textfile format (atomically;
        /// name it *.prom in the textfile collector's directory).
        #[arg(long, value_name = "FILE")]
        prometheus: Option<PathBuf>,
    },
    /// Show a patch's modinfo fields and the functions it patches.
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// A loaded patch's name, an installed patch's name, or a .ko file.
        module: String,
    },
    /// Make the tasks that block the current transition move on.
    Signal,
    /// Finish the current transition without checking the tasks (unsafe:
    /// read the warning it prints).
    Force {
        /// The patch in transition (default: the one in transition).
        patch: Option<String>,
    },
    /// Print the version.
    Version,
}

/// Stands in for the kernel under `--root`: refuses every change.
struct NoKernel;

impl Kernel for NoKernel {
    fn load_module(&self, _: &File, _: &str, _: &str) -> io::Result<()> {
        Err(refused())
    }
    fn delete_module(&self, _: &str) -> io::Result<()> {
        Err(refused())
    }
    fn write_attr(&self, _: &Path, _: &str) -> io::Result<()> {
        Err(refused())
    }
    fn interrupt_task(&self, _: u32) -> io::Result<bool> {
        Err(refused())
    }
}

fn refused() -> io::Error {
    io::Error::other("the kernel is not changed when running with --root")
}

fn main() -> ExitCode {
    if let Some(code) = clidoc::generate_if_asked(<Cli as clap::CommandFactory>::command, "8") {
        return code;
    }
    let cli = Cli::parse();
    let (mut env, kernel): (Env, &dyn Kernel) = match &cli.root {
        Some(root) => {
            // The fake tree has a fake root: privilege checks pass, the kernel is not touched.
            let mut env = Env::rooted(root, "");
            env.kernel_release = cli
                .running_release
                .clone()
                .unwrap_or_else(|| Env::system().kernel_release);
            (env, &NoKernel)
        }
        None => (Env::system(), &LinuxKernel),
    };
    if let Command::Load { waits, .. } | Command::Unload { waits, .. } = &cli.command {
        env.timeouts.enable_wait = Duration::from_secs(waits.enable_wait);
        env.timeouts.signal_wait = Duration::from_secs(waits.signal_wait);
    }
    if let Command::Load {
        verify,
        force_mismatch,
        ..
    } = &cli.command
    {
        env.checks.verify = *verify;
        env.checks.force_mismatch = *force_mismatch;
    }
    let json = matches!(
        cli.command,
        Command::List { json: true } | Command::Info { json: true, .. }
    );
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut rt = Runtime::new(env, kernel, &mut out);
    if let Command::Status { json, prometheus } = &cli.command {
        return status(&mut rt, *json, prometheus.as_deref());
    }
    match run(&mut rt, cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = rt.out.flush();
            eprintln!("kpatch: {e}");
            if json {
                // What --json promises: an answer on stdout, also when it is an error.
                println!("{}", serde_json::json!({ "error": e.to_string() }));
            }
            ExitCode::FAILURE
        }
    }
}

fn run(rt: &mut Runtime<'_>, command: Command) -> runtime::Result<()> {
    use runtime::{install, load, transition, unload};
    match command {
        Command::Load { all: true, .. } => load::load_all(rt),
        Command::Load { module, params, .. } => {
            load::load(rt, module.as_deref().unwrap_or_default(), &params)
        }
        Command::Unload { all: true, .. } => unload::unload_all(rt),
        Command::Unload { module, .. } => unload::unload(rt, module.as_deref().unwrap_or_default()),
        Command::Install {
            kernel_version,
            module,
        } => install::install(rt, &module, kernel_version.as_deref()),
        Command::Uninstall {
            kernel_version,
            module,
        } => install::uninstall(rt, &module, kernel_version.as_deref()),
        Command::List { json } => {
            let report = report::list(&rt.env);
            if json {
                print_json(rt, &report)
            } else {
                let text = report.to_text();
                rt.say(text.trim_end());
                Ok(())
            }
        }
        Command::Info { json, module } => {
            let report = report::info(&rt.env, &module)?;
            if json {
                print_json(rt, &report)
            } else {
                let text = report.to_text();
                rt.say(text.trim_end());
                Ok(())
            }
        }
        Command::Verify { json, module } => {
            let report = runtime::runpre::verify(rt, &module)?;
            if json {
                print_json(rt, &report)?;
            } else {
                let text = report.to_text();
                rt.say(text.trim_end());
            }
            match report.failure() {
                Some(e) => Err(e),
                None => Ok(()),
            }
        }
        Command::Status { .. } => unreachable!("handled in main"),
        Command::Signal => transition::signal_command(rt),
        Command::Force { patch } => transition::force_command(rt, patch.as_deref()),
        Command::Version => {
            rt.say(env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}

/// `kpatch status`: its exit code is the health (see the command's help).
fn status(rt: &mut Runtime<'_>, json: bool, prometheus: Option<&Path>) -> ExitCode {
    let report = runtime::status::status(&rt.env);
    if let Some(file) = prometheus {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if let Err(e) = pathio::write_atomic(file, report.to_prometheus(now).as_bytes()) {
            eprintln!("kpatch: {e}");
            return ExitCode::from(runtime::status::Health::Unknown.code());
        }
    }
    if json {
        let _ = print_json(rt, &report);
    } else {
        let text = report.to_text();
        rt.say(text.trim_end());
    }
    ExitCode::from(report.exit_code)
}

fn print_json(rt: &mut Runtime<'_>, value: &impl serde::Serialize) -> runtime::Result<()> {
    // Serialising these plain structures cannot fail; say so if it ever does.
    let text = serde_json::to_string_pretty(value).map_err(|e| runtime::Error::BadModule {
        path: PathBuf::from("<json>"),
        reason: e.to_string(),
    })?;
    rt.say(text);
    Ok(())
}
