//! Turn the differ's intermediate klp records into the kernel's livepatch ELF format,
//! in a linked patch module:
//!
//! - every `.kpatch.relocations` entry becomes a relocation in
//!   `.klp.rela.<object>.<section>` (flags `SHF_RELA_LIVEPATCH|SHF_ALLOC|SHF_INFO_LINK`),
//!   applied by the livepatch core once `<object>` is loaded;
//! - its target symbol becomes `.klp.sym.<object>.<name>,<sympos>` with
//!   `st_shndx = SHN_LIVEPATCH`, resolved by the livepatch core through kallsyms;
//! - `.kpatch.relocations`, `.kpatch.symbols` and their relocation sections are removed.

use std::collections::HashMap;
use std::path::Path;

use kelf::consts::*;
use kelf::{Object, Rela, Section, SectionId, Symbol, SymbolId};

use crate::{Error, Result};

pub use kelf::SHF_RELA_LIVEPATCH;
/// `st_shndx` of a symbol the livepatch core resolves when its object is loaded.
pub const SHN_LIVEPATCH: u16 = 0xff20;
const KSYM_SIZE: u64 = 40;
const KRELA_SIZE: u64 = 40;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
/// What a conversion made.
pub struct Stats {
    /// Relocations written to `.klp.rela.*` sections.
    pub klp_relocations: usize,
    /// Distinct `.klp.sym.*` symbols.
    pub klp_symbols: usize,
    /// The `.klp.rela.*` sections, in the order they were made.
    pub klp_sections: Vec<String>,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Format(msg.into())
}

struct View<'a> {
    obj: &'a Object,
    strings: SectionId,
}

impl View<'_> {
    /// The relocation at `offset` in the relocation section of `sec`.
    fn rela_at(&self, sec: SectionId, offset: u64) -> Result<&Rela> {
        let rs = self
            .obj
            .sec(sec)
            .rela
            .ok_or_else(|| err(format!("{} has no relocations", self.obj.sec(sec).name)))?;
        self.obj
            .sec(rs)
            .relas
            .iter()
            .find(|r| r.offset == offset)
            .ok_or_else(|| {
                err(format!(
                    "{}: no relocation at offset {offset:#x}",
                    self.obj.sec(sec).name
                ))
            })
    }

    /// Section and offset a relocation designates.
    fn target(&self, r: &Rela) -> Result<(SectionId, u64)> {
        let s = self.obj.sym(r.sym);
        let sec = s
            .sec
            .ok_or_else(|| err(format!("relocation against undefined symbol {}", s.name)))?;
        let off = s.value as i64 + r.addend;
        if off < 0 {
            return Err(err(format!(
                "negative offset into {}",
                self.obj.sec(sec).name
            )));
        }
        Ok((sec, off as u64))
    }

    fn string(&self, sec: SectionId, offset: u64) -> Result<String> {
        let r = self.rela_at(sec, offset)?;
        let (tsec, off) = self.target(r)?;
        if tsec != self.strings {
            return Err(err("string pointer outside .kpatch.strings"));
        }
        let data = &self.obj.sec(tsec).data;
        let rest = data
            .get(off as usize..)
            .ok_or_else(|| err("string offset out of range"))?;
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| err("unterminated string"))?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn field(&self, sec: SectionId, offset: u64, width: usize) -> Result<u64> {
        let d = &self.obj.sec(sec).data;
        let b = d
            .get(offset as usize..offset as usize + width)
            .ok_or_else(|| err("record out of range"))?;
        Ok(self.obj.read_uint(b))
    }
}

struct KlpReloc {
    dest_sec: SectionId,
    dest_off: u64,
    r_type: u32,
    addend: i64,
    objname: String,
    sym_name: String,
    sympos: u64,
    bind: u8,
    kind: u8,
}

fn read_records(
    obj: &Object,
    krela: SectionId,
    ksym: SectionId,
    strings: SectionId,
) -> Result<Vec<KlpReloc>> {
    let v = View { obj, strings };
    let size = obj.sec(krela).size;
    if !size.is_multiple_of(KRELA_SIZE) {
        return Err(err(
            ".kpatch.relocations size is not a multiple of the record size",
        ));
    }
    let mut out = Vec::new();
    for i in 0..size / KRELA_SIZE {
        let base = i * KRELA_SIZE;
        let (dest_sec, dest_off) = v.target(v.rela_at(krela, base)?)?;
        let r_type = v.field(krela, base + 8, 4)? as u32;
        let addend = v.field(krela, base + 16, 8)? as i64;
        // The record's own object name (+24) is the patched object; the relocation
        // belongs to the object whose symbol it resolves, the one `.kpatch.symbols`
        // names: the kernel applies `.klp.rela.<obj>.*` when <obj> is loaded.
        let (ks, ksoff) = v.target(v.rela_at(krela, base + 32)?)?;
        if ks != ksym || ksoff % KSYM_SIZE != 0 {
            return Err(err(
                "relocation record does not point at a .kpatch.symbols record",
            ));
        }
        let sympos = v.field(ksym, ksoff + 8, 8)?;
        let bind = v.field(ksym, ksoff + 16, 1)? as u8;
        let kind = v.field(ksym, ksoff + 17, 1)? as u8;
        let sym_name = v.string(ksym, ksoff + 24)?;
        let sym_obj = v.string(ksym, ksoff + 32)?;
        out.push(KlpReloc {
            dest_sec,
            dest_off,
            r_type,
            addend,
            objname: sym_obj,
            sym_name,
            sympos,
            bind,
            kind,
        });
    }
    Ok(out)
}

/// Convert a linked patch module in place.
pub fn convert(obj: &mut Object) -> Result<Stats> {
    let mut stats = Stats::default();
    let krela = obj.find_section(".kpatch.relocations");
    let ksym = obj.find_section(".kpatch.symbols");
    let records = match (krela, ksym, obj.find_section(".kpatch.strings")) {
        (Some(kr), Some(ks), Some(st)) => read_records(obj, kr, ks, st)?,
        (None, None, _) => Vec::new(),
        _ => return Err(err("incomplete klp metadata: need .kpatch.relocations, .kpatch.symbols and .kpatch.strings")),
    };

    // Placeholders the differ left for the module link (undefined `.klp.sym.*`).
    let mut sym_ids: HashMap<String, SymbolId> = HashMap::new();
    for id in obj.symbol_ids() {
        let s = obj.sym(id);
        if s.name.starts_with(".klp.sym.") && s.sec.is_none() {
            sym_ids.insert(s.name.clone(), id);
        }
    }
    let mut converted: std::collections::HashSet<SymbolId> = Default::default();
    let mut relasecs: HashMap<String, SectionId> = HashMap::new();
    for rec in &records {
        let name = format!(".klp.sym.{}.{},{}", rec.objname, rec.sym_name, rec.sympos);
        let sym = match sym_ids.get(&name) {
            Some(s) => *s,
            None => {
                let id = obj.add_symbol(Symbol::new(name.clone(), rec.bind, rec.kind));
                sym_ids.insert(name, id);
                id
            }
        };
        if converted.insert(sym) {
            let s = obj.sym_mut(sym);
            s.shndx = SHN_LIVEPATCH;
            s.bind = rec.bind;
            s.kind = rec.kind;
            stats.klp_symbols += 1;
        }
        // The placeholder relocation, if the differ left one, leaves the normal section.
        if let Some(rs) = obj.sec(rec.dest_sec).rela {
            let relas = &mut obj.sec_mut(rs).relas;
            if let Some(pos) = relas
                .iter()
                .position(|r| r.offset == rec.dest_off && r.sym == sym)
            {
                relas.remove(pos);
            }
        }
        let dest_name = obj.sec(rec.dest_sec).name.clone();
        let sec_name = format!(".klp.rela.{}.{}", rec.objname, dest_name);
        let rs = match relasecs.get(&sec_name) {
            Some(s) => *s,
            None => {
                let mut s = Section::new(
                    sec_name.clone(),
                    SHT_RELA,
                    SHF_RELA_LIVEPATCH | u64::from(SHF_ALLOC) | u64::from(SHF_INFO_LINK),
                );
                s.sh_addralign = 8;
                s.sh_entsize = 24;
                s.base = Some(rec.dest_sec);
                let id = obj.add_section(s);
                relasecs.insert(sec_name.clone(), id);
                stats.klp_sections.push(sec_name);
                id
            }
        };
        obj.sec_mut(rs).relas.push(Rela {
            offset: rec.dest_off,
            r_type: rec.r_type,
            sym,
            addend: rec.addend,
        });
        stats.klp_relocations += 1;
    }

    // Drop the intermediate records (and their relocation sections and section symbols).
    let drop: Vec<SectionId> = [krela, ksym].into_iter().flatten().collect();
    let mut drop_all = drop.clone();
    for d in &drop {
        if let Some(r) = obj.sec(*d).rela {
            drop_all.push(r);
        }
    }
    obj.retain_sections(|id, _| !drop_all.contains(&id))
        .map_err(|e| err(e.to_string()))?;
    obj.sort_symbols_locals_first()
        .map_err(|e| err(e.to_string()))?;
    Ok(stats)
}

/// Convert a module file: read `input`, write `output` (atomically).
pub fn convert_file(input: impl AsRef<Path>, output: impl AsRef<Path>) -> Result<Stats> {
    let (input, output) = (input.as_ref(), output.as_ref());
    let mut obj = kelf::read::read_file(input).map_err(elf_error(input))?;
    let stats = convert(&mut obj)?;
    kelf::write::write_object(&obj, output).map_err(elf_error(output))?;
    Ok(stats)
}

/// A kelf error on `path`: I/O errors already name it, the others get its name.
fn elf_error(path: &Path) -> impl FnOnce(kelf::Error) -> Error + '_ {
    move |e| match e {
        kelf::Error::Io(e) => Error::Io(e),
        e => err(format!("{}: {e}", path.display())),
    }
}
