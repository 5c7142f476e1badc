//! Structural edits that renumber ids: dropping sections or symbols and reordering the
//! symbol table. Every reference (relocations, section links, symbols' sections) is
//! remapped in one pass.

use crate::{consts, Error, Object, Result, SectionId, SymbolId};

impl Object {
    /// Keep only the sections for which `keep` is true. Symbols defined in dropped
    /// sections are dropped too; a relocation that still points at one is an error.
    pub fn retain_sections(
        &mut self,
        keep: impl Fn(SectionId, &crate::Section) -> bool,
    ) -> Result<()> {
        let n = self.sections.len();
        let mut map: Vec<Option<SectionId>> = vec![None; n];
        let mut next = 0u32;
        for (i, s) in self.sections.iter().enumerate() {
            if keep(SectionId(i as u32), s) {
                map[i] = Some(SectionId(next));
                next += 1;
            }
        }
        let old = std::mem::take(&mut self.sections);
        for (i, mut s) in old.into_iter().enumerate() {
            if map[i].is_none() {
                continue;
            }
            let m = |id: Option<SectionId>| id.and_then(|x| map[x.idx()]);
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
        let dropped_syms: Vec<bool> = self
            .symbols
            .iter()
            .map(|s| s.sec.map(|x| map[x.idx()].is_none()).unwrap_or(false))
            .collect();
        for s in self.symbols.iter_mut() {
            s.sec = s.sec.and_then(|x| map[x.idx()]);
        }
        self.retain_symbols(|id, _| !dropped_syms[id.idx()])
    }

    /// Keep only the symbols for which `keep` is true (the null symbol always stays).
    pub fn retain_symbols(
        &mut self,
        keep: impl Fn(SymbolId, &crate::Symbol) -> bool,
    ) -> Result<()> {
        let order: Vec<usize> = (0..self.symbols.len())
            .filter(|&i| i == 0 || keep(SymbolId(i as u32), &self.symbols[i]))
            .collect();
        self.permute_symbols(&order)
    }

    /// Put local symbols before global ones (stable), as the ELF format requires.
    pub fn sort_symbols_locals_first(&mut self) -> Result<()> {
        let mut order: Vec<usize> = (0..self.symbols.len()).collect();
        order.sort_by_key(|&i| {
            if i == 0 {
                0
            } else if self.symbols[i].bind == consts::STB_LOCAL {
                1
            } else {
                2
            }
        });
        self.permute_symbols(&order)
    }

    /// New symbol table = old symbols at `order`; anything else is dropped.
    fn permute_symbols(&mut self, order: &[usize]) -> Result<()> {
        let mut map: Vec<Option<SymbolId>> = vec![None; self.symbols.len()];
        for (new, &old) in order.iter().enumerate() {
            map[old] = Some(SymbolId(new as u32));
        }
        let mut old = std::mem::take(&mut self.symbols);
        self.symbols = order
            .iter()
            .map(|&i| std::mem::replace(&mut old[i], crate::Symbol::new("", 0, 0)))
            .collect();
        for s in self.sections.iter_mut() {
            for r in s.relas.iter_mut() {
                r.sym = map[r.sym.idx()].ok_or_else(|| {
                    Error::Write(format!(
                        "{}: relocation against a removed symbol {}",
                        s.name,
                        old[r.sym.idx()].name
                    ))
                })?;
            }
            s.secsym = s.secsym.and_then(|x| map[x.idx()]);
            if let Some(sig) = s.info_sym {
                s.info_sym = Some(map[sig.idx()].ok_or_else(|| {
                    Error::Write(format!("group {}: signature symbol removed", s.name))
                })?);
            }
        }
        Ok(())
    }
}
