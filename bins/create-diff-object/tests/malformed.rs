//! Malformed input: truncated or garbled objects, wrong machine or class, objects that
//! don't belong together, missing files, unwritable output. Every case must exit with a
//! status of 1 (2 only where the differ legitimately calls the change unpatchable), print
//! exactly one `ERROR:` line naming the problem, never panic, and leave nothing behind in
//! the output directory (neither the output nor a temporary file).
//!
//! Every case below ends in 1. Exit status 2 stays reserved for well-formed objects whose
//! difference cannot be live-patched: two builds of the same source file that differ in
//! data or init code, say. (Objects built from different source files are caught before
//! that, by their STT_FILE symbols; a machine mismatch, by the ELF header.)
//!
//! The mutations are made here, on copies of one small upstream unit pair, by editing the
//! ELF header, section headers, symbols and relocations in place (offsets computed from
//! the ELF64 header by hand), so the tests need nothing but the unit objects.

mod common;
mod malformed_support;

use common::shared_objs;
use malformed_support::*;

#[test]
fn baseline_pair_succeeds() {
    let c = Case::new();
    let out = c.run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.output.exists());
    assert_eq!(std::fs::read_dir(&c.outdir).unwrap().count(), 1);
}

// Missing and unusable files.

#[test]
fn missing_orig() {
    let c = Case::new();
    let out = c.run_args(&c.indir.join("nope.o"), &c.patched, &c.symtab, &c.output);
    c.expect(&out, 1, "nope.o: No such file");
}

#[test]
fn missing_patched() {
    let c = Case::new();
    let out = c.run_args(&c.orig, &c.indir.join("nope.o"), &c.symtab, &c.output);
    c.expect(&out, 1, "nope.o: No such file");
}

#[test]
fn missing_parent_symtab() {
    let c = Case::new();
    let out = c.run_args(&c.orig, &c.patched, &c.indir.join("nope.symtab"), &c.output);
    c.expect(&out, 1, "nope.symtab: No such file");
}

#[test]
fn input_is_a_directory() {
    let c = Case::new();
    let out = c.run_args(&c.indir, &c.patched, &c.symtab, &c.output);
    c.expect(&out, 1, "in:");
}

#[test]
fn output_in_missing_directory() {
    let c = Case::new();
    let out = c.run_args(
        &c.orig,
        &c.patched,
        &c.symtab,
        &c.outdir.join("missing/output.o"),
    );
    c.expect(&out, 1, "No such file or directory");
}

#[test]
fn output_is_a_directory() {
    let c = Case::new();
    std::fs::create_dir(&c.output).unwrap();
    let out = c.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("ERROR:")).count(),
        1
    );
    // Only the directory that was already there.
    let left: Vec<_> = std::fs::read_dir(&c.outdir).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn empty_file() {
    let c = Case::patched(|p| p.0.clear());
    c.expect(&c.run(), 1, "not an ELF file");
}

#[test]
fn not_elf() {
    let c = Case::patched(|p| p.0 = b"!<arch>\nthis is not an object\n".to_vec());
    c.expect(&c.run(), 1, "not an ELF file");
}

// Truncation.

#[test]
fn truncated_in_file_header() {
    for cut in [4, 16, 20, 40, 63] {
        let c = Case::patched(|p| p.0.truncate(cut));
        c.expect(&c.run(), 1, "malformed ELF");
    }
}

#[test]
fn truncated_in_contents() {
    // Everything after the ELF header, half of the file, everything from the symbol table on.
    let base = Image::load(&x86(&format!("{PAIR}.PATCHED.o")));
    let symtab = base.sh_get(base.first_of_type(SHT_SYMTAB), SH_OFFSET, 8) as usize;
    for cut in [64, base.0.len() / 2, symtab, symtab + 100] {
        let c = Case::patched(|p| p.0.truncate(cut));
        c.expect(&c.run(), 1, "malformed ELF");
    }
}

#[test]
fn truncated_in_section_headers() {
    let base = Image::load(&x86(&format!("{PAIR}.PATCHED.o")));
    let shoff = base.get(E_SHOFF, 8) as usize;
    for cut in [shoff, shoff + 1, shoff + 64 * 3 + 10, base.0.len() - 1] {
        let c = Case::patched(|p| p.0.truncate(cut));
        c.expect(&c.run(), 1, "malformed ELF");
    }
}

#[test]
fn truncated_orig() {
    let c = Case::orig(|o| {
        let n = o.0.len() - 200;
        o.0.truncate(n)
    });
    c.expect(&c.run(), 1, "malformed ELF");
}

// ELF header.

#[test]
fn thirty_two_bit_elf() {
    let c = Case::patched(|p| p.0[4] = 1); // EI_CLASS = ELFCLASS32
    c.expect(&c.run(), 1, "64-bit");
}

#[test]
fn big_endian_flag() {
    let c = Case::patched(|p| p.0[5] = 2); // EI_DATA = ELFDATA2MSB: every field reads garbled
    c.expect(&c.run(), 1, "ELF");
}

#[test]
fn bad_ident_data() {
    let c = Case::patched(|p| p.0[5] = 7);
    c.expect(&c.run(), 1, "malformed ELF");
}

#[test]
fn not_relocatable() {
    let c = Case::patched(|p| p.set(0x10, 2, 2)); // ET_EXEC
    c.expect(&c.run(), 1, "ET_REL");
}

/// A well-formed riscv64 object (written by `object`), which no `Arch` handles.
fn riscv64_object(body: &[u8]) -> Image {
    use object::write::{Object, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags};
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Riscv64, Endianness::Little);
    let text = obj.add_section(Vec::new(), b".text.fn".to_vec(), SectionKind::Text);
    obj.append_section_data(text, body, 4);
    obj.add_symbol(Symbol {
        name: b"fn".to_vec(),
        value: 0,
        size: body.len() as u64,
        kind: object::SymbolKind::Text,
        scope: object::SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Section(text),
        flags: SymbolFlags::None,
    });
    Image(obj.write().unwrap())
}

#[test]
fn unsupported_machine_riscv64() {
    // `ret` before, `nop; ret` after: a real change, on an architecture we do not support.
    let o = riscv64_object(&[0x67, 0x80, 0x00, 0x00]);
    let p = riscv64_object(&[0x13, 0x00, 0x00, 0x00, 0x67, 0x80, 0x00, 0x00]);
    let c = Case::with(o, p);
    c.expect(&c.run(), 1, "unsupported architecture riscv64");
}

#[test]
fn patched_for_other_machine() {
    let p = Image::load(&shared_objs().join("aarch64/cmdline-patch.PATCHED.o"));
    let c = Case::with(Image::load(&x86(&format!("{PAIR}.ORIG.o"))), p);
    // "unsupported architecture aarch64", or "orig.o is for x86_64 but patched.o is for
    // aarch64" where aarch64 is supported.
    c.expect(&c.run(), 1, "aarch64");
}

#[test]
fn machine_unsupported_everywhere() {
    // EM_RISCV in both x86_64 objects.
    let mut o = Image::load(&x86(&format!("{PAIR}.ORIG.o")));
    let mut p = Image::load(&x86(&format!("{PAIR}.PATCHED.o")));
    o.set(0x12, 2, 243);
    p.set(0x12, 2, 243);
    let c = Case::with(o, p);
    c.expect(&c.run(), 1, "unsupported architecture riscv64");
}

#[test]
fn machine_field_garbled() {
    let c = Case::patched(|p| p.set(0x12, 2, 0x1234));
    c.expect(&c.run(), 1, "unsupported architecture");
}

#[test]
fn section_header_entry_size() {
    let c = Case::patched(|p| p.set(0x3a, 2, 40));
    c.expect(&c.run(), 1, "section header entry size");
}

#[test]
fn section_count_too_large() {
    let c = Case::patched(|p| p.set(E_SHNUM, 2, 0xfeff));
    c.expect(&c.run(), 1, "malformed ELF");
}

#[test]
fn section_header_offset_past_eof() {
    let c = Case::patched(|p| p.set(E_SHOFF, 8, 1 << 40));
    c.expect(&c.run(), 1, "malformed ELF");
}

#[test]
fn shstrndx_out_of_range() {
    let c = Case::patched(|p| p.set(E_SHSTRNDX, 2, 0x7fff));
    c.expect(&c.run(), 1, "malformed ELF");
}

// Section headers.

#[test]
fn section_offset_past_eof() {
    let c = Case::patched(|p| {
        let s = p.section(TEXT);
        p.sh_set(s, SH_OFFSET, 8, 1 << 33)
    });
    c.expect(&c.run(), 1, "contents lie outside the file");
}

#[test]
fn section_offset_overflows() {
    let c = Case::patched(|p| {
        let s = p.section(TEXT);
        p.sh_set(s, SH_OFFSET, 8, u64::MAX - 8)
    });
    c.expect(&c.run(), 1, "contents lie outside the file");
}

#[test]
fn section_size_past_eof() {
    let c = Case::patched(|p| {
        let s = p.section(TEXT);
        let len = p.0.len() as u64;
        p.sh_set(s, SH_SIZE, 8, len)
    });
    c.expect(&c.run(), 1, "contents lie outside the file");
}

#[test]
fn section_size_huge() {
    for size in [1u64 << 40, u64::MAX] {
        let c = Case::patched(|p| {
            let s = p.section(TEXT);
            p.sh_set(s, SH_SIZE, 8, size)
        });
        c.expect(&c.run(), 1, "absurd size");
    }
}

#[test]
fn nobits_size_huge() {
    let c = Case::patched(|p| {
        let s = p.section(".bss");
        p.sh_set(s, SH_SIZE, 8, u64::MAX)
    });
    c.expect(&c.run(), 1, "absurd size");
}

#[test]
fn section_name_out_of_range() {
    let c = Case::patched(|p| {
        let s = p.section(TEXT);
        p.sh_set(s, SH_NAME, 4, 0xffff_fff0)
    });
    c.expect(&c.run(), 1, "name offset out of range");
}

#[test]
fn alignment_not_power_of_two() {
    let c = Case::patched(|p| {
        let s = p.section(TEXT);
        p.sh_set(s, SH_ADDRALIGN, 8, 24)
    });
    c.expect(&c.run(), 1, "alignment 24 is not a power of two");
}

#[test]
fn alignment_absurd() {
    let c = Case::patched(|p| {
        let s = p.section(TEXT);
        p.sh_set(s, SH_ADDRALIGN, 8, 1 << 63)
    });
    c.expect(&c.run(), 1, "alignment");
}
