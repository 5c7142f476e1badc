//! Static checks of a module built for an IBT kernel (IBT is not enforced under QEMU's TCG,
//! so a missing ENDBR would not fault in the test bed; these checks stand in for it):
//!
//! - every patched function starts with ENDBR64 exactly when the running kernel's original
//!   (in the `-dbg` vmlinux) does: the livepatch core reaches the new function by ftrace's
//!   return into it, but other code may still call it indirectly, as it did the original;
//! - no `.ibt_endbr_seal` entry of the module points at a patched function (the kernel
//!   would overwrite its ENDBR with a NOP at load time).

use std::collections::HashMap;
use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

/// `endbr64`.
pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// The first four bytes of each defined function of an ELF file (relocatable or linked).
pub fn function_starts(path: &Path) -> HashMap<String, [u8; 4]> {
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let relocatable = file.kind() == object::ObjectKind::Relocatable;
    let mut out = HashMap::new();
    for sym in file.symbols() {
        if sym.kind() != object::SymbolKind::Text || sym.is_undefined() {
            continue;
        }
        let Some(idx) = sym.section_index() else {
            continue;
        };
        let Ok(sec) = file.section_by_index(idx) else {
            continue;
        };
        let Ok(bytes) = sec.data() else { continue };
        let off = if relocatable {
            sym.address()
        } else {
            sym.address().wrapping_sub(sec.address())
        } as usize;
        if let Some(b) = bytes.get(off..off + 4) {
            let name = sym.name().unwrap_or("").to_string();
            out.entry(name).or_insert([b[0], b[1], b[2], b[3]]);
        }
    }
    out
}

/// Functions of a module whose entry an `.ibt_endbr_seal` entry designates.
pub fn sealed_functions(ko: &Path) -> Vec<String> {
    let data = std::fs::read(ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let Some(seal) = file.section_by_name(".ibt_endbr_seal") else {
        return Vec::new();
    };
    // (section, offset) of every function entry.
    let mut entries: HashMap<(usize, u64), String> = HashMap::new();
    for sym in file.symbols() {
        if sym.kind() == object::SymbolKind::Text {
            if let Some(i) = sym.section_index() {
                entries.insert((i.0, sym.address()), sym.name().unwrap_or("").to_string());
            }
        }
    }
    let mut out = Vec::new();
    for (_, rel) in seal.relocations() {
        let RelocationTarget::Symbol(si) = rel.target() else {
            continue;
        };
        let Ok(sym) = file.symbol_by_index(si) else {
            continue;
        };
        let Some(sec) = sym.section_index() else {
            continue;
        };
        let at = sym.address().wrapping_add(rel.addend() as u64);
        if let Some(name) = entries.get(&(sec.0, at)) {
            out.push(name.clone());
        }
    }
    out
}

/// Checks the changed functions of a module against the kernel's originals; returns the
/// list of problems (empty when all is well).
pub fn check_endbr(
    ko: &Path,
    vmlinux_starts: &HashMap<String, [u8; 4]>,
    changed: &[String],
) -> Vec<String> {
    let module = function_starts(ko);
    let sealed = sealed_functions(ko);
    let mut problems = Vec::new();
    for f in changed {
        let Some(new) = module.get(f) else {
            problems.push(format!("{f}: not in the module"));
            continue;
        };
        let Some(old) = vmlinux_starts.get(f) else {
            problems.push(format!("{f}: not in the kernel's vmlinux"));
            continue;
        };
        if (*old == ENDBR64) != (*new == ENDBR64) {
            problems.push(format!(
                "{f}: the original {} with ENDBR64, the patched copy {}",
                if *old == ENDBR64 {
                    "starts"
                } else {
                    "does not start"
                },
                if *new == ENDBR64 { "does" } else { "does not" }
            ));
        }
        if sealed.contains(f) {
            problems.push(format!("{f}: sealed by the module's .ibt_endbr_seal"));
        }
    }
    problems
}

/// Functions of a module that must start with ENDBR64 and not be sealed (reached through
/// pointers); returns the problems.
pub fn check_endbr_required(ko: &Path, functions: &[String]) -> Vec<String> {
    let starts = function_starts(ko);
    let sealed = sealed_functions(ko);
    let mut problems = Vec::new();
    for f in functions {
        match starts.get(f) {
            None => problems.push(format!("{f}: not in the module")),
            Some(b) if *b != ENDBR64 => problems.push(format!("{f}: does not start with ENDBR64")),
            Some(_) => {}
        }
        if sealed.contains(f) {
            problems.push(format!("{f}: sealed by the module's .ibt_endbr_seal"));
        }
    }
    problems
}
