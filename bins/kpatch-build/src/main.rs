//! `kpatch-build`: build a livepatch module from a source patch for a Debian kernel.
//!
//! Options follow upstream kpatch-build where they make sense. Exit status: 0 module
//! built, 1 error, 2 the patch cannot be live-patched (reason given), 3 no functional
//! change, 128+N interrupted by signal N (the kernel tree restored).

use std::path::PathBuf;
use std::process::ExitCode;

use builder::pipeline::{self, BuildOptions};
use builder::progress::{self, Level, Progress, Verbosity};
use clap::Parser;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer, SubscriberExt};

#[derive(Parser, Debug)]
#[command(
    name = "kpatch-build",
    version,
    about = "Build a livepatch module from a kernel source patch",
    long_about = "Builds livepatch-<name>.ko from PATCH for a Debian kernel, compiling only the \
                  translation units the patch touches in a kernel tree prepared once per release \
                  (from the linux-source, linux-headers and -dbg packages of the exact version).\n\n\
                  Exit status: 0 module built, 1 error, 2 the change cannot be live-patched \
                  (or the rebuilt original code is not the target's), 3 no functional change, \
                  128+N interrupted by signal N."
)]
struct Args {
    /// The patch (unified diff, -p1).
    #[arg(value_name = "PATCH", required_unless_present_any = ["cache_clean", "cache_info", "create_sign_key"])]
    patch: Option<PathBuf>,
    /// Target kernel: a release (6.1.0-56-amd64, 6.12.118+deb13-cloud-amd64) or an alias for
    /// the current release of a series or distribution: 6.1 and 6.12 (Debian 12's), bookworm,
    /// trixie (Debian 13), optionally with a flavour: trixie-cloud, trixie-rt, 6.1-cloud.
    /// Default: the running kernel.
    #[arg(short = 'a', long = "archversion", value_name = "RELEASE")]
    archversion: Option<String>,
    /// Use this configured kernel source tree instead of Debian's linux-source package.
    #[arg(short = 's', long = "sourcedir", value_name = "DIR")]
    sourcedir: Option<PathBuf>,
    /// Kernel .config to use (default: the headers package's, which Debian built with).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// vmlinux with symbols, for the parent symbol table (default: the -dbg package's).
    #[arg(short = 'v', long = "vmlinux", value_name = "FILE")]
    vmlinux: Option<PathBuf>,
    /// The target's /proc/kallsyms (dumped as root, with the patched modules loaded) as
    /// the parent symbol table: no -dbg package is downloaded. Local names that occur
    /// more than once cannot be told apart in it; such patches need -v or the -dbg package.
    #[arg(long = "kallsyms", value_name = "FILE")]
    kallsyms: Option<PathBuf>,
    /// Parallel jobs for make.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    jobs: Option<usize>,
    /// Patch name (module livepatch-<name>.ko). Default: the patch file name.
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    name: Option<String>,
    /// Directory for the module (default: the current directory).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: Option<PathBuf>,
    /// Debug: show every event and command output on the terminal, and keep the work
    /// directory.
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Do not replace other loaded patches (no atomic replace).
    #[arg(short = 'R', long = "non-replace")]
    non_replace: bool,
    /// Keep the work directory.
    #[arg(long = "skip-cleanup")]
    skip_cleanup: bool,
    /// Do not refuse a compiler that differs from the kernel's (CONFIG_CC_VERSION_TEXT, the
    /// -dbg vmlinux's DW_AT_producer); a warning is printed instead.
    #[arg(long = "skip-compiler-check")]
    skip_compiler_check: bool,
    /// Apply hunks whose context differs from the source by up to two lines (refused by
    /// default); the fuzz is recorded in the module's modinfo (kpatch_fuzz).
    #[arg(long = "allow-fuzz")]
    allow_fuzz: bool,
    /// Build even when the rebuilt original code differs from the target's shipped
    /// binary (verify phase); the module's modinfo records it (kpatch_verify=skipped).
    #[arg(long = "skip-verify")]
    skip_verify: bool,
    /// Say why each unit a changed header reaches is rebuilt or left out (the impact
    /// analysis: changed names, candidates, preprocessed code).
    #[arg(long)]
    explain: bool,
    /// Rebuild every unit a changed header reaches, without the impact analysis.
    #[arg(long = "all-includers")]
    all_includers: bool,
    /// Compile with the host's compiler and tools instead of the build root of the
    /// kernel's Debian release (made once with mmdebstrap). The compiler check still applies.
    #[arg(long = "host-toolchain")]
    host_toolchain: bool,
    /// Remove cached kernels and downloaded packages (`kernels`, the default), or
    /// everything including build roots and apt lists (`all`), and print what was freed.
    #[arg(long = "cache-clean", value_name = "WHAT", num_args = 0..=1,
          default_missing_value = "kernels", value_parser = ["kernels", "all"])]
    cache_clean: Option<String>,
    /// Print what the cache holds, by part, and exit.
    #[arg(long = "cache-info")]
    cache_info: bool,
    /// Cache directory (default: ~/.kpatch).
    #[arg(long = "cache-dir", value_name = "DIR", env = "KPATCH_CACHE")]
    cache_dir: Option<PathBuf>,
    /// Print a JSON summary on stdout.
    #[arg(long = "json")]
    json: bool,
    /// Sign the module with this private key (PEM), with the kernel's sign-file and the
    /// target's CONFIG_MODULE_SIG_HASH. Default: the machine-owner key DKMS or shim-signed
    /// keep (/var/lib/dkms/mok.key, /var/lib/shim-signed/mok/MOK.priv), if there is one.
    #[arg(long = "sign-key", value_name = "KEY", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The certificate (DER or PEM) of --sign-key.
    #[arg(long = "sign-cert", value_name = "CERT", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// Do not sign the module, even when a machine-owner key is found.
    #[arg(long = "no-sign", conflicts_with_all = ["sign_key", "create_sign_key"])]
    no_sign: bool,
    /// Create a key pair for signing (at --sign-key/--sign-cert, default DKMS's
    /// /var/lib/dkms/mok.key and mok.pub), print how to enrol it with mokutil, and exit.
    #[arg(long = "create-sign-key", conflicts_with = "patch")]
    create_sign_key: bool,
    /// Also write the module as a Debian package, livepatch-<name>_<ver>_amd64.deb, in the
    /// output directory: it depends on the exact kernel image, installs the module for
    /// kpatch.service, loads it when that kernel runs, and unloads it on removal.
    #[arg(long = "deb")]
    deb: bool,
    /// The package's version.
    #[arg(
        long = "deb-version",
        value_name = "VERSION",
        default_value = "1",
        requires = "deb"
    )]
    deb_version: String,
    /// The package's maintainer, "Name <address>" (default: $DEBFULLNAME <$DEBEMAIL>).
    #[arg(
        long = "deb-maintainer",
        value_name = "NAME <ADDRESS>",
        requires = "deb"
    )]
    deb_maintainer: Option<String>,
}

/// `--create-sign-key`: a key pair where kpatch-build (and DKMS) look for one.
fn create_sign_key(args: &Args) -> ExitCode {
    let (key, cert) = match (&args.sign_key, &args.sign_cert) {
        (Some(k), Some(c)) => (k.clone(), c.clone()),
        _ => {
            let (k, c, _) = builder::sign::MOK_LOCATIONS[0];
            (PathBuf::from(k), PathBuf::from(c))
        }
    };
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    match builder::sign::create_key(&key, &cert, &format!("{host} live patch signing key")) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    if let Some(code) = clidoc::generate_if_asked(<Args as clap::CommandFactory>::command, "1") {
        return code;
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            if std::env::args().any(|a| a == "--json") {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                let msg = first.strip_prefix("error: ").unwrap_or(first);
                println!(
                    "{}",
                    serde_json::json!({"error": msg, "exit_code": 1, "log": null})
                );
            }
            return ExitCode::from(1);
        }
    };
    if let Err(e) = builder::interrupt::install() {
        return fail(&e, None, args.json);
    }
    if args.create_sign_key {
        return create_sign_key(&args);
    }
    let cache = args.cache_dir.clone().unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"))
            .join(".kpatch")
    });
    if args.cache_info || args.cache_clean.is_some() {
        return cache_command(&args, &cache);
    }
    let Some(patch) = args.patch.clone() else {
        let e = builder::error::step("no patch given (or --cache-info / --cache-clean)");
        return fail(&e, None, args.json);
    };
    let opts = build_options(&args, patch, &cache);
    let log = pipeline::patch_name(&opts)
        .ok()
        .map(|name| progress::build_log_path(&cache.join("logs"), &name));
    let verbosity = if args.debug {
        Verbosity::Debug
    } else {
        Verbosity::Normal
    };
    let mut progress = Progress::new(log.as_deref(), verbosity);
    let subscriber = tracing_subscriber::registry()
        .with(progress.tracing_layer().with_filter(LevelFilter::DEBUG));
    let _ = tracing::subscriber::set_global_default(subscriber);
    let resolver = builder::units::Resolver;
    let result = pipeline::build(&opts, &resolver, &mut progress);
    progress.end_phase();
    let log = progress.log_path().map(|p| p.to_path_buf());
    match result {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            }
            eprintln!(
                "SUCCESS: {} ({} changed, {} new function(s){})",
                report.module.display(),
                report.functions.iter().filter(|f| !f.new).count(),
                report.functions.iter().filter(|f| f.new).count(),
                if report.signed.is_some() {
                    ", signed"
                } else {
                    ""
                }
            );
            if let Some(deb) = &report.deb {
                eprintln!("package: {}", deb.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            progress.record(Level::Error, &e.to_string());
            drop(progress);
            fail(&e, log.as_deref(), args.json)
        }
    }
}

/// Report a failed build: the error on stderr (and as JSON on stdout with `--json`),
/// and its exit status.
fn fail(e: &builder::Error, log: Option<&std::path::Path>, json: bool) -> ExitCode {
    let code = e.exit_code();
    eprintln!("ERROR: {e}");
    if let builder::Error::Interrupted(_) = e {
        eprintln!("the kernel tree was restored; nothing was written");
    }
    if let Some(log) = log {
        eprintln!("full log: {}", log.display());
    }
    if json {
        let mut v = serde_json::json!({"error": e.to_string(), "exit_code": code, "log": log});
        if let builder::Error::Mismatch { details, .. } = e {
            v["verify"] = details.clone();
        }
        println!("{v}");
    }
    ExitCode::from(code)
}

/// `--cache-info` and `--cache-clean`.
fn cache_command(args: &Args, root: &std::path::Path) -> ExitCode {
    let cache = debian::Cache::new(root);
    let before = cache.size_report();
    println!("{before}");
    let Some(what) = &args.cache_clean else {
        return ExitCode::SUCCESS;
    };
    let which = if what == "all" {
        debian::Clean::All
    } else {
        debian::Clean::Kernels
    };
    match cache.clean(which) {
        Ok(freed) => {
            println!("freed {}", debian::util::human(freed));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::from(1)
        }
    }
}

/// What the command line asks the pipeline for.
fn build_options(args: &Args, patch: PathBuf, cache: &std::path::Path) -> BuildOptions {
    BuildOptions {
        patch,
        target: args.archversion.clone(),
        sourcedir: args.sourcedir.clone(),
        config: args.config.clone(),
        vmlinux: args.vmlinux.clone(),
        kallsyms: args.kallsyms.clone(),
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        name: args.name.clone(),
        output_dir: args.output.clone().unwrap_or_else(|| PathBuf::from(".")),
        debug: args.debug,
        replace: !args.non_replace,
        skip_cleanup: args.skip_cleanup,
        skip_compiler_check: args.skip_compiler_check,
        allow_fuzz: args.allow_fuzz,
        skip_verify: args.skip_verify,
        explain: args.explain,
        all_includers: args.all_includers,
        host_toolchain: args.host_toolchain,
        cache: cache.to_path_buf(),
        sign: match (&args.sign_key, &args.sign_cert) {
            _ if args.no_sign => pipeline::Signing::Off,
            (Some(key), Some(cert)) => pipeline::Signing::Key {
                key: key.clone(),
                cert: cert.clone(),
            },
            _ => pipeline::Signing::Auto,
        },
        deb: args.deb.then(|| builder::package::DebOptions {
            version: args.deb_version.clone(),
            maintainer: args.deb_maintainer.clone(),
        }),
    }
}
