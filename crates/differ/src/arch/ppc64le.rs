//! ppc64le: fixed 4-byte instructions, data reached through the `.toc` (two levels of
//! relocations), global and local entry points (`.localentry`), `_mcount` or
//! `__patchable_function_entries` as the ftrace site, and no sibling calls from
//! patched code.

use kelf::consts::*;
use kelf::{Rela, SectionId, SymbolId};

use super::{fixed4, Arch};
use crate::elf::Elf;
use crate::error::{fatal, Result};

/// `.reloc ., R_PPC64_ENTRY`: optional marker in function prologues.
const R_PPC64_ENTRY: u32 = 118;
const NOP: u32 = 0x6000_0000;

#[derive(Debug)]
pub struct Ppc64le;

/// Bytes between the global and the local entry point, from `st_other`.
fn local_entry_offset(other: u8) -> u64 {
    ((1u64 << ((other & 0xe0) >> 5)) >> 2) << 2
}

fn mcount_rela(elf: &Elf, sym: SymbolId) -> Option<u64> {
    let sec = elf.y(sym).sec?;
    let rs = elf.s(sec).rela?;
    elf.relas(rs)
        .iter()
        .find(|r| elf.y(r.sym).name == "_mcount")
        .map(|r| r.offset)
}

impl Arch for Ppc64le {
    fn name(&self) -> &'static str {
        "ppc64le"
    }
    fn abs64(&self) -> u32 {
        R_PPC64_ADDR64
    }
    fn data_reloc_width(&self, r_type: u32) -> Option<usize> {
        match r_type {
            R_PPC64_ADDR64 => Some(8),
            R_PPC64_ADDR32 => Some(4),
            _ => None,
        }
    }
    fn decode_starts(&self, code: &[u8]) -> std::result::Result<Vec<u32>, usize> {
        Ok(fixed4::starts(code))
    }
    fn insn_len(&self, code: &[u8]) -> usize {
        fixed4::len(code)
    }
    fn rela_target_offset(&self, _: &Elf, _: SectionId, rela: &Rela) -> Result<i64> {
        Ok(rela.addend)
    }
    fn is_toc_reloc(&self, r_type: u32) -> bool {
        r_type == R_PPC64_TOC16_HA || r_type == R_PPC64_TOC16_LO_DS
    }
    fn is_load_immediate(&self, insn: &[u8]) -> bool {
        // li r4, imm (argument 2) or li r5, imm (argument 3), little-endian encoding
        insn.len() >= 4 && insn[3] == 0x38 && (insn[2] == 0x80 || insn[2] == 0xa0)
    }
    fn has_func_profiling(&self, elf: &Elf, sym: SymbolId) -> bool {
        elf.has_pfe_entry(sym) || mcount_rela(elf, sym).is_some()
    }
    fn bundled_func_offset(&self, elf: &Elf, sym: SymbolId) -> u64 {
        if self.is_localentry_bundled(elf, sym) {
            8
        } else {
            0
        }
    }
    fn uses_pfe(&self) -> bool {
        true
    }
    fn is_localentry_bundled(&self, elf: &Elf, sym: SymbolId) -> bool {
        let s = elf.y(sym);
        local_entry_offset(s.other) != 0 && s.value == 8
    }
    fn keeps_normal_rela(&self, r_type: u32, relasec_name: &str) -> bool {
        matches!(r_type, R_PPC64_REL16_HA | R_PPC64_REL16_LO | R_PPC64_ENTRY)
            // Relative jump labels (5.13+) stay normal relocations, elsewhere too.
            || (r_type == R_PPC64_REL64 && relasec_name != ".rela__jump_table")
    }
    fn is_function_pointer(&self, elf: &Elf, relasec: SectionId, i: usize) -> bool {
        let r = &elf.relas(relasec)[i];
        let Some((ts, ti)) = elf.target_rela(relasec, i) else {
            return false;
        };
        let t = &elf.relas(ts)[ti];
        let s = elf.y(t.sym);
        s.kind == STT_FUNC
            && elf.sym[t.sym].parent.is_none()
            && t.addend == s.value as i64
            && self.is_toc_reloc(r.r_type)
    }
    fn is_end_of_section_ref(&self, _: u32) -> bool {
        false
    }
    fn special_sections(&self) -> &'static [crate::special::SpecialSection] {
        crate::special::PPC64_SPECIAL
    }
    fn mcount_offset(&self, elf: &Elf, sym: SymbolId) -> Result<u64> {
        let s = elf.y(sym);
        if elf.has_pfe {
            let at = s.value + local_entry_offset(s.other);
            let sec = s
                .sec
                .ok_or_else(|| fatal(format!("{}: no section", s.name)))?;
            if !fixed4::word_is(&elf.s(sec).data, at as usize, NOP) {
                return Err(fatal(format!(
                    "{}: unexpected instruction in patch section of function",
                    s.name
                )));
            }
            return Ok(at);
        }
        mcount_rela(elf, sym).ok_or_else(|| fatal(format!("{}: missing call to _mcount()", s.name)))
    }
    fn check_patched_functions(&self, out: &Elf) -> Result<()> {
        // `b <target>` with a relocation: a sibling call. The module's stub would write
        // the patch module's TOC into the caller's stack frame.
        let mut bad = Vec::new();
        for id in out.symbols() {
            let s = out.y(id);
            if s.kind != STT_FUNC || out.sym[id].status != crate::elf::Status::Changed {
                continue;
            }
            let Some(sec) = s.sec else { continue };
            let d = &out.s(sec).data;
            for off in (0..d.len().saturating_sub(3)).step_by(4) {
                if !fixed4::word_is(d, off, 0x4800_0000) {
                    continue;
                }
                let has_rela = out
                    .s(sec)
                    .rela
                    .map(|r| out.relas(r).iter().any(|x| x.offset == off as u64))
                    .unwrap_or(false);
                if has_rela {
                    out.error(format!(
                        "Found an unsupported sibling call at {}()+{:#x}. Add __attribute__((optimize(\"-fno-optimize-sibling-calls\"))) to {}() definition.",
                        s.name,
                        s.value + off as u64,
                        s.name
                    ));
                    bad.push(s.name.clone());
                }
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(fatal(format!(
                "Found {} unsupported sibling call(s) in the patched code.",
                bad.len()
            )))
        }
    }
}
