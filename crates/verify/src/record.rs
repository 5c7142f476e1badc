//! What a patch module records about the code it replaces, for `kpatch verify` (run-pre
//! matching on the live system): for each replaced function, the bytes the target's own
//! binary holds for it, where the kernel will have rewritten them at run time
//! ([`crate::sites`]), and what each relocated field designates.
//!
//! The record is JSON in a non-allocated section ([`SECTION`]) of the module file: the
//! kernel's module loader does not copy non-allocated sections, so it costs disk, not
//! kernel memory. Whole bytes rather than a hash: the report can then name the first
//! differing instruction on both sides, and normalising a rewritten site needs the
//! instruction that was there.

use serde::{Deserialize, Serialize};

use crate::sites::Site;

/// The section of the module file that holds the record.
pub const SECTION: &str = ".kpatch.verify";

/// Version of the record's format.
pub const VERSION: u32 = 1;

/// Everything a module records.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// [`VERSION`] of the format.
    pub version: u32,
    /// The kernel release the module was built for.
    pub release: String,
    /// Link-time address of vmlinux's `_text` (the KASLR offset is measured from it).
    pub kernel_text: u64,
    /// One entry per patched object (vmlinux, modules).
    pub objects: Vec<ObjectRecord>,
}

/// A patched object: vmlinux or a module.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRecord {
    /// `vmlinux` or the module's name.
    pub name: String,
    /// The GNU build-id of the target's copy, in hexadecimal.
    pub build_id: Option<String>,
    /// The functions the module replaces in it.
    pub functions: Vec<FunctionRecord>,
}

/// A function the module replaces, as the target runs it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FunctionRecord {
    /// The function's name.
    pub name: String,
    /// The livepatch core's `sympos` (0: the name is unique in the object).
    pub sympos: u64,
    /// vmlinux: the link-time address. A module: the offset in `section`.
    pub addr: u64,
    /// The module section that holds the function.
    pub section: Option<String>,
    /// The bytes (hexadecimal): vmlinux's as linked; a module's with relocated fields
    /// zero.
    pub bytes: String,
    /// Places the kernel rewrites at run time.
    pub sites: Vec<Site>,
    /// Relocated fields.
    pub fields: Vec<FieldRecord>,
}

/// A relocated field and what it must hold.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldRecord {
    /// Offset in the function.
    pub off: u64,
    /// Bytes the relocation writes.
    pub size: u64,
    /// `R_X86_64_*`.
    pub r_type: u32,
    /// What the field must designate.
    pub target: LiveTarget,
}

/// What a field designates, in terms the live system can resolve.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LiveTarget {
    /// vmlinux's bytes already hold the link-time value; at run time it differs by the
    /// KASLR offset (or not at all, for per-CPU data).
    Linked,
    /// `S + A` is a link-time address in vmlinux.
    Kernel {
        /// `S + A`.
        addr: u64,
    },
    /// `S + A` is an offset in a section of the same module.
    Section {
        /// The section's name.
        section: String,
        /// `S + A` from the section's start.
        off: i64,
    },
    /// `S + A` is symbol `name` (of another module) plus `addend`, found through kallsyms.
    Symbol {
        /// The symbol.
        name: String,
        /// `A`.
        addend: i64,
    },
}

impl FunctionRecord {
    /// The bytes, decoded.
    pub fn code(&self) -> Vec<u8> {
        hex_decode(&self.bytes)
    }
}

impl Record {
    /// The record as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record.
    pub fn from_bytes(data: &[u8]) -> Result<Record, String> {
        let end = data.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        let r: Record = serde_json::from_slice(&data[..end])
            .map_err(|e| format!("unreadable {SECTION}: {e}"))?;
        if r.version != VERSION {
            return Err(format!(
                "{SECTION} version {} (this kpatch reads {VERSION})",
                r.version
            ));
        }
        Ok(r)
    }

    /// The record in a module file, `None` when the module has none.
    pub fn from_module(data: &[u8]) -> Result<Option<Record>, String> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(data).map_err(|e| format!("not an ELF module ({e})"))?;
        let Some(sec) = file.section_by_name(SECTION) else {
            return Ok(None);
        };
        let raw = sec
            .data()
            .map_err(|e| format!("unreadable {SECTION} ({e})"))?;
        Record::from_bytes(raw).map(Some)
    }
}

/// Lower-case hexadecimal.
pub fn hex_encode(b: &[u8]) -> String {
    crate::buildid::hex(b)
}

/// Decodes hexadecimal, ignoring a trailing odd digit or anything not hexadecimal.
pub fn hex_decode(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks_exact(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::SiteKind;

    #[test]
    fn round_trip() {
        let r = Record {
            version: VERSION,
            release: "6.1.0-57-amd64".into(),
            kernel_text: 0xffff_ffff_8100_0000,
            objects: vec![ObjectRecord {
                name: "vmlinux".into(),
                build_id: Some("6a2b".into()),
                functions: vec![FunctionRecord {
                    name: "meminfo_proc_show".into(),
                    bytes: hex_encode(&[0xe8, 0, 0, 0, 0, 0xc3]),
                    sites: vec![Site {
                        off: 0,
                        len: 5,
                        kind: SiteKind::Fentry,
                    }],
                    fields: vec![FieldRecord {
                        off: 1,
                        size: 4,
                        r_type: 4,
                        target: LiveTarget::Section {
                            section: ".text".into(),
                            off: -4,
                        },
                    }],
                    ..Default::default()
                }],
            }],
        };
        let mut bytes = r.to_bytes();
        bytes.extend([0, 0, 0]); // section padding
        assert_eq!(Record::from_bytes(&bytes).unwrap(), r);
        assert_eq!(
            r.objects[0].functions[0].code(),
            vec![0xe8, 0, 0, 0, 0, 0xc3]
        );
        let mut old = r.clone();
        old.version = 99;
        assert!(Record::from_bytes(&old.to_bytes())
            .unwrap_err()
            .contains("version 99"));
    }
}

/// Building records from a build-time comparison.
pub mod build {
    use super::*;
    use crate::func::Function;
    use crate::image::{Copy, KernelImage, ModuleImage};
    use crate::Result;

    /// Our sites at their offsets in `copy` (its alignment padding may differ).
    fn moved_sites(copy: &Copy, sites: &[Site]) -> Vec<Site> {
        sites
            .iter()
            .map(|s| Site {
                off: copy.place(s.off),
                ..s.clone()
            })
            .collect()
    }

    /// The record of `f` as `copy` in vmlinux: the linked bytes; every field holds its
    /// link-time value already, at its offset in the copy.
    pub fn kernel_function(f: &Function, copy: &Copy, sites: &[Site]) -> FunctionRecord {
        // Never past the kernel's own function (a copy without its alignment padding is
        // shorter than ours, and the next function's bytes are rewritten at run time).
        let own = copy.size.map_or(copy.bytes.len(), |s| s as usize);
        let n = if copy.moved.is_empty() {
            f.bytes.len().min(copy.bytes.len()).min(own)
        } else {
            copy.bytes.len().min(own)
        };
        FunctionRecord {
            name: f.name.clone(),
            sympos: copy.sympos,
            addr: copy.addr,
            section: None,
            bytes: hex_encode(&copy.bytes[..n]),
            sites: moved_sites(copy, sites)
                .into_iter()
                .filter(|s| s.off + s.len <= n as u64)
                .collect(),
            fields: f
                .fields
                .iter()
                .map(|fl| FieldRecord {
                    off: copy.place(fl.off),
                    size: fl.size,
                    r_type: fl.r_type,
                    target: LiveTarget::Linked,
                })
                .filter(|fr| fr.off + fr.size <= n as u64)
                .collect(),
        }
    }

    /// The record of `f` as `copy` in module `m`: the module's bytes, and each of its
    /// relocations resolved as far as the build can (its own sections, vmlinux's link
    /// addresses when `vmlinux` is given, else by name).
    pub fn module_function(
        m: &mut ModuleImage,
        vmlinux: Option<&KernelImage>,
        f: &Function,
        copy: &Copy,
        sites: &[Site],
    ) -> Result<FunctionRecord> {
        let (sec, sec_name) = copy.section.clone().unwrap_or_default();
        let len = f.bytes.len().min(copy.bytes.len()) as u64;
        let relocs = m.file.elf.relocations(sec)?;
        let mut fields = Vec::new();
        for r in relocs
            .iter()
            .filter(|r| r.offset >= copy.addr && r.offset < copy.addr + len)
        {
            let Some(size) = crate::x86::field_size(r.r_type).filter(|s| *s > 0) else {
                continue;
            };
            let s = &m.file.elf.symbols[r.sym as usize];
            let target = if s.is_defined() {
                let section = m.file.elf.sections[usize::from(s.shndx)].name.clone();
                let base = if s.is_section() { 0 } else { s.value as i64 };
                LiveTarget::Section {
                    section,
                    off: base + r.addend,
                }
            } else {
                let addrs = vmlinux.map(|k| k.addresses(&s.name)).unwrap_or_default();
                match addrs.as_slice() {
                    [a] => LiveTarget::Kernel {
                        addr: a.wrapping_add(r.addend as u64),
                    },
                    _ => LiveTarget::Symbol {
                        name: s.name.clone(),
                        addend: r.addend,
                    },
                }
            };
            fields.push(FieldRecord {
                off: r.offset - copy.addr,
                size,
                r_type: r.r_type,
                target,
            });
        }
        Ok(FunctionRecord {
            name: f.name.clone(),
            sympos: copy.sympos,
            addr: copy.addr,
            section: Some(sec_name),
            bytes: hex_encode(&copy.bytes[..len as usize]),
            sites: moved_sites(copy, sites),
            fields,
        })
    }
}
