//! Phase 3: compare correlated elements and mark each section and symbol of the patched
//! object NEW, CHANGED or SAME. Also applies the patch author's ignore markers and
//! forgives changes that are only a `__LINE__` number in a warning or printk.

use kelf::consts::*;
use kelf::{Rela, SectionId, SymbolId};

use crate::elf::{Elf, Status};
use crate::error::{fatal, unpatchable, Result};
use crate::names;
use crate::refusal::Refusal;

/// Sections regenerated from scratch, so their differences do not count.
fn is_regenerated(name: &str) -> bool {
    matches!(
        name,
        ".rela__mcount_loc"
            | "__mcount_loc"
            | ".sframe"
            | ".rela.sframe"
            | ".rela__patchable_function_entries"
            | "__patchable_function_entries"
    )
}

/// The 8-byte constant in a `.toc` slot (ppc64le), for TOC entries without a symbol.
fn toc_constant(elf: &Elf, relasec: SectionId, i: usize) -> Result<u64> {
    let r = &elf.relas(relasec)[i];
    let sec = elf
        .y(r.sym)
        .sec
        .ok_or_else(|| fatal(".toc entry without a section"))?;
    let d = &elf.s(sec).data;
    let at = r.addend as usize;
    let v = d.get(at..at + 8).map(|b| elf.obj.read_uint(b)).unwrap_or(0);
    if v == 0 {
        return Err(fatal(format!(
            ".toc entry not found {}+{:#x}",
            elf.y(r.sym).name,
            r.addend
        )));
    }
    Ok(v)
}

fn rela_equal(
    patched: &Elf,
    orig: &Elf,
    ps: SectionId,
    pi: usize,
    os: SectionId,
    oi: usize,
) -> Result<bool> {
    let (r1, r2): (&Rela, &Rela) = (&patched.relas(ps)[pi], &orig.relas(os)[oi]);
    if r1.r_type != r2.r_type || r1.offset != r2.offset {
        return Ok(false);
    }
    let (n1, n2) = (&patched.y(r1.sym).name, &orig.y(r2.sym).name);
    // `.altinstr_aux` code is inert in modules; its addends may move freely.
    if n1 == ".altinstr_aux" && n2 == ".altinstr_aux" {
        return Ok(true);
    }
    // ppc64le: compare what the `.toc` slots designate, not the slot offsets.
    let (t1, t2) = (patched.target_rela(ps, pi), orig.target_rela(os, oi));
    let ((s1, i1), (s2, i2)) = match (t1, t2) {
        (Some(a), Some(b)) => (a, b),
        (None, None) => return Ok(toc_constant(patched, ps, pi)? == toc_constant(orig, os, oi)?),
        _ => return Ok(false),
    };
    if let Some(str1) = patched.rela_string(s1, i1) {
        return Ok(orig.rela_string(s2, i2) == Some(str1));
    }
    let (a, b) = (&patched.relas(s1)[i1], &orig.relas(s2)[i2]);
    if a.addend != b.addend || !names::mangled_eq(&patched.y(a.sym).name, &orig.y(b.sym).name) {
        return Ok(false);
    }
    // A switch's lookup table is never correlated: compare what it holds.
    match (lookup_table(patched, a.sym), lookup_table(orig, b.sym)) {
        (None, None) => Ok(true),
        (Some(x), Some(y)) => table_equal(patched, orig, x, y),
        _ => Ok(false),
    }
}

/// The section of a switch's lookup table (`CSWTCH.N`) that `sym` designates (the
/// table's symbol or its section's).
fn lookup_table(elf: &Elf, sym: SymbolId) -> Option<SectionId> {
    let s = elf.y(sym);
    let sec = s.sec?;
    let named = if s.kind == STT_SECTION {
        elf.sec[sec].bundled.map(|b| elf.y(b).name.as_str())
    } else {
        Some(s.name.as_str())
    };
    named
        .is_some_and(|n| n.starts_with("CSWTCH."))
        .then_some(sec)
}

/// Two lookup tables hold the same bytes and their relocations designate the same
/// things (strings by content).
fn table_equal(patched: &Elf, orig: &Elf, x: SectionId, y: SectionId) -> Result<bool> {
    let (a, b) = (patched.s(x), orig.s(y));
    if a.size != b.size || a.data != b.data {
        return Ok(false);
    }
    match (a.rela, b.rela) {
        (None, None) => Ok(true),
        (Some(ra), Some(rb)) => {
            let n = patched.relas(ra).len();
            if n != orig.relas(rb).len() {
                return Ok(false);
            }
            for i in 0..n {
                if !rela_equal(patched, orig, ra, i, rb, i)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn compare_rela_section(
    patched: &Elf,
    orig: &Elf,
    sec: SectionId,
    twin: SectionId,
) -> Result<Status> {
    // `.toc` and `.rela.toc` are included whole; their entries are compared through
    // the code that uses them.
    if patched.s(sec).name == ".rela.toc" {
        return Ok(Status::Same);
    }
    let n = patched.relas(sec).len();
    if n != orig.relas(twin).len() {
        return Ok(Status::Changed);
    }
    for i in 0..n {
        if !rela_equal(patched, orig, sec, i, twin, i)? {
            return Ok(Status::Changed);
        }
    }
    Ok(Status::Same)
}

fn compare_section(patched: &Elf, orig: &Elf, sec: SectionId, twin: SectionId) -> Result<Status> {
    let (a, b) = (patched.s(sec), orig.s(twin));
    if a.sh_type != b.sh_type
        || a.sh_flags != b.sh_flags
        || a.sh_entsize != b.sh_entsize
        || (a.sh_addralign != b.sh_addralign && !a.is_text())
    {
        return Err(unpatchable(format!(
            "{} section header details differ from {}: the patch changes the section's type, \
             flags or alignment (e.g. a new attribute on a variable), which cannot be applied live",
            a.name, b.name
        )));
    }
    if is_regenerated(&a.name) {
        return Ok(Status::Same);
    }
    let a_size = if a.is_rela() {
        a.relas.len() as u64 * 24
    } else {
        a.size
    };
    let b_size = if b.is_rela() {
        b.relas.len() as u64 * 24
    } else {
        b.size
    };
    if a_size != b_size || a.rela.is_some() != b.rela.is_some() {
        return Ok(Status::Changed);
    }
    if a.is_rela() {
        compare_rela_section(patched, orig, sec, twin)
    } else if a.is_nobits() || a.data == b.data {
        Ok(Status::Same)
    } else {
        Ok(Status::Changed)
    }
}

/// Callees whose `__LINE__` argument may change without the function changing.
fn is_line_macro_callee(name: &str) -> bool {
    name.starts_with("warn_slowpath_")
        || matches!(
            name,
            "__might_sleep"
                | "___might_sleep"
                | "__might_fault"
                | "printk"
                | "_printk"
                | "lockdep_rcu_suspicious"
                | "__btrfs_abort_transaction"
                | "__btrfs_handle_fs_error"
                | "__btrfs_panic"
        )
}

/// Has this text section changed only by an immediate `__LINE__` operand passed to a
/// warning or printk helper?
fn line_macro_change_only(patched: &Elf, orig: &Elf, sec: SectionId) -> Result<bool> {
    let s = patched.s(sec);
    let st = &patched.sec[sec];
    let Some(twin) = st.twin else {
        return Ok(false);
    };
    if st.status != Status::Changed || s.is_rela() || !s.is_text() || s.size != orig.s(twin).size {
        return Ok(false);
    }
    let Some(relasec) = s.rela else {
        return Ok(false);
    };
    if patched.sec[relasec].status != Status::Same {
        return Ok(false);
    }
    let (d1, d2) = (&orig.s(twin).data, &s.data);
    let arch = patched.arch;
    let mut found_any = false;
    let mut off = 0usize;
    while off < d1.len() {
        let l1 = arch.insn_len(&d1[off..]);
        let l2 = arch.insn_len(&d2[off..]);
        if l1 == 0 || l2 == 0 {
            return Err(fatal(format!(
                "can't decode instruction in section {} at offset {off:#x}",
                s.name
            )));
        }
        if l1 != l2 {
            return Ok(false);
        }
        let end = (off + l1).min(d1.len());
        if d1[off..end] == d2[off..end] {
            off += l1;
            continue;
        }
        if !arch.is_load_immediate(&d1[off..]) || !arch.is_load_immediate(&d2[off..]) {
            return Ok(false);
        }
        let mut found = false;
        for (i, r) in patched.relas(relasec).iter().enumerate() {
            if r.offset < (off + l1) as u64 {
                continue;
            }
            let Some((ts, ti)) = patched.target_rela(relasec, i) else {
                continue;
            };
            if patched.rela_string(ts, ti).is_some() {
                continue;
            }
            let name = patched.y(patched.relas(ts)[ti].sym).name.as_str();
            if name.starts_with("__warned.")
                || name.starts_with("__already_done.")
                || name.starts_with("__func__.")
            {
                continue;
            }
            if name == "__warn_printk" {
                found = true;
                break;
            }
            if arch.line_change_warn_printk_only() {
                return Ok(false);
            }
            if is_line_macro_callee(name) {
                found = true;
                break;
            }
            return Ok(false);
        }
        if !found {
            return Ok(false);
        }
        found_any = true;
        off += l1;
    }
    if !found_any {
        return Err(fatal(format!(
            "no instruction changes detected for changed section {}",
            s.name
        )));
    }
    Ok(true)
}

/// A changed `.cold` child (which has no ftrace hook of its own) needs its parent
/// patched, since the parent is the only way into it.
fn changed_child_needs_parent(elf: &Elf, sym: SymbolId) -> bool {
    elf.sym[sym].children.iter().any(|&c| {
        if elf.sym[c].has_func_profiling {
            return false;
        }
        // Its code or only its relocations (a different string literal, say) changed.
        let changed = elf.y(c).sec.is_some_and(|s| {
            let sec_changed = |id: SectionId| elf.sec[id].status == Status::Changed;
            sec_changed(s) || elf.s(s).rela.is_some_and(sec_changed)
        });
        changed || changed_child_needs_parent(elf, c)
    })
}

/// An unchanged `.cold` child that jumps back into its changed parent must come with the
/// patch: the running kernel's copy would resume in the old parent and run the old code
/// after the cold path (upstream kpatch leaves it behind; so the fix is bypassed there).
fn branches_back_into_changed_parent(elf: &Elf, sym: SymbolId) -> bool {
    let Some(parent) = elf.sym[sym].parent else {
        return false;
    };
    if elf.sym[sym].has_func_profiling || elf.sym[parent].status != Status::Changed {
        return false;
    }
    let (Some(sec), Some(psec)) = (elf.y(sym).sec, elf.y(parent).sec) else {
        return false;
    };
    let Some(rela) = elf.s(sec).rela else {
        return false;
    };
    elf.relas(rela).iter().any(|r| {
        r.sym == parent || (elf.y(r.sym).kind == STT_SECTION && elf.y(r.sym).sec == Some(psec))
    })
}

fn subsection(name: &str) -> u8 {
    if name.starts_with(".text.unlikely.") {
        2
    } else if name.starts_with(".text.hot.") {
        1
    } else {
        0
    }
}

fn compare_symbol(patched: &mut Elf, orig: &Elf, sym: SymbolId, twin: SymbolId) -> Result<()> {
    let (a, b) = (patched.y(sym), orig.y(twin));
    if a.st_info() != b.st_info() || a.sec.is_some() != b.sec.is_some() {
        return Err(unpatchable(format!(
            "symbol info mismatch: {}: the patch changes its type, binding or whether it is \
             defined here (e.g. static vs. global); keep the original declaration",
            a.name
        )));
    }
    if let (Some(sa), Some(sb)) = (a.sec, b.sec) {
        if patched.sec[sa].twin != Some(sb) {
            let moved_from_ignored = orig.sec[sb]
                .twin
                .map(|t| patched.sec[t].ignore)
                .unwrap_or(false);
            if moved_from_ignored || subsection(&patched.s(sa).name) != subsection(&orig.s(sb).name)
            {
                patched.sym[sym].status = Status::Changed;
            } else {
                let msg = format!(
                    "symbol changed sections: {} moved from {} to {}: the running kernel's \
                     code and data stay where they are, so a live patch cannot move them. Keep \
                     the declaration's section as it was (section attributes, __init/__exit or \
                     __read_mostly markings; a variable whose initialiser becomes zero moves \
                     from .data to .bss)",
                    a.name,
                    orig.s(sb).name,
                    patched.s(sa).name
                );
                let r = Refusal::new("section-moved", a.name.clone(), msg);
                patched.refusals.push(r);
            }
        }
    }
    let a = patched.y(sym);
    if a.kind == STT_OBJECT && a.size != b.size {
        let msg = format!(
            "object size mismatch: {} ({} -> {} bytes): live patching cannot resize data in \
             the running kernel; keep the layout and attach new fields with a shadow variable \
             (klp_shadow_alloc)",
            a.name, b.size, a.size
        );
        let r = Refusal::new("object-size", a.name.clone(), msg);
        patched.refusals.push(r);
    }
    let a = patched.y(sym);
    if a.shndx == SHN_UNDEF || a.shndx == SHN_ABS {
        patched.sym[sym].status = Status::Same;
    }
    Ok(())
}

/// Compare every correlated element and set statuses in the patched object.
pub fn compare(patched: &mut Elf, orig: &Elf) -> Result<()> {
    for id in patched.sections() {
        let status = match patched.sec[id].twin {
            Some(twin) => {
                let st = compare_section(patched, orig, id, twin)?;
                if st == Status::Changed {
                    tracing::debug!("section {} has changed", patched.s(id).name);
                }
                st
            }
            None => Status::New,
        };
        patched.sec[id].status = status;
    }
    for id in patched.sections() {
        if line_macro_change_only(patched, orig, id)? {
            tracing::debug!(
                "reverting macro / line number section {} status to SAME",
                patched.s(id).name
            );
            patched.sec[id].status = Status::Same;
        }
    }
    for id in patched.sections() {
        let status = patched.sec[id].status;
        if patched.is_rela(id) {
            let base = patched.base_of(id);
            if let Some(b) = patched.sec[base].bundled {
                if patched.sym[b].status != Status::Changed {
                    patched.sym[b].status = status;
                }
            }
        } else if let Some(b) = patched.sec[id].bundled {
            if patched.sym[b].status != Status::Changed {
                patched.sym[b].status = status;
            }
        }
    }
    // Only once every section has its status: a child's section may come after its parent's.
    for id in patched.symbols() {
        if patched.sym[id].status == Status::Same && changed_child_needs_parent(patched, id) {
            patched.sym[id].status = Status::Changed;
        }
    }
    for id in patched.symbols() {
        if patched.sym[id].status == Status::Same && branches_back_into_changed_parent(patched, id)
        {
            tracing::debug!(
                "{} branches back into its changed parent: it comes with the patch",
                patched.y(id).name
            );
            patched.sym[id].status = Status::Changed;
        }
    }
    for id in patched.symbols() {
        match patched.sym[id].twin {
            Some(twin) => compare_symbol(patched, orig, id, twin)?,
            None => patched.sym[id].status = Status::New,
        }
    }
    for obj in patched.symbols() {
        if let Some(users) = rodata_users(patched, obj) {
            for f in users {
                if patched.sym[f].status == Status::Same {
                    tracing::debug!(
                        "{} uses {}, a read-only table that changed",
                        patched.y(f).name,
                        patched.y(obj).name
                    );
                    patched.sym[f].status = Status::Changed;
                }
            }
        }
    }
    Ok(())
}

/// A changed read-only local object (a `static const` table) that only functions of this
/// object use: those functions, which change with it and take the module's new copy along
/// (nothing writes it, and no pointer to it is stored anywhere). `None` when it is not such
/// an object, or something else refers to it (data, init code): then the change stays
/// refused as a data change.
pub(crate) fn rodata_users(elf: &Elf, obj: SymbolId) -> Option<Vec<SymbolId>> {
    let y = elf.y(obj);
    if y.kind != STT_OBJECT || y.bind != STB_LOCAL || elf.sym[obj].status != Status::Changed {
        return None;
    }
    let sec = y.sec?;
    let s = elf.s(sec);
    let read_only =
        s.sh_flags & u64::from(SHF_ALLOC) != 0 && s.sh_flags & u64::from(SHF_WRITE) == 0;
    if !read_only
        || s.is_text()
        || !s.name.starts_with(".rodata")
        || s.sh_flags & u64::from(SHF_STRINGS) != 0
    {
        return None;
    }
    let mut users = Vec::new();
    for rs in elf.sections() {
        if !elf.is_rela(rs) {
            continue;
        }
        let base = elf.base_of(rs);
        let refers = elf.relas(rs).iter().any(|r| {
            r.sym == obj || (elf.y(r.sym).kind == STT_SECTION && elf.y(r.sym).sec == Some(sec))
        });
        if base == sec || !refers || names::is_debug_section(&elf.s(base).name) {
            continue;
        }
        let b = elf.s(base);
        if !b.is_text() || b.name.starts_with(".init") || b.name.contains(".init.") {
            return None;
        }
        let mut f = elf.sec[base].bundled?;
        while let Some(p) = elf.sym[f].parent {
            f = p;
        }
        if !users.contains(&f) {
            users.push(f);
        }
    }
    (!users.is_empty()).then_some(users)
}

/// Sections that never count as changes, and `KPATCH_IGNORE_SECTION()` targets.
pub fn mark_ignored_sections(patched: &mut Elf, orig: &mut Elf) -> Result<()> {
    for id in patched.sections() {
        let name = patched.s(id).name.clone();
        let name = name.as_str();
        let mut ignore = name.starts_with(".discard")
            || name.starts_with(".rela.discard")
            || name.starts_with(".llvm_addrsig")
            || name.starts_with(".llvm.");
        if name == ".modinfo" {
            patched.modinfo_ns = modinfo_namespaces(&patched.s(id).data);
            ignore = true;
        }
        if patched.arch.ignores_patchable_function_entries()
            && (name == ".rela__patchable_function_entries"
                || name == "__patchable_function_entries")
        {
            ignore = true;
        }
        if patched.arch.ignored_section(name) {
            ignore = true;
        }
        if ignore {
            patched.sec[id].ignore = true;
        }
    }
    let Some(sec) = patched.obj.find_section(names::IGNORE_SECTIONS) else {
        return Ok(());
    };
    let Some(relasec) = patched.s(sec).rela else {
        return Ok(());
    };
    for i in 0..patched.relas(relasec).len() {
        let r = patched.relas(relasec)[i].clone();
        let sym = patched.y(r.sym);
        let Some(strsec) = sym.sec else {
            return Err(fatal(
                "KPATCH_IGNORE_SECTION: reference to an undefined string",
            ));
        };
        let off = (sym.value as i64).checked_add(r.addend);
        let off = off
            .and_then(|o| usize::try_from(o).ok())
            .unwrap_or(usize::MAX);
        let data = &patched.s(strsec).data;
        let name = data
            .get(off..)
            .map(|d| &d[..d.iter().position(|b| *b == 0).unwrap_or(d.len())])
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .ok_or_else(|| fatal("KPATCH_IGNORE_SECTION: string out of range"))?;
        patched.sec[strsec].status = Status::Changed;
        patched.sec[strsec].include = true;
        if let Some(ss) = patched.s(strsec).secsym {
            patched.sym[ss].include = true;
        }
        let target = patched
            .obj
            .find_section(&name)
            .ok_or_else(|| fatal(format!("KPATCH_IGNORE_SECTION: can't find {name}")))?;
        patched.notice(format!("ignoring section: {name}"));
        let target = patched.base_of(target);
        patched.sec[target].ignore = true;
        if let Some(t) = patched.sec[target].twin {
            orig.sec[t].ignore = true;
        }
    }
    Ok(())
}

fn modinfo_namespaces(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in data.split(|b| *b == 0) {
        if let Some(pos) = entry.windows(10).position(|w| w == b"import_ns=") {
            out.extend_from_slice(&entry[pos..]);
            out.push(0);
        }
    }
    out
}

fn mark_children_same(elf: &mut Elf, sym: SymbolId) {
    for c in elf.sym[sym].children.clone() {
        elf.sym[c].status = Status::Same;
        mark_children_same(elf, c);
    }
}

/// `KPATCH_IGNORE_FUNCTION()`: treat the named functions as unchanged.
pub fn mark_ignored_functions_same(elf: &mut Elf) -> Result<()> {
    if let Some(sec) = elf.obj.find_section(names::IGNORE_FUNCTIONS) {
        if let Some(relasec) = elf.s(sec).rela {
            for i in 0..elf.relas(relasec).len() {
                let sym = elf.relas(relasec)[i].sym;
                let s = elf.y(sym);
                let Some(fsec) = s.sec else {
                    return Err(fatal(format!(
                        "KPATCH_IGNORE_FUNCTION: {} is not defined in this object",
                        s.name
                    )));
                };
                if s.kind != STT_FUNC {
                    return Err(fatal(format!(
                        "KPATCH_IGNORE_FUNCTION: {} is not a function",
                        s.name
                    )));
                }
                elf.notice(format!("ignoring function: {}", s.name));
                if elf.sym[sym].status != Status::Changed {
                    elf.notice(format!("NOTICE: no change detected in function {}, unnecessary KPATCH_IGNORE_FUNCTION()?", s.name));
                }
                elf.sym[sym].status = Status::Same;
                elf.sec[fsec].status = Status::Same;
                mark_children_same(elf, sym);
                if let Some(ss) = elf.s(fsec).secsym {
                    elf.sym[ss].status = Status::Same;
                }
                if let Some(r) = elf.s(fsec).rela {
                    elf.sec[r].status = Status::Same;
                }
            }
        }
    }
    for id in elf.symbols() {
        if elf.y(id).name.starts_with("__kpatch_ignore_func_") {
            elf.sym[id].status = Status::Same;
        }
    }
    Ok(())
}

/// Everything in an ignored section counts as unchanged.
pub fn mark_ignored_sections_same(elf: &mut Elf) {
    let mut by_sec: std::collections::HashMap<u32, Vec<SymbolId>> = Default::default();
    for id in elf.symbols() {
        if let Some(s) = elf.y(id).sec {
            by_sec.entry(s.0).or_default().push(id);
        }
    }
    for id in elf.sections() {
        if !elf.sec[id].ignore {
            continue;
        }
        elf.sec[id].status = Status::Same;
        if !elf.is_rela(id) {
            if let Some(ss) = elf.s(id).secsym {
                elf.sym[ss].status = Status::Same;
            }
            if let Some(r) = elf.s(id).rela {
                elf.sec[r].status = Status::Same;
            }
        }
        for &s in by_sec.get(&id.0).map(Vec::as_slice).unwrap_or(&[]) {
            elf.sym[s].status = Status::Same;
        }
    }
    for id in elf.symbols() {
        if elf
            .y(id)
            .name
            .starts_with("__UNIQUE_ID_kpatch_ignore_section_")
        {
            elf.sym[id].status = Status::Same;
        }
    }
}

/// A changed function must have an ftrace hook, or ftrace cannot redirect it; without
/// one it is carried through its traceable callers when it can be (`reroute`).
pub fn check_func_profiling(patched: &mut Elf, orig: &Elf, carry: &crate::Carry) -> Result<()> {
    let mut bad = Vec::new();
    for id in patched.symbols() {
        let s = patched.y(id);
        let st = &patched.sym[id];
        if s.kind != STT_FUNC || st.status != Status::Changed {
            continue;
        }
        if st
            .parent
            .map(|p| patched.sym[p].status == Status::Changed)
            .unwrap_or(false)
        {
            continue;
        }
        let hooked = st
            .twin
            .map(|t| orig.sym[t].has_func_profiling)
            .unwrap_or(false);
        if !hooked {
            bad.push(id);
        }
    }
    // Worklist: a caller without a hook that carries a function must be carried too.
    let mut carries: std::collections::HashMap<SymbolId, SymbolId> = Default::default();
    let mut work = bad;
    work.reverse();
    while let Some(id) = work.pop() {
        let name = patched.y(id).name.clone();
        let elsewhere = carry.out.contains(&name);
        let why = match crate::reroute::callers(patched, id, elsewhere) {
            Ok(callers) => {
                crate::reroute::apply(patched, id, &callers, elsewhere);
                for c in callers {
                    if crate::reroute::hookless(patched, orig, c) && !carries.contains_key(&c) {
                        carries.insert(c, id);
                        work.push(c);
                    }
                }
                continue;
            }
            Err(why) => why,
        };
        if patched.y(id).bind != STB_LOCAL && !elsewhere {
            patched.hookless_globals.push(name.clone());
        }
        let mut root = id;
        while let Some(&n) = carries.get(&root) {
            root = n;
        }
        let remedy = names::syscall_define_hint(&patched.y(root).name)
            .or_else(|| names::syscall_define_hint(&name))
            .unwrap_or_else(|| "Patch its callers instead".to_string());
        let chain = match carries.get(&id) {
            Some(&n) => format!(
                " It changes with the patch only because it calls {}, which changed and has \
                 no ftrace hook either.",
                patched.y(n).name
            ),
            None => String::new(),
        };
        patched.refusals.push(Refusal::new(
            "no-ftrace-hook",
            name.clone(),
            format!(
                "function {name} doesn't have patchable function entry, unable to patch: it is \
                 compiled without an ftrace hook (notrace, or in a file built without \
                 -pg/-mfentry), so the kernel cannot redirect calls to it, and its callers \
                 cannot carry the change ({why}).{chain} {remedy}."
            ),
        ));
    }
    Ok(())
}
