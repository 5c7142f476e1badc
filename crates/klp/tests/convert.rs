// SPDX-License-Identifier: GPL-2.0-only
//! `klp::convert` on synthetic patch modules built with `object::write`: the differ's
//! `.kpatch.relocations` / `.kpatch.symbols` records (upstream's 40-byte layouts) become
//! `.klp.rela.<object>.<section>` sections of relocations against `SHN_LIVEPATCH`
//! symbols `.klp.sym.<object>.<name>,<sympos>`.

mod support;

use kelf::consts::*;
use kelf::{Object, SectionId};
use klp::convert::{convert, SHF_RELA_LIVEPATCH, SHN_LIVEPATCH};
use support::{module, records};

/// `(offset, type, symbol name, addend)` of a relocation section's entries.
fn entries(obj: &Object, sec: SectionId) -> Vec<(u64, u32, String, i64)> {
    obj.sec(sec)
        .relas
        .iter()
        .map(|r| (r.offset, r.r_type, obj.sym(r.sym).name.clone(), r.addend))
        .collect()
}

fn converted(bytes: &[u8]) -> (Object, klp::convert::Stats) {
    let mut obj = kelf::read::parse(bytes).unwrap();
    let stats = convert(&mut obj).unwrap();
    // What convert produced must serialise and read back as the same model.
    let again = kelf::read::parse(&kelf::write::to_bytes(&obj).unwrap()).unwrap();
    let key = |o: &Object| -> Vec<(String, u8, u8, u16, u64)> {
        let syms = o.symbols.iter();
        syms.map(|s| (s.name.clone(), s.bind, s.kind, s.shndx, s.value))
            .collect()
    };
    assert_eq!(key(&again), key(&obj));
    (again, stats)
}

#[test]
fn records_become_klp_relocations_and_symbols() {
    let (obj, stats) = converted(&module(&records(), false));
    assert_eq!(stats.klp_relocations, 4);
    assert_eq!(stats.klp_symbols, 3);
    assert_eq!(
        stats.klp_sections,
        [
            ".klp.rela.vmlinux..text.patched",
            ".klp.rela.ext4..text.patched"
        ]
    );
    let text = obj.find_section(".text.patched").unwrap();
    let vmlinux = obj.find_section(".klp.rela.vmlinux..text.patched").unwrap();
    let s = obj.sec(vmlinux);
    assert_eq!(s.sh_type, SHT_RELA);
    assert_eq!(
        s.sh_flags,
        SHF_RELA_LIVEPATCH | u64::from(SHF_ALLOC) | u64::from(SHF_INFO_LINK)
    );
    assert_eq!(s.base, Some(text));
    let helper = ".klp.sym.vmlinux.local_helper,2".to_string();
    assert_eq!(
        entries(&obj, vmlinux),
        [
            (0x11, R_X86_64_PLT32, helper.clone(), -4),
            (0x20, R_X86_64_32S, ".klp.sym.vmlinux.counters,0".into(), 8),
            (0x30, R_X86_64_PC32, helper, -4),
        ]
    );
    let ext4 = obj.find_section(".klp.rela.ext4..text.patched").unwrap();
    assert_eq!(
        entries(&obj, ext4),
        [(
            0x38,
            R_X86_64_PLT32,
            ".klp.sym.ext4.ext4_helper,1".into(),
            -4
        )]
    );
    for (name, bind, kind) in [
        (".klp.sym.vmlinux.local_helper,2", STB_LOCAL, STT_FUNC),
        (".klp.sym.vmlinux.counters,0", STB_GLOBAL, STT_OBJECT),
        (".klp.sym.ext4.ext4_helper,1", STB_LOCAL, STT_FUNC),
    ] {
        let sym = obj.sym(obj.find_symbol(name).expect(name));
        assert_eq!(
            (sym.shndx, sym.sec, sym.bind, sym.kind),
            (SHN_LIVEPATCH, None, bind, kind),
            "{name}"
        );
    }
    // The intermediate records are gone; locals still precede globals.
    for gone in [
        ".kpatch.relocations",
        ".rela.kpatch.relocations",
        ".kpatch.symbols",
        ".rela.kpatch.symbols",
    ] {
        assert!(obj.find_section(gone).is_none(), "{gone} left behind");
    }
    let first_global = obj.symbols.iter().position(|s| !s.is_local()).unwrap();
    assert!(obj.symbols.as_slice()[first_global..]
        .iter()
        .all(|s| !s.is_local()));
}

#[test]
fn placeholder_relocation_moves_to_the_klp_section() {
    let (obj, stats) = converted(&module(&records()[..1], true));
    assert_eq!((stats.klp_relocations, stats.klp_symbols), (1, 1));
    // The module link's relocation against the placeholder left .rela.text.patched ...
    let text = obj.find_section(".text.patched").unwrap();
    if let Some(rs) = obj.sec(text).rela {
        assert!(entries(&obj, rs).is_empty(), "{:?}", entries(&obj, rs));
    }
    // ... the placeholder itself became the SHN_LIVEPATCH symbol, not a second one.
    let name = ".klp.sym.vmlinux.local_helper,2";
    assert_eq!(obj.symbols.iter().filter(|s| s.name == name).count(), 1);
    let sym = obj.sym(obj.find_symbol(name).unwrap());
    assert_eq!((sym.shndx, sym.bind), (SHN_LIVEPATCH, STB_LOCAL));
    let klp = obj.find_section(".klp.rela.vmlinux..text.patched").unwrap();
    assert_eq!(
        entries(&obj, klp),
        [(0x11, R_X86_64_PLT32, name.into(), -4)]
    );
}

#[test]
fn module_without_records_is_unchanged() {
    let (obj, stats) = converted(&module(&[], false));
    assert_eq!(stats, klp::convert::Stats::default());
    assert!(obj.sections.iter().all(|s| !s.name.starts_with(".klp.")));
}

#[test]
fn malformed_records_are_errors() {
    let mut obj = kelf::read::parse(&module(&records(), false)).unwrap();
    let ksym = obj.find_section(".kpatch.symbols").unwrap();
    obj.sec_mut(ksym).name = ".kpatch.other".into();
    let e = convert(&mut obj).unwrap_err().to_string();
    assert!(e.contains("incomplete klp metadata"), "{e}");

    let mut obj = kelf::read::parse(&module(&records(), false)).unwrap();
    let krela = obj.find_section(".kpatch.relocations").unwrap();
    let s = obj.sec_mut(krela);
    s.data.truncate(70);
    s.size = 70;
    let e = convert(&mut obj).unwrap_err().to_string();
    assert!(e.contains("not a multiple of the record size"), "{e}");

    // A record whose symbol pointer lands between two .kpatch.symbols entries.
    let mut obj = kelf::read::parse(&module(&records(), false)).unwrap();
    let rs = obj.sec(krela).rela.unwrap();
    let r = obj
        .sec_mut(rs)
        .relas
        .iter_mut()
        .find(|r| r.offset == 32)
        .unwrap();
    r.addend += 8;
    let e = convert(&mut obj).unwrap_err().to_string();
    assert!(
        e.contains("does not point at a .kpatch.symbols record"),
        "{e}"
    );
}
