//! Check-only units: a unit that a changed header reaches but that no live patch can change
//! (assembly, vDSO code) is built before and after the patch; its object must not change.

use std::path::Path;

use crate::error::{io, step, Result};

/// How the object of a check-only unit changed between its original and patched
/// builds: the first allocated section whose bytes or relocations differ, or `None`
/// when they are the same (debug information and other unallocated sections aside).
pub fn object_change(orig: &Path, patched: &Path) -> Result<Option<String>> {
    let a = std::fs::read(orig).map_err(io(orig))?;
    let b = std::fs::read(patched).map_err(io(patched))?;
    let (sa, sb) = (alloc_sections(&a, orig)?, alloc_sections(&b, patched)?);
    for (x, y) in sa.iter().zip(&sb) {
        if x != y {
            return Ok(Some(format!("section {} changes", x.0)));
        }
    }
    if sa.len() != sb.len() {
        let names: Vec<&str> = sa.iter().chain(&sb).map(|s| s.0.as_str()).collect();
        return Ok(Some(format!(
            "its sections change ({} before, {} after: {})",
            sa.len(),
            sb.len(),
            names.join(" ")
        )));
    }
    Ok(None)
}

type SectionImage = (String, Vec<u8>, Vec<(u64, String, i64, String)>);

/// Name, bytes and relocations (offset, kind, addend, target name) of each allocated
/// section.
fn alloc_sections(data: &[u8], path: &Path) -> Result<Vec<SectionImage>> {
    use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SectionFlags};
    let f = object::File::parse(data).map_err(|e| step(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for sec in f.sections() {
        let alloc = match sec.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_ALLOC) != 0,
            _ => false,
        };
        if !alloc {
            continue;
        }
        let name = sec.name().unwrap_or("").to_string();
        let bytes = sec.data().unwrap_or_default().to_vec();
        let mut relocs = Vec::new();
        for (off, r) in sec.relocations() {
            let target = match r.target() {
                RelocationTarget::Symbol(i) => f
                    .symbol_by_index(i)
                    .map(|s| match s.name() {
                        Ok("") | Err(_) => s
                            .section_index()
                            .and_then(|si| f.section_by_index(si).ok())
                            .and_then(|t| t.name().ok().map(str::to_string))
                            .unwrap_or_default(),
                        Ok(n) => n.to_string(),
                    })
                    .unwrap_or_default(),
                other => format!("{other:?}"),
            };
            relocs.push((off, format!("{:?}", r.flags()), r.addend(), target));
        }
        out.push((name, bytes, relocs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Objects built from an assembly file with and without a change to a macro it uses.
    #[test]
    fn object_change_sees_allocated_sections_only() {
        let d = tempfile::tempdir().unwrap();
        let build = |name: &str, value: u32, comment: &str| {
            let src = d.path().join(format!("{name}.S"));
            std::fs::write(
                &src,
                format!(
                    "/* {comment} */\n#define VALUE {value}\n.text\n.globl f\nf:\n  mov $VALUE, %eax\n  call g\n  ret\n"
                ),
            )
            .unwrap();
            let obj = d.path().join(format!("{name}.o"));
            let st = std::process::Command::new("gcc")
                .args(["-c", "-g", "-o"])
                .arg(&obj)
                .arg(&src)
                .status()
                .expect("gcc");
            assert!(st.success());
            obj
        };
        let a = build("a", 1, "original");
        let b = build("b", 1, "a comment and the file name change, not the code");
        let c = build("c", 2, "original");
        assert_eq!(object_change(&a, &b).unwrap(), None);
        let change = object_change(&a, &c).unwrap().expect("a change");
        assert!(change.contains(".text"), "{change}");
    }
}
