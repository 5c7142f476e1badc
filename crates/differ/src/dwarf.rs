//! The DWARF of both objects, read once for the type check ([`crate::types`]) and the
//! explanations ([`crate::explain`]), and the link from DWARF code addresses back to the
//! differ's function symbols and their status.

use std::collections::HashMap;

use debuginfo::die::Dies;
use debuginfo::lines::Lines;
use debuginfo::load::{self, Sections};
use kelf::consts::STT_FUNC;
use kelf::SymbolId;

use crate::elf::{Elf, Status};

/// One object's parsed DWARF.
pub struct Model<'a> {
    pub dies: Dies<'a>,
    pub lines: Lines,
    /// Function symbols by synthetic address of their start.
    funcs: HashMap<u64, SymbolId>,
}

impl Model<'_> {
    /// The function symbol starting at a DWARF code address.
    pub fn func_at(&self, addr: u64) -> Option<SymbolId> {
        self.funcs.get(&addr).copied()
    }
}

/// The synthetic DWARF address of offset `off` in a symbol's section.
pub fn sym_address(elf: &Elf, sym: SymbolId, off: u64) -> Option<u64> {
    let s = elf.y(sym);
    Some(load::address(s.sec?, s.value + off))
}

fn functions(elf: &Elf) -> HashMap<u64, SymbolId> {
    let mut m = HashMap::new();
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.kind == STT_FUNC {
            if let Some(sec) = s.sec {
                m.entry(load::address(sec, s.value)).or_insert(id);
            }
        }
    }
    m
}

fn load_one(elf: &Elf) -> Result<Sections, String> {
    let width = |t: u32| elf.arch.data_reloc_width(t);
    match Sections::load(&elf.obj, &width) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(format!("{} has no DWARF (built without -g?)", elf.name)),
        Err(e) => Err(format!("{}: {e}", elf.name)),
    }
}

fn parse<'a>(elf: &Elf, dwarf: &load::Dwarf<'a>) -> Result<Model<'a>, String> {
    let dies = debuginfo::die::parse(dwarf).map_err(|e| format!("{}: {e}", elf.name))?;
    let lines = Lines::parse(dwarf).map_err(|e| format!("{}: {e}", elf.name))?;
    Ok(Model {
        dies,
        lines,
        funcs: functions(elf),
    })
}

/// Both objects' relocated debug sections, read before any phase edits the debug
/// relocations (`include_debug_sections` drops those of code left out), or the reason
/// they are not available (no `-g`, compressed or malformed debug sections).
pub type DebugSections = Result<(Sections, Sections), String>;

pub fn load_sections(orig: &Elf, patched: &Elf) -> DebugSections {
    load_one(orig).and_then(|o| load_one(patched).map(|p| (o, p)))
}

/// Run `f` with both objects' parsed DWARF, or with the reason it is not available.
pub fn with_models<T>(
    orig: &Elf,
    patched: &Elf,
    secs: &DebugSections,
    f: impl FnOnce(Result<(&Model, &Model), String>) -> T,
) -> T {
    let (os, ps) = match secs {
        Ok(s) => s,
        Err(e) => return f(Err(e.clone())),
    };
    let (od, pd) = (os.dwarf(), ps.dwarf());
    match parse(orig, &od).and_then(|o| parse(patched, &pd).map(|p| (o, p))) {
        Ok((om, pm)) => f(Ok((&om, &pm))),
        Err(e) => f(Err(e)),
    }
}

/// How the patch treats the original function at a DWARF code address of the original.
pub fn orig_fn_state(
    orig: &Elf,
    patched: &Elf,
    om: &Model,
    addr: u64,
) -> debuginfo::usage::FnState {
    use debuginfo::usage::FnState;
    let Some(sym) = om.func_at(addr) else {
        return FnState::Unknown;
    };
    match orig.sym[sym].twin {
        Some(t) if patched.sym[t].status == Status::Same => FnState::Unchanged,
        Some(_) => FnState::Changed,
        // Gone from the patched object: its callers changed.
        None => FnState::Changed,
    }
}
