//! x86_64 specifics: relocation field sizes, instruction boundaries and disassembly
//! (iced-x86, AT&T syntax as objdump prints it), and the instruction forms the kernel
//! writes over its own code at run time.

use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, Instruction};
use object::elf::*;

/// Size of the field a relocation type writes, `None` for a type this crate does not know
/// (such a relocation cannot be checked, and its bytes are not compared).
pub fn field_size(r_type: u32) -> Option<u64> {
    match r_type {
        R_X86_64_NONE => Some(0),
        R_X86_64_PC32
        | R_X86_64_PLT32
        | R_X86_64_32
        | R_X86_64_32S
        | R_X86_64_GOTPCREL
        | R_X86_64_GOTPCRELX
        | R_X86_64_REX_GOTPCRELX => Some(4),
        R_X86_64_64 | R_X86_64_PC64 => Some(8),
        _ => None,
    }
}

/// Whether the field holds `S + A - P` rather than `S + A`.
pub fn is_pc_relative(r_type: u32) -> bool {
    matches!(
        r_type,
        R_X86_64_PC32
            | R_X86_64_PLT32
            | R_X86_64_PC64
            | R_X86_64_GOTPCREL
            | R_X86_64_GOTPCRELX
            | R_X86_64_REX_GOTPCRELX
    )
}

/// The value of a relocated field, sign- or zero-extended as its type says.
pub fn field_value(r_type: u32, bytes: &[u8]) -> Option<i64> {
    Some(match r_type {
        R_X86_64_32 => i64::from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)),
        R_X86_64_64 | R_X86_64_PC64 => i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?),
        _ => i64::from(i32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)),
    })
}

/// The relocation type's name, for messages.
pub fn reloc_name(r_type: u32) -> String {
    match r_type {
        R_X86_64_PC32 => "R_X86_64_PC32".into(),
        R_X86_64_PLT32 => "R_X86_64_PLT32".into(),
        R_X86_64_32 => "R_X86_64_32".into(),
        R_X86_64_32S => "R_X86_64_32S".into(),
        R_X86_64_64 => "R_X86_64_64".into(),
        other => format!("relocation type {other}"),
    }
}

/// Start offsets of the instructions of `code`, decoded from its first byte.
pub fn insn_starts(code: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(code.len() / 4);
    let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    while d.can_decode() {
        let pos = d.position();
        let insn = d.decode();
        out.push(pos as u32);
        if insn.len() == 0 {
            break;
        }
    }
    out
}

/// The instruction of `code` (whose instructions start at `starts`) that contains
/// offset `off`: its start and end.
pub fn insn_around(code: &[u8], starts: &[u32], off: u64) -> Option<(u64, u64)> {
    let i = starts.partition_point(|s| u64::from(*s) <= off);
    let start = u64::from(*starts.get(i.checked_sub(1)?)?);
    let end = starts
        .get(i)
        .map(|e| u64::from(*e))
        .unwrap_or(code.len() as u64);
    (off < end).then_some((start, end))
}

/// Length of the instruction at the start of `code` (0 if it does not decode).
pub fn insn_len(code: &[u8]) -> usize {
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

/// The instruction at `off` of `code` (loaded at `ip`), as `+off: bytes  mnemonic`.
pub fn disasm_at(code: &[u8], off: u64, ip: u64) -> String {
    let Some(rest) = code.get(off as usize..) else {
        return format!("+{off:#x}: (beyond the end)");
    };
    let mut d = Decoder::with_ip(64, rest, ip.wrapping_add(off), DecoderOptions::NONE);
    if !d.can_decode() {
        return format!("+{off:#x}: (no bytes)");
    }
    let insn: Instruction = d.decode();
    let len = insn.len().max(1).min(rest.len());
    let bytes: Vec<String> = rest[..len].iter().map(|b| format!("{b:02x}")).collect();
    let text = if insn.is_invalid() {
        "(bad)".to_string()
    } else {
        let mut s = String::new();
        GasFormatter::new().format(&insn, &mut s);
        s
    };
    format!("+{off:#x}: {:<23} {text}", bytes.join(" "))
}

/// `endbr64`.
pub const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

/// Whether `b` is one of the 4-byte instructions the kernel writes over a sealed or
/// poisoned `endbr64`: `osp nopl (%rax)` (`66 0f 1f 00`, what 6.1 and 6.12 write when the
/// CPU enforces IBT), `nopl disp8(%rax)` (`0f 1f 40 xx`, earlier releases), or the
/// `ud1`/`ud2`-based poison some releases use.
pub fn is_sealed_endbr(b: &[u8]) -> bool {
    matches!(
        b,
        [0x66, 0x0f, 0x1f, 0x00] | [0x0f, 0x1f, 0x40, _] | [0x0f, 0xb9, _, _] | [0x0f, 0x0b, _, _]
    )
}

/// Whether `b` is a 5-byte NOP (what ftrace and static calls leave at an idle site).
pub fn is_nop5(b: &[u8]) -> bool {
    matches!(
        b,
        [0x0f, 0x1f, 0x44, 0x00, 0x00]
            | [0x66, 0x0f, 0x1f, 0x40, 0x00]
            | [0x66, 0x66, 0x66, 0x66, 0x90]
    )
}

/// Whether `b` starts with a NOP of exactly `b.len()` bytes (`66 90` or the 5-byte forms).
pub fn is_nop_of_len(b: &[u8]) -> bool {
    match b.len() {
        1 => b == [0x90],
        2 => b == [0x66, 0x90],
        5 => is_nop5(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_and_text() {
        // endbr64; call rel32; push %r15; ret
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0xe8, 0, 0, 0, 0, 0x41, 0x57, 0xc3];
        let starts = insn_starts(&code);
        assert_eq!(starts, vec![0, 4, 9, 11]);
        assert_eq!(insn_around(&code, &starts, 6), Some((4, 9)));
        assert_eq!(insn_around(&code, &starts, 11), Some((11, 12)));
        assert_eq!(insn_around(&code, &starts, 12), None);
        assert!(
            disasm_at(&code, 9, 0).ends_with("push %r15"),
            "{}",
            disasm_at(&code, 9, 0)
        );
        assert!(disasm_at(&code, 0, 0).contains("endbr64"));
        assert_eq!(insn_len(&code[4..]), 5);
    }

    #[test]
    fn field_values() {
        assert_eq!(
            field_value(R_X86_64_PC32, &[0xfc, 0xff, 0xff, 0xff]),
            Some(-4)
        );
        assert_eq!(
            field_value(R_X86_64_32, &[0xfc, 0xff, 0xff, 0xff]),
            Some(0xffff_fffc)
        );
        assert_eq!(field_value(R_X86_64_64, &[1, 0, 0, 0, 0, 0, 0, 0]), Some(1));
        assert_eq!(field_size(R_X86_64_PLT32), Some(4));
        assert!(is_pc_relative(R_X86_64_PLT32) && !is_pc_relative(R_X86_64_32S));
        assert!(is_nop5(&[0x0f, 0x1f, 0x44, 0, 0]) && is_nop_of_len(&[0x66, 0x90]));
    }

    /// The forms of a sealed `endbr64`: 6.1's and 6.12's `gen_endbr_poison()` is
    /// `0x001f0f66` (`osp nopl (%rax)`), written little-endian at every sealed ENDBR of an
    /// IBT kernel on a CPU that enforces IBT (real Debian 13 hosts; not the TCG test bed).
    #[test]
    fn sealed_endbr_forms() {
        let poison = 0x001f_0f66u32.to_le_bytes();
        assert_eq!(poison, [0x66, 0x0f, 0x1f, 0x00]);
        assert!(is_sealed_endbr(&poison));
        assert!(
            disasm_at(&poison, 0, 0).contains("nop"),
            "{}",
            disasm_at(&poison, 0, 0)
        );
        assert!(is_sealed_endbr(&[0x0f, 0x1f, 0x40, 0xd6]));
        // Neither the ENDBR itself nor other code or a breakpoint.
        assert!(!is_sealed_endbr(&ENDBR64));
        assert!(!is_sealed_endbr(&[0x66, 0x0f, 0x1f, 0x44]));
        assert!(!is_sealed_endbr(&[0xcc, 0x0f, 0x1f, 0x00]));
        assert!(!is_sealed_endbr(&[0x55, 0x48, 0x89, 0xe5]));
    }
}
