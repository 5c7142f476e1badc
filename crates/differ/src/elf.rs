//! The differ's view of one object: the [`kelf::Object`] plus per-section and
//! per-symbol state (correlation twin, status, inclusion), kept in side tables indexed
//! by the same typed ids.

use std::cell::OnceCell;

use kelf::consts::*;
use kelf::{IdVec, Object, Rela, SectionId, SymbolId};

use crate::arch::{self, Arch};
use crate::error::{fatal, Result};

/// Comparison status of a section or symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Status {
    #[default]
    New,
    Changed,
    Same,
}

/// What the phases learn about one section.
#[derive(Default, Debug)]
pub(crate) struct SecState {
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
    /// Relocation index by offset, built on demand (relocation sections).
    /// Boxed: most sections never build one, and an empty cell is then 8 bytes, not 48.
    #[allow(clippy::box_collection)]
    pub by_offset: OnceCell<Box<std::collections::HashMap<u64, usize>>>,
}

/// What the phases learn about one symbol.
#[derive(Default, Debug, Clone)]
pub(crate) struct SymState {
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
    /// The `__patchable_function_entries` section that records this (section) symbol.
    pub pfe: Option<SectionId>,
}

/// What a relocation designates once ppc64le's `.toc` indirection is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// The relocation itself (every architecture but ppc64le, and non-TOC relocations).
    Direct,
    /// The `.rela.toc` entry (section, index) the TOC-relative relocation goes through.
    Toc(SectionId, usize),
    /// A `.toc` slot holding a constant, not a symbol.
    Constant,
}

/// How much a differ message matters (its severity), which also decides where the
/// command line prints it: notes and notices on stdout, warnings and errors on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    /// Progress detail: a changed or new function.
    Note,
    /// Something the patch author should see: a marker honoured or ignored, a callback.
    Notice,
    /// An ambiguous case the differ resolved by an assumption it states.
    Warning,
    /// A reason for the refusal that follows.
    Error,
}

type Sink = dyn Fn(Stream, &str) + Send + Sync;

/// A message sink, shared by both objects of a run.
#[derive(Clone)]
pub struct LogFn(pub(crate) std::sync::Arc<Sink>);

impl LogFn {
    /// A sink that hands every message to `f`.
    pub fn new(f: impl Fn(Stream, &str) + Send + Sync + 'static) -> LogFn {
        LogFn(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for LogFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogFn")
    }
}

/// The command-line default: notes to stdout, errors to stderr.
pub fn print_log() -> LogFn {
    LogFn::new(|stream, msg| match stream {
        Stream::Note | Stream::Notice => println!("{msg}"),
        Stream::Warning | Stream::Error => eprintln!("{msg}"),
    })
}

/// Discard messages (benchmarks, fuzzing).
pub fn silent_log() -> LogFn {
    LogFn::new(|_, _| {})
}

/// One object as the differ sees it: the ELF model, its architecture, and what the
/// phases have learnt about each section and symbol. Made by [`Elf::open`] or
/// [`Elf::from_object`] and handed to [`crate::run_objects`].
pub struct Elf {
    pub(crate) name: String,
    pub(crate) log: LogFn,
    pub(crate) obj: Object,
    pub(crate) arch: &'static dyn Arch,
    pub(crate) sec: IdVec<SectionId, SecState>,
    pub(crate) sym: IdVec<SymbolId, SymState>,
    /// `import_ns=` strings from `.modinfo`, NUL-separated.
    pub(crate) modinfo_ns: Vec<u8>,
    /// The object has `__patchable_function_entries` (ftrace hooks on arm64, ...).
    pub(crate) has_pfe: bool,
    /// Those sections carry `SHF_LINK_ORDER`.
    pub(crate) pfe_ordered: bool,
    /// Reasons the patch cannot be applied, gathered by the phases (patched object).
    pub(crate) refusals: Vec<crate::refusal::Refusal>,
    /// Functions without an ftrace hook carried through their callers (`reroute`).
    pub(crate) rerouted: Vec<(SymbolId, Vec<SymbolId>)>,
    /// Changed global functions without an ftrace hook that this object alone cannot
    /// carry (kpatch-build may find callers elsewhere: [`crate::Carry`]).
    pub(crate) hookless_globals: Vec<String>,
}

impl Elf {
    /// Reads the object at `path`; fails on input the differ cannot handle (format,
    /// architecture, byte order, relocation types).
    pub fn open(path: &str) -> Result<Elf> {
        let obj = kelf::read::read_file(path).map_err(|e| match e {
            // Already names the file.
            kelf::Error::Io { .. } => fatal(e.to_string()),
            e => fatal(format!("{path}: {e}")),
        })?;
        Self::from_object(path, obj)
    }

    /// The differ's view of an object already read; `path` names it in messages.
    pub fn from_object(path: &str, mut obj: Object) -> Result<Elf> {
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
        arch.preprocess(&mut obj)
            .map_err(|e| fatal(format!("{path}: {e}")))?;
        let pfe = obj
            .sections
            .iter()
            .find(|s| s.name == "__patchable_function_entries");
        let (has_pfe, pfe_ordered) = match pfe {
            Some(s) if arch.uses_pfe() => (true, s.sh_flags & u64::from(SHF_LINK_ORDER) != 0),
            _ => (false, false),
        };
        let nsec = obj.sections.len();
        let nsym = obj.symbols.len();
        let mut elf = Elf {
            name: path.to_string(),
            log: print_log(),
            obj,
            arch,
            sec: IdVec::from_fn(nsec, |_| SecState::default()),
            sym: IdVec::from_fn(nsym, |_| SymState::default()),
            modinfo_ns: Vec::new(),
            has_pfe,
            pfe_ordered,
            refusals: Vec::new(),
            rerouted: Vec::new(),
            hookless_globals: Vec::new(),
        };
        elf.link_prefixed_functions()?;
        elf.link_pfe();
        elf.compute_rela_strings()?;
        Ok(elf)
    }

    pub(crate) fn note(&self, msg: String) {
        (self.log.0)(Stream::Note, &msg);
    }

    pub(crate) fn notice(&self, msg: String) {
        (self.log.0)(Stream::Notice, &msg);
    }

    pub(crate) fn warn(&self, msg: String) {
        (self.log.0)(Stream::Warning, &msg);
    }

    pub(crate) fn error(&self, msg: String) {
        (self.log.0)(Stream::Error, &msg);
    }

    pub(crate) fn s(&self, id: SectionId) -> &kelf::Section {
        self.obj.sec(id)
    }

    pub(crate) fn y(&self, id: SymbolId) -> &kelf::Symbol {
        self.obj.sym(id)
    }

    pub(crate) fn sections(&self) -> impl DoubleEndedIterator<Item = SectionId> {
        self.obj.sections.ids()
    }

    pub(crate) fn symbols(&self) -> impl DoubleEndedIterator<Item = SymbolId> {
        self.obj.symbols.ids()
    }

    pub(crate) fn is_rela(&self, id: SectionId) -> bool {
        self.s(id).is_rela()
    }

    /// The section a relocation section applies to (itself for other sections).
    pub(crate) fn base_of(&self, id: SectionId) -> SectionId {
        self.s(id).base.unwrap_or(id)
    }

    /// Name of the function (or section) a section belongs to, for messages.
    pub(crate) fn section_function_name(&self, id: SectionId) -> String {
        let base = self.base_of(id);
        match self.sec[base].bundled {
            Some(sym) => self.y(sym).name.clone(),
            None => self.s(base).name.clone(),
        }
    }

    /// Section name of a symbol, if it has a section.
    pub(crate) fn sym_sec_name(&self, id: SymbolId) -> Option<&str> {
        self.y(id).sec.map(|s| self.s(s).name.as_str())
    }

    pub(crate) fn relas(&self, relasec: SectionId) -> &[Rela] {
        &self.s(relasec).relas
    }

    /// The string a relocation points into, for relocations to merged-string sections.
    pub(crate) fn rela_string(&self, relasec: SectionId, i: usize) -> Option<&[u8]> {
        let off = (*self.sec[relasec].rela_strings.get(i)?)?;
        let rela = &self.s(relasec).relas[i];
        let sec = self.y(rela.sym).sec?;
        let data = &self.s(sec).data;
        let start = off as usize;
        let rest = data.get(start..)?;
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// Offsets where instructions start in a text section.
    pub(crate) fn insn_starts(&self, sec: SectionId) -> Result<&[u32]> {
        if let Some(v) = self.sec[sec].insns.get() {
            return Ok(v);
        }
        let v = self.arch.decode_starts(&self.s(sec).data).map_err(|off| {
            fatal(format!(
                "can't decode instruction in section {} at offset {off:#x}",
                self.s(sec).name
            ))
        })?;
        let _ = self.sec[sec].insns.set(v);
        Ok(self.sec[sec].insns.get().map(Vec::as_slice).unwrap_or(&[]))
    }

    /// The relocation's addend adjusted to the offset it designates in its target.
    pub(crate) fn rela_target_offset(&self, relasec: SectionId, rela: &Rela) -> Result<i64> {
        self.arch.rela_target_offset(self, relasec, rela)
    }

    /// Find the relocation entry at `offset` in a relocation section.
    pub(crate) fn find_rela_by_offset(&self, relasec: SectionId, offset: u64) -> Option<usize> {
        let map = self.sec[relasec].by_offset.get_or_init(|| {
            let mut m = std::collections::HashMap::new();
            for (i, r) in self.s(relasec).relas.iter().enumerate() {
                m.entry(r.offset).or_insert(i);
            }
            Box::new(m)
        });
        map.get(&offset).copied()
    }

    /// Follow ppc64le's `.toc` indirection.
    pub(crate) fn resolve(&self, relasec: SectionId, i: usize) -> Resolved {
        let r = &self.s(relasec).relas[i];
        if !self.arch.is_toc_reloc(r.r_type) {
            return Resolved::Direct;
        }
        let Some(toc) = self.y(r.sym).sec else {
            return Resolved::Constant;
        };
        let Some(tr) = self.s(toc).rela else {
            return Resolved::Constant;
        };
        match self.find_rela_by_offset(tr, r.addend as u64) {
            Some(j) => Resolved::Toc(tr, j),
            None => Resolved::Constant,
        }
    }

    /// The (section, index) of the relocation that names the real target: the entry
    /// itself, its `.rela.toc` entry, or `None` for a `.toc` constant.
    pub(crate) fn target_rela(&self, relasec: SectionId, i: usize) -> Option<(SectionId, usize)> {
        match self.resolve(relasec, i) {
            Resolved::Direct => Some((relasec, i)),
            Resolved::Toc(s, j) => Some((s, j)),
            Resolved::Constant => None,
        }
    }

    /// The symbol a relocation ultimately designates (`None` for a `.toc` constant).
    pub(crate) fn target_sym(&self, relasec: SectionId, i: usize) -> Option<SymbolId> {
        self.target_rela(relasec, i)
            .map(|(s, j)| self.s(s).relas[j].sym)
    }

    /// Record which `__patchable_function_entries` section covers each section symbol.
    fn link_pfe(&mut self) {
        if !self.has_pfe {
            return;
        }
        for id in self.sections() {
            if self.s(id).name != "__patchable_function_entries" {
                continue;
            }
            let Some(rs) = self.s(id).rela else { continue };
            let syms: Vec<SymbolId> = self.relas(rs).iter().map(|r| r.sym).collect();
            for s in syms {
                self.sym[s].pfe = Some(id);
            }
        }
    }

    /// Does a `__patchable_function_entries` entry cover this function?
    pub(crate) fn has_pfe_entry(&self, sym: SymbolId) -> bool {
        if !self.has_pfe {
            return false;
        }
        let Some(fsec) = self.y(sym).sec else {
            return false;
        };
        for id in self.sections() {
            if self.s(id).name != "__patchable_function_entries" {
                continue;
            }
            let Some(rs) = self.s(id).rela else { continue };
            if self
                .relas(rs)
                .iter()
                .any(|r| self.y(r.sym).sec == Some(fsec) && self.sym[r.sym].pfe == Some(id))
            {
                return true;
            }
        }
        false
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
            self.sec[id].rela_strings = strings;
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
            self.sym[id].is_pfx = true;
            for f in funcs {
                self.sym[f].pfx = Some(id);
            }
        }
        Ok(())
    }
}

pub(crate) fn is_debug_name(name: &str) -> bool {
    crate::names::is_debug_section(name)
}
