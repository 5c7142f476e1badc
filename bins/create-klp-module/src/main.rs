//! `create-klp-module`: convert a linked patch module's intermediate klp records into
//! `.klp.rela.*` sections and `.klp.sym.*` symbols (upstream-compatible command line).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "create-klp-module",
    version,
    about = "Create klp relocation sections in a livepatch module"
)]
struct Args {
    /// Accepted for compatibility; .klp.arch sections are not generated (kernels >= 5.8).
    #[arg(short = 'n', long = "no-klp-arch-sections")]
    no_klp_arch: bool,
    #[arg(value_name = "INPUT.ko")]
    input: String,
    #[arg(value_name = "OUTPUT.ko")]
    output: String,
}

fn main() -> ExitCode {
    if let Some(code) = clidoc::generate_if_asked(<Args as clap::CommandFactory>::command, "1") {
        return code;
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let _ = args.no_klp_arch;
    match klp::convert::convert_file(&args.input, &args.output) {
        Ok(s) => {
            println!(
                "{} klp relocation(s) against {} symbol(s) in {} section(s)",
                s.klp_relocations,
                s.klp_symbols,
                s.klp_sections.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::from(1)
        }
    }
}
