//! s390x: big-endian, 2/4/6-byte instructions (length in the top two bits of the first
//! opcode byte, read as an unsigned byte), `jgnop` as the ftrace site, expolines.

use kelf::consts::*;
use kelf::{Rela, SectionId, SymbolId};

use super::Arch;
use crate::elf::Elf;
use crate::error::{fatal, Result};

#[derive(Debug)]
pub struct S390x;

fn len_of(first: u8) -> usize {
    match first >> 6 {
        0 => 2,
        1 | 2 => 4,
        _ => 6,
    }
}

impl Arch for S390x {
    fn name(&self) -> &'static str {
        "s390x"
    }
    fn big_endian(&self) -> bool {
        true
    }
    fn abs64(&self) -> u32 {
        R_390_64
    }
    fn data_reloc_width(&self, r_type: u32) -> Option<usize> {
        match r_type {
            R_390_64 => Some(8),
            R_390_32 => Some(4),
            _ => None,
        }
    }
    fn decode_starts(&self, code: &[u8]) -> std::result::Result<Vec<u32>, usize> {
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < code.len() {
            out.push(at as u32);
            at += len_of(code[at]);
        }
        Ok(out)
    }
    fn insn_len(&self, code: &[u8]) -> usize {
        match code.first() {
            Some(b) if code.len() >= len_of(*b) => len_of(*b),
            _ => 0,
        }
    }
    fn rela_target_offset(&self, elf: &Elf, relasec: SectionId, rela: &Rela) -> Result<i64> {
        match rela.r_type {
            // Relative branches and loads: the field is 2 bytes into the instruction.
            R_390_GOTENT | R_390_PLT32DBL | R_390_PC32DBL => Ok(rela.addend - 2),
            R_390_32 | R_390_64 | R_390_PC32 | R_390_PC64 => Ok(rela.addend),
            t => Err(fatal(format!(
                "{}+{:#x}: unhandled relocation type {t}",
                elf.s(elf.base_of(relasec)).name,
                rela.offset
            ))),
        }
    }
    fn is_load_immediate(&self, insn: &[u8]) -> bool {
        // lghi %r3, imm (argument 2) or lghi %r4, imm (argument 3)
        insn.len() >= 2 && insn[0] == 0xa7 && (insn[1] == 0x39 || insn[1] == 0x49)
    }
    fn has_func_profiling(&self, elf: &Elf, sym: SymbolId) -> bool {
        // The compiler's fentry site: `jgnop 0` at the start of the function's section.
        let Some(sec) = elf.y(sym).sec else {
            return false;
        };
        elf.s(sec)
            .data
            .starts_with(&[0xc0, 0x04, 0x00, 0x00, 0x00, 0x00])
    }
    fn uses_pfe(&self) -> bool {
        true
    }
    fn is_module_local_stub(&self, name: &str) -> bool {
        name.starts_with("__s390_indirect_jump_r")
    }
    fn is_function_pointer(&self, elf: &Elf, relasec: SectionId, i: usize) -> bool {
        let Some(t) = elf.target_sym(relasec, i) else {
            return false;
        };
        elf.y(t).kind == STT_FUNC
            && elf.sym[t].parent.is_none()
            && elf.relas(relasec)[i].r_type == R_390_GOTENT
    }
    fn is_end_of_section_ref(&self, _: u32) -> bool {
        false
    }
    fn special_sections(&self) -> &'static [crate::special::SpecialSection] {
        crate::special::S390X_SPECIAL
    }
    fn mcount_offset(&self, elf: &Elf, sym: SymbolId) -> Result<u64> {
        Ok(elf.y(sym).value)
    }
}
