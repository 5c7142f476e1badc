//! A module's symbol table alone, as a small ELF file the differ takes as PARENT-SYMTAB.
//!
//! The copy keeps the ELF header, every section header (as `SHT_NOBITS`, with the
//! original name, flags, address and size, so that each symbol's `st_shndx` still names
//! its section) and the whole `.symtab` with `STT_FILE` and local symbols, in the
//! original order, with a new `.strtab` and `.shstrtab`. Everything else (code, data,
//! DWARF, relocations) is left out: a debug module of several megabytes becomes tens of
//! kilobytes.

use object::elf;
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::write::elf::{SectionHeader as OutSection, Sym as OutSym, Writer};
use object::Endianness;

use crate::error::{step, Result};

type Ehdr = elf::FileHeader64<Endianness>;

/// The symbol table of a 64-bit ELF file (`data`), written as a compact ELF file.
pub fn compact(data: &[u8]) -> Result<Vec<u8>> {
    let bad = |m: String| step(format!("malformed ELF: {m}"));
    let header = Ehdr::parse(data).map_err(|e| bad(e.to_string()))?;
    let endian = header.endian().map_err(|e| bad(e.to_string()))?;
    let sections = header
        .sections(endian, data)
        .map_err(|e| bad(e.to_string()))?;
    let symtab = sections
        .symbols(endian, data, elf::SHT_SYMTAB)
        .map_err(|e| bad(e.to_string()))?;
    if symtab.is_empty() {
        return Err(bad("no symbol table".into()));
    }
    let symtab_index = symtab.section().0;
    let strtab_index = symtab.string_section().0;
    let shstrtab_index = header
        .shstrndx(endian, data)
        .map_err(|e| bad(e.to_string()))? as usize;
    if sections.len() >= usize::from(elf::SHN_LORESERVE) {
        return Err(bad(format!("{} sections", sections.len())));
    }
    let num_local = sections
        .section(symtab.section())
        .map(|s| s.sh_info(endian))
        .map_err(|e| bad(e.to_string()))?;

    let mut out = Vec::new();
    let mut w = Writer::new(endian, true, &mut out);
    w.reserve_file_header();
    // Section indices in the original order.
    let mut names = Vec::with_capacity(sections.len());
    for (i, s) in sections.iter().enumerate() {
        let name = sections
            .section_name(endian, s)
            .map_err(|e| bad(e.to_string()))?;
        if i == 0 {
            w.reserve_null_section_index();
            names.push(None);
        } else if i == symtab_index {
            w.reserve_symtab_section_index_with_name(name);
            names.push(None);
        } else if i == strtab_index {
            w.reserve_strtab_section_index_with_name(name);
            names.push(None);
        } else if i == shstrtab_index {
            w.reserve_shstrtab_section_index_with_name(name);
            names.push(None);
        } else {
            let id = w.add_section_name(name);
            w.reserve_section_index();
            names.push(Some(id));
        }
    }
    let syms: Vec<_> = symtab.iter().skip(1).collect();
    let mut sym_names = Vec::with_capacity(syms.len());
    for s in &syms {
        let name = s
            .name(endian, symtab.strings())
            .map_err(|e| bad(e.to_string()))?;
        w.reserve_symbol_index(None);
        sym_names.push((!name.is_empty()).then(|| w.add_string(name)));
    }
    w.reserve_symtab();
    w.reserve_strtab();
    w.reserve_shstrtab();
    w.reserve_section_headers();

    w.write_file_header(&object::write::elf::FileHeader {
        os_abi: header.e_ident().os_abi,
        abi_version: header.e_ident().abi_version,
        e_type: header.e_type(endian),
        e_machine: header.e_machine(endian),
        e_entry: header.e_entry(endian),
        e_flags: header.e_flags(endian),
    })
    .map_err(|e| bad(e.to_string()))?;
    w.write_null_symbol();
    for (s, name) in syms.iter().zip(&sym_names) {
        w.write_symbol(&OutSym {
            name: *name,
            section: None,
            st_info: s.st_info(),
            st_other: s.st_other(),
            st_shndx: s.st_shndx(endian),
            st_value: s.st_value(endian),
            st_size: s.st_size(endian),
        });
    }
    w.write_strtab();
    w.write_shstrtab();
    w.write_null_section_header();
    for (i, s) in sections.iter().enumerate().skip(1) {
        if i == symtab_index {
            w.write_symtab_section_header(num_local);
        } else if i == strtab_index {
            w.write_strtab_section_header();
        } else if i == shstrtab_index {
            w.write_shstrtab_section_header();
        } else {
            w.write_section_header(&OutSection {
                name: names[i],
                sh_type: elf::SHT_NOBITS,
                sh_flags: s.sh_flags(endian),
                sh_addr: s.sh_addr(endian),
                sh_offset: 0,
                sh_size: s.sh_size(endian),
                sh_link: 0,
                sh_info: 0,
                sh_addralign: s.sh_addralign(endian),
                sh_entsize: 0,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile a small object with gcc and compare its symbols with the compact copy's.
    #[test]
    fn compact_keeps_every_symbol() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("t.c");
        std::fs::write(
            &c,
            "static int counter;\n__attribute__((noinline)) static int helper(int x) { return x + counter++; }\n\
             int exported(int y) { return helper(y) * 2; }\nint data_array[16];\n",
        )
        .unwrap();
        let o = dir.path().join("t.o");
        let st = std::process::Command::new("gcc")
            .args(["-c", "-O2", "-g", "-ffunction-sections", "-o"])
            .arg(&o)
            .arg(&c)
            .status()
            .expect("gcc");
        assert!(st.success());
        let data = std::fs::read(&o).unwrap();
        let small = compact(&data).unwrap();
        assert!(
            small.len() < data.len(),
            "{} >= {}",
            small.len(),
            data.len()
        );
        let out = dir.path().join("small.o");
        std::fs::write(&out, &small).unwrap();
        let a = differ::read_elf_symbols(&o.display().to_string()).unwrap();
        let b = differ::read_elf_symbols(&out.display().to_string()).unwrap();
        let key = |v: &[differ::ObjSym]| {
            v.iter()
                .map(|s| (s.name.clone(), s.addr, s.size, s.kind, s.bind))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        assert!(b.iter().any(|s| s.name == "helper"));
        assert!(b.iter().any(|s| s.kind == elf::STT_FILE && s.name == "t.c"));
        // readelf accepts it and shows the same symbol count.
        let re = std::process::Command::new("readelf")
            .args(["-sW"])
            .arg(&out)
            .output()
            .expect("readelf");
        assert!(re.status.success());
        assert!(
            re.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&re.stderr)
        );
    }
}
