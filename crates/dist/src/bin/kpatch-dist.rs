// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch-dist deb`: build `kpatch-rs_<version>_amd64.deb` from the release binaries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kpatch-dist", about = "Package kpatch-rs for Debian")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build kpatch-rs_<version>_amd64.deb (run `cargo build --release --bins` first).
    Deb {
        /// Where the release binaries are.
        #[arg(long, value_name = "DIR", default_value = "target/release")]
        bin_dir: PathBuf,
        /// Where the package goes.
        #[arg(short, long, value_name = "DIR", default_value = "target/debian")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Deb { bin_dir, out } => {
            match dist::project_package(&dist::ProjectOptions::new(&bin_dir, &out)) {
                Ok(deb) => {
                    println!("{}", deb.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("kpatch-dist: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
