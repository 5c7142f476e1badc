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

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::shared_objs;

/// An x86_64 object of upstream's unit pairs.
fn x86(name: &str) -> PathBuf {
    shared_objs().join("x86_64").join(name)
}

/// The base pair: small, with text, data, merged strings and relocations.
const PAIR: &str = "zero-page-rela-issue-1064";
/// A pair built from another source file (cmdline.c rather than meminfo.c).
const OTHER: &str = "cmdline-ubsan";

// ELF64 layout.
const E_SHOFF: usize = 0x28;
const E_SHNUM: usize = 0x3c;
const E_SHSTRNDX: usize = 0x3e;
const SH_NAME: usize = 0;
const SH_TYPE: usize = 4;
const SH_OFFSET: usize = 24;
const SH_SIZE: usize = 32;
const SH_LINK: usize = 40;
const SH_INFO: usize = 44;
const SH_ADDRALIGN: usize = 48;
const SH_ENTSIZE: usize = 56;
const SHT_SYMTAB: u32 = 2;
const SHT_RELA: u32 = 4;
const SYM_SIZE: usize = 24;
const ST_NAME: usize = 0;
const ST_SHNDX: usize = 6;
const ST_VALUE: usize = 8;
const ST_SIZE: usize = 16;
const RELA_SIZE: usize = 24;
const R_OFFSET: usize = 0;
const R_INFO: usize = 8;
const R_ADDEND: usize = 16;

/// A little-endian ELF64 image that can be edited field by field.
#[derive(Clone)]
struct Image(Vec<u8>);

impl Image {
    fn load(path: &Path) -> Image {
        Image(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }
    fn get(&self, off: usize, width: usize) -> u64 {
        let mut v = 0u64;
        for i in 0..width {
            v |= u64::from(self.0[off + i]) << (8 * i);
        }
        v
    }
    fn set(&mut self, off: usize, width: usize, value: u64) {
        for i in 0..width {
            self.0[off + i] = (value >> (8 * i)) as u8;
        }
    }
    fn shnum(&self) -> usize {
        self.get(E_SHNUM, 2) as usize
    }
    /// File offset of section header `i`.
    fn sh(&self, i: usize) -> usize {
        self.get(E_SHOFF, 8) as usize + 64 * i
    }
    fn sh_get(&self, i: usize, field: usize, width: usize) -> u64 {
        self.get(self.sh(i) + field, width)
    }
    fn sh_set(&mut self, i: usize, field: usize, width: usize, value: u64) {
        let at = self.sh(i) + field;
        self.set(at, width, value);
    }
    fn name(&self, i: usize) -> String {
        let strndx = self.get(E_SHSTRNDX, 2) as usize;
        let start =
            self.sh_get(strndx, SH_OFFSET, 8) as usize + self.sh_get(i, SH_NAME, 4) as usize;
        let end = start + self.0[start..].iter().position(|b| *b == 0).unwrap();
        String::from_utf8_lossy(&self.0[start..end]).into_owned()
    }
    fn section(&self, name: &str) -> usize {
        (1..self.shnum())
            .find(|&i| self.name(i) == name)
            .unwrap_or_else(|| panic!("no section {name}"))
    }
    fn first_of_type(&self, sh_type: u32) -> usize {
        (1..self.shnum())
            .find(|&i| self.sh_get(i, SH_TYPE, 4) == u64::from(sh_type))
            .expect("section type")
    }
    /// File offset of symbol `n`.
    fn sym(&self, n: usize) -> usize {
        let st = self.first_of_type(SHT_SYMTAB);
        self.sh_get(st, SH_OFFSET, 8) as usize + SYM_SIZE * n
    }
    /// Index of the first symbol whose name is `name`.
    fn find_sym(&self, name: &str) -> usize {
        let st = self.first_of_type(SHT_SYMTAB);
        let strtab = self.sh_get(st, SH_LINK, 4) as usize;
        let strings = self.sh_get(strtab, SH_OFFSET, 8) as usize;
        let n = self.sh_get(st, SH_SIZE, 8) as usize / SYM_SIZE;
        (1..n)
            .find(|&k| {
                let start = strings + self.get(self.sym(k) + ST_NAME, 4) as usize;
                self.0[start..].starts_with(name.as_bytes()) && self.0[start + name.len()] == 0
            })
            .unwrap_or_else(|| panic!("no symbol {name}"))
    }
    /// File offset of entry `n` of relocation section `sec`.
    fn rela(&self, sec: usize, n: usize) -> usize {
        assert_eq!(self.sh_get(sec, SH_TYPE, 4), u64::from(SHT_RELA));
        self.sh_get(sec, SH_OFFSET, 8) as usize + RELA_SIZE * n
    }
}

/// One run: inputs in `in/`, the output in its own (otherwise empty) `out/`.
struct Case {
    _dir: tempfile::TempDir,
    indir: PathBuf,
    outdir: PathBuf,
    orig: PathBuf,
    patched: PathBuf,
    symtab: PathBuf,
    output: PathBuf,
}

impl Case {
    /// ORIG and PATCHED of `PAIR`, with the ORIG object as the parent symbol table.
    fn new() -> Case {
        Case::with(
            Image::load(&x86(&format!("{PAIR}.ORIG.o"))),
            Image::load(&x86(&format!("{PAIR}.PATCHED.o"))),
        )
    }

    fn with(orig: Image, patched: Image) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let indir = dir.path().join("in");
        let outdir = dir.path().join("out");
        std::fs::create_dir(&indir).unwrap();
        std::fs::create_dir(&outdir).unwrap();
        let c = Case {
            orig: indir.join("orig.o"),
            patched: indir.join("patched.o"),
            // The parent may be given as an ELF file: the original object plays vmlinux.
            symtab: indir.join("parent.o"),
            output: outdir.join("output.o"),
            indir,
            outdir,
            _dir: dir,
        };
        std::fs::write(&c.symtab, &orig.0).unwrap();
        std::fs::write(&c.orig, &orig.0).unwrap();
        std::fs::write(&c.patched, &patched.0).unwrap();
        c
    }

    fn patched(f: impl FnOnce(&mut Image)) -> Case {
        let mut p = Image::load(&x86(&format!("{PAIR}.PATCHED.o")));
        f(&mut p);
        Case::with(Image::load(&x86(&format!("{PAIR}.ORIG.o"))), p)
    }

    fn orig(f: impl FnOnce(&mut Image)) -> Case {
        let mut o = Image::load(&x86(&format!("{PAIR}.ORIG.o")));
        let parent = o.clone();
        f(&mut o);
        let c = Case::with(parent, Image::load(&x86(&format!("{PAIR}.PATCHED.o"))));
        std::fs::write(&c.orig, &o.0).unwrap();
        c
    }

    fn run(&self) -> Output {
        self.run_args(&self.orig, &self.patched, &self.symtab, &self.output)
    }

    fn run_env(&self, extra: &[(&str, &str)]) -> Output {
        self.run_full(&self.orig, &self.patched, &self.symtab, &self.output, extra)
    }

    fn run_args(&self, orig: &Path, patched: &Path, symtab: &Path, output: &Path) -> Output {
        self.run_full(orig, patched, symtab, output, &[])
    }

    fn run_full(
        &self,
        orig: &Path,
        patched: &Path,
        symtab: &Path,
        output: &Path,
        extra: &[(&str, &str)],
    ) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_create-diff-object"));
        cmd.env_clear()
            .envs(common::arch_env("x86_64").iter().copied())
            .envs(extra.iter().copied())
            .current_dir(&self.indir)
            .arg(orig)
            .arg(patched)
            .arg("vmlinux")
            .arg(symtab)
            .arg("/dev/null")
            .arg("test_malformed")
            .arg(output);
        cmd.output().expect("run create-diff-object")
    }

    /// The run failed with `code`, one `ERROR:` line containing `needle`, no panic, and
    /// nothing left in the output directory.
    #[track_caller]
    fn expect(&self, out: &Output, code: i32, needle: &str) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(!stderr.contains("panicked"), "panic\n{ctx}");
        assert!(
            !stderr.contains("internal error"),
            "unforeseen panic\n{ctx}"
        );
        assert_eq!(out.status.code(), Some(code), "exit status\n{ctx}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR:")).collect();
        if code == 1 {
            assert_eq!(errors.len(), 1, "exactly one ERROR line\n{ctx}");
        } else {
            assert!(!errors.is_empty(), "an ERROR line\n{ctx}");
        }
        assert!(
            errors.iter().any(|l| l.contains(needle)),
            "ERROR line naming {needle:?}\n{ctx}"
        );
        eprintln!("{}", errors.join("\n"));
        let left: Vec<_> = std::fs::read_dir(&self.outdir)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "left in the output directory: {left:?}\n{ctx}"
        );
    }
}

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

const TEXT: &str = ".text.meminfo_proc_open";
const RELA_TEXT: &str = ".rela.text.meminfo_proc_open";

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

#[test]
fn symtab_entsize_wrong() {
    let c = Case::patched(|p| {
        let s = p.first_of_type(SHT_SYMTAB);
        p.sh_set(s, SH_ENTSIZE, 8, 16)
    });
    c.expect(&c.run(), 1, ".symtab: entry size 16 is not 24");
}

#[test]
fn symtab_size_not_multiple() {
    let c = Case::patched(|p| {
        let s = p.first_of_type(SHT_SYMTAB);
        let size = p.sh_get(s, SH_SIZE, 8);
        p.sh_set(s, SH_SIZE, 8, size - 5)
    });
    c.expect(&c.run(), 1, ".symtab");
}

#[test]
fn symtab_link_out_of_range() {
    let c = Case::patched(|p| {
        let s = p.first_of_type(SHT_SYMTAB);
        p.sh_set(s, SH_LINK, 4, 0xffff)
    });
    c.expect(&c.run(), 1, ".symtab");
}

#[test]
fn symtab_link_to_itself() {
    let c = Case::patched(|p| {
        let s = p.first_of_type(SHT_SYMTAB);
        p.sh_set(s, SH_LINK, 4, s as u64)
    });
    c.expect(&c.run(), 1, "malformed ELF");
}

#[test]
fn rela_entsize_wrong() {
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        p.sh_set(s, SH_ENTSIZE, 8, 16)
    });
    c.expect(&c.run(), 1, "relocation entry size 16 is not 24");
}

#[test]
fn rela_size_not_multiple() {
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        let size = p.sh_get(s, SH_SIZE, 8);
        p.sh_set(s, SH_SIZE, 8, size - 1)
    });
    c.expect(&c.run(), 1, RELA_TEXT);
}

#[test]
fn rela_info_out_of_range() {
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        p.sh_set(s, SH_INFO, 4, 0xffff)
    });
    c.expect(&c.run(), 1, "target section 65535 out of range");
}

#[test]
fn rela_info_self() {
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        p.sh_set(s, SH_INFO, 4, s as u64)
    });
    c.expect(&c.run(), 1, "applies to itself");
}

#[test]
fn rela_info_points_at_symtab() {
    // Relocations "for" the symbol table: no model of that makes sense.
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        let st = p.first_of_type(SHT_SYMTAB) as u64;
        p.sh_set(s, SH_INFO, 4, st)
    });
    c.expect(&c.run(), 1, "malformed ELF");
}

#[test]
fn two_rela_sections_for_one_target() {
    let c = Case::patched(|p| {
        let a = p.section(RELA_TEXT);
        let b = p.section(".rela.text.meminfo_proc_show");
        let info = p.sh_get(a, SH_INFO, 4);
        p.sh_set(b, SH_INFO, 4, info)
    });
    c.expect(&c.run(), 1, "two relocation sections");
}

#[test]
fn rela_link_out_of_range() {
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        p.sh_set(s, SH_LINK, 4, 0xffff)
    });
    c.expect(&c.run(), 1, RELA_TEXT);
}

// Symbols.

#[test]
fn symbol_section_index_out_of_range() {
    let c = Case::patched(|p| {
        let k = p.find_sym("meminfo_proc_open");
        let at = p.sym(k) + ST_SHNDX;
        p.set(at, 2, 0xfe00)
    });
    c.expect(&c.run(), 1, "section index 65024 out of range");
}

#[test]
fn symbol_section_index_xindex_without_table() {
    let c = Case::patched(|p| {
        let k = p.find_sym("meminfo_proc_open");
        let at = p.sym(k) + ST_SHNDX;
        p.set(at, 2, 0xffff) // SHN_XINDEX, but there is no .symtab_shndx
    });
    c.expect(&c.run(), 1, "symbol meminfo_proc_open");
}

#[test]
fn symbol_name_out_of_range() {
    let c = Case::patched(|p| {
        let k = p.find_sym("meminfo_proc_open");
        let at = p.sym(k) + ST_NAME;
        p.set(at, 4, 0x7fff_ffff)
    });
    c.expect(&c.run(), 1, "name offset out of range");
}

#[test]
fn symbol_value_huge() {
    // A function symbol far outside its section.
    for v in [1u64 << 40, u64::MAX, i64::MAX as u64] {
        let c = Case::patched(|p| {
            let k = p.find_sym("meminfo_proc_open");
            let at = p.sym(k) + ST_VALUE;
            p.set(at, 8, v)
        });
        c.expect(&c.run(), 1, "meminfo_proc_open");
    }
}

#[test]
fn symbol_size_huge() {
    for size in [u64::MAX, i64::MAX as u64] {
        let c = Case::patched(|p| {
            let k = p.find_sym("meminfo_proc_open");
            let at = p.sym(k) + ST_SIZE;
            p.set(at, 8, size)
        });
        c.expect(&c.run(), 1, "meminfo_proc_open");
    }
}

#[test]
fn string_symbol_value_huge() {
    // A section symbol of a merged-string section moved far away: relocations through it
    // would point nowhere.
    let c = Case::patched(|p| {
        let s = p.section(".rodata.str1.1");
        let st = p.first_of_type(SHT_SYMTAB);
        let n = p.sh_get(st, SH_SIZE, 8) as usize / SYM_SIZE;
        let k = (1..n)
            .find(|&k| p.get(p.sym(k) + ST_SHNDX, 2) == s as u64 && p.0[p.sym(k) + 4] & 0xf == 3)
            .expect("section symbol");
        let at = p.sym(k) + ST_VALUE;
        p.set(at, 8, u64::MAX - 4)
    });
    c.expect(
        &c.run(),
        1,
        "section symbol of .rodata.str1.1: value 0xfffffffffffffffb, size 0x0 (not 0)",
    );
}

// Relocations.

#[test]
fn relocation_symbol_out_of_range() {
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        let at = p.rela(s, 1) + R_INFO + 4;
        p.set(at, 4, 0x00ff_ffff)
    });
    c.expect(&c.run(), 1, "relocation symbol 16777215 out of range");
}

#[test]
fn relocation_type_unknown() {
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        let at = p.rela(s, 1) + R_INFO;
        p.set(at, 4, 0xbeef)
    });
    c.expect(&c.run(), 1, "relocation type 48879 is invalid on x86_64");
}

#[test]
fn relocation_offset_huge() {
    for off in [1u64 << 40, u64::MAX] {
        let c = Case::patched(|p| {
            let s = p.section(RELA_TEXT);
            let at = p.rela(s, 1) + R_OFFSET;
            p.set(at, 8, off)
        });
        c.expect(&c.run(), 1, "meminfo_proc_open");
    }
}

#[test]
fn relocation_addend_extreme() {
    for addend in [i64::MAX, i64::MIN] {
        let c = Case::patched(|p| {
            let s = p.section(RELA_TEXT);
            let n = p.sh_get(s, SH_SIZE, 8) as usize / RELA_SIZE;
            for k in 0..n {
                let at = p.rela(s, k) + R_ADDEND;
                p.set(at, 8, addend as u64)
            }
        });
        c.expect(&c.run(), 1, "out of range");
    }
}

#[test]
fn pc_relative_addend_overflows() {
    // PC-relative references get the distance to the next instruction added: with an
    // addend of i64::MAX that overflows. The string references (R_X86_64_32S) are made
    // PC-relative (R_X86_64_PC32) for this.
    let c = Case::patched(|p| {
        let s = p.section(RELA_TEXT);
        let n = p.sh_get(s, SH_SIZE, 8) as usize / RELA_SIZE;
        for k in 0..n {
            let at = p.rela(s, k);
            if p.get(at + R_INFO, 4) == 11 {
                p.set(at + R_INFO, 4, 2);
                p.set(at + R_ADDEND, 8, i64::MAX as u64)
            }
        }
    });
    c.expect(&c.run(), 1, "out of range");
}

#[test]
fn struct_size_absurd() {
    let c = Case::new();
    let out = c.run_env(&[("BUG_STRUCT_SIZE", "18446744073709551615")]);
    c.expect(&out, 1, "BUG_STRUCT_SIZE=18446744073709551615: absurd size");
    let out = c.run_env(&[("EX_STRUCT_SIZE", "twelve")]);
    c.expect(&out, 1, "EX_STRUCT_SIZE=twelve: expected a positive size");
}

#[test]
fn relocation_garbled_in_orig() {
    let c = Case::orig(|o| {
        let s = o.section(".rela.text.meminfo_proc_show");
        let at = o.rela(s, 2) + R_INFO + 4;
        o.set(at, 4, 0x7fff_ffff)
    });
    c.expect(&c.run(), 1, "out of range");
}

// Objects that don't belong together.

#[test]
fn orig_and_patched_from_different_sources() {
    let c = Case::with(
        Image::load(&x86(&format!("{OTHER}.ORIG.o"))),
        Image::load(&x86(&format!("{PAIR}.PATCHED.o"))),
    );
    c.expect(&c.run(), 1, "different source files");
}

#[test]
fn parent_symtab_of_another_object() {
    let c = Case::new();
    let other = c.indir.join("other.o");
    std::fs::copy(x86(&format!("{OTHER}.ORIG.o")), &other).unwrap();
    let out = c.run_args(&c.orig, &c.patched, &other, &c.output);
    c.expect(&out, 1, "couldn't find matching meminfo.c local symbols");
}

#[test]
fn parent_symtab_garbled_elf() {
    let c = Case::new();
    let mut parent = Image::load(&c.symtab);
    parent.set(E_SHOFF, 8, 1 << 40);
    std::fs::write(&c.symtab, &parent.0).unwrap();
    c.expect(&c.run(), 1, "malformed ELF");
}

#[test]
fn parent_symtab_garbage_text() {
    let c = Case::new();
    std::fs::write(
        &c.symtab,
        "Symbol table '.symtab' contains 2 entries:\n  1: zz 12 FUNC\n  2: 0 1 BOGUS LOCAL DEFAULT 1 x\n",
    )
    .unwrap();
    c.expect(&c.run(), 1, "unknown symbol type BOGUS");
}

// The last line of defence: an unforeseen panic still ends as one ERROR line, exit 1.

#[test]
#[cfg(debug_assertions)]
fn panic_becomes_internal_error() {
    let c = Case::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_create-diff-object"));
    cmd.env_clear()
        .envs(common::arch_env("x86_64").iter().copied())
        .env("CDO_INJECT_PANIC", "1")
        .arg(&c.orig)
        .arg(&c.patched)
        .arg("vmlinux")
        .arg(&c.symtab)
        .arg("/dev/null")
        .arg("test_malformed")
        .arg(&c.output);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("ERROR: orig.o: internal error: injected panic for the tests at "),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&c.outdir).unwrap().count(), 0);
}
