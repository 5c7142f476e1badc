//! x86_64: variable-length instructions decoded with iced-x86, `call __fentry__` as the
//! ftrace hook, objtool's `__pfx_` padding symbols.

use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, OpKind};
use kelf::consts::*;
use kelf::{Rela, SectionId, SymbolId};

use super::{Arch, InsnDelta};
use crate::elf::Elf;
use crate::error::{fatal, Result};

/// Size of the NOP padding in front of functions on call-padding kernels.
const PADDING: u64 = 16;

#[derive(Debug)]
pub struct X86_64;

impl Arch for X86_64 {
    fn name(&self) -> &'static str {
        "x86_64"
    }

    fn abs64(&self) -> u32 {
        R_X86_64_64
    }

    fn is_valid_rela_type(&self, r_type: u32) -> bool {
        // The psABI numbers its types from 0 (R_X86_64_NONE); the newest are in the 40s.
        r_type < 64
    }

    fn decode_starts(&self, code: &[u8]) -> std::result::Result<Vec<u32>, usize> {
        let mut out = Vec::with_capacity(code.len() / 4);
        let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
        while d.can_decode() {
            let pos = d.position();
            let insn = d.decode();
            if insn.is_invalid() && insn.len() == 0 {
                return Err(pos);
            }
            out.push(pos as u32);
        }
        Ok(out)
    }

    fn insn_len(&self, code: &[u8]) -> usize {
        let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
        if !d.can_decode() {
            return 0;
        }
        let insn = d.decode();
        if insn.is_invalid() {
            0
        } else {
            insn.len()
        }
    }

    fn data_reloc_width(&self, r_type: u32) -> Option<usize> {
        match r_type {
            R_X86_64_64 => Some(8),
            R_X86_64_32 | R_X86_64_32S => Some(4),
            _ => None,
        }
    }

    fn format_insn(&self, code: &[u8], ip: u64) -> String {
        let Some(insn) = decode_one(code, ip) else {
            return super::hex_bytes(code.get(..1).unwrap_or(&[]));
        };
        thread_local! {
            static GAS: std::cell::RefCell<GasFormatter> = std::cell::RefCell::new({
                let mut f = GasFormatter::new();
                f.options_mut().set_uppercase_hex(false);
                f.options_mut().set_branch_leading_zeros(false);
                f
            });
        }
        let mut out = String::new();
        GAS.with(|f| f.borrow_mut().format(&insn, &mut out));
        out
    }

    fn insn_delta(&self, a: &[u8], b: &[u8], ip_a: u64, ip_b: u64) -> InsnDelta {
        match (decode_one(a, ip_a), decode_one(b, ip_b)) {
            (Some(x), Some(y)) => delta(&x, &y),
            _ => InsnDelta::Other,
        }
    }

    fn rela_target_offset(&self, elf: &Elf, relasec: SectionId, rela: &Rela) -> Result<i64> {
        let base = elf.base_of(relasec);
        let sec = elf.s(base);
        if !sec.is_text() {
            return Ok(rela.addend);
        }
        match rela.r_type {
            R_X86_64_64 | R_X86_64_32S | R_X86_64_32 => Ok(rela.addend),
            R_X86_64_PC32
            | R_X86_64_PLT32
            | R_X86_64_NONE
            | R_X86_64_GOTPCREL
            | R_X86_64_GOTPCRELX
            | R_X86_64_REX_GOTPCRELX => {
                let starts = elf.insn_starts(base)?;
                let off = rela.offset;
                // The instruction containing the relocated field: last start <= offset.
                let i = starts.partition_point(|s| u64::from(*s) <= off);
                if i == 0 {
                    return Err(fatal(format!(
                        "can't find instruction for relocation at {}+{off:#x}",
                        sec.name
                    )));
                }
                let next = starts.get(i).map(|s| u64::from(*s)).unwrap_or(sec.size);
                rela.addend
                    .checked_add(next as i64 - off as i64)
                    .ok_or_else(|| {
                        fatal(format!(
                            "{}+{off:#x}: relocation addend {} out of range",
                            sec.name, rela.addend
                        ))
                    })
            }
            t => Err(fatal(format!(
                "{}+{:#x}: unhandled relocation type {t}",
                sec.name, rela.offset
            ))),
        }
    }

    fn is_load_immediate(&self, insn: &[u8]) -> bool {
        // mov $imm, %esi (argument 2) or mov $imm, %edx (argument 3)
        matches!(insn.first(), Some(0xbe) | Some(0xba))
    }

    fn has_func_profiling(&self, elf: &Elf, sym: SymbolId) -> bool {
        let Some(sec) = elf.y(sym).sec else {
            return false;
        };
        let Some(rs) = elf.s(sec).rela else {
            return false;
        };
        let Some(first) = elf.relas(rs).first() else {
            return false;
        };
        matches!(first.r_type, R_X86_64_NONE | R_X86_64_PC32 | R_X86_64_PLT32)
            && elf.y(first.sym).name == "__fentry__"
    }

    fn bundled_func_offset(&self, elf: &Elf, sym: SymbolId) -> u64 {
        if let Some(p) = elf.sym[sym].pfx {
            return elf.y(p).size;
        }
        // Kernels with call padding (6.2+, CALL_PADDING) start each function after 16
        // bytes of NOPs; objects built without objtool's --prefix have no `__pfx_` symbol.
        let s = elf.y(sym);
        if s.value == PADDING {
            if let Some(sec) = s.sec {
                let d = &elf.s(sec).data;
                if d.len() >= PADDING as usize
                    && d[..PADDING as usize]
                        .iter()
                        .all(|b| *b == 0x90 || *b == 0xcc)
                {
                    return PADDING;
                }
            }
        }
        0
    }

    fn ignores_patchable_function_entries(&self) -> bool {
        true
    }

    fn has_prefix_symbols(&self) -> bool {
        true
    }

    fn is_function_pointer(&self, elf: &Elf, relasec: SectionId, i: usize) -> bool {
        let rela = &elf.relas(relasec)[i];
        let s = elf.y(rela.sym);
        s.kind == STT_FUNC
            && elf.sym[rela.sym].parent.is_none()
            && rela.addend == s.value as i64
            && rela.r_type == R_X86_64_32S
    }

    fn special_sections(&self) -> &'static [crate::special::SpecialSection] {
        crate::special::X86_64_SPECIAL
    }

    fn is_end_of_section_ref(&self, r_type: u32) -> bool {
        r_type == R_X86_64_32S
    }

    fn mcount_offset(&self, elf: &Elf, sym: SymbolId) -> Result<u64> {
        let name = &elf.y(sym).name;
        let first = elf
            .y(sym)
            .sec
            .and_then(|s| elf.s(s).rela)
            .and_then(|r| elf.relas(r).first());
        let r = first.ok_or_else(|| fatal(format!("{name}: no ftrace call site")))?;
        // `call __fentry__`: the relocation is one byte into the instruction.
        Ok(r.offset.saturating_sub(1))
    }
}

fn decode_one(code: &[u8], ip: u64) -> Option<Instruction> {
    let mut d = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    if !d.can_decode() {
        return None;
    }
    let insn = d.decode();
    (!insn.is_invalid()).then_some(insn)
}

/// Same operation on the same registers, with one constant (immediate or memory
/// displacement, whatever its encoding size) or one branch target different.
fn delta(x: &Instruction, y: &Instruction) -> InsnDelta {
    if x.mnemonic() != y.mnemonic() || x.op_count() != y.op_count() {
        return InsnDelta::Other;
    }
    let mut found = InsnDelta::Other;
    for i in 0..x.op_count() {
        let (kx, ky) = (x.op_kind(i), y.op_kind(i));
        let d = match (kx, ky) {
            (OpKind::Register, OpKind::Register) if x.op_register(i) == y.op_register(i) => {
                continue
            }
            (
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64,
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64,
            ) => {
                let (a, b) = (x.near_branch_target(), y.near_branch_target());
                if a == b {
                    continue;
                }
                InsnDelta::BranchTarget(a, b)
            }
            (OpKind::Memory, OpKind::Memory) => {
                if (x.memory_base(), x.memory_index(), x.memory_index_scale())
                    != (y.memory_base(), y.memory_index(), y.memory_index_scale())
                    || x.memory_segment() != y.memory_segment()
                {
                    return InsnDelta::Other;
                }
                let (a, b) = (x.memory_displacement64(), y.memory_displacement64());
                if a == b || x.is_ip_rel_memory_operand() {
                    continue;
                }
                InsnDelta::Constant(a as i64, b as i64)
            }
            _ => match (x.try_immediate(i), y.try_immediate(i)) {
                (Ok(a), Ok(b)) if a == b => continue,
                (Ok(a), Ok(b)) => InsnDelta::Constant(a as i64, b as i64),
                _ => return InsnDelta::Other,
            },
        };
        if found != InsnDelta::Other {
            // More than one operand differs.
            return InsnDelta::Other;
        }
        found = d;
    }
    found
}
