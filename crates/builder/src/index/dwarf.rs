//! What one binary (the debug vmlinux or a debug module) was built from: the name and
//! directory of each DWARF compile unit, and the source files its line table lists.
//!
//! Only the compile units' first DIE and the line programs' headers are read. A module is
//! a relocatable object: its `.debug_info` and `.debug_line` hold offsets into the string
//! sections only once their relocations are applied, so those sections are relocated here.

use std::borrow::Cow;

use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationTarget};

use crate::error::{step, Result};

/// One compile unit: its source and the other files its line table names, as written in
/// the DWARF (`name` relative to `comp_dir` or absolute).
#[derive(Debug, Clone, Default)]
pub struct RawUnit {
    /// `DW_AT_name`.
    pub name: String,
    /// `DW_AT_comp_dir`.
    pub comp_dir: String,
    /// Files of the line table: (directory entry, file name) as written.
    pub files: Vec<(String, String)>,
}

/// Sections the unit headers and line headers need; the rest are left empty.
const NEEDED: &[gimli::SectionId] = &[
    gimli::SectionId::DebugInfo,
    gimli::SectionId::DebugAbbrev,
    gimli::SectionId::DebugLine,
    gimli::SectionId::DebugStr,
    gimli::SectionId::DebugLineStr,
    gimli::SectionId::DebugStrOffsets,
];

/// Compile units of an ELF file's DWARF.
pub fn units(data: &[u8]) -> Result<Vec<RawUnit>> {
    let file = object::File::parse(data).map_err(|e| step(format!("not an ELF file: {e}")))?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let relocatable = file.kind() == object::ObjectKind::Relocatable;
    let load = |id: gimli::SectionId| -> std::result::Result<Cow<[u8]>, gimli::Error> {
        if !NEEDED.contains(&id) {
            return Ok(Cow::Borrowed(&[]));
        }
        let Some(sec) = file.section_by_name(id.name()) else {
            return Ok(Cow::Borrowed(&[]));
        };
        let data = sec.uncompressed_data().unwrap_or_default();
        Ok(if relocatable {
            Cow::Owned(relocate(&file, &sec, data.into_owned()))
        } else {
            data
        })
    };
    let sections =
        gimli::DwarfSections::load(load).map_err(|e: gimli::Error| step(format!("DWARF: {e}")))?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    loop {
        let h = match headers.next() {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => return Err(step(format!("DWARF unit header: {e}"))),
        };
        let unit = dwarf
            .unit(h)
            .map_err(|e| step(format!("DWARF unit at {:?}: {e}", h.offset())))?;
        let text = |s: Option<gimli::EndianSlice<'_, gimli::RunTimeEndian>>| {
            s.map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut raw = RawUnit {
            name: text(unit.name),
            comp_dir: text(unit.comp_dir),
            files: Vec::new(),
        };
        if let Some(lp) = &unit.line_program {
            let header = lp.header();
            for file in header.file_names() {
                let name = dwarf
                    .attr_string(&unit, file.path_name())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let dir = file
                    .directory(header)
                    .and_then(|d| dwarf.attr_string(&unit, d).ok())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                raw.files.push((dir, name));
            }
        }
        out.push(raw);
    }
    Ok(out)
}

/// Section contents with their RELA relocations applied (absolute 32- and 64-bit ones,
/// which are all that DWARF sections use).
fn relocate(file: &object::File, sec: &object::Section, mut data: Vec<u8>) -> Vec<u8> {
    let symtab = file.symbol_table();
    let little = file.is_little_endian();
    for (off, r) in sec.relocations() {
        let RelocationTarget::Symbol(si) = r.target() else {
            continue;
        };
        let value = symtab
            .as_ref()
            .and_then(|t| t.symbol_by_index(si).ok())
            .map(|s| s.address())
            .unwrap_or(0);
        let v = value.wrapping_add(r.addend() as u64);
        let Ok(at) = usize::try_from(off) else {
            continue;
        };
        match r.size() {
            32 if at + 4 <= data.len() => {
                let b = if little {
                    (v as u32).to_le_bytes()
                } else {
                    (v as u32).to_be_bytes()
                };
                data[at..at + 4].copy_from_slice(&b);
            }
            64 if at + 8 <= data.len() => {
                let b = if little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                data[at..at + 8].copy_from_slice(&b);
            }
            _ => {}
        }
    }
    data
}
