//! Special-section entry sizes, read from the DWARF of a probe object compiled in the
//! prepared tree (so they are exactly the target kernel's), and the compiler check.

use std::path::Path;

use crate::cmd::run;
use crate::error::{io, step, Result};
use crate::kernel::Kernel;
use crate::progress::Progress;

/// (struct name, header declaring it, which size it gives, config option it needs)
const STRUCTS: &[(&str, &str, &str, &str)] = &[
    (
        "bug_entry",
        "include/asm-generic/bug.h",
        "bug",
        "CONFIG_GENERIC_BUG",
    ),
    (
        "exception_table_entry",
        "arch/x86/include/asm/extable.h",
        "ex",
        "",
    ),
    (
        "jump_entry",
        "include/linux/jump_label.h",
        "jump",
        "CONFIG_JUMP_LABEL",
    ),
    ("alt_instr", "arch/x86/include/asm/alternative.h", "alt", ""),
    (
        "paravirt_patch_site",
        "arch/x86/include/asm/paravirt_types.h",
        "para",
        "CONFIG_PARAVIRT",
    ),
    (
        "static_call_site",
        "include/linux/static_call_types.h",
        "static_call",
        "",
    ),
    (
        "pi_entry",
        "include/linux/printk.h",
        "printk_index",
        "CONFIG_PRINTK_INDEX",
    ),
    (
        "orc_entry",
        "arch/x86/include/asm/orc_types.h",
        "orc",
        "CONFIG_UNWINDER_ORC",
    ),
];

/// The directory of the struct-size probe, in the tree (removed afterwards).
pub const PROBE_DIR: &str = "kpatch_probe";

/// Compare the kernel's `CONFIG_CC_VERSION_TEXT` with `<cc> --version`.
pub fn check_compiler(k: &Kernel, skip: bool, p: &mut Progress) -> Result<()> {
    let want = crate::toolchain::config_cc_text(&k.config())?;
    let whose = match &k.build_root {
        Some(r) => format!("the {} build root's {}", r.info.codename, k.cc),
        None => format!("the host's {}", k.cc),
    };
    let out = k.command(&k.cc).arg("--version").output();
    let have = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        _ => String::from("(cannot run it)"),
    };
    match crate::toolchain::compare_compilers(&want, &have, &whose) {
        Ok(()) => {
            p.note(&format!("compiler: {have} ({whose}), as the kernel's"));
            Ok(())
        }
        Err(e) if skip => {
            p.note(&format!("WARNING: --skip-compiler-check: {e}"));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The compiler version that produced the parent vmlinux (its `DW_AT_producer`, cached per
/// tree state) against the kernel's `.config`.
pub fn check_producer(k: &Kernel, vmlinux: &Path, skip: bool, p: &mut Progress) -> Result<()> {
    let want = crate::toolchain::config_cc_text(&k.config())?;
    let cache = k.state.join("vmlinux-producer");
    let key = format!("{}\n", vmlinux.display());
    let producer = match std::fs::read_to_string(&cache) {
        Ok(t) if t.starts_with(&key) => t[key.len()..].to_string(),
        _ => {
            let Some(prod) = crate::toolchain::dwarf_producer(vmlinux)? else {
                p.note(&format!(
                    "{} has no DWARF producer: compiler not checked against it",
                    vmlinux.display()
                ));
                return Ok(());
            };
            let _ = std::fs::write(&cache, format!("{key}{prod}"));
            prod
        }
    };
    let what = format!("{}", vmlinux.display());
    match crate::toolchain::compare_producer(&want, &producer, &what) {
        Ok(()) => Ok(()),
        Err(e) if skip => {
            p.note(&format!("WARNING: --skip-compiler-check: {e}"));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Byte sizes of named structure types in an object's DWARF.
pub fn dwarf_struct_sizes(obj_path: &Path, names: &[&str]) -> Result<Vec<(String, u64)>> {
    use object::Object;
    let data = std::fs::read(obj_path).map_err(io(obj_path))?;
    let file =
        object::File::parse(&*data).map_err(|e| step(format!("{}: {e}", obj_path.display())))?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    // Relocations in a relocatable object's DWARF only matter for addresses and
    // string offsets into .debug_str; struct names use DW_FORM_strp, so apply them.
    let load = |id: gimli::SectionId| -> std::result::Result<std::borrow::Cow<[u8]>, gimli::Error> {
        Ok(match file.section_by_name(id.name()) {
            Some(s) => relocated(&file, &s).unwrap_or_default().into(),
            None => Default::default(),
        })
    };
    let sections =
        gimli::DwarfSections::load(load).map_err(|e: gimli::Error| step(format!("DWARF: {e}")))?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
    let mut found = Vec::new();
    let mut units = dwarf.units();
    while let Ok(Some(h)) = units.next() {
        let Ok(unit) = dwarf.unit(h) else { continue };
        let mut entries = unit.entries();
        while let Ok(Some((_, e))) = entries.next_dfs() {
            if e.tag() != gimli::DW_TAG_structure_type {
                continue;
            }
            let Some(name) = e.attr_value(gimli::DW_AT_name).ok().flatten() else {
                continue;
            };
            let Ok(name) = dwarf.attr_string(&unit, name) else {
                continue;
            };
            let name = name.to_string_lossy().into_owned();
            if !names.contains(&name.as_str()) || found.iter().any(|(n, _)| *n == name) {
                continue;
            }
            if let Some(size) = e
                .attr_value(gimli::DW_AT_byte_size)
                .ok()
                .flatten()
                .and_then(|v| v.udata_value())
            {
                found.push((name, size));
            }
        }
    }
    Ok(found)
}

/// Section contents with its RELA relocations applied (absolute 32/64-bit only, which
/// is all DWARF uses).
fn relocated(file: &object::File, sec: &object::Section) -> Option<Vec<u8>> {
    use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationTarget};
    let mut data = sec.uncompressed_data().ok()?.into_owned();
    let symtab = file.symbol_table();
    for (off, r) in sec.relocations() {
        let RelocationTarget::Symbol(si) = r.target() else {
            continue;
        };
        let value = symtab
            .as_ref()
            .and_then(|t| t.symbol_by_index(si).ok())
            .map(|s| s.address())
            .unwrap_or(0);
        let v = (value as i64 + r.addend()) as u64;
        let at = off as usize;
        match r.size() {
            32 if at + 4 <= data.len() => {
                data[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes())
            }
            64 if at + 8 <= data.len() => data[at..at + 8].copy_from_slice(&v.to_le_bytes()),
            _ => {}
        }
    }
    Some(data)
}

/// The probe's source for the special-section entry types `tree`'s headers define, and
/// those types' names.
fn probe_source(tree: &std::path::Path) -> (String, Vec<&'static str>) {
    let mut src = String::from(
        "// Generated by kpatch-build: special-section entry types.\n#include <linux/kernel.h>\n",
    );
    let mut wanted = Vec::new();
    for (name, header, _, _) in STRUCTS {
        let h = tree.join(header);
        let text = std::fs::read_to_string(&h).unwrap_or_default();
        if !text.contains(&format!("struct {name} {{")) {
            continue;
        }
        let inc = header
            .trim_start_matches("include/")
            .trim_start_matches("arch/x86/include/");
        src.push_str(&format!("#include <{inc}>\n"));
        wanted.push(*name);
    }
    for name in &wanted {
        let cond = STRUCTS
            .iter()
            .find(|s| s.0 == *name)
            .map(|s| s.3)
            .unwrap_or("");
        if cond.is_empty() {
            src.push_str(&format!("struct {name} kpatch_probe_{name};\n"));
        } else {
            src.push_str(&format!(
                "#ifdef {cond}\nstruct {name} kpatch_probe_{name};\n#endif\n"
            ));
        }
    }
    (src, wanted)
}

/// Compile the probe in the prepared tree and read the sizes.
pub fn struct_sizes(k: &Kernel, jobs: usize, p: &mut Progress) -> Result<differ::StructSizes> {
    let tree = k.tree();
    let dir = tree.join(PROBE_DIR);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let (src, wanted) = probe_source(&tree);
    std::fs::write(dir.join("probe.c"), src).map_err(io(&dir))?;
    std::fs::write(dir.join("Makefile"), "obj-y += probe.o\n").map_err(io(&dir))?;
    let mut args = k.make_args(jobs);
    args.push(format!("{PROBE_DIR}/probe.o"));
    run(
        k.command("make").args(&args),
        "building the struct-size probe",
        p,
    )?;
    let found = dwarf_struct_sizes(&dir.join("probe.o"), &wanted)?;
    let _ = std::fs::remove_dir_all(&dir);
    let get = |which: &str| {
        STRUCTS
            .iter()
            .find(|s| s.2 == which)
            .and_then(|s| found.iter().find(|(f, _)| f == s.0))
            .map(|(_, size)| *size)
    };
    Ok(differ::StructSizes {
        bug: get("bug"),
        ex: get("ex"),
        jump: get("jump"),
        alt: get("alt"),
        para: get("para"),
        static_call: get("static_call"),
        printk_index: get("printk_index"),
        orc: get("orc"),
        fixup: None,
    })
}

/// [`struct_sizes`], cached per release.
pub fn cached_struct_sizes(
    k: &Kernel,
    jobs: usize,
    p: &mut Progress,
) -> Result<differ::StructSizes> {
    let path = k.state.join("struct-sizes");
    let fields = [
        "bug",
        "ex",
        "jump",
        "alt",
        "para",
        "static_call",
        "printk_index",
        "orc",
    ];
    let to_vec = |s: &differ::StructSizes| {
        vec![
            s.bug,
            s.ex,
            s.jump,
            s.alt,
            s.para,
            s.static_call,
            s.printk_index,
            s.orc,
        ]
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        let vals: Vec<Option<u64>> = text.split_whitespace().map(|v| v.parse().ok()).collect();
        if vals.len() == fields.len() {
            return Ok(differ::StructSizes {
                bug: vals[0],
                ex: vals[1],
                jump: vals[2],
                alt: vals[3],
                para: vals[4],
                static_call: vals[5],
                printk_index: vals[6],
                orc: vals[7],
                fixup: None,
            });
        }
    }
    let s = struct_sizes(k, jobs, p)?;
    let text: Vec<String> = to_vec(&s)
        .iter()
        .map(|v| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into()))
        .collect();
    let _ = std::fs::write(&path, text.join(" "));
    let shown: Vec<String> = fields
        .iter()
        .zip(to_vec(&s))
        .filter_map(|(f, v)| v.map(|n| format!("{f}={n}")))
        .collect();
    p.note(&format!("entry sizes: {}", shown.join(" ")));
    Ok(s)
}

#[cfg(test)]
mod tests {}
