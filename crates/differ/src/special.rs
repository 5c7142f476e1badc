//! Phase 5: special sections. Tables such as `__bug_table`, `__ex_table`, `__jump_table`
//! or `.altinstructions` hold one fixed-size entry per site in the code. They are
//! regenerated entry by entry, keeping only the entries that refer to included
//! functions. ORC unwind data is split over two tables and handled on its own.

use std::collections::HashMap;

use kelf::consts::*;
use kelf::{Rela, SectionId};

use crate::elf::{Elf, Status};
use crate::error::{fatal, unpatchable, Result};
use crate::include::include_symbol;
use crate::lookup::Lookup;
use crate::names;

/// Sizes of the kernel's special-section entries, which depend on the kernel version
/// (kpatch-build reads them from DWARF; upstream passes them in the environment).
#[derive(Clone, Debug, Default)]
pub struct StructSizes {
    /// `struct bug_entry` (`__bug_table`).
    pub bug: Option<u64>,
    /// `struct exception_table_entry` (`__ex_table`).
    pub ex: Option<u64>,
    /// `struct jump_entry` (`__jump_table`).
    pub jump: Option<u64>,
    /// `struct alt_instr` (`.altinstructions`).
    pub alt: Option<u64>,
    /// `struct paravirt_patch_site` (`.parainstructions`).
    pub para: Option<u64>,
    /// `struct static_call_site` (`.static_call_sites`).
    pub static_call: Option<u64>,
    /// `struct pi_entry` (`.printk_index`).
    pub printk_index: Option<u64>,
    /// `struct orc_entry` (`.orc_unwind`).
    pub orc: Option<u64>,
    /// ppc64le's `.fixup` entries (`FIXUP_STRUCT_SIZE`).
    pub fixup: Option<u64>,
}

/// No kernel special-section entry comes near this.
const MAX_STRUCT_SIZE: u64 = 1 << 16;

impl StructSizes {
    /// Read the upstream environment variables (`BUG_STRUCT_SIZE`, ...).
    pub fn from_env() -> std::result::Result<StructSizes, String> {
        fn var(name: &str) -> std::result::Result<Option<u64>, String> {
            match std::env::var(name) {
                Ok(v) => match v.trim().parse::<u64>() {
                    Ok(0) | Err(_) => Err(format!("{name}={v}: expected a positive size in bytes")),
                    Ok(n) if n > MAX_STRUCT_SIZE => Err(format!("{name}={v}: absurd size")),
                    Ok(n) => Ok(Some(n)),
                },
                Err(_) => Ok(None),
            }
        }
        Ok(StructSizes {
            bug: var("BUG_STRUCT_SIZE")?,
            ex: var("EX_STRUCT_SIZE")?,
            jump: var("JUMP_STRUCT_SIZE")?,
            alt: var("ALT_STRUCT_SIZE")?,
            para: var("PARA_STRUCT_SIZE")?,
            static_call: var("STATIC_CALL_STRUCT_SIZE")?,
            printk_index: var("PRINTK_INDEX_STRUCT_SIZE")?,
            orc: var("ORC_STRUCT_SIZE")?,
            fixup: var("FIXUP_STRUCT_SIZE")?,
        })
    }
}

/// How to find the size of each entry of a special section.
#[derive(Clone, Copy, Debug)]
pub enum GroupSize {
    Fixed(u64),
    /// From [`StructSizes`], by environment-variable name.
    Env(&'static str),
    /// x86 `.fixup`: entries end where the next `__ex_table` reference begins.
    Fixup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    None,
    JumpLabel,
    StaticCall,
}

#[derive(Clone, Copy, Debug)]
pub struct SpecialSection {
    pub name: &'static str,
    pub size: GroupSize,
    pub filter: Filter,
}

const fn sec(name: &'static str, size: GroupSize, filter: Filter) -> SpecialSection {
    SpecialSection { name, size, filter }
}

const BUG: SpecialSection = sec(
    "__bug_table",
    GroupSize::Env("BUG_STRUCT_SIZE"),
    Filter::None,
);
const FIXUP: SpecialSection = sec(".fixup", GroupSize::Fixup, Filter::None);
const EX: SpecialSection = sec("__ex_table", GroupSize::Env("EX_STRUCT_SIZE"), Filter::None);
const JUMP: SpecialSection = sec(
    "__jump_table",
    GroupSize::Env("JUMP_STRUCT_SIZE"),
    Filter::JumpLabel,
);
const PRINTK: SpecialSection = sec(
    ".printk_index",
    GroupSize::Env("PRINTK_INDEX_STRUCT_SIZE"),
    Filter::None,
);
const ALT: SpecialSection = sec(
    ".altinstructions",
    GroupSize::Env("ALT_STRUCT_SIZE"),
    Filter::None,
);

/// x86_64, in processing order (`.fixup` before `__ex_table`, whose addends it moves).
pub const X86_64_SPECIAL: &[SpecialSection] = &[
    BUG,
    FIXUP,
    EX,
    JUMP,
    PRINTK,
    sec(".smp_locks", GroupSize::Fixed(4), Filter::None),
    sec(
        ".parainstructions",
        GroupSize::Env("PARA_STRUCT_SIZE"),
        Filter::None,
    ),
    ALT,
    sec(
        ".static_call_sites",
        GroupSize::Env("STATIC_CALL_STRUCT_SIZE"),
        Filter::StaticCall,
    ),
    sec(".call_sites", GroupSize::Fixed(4), Filter::None),
    sec(".retpoline_sites", GroupSize::Fixed(4), Filter::None),
    sec(".return_sites", GroupSize::Fixed(4), Filter::None),
];

pub const AARCH64_SPECIAL: &[SpecialSection] = &[BUG, FIXUP, EX, JUMP, PRINTK, ALT];

pub const LOONGARCH64_SPECIAL: &[SpecialSection] = &[BUG, FIXUP, EX, JUMP, ALT];

pub const PPC64_SPECIAL: &[SpecialSection] = &[
    BUG,
    FIXUP,
    EX,
    JUMP,
    PRINTK,
    sec(
        "__ftr_fixup",
        GroupSize::Env("FIXUP_STRUCT_SIZE"),
        Filter::None,
    ),
    sec(
        "__mmu_ftr_fixup",
        GroupSize::Env("FIXUP_STRUCT_SIZE"),
        Filter::None,
    ),
    sec(
        "__fw_ftr_fixup",
        GroupSize::Env("FIXUP_STRUCT_SIZE"),
        Filter::None,
    ),
    sec("__lwsync_fixup", GroupSize::Fixed(8), Filter::None),
    sec("__barrier_nospec_fixup", GroupSize::Fixed(8), Filter::None),
];

/// s390x: expoline tables hold one 32-bit entry per indirect branch site.
pub const S390X_SPECIAL: &[SpecialSection] = &[
    BUG,
    FIXUP,
    EX,
    JUMP,
    PRINTK,
    ALT,
    sec(".s390_return_mem", GroupSize::Fixed(4), Filter::None),
    sec(".s390_return_reg", GroupSize::Fixed(4), Filter::None),
    sec(".s390_indirect_call", GroupSize::Fixed(4), Filter::None),
    sec(".s390_indirect_branches", GroupSize::Fixed(4), Filter::None),
    sec(".s390_indirect_jump", GroupSize::Fixed(4), Filter::None),
];

fn env_size(sizes: &StructSizes, var: &str) -> Option<u64> {
    match var {
        "BUG_STRUCT_SIZE" => sizes.bug,
        "EX_STRUCT_SIZE" => sizes.ex,
        "JUMP_STRUCT_SIZE" => sizes.jump,
        "ALT_STRUCT_SIZE" => sizes.alt,
        "PARA_STRUCT_SIZE" => sizes.para,
        "STATIC_CALL_STRUCT_SIZE" => sizes.static_call,
        "PRINTK_INDEX_STRUCT_SIZE" => sizes.printk_index,
        "ORC_STRUCT_SIZE" => sizes.orc,
        "FIXUP_STRUCT_SIZE" => sizes.fixup,
        _ => None,
    }
}

struct Ctx<'a> {
    lookup: &'a Lookup,
    sizes: &'a StructSizes,
    /// New addends for `__ex_table` references into `.fixup`, by entry index.
    ex_stash: HashMap<usize, i64>,
    errors: Vec<String>,
}

fn fixup_group_size(elf: &Elf, offset: u64) -> Result<u64> {
    let ex = elf
        .obj
        .find_section(".rela__ex_table")
        .ok_or_else(|| fatal("missing .rela__ex_table section"))?;
    let relas = elf.relas(ex);
    let is_fixup = |r: &Rela| elf.y(r.sym).name == ".fixup";
    let start = relas
        .iter()
        .position(|r| is_fixup(r) && r.addend == offset as i64)
        .ok_or_else(|| fatal(format!("can't find .fixup rela group at offset {offset}")))?;
    if let Some(next) = relas[start + 1..]
        .iter()
        .find(|r| is_fixup(r) && r.addend > offset as i64)
    {
        return Ok(next.addend as u64 - offset);
    }
    let fixup = elf
        .obj
        .find_section(".fixup")
        .ok_or_else(|| fatal("missing .fixup section"))?;
    Ok(elf.s(fixup).size - offset)
}

fn group_size(elf: &Elf, ctx: &Ctx, special: &SpecialSection, offset: u64) -> Result<u64> {
    let n = match special.size {
        GroupSize::Fixed(n) => n,
        GroupSize::Env(var) => env_size(ctx.sizes, var).ok_or_else(|| {
            fatal(format!(
                "{var} not set: the entry size of {} is needed to split it",
                special.name
            ))
        })?,
        GroupSize::Fixup => fixup_group_size(elf, offset)?,
    };
    if n == 0 {
        return Err(fatal(format!(
            "{}: zero-sized entry at offset {offset}",
            special.name
        )));
    }
    Ok(n)
}

fn in_group(r: &Rela, off: u64, size: u64) -> bool {
    r.offset >= off && r.offset < off + size
}

fn should_keep_group(elf: &Elf, relasec: SectionId, off: u64, size: u64) -> bool {
    elf.relas(relasec).iter().any(|r| {
        in_group(r, off, size)
            && elf.y(r.sym).kind == STT_FUNC
            && elf
                .y(r.sym)
                .sec
                .map(|s| elf.sec[s].include)
                .unwrap_or(false)
    })
}

fn lives_in_module(elf: &Elf, ctx: &Ctx, sym: kelf::SymbolId) -> Result<bool> {
    Ok(match ctx.lookup.lookup(elf, sym)? {
        Some(r) => r.objname != "vmlinux",
        None => false,
    })
}

fn group_filter(
    elf: &mut Elf,
    ctx: &mut Ctx,
    special: &SpecialSection,
    relasec: SectionId,
    off: u64,
    size: u64,
) -> Result<bool> {
    let grp: Vec<Rela> = elf
        .relas(relasec)
        .iter()
        .filter(|r| in_group(r, off, size))
        .cloned()
        .collect();
    match special.filter {
        Filter::None => Ok(true),
        Filter::JumpLabel => {
            if grp.len() != 3 {
                return Err(fatal("BUG: __jump_table has an unexpected format"));
            }
            let (code, key) = (&grp[0], grp[2].sym);
            let kname = elf.y(key).name.clone();
            let tracepoint = kname.starts_with("__tracepoint_");
            let k = elf.y(key);
            let dyndbg = names::is_dynamic_debug(k.kind, &k.name, elf.sym_sec_name(key));
            if lives_in_module(elf, ctx, key)? {
                if tracepoint || dyndbg {
                    return Ok(false);
                }
                ctx.errors.push(format!(
                    "Found a jump label at {}()+{:#x}, using key {kname}, which is defined in a module. \
                     Use static_key_enabled() instead.",
                    elf.y(code.sym).name,
                    code.addend
                ));
                return Ok(false);
            }
            if dyndbg {
                include_symbol(elf, key);
            }
            Ok(true)
        }
        Filter::StaticCall => {
            if grp.len() != 2 {
                return Err(fatal("BUG: .static_call_sites has an unexpected format"));
            }
            let (code, key) = (&grp[0], grp[1].sym);
            let kname = elf.y(key).name.clone();
            if lives_in_module(elf, ctx, key)? {
                if kname.starts_with("__SCK__tp_func_") {
                    return Ok(false);
                }
                ctx.errors.push(format!(
                    "Found a static call at {}()+{:#x}, using key {kname}, which is defined in a module. \
                     Use KPATCH_STATIC_CALL() instead.",
                    elf.y(code.sym).name,
                    code.addend
                ));
                return Ok(false);
            }
            Ok(true)
        }
    }
}

fn regenerate(
    elf: &mut Elf,
    ctx: &mut Ctx,
    special: &SpecialSection,
    relasec: SectionId,
) -> Result<()> {
    let base = elf.base_of(relasec);
    let total = elf.s(base).size;
    if elf.s(base).is_nobits() || elf.s(base).data.len() as u64 != total {
        return Err(fatal(format!(
            "{}: special section without contents",
            special.name
        )));
    }
    if special.name == "__ex_table" {
        for (i, r) in elf.obj.sec_mut(relasec).relas.iter_mut().enumerate() {
            if let Some(a) = ctx.ex_stash.get(&i) {
                r.addend = *a;
            }
        }
        ctx.ex_stash.clear();
    }
    let src = elf.s(base).data.clone();
    let mut dest = Vec::with_capacity(src.len());
    let mut taken = vec![false; elf.relas(relasec).len()];
    let mut new_relas: Vec<Rela> = Vec::new();
    let mut off = 0u64;
    while off < total {
        let mut size = group_size(elf, ctx, special, off)?;
        if size > total - off {
            size = total - off;
        }
        let keep = should_keep_group(elf, relasec, off, size)
            && group_filter(elf, ctx, special, relasec, off, size)?;
        if keep {
            let dest_off = dest.len() as u64;
            for (i, done) in taken.iter_mut().enumerate() {
                let r = elf.relas(relasec)[i].clone();
                if *done || !in_group(&r, off, size) {
                    continue;
                }
                *done = true;
                elf.sym[r.sym].include = true;
                let mut nr = r;
                nr.offset = nr.offset - off + dest_off;
                new_relas.push(nr);
            }
            if special.name == ".fixup" {
                stash_ex_table_addends(elf, ctx, off, dest_off, size);
            }
            dest.extend_from_slice(&src[off as usize..(off + size) as usize]);
        }
        off += size;
    }
    if !ctx.errors.is_empty() {
        for e in &ctx.errors {
            elf.error(format!("ERROR: {e}"));
        }
        return Err(unpatchable(format!(
            "Found {} unsupported jump label(s) or static call(s) in the patched code",
            ctx.errors.len()
        )));
    }
    if dest.is_empty() {
        for id in [relasec, base] {
            elf.sec[id].status = Status::Same;
            elf.sec[id].include = false;
        }
        return Ok(());
    }
    elf.obj.sec_mut(relasec).relas = new_relas;
    elf.sec[relasec].rela_strings.clear();
    elf.sec[relasec].include = true;
    elf.sec[base].include = true;
    if let Some(ss) = elf.s(base).secsym {
        elf.sym[ss].include = true;
    }
    elf.obj.sec_mut(base).set_data(dest);
    Ok(())
}

fn stash_ex_table_addends(elf: &Elf, ctx: &mut Ctx, src: u64, dest: u64, size: u64) {
    let Some(ex) = elf.obj.find_section(".rela__ex_table") else {
        return;
    };
    for (i, r) in elf.relas(ex).iter().enumerate() {
        if elf.y(r.sym).name == ".fixup" && r.addend >= src as i64 && r.addend < (src + size) as i64
        {
            ctx.ex_stash
                .insert(i, r.addend - (src as i64 - dest as i64));
        }
    }
}

const ORC_IP_SIZE: u64 = 4;

/// `.orc_unwind` holds one entry per `.orc_unwind_ip` relocation; keep the pairs whose
/// code is included.
fn regenerate_orc(elf: &mut Elf, sizes: &StructSizes) -> Result<()> {
    let Some(entry) = sizes.orc else {
        return Ok(());
    };
    let (Some(orc), Some(ip)) = (
        elf.obj.find_section(".orc_unwind"),
        elf.obj.find_section(".orc_unwind_ip"),
    ) else {
        return Ok(());
    };
    let Some(iprela) = elf.s(ip).rela else {
        return Ok(());
    };
    if !elf.s(orc).size.is_multiple_of(entry) {
        return Err(fatal("bad .orc_unwind size"));
    }
    if elf.s(ip).size != elf.s(orc).size / entry * ORC_IP_SIZE {
        return Err(fatal(".orc_unwind/.orc_unwind_ip size mismatch"));
    }
    let src = elf.s(orc).data.clone();
    let mut dest = Vec::new();
    let mut new_relas = Vec::new();
    let relas = elf.relas(iprela).to_vec();
    for (src_idx, r) in relas.into_iter().enumerate() {
        let s = elf.y(r.sym);
        let keep = s.kind == STT_FUNC && s.sec.map(|x| elf.sec[x].include).unwrap_or(false);
        if !keep {
            continue;
        }
        let start = src_idx as u64 * entry;
        let chunk = src
            .get(start as usize..(start + entry) as usize)
            .ok_or_else(|| fatal(".orc_unwind_ip has more entries than .orc_unwind"))?;
        let dest_idx = new_relas.len() as u64;
        dest.extend_from_slice(chunk);
        elf.sym[r.sym].include = true;
        let mut nr = r;
        nr.offset = dest_idx * ORC_IP_SIZE;
        new_relas.push(nr);
    }
    if new_relas.is_empty() {
        for id in [orc, ip, iprela] {
            elf.sec[id].status = Status::Same;
            elf.sec[id].include = false;
        }
        return Ok(());
    }
    let n = new_relas.len() as u64;
    elf.obj.sec_mut(iprela).relas = new_relas;
    elf.sec[iprela].rela_strings.clear();
    for id in [orc, ip, iprela] {
        elf.sec[id].include = true;
    }
    elf.obj.sec_mut(orc).set_data(dest);
    let mut ipdata = elf.s(ip).data.clone();
    ipdata.truncate((n * ORC_IP_SIZE) as usize);
    elf.obj.sec_mut(ip).set_data(ipdata);
    Ok(())
}

/// Regenerate every special section, then `.altinstr_replacement` and ORC.
pub fn process_special_sections(elf: &mut Elf, lookup: &Lookup, sizes: &StructSizes) -> Result<()> {
    let mut ctx = Ctx {
        lookup,
        sizes,
        ex_stash: HashMap::new(),
        errors: Vec::new(),
    };
    let mut altinstr = false;
    for special in elf.arch.special_sections() {
        let Some(sec) = elf.obj.find_section(special.name) else {
            continue;
        };
        let Some(relasec) = elf.s(sec).rela else {
            continue;
        };
        regenerate(elf, &mut ctx, special, relasec)?;
        if special.name == ".altinstructions" && elf.sec[sec].include {
            altinstr = true;
        }
    }
    if altinstr {
        if let Some(sec) = elf.obj.find_section(".altinstr_replacement") {
            elf.sec[sec].include = true;
            for id in elf.symbols() {
                if elf.y(id).sec == Some(sec) {
                    elf.sym[id].include = true;
                }
            }
            if let Some(rs) = elf.s(sec).rela {
                elf.sec[rs].include = true;
                for i in 0..elf.relas(rs).len() {
                    let sym = elf.relas(rs)[i].sym;
                    include_symbol(elf, sym);
                }
            }
        }
    }
    regenerate_orc(elf, sizes)
}

/// Is `name` a special section on this architecture?
pub fn is_special_section(elf: &Elf, name: &str) -> bool {
    elf.arch.special_sections().iter().any(|s| s.name == name)
}
