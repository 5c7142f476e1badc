//! Architecture specifics, behind one trait. Everything the differ needs to know about
//! an instruction set lives in the implementation for that architecture.

mod aarch64;
mod fixed4;
mod loongarch64;
mod ppc64le;
mod s390x;
mod x86_64;

use kelf::{Rela, SectionId, SymbolId};

use crate::elf::Elf;
use crate::error::Result;

pub trait Arch: Sync + std::fmt::Debug {
    /// Adjust a freshly read object (e.g. LoongArch's local labels).
    fn preprocess(&self, obj: &mut kelf::Object) -> std::result::Result<(), String> {
        let _ = obj;
        Ok(())
    }
    /// Does this architecture record ftrace sites in `__patchable_function_entries`?
    fn uses_pfe(&self) -> bool {
        false
    }
    /// TOC-relative relocation types (ppc64le), resolved through `.rela.toc`.
    fn is_toc_reloc(&self, r_type: u32) -> bool {
        let _ = r_type;
        false
    }
    /// Refuse patched code the architecture cannot run from a module (ppc64le sibling calls).
    fn check_patched_functions(&self, out: &Elf) -> Result<()> {
        let _ = out;
        Ok(())
    }
    fn name(&self) -> &'static str;
    fn big_endian(&self) -> bool {
        false
    }
    /// The 64-bit absolute relocation type.
    fn abs64(&self) -> u32;
    /// Is `r_type` a relocation type of this architecture at all (garbled input check)?
    fn is_valid_rela_type(&self, r_type: u32) -> bool {
        let _ = r_type;
        true
    }
    /// Instruction start offsets of a code buffer, or the offset that does not decode.
    fn decode_starts(&self, code: &[u8]) -> std::result::Result<Vec<u32>, usize>;
    /// Length of the instruction at the start of `code` (0 if it does not decode).
    fn insn_len(&self, code: &[u8]) -> usize;
    /// The addend of `rela` adjusted to the offset it designates within its symbol.
    fn rela_target_offset(&self, elf: &Elf, relasec: SectionId, rela: &Rela) -> Result<i64>;
    /// Is `insn` a load of an immediate into an argument register (a `__LINE__` candidate)?
    fn is_load_immediate(&self, insn: &[u8]) -> bool;
    /// Only `__warn_printk` calls justify a `__LINE__`-only change.
    fn line_change_warn_printk_only(&self) -> bool {
        false
    }
    /// Does this function start with an ftrace call site?
    fn has_func_profiling(&self, elf: &Elf, sym: SymbolId) -> bool;
    /// Expected offset of a bundled function within its section (padding, local entry).
    fn bundled_func_offset(&self, elf: &Elf, sym: SymbolId) -> u64 {
        let _ = (elf, sym);
        0
    }
    /// `__patchable_function_entries` is a by-product here (not used by ftrace): ignore it.
    fn ignores_patchable_function_entries(&self) -> bool {
        false
    }
    /// Other sections whose changes never matter on this architecture.
    fn ignored_section(&self, name: &str) -> bool {
        let _ = name;
        false
    }
    /// Objtool `__pfx_` symbols exist on this architecture.
    fn has_prefix_symbols(&self) -> bool {
        false
    }
    /// Mapping symbols (`$x`, `$d`) that must never be correlated.
    fn is_mapping_symbol(&self, elf: &Elf, sym: SymbolId) -> bool {
        let _ = (elf, sym);
        false
    }
    /// Does relocation `i` of `relasec` take the address of a function (a function pointer)?
    fn is_function_pointer(&self, elf: &Elf, relasec: SectionId, i: usize) -> bool;
    /// Relocation types that are PC-relative references to the end of a data section
    /// (the "loop end" idiom), which may point one past a symbol.
    fn is_end_of_section_ref(&self, r_type: u32) -> bool;
    /// Relocation types that must stay normal relocations (never klp relocations).
    fn keeps_normal_rela(&self, r_type: u32, relasec_name: &str) -> bool {
        let _ = (r_type, relasec_name);
        false
    }
    /// Stubs the module loader generates in every module (s390 expolines).
    fn is_module_local_stub(&self, name: &str) -> bool {
        let _ = name;
        false
    }
    /// ppc64le: a global function whose local entry point the object references.
    fn is_localentry_bundled(&self, elf: &Elf, sym: SymbolId) -> bool {
        let _ = (elf, sym);
        false
    }
    /// Special sections, in processing order.
    fn special_sections(&self) -> &'static [crate::special::SpecialSection];
    /// Offset of the ftrace call site within the function's section, for
    /// `__mcount_loc` / `__patchable_function_entries`.
    fn mcount_offset(&self, elf: &Elf, sym: SymbolId) -> Result<u64>;
}

static X86_64: x86_64::X86_64 = x86_64::X86_64;
static AARCH64: aarch64::Aarch64 = aarch64::Aarch64;
static LOONGARCH64: loongarch64::Loongarch64 = loongarch64::Loongarch64;
static PPC64LE: ppc64le::Ppc64le = ppc64le::Ppc64le;
static S390X: s390x::S390x = s390x::S390x;

pub fn for_machine(machine: u16) -> Option<&'static dyn Arch> {
    match machine {
        kelf::consts::EM_X86_64 => Some(&X86_64),
        kelf::consts::EM_AARCH64 => Some(&AARCH64),
        kelf::consts::EM_LOONGARCH => Some(&LOONGARCH64),
        kelf::consts::EM_PPC64 => Some(&PPC64LE),
        kelf::consts::EM_S390 => Some(&S390X),
        _ => None,
    }
}
