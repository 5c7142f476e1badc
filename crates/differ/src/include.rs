//! Phase 4: decide what goes into the output. Changed functions are included with their
//! sections, and every symbol their relocations reference is included too; a referenced
//! symbol's section is only pulled in when it is new or changed (otherwise the output
//! links to the running kernel's copy). Then verify the result can be applied safely.

use kelf::consts::*;
use kelf::{SectionId, SymbolId};

use crate::elf::{Elf, Status};
use crate::names;
use crate::refusal::{push_unique, Refusal};

enum Item {
    Sec(SectionId),
    Sym(SymbolId),
}

/// Include a symbol and the closure of what it needs.
pub fn include_symbol(elf: &mut Elf, sym: SymbolId) {
    include_closure(elf, Item::Sym(sym));
}

/// Include a section and the closure of what it needs.
pub fn include_section(elf: &mut Elf, sec: SectionId) {
    include_closure(elf, Item::Sec(sec));
}

fn include_closure(elf: &mut Elf, start: Item) {
    let mut work = vec![start];
    while let Some(item) = work.pop() {
        match item {
            Item::Sym(id) => {
                if elf.sym[id].include {
                    continue;
                }
                elf.sym[id].include = true;
                let s = elf.y(id);
                if let Some(sec) = s.sec {
                    if s.kind == STT_SECTION || elf.sym[id].status != Status::Same {
                        work.push(Item::Sec(sec));
                    }
                }
            }
            Item::Sec(id) => {
                if elf.sec[id].include {
                    continue;
                }
                elf.sec[id].include = true;
                if let Some(ss) = elf.s(id).secsym {
                    elf.sym[ss].include = true;
                }
                let Some(rs) = elf.s(id).rela else { continue };
                elf.sec[rs].include = true;
                for r in elf.relas(rs).iter().rev() {
                    work.push(Item::Sym(r.sym));
                }
            }
        }
    }
}

/// String tables, `.rodata` (jump tables), `.toc`, merged string literals, and the null symbol.
pub fn include_standard_elements(elf: &mut Elf) {
    for id in elf.sections() {
        let n = elf.s(id).name.as_str();
        if matches!(
            n,
            ".shstrtab" | ".strtab" | ".symtab" | ".toc" | ".rodata" | ".rodata.str"
        ) || names::is_string_literal_section(n)
        {
            include_section(elf, id);
        }
    }
    for id in elf.symbols() {
        if let Some(sec) = elf.y(id).sec {
            if names::is_string_literal_section(&elf.s(sec).name) {
                elf.sym[id].include = true;
            }
        }
    }
    elf.sym[SymbolId(0)].include = true;
}

/// Include changed functions (and their `__pfx_` padding); returns how many.
pub fn include_changed_functions(elf: &mut Elf) -> usize {
    let mut n = 0;
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.kind == STT_FUNC && elf.sym[id].status == Status::Changed {
            n += 1;
            include_symbol(elf, id);
            if let Some(p) = elf.sym[id].pfx {
                include_symbol(elf, p);
            }
        }
        if elf.y(id).kind == STT_FILE {
            elf.sym[id].include = true;
        }
    }
    n
}

/// Include the patch author's callbacks; returns whether there are any.
pub fn include_callbacks(elf: &mut Elf) -> bool {
    let mut found = false;
    for id in elf.sections() {
        if !names::is_callback_section(&elf.s(id).name) {
            continue;
        }
        elf.sec[id].include = true;
        found = true;
        if elf.is_rela(id) {
            if let Some(r) = elf.relas(id).first() {
                let sym = r.sym;
                elf.notice(format!("found callback: {}", elf.y(sym).name));
                include_symbol(elf, sym);
            }
        } else if let Some(ss) = elf.s(id).secsym {
            elf.sym[ss].include = true;
        }
    }
    // The macros' temporary structure symbols are not needed.
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.kind == STT_OBJECT {
            if let Some(sec) = s.sec {
                if names::is_callback_section(&elf.s(sec).name) {
                    elf.sym[id].include = false;
                }
            }
        }
    }
    found
}

/// Include the patch author's system-state declarations (`KPATCH_STATE()`), which the
/// patch module turns into `klp_patch.states`; returns whether there are any. They are
/// plain data (ids, versions, shadow variable ids) that the output carries as is.
pub fn include_states(elf: &mut Elf) -> bool {
    let mut found = false;
    for id in elf.sections() {
        if !names::is_state_section(&elf.s(id).name) {
            continue;
        }
        found |= !elf.is_rela(id);
        elf.sec[id].include = true;
        if elf.is_rela(id) {
            for sym in elf.relas(id).iter().map(|r| r.sym).collect::<Vec<_>>() {
                include_symbol(elf, sym);
            }
        } else if let Some(ss) = elf.s(id).secsym {
            elf.sym[ss].include = true;
        }
    }
    if found {
        let entries = elf
            .obj
            .find_section(names::STATES)
            .map(|s| elf.s(s).data.len() / STATE_ENTRY_SIZE)
            .unwrap_or(0);
        elf.note(format!("found {entries} system state declaration(s)"));
    }
    // The declarations' own symbols are not needed: the hook walks the section.
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.kind == STT_OBJECT
            && s.sec
                .is_some_and(|sec| names::is_state_section(&elf.s(sec).name))
        {
            elf.sym[id].include = false;
        }
    }
    found
}

/// `sizeof(struct kpatch_state_entry)` (kpatch-macros.h): id, version, the number of
/// shadow variable ids and eight of them, each an `unsigned long`.
const STATE_ENTRY_SIZE: usize = 11 * 8;

/// `KPATCH_FORCE_UNSAFE()`.
pub fn include_force_elements(elf: &mut Elf) {
    for id in elf.sections() {
        if elf.s(id).name != ".rela.kpatch.force" {
            continue;
        }
        // A marker for a function the patch does not change is moot: that function is
        // not in the patch module, so its entry goes.
        let relas = std::mem::take(&mut elf.obj.sec_mut(id).relas);
        let mut kept = Vec::with_capacity(relas.len());
        for r in relas {
            let name = elf.y(r.sym).name.clone();
            if elf.sym[r.sym].include {
                elf.notice(format!(
                    "function '{name}' marked with KPATCH_FORCE_UNSAFE!"
                ));
                kept.push(r);
            } else {
                elf.notice(format!(
                    "KPATCH_FORCE_UNSAFE({name}) ignored: the patch does not change {name}"
                ));
            }
        }
        elf.sec[id].rela_strings = vec![None; kept.len()];
        elf.obj.sec_mut(id).relas = kept;
    }
    for id in elf.sections() {
        if elf.s(id).name != ".kpatch.force" {
            continue;
        }
        let used = elf.s(id).rela.is_some_and(|r| !elf.relas(r).is_empty());
        elf.sec[id].include = used;
        if let Some(r) = elf.s(id).rela {
            elf.sec[r].include = used;
        }
        if let Some(ss) = elf.s(id).secsym {
            elf.sym[ss].include = used;
        }
    }
    for id in elf.symbols() {
        if is_force_marker(&elf.y(id).name) {
            elf.sym[id].include = false;
        }
    }
}

/// The temporary pointer `KPATCH_FORCE_UNSAFE()` defines; only its section's relocation
/// matters.
fn is_force_marker(name: &str) -> bool {
    name.starts_with("__kpatch_force_func_")
}

/// New global symbols (new functions or variables other objects may use).
pub fn include_new_globals(elf: &mut Elf) -> usize {
    let mut n = 0;
    for id in elf.symbols() {
        let s = elf.y(id);
        if s.bind == STB_GLOBAL
            && s.sec.is_some()
            && elf.sym[id].status == Status::New
            && !is_force_marker(&s.name)
        {
            include_symbol(elf, id);
            n += 1;
        }
    }
    n
}

/// Debug sections are taken whole; relocations into dropped sections are removed.
pub fn include_debug_sections(elf: &mut Elf) {
    for id in elf.sections() {
        if names::is_debug_section(&elf.s(elf.base_of(id)).name) {
            elf.sec[id].include = true;
            if !elf.is_rela(id) {
                if let Some(ss) = elf.s(id).secsym {
                    elf.sym[ss].include = true;
                }
            }
        }
    }
    for id in elf.sections() {
        if !elf.is_rela(id) || !names::is_debug_section(&elf.s(elf.base_of(id)).name) {
            continue;
        }
        let keep: Vec<bool> = elf
            .relas(id)
            .iter()
            .map(|r| {
                elf.y(r.sym)
                    .sec
                    .map(|s| elf.sec[s].include)
                    .unwrap_or(false)
            })
            .collect();
        let mut k = keep.into_iter();
        elf.obj
            .sec_mut(id)
            .relas
            .retain(|_| k.next().unwrap_or(false));
        elf.sec[id].rela_strings.clear();
    }
}

/// The changed and new functions to report, in symbol-table order.
pub fn reported_functions(elf: &Elf) -> Vec<(Status, SymbolId)> {
    let mut out = Vec::new();
    for id in elf.symbols() {
        let s = elf.y(id);
        let st = &elf.sym[id];
        // A child is reported through its parent, unless only the child is patched (a
        // `.part.N` with its own ftrace hook): then it gets its own `.kpatch.funcs` entry.
        let parent_included = st.parent.is_some_and(|p| elf.sym[p].include);
        if !st.include || s.sec.is_none() || s.kind != STT_FUNC || parent_included || st.is_pfx {
            continue;
        }
        if st.status != Status::Same {
            out.push((st.status, id));
        }
    }
    out
}

fn data_section_exempt(name: &str) -> bool {
    matches!(
        name,
        ".data.unlikely" | ".data..unlikely" | ".data.once" | ".data..once"
    )
}

/// Functions (or objects) of a section that holds several whose bytes or relocations
/// differ from the original: names what changed inside `.init.text` and the like.
fn changed_symbols_in(patched: &Elf, orig: &Elf, base: SectionId) -> Vec<String> {
    let Some(twin) = patched.sec[base].twin else {
        return Vec::new();
    };
    let (pd, od) = (&patched.s(base).data, &orig.s(twin).data);
    let relas_in =
        |elf: &Elf, sec: SectionId, start: u64, end: u64| -> Vec<(u64, u32, String, i64)> {
            elf.s(sec)
                .rela
                .map(|r| {
                    elf.relas(r)
                        .iter()
                        .filter(|x| x.offset >= start && x.offset < end)
                        .map(|x| {
                            (
                                x.offset - start,
                                x.r_type,
                                elf.y(x.sym).name.clone(),
                                x.addend,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
    let mut out = Vec::new();
    for id in patched.symbols() {
        let s = patched.y(id);
        if s.sec != Some(base) || !(s.kind == STT_FUNC || s.kind == STT_OBJECT) {
            continue;
        }
        let (ps, pe) = (s.value, s.value + s.size);
        let Some(o) = patched.sym[id].twin.map(|t| orig.y(t)) else {
            out.push(s.name.clone());
            continue;
        };
        let (os, oe) = (o.value, o.value + o.size);
        let pbytes = pd.get(ps as usize..pe as usize);
        let obytes = od.get(os as usize..oe as usize);
        if pbytes != obytes || relas_in(patched, base, ps, pe) != relas_in(orig, twin, os, oe) {
            out.push(s.name.clone());
        }
    }
    out
}

/// Explain why a changed section cannot be taken into a live patch.
fn explain_unincluded(elf: &Elf, orig: &Elf, id: SectionId) -> Refusal {
    let base = elf.base_of(id);
    let base_name = &elf.s(base).name;
    // `what` names the changed element; `loc` adds its section unless `what` has it.
    let (what, loc, subject) = match elf.sec[base].bundled {
        Some(b) => {
            let name = elf.y(b).name.clone();
            (name.clone(), format!(" ({base_name})"), name)
        }
        None => {
            let inside = changed_symbols_in(elf, orig, base);
            if inside.is_empty() {
                (base_name.clone(), String::new(), base_name.clone())
            } else {
                (
                    format!("{} (in {base_name})", inside.join(", ")),
                    String::new(),
                    inside[0].clone(),
                )
            }
        }
    };
    if base_name.starts_with(".init.")
        || base_name.contains(".init.text")
        || base_name.starts_with(".meminit")
    {
        return Refusal::new(
            "init-code",
            subject,
            format!(
                "{what} changed, but it is __init code: it has already run and been freed in \
                 the running kernel. Move the fix out of init code, or apply its effect from a \
                 KPATCH_PRE_PATCH_CALLBACK"
            ),
        );
    }
    if base_name.starts_with(".exit.") {
        return Refusal::new(
            "exit-code",
            subject,
            format!("{what} changed, but it is __exit code, which a live patch cannot replace"),
        );
    }
    if base_name.starts_with(".data")
        || base_name.starts_with(".bss")
        || base_name.starts_with(".rodata")
    {
        return Refusal::new(
            "data-change",
            subject,
            format!(
                "the initial value of {what} changed{loc}, but the running kernel's copy \
                 keeps its old value. Leave the initialiser alone and set the new value from a \
                 KPATCH_PRE_PATCH_CALLBACK, or attach new state with a shadow variable"
            ),
        );
    }
    Refusal::new(
        "unused-change",
        subject,
        format!(
            "{what} changed{loc}, but nothing in the patch uses it, so the change cannot \
             take effect (is it referenced only from data or init code?)"
        ),
    )
}

/// Refuse what cannot be applied to a running kernel: adds to `out`, one refusal per
/// problem (a subject already refused by an earlier phase is not repeated).
pub fn verify_patchability(elf: &Elf, orig: &Elf, out: &mut Vec<Refusal>) {
    let mut explained: Vec<SectionId> = Vec::new();
    for id in elf.sections() {
        let s = elf.s(id);
        let st = &elf.sec[id];
        if st.status == Status::Changed && !st.include && !explained.contains(&elf.base_of(id)) {
            // One explanation per section and its relocations.
            explained.push(elf.base_of(id));
            push_unique(out, explain_unincluded(elf, orig, id));
        }
        if st.status != Status::Same && st.grouped {
            out.push(Refusal::new(
                "section-group",
                s.name.clone(),
                format!(
                    "changed section {} is part of a section group (COMDAT); such sections are \
                     shared between objects and cannot be changed by a live patch",
                    s.name
                ),
            ));
        }
        if s.sh_type == SHT_GROUP && st.status == Status::New {
            out.push(Refusal::new(
                "section-group",
                s.name.clone(),
                format!("new/changed group section {} is not supported", s.name),
            ));
        }
        if st.include
            && st.status != Status::New
            && (s.name.starts_with(".data") || s.name.starts_with(".bss"))
            && !data_section_exempt(&s.name)
        {
            let what = elf.section_function_name(id);
            let msg = format!(
                "data section {} selected for inclusion: the patched code would get a second \
                 copy of {what} instead of using the running kernel's. If {what} changed, keep \
                 its definition unchanged; to add state, use a shadow variable (klp_shadow_*); \
                 to change a value, use a KPATCH_PRE_PATCH_CALLBACK",
                s.name
            );
            push_unique(out, Refusal::new("data-included", what, msg));
        }
    }
}
