//! arm64: fixed 4-byte instructions, ftrace sites in `__patchable_function_entries`
//! (with CALL_OPS padding NOPs before the function and an optional `BTI c`), and
//! `$x`/`$d` mapping symbols.

use kelf::consts::*;
use kelf::{Rela, SectionId, SymbolId};

use super::{fixed4, Arch};
use crate::elf::Elf;
use crate::error::{fatal, Result};

const NOP: u32 = 0xd503_201f;
const BTI_C: u32 = 0xd503_245f;

#[derive(Debug)]
pub struct Aarch64;

/// Bytes of NOP padding before a function (CONFIG_DYNAMIC_FTRACE_WITH_CALL_OPS).
fn padding(elf: &Elf, sym: SymbolId) -> u64 {
    let s = elf.y(sym);
    let Some(sec) = s.sec else { return 0 };
    let d = &elf.s(sec).data;
    let mut n = 0;
    while (n + 1) * 4 <= s.value as usize && fixed4::word_is(d, n * 4, NOP) {
        n += 1;
    }
    if n == 2 {
        8
    } else {
        0
    }
}

impl Arch for Aarch64 {
    fn name(&self) -> &'static str {
        "aarch64"
    }
    fn abs64(&self) -> u32 {
        R_AARCH64_ABS64
    }
    fn data_reloc_width(&self, r_type: u32) -> Option<usize> {
        match r_type {
            R_AARCH64_ABS64 => Some(8),
            R_AARCH64_ABS32 => Some(4),
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
    fn is_load_immediate(&self, insn: &[u8]) -> bool {
        // mov w2, #imm (argument 3 of __warn_printk)
        insn.len() >= 4 && insn[0] & 0x1f == 0x2 && insn[3] == 0x52
    }
    fn line_change_warn_printk_only(&self) -> bool {
        true
    }
    fn has_func_profiling(&self, elf: &Elf, sym: SymbolId) -> bool {
        elf.has_pfe_entry(sym)
    }
    fn bundled_func_offset(&self, elf: &Elf, sym: SymbolId) -> u64 {
        padding(elf, sym)
    }
    fn uses_pfe(&self) -> bool {
        true
    }
    fn is_mapping_symbol(&self, elf: &Elf, sym: SymbolId) -> bool {
        let s = elf.y(sym);
        s.name.starts_with('$') && s.kind == STT_NOTYPE && s.bind == STB_LOCAL
    }
    fn is_function_pointer(&self, _: &Elf, _: SectionId, _: usize) -> bool {
        false
    }
    fn is_end_of_section_ref(&self, r_type: u32) -> bool {
        r_type == R_AARCH64_ABS64
    }
    fn special_sections(&self) -> &'static [crate::special::SpecialSection] {
        crate::special::AARCH64_SPECIAL
    }
    fn mcount_offset(&self, elf: &Elf, sym: SymbolId) -> Result<u64> {
        let s = elf.y(sym);
        let sec = s
            .sec
            .ok_or_else(|| fatal(format!("{}: no section", s.name)))?;
        let d = &elf.s(sec).data;
        let pad = padding(elf, sym) as usize;
        let mut at = pad;
        let mut offset = 0u64;
        if fixed4::word_is(d, at, BTI_C) {
            if pad == 0 {
                offset = 4;
            }
            at += 4;
        }
        if !fixed4::word_is(d, at, NOP) || !fixed4::word_is(d, at + 4, NOP) {
            return Err(fatal(format!(
                "{}: unexpected instruction in patch section of function",
                s.name
            )));
        }
        Ok(offset)
    }
}
