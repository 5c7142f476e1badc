//! An object's `.debug_*` sections with their relocations applied.
//!
//! In a relocatable object every reference from `.debug_info` or `.debug_line` to a
//! string, an abbreviation table or a code address is a relocation. References into
//! other debug sections become offsets in those sections; references to code or data
//! become *synthetic addresses* ([`address`]): the section id in the high 32 bits and
//! the offset in the low 32 bits, so that every function section of an
//! `-ffunction-sections` object gets its own address range.

use kelf::consts::SHF_COMPRESSED;
use kelf::{Object, SectionId};

use crate::Error;

/// The reader every other module uses.
pub type R<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// The gimli view of an object's DWARF.
pub type Dwarf<'a> = gimli::Dwarf<R<'a>>;

/// The synthetic address of `offset` in section `sec`.
pub fn address(sec: SectionId, offset: u64) -> u64 {
    ((u64::from(sec.0) + 1) << 32) | (offset & 0xffff_ffff)
}

/// The (section, offset) a synthetic address designates.
pub fn split(addr: u64) -> Option<(SectionId, u64)> {
    let hi = addr >> 32;
    (hi != 0).then(|| (SectionId((hi - 1) as u32), addr & 0xffff_ffff))
}

/// Byte width of an absolute relocation type of the object's architecture (the only kind
/// DWARF uses), `None` for anything else.
pub type RelocWidth<'a> = &'a dyn Fn(u32) -> Option<usize>;

/// The relocated DWARF sections of one object.
pub struct Sections {
    sections: gimli::DwarfSections<Vec<u8>>,
    endian: gimli::RunTimeEndian,
}

impl Sections {
    /// `Ok(None)` when the object has no `.debug_info` (built without `-g`, or stripped).
    pub fn load(obj: &Object, width: RelocWidth) -> Result<Option<Sections>, Error> {
        let Some(info) = obj.find_section(".debug_info") else {
            return Ok(None);
        };
        if obj.sec(info).data.is_empty() {
            return Ok(None);
        }
        let endian = if obj.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let sections = gimli::DwarfSections::load(|id| -> Result<Vec<u8>, Error> {
            match obj.find_section(id.name()) {
                Some(sec) => relocated(obj, sec, width),
                None => Ok(Vec::new()),
            }
        })?;
        Ok(Some(Sections { sections, endian }))
    }

    /// A gimli view of the sections.
    pub fn dwarf(&self) -> Dwarf<'_> {
        self.sections
            .borrow(|data| gimli::EndianSlice::new(data.as_slice(), self.endian))
    }
}

/// A section's contents with its relocations applied.
fn relocated(obj: &Object, id: SectionId, width: RelocWidth) -> Result<Vec<u8>, Error> {
    let sec = obj.sec(id);
    if sec.sh_flags & u64::from(SHF_COMPRESSED) != 0 {
        return Err(Error(format!(
            "{} is compressed (CONFIG_DEBUG_INFO_COMPRESSED), which is not supported",
            sec.name
        )));
    }
    let mut data = sec.data.clone();
    let Some(rela) = sec.rela else {
        return Ok(data);
    };
    let big = !obj.is_little_endian();
    for r in &obj.sec(rela).relas {
        let Some(w) = width(r.r_type) else { continue };
        let sym = obj.sym(r.sym);
        let value = match sym.sec {
            Some(s) if obj.sec(s).name.starts_with(".debug") => {
                sym.value.wrapping_add(r.addend as u64)
            }
            Some(s) => address(s, sym.value.wrapping_add(r.addend as u64)),
            None => r.addend as u64,
        };
        let at = r.offset as usize;
        let Some(field) = data.get_mut(at..at.saturating_add(w)) else {
            return Err(Error(format!(
                "{}: relocation at {:#x} is outside the section",
                sec.name, r.offset
            )));
        };
        match (w, big) {
            (4, false) => field.copy_from_slice(&(value as u32).to_le_bytes()),
            (4, true) => field.copy_from_slice(&(value as u32).to_be_bytes()),
            (8, false) => field.copy_from_slice(&value.to_le_bytes()),
            (8, true) => field.copy_from_slice(&value.to_be_bytes()),
            _ => {}
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_addresses_round_trip() {
        let a = address(SectionId(7), 0x1234);
        assert_eq!(split(a), Some((SectionId(7), 0x1234)));
        assert_eq!(split(0x10), None);
        assert!(address(SectionId(0), 0) > 0);
    }
}
