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
    /// Byte width of an absolute data relocation (what DWARF sections use), `None` for
    /// any other type.
    fn data_reloc_width(&self, r_type: u32) -> Option<usize> {
        (r_type == self.abs64()).then_some(8)
    }
    /// The instruction at the start of `code`, at offset `ip` of its function, as text.
    fn format_insn(&self, code: &[u8], ip: u64) -> String {
        let _ = ip;
        let n = self
            .insn_len(code)
            .clamp(1, code.len().max(1))
            .min(code.len());
        hex_bytes(&code[..n])
    }
    /// How two instructions of the same length differ, when the architecture can tell.
    fn insn_delta(&self, a: &[u8], b: &[u8], ip_a: u64, ip_b: u64) -> InsnDelta {
        let _ = (a, b, ip_a, ip_b);
        InsnDelta::Other
    }
    /// Offset of the ftrace call site within the function's section, for
    /// `__mcount_loc` / `__patchable_function_entries`.
    fn mcount_offset(&self, elf: &Elf, sym: SymbolId) -> Result<u64>;
}

/// What distinguishes two instructions (see [`Arch::insn_delta`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsnDelta {
    /// Same operation and registers; an immediate or displacement differs (a constant,
    /// or a structure member's offset).
    Constant(i64, i64),
    /// Same branch to another place (code moved further on).
    BranchTarget(u64, u64),
    Other,
}

/// `48 8b 47 10`
pub fn hex_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
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
