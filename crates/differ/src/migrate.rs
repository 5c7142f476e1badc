//! Phase 6: move the included sections and symbols of the patched object into a new,
//! compact output object, remapping every id.

use std::collections::HashMap;

use kelf::{IdVec, Object, SectionId, SymbolId};

use crate::elf::{Elf, SecState, SymState};
use crate::error::{fatal, Result};

pub fn migrate_included(patched: &mut Elf) -> Result<Elf> {
    let mut sec_map: HashMap<SectionId, SectionId> = HashMap::new();
    let mut sym_map: HashMap<SymbolId, SymbolId> = HashMap::new();
    let mut out = Object {
        header: patched.obj.header.clone(),
        sections: IdVec::new(),
        symbols: IdVec::new(),
    };
    let mut sec_state: IdVec<SectionId, SecState> = IdVec::new();
    let mut sym_state: IdVec<SymbolId, SymState> = IdVec::new();

    for id in patched.sections() {
        if !patched.sec[id].include {
            continue;
        }
        let s = std::mem::replace(patched.obj.sec_mut(id), kelf::Section::new("", 0, 0));
        sec_map.insert(id, out.add_section(s));
        let st = &patched.sec[id];
        sec_state.push(SecState {
            status: st.status,
            include: true,
            bundled: st.bundled,
            ..Default::default()
        });
    }
    for id in patched.symbols() {
        if !patched.sym[id].include {
            continue;
        }
        let s = patched.y(id).clone();
        sym_map.insert(id, out.add_symbol(s));
        let st = &patched.sym[id];
        sym_state.push(SymState {
            status: st.status,
            include: true,
            parent: st.parent,
            pfx: st.pfx,
            is_pfx: st.is_pfx,
            has_func_profiling: st.has_func_profiling,
            file_block: st.file_block,
            ..Default::default()
        });
    }

    let ms = |id: Option<SectionId>| id.and_then(|i| sec_map.get(&i).copied());
    let my = |id: Option<SymbolId>| id.and_then(|i| sym_map.get(&i).copied());
    for (sec, state) in out.sections.iter_mut().zip(sec_state.iter_mut()) {
        if sec.is_rela() {
            let base = ms(sec.base).ok_or_else(|| {
                fatal(format!(
                    "{}: included without the section it applies to",
                    sec.name
                ))
            })?;
            sec.base = Some(base);
            for r in sec.relas.iter_mut() {
                r.sym = sym_map.get(&r.sym).copied().ok_or_else(|| {
                    fatal(format!(
                        "{}: relocation to a symbol that was not included",
                        sec.name
                    ))
                })?;
            }
        } else {
            sec.rela = ms(sec.rela);
        }
        // Garbled input can give even a relocation section a section symbol.
        sec.secsym = my(sec.secsym);
        sec.link_sec = ms(sec.link_sec);
        sec.info_sym = my(sec.info_sym);
        state.bundled = my(state.bundled);
    }
    for (sym, state) in out.symbols.iter_mut().zip(sym_state.iter_mut()) {
        sym.sec = ms(sym.sec);
        state.parent = my(state.parent);
        state.pfx = my(state.pfx);
    }
    for id in sym_state.ids() {
        if let Some(p) = sym_state[id].parent {
            sym_state[p].children.push(id);
        }
    }
    Ok(Elf {
        name: patched.name.clone(),
        log: patched.log.clone(),
        obj: out,
        arch: patched.arch,
        sec: sec_state,
        sym: sym_state,
        modinfo_ns: std::mem::take(&mut patched.modinfo_ns),
        has_pfe: patched.has_pfe,
        pfe_ordered: patched.pfe_ordered,
        refusals: Vec::new(),
        rerouted: Vec::new(),
        hookless_globals: Vec::new(),
    })
}
