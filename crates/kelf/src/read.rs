//! Reading an ELF relocatable object into the [`Object`] model.

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::Endianness;
use std::path::Path;

use crate::{
    malformed, Error, Header, Id, IdVec, Object, Rela, Result, Section, SectionId, Symbol, SymbolId,
};

/// Upper bound for a section's size: nothing in a kernel object comes close.
const MAX_SECTION_SIZE: u64 = 1 << 32;

/// Upper bound for a section's alignment (a 2 MiB huge page); the writer pads to it.
const MAX_SECTION_ALIGN: u64 = 1 << 21;

/// Read and parse a file.
pub fn read_file(path: impl AsRef<Path>) -> Result<Object> {
    let path = path.as_ref();
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&data)
}

/// Parse a 64-bit ELF relocatable object (or, with [`parse_any`], any ELF file's tables).
pub fn parse(data: &[u8]) -> Result<Object> {
    let obj = parse_any(data)?;
    if obj.header.e_type != elf::ET_REL {
        return Err(Error::Unsupported(format!(
            "ELF type {} is not a relocatable object (ET_REL)",
            obj.header.e_type
        )));
    }
    Ok(obj)
}

/// Parse any 64-bit ELF file (relocatable, executable or shared) into the model.
pub fn parse_any(data: &[u8]) -> Result<Object> {
    // `object` reads the tables in place and wants them aligned: copy a misaligned buffer.
    if data.as_ptr().align_offset(8) != 0 {
        let mut buf = vec![0u64; data.len().div_ceil(8)];
        let bytes = object::pod::bytes_of_slice_mut(&mut buf);
        bytes[..data.len()].copy_from_slice(data);
        return parse_aligned(&bytes[..data.len()]);
    }
    parse_aligned(data)
}

/// The parsed file header and section table, shared by the steps below.
struct Input<'d> {
    data: &'d [u8],
    endian: Endianness,
    table: object::read::elf::SectionTable<'d, elf::FileHeader64<Endianness>>,
}

impl Input<'_> {
    /// The section id of file index `index` (index 0 and out-of-range indices: none).
    fn sec_id(&self, index: u32) -> Option<SectionId> {
        if index == 0 || index as usize >= self.table.len() {
            None
        } else {
            Some(SectionId(index - 1))
        }
    }
}

fn parse_aligned(data: &[u8]) -> Result<Object> {
    let (header, input) = parse_header(data)?;
    let mut sections = read_sections(&input)?;
    let symtab = sections.position(|s| s.sh_type == elf::SHT_SYMTAB);
    let symbols = read_symbols(&input, &mut sections, symtab)?;
    let relocatable = header.e_type == elf::ET_REL;
    if relocatable {
        check_symbol_ranges(&sections, &symbols)?;
    }
    // MIPS64 little-endian splits r_info differently (the writer does the same).
    let mips64el = header.e_machine == elf::EM_MIPS && input.endian == Endianness::Little;
    let links = Links {
        nsyms: symbols.len() as u32,
        symtab_index: symtab.map(|s| s.0 + 1),
        relocatable,
        mips64el,
    };
    for id in sections.ids() {
        link_section(&input, &links, &mut sections, id)?;
    }
    Ok(Object {
        header,
        sections,
        symbols,
    })
}

/// The file header, checked, and the section table it locates.
fn parse_header(data: &[u8]) -> Result<(Header, Input<'_>)> {
    if data.len() < 16 || &data[..4] != b"\x7fELF" {
        return Err(malformed("not an ELF file (bad magic)"));
    }
    if data[4] != elf::ELFCLASS64 {
        return Err(Error::Unsupported(
            "only 64-bit ELF objects are supported".into(),
        ));
    }
    let fh = elf::FileHeader64::<Endianness>::parse(data)
        .map_err(|e| malformed(format!("file header: {e}")))?;
    let endian = fh
        .endian()
        .map_err(|e| malformed(format!("file header: {e}")))?;
    let mut ident = [0u8; 16];
    ident.copy_from_slice(&data[..16]);
    let header = Header {
        endian,
        ident,
        e_type: fh.e_type.get(endian),
        e_machine: fh.e_machine.get(endian),
        e_version: fh.e_version.get(endian),
        e_entry: fh.e_entry.get(endian),
        e_phoff: fh.e_phoff.get(endian),
        e_flags: fh.e_flags.get(endian),
        e_ehsize: fh.e_ehsize.get(endian),
        e_phentsize: fh.e_phentsize.get(endian),
        e_phnum: fh.e_phnum.get(endian),
        e_shentsize: fh.e_shentsize.get(endian),
    };
    if usize::from(header.e_shentsize) != std::mem::size_of::<elf::SectionHeader64<Endianness>>()
        && fh.e_shoff.get(endian) != 0
    {
        return Err(malformed(format!(
            "section header entry size {} is not 64",
            header.e_shentsize
        )));
    }
    let (shoff, shnum) = (fh.e_shoff.get(endian), u64::from(fh.e_shnum.get(endian)));
    if !matches!(shoff.checked_add(shnum * 64), Some(end) if end <= data.len() as u64) {
        return Err(malformed(format!(
            "section headers ({shnum} at offset {shoff:#x}) extend past the end of the file \
             ({:#x} bytes): truncated?",
            data.len()
        )));
    }
    let table = fh
        .sections(endian, data)
        .map_err(|e| malformed(format!("section table: {e}")))?;
    Ok((
        header,
        Input {
            data,
            endian,
            table,
        },
    ))
}

/// Every section but the null one (`SectionId(i)` is file index `i + 1`), with its
/// contents; sizes and alignments checked, links left raw.
fn read_sections(input: &Input<'_>) -> Result<IdVec<SectionId, Section>> {
    let endian = input.endian;
    let mut sections = IdVec::with_capacity(input.table.len().saturating_sub(1));
    for (i, sh) in input.table.iter().enumerate().skip(1) {
        let name_bytes = input
            .table
            .section_name(endian, sh)
            .map_err(|_| malformed(format!("section {i}: name offset out of range")))?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let sh_type = sh.sh_type(endian);
        let size = sh.sh_size(endian);
        let align = sh.sh_addralign(endian);
        if align > 1 && !align.is_power_of_two() {
            return Err(malformed(format!(
                "section {name}: alignment {align} is not a power of two"
            )));
        }
        if align > MAX_SECTION_ALIGN {
            return Err(malformed(format!(
                "section {name}: absurd alignment {align:#x}"
            )));
        }
        if size > MAX_SECTION_SIZE {
            return Err(malformed(format!("section {name}: absurd size {size:#x}")));
        }
        let data_bytes = if sh_type == elf::SHT_NOBITS || sh_type == elf::SHT_NULL {
            Vec::new()
        } else {
            sh.data(endian, input.data)
                .map_err(|_| malformed(format!("section {name}: contents lie outside the file")))?
                .to_vec()
        };
        let mut sec = Section::new(name, sh_type, sh.sh_flags(endian));
        sec.sh_addr = sh.sh_addr(endian);
        sec.sh_addralign = align;
        sec.sh_entsize = sh.sh_entsize(endian);
        sec.size = size;
        sec.data = data_bytes;
        sec.index = i as u32;
        sec.raw_link = sh.sh_link(endian);
        sec.raw_info = sh.sh_info(endian);
        sections.push(sec);
    }
    Ok(sections)
}

/// The symbol table (just the null symbol when there is none). Section symbols take
/// their section's name and become its `secsym`.
fn read_symbols(
    input: &Input<'_>,
    sections: &mut IdVec<SectionId, Section>,
    symtab: Option<SectionId>,
) -> Result<IdVec<SymbolId, Symbol>> {
    let endian = input.endian;
    let mut symbols: IdVec<SymbolId, Symbol> = IdVec::new();
    if let Some(st) = symtab {
        let entsize = std::mem::size_of::<elf::Sym64<Endianness>>() as u64;
        if sections[st].sh_entsize != entsize {
            return Err(malformed(format!(
                ".symtab: entry size {} is not {entsize}",
                sections[st].sh_entsize
            )));
        }
        let table = input
            .table
            .symbols(endian, input.data, elf::SHT_SYMTAB)
            .map_err(|e| malformed(format!(".symtab: {e}")))?;
        let strings = table.strings();
        for (i, s) in table.iter().enumerate() {
            if i == 0 && is_null_entry(s) {
                symbols.push(Symbol::new("", 0, 0));
                continue;
            } else if i == 0 {
                return Err(malformed(".symtab: entry 0 is not the null symbol"));
            }
            let name = String::from_utf8_lossy(
                s.name(endian, strings)
                    .map_err(|_| malformed(format!("symbol {i}: name offset out of range")))?,
            )
            .into_owned();
            let raw_shndx = s.st_shndx(endian);
            let shndx_full = table
                .symbol_section(endian, s, object::SymbolIndex(i))
                .map_err(|e| malformed(format!("symbol {name}: {e}")))?;
            let sec = match shndx_full {
                Some(idx) => Some(input.sec_id(idx.0 as u32).ok_or_else(|| {
                    malformed(format!(
                        "symbol {name}: section index {} out of range",
                        idx.0
                    ))
                })?),
                None => None,
            };
            symbols.push(Symbol {
                name,
                bind: s.st_bind(),
                kind: s.st_type(),
                other: s.st_other(),
                // SHN_XINDEX naming no section (extended index 0): undefined, as
                // there is no other way to write it back.
                shndx: if raw_shndx == elf::SHN_XINDEX && sec.is_none() {
                    elf::SHN_UNDEF
                } else {
                    raw_shndx
                },
                value: s.st_value(endian),
                size: s.st_size(endian),
                sec,
                index: i as u32,
            });
        }
    }
    if symbols.is_empty() {
        symbols.push(Symbol::new("", 0, 0));
    }
    for id in symbols.ids() {
        let s = &mut symbols[id];
        if s.kind != elf::STT_SECTION {
            continue;
        }
        if let Some(sec) = s.sec {
            s.name = sections[sec].name.clone();
            sections[sec].secsym.get_or_insert(id);
        }
    }
    Ok(symbols)
}

/// In a relocatable object a symbol's value is an offset into its section: the symbol
/// must lie inside it, and section symbols sit at 0 with size 0.
fn check_symbol_ranges(
    sections: &IdVec<SectionId, Section>,
    symbols: &IdVec<SymbolId, Symbol>,
) -> Result<()> {
    for s in symbols {
        let Some(sec) = s.sec else { continue };
        let sec = &sections[sec];
        if s.kind == elf::STT_SECTION && (s.value != 0 || s.size != 0) {
            return Err(malformed(format!(
                "section symbol of {}: value {:#x}, size {:#x} (not 0)",
                sec.name, s.value, s.size
            )));
        }
        if !matches!(s.value.checked_add(s.size), Some(end) if end <= sec.size) {
            return Err(malformed(format!(
                "symbol {}: {:#x}+{:#x} lies outside section {} ({:#x} bytes)",
                s.name, s.value, s.size, sec.name, sec.size
            )));
        }
    }
    Ok(())
}

/// What [`link_section`] needs to know about the rest of the file.
struct Links {
    nsyms: u32,
    /// File index of `.symtab`.
    symtab_index: Option<u32>,
    relocatable: bool,
    mips64el: bool,
}

/// Resolve one section's `sh_link`/`sh_info` into ids: `SHF_LINK_ORDER` links, group
/// signatures and members, and a relocation section's target and entries.
fn link_section(
    input: &Input<'_>,
    links: &Links,
    sections: &mut IdVec<SectionId, Section>,
    id: SectionId,
) -> Result<()> {
    let sec = &sections[id];
    let (sh_type, raw_link) = (sec.sh_type, sec.raw_link);
    if sec.sh_flags & u64::from(elf::SHF_LINK_ORDER) != 0 {
        if raw_link as usize >= input.table.len() {
            return Err(malformed(format!(
                "section {}: linked section {raw_link} out of range",
                sec.name
            )));
        }
        sections[id].link_sec = input.sec_id(raw_link);
    }
    match sh_type {
        elf::SHT_GROUP => check_group(input, links, &mut sections[id]),
        elf::SHT_REL => Err(Error::Unsupported(format!(
            "section {}: SHT_REL relocations",
            sections[id].name
        ))),
        elf::SHT_RELA => read_relas(input, links, sections, id),
        _ => Ok(()),
    }
}

/// A group's signature symbol and member sections must exist.
fn check_group(input: &Input<'_>, links: &Links, sec: &mut Section) -> Result<()> {
    if sec.raw_info >= links.nsyms {
        return Err(malformed(format!(
            "group {}: signature symbol {} out of range",
            sec.name, sec.raw_info
        )));
    }
    sec.info_sym = Some(SymbolId(sec.raw_info));
    if !sec.data.len().is_multiple_of(4) {
        return Err(malformed(format!(
            "group {}: size is not a multiple of 4",
            sec.name
        )));
    }
    for c in sec.data.chunks_exact(4).skip(1) {
        let a = [c[0], c[1], c[2], c[3]];
        let w = if input.endian == Endianness::Little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        };
        if input.sec_id(w).is_none() {
            return Err(malformed(format!(
                "group {}: member section {w} out of range",
                sec.name
            )));
        }
    }
    Ok(())
}

/// A relocation section: its target section (which must have contents and no other
/// relocation section) and its entries, whose symbols and offsets must be in range.
fn read_relas(
    input: &Input<'_>,
    links: &Links,
    sections: &mut IdVec<SectionId, Section>,
    id: SectionId,
) -> Result<()> {
    let sec = &sections[id];
    let (name, raw_link, raw_info) = (&sec.name, sec.raw_link, sec.raw_info);
    if sec.sh_entsize != 24 {
        return Err(malformed(format!(
            "{name}: relocation entry size {} is not 24",
            sec.sh_entsize
        )));
    }
    let base = input
        .sec_id(raw_info)
        .ok_or_else(|| malformed(format!("{name}: target section {raw_info} out of range")))?;
    if base == id {
        return Err(malformed(format!("{name}: applies to itself")));
    }
    let target = &sections[base];
    if target.sh_type == elf::SHT_RELA {
        return Err(malformed(format!(
            "{name}: applies to another relocation section"
        )));
    }
    if matches!(
        target.sh_type,
        elf::SHT_NULL
            | elf::SHT_SYMTAB
            | elf::SHT_STRTAB
            | elf::SHT_REL
            | elf::SHT_DYNSYM
            | elf::SHT_GROUP
            | elf::SHT_SYMTAB_SHNDX
            | elf::SHT_NOBITS
    ) {
        return Err(malformed(format!(
            "{name}: applies to {}, which has no contents to relocate",
            target.name
        )));
    }
    if links.relocatable && links.symtab_index != Some(raw_link) {
        return Err(malformed(format!(
            "{name}: linked to section {raw_link}, not to the symbol table"
        )));
    }
    // Livepatch relocation sections come on top of the ordinary one.
    let livepatch = sec.sh_flags & crate::SHF_RELA_LIVEPATCH != 0;
    if target.rela.is_some() && !livepatch {
        return Err(malformed(format!(
            "section {} has two relocation sections",
            target.name
        )));
    }
    let base_size = target.size;
    let endian = input.endian;
    let sh = input
        .table
        .section(object::SectionIndex(id.index() + 1))
        .map_err(|e| malformed(format!("{name}: {e}")))?;
    let entries = sh
        .rela(endian, input.data)
        .map_err(|e| malformed(format!("{name}: {e}")))?
        .map(|(r, _)| r)
        .unwrap_or(&[]);
    let mut relas = Vec::with_capacity(entries.len());
    for r in entries {
        let symndx = r.r_sym(endian, links.mips64el);
        if symndx >= links.nsyms {
            return Err(malformed(format!(
                "{name}: relocation symbol {symndx} out of range"
            )));
        }
        let offset = r.r_offset.get(endian);
        if links.relocatable && offset >= base_size {
            return Err(malformed(format!(
                "{name}: relocation offset {offset:#x} outside its section ({base_size:#x} bytes)"
            )));
        }
        relas.push(Rela {
            offset,
            r_type: r.r_type(endian, links.mips64el),
            sym: SymbolId(symndx),
            addend: r.r_addend.get(endian),
        });
    }
    let sec = &mut sections[id];
    sec.relas = relas;
    sec.data = Vec::new();
    sec.base = Some(base);
    if !livepatch {
        sections[base].rela = Some(id);
    }
    Ok(())
}

/// Member sections of a group section (the flag word excluded).
pub fn group_members(obj: &Object, group: SectionId) -> Vec<SectionId> {
    let sec = obj.sec(group);
    sec.data
        .chunks_exact(4)
        .skip(1)
        .filter_map(|c| {
            let w = obj.read_uint(c) as u32;
            if w == 0 {
                None
            } else {
                Some(SectionId(w - 1))
            }
        })
        .collect()
}

/// Is this symbol-table entry all zeros (the null symbol)?
fn is_null_entry(s: &elf::Sym64<Endianness>) -> bool {
    object::pod::bytes_of(s).iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal relocatable object: null section, `.shstrtab`, nothing else.
    fn tiny() -> Vec<u8> {
        let obj = Object {
            header: Header {
                endian: Endianness::Little,
                ident: *b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0",
                e_type: elf::ET_REL,
                e_machine: elf::EM_X86_64,
                e_version: 1,
                e_entry: 0,
                e_phoff: 0,
                e_flags: 0,
                e_ehsize: 64,
                e_phentsize: 0,
                e_phnum: 0,
                e_shentsize: 64,
            },
            sections: IdVec::new(),
            symbols: IdVec::from_vec(vec![Symbol::new("", 0, 0)]),
        };
        crate::write::to_bytes(&obj).unwrap()
    }

    #[test]
    fn misaligned_buffer() {
        let data = tiny();
        let mut shifted = vec![0u8; data.len() + 1];
        shifted[1..].copy_from_slice(&data);
        let a = parse(&data).unwrap();
        let b = parse(&shifted[1..]).unwrap();
        assert_eq!(a.sections.len(), b.sections.len());
        assert_eq!(a.symbols, b.symbols);
    }

    #[test]
    fn null_symbol_must_be_zero() {
        let mut data = tiny();
        let obj = parse(&data).unwrap();
        let symtab = obj.sections.iter().find(|s| s.sh_type == elf::SHT_SYMTAB);
        // The symbol table's file offset, from its section header.
        let idx = symtab.unwrap().index as usize;
        let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap()) as usize;
        let at = shoff + 64 * idx + 24;
        let off = u64::from_le_bytes(data[at..at + 8].try_into().unwrap()) as usize;
        data[off + 8] = 1; // st_value of symbol 0
        let e = parse(&data).unwrap_err().to_string();
        assert!(e.contains("entry 0 is not the null symbol"), "{e}");
    }
}
