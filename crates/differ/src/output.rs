//! Phase 7: the output object. Adds upstream kpatch's intermediate metadata
//! (`.kpatch.funcs`, `.kpatch.relocations`, `.kpatch.symbols`, `.kpatch.strings`),
//! converts references to the running kernel's non-exported symbols into klp
//! relocation records, regenerates `__mcount_loc`, orders the symbol table and writes.

use std::collections::HashMap;

use kelf::consts::*;
use kelf::{IdVec, Rela, Section, SectionId, Symbol, SymbolId};

use crate::elf::{Elf, Status, SymState};
use crate::error::{fatal, Result};
use crate::lookup::Lookup;
use crate::names;
use crate::special::is_special_section;

/// `struct kpatch_patch_func`: new_addr, new_size, old_addr, old_size, sympos, name, objname.
pub const FUNC_SIZE: u64 = 56;
/// `struct kpatch_symbol`: src, sympos, bind, type, name, objname.
pub const KSYM_SIZE: u64 = 40;
/// `struct kpatch_relocation`: dest, type, external, addend, objname, ksym.
pub const KRELA_SIZE: u64 = 40;

#[derive(Default)]
struct Strings {
    list: Vec<String>,
    map: HashMap<String, u64>,
    size: u64,
}

impl Strings {
    fn offset(&mut self, s: &str) -> i64 {
        if let Some(o) = self.map.get(s) {
            return *o as i64;
        }
        let o = self.size;
        self.map.insert(s.to_string(), o);
        self.list.push(s.to_string());
        self.size += s.len() as u64 + 1;
        o as i64
    }

    fn data(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(self.size as usize);
        for s in &self.list {
            d.extend_from_slice(s.as_bytes());
            d.push(0);
        }
        d
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Strip {
    Default,
    Used,
    Drop,
}

struct Out<'a> {
    elf: Elf,
    lookup: &'a Lookup,
    strings: Strings,
    strsym: SymbolId,
    strip: IdVec<SymbolId, Strip>,
    /// Keep klp-bound relocations as normal ones against undefined `.klp.sym.*`
    /// placeholders (see [`write_output`]); the placeholder symbols by name.
    placeholders: Option<HashMap<String, SymbolId>>,
    /// Symbols another object of the patch module defines ([`crate::Carry::provided`]).
    provided: &'a [String],
}

impl Out<'_> {
    fn add_symbol(&mut self, sym: Symbol) -> SymbolId {
        let id = self.elf.obj.add_symbol(sym);
        self.elf.sym.push(SymState {
            include: true,
            status: Status::New,
            ..Default::default()
        });
        self.strip.push(Strip::Default);
        id
    }

    fn add_section_pair(&mut self, name: &str, entsize: u64, nr: u64) -> (SectionId, SectionId) {
        let mut sec = Section::new(name, SHT_PROGBITS, u64::from(SHF_ALLOC));
        sec.sh_entsize = entsize;
        sec.sh_addralign = 8;
        sec.set_data(vec![0; (entsize * nr) as usize]);
        let (a, b) = self.elf.obj.add_section_pair(sec);
        for _ in 0..2 {
            self.elf.sec.push(Default::default());
        }
        (a, b)
    }

    fn section_symbol(&mut self, sec: SectionId) -> SymbolId {
        let mut s = Symbol::new(self.elf.s(sec).name.clone(), STB_LOCAL, STT_SECTION);
        s.sec = Some(sec);
        let id = self.add_symbol(s);
        self.elf.obj.sec_mut(sec).secsym = Some(id);
        id
    }

    fn put(&mut self, sec: SectionId, off: u64, value: u64, width: usize) {
        let bytes = self.elf.obj.encode_uint(value, width);
        self.elf.obj.sec_mut(sec).data[off as usize..off as usize + width].copy_from_slice(&bytes);
    }

    fn rela(&mut self, relasec: SectionId, offset: u64, sym: SymbolId, addend: i64) {
        let r_type = self.elf.arch.abs64();
        self.elf.obj.sec_mut(relasec).relas.push(Rela {
            offset,
            r_type,
            sym,
            addend,
        });
    }

    fn string_rela(&mut self, relasec: SectionId, offset: u64, s: &str) {
        let a = self.strings.offset(s);
        let strsym = self.strsym;
        self.rela(relasec, offset, strsym, a);
    }
}

/// Build and write the output object.
///
/// With `placeholders`, every relocation that becomes a klp relocation record also
/// stays in its relocation section, retargeted to an undefined `.klp.sym.<obj>.<name>,<pos>`
/// symbol. The code then still looks like ordinary code with external references to
/// the module build (objtool validates it, generating ORC and return-site tables), and
/// `klp::convert` moves those relocations into `.klp.rela.*` after the module link.
/// Without it, the output is exactly upstream kpatch's.
pub fn write_output(
    mut elf: Elf,
    lookup: &Lookup,
    output: &str,
    placeholders: bool,
    provided: &[String],
) -> Result<()> {
    put_modinfo(&mut elf);
    elf.arch.check_patched_functions(&elf)?;
    let nsym = elf.obj.symbols.len();
    let mut strsec = Section::new(".kpatch.strings", SHT_PROGBITS, u64::from(SHF_ALLOC));
    strsec.sh_entsize = 1;
    let strsec = elf.obj.add_section(strsec);
    elf.sec.push(Default::default());
    let mut out = Out {
        elf,
        lookup,
        strings: Strings::default(),
        strsym: SymbolId(0),
        strip: IdVec::from_vec(vec![Strip::Default; nsym]),
        placeholders: placeholders.then(HashMap::new),
        provided,
    };
    out.strsym = out.section_symbol(strsec);

    create_funcs(&mut out)?;
    create_klp_relocations(&mut out)?;
    callbacks_objname(&mut out);
    let data = out.strings.data();
    out.elf.obj.sec_mut(strsec).set_data(data);
    create_mcount(&mut out)?;
    finish_symbols(&mut out);
    check_relocations(&out.elf)?;
    check_symbols(&out.elf)?;
    kelf::write::write_object(&out.elf.obj, output).map_err(|e| fatal(e.to_string()))
}

fn put_modinfo(elf: &mut Elf) {
    if elf.modinfo_ns.is_empty() {
        return;
    }
    let mut sec = Section::new(".modinfo", SHT_PROGBITS, u64::from(SHF_ALLOC));
    sec.set_data(std::mem::take(&mut elf.modinfo_ns));
    elf.obj.add_section(sec);
    elf.sec.push(Default::default());
}

fn patched_funcs(elf: &Elf) -> Vec<SymbolId> {
    elf.symbols()
        .filter(|&id| {
            elf.y(id).kind == STT_FUNC
                && elf.sym[id].status == Status::Changed
                && elf.sym[id].parent.is_none()
        })
        .collect()
}

fn create_funcs(out: &mut Out) -> Result<()> {
    let funcs = patched_funcs(&out.elf);
    let (sec, relasec) = out.add_section_pair(".kpatch.funcs", FUNC_SIZE, funcs.len() as u64);
    let objname = out.lookup.objname().to_string();
    for (i, &sym) in funcs.iter().enumerate() {
        let name = out.elf.y(sym).name.clone();
        let r = out.lookup.lookup(&out.elf, sym)?.ok_or_else(|| {
            fatal(format!(
                "can't find symbol '{name}' in the {objname} symbol table: the patched function does not \
                 exist in the running kernel (was it inlined everywhere, or is the symbol table for \
                 another build?)"
            ))
        })?;
        if out.elf.y(sym).bind == STB_LOCAL && r.global {
            return Err(fatal(format!(
                "can't find local symbol '{name}' in symbol table"
            )));
        }
        tracing::debug!(
            "lookup for {name}: obj={} sympos={} size={}",
            r.objname,
            r.sympos,
            r.size
        );
        // Local, so that nothing else in the patch module links to it by accident.
        out.elf.obj.sym_mut(sym).bind = STB_LOCAL;
        let base = i as u64 * FUNC_SIZE;
        let new_size = out.elf.y(sym).size;
        out.put(sec, base + 8, new_size, 8);
        out.put(sec, base + 16, r.addr, 8);
        out.put(sec, base + 24, r.size, 8);
        out.put(sec, base + 32, r.sympos, 8);
        out.rela(relasec, base, sym, 0);
        out.string_rela(relasec, base + 40, &name);
        out.string_rela(relasec, base + 48, &objname);
    }
    Ok(())
}

fn is_core_module_symbol(name: &str) -> bool {
    matches!(
        name,
        "kpatch_shadow_alloc" | "kpatch_shadow_free" | "kpatch_shadow_get"
    )
}

/// Must relocation `i` of `relasec` be resolved by the livepatch core (a klp
/// relocation) rather than by the module loader?
fn need_klp_reloc(out: &Out, relasec: SectionId, i: usize) -> Result<bool> {
    let elf = &out.elf;
    let rela = &elf.relas(relasec)[i];
    if names::is_debug_section(&elf.s(elf.base_of(relasec)).name) {
        return Ok(false);
    }
    if elf
        .arch
        .keeps_normal_rela(rela.r_type, &elf.s(relasec).name)
    {
        return Ok(false);
    }
    let sym = elf.y(rela.sym);
    if sym.sec.is_none() && out.provided.contains(&sym.name) {
        // Another object of the patch module defines it (a carried function).
        return Ok(false);
    }
    if is_core_module_symbol(&sym.name) || elf.arch.is_module_local_stub(&sym.name) {
        return Ok(false);
    }
    if sym.sec.is_some() {
        // Defined in the patch. Only a function pointer to an original function must
        // point at the running kernel's copy (callbacks may outlive the patch module).
        if !elf.arch.is_function_pointer(elf, relasec, i) {
            return Ok(false);
        }
        let Some(t) = elf.target_sym(relasec, i) else {
            return Ok(false);
        };
        return Ok(elf.sym[t].status != Status::New && !elf.y(t).name.contains('.'));
    }
    let Some(r) = out.lookup.lookup(elf, rela.sym)? else {
        // Not in the parent: another object of the patch module defines it.
        return Ok(false);
    };
    if sym.bind == STB_LOCAL {
        if r.global {
            return Err(fatal(format!(
                "can't find local symbol '{}' in symbol table",
                sym.name
            )));
        }
        return Ok(true);
    }
    if r.exported {
        return Ok(r.objname != "vmlinux" || elf.arch.is_localentry_bundled(elf, rela.sym));
    }
    Ok(r.global)
}

fn create_klp_relocations(out: &mut Out) -> Result<()> {
    // First pass: decide, and count an upper bound.
    let mut need: HashMap<(SectionId, usize), bool> = HashMap::new();
    let mut nr = 0u64;
    for relasec in out.elf.sections() {
        if !out.elf.is_rela(relasec) || out.elf.s(relasec).name == ".rela.kpatch.funcs" {
            continue;
        }
        for i in 0..out.elf.relas(relasec).len() {
            nr += 1;
            if need_klp_reloc(out, relasec, i)? {
                // On ppc64le the decision applies to the `.toc` entry the code goes through.
                if let Some(key) = out.elf.target_rela(relasec, i) {
                    need.insert(key, true);
                }
            }
        }
    }
    let (krela_sec, krela_rela) = out.add_section_pair(".kpatch.relocations", KRELA_SIZE, nr);
    let (ksym_sec, ksym_rela) = out.add_section_pair(".kpatch.symbols", KSYM_SIZE, nr);
    let ksym_secsym = out.section_symbol(ksym_sec);
    let objname = out.lookup.objname().to_string();
    let vmlinux = objname == "vmlinux";

    let mut index = 0u64;
    for relasec in out.elf.sections() {
        if !out.elf.is_rela(relasec) {
            continue;
        }
        let rname = out.elf.s(relasec).name.clone();
        if matches!(
            rname.as_str(),
            ".rela.kpatch.funcs" | ".rela.kpatch.relocations" | ".rela.kpatch.symbols"
        ) {
            continue;
        }
        let base = out.elf.base_of(relasec);
        let base_name = out.elf.s(base).name.clone();
        let special = is_special_section(&out.elf, &base_name);
        let relas = std::mem::take(&mut out.elf.obj.sec_mut(relasec).relas);
        let mut kept = Vec::with_capacity(relas.len());
        for (i, rela) in relas.into_iter().enumerate() {
            if !need.contains_key(&(relasec, i)) {
                out.strip[rela.sym] = Strip::Used;
                kept.push(rela);
                continue;
            }
            let sname = out.elf.y(rela.sym).name.clone();
            if !vmlinux && special {
                return Err(fatal(format!(
                    "unsupported klp relocation reference to symbol '{sname}' in module-specific special \
                     section '{base_name}': the livepatch core would resolve it only after the module \
                     has initialised that section (late module patching). Avoid the construct that \
                     creates this entry in the patched code (for a jump label, static_key_enabled() \
                     instead of static_branch_*())"
                )));
            }
            let r = out
                .lookup
                .lookup(&out.elf, rela.sym)?
                .ok_or_else(|| fatal(format!("can't find symbol '{sname}' in symbol table")))?;
            let ks = index * KSYM_SIZE;
            let (kind, bind) = (out.elf.y(rela.sym).kind, out.elf.y(rela.sym).bind);
            out.put(ksym_sec, ks, if vmlinux { r.addr } else { 0 }, 8);
            out.put(ksym_sec, ks + 8, r.sympos, 8);
            out.put(ksym_sec, ks + 16, u64::from(bind), 1);
            out.put(ksym_sec, ks + 17, u64::from(kind), 1);
            out.string_rela(ksym_rela, ks + 24, &sname);
            out.string_rela(ksym_rela, ks + 32, &r.objname);

            let kr = index * KRELA_SIZE;
            let mut addend = rela.addend;
            let sv = out.elf.y(rela.sym).value as i64;
            if out.elf.arch.is_localentry_bundled(&out.elf, rela.sym) && addend == sv {
                addend -= sv;
            }
            out.put(krela_sec, kr + 8, u64::from(rela.r_type), 4);
            out.put(krela_sec, kr + 12, u64::from(!vmlinux && r.exported), 4);
            out.put(krela_sec, kr + 16, addend as u64, 8);
            let dest_sym = match out.elf.s(base).secsym {
                Some(s) => s,
                None => out.section_symbol(base),
            };
            out.rela(krela_rela, kr, dest_sym, rela.offset as i64);
            out.string_rela(krela_rela, kr + 24, &objname);
            out.rela(krela_rela, kr + 32, ksym_secsym, ks as i64);
            if out.elf.y(rela.sym).sec.is_none() && out.strip[rela.sym] != Strip::Used {
                out.strip[rela.sym] = Strip::Drop;
            }
            if out.placeholders.is_some() {
                let psym = placeholder(out, &r.objname, &sname, r.sympos, kind);
                kept.push(Rela { sym: psym, ..rela });
            }
            index += 1;
        }
        out.elf.obj.sec_mut(relasec).relas = kept;
    }
    for (sec, size) in [(ksym_sec, KSYM_SIZE), (krela_sec, KRELA_SIZE)] {
        let mut d = std::mem::take(&mut out.elf.obj.sec_mut(sec).data);
        d.truncate((index * size) as usize);
        out.elf.obj.sec_mut(sec).set_data(d);
    }
    Ok(())
}

/// The `.klp.sym.<object>.<name>,<pos>` placeholder symbol a klp relocation is kept
/// against (`--klp-placeholders`), created once per name.
fn placeholder(out: &mut Out, objname: &str, sname: &str, sympos: u64, kind: u8) -> SymbolId {
    let pname = format!(".klp.sym.{objname}.{sname},{sympos}");
    if let Some(p) = out
        .placeholders
        .as_ref()
        .and_then(|m| m.get(&pname).copied())
    {
        return p;
    }
    // objtool (which runs on the linked module of an IBT kernel) takes every FUNC named
    // `*.cold*` for a subfunction and fails when its parent is not defined; a placeholder is
    // only a name until `create-klp-module` gives the symbol its kind from `.kpatch.symbols`,
    // so such a one is left untyped.
    let kind = if sname.contains(".cold") {
        STT_NOTYPE
    } else {
        kind
    };
    let p = out.add_symbol(Symbol::new(pname.clone(), STB_GLOBAL, kind));
    out.strip[p] = Strip::Used;
    if let Some(m) = out.placeholders.as_mut() {
        m.insert(pname, p);
    }
    p
}

fn callbacks_objname(out: &mut Out) {
    let objname = out.lookup.objname().to_string();
    for id in out.elf.sections() {
        let n = out.elf.s(id).name.as_str();
        if out.elf.is_rela(id)
            && n.starts_with(".rela.kpatch.callbacks.")
            && names::is_callback_section(n)
        {
            // Every callback struct is { callback, objname }.
            out.string_rela(id, 8, &objname);
        }
    }
}

fn create_mcount(out: &mut Out) -> Result<()> {
    let hooked: Vec<SymbolId> = out
        .elf
        .symbols()
        .filter(|&id| {
            out.elf.y(id).kind == STT_FUNC
                && out.elf.sym[id].status != Status::Same
                && out.elf.sym[id].has_func_profiling
        })
        .collect();
    let mcount = if out.elf.has_pfe {
        None
    } else {
        Some(
            out.add_section_pair("__mcount_loc", 8, hooked.len() as u64)
                .1,
        )
    };
    for (i, &sym) in hooked.iter().enumerate() {
        let fsec = out
            .elf
            .y(sym)
            .sec
            .ok_or_else(|| fatal(format!("{}: no section", out.elf.y(sym).name)))?;
        let insn = out.elf.arch.mcount_offset(&out.elf, sym)?;
        rewrite_fentry_nop(out, fsec, insn)?;
        match mcount {
            Some(relasec) => {
                let value = out.elf.y(sym).value as i64;
                out.rela(relasec, i as u64 * 8, sym, insn as i64 - value);
            }
            None => {
                // One `__patchable_function_entries` section per function, linked to it.
                let (pfe, pfe_rela) = out.add_section_pair("__patchable_function_entries", 8, 1);
                let mut flags = u64::from(SHF_WRITE | SHF_ALLOC);
                if out.elf.pfe_ordered {
                    flags |= u64::from(SHF_LINK_ORDER);
                }
                out.elf.obj.sec_mut(pfe).sh_flags = flags;
                out.elf.obj.sec_mut(pfe).link_sec = Some(fsec);
                let secsym = match out.elf.s(fsec).secsym {
                    Some(s) => s,
                    None => out.section_symbol(fsec),
                };
                let value = out.elf.y(secsym).value as i64;
                out.rela(pfe_rela, 0, secsym, insn as i64 - value);
            }
        }
    }
    Ok(())
}

/// Old x86 kernels: a NOP where the fentry call goes; make it a call again.
fn rewrite_fentry_nop(out: &mut Out, fsec: SectionId, insn: u64) -> Result<()> {
    if out.elf.obj.header.e_machine != EM_X86_64 {
        return Ok(());
    }
    let Some(rs) = out.elf.s(fsec).rela else {
        return Ok(());
    };
    if out.elf.relas(rs).first().map(|r| r.r_type) != Some(R_X86_64_NONE) {
        return Ok(());
    }
    let d = &mut out.elf.obj.sec_mut(fsec).data;
    let at = insn as usize;
    if d.get(at) != Some(&0x0f) || d.len() < at + 5 {
        return Err(fatal(
            "unexpected instruction at the start of a function with a NOP fentry site",
        ));
    }
    d[at..at + 5].copy_from_slice(&[0xe8, 0, 0, 0, 0]);
    out.elf.obj.sec_mut(rs).relas[0].r_type = R_X86_64_PC32;
    Ok(())
}

/// Order symbols as linkers expect (null, files, local functions, other locals,
/// globals), drop the ones only klp relocations referenced, and remap every reference.
fn finish_symbols(out: &mut Out) {
    let elf = &out.elf;
    let class = |id: SymbolId| -> u8 {
        let s = &elf.obj.symbols[id];
        if s.name.is_empty() && s.kind != STT_SECTION {
            0
        } else if s.kind == STT_FILE {
            1
        } else if s.bind == STB_LOCAL && s.kind == STT_FUNC {
            2
        } else if s.bind == STB_LOCAL {
            3
        } else {
            4
        }
    };
    let mut order: Vec<SymbolId> = elf
        .symbols()
        .filter(|&id| out.strip[id] != Strip::Drop)
        .collect();
    order.sort_by_key(|&id| class(id));
    let mut map: IdVec<SymbolId, SymbolId> =
        IdVec::from_vec(vec![SymbolId(u32::MAX); elf.obj.symbols.len()]);
    for (new, &old) in order.iter().enumerate() {
        map[old] = SymbolId(new as u32);
    }
    let mut syms = std::mem::take(&mut out.elf.obj.symbols);
    let mut states = std::mem::take(&mut out.elf.sym);
    let mut new_syms = IdVec::with_capacity(order.len());
    let mut new_states = IdVec::with_capacity(order.len());
    for &old in &order {
        let mut s = std::mem::replace(&mut syms[old], Symbol::new("", 0, 0));
        if s.sec.is_none() && s.shndx != SHN_ABS && s.shndx != SHN_LIVEPATCH {
            s.shndx = SHN_UNDEF;
        }
        new_syms.push(s);
        new_states.push(std::mem::take(&mut states[old]));
    }
    let remap = |id: SymbolId| map[id];
    for st in new_states.iter_mut() {
        st.parent = st.parent.map(remap).filter(|p| p.0 != u32::MAX);
        st.pfx = st.pfx.map(remap).filter(|p| p.0 != u32::MAX);
        st.children.clear();
    }
    out.elf.obj.symbols = new_syms;
    out.elf.sym = new_states;
    for (sec, state) in out.elf.obj.sections.iter_mut().zip(out.elf.sec.iter_mut()) {
        for r in sec.relas.iter_mut() {
            r.sym = remap(r.sym);
        }
        sec.secsym = sec.secsym.map(remap).filter(|s| s.0 != u32::MAX);
        sec.info_sym = sec.info_sym.map(remap);
        state.bundled = state.bundled.map(remap).filter(|s| s.0 != u32::MAX);
    }
}

const SHN_LIVEPATCH: u16 = 0xff20;

/// Every defined symbol must lie inside its section, which may have shrunk (special
/// sections are regenerated); garbled input can place symbols anywhere.
fn check_symbols(elf: &Elf) -> Result<()> {
    for s in &elf.obj.symbols {
        let Some(sec) = s.sec else { continue };
        let size = elf.s(sec).size;
        if !matches!(s.value.checked_add(s.size), Some(end) if end <= size) {
            return Err(fatal(format!(
                "symbol {} ({:#x}+{:#x}) lies outside section {} ({size:#x} bytes) in the output",
                s.name,
                s.value,
                s.size,
                elf.s(sec).name
            )));
        }
    }
    Ok(())
}

/// Every relocation against a defined symbol must land inside that symbol's section.
/// Debug sections are exempt: a DWARF location expression may compute an address past
/// the end of an object (`&buf[len]`), which gcc writes as such a relocation, and the
/// module loader never applies them.
fn check_relocations(elf: &Elf) -> Result<()> {
    for relasec in elf.sections() {
        if !elf.is_rela(relasec) || names::is_debug_section(&elf.s(elf.base_of(relasec)).name) {
            continue;
        }
        for r in elf.relas(relasec) {
            if r.sym.0 == u32::MAX {
                return Err(fatal(format!(
                    "{}: relocation to a stripped symbol",
                    elf.s(relasec).name
                )));
            }
            let s = elf.y(r.sym);
            let Some(sec) = s.sec else { continue };
            let off = (s.value as i64).checked_add(elf.rela_target_offset(relasec, r)?);
            if !off.is_some_and(|o| o >= 0 && o as u64 <= elf.s(sec).size) {
                return Err(fatal(format!(
                    "{}+{:#x}: out-of-range relocation {}{:+}",
                    elf.s(elf.base_of(relasec)).name,
                    r.offset,
                    s.name,
                    r.addend
                )));
            }
        }
    }
    Ok(())
}
