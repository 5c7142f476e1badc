//! Every successful fixture's output also goes through `klp::convert` (what
//! `create-klp-module` does to the linked module): each `.kpatch.relocations` record must
//! come out as one relocation in `.klp.rela.<object>.<section>` at the record's offset,
//! with its type and addend, against the `SHN_LIVEPATCH` symbol
//! `.klp.sym.<object>.<name>,<sympos>` of its `.kpatch.symbols` entry.

use std::collections::BTreeSet;
use std::path::Path;

use kelf::{Object, SectionId};

use super::tools::Inspect;

/// One expected klp relocation: (section, offset, type, symbol, addend).
type Entry = (String, u64, u32, String, i64);

/// Where the relocation at `offset` of `sec` points: (section, offset).
fn target(obj: &Object, sec: SectionId, offset: u64) -> Result<(SectionId, u64), String> {
    let name = &obj.sec(sec).name;
    let rs = obj
        .sec(sec)
        .rela
        .ok_or(format!("{name} has no relocations"))?;
    let r = obj.sec(rs).relas.iter().find(|r| r.offset == offset);
    let r = r.ok_or(format!("{name}+{offset:#x}: no relocation"))?;
    let s = obj.sym(r.sym);
    let at = s
        .sec
        .ok_or(format!("{name}+{offset:#x}: undefined target"))?;
    Ok((at, (s.value as i64 + r.addend) as u64))
}

fn string(obj: &Object, sec: SectionId, offset: u64) -> Result<String, String> {
    let (s, off) = target(obj, sec, offset)?;
    let bytes = obj.sec(s).data.get(off as usize..).unwrap_or_default();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

fn field(obj: &Object, sec: SectionId, offset: u64, width: usize) -> u64 {
    let at = offset as usize;
    obj.read_uint(&obj.sec(sec).data[at..at + width])
}

/// The klp relocations the differ's records ask for.
fn expected(obj: &Object) -> Result<BTreeSet<Entry>, String> {
    let mut want = BTreeSet::new();
    let Some(krela) = obj.find_section(".kpatch.relocations") else {
        return Ok(want);
    };
    for base in (0..obj.sec(krela).size).step_by(40) {
        let (dest, dest_off) = target(obj, krela, base)?;
        let r_type = field(obj, krela, base + 8, 4) as u32;
        let addend = field(obj, krela, base + 16, 8) as i64;
        let (ksym, k) = target(obj, krela, base + 32)?;
        let sympos = field(obj, ksym, k + 8, 8);
        let (name, objname) = (string(obj, ksym, k + 24)?, string(obj, ksym, k + 32)?);
        want.insert((
            format!(".klp.rela.{objname}.{}", obj.sec(dest).name),
            dest_off,
            r_type,
            format!(".klp.sym.{objname}.{name},{sympos}"),
            addend,
        ));
    }
    Ok(want)
}

/// Converts `output` and checks the result; returns what is wrong.
pub fn check_conversion(output: &Path) -> Result<Vec<String>, String> {
    let mut obj = kelf::read::read_file(output).map_err(|e| e.to_string())?;
    let want = expected(&obj)?;
    let stats = klp::convert::convert(&mut obj).map_err(|e| format!("klp conversion: {e}"))?;
    let converted = output.with_extension("klp.o");
    kelf::write::write_object(&obj, &converted).map_err(|e| e.to_string())?;
    let obj = kelf::read::read_file(&converted).map_err(|e| format!("converted: {e}"))?;
    let mut errs = Vec::new();
    let mut got = BTreeSet::new();
    for s in obj
        .sections
        .iter()
        .filter(|s| s.name.starts_with(".klp.rela."))
    {
        if s.sh_flags & kelf::SHF_RELA_LIVEPATCH == 0 || !s.is_rela() {
            errs.push(format!("{}: not a livepatch relocation section", s.name));
        }
        for r in &s.relas {
            let sym = obj.sym(r.sym);
            if sym.shndx != klp::convert::SHN_LIVEPATCH || sym.sec.is_some() {
                errs.push(format!(
                    "{}: st_shndx {:#x}, not SHN_LIVEPATCH",
                    sym.name, sym.shndx
                ));
            }
            got.insert((
                s.name.clone(),
                r.offset,
                r.r_type,
                sym.name.clone(),
                r.addend,
            ));
        }
    }
    if got != want {
        errs.push(format!(
            "klp relocations after conversion:\n  got      {got:?}\n  expected {want:?}"
        ));
    }
    if stats.klp_relocations != want.len() {
        errs.push(format!(
            "klp conversion reports {} relocations for {} records",
            stats.klp_relocations,
            want.len()
        ));
    }
    for gone in [".kpatch.relocations", ".kpatch.symbols"] {
        if obj.find_section(gone).is_some() {
            errs.push(format!("{gone} left in the converted module"));
        }
    }
    let warnings = Inspect::new(&converted)?.readelf_warnings;
    if !warnings.is_empty() {
        errs.push(format!(
            "readelf complains about the converted module:\n{warnings}"
        ));
    }
    Ok(errs)
}
