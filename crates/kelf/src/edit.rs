//! Structural edits that renumber ids: dropping sections or symbols and reordering the
//! symbol table. Every reference (relocations, section links, symbols' sections) is
//! remapped in one pass.

use crate::{consts, Error, IdVec, Object, Result, Section, SectionId, Symbol, SymbolId};

impl Object {
    /// Keep only the sections for which `keep` is true. Symbols defined in dropped
    /// sections are dropped too; a relocation that still points at one is an error.
    pub fn retain_sections(&mut self, keep: impl Fn(SectionId, &Section) -> bool) -> Result<()> {
        let mut map: IdVec<SectionId, Option<SectionId>> =
            IdVec::from_vec(vec![None; self.sections.len()]);
        let mut next = 0u32;
        for (id, s) in self.sections.iter_enumerated() {
            if keep(id, s) {
                map[id] = Some(SectionId(next));
                next += 1;
            }
        }
        let m = |id: Option<SectionId>| id.and_then(|x| map[x]);
        let old = std::mem::take(&mut self.sections);
        for (id, mut s) in old.into_iter_enumerated() {
            if map[id].is_none() {
                continue;
            }
            if s.is_rela() {
                s.base = Some(m(s.base).ok_or_else(|| {
                    Error::Write(format!("{}: the section it applies to was removed", s.name))
                })?);
            } else {
                s.rela = m(s.rela);
            }
            s.link_sec = m(s.link_sec);
            self.sections.push(s);
        }
        let dropped: IdVec<SymbolId, bool> = self
            .symbols
            .iter()
            .map(|s| s.sec.is_some_and(|x| map[x].is_none()))
            .collect();
        for s in self.symbols.iter_mut() {
            s.sec = m(s.sec);
        }
        self.retain_symbols(|id, _| !dropped[id])
    }

    /// Keep only the symbols for which `keep` is true (the null symbol always stays).
    pub fn retain_symbols(&mut self, keep: impl Fn(SymbolId, &Symbol) -> bool) -> Result<()> {
        let order: Vec<SymbolId> = self
            .symbols
            .iter_enumerated()
            .filter(|&(id, s)| id.0 == 0 || keep(id, s))
            .map(|(id, _)| id)
            .collect();
        self.permute_symbols(&order)
    }

    /// Put local symbols before global ones (stable), as the ELF format requires.
    pub fn sort_symbols_locals_first(&mut self) -> Result<()> {
        let mut order: Vec<SymbolId> = self.symbols.ids().collect();
        order.sort_by_key(|&id| {
            if id.0 == 0 {
                0
            } else if self.symbols[id].bind == consts::STB_LOCAL {
                1
            } else {
                2
            }
        });
        self.permute_symbols(&order)
    }

    /// New symbol table = old symbols at `order`; anything else is dropped.
    fn permute_symbols(&mut self, order: &[SymbolId]) -> Result<()> {
        let mut map: IdVec<SymbolId, Option<SymbolId>> =
            IdVec::from_vec(vec![None; self.symbols.len()]);
        for (new, &old) in order.iter().enumerate() {
            map[old] = Some(SymbolId(new as u32));
        }
        let mut old = std::mem::take(&mut self.symbols);
        self.symbols = order
            .iter()
            .map(|&id| std::mem::replace(&mut old[id], Symbol::new("", 0, 0)))
            .collect();
        for s in self.sections.iter_mut() {
            for r in s.relas.iter_mut() {
                r.sym = map[r.sym].ok_or_else(|| {
                    Error::Write(format!(
                        "{}: relocation against a removed symbol {}",
                        s.name, old[r.sym].name
                    ))
                })?;
            }
            s.secsym = s.secsym.and_then(|x| map[x]);
            if let Some(sig) = s.info_sym {
                s.info_sym = Some(map[sig].ok_or_else(|| {
                    Error::Write(format!("group {}: signature symbol removed", s.name))
                })?);
            }
        }
        Ok(())
    }
}
