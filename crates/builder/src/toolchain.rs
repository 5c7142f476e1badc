//! The compiler a kernel is built with, and the proof that we use the same one.
//!
//! Objects are compiled in the build root of the kernel's distribution (see
//! `debian::buildroot`): trixie's gcc-14 and binutils for Debian 13's kernels, bookworm's
//! gcc-12 for Debian 12's, whatever the host runs. Three witnesses must agree before a
//! build starts:
//!
//! 1. `CONFIG_CC_VERSION_TEXT` in the headers' `.config`: the first line of `--version` of
//!    the compiler Debian used (`x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0`);
//! 2. the build root's compiler, asked the same way; compared without the program name
//!    (`gcc-12` and `x86_64-linux-gnu-gcc-12` are one compiler), Debian revision included;
//! 3. `DW_AT_producer` of the `-dbg` vmlinux's compile units (`GNU C11 14.2.0 …`): the
//!    version of the compiler that produced the running kernel's code.
//!
//! A mismatch is refused: another compiler (even another Debian revision) may generate
//! different code for unchanged functions, and kbuild would reconfigure the tree.
//! `--skip-compiler-check` overrides with a warning.

use std::path::Path;

use crate::error::{io, step, step_hint, Result};

/// `CONFIG_CC_VERSION_TEXT` of a `.config`.
pub fn config_cc_text(config: &Path) -> Result<String> {
    let text = std::fs::read_to_string(config).map_err(io(config))?;
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT="))
        .map(|v| v.trim_matches('"').to_string())
        .ok_or_else(|| step(format!("{}: no CONFIG_CC_VERSION_TEXT", config.display())))
}

/// The compiler program a version text names (`x86_64-linux-gnu-gcc-14`, `gcc-12`).
pub fn cc_program(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("gcc").to_string()
}

/// What follows the program name: `(Debian 14.2.0-19) 14.2.0`.
fn identity(text: &str) -> &str {
    text.split_once(' ').map(|(_, v)| v.trim()).unwrap_or("")
}

/// The upstream version at the end of a version text (`14.2.0`).
pub fn cc_version(text: &str) -> Option<&str> {
    text.split_whitespace().last().filter(|v| is_version(v))
}

fn is_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks the build compiler's `--version` line against the kernel's.
pub fn compare_compilers(want: &str, have: &str, whose: &str) -> Result<()> {
    if identity(want).is_empty() || identity(have) != identity(want) {
        return Err(step_hint(
            format!("compiler mismatch: the kernel was built with '{want}', {whose} is '{have}'"),
            "another compiler (even another Debian revision of it) can generate different code \
             for unchanged functions. Recreate the build root (kpatch-build --cache-clean=all) if \
             Debian has updated it since, or pass --skip-compiler-check if you know the \
             difference is harmless",
        ));
    }
    Ok(())
}

/// The compiler version in a `DW_AT_producer` (`GNU C11 14.2.0 -mno-sse …` → `14.2.0`).
pub fn producer_version(producer: &str) -> Option<&str> {
    producer
        .split_whitespace()
        .take_while(|w| !w.starts_with('-'))
        .find(|w| is_version(w))
}

/// The `DW_AT_producer` of the first C compile unit of an ELF file with DWARF.
pub fn dwarf_producer(elf: &Path) -> Result<Option<String>> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(elf).map_err(io(elf))?;
    let file = object::File::parse(&*data).map_err(|e| step(format!("{}: {e}", elf.display())))?;
    let load = |id: gimli::SectionId| -> std::result::Result<std::borrow::Cow<[u8]>, gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or_default())
    };
    // Uncompressed sections are borrowed from `data`, so loading them all costs nothing.
    let sections =
        gimli::DwarfSections::load(load).map_err(|e: gimli::Error| step(format!("DWARF: {e}")))?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::RunTimeEndian::Little));
    let mut units = dwarf.units();
    while let Ok(Some(h)) = units.next() {
        let Ok(unit) = dwarf.unit(h) else { continue };
        let mut entries = unit.entries();
        let Ok(Some((_, die))) = entries.next_dfs() else {
            continue;
        };
        let Ok(Some(attr)) = die.attr_value(gimli::DW_AT_producer) else {
            continue;
        };
        let Ok(s) = dwarf.attr_string(&unit, attr) else {
            continue;
        };
        let s = s.to_string_lossy().into_owned();
        if s.starts_with("GNU C") {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Checks the producer of the parent vmlinux against the kernel's compiler version.
pub fn compare_producer(want: &str, producer: &str, what: &str) -> Result<()> {
    match (cc_version(want), producer_version(producer)) {
        (Some(w), Some(h)) if w == h => Ok(()),
        (w, h) => Err(step_hint(
            format!(
                "compiler mismatch: the kernel's configuration says {} ('{want}'), but {what} was \
                 produced by {} ('{producer}')",
                w.unwrap_or("?"),
                h.unwrap_or("?"),
            ),
            "the debug symbols are not from this kernel's build; give the matching vmlinux with -v, \
             or pass --skip-compiler-check",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_identity_ignores_the_program_name_only() {
        let k = "x86_64-linux-gnu-gcc-14 (Debian 14.2.0-19) 14.2.0";
        assert!(compare_compilers(k, "gcc-14 (Debian 14.2.0-19) 14.2.0", "the root").is_ok());
        let e = compare_compilers(
            k,
            "gcc-14 (Debian 14.2.0-20) 14.2.0",
            "the build root's gcc-14",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("the build root's gcc-14 is 'gcc-14 (Debian 14.2.0-20) 14.2.0'"),
            "{e}"
        );
        assert!(e.contains("--skip-compiler-check"));
        assert!(compare_compilers("gcc", "gcc", "x").is_err());
        assert_eq!(cc_program(k), "x86_64-linux-gnu-gcc-14");
        assert_eq!(cc_version(k), Some("14.2.0"));
    }

    #[test]
    fn producer_versions() {
        let k = "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0";
        assert!(compare_producer(k, "GNU C11 12.2.0 -m64 -mno-red-zone -O2", "vmlinux").is_ok());
        let e = compare_producer(k, "GNU C11 14.2.0 -m64", "the -dbg vmlinux")
            .unwrap_err()
            .to_string();
        assert!(e.contains("produced by 14.2.0"), "{e}");
        assert_eq!(
            producer_version("GNU C89 4.8.5 20150623 -mtune=generic"),
            Some("4.8.5")
        );
        assert_eq!(producer_version("clang version 17"), None);
    }

    #[test]
    fn producer_of_a_linked_program() {
        // Linked, as a vmlinux is: DWARF strings need no relocation.
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("a.c");
        std::fs::write(&c, "int main(void) { return 0; }\n").unwrap();
        let o = dir.path().join("a");
        let st = std::process::Command::new("gcc")
            .args(["-g", "-o"])
            .arg(&o)
            .arg(&c)
            .status()
            .unwrap();
        assert!(st.success());
        let p = dwarf_producer(&o).unwrap().expect("a producer");
        let v = std::process::Command::new("gcc")
            .arg("-dumpfullversion")
            .output()
            .unwrap();
        let v = String::from_utf8_lossy(&v.stdout).trim().to_string();
        assert_eq!(producer_version(&p), Some(v.as_str()), "{p}");
    }
}
