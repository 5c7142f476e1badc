//! LoongArch: fixed 4-byte instructions, ftrace sites in `__patchable_function_entries`,
//! and gcc's local code labels (`.L*`), which are folded into section symbols.

use kelf::consts::*;
use kelf::{Rela, SectionId, SymbolId};

use super::{fixed4, Arch};
use crate::elf::Elf;
use crate::error::{fatal, Result};

const NOP: u32 = 0x0340_0000;

#[derive(Debug)]
pub struct Loongarch64;

fn is_label(obj: &kelf::Object, s: &kelf::Symbol) -> bool {
    s.kind == STT_NOTYPE
        && s.bind == STB_LOCAL
        && s.sec.map(|x| !obj.sec(x).is_rela()).unwrap_or(false)
}

impl Arch for Loongarch64 {
    fn name(&self) -> &'static str {
        "loongarch64"
    }
    fn preprocess(&self, obj: &mut kelf::Object) -> std::result::Result<(), String> {
        // Relocations against local labels become section symbol + offset...
        for si in obj.section_ids() {
            for ri in 0..obj.sec(si).relas.len() {
                let r = obj.sec(si).relas[ri].clone();
                let s = obj.sym(r.sym).clone();
                if !is_label(obj, &s) {
                    continue;
                }
                let sec = s.sec.ok_or("label without section")?;
                let secsym = obj.sec(sec).secsym.ok_or_else(|| {
                    format!("section {} has no section symbol", obj.sec(sec).name)
                })?;
                let rr = &mut obj.sec_mut(si).relas[ri];
                rr.addend += s.value as i64;
                rr.sym = secsym;
            }
        }
        // ...and the labels themselves go.
        let labels: kelf::IdVec<kelf::SymbolId, bool> =
            obj.symbols.iter().map(|s| is_label(obj, s)).collect();
        obj.retain_symbols(|id, _| !labels[id])
            .map_err(|e| e.to_string())
    }
    fn abs64(&self) -> u32 {
        R_LARCH_64
    }
    fn data_reloc_width(&self, r_type: u32) -> Option<usize> {
        match r_type {
            R_LARCH_64 => Some(8),
            R_LARCH_32 => Some(4),
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
    fn is_load_immediate(&self, _: &[u8]) -> bool {
        false
    }
    fn has_func_profiling(&self, elf: &Elf, sym: SymbolId) -> bool {
        elf.has_pfe_entry(sym)
    }
    fn uses_pfe(&self) -> bool {
        true
    }
    fn ignored_section(&self, name: &str) -> bool {
        name.starts_with(".rela.orc_unwind_ip")
    }
    fn is_function_pointer(&self, _: &Elf, _: SectionId, _: usize) -> bool {
        false
    }
    fn is_end_of_section_ref(&self, _: u32) -> bool {
        false
    }
    fn special_sections(&self) -> &'static [crate::special::SpecialSection] {
        crate::special::LOONGARCH64_SPECIAL
    }
    fn mcount_offset(&self, elf: &Elf, sym: SymbolId) -> Result<u64> {
        let s = elf.y(sym);
        let sec = s
            .sec
            .ok_or_else(|| fatal(format!("{}: no section", s.name)))?;
        let d = &elf.s(sec).data;
        let at = s.value as usize;
        if !fixed4::word_is(d, at, NOP) || !fixed4::word_is(d, at + 4, NOP) {
            return Err(fatal(format!(
                "{}: unexpected instruction at the start of the function",
                s.name
            )));
        }
        Ok(0)
    }
}
