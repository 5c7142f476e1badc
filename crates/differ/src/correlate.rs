//! Phase 2: correlate the original and patched objects. Each section and symbol of the
//! original is paired with the first unpaired element of the patched object whose name
//! matches once compiler numbering is ignored (see [`names::mangled_key`]). Lookups go
//! through hash maps of those keys, so the phase is linear in the size of the objects.
//! Static local variables are then re-paired by the functions that reference them.

use std::collections::HashMap;

use kelf::consts::*;
use kelf::{SectionId, SymbolId};

use crate::elf::{Elf, Status};
use crate::error::{fatal, unpatchable, Result};
use crate::names;

/// Candidates in the patched object, by correlation key, in table order. The map holds
/// the keys' hashes only (callers confirm each candidate with [`names::mangled_eq`]), so
/// it costs no string copies.
struct Candidates<T> {
    map: HashMap<u64, Vec<T>>,
}

fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

impl<T: Copy> Candidates<T> {
    fn new(items: impl Iterator<Item = (String, T)>) -> Self {
        let mut map: HashMap<u64, Vec<T>> = HashMap::new();
        for (k, v) in items {
            map.entry(key_hash(&k)).or_default().push(v);
        }
        Candidates { map }
    }

    fn get(&self, key: &str) -> &[T] {
        self.map
            .get(&key_hash(key))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Is `sym` a "special" static local that must never be correlated?
pub fn is_special_static(elf: &Elf, sym: Option<SymbolId>) -> bool {
    let Some(mut id) = sym else { return false };
    let s = elf.y(id);
    if names::is_dynamic_debug(s.kind, &s.name, elf.sym_sec_name(id)) {
        return true;
    }
    if let Some(sec) = s.sec {
        if names::is_clang_unnamed_data(&elf.s(sec).name) {
            return true;
        }
    }
    if s.kind == STT_SECTION {
        match s.sec.and_then(|sec| elf.sec[sec].bundled) {
            Some(b) => id = b,
            None => return false,
        }
    }
    let s = elf.y(id);
    let sec_name = elf.sym_sec_name(id).unwrap_or("");
    names::is_special_static_name(s.bind, s.kind, &s.name, sec_name)
}

fn is_normal_static_local(elf: &Elf, id: SymbolId) -> bool {
    let s = elf.y(id);
    s.kind == STT_OBJECT
        && s.bind == STB_LOCAL
        && names::is_normal_static_local_name(&s.name)
        && !is_special_static(elf, Some(id))
}

fn correlate_symbol(orig: &mut Elf, patched: &mut Elf, a: SymbolId, b: SymbolId) {
    orig.sym[a].twin = Some(b);
    patched.sym[b].twin = Some(a);
    orig.sym[a].status = Status::Same;
    patched.sym[b].status = Status::Same;
    if orig.y(a).name != patched.y(b).name {
        tracing::debug!(
            "renaming symbol {} to {}",
            patched.y(b).name,
            orig.y(a).name
        );
        patched.obj.sym_mut(b).name = orig.y(a).name.clone();
    }
    if patched.sym[b].file_block.is_none() {
        patched.sym[b].file_block = orig.sym[a].file_block;
    }
}

fn correlate_one_section(orig: &mut Elf, patched: &mut Elf, a: SectionId, b: SectionId) {
    orig.sec[a].twin = Some(b);
    patched.sec[b].twin = Some(a);
    orig.sec[a].status = Status::Same;
    patched.sec[b].status = Status::Same;
    if orig.s(a).name != patched.s(b).name {
        tracing::debug!(
            "renaming section {} to {}",
            patched.s(b).name,
            orig.s(a).name
        );
        patched.obj.sec_mut(b).name = orig.s(a).name.clone();
    }
}

/// Pair two sections, with their relocation sections, section symbols and bundled symbols.
pub fn correlate_section(orig: &mut Elf, patched: &mut Elf, mut a: SectionId, mut b: SectionId) {
    correlate_one_section(orig, patched, a, b);
    if orig.is_rela(a) {
        let (ba, bb) = (orig.base_of(a), patched.base_of(b));
        correlate_one_section(orig, patched, ba, bb);
        a = ba;
        b = bb;
    } else if let (Some(ra), Some(rb)) = (orig.s(a).rela, patched.s(b).rela) {
        correlate_one_section(orig, patched, ra, rb);
    }
    if let (Some(sa), Some(sb)) = (orig.s(a).secsym, patched.s(b).secsym) {
        correlate_symbol(orig, patched, sa, sb);
    }
    if let (Some(sa), Some(sb)) = (orig.sec[a].bundled, patched.sec[b].bundled) {
        correlate_symbol(orig, patched, sa, sb);
    }
}

fn uncorrelate_symbol(orig: &mut Elf, patched: &mut Elf, a: SymbolId) {
    if let Some(b) = orig.sym[a].twin.take() {
        patched.sym[b].twin = None;
    }
}

fn uncorrelate_section(orig: &mut Elf, patched: &mut Elf, a: SectionId) {
    if let Some(b) = orig.sec[a].twin.take() {
        patched.sec[b].twin = None;
    }
}

fn correlate_sections(orig: &mut Elf, patched: &mut Elf) {
    let cands = Candidates::new(
        patched
            .sections()
            .map(|id| (names::mangled_key(&patched.s(id).name), id)),
    );
    for a in orig.sections() {
        if orig.sec[a].twin.is_some() {
            continue;
        }
        let name = orig.s(a).name.clone();
        if names::is_ubsan(&name) || names::is_clang_unnamed_data(&name) {
            continue;
        }
        let secsym = if orig.is_rela(a) {
            orig.s(orig.base_of(a)).secsym
        } else {
            orig.s(a).secsym
        };
        if is_special_static(orig, secsym) {
            continue;
        }
        let key = names::mangled_key(&name);
        let mut chosen = None;
        for &b in cands.get(&key) {
            if patched.sec[b].twin.is_some() || names::is_clang_unnamed_data(&patched.s(b).name) {
                continue;
            }
            if !names::mangled_eq(&name, &patched.s(b).name) {
                continue;
            }
            if orig.s(a).sh_type == SHT_GROUP && orig.s(a).data != patched.s(b).data {
                continue;
            }
            chosen = Some(b);
            break;
        }
        if let Some(b) = chosen {
            correlate_section(orig, patched, a, b);
        }
    }
}

fn correlate_symbols(orig: &mut Elf, patched: &mut Elf) {
    let cands = Candidates::new(
        patched
            .symbols()
            .map(|id| (names::mangled_key(&patched.y(id).name), id)),
    );
    for a in orig.symbols() {
        if orig.sym[a].twin.is_some() {
            continue;
        }
        let s = orig.y(a);
        if names::is_ubsan(&s.name)
            || is_special_static(orig, Some(a))
            || (s.kind == STT_NOTYPE && s.name.starts_with(".LC"))
            || orig.arch.is_mapping_symbol(orig, a)
        {
            continue;
        }
        let key = names::mangled_key(&s.name);
        let mut chosen = None;
        for &b in cands.get(&key) {
            let p = patched.y(b);
            if patched.sym[b].twin.is_some()
                || p.kind != s.kind
                || !names::mangled_eq(&s.name, &p.name)
            {
                continue;
            }
            if let Some(sec) = s.sec {
                if orig.s(sec).sh_type == SHT_GROUP && orig.sec[sec].twin != p.sec {
                    continue;
                }
            }
            chosen = Some(b);
            break;
        }
        if let Some(b) = chosen {
            correlate_symbol(orig, patched, a, b);
        }
    }
}

pub fn correlate(orig: &mut Elf, patched: &mut Elf) {
    correlate_sections(orig, patched);
    correlate_symbols(orig, patched);
}

/// The closest ancestor of a subfunction that has a twin.
fn correlated_parent(elf: &Elf, mut sym: SymbolId) -> Option<SymbolId> {
    while let Some(p) = elf.sym[sym].parent {
        if elf.sym[p].twin.is_some() {
            return Some(p);
        }
        sym = p;
    }
    None
}

/// First uncorrelated symbol referenced by a patched relocation section that could be
/// the twin of `sym` (same type, size and name up to numbering).
fn find_uncorrelated_rela(
    orig: &Elf,
    patched: &Elf,
    relasec: SectionId,
    sym: SymbolId,
) -> Option<SymbolId> {
    let s = orig.y(sym);
    for i in 0..patched.relas(relasec).len() {
        let Some(psym) = patched.target_sym(relasec, i) else {
            continue;
        };
        let p = patched.y(psym);
        if patched.sym[psym].twin.is_some() {
            continue;
        }
        if s.kind != p.kind || (s.kind == STT_OBJECT && s.size != p.size) {
            continue;
        }
        if !names::mangled_eq(&p.name, &s.name) {
            continue;
        }
        return Some(psym);
    }
    None
}

fn find_static_twin_in_children(
    orig: &Elf,
    patched: &Elf,
    parent: SymbolId,
    sym: SymbolId,
) -> Option<SymbolId> {
    let prela = patched.y(parent).sec.and_then(|s| patched.s(s).rela);
    for &child in &patched.sym[parent].children {
        let crela = patched.y(child).sec.and_then(|s| patched.s(s).rela);
        let Some(cr) = crela else { continue };
        if crela == prela {
            continue;
        }
        let res = find_uncorrelated_rela(orig, patched, cr, sym)
            .or_else(|| find_static_twin_in_children(orig, patched, child, sym));
        if res.is_some() {
            return res;
        }
    }
    None
}

/// The relocation section that stands for `relasec` in the comparison: a removed
/// `.part` subfunction's references are looked for in its correlated parent.
fn effective_relasec(orig: &Elf, relasec: SectionId) -> Option<SectionId> {
    if orig.sec[relasec].twin.is_none() {
        if let Some(b) = orig.sec[orig.base_of(relasec)].bundled {
            if let Some(p) = correlated_parent(orig, b) {
                return orig.y(p).sec.and_then(|s| orig.s(s).rela);
            }
        }
    }
    Some(relasec)
}

fn find_static_twin(
    orig: &Elf,
    patched: &Elf,
    relasec: SectionId,
    sym: SymbolId,
) -> Option<SymbolId> {
    let relasec = effective_relasec(orig, relasec)?;
    let twin = orig.sec[relasec].twin?;
    if let Some(r) = find_uncorrelated_rela(orig, patched, twin, sym) {
        return Some(r);
    }
    let tb = patched.sec[patched.base_of(twin)].bundled?;
    find_static_twin_in_children(orig, patched, tb, sym)
}

fn has_static_twin_ref(patched: &Elf, relasec: SectionId, twin: SymbolId) -> bool {
    if patched.relas(relasec).iter().any(|r| r.sym == twin) {
        return true;
    }
    let Some(parent) = patched.sec[patched.base_of(relasec)].bundled else {
        return false;
    };
    let prela = patched.y(parent).sec.and_then(|s| patched.s(s).rela);
    for &child in &patched.sym[parent].children {
        let crela = patched.y(child).sec.and_then(|s| patched.s(s).rela);
        let Some(cr) = crela else { continue };
        if crela != prela && has_static_twin_ref(patched, cr, twin) {
            return true;
        }
    }
    false
}

fn skip_relasec(elf: &Elf, relasec: SectionId) -> bool {
    !elf.is_rela(relasec) || names::is_debug_section(&elf.s(elf.base_of(relasec)).name)
}

/// gcc numbers static locals (`counter.3`) arbitrarily; pair them by the functions that
/// reference them instead of by name.
pub fn correlate_static_locals(orig: &mut Elf, patched: &mut Elf) -> Result<()> {
    // Undo name-based pairings: equal numbers in both objects are a coincidence.
    for a in orig.symbols() {
        if !is_normal_static_local(orig, a) {
            continue;
        }
        uncorrelate_symbol(orig, patched, a);
        let Some(sec) = orig.y(a).sec else { continue };
        if orig.sec[sec].bundled == Some(a) && orig.sec[sec].twin.is_some() {
            uncorrelate_section(orig, patched, sec);
            if let Some(ss) = orig.s(sec).secsym {
                uncorrelate_symbol(orig, patched, ss);
            }
            if let Some(r) = orig.s(sec).rela {
                uncorrelate_section(orig, patched, r);
            }
        }
    }

    // Pair each referenced static local with the matching reference in the twin section.
    for relasec in orig.sections() {
        if skip_relasec(orig, relasec) || orig.s(relasec).name == ".rela.toc" {
            continue;
        }
        for i in 0..orig.relas(relasec).len() {
            let Some(sym) = orig.target_sym(relasec, i) else {
                continue;
            };
            if !is_normal_static_local(orig, sym) || orig.sym[sym].twin.is_some() {
                continue;
            }
            let Some(sec) = orig.y(sym).sec else { continue };
            let bundled = orig.sec[sec].bundled == Some(sym);
            if bundled && sec == orig.base_of(relasec) {
                tracing::debug!(
                    "can't correlate static local {}'s reference to itself",
                    orig.y(sym).name
                );
                continue;
            }
            let Some(psym) = find_static_twin(orig, patched, relasec, sym) else {
                return Err(static_removed(orig, sym, relasec));
            };
            let psec = patched.y(psym).sec;
            let pbundled = psec
                .map(|s| patched.sec[s].bundled == Some(psym))
                .unwrap_or(false);
            if bundled != pbundled {
                return Err(fatal(format!(
                    "bundle mismatch for symbol {}",
                    orig.y(sym).name
                )));
            }
            if !bundled && orig.sec[sec].twin != psec {
                return Err(fatal(format!(
                    "sections {} and {} aren't correlated for symbol {}",
                    orig.s(sec).name,
                    psec.map(|s| patched.s(s).name.as_str()).unwrap_or("?"),
                    orig.y(sym).name
                )));
            }
            correlate_symbol(orig, patched, sym, psym);
            if bundled {
                if let Some(ps) = psec {
                    correlate_section(orig, patched, sec, ps);
                }
            }
        }
    }

    // Every reference in the original must still exist in the patched object.
    for relasec in orig.sections() {
        if skip_relasec(orig, relasec) {
            continue;
        }
        for r in orig.relas(relasec) {
            let sym = r.sym;
            if !is_normal_static_local(orig, sym) {
                continue;
            }
            let target = effective_relasec(orig, relasec).unwrap_or(relasec);
            let (Some(twin), Some(ttwin)) = (orig.sym[sym].twin, orig.sec[target].twin) else {
                return Err(static_removed(orig, sym, target));
            };
            if !has_static_twin_ref(patched, ttwin, twin) {
                return Err(unpatchable(format!(
                    "static local {} has been correlated with {}, but patched {} is missing a \
                     reference to it; a live patch cannot drop a function's use of static state \
                     it shares with the running kernel. Keep the reference, or move the state to \
                     a shadow variable (klp_shadow_get_or_alloc)",
                    orig.y(sym).name,
                    patched.y(twin).name,
                    patched.section_function_name(ttwin)
                )));
            }
        }
    }

    // New static locals in the patched object are fine, but say so.
    'outer: for relasec in patched.sections() {
        if skip_relasec(patched, relasec) {
            continue;
        }
        for r in patched.relas(relasec) {
            if is_normal_static_local(patched, r.sym) && patched.sym[r.sym].twin.is_none() {
                patched.warn(format!(
                    "WARNING: unable to correlate static local variable {} used by {}, assuming variable is new",
                    patched.y(r.sym).name,
                    patched.section_function_name(relasec)
                ));
                break 'outer;
            }
        }
    }
    Ok(())
}

fn static_removed(orig: &Elf, sym: SymbolId, relasec: SectionId) -> crate::error::Error {
    unpatchable(format!(
        "reference to static local variable {} in {} was removed; a live patch cannot drop \
         a function's use of its static state. Keep the reference, or move the state to a \
         shadow variable (klp_shadow_get_or_alloc)",
        orig.y(sym).name,
        orig.section_function_name(relasec)
    ))
}
