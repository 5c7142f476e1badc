// SPDX-License-Identifier: GPL-2.0-only
//! Man pages and shell completions from a command's own clap definition, so that the
//! flags are defined once, with their documentation (as ripgrep does with
//! `rg --generate`).
//!
//! Each binary calls [`generate_if_asked`] first thing in `main`: `kpatch --generate man`
//! prints the man page (roff), `--generate bash` and `--generate zsh` the completion
//! scripts. The packaging step (`crates/dist`) runs the built binaries that way.
//!
//! ```no_run
//! use clap::{CommandFactory, Parser};
//! #[derive(Parser)]
//! struct Args { #[arg(long)] json: bool }
//! fn main() -> std::process::ExitCode {
//!     if let Some(code) = clidoc::generate_if_asked(Args::command) {
//!         return code;
//!     }
//!     let _args = Args::parse();
//!     std::process::ExitCode::SUCCESS
//! }
//! ```

#![warn(missing_docs)]

use std::io::Write;
use std::process::ExitCode;

/// The hidden first argument that asks for generated documentation.
pub const FLAG: &str = "--generate";

/// What can be generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A man page (roff), section 1, as upstream kpatch's pages.
    Man,
    /// A bash completion script.
    Bash,
    /// A zsh completion function.
    Zsh,
}

impl Kind {
    /// Parses `man`, `bash`, `zsh`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "man" => Some(Kind::Man),
            "bash" => Some(Kind::Bash),
            "zsh" => Some(Kind::Zsh),
            _ => None,
        }
    }
}

/// Writes `kind` for `cmd` to `out`.
pub fn generate(mut cmd: clap::Command, kind: Kind, out: &mut dyn Write) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    match kind {
        Kind::Man => {
            cmd = cmd.version(env!("CARGO_PKG_VERSION"));
            clap_mangen::Man::new(cmd)
                .section("1")
                .manual("kpatch-rs")
                .source(format!("kpatch-rs {}", env!("CARGO_PKG_VERSION")))
                .render(out)
        }
        Kind::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, out);
            Ok(())
        }
        Kind::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, out);
            Ok(())
        }
    }
}

/// When the command line is `<program> --generate KIND`, prints it to stdout and returns
/// the exit code; otherwise `None` (parse the arguments as usual).
pub fn generate_if_asked(cmd: impl FnOnce() -> clap::Command) -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(FLAG) {
        return None;
    }
    let what = args.next().unwrap_or_default();
    let Some(kind) = Kind::parse(&what) else {
        eprintln!("{FLAG}: expected man, bash or zsh, not {what:?}");
        return Some(ExitCode::from(1));
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match generate(cmd(), kind, &mut out).and_then(|()| out.flush()) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("{FLAG} {what}: {e}");
            Some(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("kpatch")
            .about("Manage live patches")
            .subcommand(
                clap::Command::new("status").about("Show the patches").arg(
                    clap::Arg::new("json")
                        .long("json")
                        .help("Machine-readable output")
                        .action(clap::ArgAction::SetTrue),
                ),
            )
    }

    fn text(kind: Kind) -> String {
        let mut v = Vec::new();
        generate(cmd(), kind, &mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn man_page_is_roff_in_section_1() {
        let man = text(Kind::Man);
        assert!(
            man.starts_with(".ie") || man.contains(".TH kpatch 1"),
            "{man}"
        );
        assert!(man.contains(".TH kpatch 1"), "{man}");
        assert!(man.contains("status"), "{man}");
    }

    #[test]
    fn completions_name_subcommands_and_flags() {
        let bash = text(Kind::Bash);
        assert!(bash.contains("complete -F _kpatch"), "{bash}");
        assert!(bash.contains("--json"), "{bash}");
        let zsh = text(Kind::Zsh);
        assert!(zsh.starts_with("#compdef kpatch"), "{zsh}");
        assert!(Kind::parse("fish").is_none());
    }
}
