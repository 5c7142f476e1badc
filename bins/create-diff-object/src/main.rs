//! `create-diff-object`: upstream kpatch's command line over the `differ` crate.
//!
//! Exit status: 0 output written, 1 error, 2 unpatchable change, 3 no functional change.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "create-diff-object",
    version,
    about = "Extract the changed functions of a kernel object into a live-patch object",
    long_about = "Compares ORIG.o and PATCHED.o (both built with -ffunction-sections -fdata-sections), \
                  and writes OUTPUT.o with the changed and new functions and the metadata needed to \
                  link them against the running kernel. PARENT-SYMTAB is `readelf -s --wide` output \
                  of the parent object (vmlinux or the module), or the parent ELF file itself.\n\n\
                  Special-section entry sizes come from BUG_STRUCT_SIZE, EX_STRUCT_SIZE, \
                  JUMP_STRUCT_SIZE, ALT_STRUCT_SIZE, PARA_STRUCT_SIZE, STATIC_CALL_STRUCT_SIZE, \
                  PRINTK_INDEX_STRUCT_SIZE, ORC_STRUCT_SIZE (and FIXUP_STRUCT_SIZE on ppc64le).\n\n\
                  Exit status: 0 success, 1 error, 2 unreconcilable difference, 3 no functional change."
)]
struct Args {
    /// Show debug output.
    #[arg(short, long)]
    debug: bool,
    /// Keep relocations bound for klp relocation records as normal relocations against
    /// undefined `.klp.sym.*` placeholders, for a module link that runs objtool
    /// (kpatch-build does this; create-klp-module moves them afterwards).
    #[arg(long)]
    klp_placeholders: bool,
    /// Explain each changed function in full: the first differing instruction of both
    /// sides, their source lines, the inlined calls covering it and the cause (by
    /// default, one line per function).
    #[arg(long)]
    explain: bool,
    /// Print a JSON summary on stdout (changed and new functions, explanations, type
    /// changes, refusals); the usual messages go to stderr.
    #[arg(long)]
    json: bool,
    /// A file the patch changes, relative to the kernel tree (repeatable): an inlined
    /// callee or header it names is reported as what made a function change.
    #[arg(long = "changed-file", value_name = "PATH")]
    changed_files: Vec<String>,
    /// A global function of this object without an ftrace hook whose callers in other
    /// objects are patched too (repeatable): it becomes the module's own global copy.
    #[arg(long = "carry-out", value_name = "FUNCTION")]
    carry_out: Vec<String>,
    /// Patch CALLER although unchanged, because it calls CALLEE, a function another
    /// object of the module carries (repeatable).
    #[arg(long = "carry-caller", value_name = "CALLEE:CALLER", value_parser = callee_caller)]
    carry_force: Vec<(String, String)>,
    /// A symbol another object of the patch module defines: references to it stay
    /// ordinary ones, resolved when the module is linked (repeatable).
    #[arg(long = "provided", value_name = "SYMBOL")]
    provided: Vec<String>,
    #[arg(value_name = "ORIG.o")]
    orig: String,
    #[arg(value_name = "PATCHED.o")]
    patched: String,
    #[arg(value_name = "PARENT-NAME")]
    parent_name: String,
    #[arg(value_name = "PARENT-SYMTAB")]
    parent_symtab: String,
    #[arg(value_name = "MODULE.SYMVERS")]
    symvers: String,
    #[arg(value_name = "PATCH-MODULE-NAME")]
    patch_name: String,
    #[arg(value_name = "OUTPUT.o")]
    output: String,
}

/// Upstream prints object names relative to the kernel tree's build directory.
fn child_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn main() -> ExitCode {
    if let Some(code) = clidoc::generate_if_asked(<Args as clap::CommandFactory>::command, "1") {
        return code;
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let level = if args.debug { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();

    let child = child_name(&args.orig).to_string();
    install_panic_hook(child.clone());
    // A panic is a bug, but it must still end as one `ERROR:` line and exit status 1
    // (the hook prints the line; the output is only ever renamed into place at the end).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(args, &child)))
        .unwrap_or(ExitCode::from(1))
}

/// Report a panic as `ERROR: <object>: internal error: <message> at <file>:<line>`.
fn install_panic_hook(child: String) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = msg.replace('\n', " ");
        eprintln!("ERROR: {child}: internal error: {msg}{loc}");
    }));
}

fn run(args: Args, child: &str) -> ExitCode {
    // Lets the tests check the panic hook (debug builds only).
    #[cfg(debug_assertions)]
    if std::env::var_os("CDO_INJECT_PANIC").is_some() {
        panic!("injected panic\nfor the tests");
    }
    let sizes = match differ::StructSizes::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ERROR: {child}: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = differ::Options {
        orig: args.orig,
        patched: args.patched,
        parent_name: args.parent_name,
        parent_symtab: args.parent_symtab,
        symvers: args.symvers,
        patch_name: args.patch_name,
        output: args.output,
        sizes,
        log: if args.json {
            differ::LogFn::new(|_, msg| eprintln!("{msg}"))
        } else {
            differ::print_log()
        },
        klp_placeholders: args.klp_placeholders,
        explain: if args.explain {
            differ::Explain::Full
        } else {
            differ::Explain::Line
        },
        changed_files: args.changed_files,
        carry: differ::Carry {
            out: args.carry_out,
            force: args.carry_force,
            provided: args.provided,
        },
    };
    let result = differ::run(&opts);
    if args.json {
        print_json(child, &result);
    }
    match result {
        Ok(r) if r.wrote_output => ExitCode::SUCCESS,
        Ok(_) => {
            if !args.json {
                println!("{child}: no functional change");
            }
            ExitCode::from(3)
        }
        Err(e @ differ::Error::Unpatchable(_)) => {
            eprintln!("ERROR: {child}: {e}");
            eprintln!("create-diff-object: unreconcilable difference");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ERROR: {child}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The `--json` summary.
fn print_json(child: &str, result: &differ::Result<differ::Report>) {
    let empty = differ::Report::default();
    let (status, report, refusals, error) = match result {
        Ok(r) if r.wrote_output => ("success", r, &[][..], None),
        Ok(r) => ("no-change", r, &[][..], None),
        Err(differ::Error::Unpatchable(r)) => (
            "unpatchable",
            &r.report,
            r.refusals.as_slice(),
            Some(r.to_string()),
        ),
        Err(e) => ("error", &empty, &[][..], Some(e.to_string())),
    };
    let code = match result {
        Ok(r) if r.wrote_output => 0,
        Ok(_) => 3,
        Err(e) => e.exit_code(),
    };
    let v = serde_json::json!({
        "object": child,
        "result": status,
        "exit": code,
        "changed": report.changed,
        "new": report.new,
        "explanations": report.explanations,
        "types": report.types,
        "hookless_globals": report.hookless_globals,
        "refusals": refusals,
        "error": error,
    });
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

/// `CALLEE:CALLER` of `--carry-caller`.
fn callee_caller(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => Err(format!("{s}: expected CALLEE:CALLER")),
    }
}
