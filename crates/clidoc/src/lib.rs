// SPDX-License-Identifier: GPL-2.0-only
//! Man pages and shell completions from a command's own clap definition, so that the
//! flags are defined once, with their documentation (as ripgrep does with
//! `rg --generate`).
//!
//! Each binary calls [`generate_if_asked`] first thing in `main`: `kpatch --generate man DIR`
//! writes its man pages (roff) into DIR, one per command and subcommand (`kpatch.8`,
//! `kpatch-status.8`, ...); `--generate bash` and `--generate zsh` print the completion
//! scripts. The packaging step (`crates/dist`) runs the built binaries that way.
//!
//! ```no_run
//! use clap::{CommandFactory, Parser};
//! #[derive(Parser)]
//! struct Args { #[arg(long)] json: bool }
//! fn main() -> std::process::ExitCode {
//!     if let Some(code) = clidoc::generate_if_asked(Args::command, "1") {
//!         return code;
//!     }
//!     let _args = Args::parse();
//!     std::process::ExitCode::SUCCESS
//! }
//! ```

#![warn(missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The hidden first argument that asks for generated documentation.
pub const FLAG: &str = "--generate";

/// What can be generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Man pages (roff), one per command and subcommand.
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

/// Writes the man pages of `cmd` and its subcommands into `dir`, in `section`; returns
/// their paths.
pub fn man_pages(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(
        cmd: clap::Command,
        section: &str,
        dir: &Path,
        out: &mut Vec<PathBuf>,
    ) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, section, dir, out)?;
        }
        let man = clap_mangen::Man::new(cmd.version(env!("CARGO_PKG_VERSION")))
            .section(section)
            .manual("kpatch-rs")
            .source(format!("kpatch-rs {}", env!("CARGO_PKG_VERSION")));
        out.push(man.generate_to(dir)?);
        Ok(())
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, section, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Writes the completion script of `cmd` for `kind` (bash or zsh) to `out`.
pub fn completions(mut cmd: clap::Command, kind: Kind, out: &mut dyn Write) {
    let name = cmd.get_name().to_string();
    let shell = match kind {
        Kind::Zsh => clap_complete::Shell::Zsh,
        _ => clap_complete::Shell::Bash,
    };
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// When the command line is `<program> --generate man DIR|bash|zsh`, does it and returns
/// the exit code; otherwise `None` (parse the arguments as usual). Man pages go in
/// `section`.
pub fn generate_if_asked(cmd: impl FnOnce() -> clap::Command, section: &str) -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(FLAG) {
        return None;
    }
    let what = args.next().unwrap_or_default();
    let result = match Kind::parse(&what) {
        Some(Kind::Man) => match args.next() {
            Some(dir) => man_pages(cmd(), section, Path::new(&dir)).map(|pages| {
                for p in pages {
                    println!("{}", p.display());
                }
            }),
            None => Err(std::io::Error::other(
                "give the directory: --generate man DIR",
            )),
        },
        Some(kind) => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            completions(cmd(), kind, &mut out);
            out.flush()
        }
        None => Err(std::io::Error::other(format!(
            "expected man DIR, bash or zsh, not {what:?}"
        ))),
    };
    match result {
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

    #[test]
    fn man_pages_for_the_command_and_each_subcommand() {
        let dir = std::env::temp_dir().join(format!("clidoc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pages = man_pages(cmd(), "8", &dir).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["kpatch-status.8", "kpatch.8"]);
        let top = std::fs::read_to_string(&pages[1]).unwrap();
        assert!(top.contains(".TH kpatch 8"), "{top}");
        let sub = std::fs::read_to_string(&pages[0]).unwrap();
        assert!(sub.contains("\\-\\-json"), "{sub}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completions_name_subcommands_and_flags() {
        let mut v = Vec::new();
        completions(cmd(), Kind::Bash, &mut v);
        let bash = String::from_utf8(v).unwrap();
        assert!(bash.contains("complete -F _kpatch"), "{bash}");
        assert!(bash.contains("--json"), "{bash}");
        let mut v = Vec::new();
        completions(cmd(), Kind::Zsh, &mut v);
        let zsh = String::from_utf8(v).unwrap();
        assert!(zsh.starts_with("#compdef kpatch"), "{zsh}");
        assert!(Kind::parse("fish").is_none());
    }
}
