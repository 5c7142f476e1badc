//! The differ's view of one object: the [`kelf::Object`] plus per-section and
//! per-symbol state (correlation twin, status, inclusion), kept in side tables indexed
//! by the same typed ids.

use std::cell::OnceCell;

use kelf::consts::*;
use kelf::{Object, Rela, SectionId, SymbolId};

use crate::arch::{self, Arch};
use crate::error::{fatal, Result};

/// Comparison status of a section or symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    New,
    Changed,
    Same,
}

#[derive(Default, Debug)]
pub struct SecState {
    pub twin: Option<SectionId>,
    pub status: Status,
    pub include: bool,
    pub ignore: bool,
    pub grouped: bool,
    /// The bundled function/object symbol: the one symbol this section exists for.
    pub bundled: Option<SymbolId>,
    /// For relocation sections: the string each entry points into, as an offset into
    /// the target symbol's section (only for `SHF_STRINGS` targets).
    pub rela_strings: Vec<Option<u64>>,
    /// Instruction start offsets, decoded on demand (text sections).
    pub insns: OnceCell<Vec<u32>>,
}

#[derive(Default, Debug, Clone)]
pub struct SymState {
    pub twin: Option<SymbolId>,
    pub status: Status,
    pub include: bool,
    pub parent: Option<SymbolId>,
    pub children: Vec<SymbolId>,
    pub pfx: Option<SymbolId>,
    pub is_pfx: bool,
    pub has_func_profiling: bool,
    /// File block of the parent's symbol table this symbol's local names resolve in.
    pub file_block: Option<usize>,
}

pub struct Elf {
    pub name: String,
    pub obj: Object,
    pub arch: &'static dyn Arch,
    pub sec: Vec<SecState>,
    pub sym: Vec<SymState>,
    /// `import_ns=` strings from `.modinfo`, NUL-separated.
    pub modinfo_ns: Vec<u8>,
}

impl Elf {
    pub fn open(path: &str) -> Result<Elf> {
        let obj = kelf::read::read_file(path).map_err(|e| match e {
            // Already names the file.
            kelf::Error::Io { .. } => fatal(e.to_string()),
            e => fatal(format!("{path}: {e}")),
        })?;
        Self::from_object(path, obj)
    }

    pub fn from_object(path: &str, obj: Object) -> Result<Elf> {
        let arch = arch::for_machine(obj.header.e_machine).ok_or_else(|| {
            fatal(format!(
                "{path}: unsupported architecture {}",
                kelf::machine_name(obj.header.e_machine)
            ))
        })?;
        if !obj.is_little_endian() && !arch.big_endian()
            || obj.is_little_endian() && arch.big_endian()
        {
            return Err(fatal(format!(
                "{path}: wrong byte order for {}",
                arch.name()
            )));
        }
        if !obj.sections.iter().any(|s| s.sh_type == SHT_SYMTAB) {
            return Err(fatal(format!("{path}: missing symbol table")));
        }
        for s in obj.sections.iter().filter(|s| s.is_rela()) {
            if let Some(r) = s.relas.iter().find(|r| !arch.is_valid_rela_type(r.r_type)) {
                return Err(fatal(format!(
                    "{path}: {}+{:#x}: relocation type {} is invalid on {}",
                    s.name,
                    r.offset,
                    r.r_type,
                    arch.name()
                )));
            }
        }
        let nsec = obj.sections.len();
        let nsym = obj.symbols.len();
        let mut elf = Elf {
            name: path.to_string(),
            obj,
            arch,
            sec: (0..nsec).map(|_| SecState::default()).collect(),
            sym: vec![SymState::default(); nsym],
            modinfo_ns: Vec::new(),
        };
        elf.link_prefixed_functions()?;
        elf.compute_rela_strings()?;
        Ok(elf)
    }

    pub fn s(&self, id: SectionId) -> &kelf::Section {
        self.obj.sec(id)
    }

    pub fn y(&self, id: SymbolId) -> &kelf::Symbol {
        self.obj.sym(id)
    }

    pub fn sections(&self) -> impl Iterator<Item = SectionId> {
        (0..self.obj.sections.len() as u32).map(SectionId)
    }

    pub fn symbols(&self) -> impl Iterator<Item = SymbolId> {
        (0..self.obj.symbols.len() as u32).map(SymbolId)
    }

    pub fn is_rela(&self, id: SectionId) -> bool {
        self.s(id).is_rela()
    }

    /// The section a relocation section applies to (itself for other sections).
    pub fn base_of(&self, id: SectionId) -> SectionId {
        self.s(id).base.unwrap_or(id)
    }

    /// Name of the function (or section) a section belongs to, for messages.
    pub fn section_function_name(&self, id: SectionId) -> String {
        let base = self.base_of(id);
        match self.sec[base.idx()].bundled {
            Some(sym) => self.y(sym).name.clone(),
            None => self.s(base).name.clone(),
        }
    }

    /// Section name of a symbol, if it has a section.
    pub fn sym_sec_name(&self, id: SymbolId) -> Option<&str> {
        self.y(id).sec.map(|s| self.s(s).name.as_str())
    }

    pub fn relas(&self, relasec: SectionId) -> &[Rela] {
        &self.s(relasec).relas
    }

    /// The string a relocation points into, for relocations to merged-string sections.
    pub fn rela_string(&self, relasec: SectionId, i: usize) -> Option<&[u8]> {
        let off = (*self.sec[relasec.idx()].rela_strings.get(i)?)?;
        let rela = &self.s(relasec).relas[i];
        let sec = self.y(rela.sym).sec?;
        let data = &self.s(sec).data;
        let start = off as usize;
        let rest = data.get(start..)?;
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// Offsets where instructions start in a text section.
    pub fn insn_starts(&self, sec: SectionId) -> Result<&[u32]> {
        if let Some(v) = self.sec[sec.idx()].insns.get() {
            return Ok(v);
        }
        let v = self.arch.decode_starts(&self.s(sec).data).map_err(|off| {
            fatal(format!(
                "can't decode instruction in section {} at offset {off:#x}",
                self.s(sec).name
            ))
        })?;
        let _ = self.sec[sec.idx()].insns.set(v);
        Ok(self.sec[sec.idx()]
            .insns
            .get()
            .map(Vec::as_slice)
            .unwrap_or(&[]))
    }

    /// The relocation's addend adjusted to the offset it designates in its target.
    pub fn rela_target_offset(&self, relasec: SectionId, rela: &Rela) -> Result<i64> {
        self.arch.rela_target_offset(self, relasec, rela)
    }

    /// Find the relocation entry at `offset` in a relocation section.
    pub fn find_rela_by_offset(&self, relasec: SectionId, offset: u64) -> Option<usize> {
        self.s(relasec)
            .relas
            .iter()
            .position(|r| r.offset == offset)
    }

    fn compute_rela_strings(&mut self) -> Result<()> {
        for id in self.sections() {
            if !self.is_rela(id) {
                continue;
            }
            let n = self.s(id).relas.len();
            let mut strings = vec![None; n];
            for (i, slot) in strings.iter_mut().enumerate() {
                let rela = &self.s(id).relas[i];
                let sym = self.y(rela.sym);
                let Some(tsec) = sym.sec else { continue };
                if self.s(tsec).sh_flags & u64::from(SHF_STRINGS) == 0 {
                    continue;
                }
                if is_debug_name(&self.s(self.base_of(id)).name) {
                    continue;
                }
                let off = (sym.value as i64).checked_add(self.rela_target_offset(id, rela)?);
                let Some(off) = off.filter(|o| *o >= 0 && *o as u64 <= self.s(tsec).size) else {
                    return Err(fatal(format!(
                        "{}+{:#x}: string reference {}{:+} out of range",
                        self.s(self.base_of(id)).name,
                        rela.offset,
                        sym.name,
                        rela.addend
                    )));
                };
                *slot = Some(off as u64);
            }
            self.sec[id.idx()].rela_strings = strings;
        }
        Ok(())
    }

    /// Link `__pfx_`/`__cfi_` padding symbols to the functions they precede.
    fn link_prefixed_functions(&mut self) -> Result<()> {
        if !self.arch.has_prefix_symbols() {
            return Ok(());
        }
        // Functions by (section, start).
        let mut by_start: std::collections::HashMap<(u32, u64), Vec<SymbolId>> = Default::default();
        for id in self.symbols() {
            let s = self.y(id);
            if s.kind == STT_FUNC {
                if let Some(sec) = s.sec {
                    by_start.entry((sec.0, s.value)).or_default().push(id);
                }
            }
        }
        for id in self.symbols() {
            let s = self.y(id);
            if s.kind != STT_FUNC || !(s.name.starts_with("__pfx_") || s.name.starts_with("__cfi_"))
            {
                continue;
            }
            let Some(sec) = s.sec else { continue };
            let funcs = by_start
                .get(&(sec.0, s.value + s.size))
                .cloned()
                .unwrap_or_default();
            if funcs.is_empty() {
                return Err(fatal(format!(
                    "missing function for prefix symbol {}",
                    s.name
                )));
            }
            self.sym[id.idx()].is_pfx = true;
            for f in funcs {
                self.sym[f.idx()].pfx = Some(id);
            }
        }
        Ok(())
    }
}

pub fn is_debug_name(name: &str) -> bool {
    crate::names::is_debug_section(name)
}
