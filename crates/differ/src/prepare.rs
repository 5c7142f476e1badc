//! Phase 1, per object: find ftrace hooks, bundle symbols with their sections, link
//! `.cold`/`.part` subfunctions to their parents, and rewrite relocations against
//! section symbols into relocations against the function or object they designate.

use std::collections::HashMap;

use kelf::consts::*;
use kelf::SymbolId;

use crate::elf::Elf;
use crate::error::{fatal, Result};
use crate::names;

/// Mark functions that begin with an ftrace call site.
pub fn find_func_profiling(elf: &mut Elf) {
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.kind != STT_FUNC || s.sec.is_none() || elf.sym[id].is_pfx {
            continue;
        }
        let p = elf.arch.has_func_profiling(elf, id);
        elf.sym[id].has_func_profiling = p;
    }
}

/// Bind each `-ffunction-sections`/`-fdata-sections` section to its one symbol.
pub fn bundle_symbols(elf: &mut Elf) -> Result<()> {
    for id in elf.symbols() {
        let s = elf.y(id);
        let Some(sec) = s.sec else { continue };
        if !names::is_bundleable(s.kind, &s.name, &elf.s(sec).name) {
            continue;
        }
        let expected = if s.kind == STT_FUNC {
            elf.arch.bundled_func_offset(elf, id)
        } else {
            0
        };
        if s.value != expected {
            return Err(fatal(format!(
                "symbol {} at offset {} within section {}, expected {expected}",
                s.name,
                s.value,
                elf.s(sec).name
            )));
        }
        elf.sec[sec].bundled = Some(id);
    }
    Ok(())
}

/// Link gcc's `foo.cold` and `foo.part.N` subfunctions to `foo`.
pub fn detect_child_functions(elf: &mut Elf) -> Result<()> {
    let mut first_by_name: HashMap<&str, SymbolId> = HashMap::new();
    for id in elf.symbols() {
        first_by_name.entry(elf.y(id).name.as_str()).or_insert(id);
    }
    let mut links = Vec::new();
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.kind != STT_FUNC {
            continue;
        }
        if let Some(pos) = s.name.find(".cold") {
            let parent = first_by_name
                .get(&s.name[..pos])
                .copied()
                .ok_or_else(|| fatal(format!("failed to find parent function for {}", s.name)))?;
            links.push((id, parent));
        } else if let Some(pos) = s.name.find(".part.") {
            if let Some(parent) = first_by_name.get(&s.name[..pos]) {
                links.push((id, *parent));
            }
        }
    }
    for (child, parent) in links {
        elf.sym[child].parent = Some(parent);
        elf.sym[parent].children.push(child);
    }
    Ok(())
}

/// Mark the members of section groups (COMDAT): they cannot be changed.
pub fn mark_grouped_sections(elf: &mut Elf) {
    for id in elf.sections() {
        if elf.s(id).sh_type != SHT_GROUP {
            continue;
        }
        for m in kelf::read::group_members(&elf.obj, id) {
            if let Some(st) = elf.sec.get_mut(m) {
                st.grouped = true;
            }
        }
    }
}

/// Replace relocations against section symbols by relocations against the function or
/// object at the designated offset, so that relocations correlate by name and can link
/// to the running kernel's copy.
pub fn replace_section_symbols(elf: &mut Elf) -> Result<()> {
    // Non-section symbols of each section, in symbol-table order.
    let mut by_sec: HashMap<u32, Vec<SymbolId>> = HashMap::new();
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.kind != STT_SECTION {
            if let Some(sec) = s.sec {
                by_sec.entry(sec.0).or_default().push(id);
            }
        }
    }
    // Upstream never resets this flag, so one successful replacement anywhere in the
    // object silences later "no replacement" errors. Kept for identical results.
    let mut found_any = false;
    for relasec in elf.sections() {
        let base = elf.base_of(relasec);
        if !elf.is_rela(relasec) || names::is_debug_section(&elf.s(base).name) {
            continue;
        }
        if elf.s(base).name == "__patchable_function_entries" {
            continue;
        }
        let base_is_text = elf.s(base).is_text();
        for i in 0..elf.relas(relasec).len() {
            let rela = elf.relas(relasec)[i].clone();
            let rsym = elf.y(rela.sym);
            let Some(tsec) = rsym.sec else { continue };
            if rsym.kind != STT_SECTION {
                continue;
            }
            if names::is_ubsan(&rsym.name) || names::is_unreplaceable_section_sym(&rsym.name) {
                continue;
            }
            if let Some(b) = elf.sec[tsec].bundled {
                let value = elf.y(b).value as i64;
                let r = &mut elf.obj.sec_mut(relasec).relas[i];
                r.sym = b;
                r.addend = r.addend.wrapping_sub(value);
                continue;
            }
            let target = elf.rela_target_offset(relasec, &rela)?;
            let tsize = elf.s(tsec).size as i64;
            let tsec_is_text = elf.s(tsec).is_text();
            let mut replacement = None;
            for &cand in by_sec.get(&tsec.0).map(Vec::as_slice).unwrap_or(&[]) {
                let c = elf.y(cand);
                let start = c.value as i64;
                let end = start + c.size as i64;
                let end_of_section = base_is_text
                    && !tsec_is_text
                    && elf.arch.is_end_of_section_ref(rela.r_type)
                    && rela.addend == tsize
                    && end == tsize;
                if end_of_section {
                    // gcc's pointer one past the end of a data section (a loop bound).
                } else if target == start && target == end {
                    // A reference to an empty symbol.
                    if elf.arch.is_mapping_symbol(elf, cand) {
                        continue;
                    }
                } else if target < start || target >= end {
                    continue;
                }
                replacement = Some((cand, start));
                break;
            }
            if let Some((cand, start)) = replacement {
                found_any = true;
                let r = &mut elf.obj.sec_mut(relasec).relas[i];
                r.sym = cand;
                r.addend = r.addend.wrapping_sub(start);
                continue;
            }
            let tname = &elf.y(rela.sym).name;
            if !found_any
                && !names::is_string_literal_section(&elf.s(tsec).name)
                && !names::is_clang_unnamed_data(tname)
                && !tname.starts_with(".rodata")
            {
                return Err(fatal(format!(
                    "{}+{:#x}: can't find replacement symbol for {}{:+} reference",
                    elf.s(base).name,
                    rela.offset,
                    tname,
                    rela.addend
                )));
            }
        }
    }
    Ok(())
}
