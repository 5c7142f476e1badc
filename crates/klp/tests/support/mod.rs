// SPDX-License-Identifier: GPL-2.0-only
//! Synthetic patch modules for the `klp::convert` and `create-klp-module` tests, built
//! with `object::write`: a `.text.patched` section and the differ's intermediate records
//! (`.kpatch.relocations`, `.kpatch.symbols`, `.kpatch.strings` in upstream's layouts).

use kelf::consts::*;
use object::write::{self, Relocation, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};

/// One `struct kpatch_relocation` with its `struct kpatch_symbol`.
pub struct Record {
    /// Offset in `.text.patched` the relocation applies to.
    pub dest: u64,
    pub r_type: u32,
    pub addend: i64,
    /// The object the symbol lives in (`vmlinux` or a module).
    pub objname: &'static str,
    pub name: &'static str,
    pub sympos: u64,
    pub bind: u8,
    pub kind: u8,
}

/// A module with `.text.patched` (64 bytes) and the records for `records`; each record
/// gets its own `.kpatch.symbols` entry. With `placeholder`, the first record's target
/// also has an undefined `.klp.sym.*` symbol and a normal relocation against it, as the
/// differ leaves for the module link with `--klp-placeholders`.
pub fn module(records: &[Record], placeholder: bool) -> Vec<u8> {
    let mut obj = write::Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text.patched".to_vec(), SectionKind::Text);
    obj.append_section_data(text, &[0x90; 64], 16);
    obj.add_symbol(Symbol {
        name: b"patched".to_vec(),
        value: 0,
        size: 64,
        kind: SymbolKind::Text,
        scope: SymbolScope::Compilation,
        weak: false,
        section: SymbolSection::Section(text),
        flags: SymbolFlags::None,
    });
    let strings = obj.add_section(Vec::new(), b".kpatch.strings".to_vec(), SectionKind::Data);
    let ksym = obj.add_section(Vec::new(), b".kpatch.symbols".to_vec(), SectionKind::Data);
    let krela = obj.add_section(
        Vec::new(),
        b".kpatch.relocations".to_vec(),
        SectionKind::Data,
    );
    let (text_sym, str_sym) = (obj.section_symbol(text), obj.section_symbol(strings));
    let ksym_sym = obj.section_symbol(ksym);
    let abs64 = RelocationFlags::Elf {
        r_type: R_X86_64_64,
    };
    let reloc = |obj: &mut write::Object, sec, offset, symbol, addend: i64| {
        let r = Relocation {
            offset,
            symbol,
            addend,
            flags: abs64,
        };
        obj.add_relocation(sec, r).unwrap();
    };
    let string = |obj: &mut write::Object, s: &str| -> u64 {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        obj.append_section_data(strings, &b, 1)
    };
    for (i, r) in records.iter().enumerate() {
        let (name, objname) = (string(&mut obj, r.name), string(&mut obj, r.objname));
        let mut sym = vec![0u8; 40];
        sym[8..16].copy_from_slice(&r.sympos.to_le_bytes());
        sym[16] = r.bind;
        sym[17] = r.kind;
        let s = obj.append_section_data(ksym, &sym, 8);
        reloc(&mut obj, ksym, s + 24, str_sym, name as i64);
        reloc(&mut obj, ksym, s + 32, str_sym, objname as i64);
        let mut rec = vec![0u8; 40];
        rec[8..12].copy_from_slice(&r.r_type.to_le_bytes());
        rec[16..24].copy_from_slice(&r.addend.to_le_bytes());
        let k = obj.append_section_data(krela, &rec, 8);
        reloc(&mut obj, krela, k, text_sym, r.dest as i64);
        reloc(&mut obj, krela, k + 24, str_sym, objname as i64);
        reloc(&mut obj, krela, k + 32, ksym_sym, s as i64);
        if placeholder && i == 0 {
            let p = obj.add_symbol(Symbol {
                name: format!(".klp.sym.{}.{},{}", r.objname, r.name, r.sympos).into_bytes(),
                value: 0,
                size: 0,
                kind: SymbolKind::Text,
                scope: SymbolScope::Linkage,
                weak: false,
                section: SymbolSection::Undefined,
                flags: SymbolFlags::None,
            });
            let flags = RelocationFlags::Elf { r_type: r.r_type };
            let r = Relocation {
                offset: r.dest,
                symbol: p,
                addend: r.addend,
                flags,
            };
            obj.add_relocation(text, r).unwrap();
        }
    }
    obj.write().unwrap()
}

pub fn records() -> Vec<Record> {
    vec![
        Record {
            dest: 0x11,
            r_type: R_X86_64_PLT32,
            addend: -4,
            objname: "vmlinux",
            name: "local_helper",
            sympos: 2,
            bind: STB_LOCAL,
            kind: STT_FUNC,
        },
        Record {
            dest: 0x20,
            r_type: R_X86_64_32S,
            addend: 8,
            objname: "vmlinux",
            name: "counters",
            sympos: 0,
            bind: STB_GLOBAL,
            kind: STT_OBJECT,
        },
        // The same symbol again: one .klp.sym symbol, two relocations.
        Record {
            dest: 0x30,
            r_type: R_X86_64_PC32,
            addend: -4,
            objname: "vmlinux",
            name: "local_helper",
            sympos: 2,
            bind: STB_LOCAL,
            kind: STT_FUNC,
        },
        // A symbol in a module: its own .klp.rela section.
        Record {
            dest: 0x38,
            r_type: R_X86_64_PLT32,
            addend: -4,
            objname: "ext4",
            name: "ext4_helper",
            sympos: 1,
            bind: STB_LOCAL,
            kind: STT_FUNC,
        },
    ]
}
