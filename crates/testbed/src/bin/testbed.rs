//! `testbed`: prepare and boot Debian's kernel under QEMU from the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use testbed::{selftests, Cache, Guest, Initramfs, KernelSeries, PrepareOptions, Scenario};

#[derive(Parser)]
#[command(
    name = "testbed",
    about = "Debian's real kernel under QEMU for kpatch tests"
)]
struct Cli {
    /// Cache directory (default: $KPATCH_TESTBED_CACHE or ~/.cache/kpatch-testbed).
    #[arg(long, global = true)]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct SeriesArg {
    /// Kernel: 6.1 or 6.12 (Debian 12's), trixie or trixie-cloud (Debian 13's), any alias
    /// kpatch-build takes (bookworm, 6.12-trixie-rt, ...) or an exact release (6.1.0-56-amd64).
    #[arg(long, default_value = "6.1")]
    series: KernelSeries,
}

#[derive(clap::Args, Clone)]
struct GuestArgs {
    /// Hard timeout in seconds after which QEMU is killed.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Extra kernel command-line parameters.
    #[arg(long = "append")]
    append: Vec<String>,
    /// Keep the run directory (initramfs, console.log, init.log) under this directory.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print the whole kernel console and init output.
    #[arg(long)]
    verbose: bool,
    /// Print each step's output (without the whole console).
    #[arg(long)]
    show_steps: bool,
    /// Boot this kernel image instead of the cached kernel (e.g. a locally built one).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Boot the extracted vmlinux through its PVH entry: about 3 s faster, but without KASLR.
    #[arg(long)]
    pvh: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install host packages, download and cache the kernel packages, build the sample module.
    Prepare {
        /// Kernel to prepare (as --series of boot), or all: 6.1, 6.12, trixie, trixie-cloud.
        #[arg(long, default_value = "6.1")]
        series: String,
        /// Run apt-get update first.
        #[arg(long)]
        update: bool,
        /// Do not install missing host packages.
        #[arg(long)]
        no_install: bool,
        /// Also unpack the whole source tree (≈1.3 GB, for kpatch-build).
        #[arg(long)]
        full_source: bool,
        /// Also fetch the -dbg package's vmlinux and System.map (≈1 GB download, ≈1 min).
        #[arg(long)]
        debug_symbols: bool,
    },
    /// Print the cached kernel's paths as JSON (resolving and downloading if needed).
    Paths {
        #[command(flatten)]
        series: SeriesArg,
    },
    /// Boot the kernel with the given modules, host binaries and steps.
    Boot {
        #[command(flatten)]
        series: SeriesArg,
        #[command(flatten)]
        guest: GuestArgs,
        /// Run the livepatch-sample scenario (load, check /proc/cmdline, disable, unload).
        #[arg(long)]
        sample: bool,
        /// Kernel modules to put in /testbed/modules.
        #[arg(long = "module")]
        modules: Vec<PathBuf>,
        /// Modules of the kernel's image package to put under /lib/modules/<release> with
        /// their dependencies (then `/sbin/modprobe NAME` in a step loads them).
        #[arg(long = "image-module")]
        image_modules: Vec<String>,
        /// Host executables to copy to /usr/local/bin with their shared libraries.
        #[arg(long = "binary")]
        binaries: Vec<PathBuf>,
        /// Steps as NAME=SHELL (run in order after --sample's).
        #[arg(long = "step")]
        steps: Vec<String>,
    },
    /// Build (or reuse) the Debian 12 disk image with the series' kernel, boot it
    /// through UEFI, run commands over SSH, and power it off.
    DebianVm {
        #[command(flatten)]
        series: SeriesArg,
        /// Boot with Secure Boot (Microsoft's keys, Debian's signed shim and GRUB).
        #[arg(long)]
        secure_boot: bool,
        /// Certificates to enrol as machine-owner keys.
        #[arg(long = "mok", value_name = "CERT")]
        moks: Vec<PathBuf>,
        /// Shell commands to run in the guest, in order (bash, as root).
        #[arg(long = "cmd", value_name = "SHELL")]
        commands: Vec<String>,
        /// Only build the image and print what it cost.
        #[arg(long)]
        image_only: bool,
    },
    /// Run the kernel's livepatch selftest scripts in one boot.
    Selftest {
        #[command(flatten)]
        series: SeriesArg,
        #[command(flatten)]
        guest: GuestArgs,
        /// Scripts to run (default: test-livepatch.sh test-callbacks.sh test-shadow-vars.sh test-state.sh).
        scripts: Vec<String>,
    },
}

fn guest_for(kernel: &testbed::Kernel, g: &GuestArgs) -> Guest {
    let base = match &g.image {
        Some(image) => Guest::with_image(image),
        None if g.pvh => Guest::pvh(kernel),
        None => Guest::new(kernel),
    };
    let mut guest = base.timeout(Duration::from_secs(g.timeout)).smp(g.smp);
    for a in &g.append {
        guest = guest.append(a);
    }
    if let Some(k) = &g.keep {
        guest = guest.keep_in(k);
    }
    guest
}

fn finish(report: &testbed::BootReport, guest: &GuestArgs) -> ExitCode {
    let verbose = guest.verbose;
    if verbose {
        println!(
            "--- console ---\n{}\n--- init ---\n{}",
            report.console_log, report.init_log
        );
    }
    print!("{}", report.summary());
    for s in &report.steps {
        if !s.passed() || verbose || guest.show_steps {
            println!("--- output of step {} ---\n{}", s.name, s.output.join("\n"));
        }
    }
    if let Some(d) = &report.work_dir {
        println!("logs kept in {}", d.display());
    }
    match report.ensure_passed() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn prepare_cmd(
    cache: &Cache,
    series: &str,
    update: bool,
    no_install: bool,
    full_source: bool,
    debug_symbols: bool,
) -> testbed::Result<()> {
    let list: Vec<KernelSeries> = if series == "all" {
        KernelSeries::ALL.to_vec()
    } else {
        vec![series.parse()?]
    };
    let opts = PrepareOptions {
        install_host_packages: !no_install,
        update,
        ..PrepareOptions::default()
    };
    for s in list {
        let r = testbed::prepare(cache, s.clone(), &opts)?;
        let k = &r.kernel;
        println!(
            "kernel series {s}: release {} (Debian {})",
            k.release(),
            k.version()
        );
        if !r.installed_host_packages.is_empty() {
            println!(
                "  installed host packages: {}",
                r.installed_host_packages.join(" ")
            );
        }
        println!("  cache:          {}", k.dir.display());
        println!("  build root:     {}", k.build_root.display());
        println!("  vmlinuz:        {}", k.vmlinuz.display());
        println!("  headers:        {}", k.headers_dir.display());
        println!("  config:         {}", k.config.display());
        println!("  source tarball: {}", k.source_tarball.display());
        println!("  source subset:  {}", k.source_subset.display());
        println!("  sample module:  {}", r.sample_module.display());
        if full_source {
            println!("  full source:    {}", k.full_source_tree()?.display());
        }
        if debug_symbols {
            let d = k.debug_symbols()?;
            println!("  vmlinux (dbg):  {}", d.vmlinux.display());
            println!("  System.map:     {}", d.system_map.display());
        }
        println!("  ready in {:.1}s", r.elapsed.as_secs_f64());
    }
    Ok(())
}

fn run(cli: Cli) -> testbed::Result<ExitCode> {
    let cache = cli.cache.map(Cache::new).unwrap_or_else(Cache::from_env);
    match cli.command {
        Cmd::Prepare {
            series,
            update,
            no_install,
            full_source,
            debug_symbols,
        } => {
            prepare_cmd(
                &cache,
                &series,
                update,
                no_install,
                full_source,
                debug_symbols,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Paths { series } => {
            let k = cache.ensure_kernel(&series.series, &PrepareOptions::default())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&k)
                    .map_err(|e| testbed::Error::Cache(e.to_string()))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Boot {
            series,
            guest,
            sample,
            modules,
            image_modules,
            binaries,
            steps,
        } => {
            let kernel =
                testbed::prepare(&cache, series.series, &PrepareOptions::default())?.kernel;
            let mut img = Initramfs::with_busybox()?;
            let mut scenario = Scenario::new("cli");
            if sample {
                let ko = img.add_module(&testbed::build_livepatch_sample(&kernel)?)?;
                scenario = testbed::samples::sample_scenario(&ko);
            }
            for m in &modules {
                img.add_module(m)?;
            }
            if !image_modules.is_empty() {
                let names: Vec<&str> = image_modules.iter().map(String::as_str).collect();
                img.add_image_modules(&kernel.image_modules()?, &names)?;
            }
            for b in &binaries {
                img.add_host_binary(b, testbed::GUEST_HOST_BIN)?;
            }
            for s in &steps {
                let (name, script) = s.split_once('=').ok_or_else(|| {
                    testbed::Error::Invalid(format!("--step {s:?}: expected NAME=SHELL"))
                })?;
                scenario = scenario.step(name, script);
            }
            let report = guest_for(&kernel, &guest).run(img, &scenario)?;
            Ok(finish(&report, &guest))
        }
        Cmd::DebianVm {
            series,
            secure_boot,
            moks,
            commands,
            image_only,
        } => debian_vm(
            &cache,
            series.series,
            secure_boot,
            moks,
            &commands,
            image_only,
        ),
        Cmd::Selftest {
            series,
            guest,
            scripts,
        } => {
            let kernel =
                testbed::prepare(&cache, series.series, &PrepareOptions::default())?.kernel;
            let scripts: Vec<&str> = if scripts.is_empty() {
                selftests::DEFAULT_SCRIPTS.to_vec()
            } else {
                scripts.iter().map(String::as_str).collect()
            };
            let report = selftests::run_selftests(&kernel, &scripts, &guest_for(&kernel, &guest))?;
            for s in &report.steps {
                for c in selftests::selftest_cases(s) {
                    println!(
                        "{}: {} ... {}",
                        s.name,
                        c.name,
                        if c.ok { "ok" } else { "not ok" }
                    );
                }
            }
            Ok(finish(&report, &guest))
        }
    }
}

fn debian_vm(
    cache: &Cache,
    series: testbed::KernelSeries,
    secure_boot: bool,
    moks: Vec<PathBuf>,
    commands: &[String],
    image_only: bool,
) -> testbed::Result<ExitCode> {
    use testbed::vm::{DebianImage, Firmware, ImageSpec, Machine, MachineConfig};
    let kernel = cache.ensure_kernel(&series, &PrepareOptions::default())?;
    let image = DebianImage::ensure(
        cache.root(),
        &ImageSpec::bookworm(kernel.release(), kernel.version()),
    )?;
    eprintln!(
        "image {} ({:.0} MB; built in {:.0} s, mmdebstrap {:.0} s, {:.0} MB of packages, {:.0} MB downloaded{})",
        image.disk.display(),
        image.info.image_bytes as f64 / 1e6,
        image.info.build_secs,
        image.info.bootstrap_secs,
        image.info.package_bytes as f64 / 1e6,
        image.info.downloaded_bytes as f64 / 1e6,
        if image.built_in.is_some() { "" } else { "; cached" }
    );
    if image_only {
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = MachineConfig::new(&testbed::vm::tools_dir(cache.root()));
    config.firmware = if secure_boot {
        Firmware::SecureBoot { moks }
    } else {
        Firmware::Uefi { moks }
    };
    let mut vm = Machine::start(&image, &config)?;
    let up = vm.wait_ssh(Duration::from_secs(900))?;
    eprintln!("SSH up {:.1} s after QEMU started", up.as_secs_f64());
    let mut code = ExitCode::SUCCESS;
    for c in commands {
        let out = vm.sh(c)?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            eprintln!("`{c}`: {}", out.status);
            code = ExitCode::FAILURE;
        }
    }
    vm.poweroff()?;
    Ok(code)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("testbed: {e}");
            ExitCode::FAILURE
        }
    }
}
