//! Carrying a change through callers in other objects.
//!
//! A changed function without an ftrace hook cannot be redirected: `lib/` is built
//! without `-pg` (`ccflags-remove-$(CONFIG_FUNCTION_TRACER)` in `lib/Makefile`), and so
//! are a few other directories and every `notrace` function. The differ carries such a
//! function through its callers when they are in the same object; a *global* one is
//! called from other objects, which only the parent (the debug vmlinux, linked with
//! `--emit-relocs`) knows. This module reads every relocation of the parent that
//! designates the function and says who calls it, or why its callers cannot carry it:
//!
//! - a call or jump from a function of the kernel's text: that function is a caller (its
//!   compile unit comes from `.debug_aranges`); `.init.text` is ignored (freed after boot);
//! - a reference from a table that follows code (ORC, exception tables, objtool's lists):
//!   ignored, it describes the code rather than using the function;
//! - an export (`__ksymtab*`): modules may call it directly; refused when a module of the
//!   release imports it (their calls would reach the old copy);
//! - anything else (its address taken in code, stored in data): refused, since calls
//!   through that pointer would still reach the old copy.
//!
//! A caller must itself have an ftrace hook (its first instruction after `endbr64` is the
//! 5-byte NOP or call that ftrace patches), and there may be at most
//! [`MAX_CALLERS`] of them.

use std::collections::BTreeMap;
use std::path::Path;

use object::{
    Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionFlags,
    SymbolKind,
};

use crate::error::{io, step, Result};

/// At most this many callers in other objects carry a function (the differ's own bound
/// for callers in one object).
pub const MAX_CALLERS: usize = 8;

/// A function of the parent that calls the carried function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Its symbol name in the parent.
    pub function: String,
    /// Its compile unit's source, relative to the tree.
    pub source: String,
}

/// The callers of one function across the parent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Callers {
    /// Callers outside the function's own unit (those of its unit the differ finds).
    pub callers: Vec<Caller>,
    /// The function is exported (no module of the release imports it).
    pub exported: bool,
}

/// Output sections whose references to a function describe its code rather than use it.
fn follows_code(name: &str) -> bool {
    matches!(
        name,
        ".orc_unwind_ip"
            | ".orc_unwind"
            | "__ex_table"
            | ".altinstructions"
            | ".smp_locks"
            | "__bug_table"
            | ".static_call_sites"
            | ".retpoline_sites"
            | ".return_sites"
            | ".call_sites"
            | ".ibt_endbr_seal"
            | "__mcount_loc"
            | "__patchable_function_entries"
            | ".cfi_sites"
    ) || name.starts_with(".debug")
        || name.starts_with(".discard")
}

/// A defined symbol, by address.
struct Sym {
    addr: u64,
    size: u64,
    name: String,
}

/// The parent (a linked kernel image) opened for the search.
pub struct Parent<'d> {
    file: object::File<'d>,
    /// Functions, sorted by address.
    funcs: Vec<Sym>,
}

impl<'d> Parent<'d> {
    /// Parse the image `data` read from `path`.
    pub fn open(data: &'d [u8], path: &Path) -> Result<Parent<'d>> {
        let file = object::File::parse(data)
            .map_err(|e| step(format!("{}: not an ELF file: {e}", path.display())))?;
        let mut funcs: Vec<Sym> = file
            .symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| {
                Some(Sym {
                    addr: s.address(),
                    size: s.size(),
                    name: s.name().ok()?.to_string(),
                })
            })
            .collect();
        funcs.sort_by_key(|s| (s.addr, std::cmp::Reverse(s.size)));
        Ok(Parent { file, funcs })
    }

    /// The function whose code covers `addr`.
    fn function_at(&self, addr: u64) -> Option<&Sym> {
        let i = self.funcs.partition_point(|s| s.addr <= addr);
        self.funcs[..i]
            .iter()
            .rev()
            .take(8)
            .find(|s| addr < s.addr + s.size)
    }

    /// `len` bytes of the loaded image at `addr`.
    fn bytes(&self, addr: u64, len: u64) -> Option<&'d [u8]> {
        self.file
            .sections()
            .find(|s| s.address() <= addr && addr + len <= s.address() + s.size())
            .and_then(|s| s.data_range(addr, len).ok().flatten())
    }

    /// Are the relocations of the kernel's code kept (`--emit-relocs` without stripping)?
    fn code_relocations(&self) -> bool {
        self.file
            .sections()
            .filter(is_exec)
            .any(|s| s.relocations().next().is_some())
    }

    /// Does the function at `addr` begin with an ftrace hook (after `endbr64`)?
    fn hooked(&self, addr: u64) -> bool {
        let Some(b) = self.bytes(addr, 9) else {
            return false;
        };
        let b = b.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(b);
        b.starts_with(&[0x0f, 0x1f, 0x44, 0x00, 0x00]) || b.first() == Some(&0xe8)
    }

    /// Is the reference at `addr` the displacement of a call or a jump (not an address
    /// taken)?
    fn is_branch(&self, addr: u64) -> bool {
        match self.bytes(addr.saturating_sub(2), 2) {
            Some([_, 0xe8 | 0xe9]) => true,
            Some([0x0f, op]) => op & 0xf0 == 0x80,
            _ => false,
        }
    }
}

/// How a reference to the function is used.
enum Use {
    Call(String, u64),
    Ignored,
    Exported,
    Refused(String),
}

/// Find who calls `function` (a global function of unit `own`) in the debug vmlinux
/// `parent`; `importers(name)` lists the release's modules that import a symbol.
/// The outer error is a failure to read; the inner one says why the callers cannot
/// carry it.
pub fn find_callers(
    parent: &Path,
    function: &str,
    own: &str,
    importers: &dyn Fn(&str) -> Vec<String>,
) -> Result<std::result::Result<Callers, String>> {
    let data = std::fs::read(parent).map_err(io(parent))?;
    let p = Parent::open(&data, parent)?;
    p.callers(function, own, importers)
}

impl Parent<'_> {
    /// [`find_callers`] in an image already open.
    pub fn callers(
        &self,
        function: &str,
        own: &str,
        importers: &dyn Fn(&str) -> Vec<String>,
    ) -> Result<std::result::Result<Callers, String>> {
        search(self, function, own, importers)
    }
}

fn search(
    p: &Parent,
    function: &str,
    own: &str,
    importers: &dyn Fn(&str) -> Vec<String>,
) -> Result<std::result::Result<Callers, String>> {
    let Some(target) = p
        .file
        .symbols()
        .find(|s| s.is_global() && s.kind() == SymbolKind::Text && s.name() == Ok(function))
    else {
        return Ok(Err(format!(
            "{function} is not a global function of the kernel"
        )));
    };
    let entry = target.address();
    // Linked with --emit-relocs, the kernel keeps its relocations (6.1); later kernels
    // strip them after linking (6.12), and the code itself is read instead.

    let uses = if p.code_relocations() {
        by_relocations(p, &target)
    } else {
        by_code(p, entry)
    };
    let mut callers: BTreeMap<u64, String> = BTreeMap::new();
    let mut exported = p
        .file
        .symbols()
        .any(|s| s.name() == Ok(&format!("__ksymtab_{function}")));
    for u in uses {
        match u {
            Use::Call(f, addr) => {
                callers.insert(addr, f);
            }
            Use::Ignored => {}
            Use::Exported => exported = true,
            Use::Refused(why) => return Ok(Err(why)),
        }
    }
    if exported {
        let mods = importers(function);
        if !mods.is_empty() {
            let shown: Vec<&str> = mods.iter().take(5).map(String::as_str).collect();
            return Ok(Err(format!(
                "it is exported and {} module(s) of this release call it ({}{}), whose calls \
                 would still reach the old copy",
                mods.len(),
                shown.join(", "),
                if mods.len() > 5 { ", ..." } else { "" }
            )));
        }
    }
    if callers.is_empty() {
        return Ok(Err(
            "no function of the kernel calls it directly, so no caller can carry a new copy".into(),
        ));
    }
    Ok(resolve_callers(p, own, &callers)?.map(|c| Callers { exported, ..c }))
}

/// Each caller's compile unit and ftrace hook; those outside `own`, at most
/// [`MAX_CALLERS`] of them.
fn resolve_callers(
    p: &Parent,
    own: &str,
    callers: &BTreeMap<u64, String>,
) -> Result<std::result::Result<Callers, String>> {
    let units = compile_units(&p.file, callers.keys().copied())?;
    let mut out = Callers::default();
    for (addr, f) in callers {
        if !p.hooked(*addr) {
            return Ok(Err(format!("its caller {f} has no ftrace hook either")));
        }
        let Some(source) = units.get(addr) else {
            return Ok(Err(format!(
                "the compile unit of its caller {f} is not in the debug information"
            )));
        };
        if source != own {
            out.callers.push(Caller {
                function: f.clone(),
                source: source.clone(),
            });
        }
    }
    if out.callers.len() > MAX_CALLERS {
        return Ok(Err(format!(
            "{} functions of other objects call it (at most {MAX_CALLERS} can carry it)",
            out.callers.len()
        )));
    }
    Ok(Ok(out))
}

/// Every use of the function the parent's relocations show.
fn by_relocations(p: &Parent, target: &object::Symbol) -> Vec<Use> {
    let entry = target.address();
    let aliases: Vec<object::SymbolIndex> = p
        .file
        .symbols()
        .filter(|s| s.address() == entry && s.section_index() == target.section_index())
        .filter(|s| s.kind() != SymbolKind::Section)
        .map(|s| s.index())
        .collect();
    let mut uses = Vec::new();
    for sec in p.file.sections() {
        let name = sec.name().unwrap_or_default();
        let exec = is_exec(&sec);
        for (at, r) in sec.relocations() {
            let RelocationTarget::Symbol(si) = r.target() else {
                continue;
            };
            let refers = aliases.contains(&si)
                || (!exec
                    && p.file.symbol_by_index(si).is_ok_and(|s| {
                        s.kind() == SymbolKind::Section
                            && s.address().wrapping_add(r.addend() as u64) == entry
                    }));
            if refers && matches!(r.flags(), RelocationFlags::Elf { .. }) {
                uses.push(classify(p, name, exec, at, entry));
            }
        }
    }
    uses
}

/// Every use of the function found by decoding the kernel's code (direct calls and
/// jumps, RIP-relative and immediate addresses) and by looking for its address in
/// allocated data.
fn by_code(p: &Parent, entry: u64) -> Vec<Use> {
    use iced_x86::{Decoder, DecoderOptions, OpKind};
    let mut uses = Vec::new();
    for sec in p.file.sections() {
        let name = sec.name().unwrap_or_default();
        let Ok(data) = sec.data() else { continue };
        if data.is_empty() || follows_code(name) || name.starts_with("__ksymtab") {
            continue;
        }
        if !is_exec(&sec) {
            if !is_alloc(&sec) {
                continue;
            }
            let base = sec.address();
            for (i, w) in data.chunks_exact(8).enumerate() {
                if u64::from_le_bytes(w.try_into().unwrap_or_default()) == entry {
                    uses.push(classify(p, name, false, base + 8 * i as u64, entry));
                }
            }
            continue;
        }
        let (lo, hi) = (sec.address(), sec.address() + data.len() as u64);
        for f in p
            .funcs
            .iter()
            .filter(|f| lo <= f.addr && f.addr + f.size <= hi)
        {
            let code = &data[(f.addr - lo) as usize..(f.addr - lo + f.size) as usize];
            let mut d = Decoder::with_ip(64, code, f.addr, DecoderOptions::NONE);
            for insn in &mut d {
                let branch = (0..insn.op_count()).any(|i| {
                    matches!(insn.op_kind(i), OpKind::NearBranch64)
                        && insn.near_branch_target() == entry
                });
                let address = (insn.is_ip_rel_memory_operand()
                    && insn.ip_rel_memory_address() == entry)
                    || (0..insn.op_count()).any(|i| {
                        matches!(
                            insn.op_kind(i),
                            OpKind::Immediate32to64 | OpKind::Immediate64
                        ) && insn.immediate(i) == entry
                    });
                if !(branch || address) || f.addr == entry {
                    continue;
                }
                uses.push(if name.starts_with(".init.") {
                    Use::Ignored
                } else if branch {
                    Use::Call(f.name.clone(), f.addr)
                } else {
                    Use::Refused(taken(&f.name))
                });
            }
        }
    }
    uses
}

fn taken(function: &str) -> String {
    format!(
        "its address is taken in {function}, so calls through that pointer would still \
         reach the old copy"
    )
}

fn is_exec(sec: &object::Section) -> bool {
    matches!(sec.flags(), SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0)
}

fn is_alloc(sec: &object::Section) -> bool {
    matches!(sec.flags(), SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_ALLOC) != 0)
}

/// What the reference at `at` in section `name` is.
fn classify(p: &Parent, name: &str, exec: bool, at: u64, entry: u64) -> Use {
    if follows_code(name) {
        return Use::Ignored;
    }
    if name.starts_with("__ksymtab") {
        return Use::Exported;
    }
    if !exec {
        return Use::Refused(format!(
            "its address is stored in {name} (at {at:#x}{}), so calls through that pointer \
             would still reach the old copy",
            p.file
                .symbols()
                .filter(|s| s.address() <= at && at < s.address() + s.size().max(1))
                .find_map(|s| s
                    .name()
                    .ok()
                    .filter(|n| !n.is_empty())
                    .map(|n| format!(", {n}")))
                .unwrap_or_default()
        ));
    }
    if name.starts_with(".init.") {
        return Use::Ignored;
    }
    let Some(f) = p.function_at(at) else {
        return Use::Refused(format!(
            "code at {at:#x} in {name}, outside any function, refers to it"
        ));
    };
    if f.addr == entry {
        return Use::Ignored;
    }
    if !p.is_branch(at) {
        return Use::Refused(taken(&f.name));
    }
    Use::Call(f.name.clone(), f.addr)
}

/// The compile unit (its `DW_AT_name`, relative to the tree) covering each address, from
/// `.debug_aranges`.
fn compile_units(
    file: &object::File,
    addrs: impl Iterator<Item = u64>,
) -> Result<BTreeMap<u64, String>> {
    let addrs: Vec<u64> = addrs.collect();
    let mut out = BTreeMap::new();
    if addrs.is_empty() {
        return Ok(out);
    }
    let endian = gimli::RunTimeEndian::Little;
    let load = |id: gimli::SectionId| -> std::result::Result<&[u8], gimli::Error> {
        Ok(file
            .section_by_name(id.name())
            .and_then(|s| s.data().ok())
            .unwrap_or(&[]))
    };
    let sections = gimli::DwarfSections::load(load).map_err(|e| step(format!("DWARF: {e}")))?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
    let dw = |e: gimli::Error| step(format!("DWARF: {e}"));
    let mut headers = dwarf.debug_aranges.headers();
    while let Some(h) = headers.next().map_err(dw)? {
        let mut entries = h.entries();
        let mut hit = Vec::new();
        while let Some(e) = entries.next().map_err(dw)? {
            let r = e.range();
            hit.extend(addrs.iter().filter(|&&a| r.begin <= a && a < r.end));
        }
        if hit.is_empty() {
            continue;
        }
        let header = dwarf
            .debug_info
            .header_from_offset(h.debug_info_offset())
            .map_err(dw)?;
        let unit = dwarf.unit(header).map_err(dw)?;
        let name = unit
            .name
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for a in hit {
            out.insert(a, name.trim_start_matches("./").to_string());
        }
    }
    Ok(out)
}
