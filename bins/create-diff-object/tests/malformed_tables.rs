//! Malformed input, continued (see `malformed.rs` for the rules every case follows):
//! garbled symbol tables and relocations, struct sizes, objects that don't belong
//! together, garbled parent symbol tables, and a panic turned into an internal error.

mod common;
mod malformed_support;

use malformed_support::*;

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
