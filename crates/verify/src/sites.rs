//! Places in a function's code that the kernel (or objtool, at link time) rewrites: the
//! ftrace call at its entry, alternatives, paravirt patches, static-key jumps, static
//! calls, retpoline and return-thunk sites, `endbr64` instructions that get sealed, and
//! SMP lock prefixes. Found from the rebuilt object: its special sections point at them,
//! and the rest are calls to thunks its relocations name.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::func::{Function, RelFile, Target};
use crate::x86;
use crate::Result;

/// What rewrites a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// `call __fentry__`: a NOP while not traced; a call to an ftrace or livepatch
    /// trampoline while traced or patched.
    Fentry,
    /// An alternative instruction: replaced at boot by a CPU-specific sequence.
    Alternative,
    /// A paravirt call site, patched at boot.
    Paravirt,
    /// A static-key jump: a jump or a NOP of the same length.
    JumpLabel,
    /// A static call: a call to the current target, or a NOP.
    StaticCall,
    /// A call or jump through a retpoline thunk, rewritten to the indirect form the CPU
    /// needs.
    Retpoline,
    /// A jump to the return thunk, rewritten to `ret` or another thunk.
    Return,
    /// `endbr64`, sealed (turned into a NOP) when nothing takes the function's address.
    Endbr,
    /// A `lock` prefix, turned into a `ds` prefix on a uniprocessor system.
    Lock,
}

/// One rewritten place, as an offset in the function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Offset in the function.
    pub off: u64,
    /// Bytes the kernel may rewrite.
    pub len: u64,
    /// What rewrites them.
    pub kind: SiteKind,
}

/// Entry sizes of the special sections of the target kernel (from its DWARF).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// `struct jump_entry`.
    pub jump: u64,
    /// `struct alt_instr` (its `instrlen` is the last byte but one).
    pub alt: u64,
    /// `struct paravirt_patch_site` (6.1: `instr`, `type`, `len`).
    pub para: u64,
    /// `struct static_call_site`.
    pub static_call: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            jump: 16,
            alt: 12,
            para: 16,
            static_call: 8,
        }
    }
}

/// The sites of every section of a relocatable file, by section and offset.
pub struct SiteIndex {
    by_section: HashMap<usize, Vec<(u64, SiteKind, Option<u64>)>>,
}

impl SiteIndex {
    /// Reads the special sections of `file`.
    pub fn build(file: &mut RelFile, layout: &Layout) -> Result<SiteIndex> {
        let mut idx = SiteIndex {
            by_section: HashMap::new(),
        };
        let tables: [(&str, u64, SiteKind, Option<u64>); 9] = [
            ("__mcount_loc", 8, SiteKind::Fentry, None),
            (
                ".altinstructions",
                layout.alt,
                SiteKind::Alternative,
                Some(layout.alt.saturating_sub(2)),
            ),
            (
                ".parainstructions",
                layout.para,
                SiteKind::Paravirt,
                Some(9),
            ),
            ("__jump_table", layout.jump, SiteKind::JumpLabel, None),
            (
                ".static_call_sites",
                layout.static_call,
                SiteKind::StaticCall,
                None,
            ),
            (".retpoline_sites", 4, SiteKind::Retpoline, None),
            (".return_sites", 4, SiteKind::Return, None),
            (".smp_locks", 4, SiteKind::Lock, None),
            (".ibt_endbr_seal", 4, SiteKind::Endbr, None),
        ];
        for (name, entry, kind, len_at) in tables {
            let Some(sec) = file.elf.section_by_name(name) else {
                continue;
            };
            if entry == 0 {
                continue;
            }
            let data = file.data(sec)?.to_vec();
            for r in file.elf.relocations(sec)? {
                // The entry's first field points at the site.
                if r.offset % entry != 0 {
                    continue;
                }
                let s = &file.elf.symbols[r.sym as usize];
                if !s.is_defined() {
                    continue;
                }
                let base = if s.is_section() { 0 } else { s.value as i64 };
                let Ok(at) = u64::try_from(base + r.addend) else {
                    continue;
                };
                let len = len_at
                    .and_then(|o| data.get((r.offset + o) as usize))
                    .map(|b| u64::from(*b));
                idx.by_section
                    .entry(usize::from(s.shndx))
                    .or_default()
                    .push((at, kind, len));
            }
        }
        Ok(idx)
    }

    /// The sites in function `f`, sorted by offset.
    pub fn for_function(&self, f: &Function) -> Vec<Site> {
        let end = f.value + f.bytes.len() as u64;
        let mut out: Vec<Site> = Vec::new();
        if let Some(list) = self.by_section.get(&f.section) {
            for (at, kind, len) in list {
                if *at < f.value || *at >= end {
                    continue;
                }
                let off = at - f.value;
                let len = match (kind, len) {
                    (_, Some(l)) => *l,
                    (SiteKind::Lock, None) => 1,
                    (SiteKind::Endbr, None) => 4,
                    _ => x86::insn_len(&f.bytes[off as usize..]) as u64,
                };
                out.push(Site {
                    off,
                    len,
                    kind: *kind,
                });
            }
        }
        // What objtool would list, found from the relocations (6.12's objects leave that
        // to the vmlinux link), and the `endbr64` instructions.
        for fl in &f.fields {
            let Target::Symbol { name, .. } = &fl.target else {
                continue;
            };
            let kind = if name == "__fentry__" {
                SiteKind::Fentry
            } else if name.starts_with("__x86_indirect_") {
                SiteKind::Retpoline
            } else if name == "__x86_return_thunk" {
                SiteKind::Return
            } else if name.starts_with("__SCT__") {
                SiteKind::StaticCall
            } else {
                continue;
            };
            // The field is the last 4 bytes of a call, jmp or jcc.
            let starts = x86::insn_starts(&f.bytes);
            if let Some((s, e)) = x86::insn_around(&f.bytes, &starts, fl.off) {
                out.push(Site {
                    off: s,
                    len: e - s,
                    kind,
                });
            }
        }
        for s in x86::insn_starts(&f.bytes) {
            let s = u64::from(s);
            if f.bytes[s as usize..].starts_with(&x86::ENDBR64) {
                out.push(Site {
                    off: s,
                    len: 4,
                    kind: SiteKind::Endbr,
                });
            }
        }
        out.sort_by_key(|s| (s.off, s.kind));
        out.dedup_by_key(|s| (s.off, s.kind));
        out
    }
}
