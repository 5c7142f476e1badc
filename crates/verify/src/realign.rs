//! Comparing a rebuilt function with a copy whose alignment padding differs.
//!
//! With call padding (6.12's IBT kernels) a function starts 16 bytes into its own section
//! in a `-ffunction-sections` object, while in the kernel it sits wherever the previous
//! function of its file ended. gcc aligns loops and jump targets relative to the section
//! (gcc-14 to 32 bytes), so the same code can carry NOP runs of other lengths before its
//! loops, and every branch across them has another displacement. Such a copy runs the
//! same instructions: this module compares the two instruction streams with NOPs left out,
//! branches by the instruction they land on, and relocated fields at their own offsets in
//! each copy.
//!
//! The same holds for a branch to another function: in our `-ffunction-sections` object
//! every function has its own section, so a tail call (`jmp memcmp`) is a `rel32` jump with
//! a relocation, while in the kernel, built without the option, the assembler resolved it
//! in `.text` and chose the 2-byte `rel8` form when the destination was near (lib/string.c's
//! `bcmp`). Such a branch is the same when the target's lands where our relocation points.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};

use crate::func::{Field, Function};
use crate::image::{Copy, FieldCheck, Image};
use crate::sites::{Site, SiteKind};
use crate::Result;

/// One instruction that is not padding.
struct Insn {
    off: u64,
    insn: Instruction,
}

/// The instructions of `code` except NOPs and the byte ranges in `skip`.
fn stream(code: &[u8], skip: &[(u64, u64)]) -> Vec<Insn> {
    let mut out = Vec::new();
    let mut d = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    while d.can_decode() {
        let insn = d.decode();
        let off = insn.ip();
        if insn.len() == 0 || insn.is_invalid() {
            // Undecodable bytes: keep them, so that they are compared.
            out.push(Insn { off, insn });
            break;
        }
        let skipped = skip.iter().any(|(s, e)| off >= *s && off < *e);
        if insn.mnemonic() != Mnemonic::Nop && !skipped {
            out.push(Insn { off, insn });
        }
    }
    out
}

/// The index of the instruction a branch to `target` executes first (NOPs skipped), or
/// `None` when the target is not the start of an instruction of the stream or a NOP run.
fn landing(s: &[Insn], code: &[u8], target: u64) -> Option<usize> {
    let i = s.partition_point(|x| x.off < target);
    if s.get(i).is_some_and(|x| x.off == target) {
        return Some(i);
    }
    // The target is in a NOP run that ends where instruction i starts.
    let end = s.get(i).map_or(code.len() as u64, |x| x.off);
    let from = i
        .checked_sub(1)
        .map_or(0, |p| s[p].off + s[p].insn.len() as u64);
    (from..end).contains(&target).then_some(i)
}

/// A branch within the function (no relocation): its target offset.
fn local_branch(insn: &Instruction) -> Option<u64> {
    let rel = matches!(
        insn.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    );
    let flow = matches!(
        insn.flow_control(),
        FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
    );
    (rel && flow).then(|| insn.near_branch_target())
}

/// Our instructions and the copy's, NOPs left out; `None` when their numbers differ.
fn streams(f: &Function, sites: &[Site], copy: &Copy) -> Option<(Vec<Insn>, Vec<Insn>)> {
    let theirs_len = copy.size.unwrap_or(copy.bytes.len() as u64) as usize;
    let theirs = copy.bytes.get(..theirs_len)?;
    // Static-key sites: a jump in our object, a NOP (left out) in the kernel's image.
    let skip: Vec<(u64, u64)> = sites
        .iter()
        .filter(|s| s.kind == SiteKind::JumpLabel)
        .map(|s| (s.off, s.off + s.len))
        .collect();
    let (a, b) = (stream(&f.bytes, &skip), stream(theirs, &[]));
    (a.len() == b.len()).then_some((a, b))
}

/// Where each of our instructions lies in `copy` (see [`Copy::moved`]), for a copy
/// [`equal_without_padding`] found equal.
pub fn anchors(f: &Function, sites: &[Site], copy: &Copy) -> Vec<(u64, u64)> {
    streams(f, sites, copy)
        .map(|(a, b)| a.iter().zip(&b).map(|(x, y)| (x.off, y.off)).collect())
        .unwrap_or_default()
}

/// Whether `f` equals `copy` once NOP padding is left out (see the module docs): the
/// number of relocated fields compared, or `None` when they differ.
pub fn equal_without_padding(
    image: &mut dyn Image,
    f: &Function,
    sites: &[Site],
    copy: &Copy,
) -> Result<Option<usize>> {
    let theirs_len = copy.size.unwrap_or(copy.bytes.len() as u64) as usize;
    let Some(theirs) = copy.bytes.get(..theirs_len) else {
        return Ok(None);
    };
    let ours = &f.bytes[..];
    let Some((a, b)) = streams(f, sites, copy) else {
        return Ok(None);
    };
    let mut matched = 0;
    let mut fields = 0;
    for (x, y) in a.iter().zip(&b) {
        let in_x: Vec<&Field> = fields_in(&f.fields, x);
        if let (Some(tx), Some(ty), true) = (
            local_branch(&x.insn),
            local_branch(&y.insn),
            in_x.is_empty(),
        ) {
            {
                let same = x.insn.mnemonic() == y.insn.mnemonic()
                    && x.insn.condition_code() == y.insn.condition_code()
                    && landing(&a, ours, tx).is_some()
                    && landing(&a, ours, tx) == landing(&b, theirs, ty);
                if !same {
                    return Ok(None);
                }
                continue;
            }
        }
        if let Some(same) = relocated_branch(image, x, y, &in_x, copy)? {
            if !same {
                return Ok(None);
            }
            fields += 1;
            continue;
        }
        if !same_bytes(ours, theirs, x, y, &in_x, copy) {
            return Ok(None);
        }
        for fl in in_x {
            let moved = Field {
                off: y.off + (fl.off - x.off),
                ..fl.clone()
            };
            matched += usize::from(copy.fields.iter().any(|g| g.off == moved.off));
            match image.check_field(copy, &moved)? {
                FieldCheck::Same => fields += 1,
                FieldCheck::Unchecked => {}
                FieldCheck::Differs(_) => return Ok(None),
            }
        }
    }
    // A relocation the target has and we do not.
    if matched != copy.fields.len() {
        return Ok(None);
    }
    Ok(Some(fields))
}

/// A relative branch of ours whose displacement is a PC-relative relocation, against the
/// same branch in the target with no relocation there (resolved by the assembler, maybe
/// in its short form): whether the target's lands where our relocation points. `None`
/// when the pair is not of that kind.
fn relocated_branch(
    image: &mut dyn Image,
    x: &Insn,
    y: &Insn,
    in_x: &[&Field],
    copy: &Copy,
) -> Result<Option<bool>> {
    let is_branch = |i: &Instruction| {
        matches!(i.op0_kind(), OpKind::NearBranch32 | OpKind::NearBranch64)
            || (i.op0_kind() == OpKind::NearBranch16 && i.len() <= 2)
    };
    let ([fl], true, true) = (in_x, is_branch(&x.insn), local_branch(&y.insn).is_some()) else {
        return Ok(None);
    };
    let x_end = x.off + x.insn.len() as u64;
    let theirs_relocated = copy
        .fields
        .iter()
        .any(|g| g.off >= y.off && g.off < y.off + y.insn.len() as u64);
    if fl.size != 4
        || fl.off + 4 != x_end
        || !crate::x86::is_pc_relative(fl.r_type)
        || theirs_relocated
    {
        return Ok(None);
    }
    if x.insn.mnemonic() != y.insn.mnemonic() || x.insn.condition_code() != y.insn.condition_code()
    {
        return Ok(Some(false));
    }
    // Our branch lands at S + A + 4 (the field is the instruction's last 4 bytes); the
    // target's at its own destination. Ask the image what a field at the target's
    // instruction holding that destination would designate.
    let dest = copy.addr.wrapping_add(y.insn.near_branch_target());
    let place = copy.addr.wrapping_add(y.off);
    let value = dest.wrapping_sub(4).wrapping_sub(place) as i64;
    let Ok(value) = i32::try_from(value) else {
        return Ok(Some(false));
    };
    let mut probe = copy.clone();
    let at = y.off as usize;
    if probe.bytes.len() < at + 4 {
        probe.bytes.resize(at + 4, 0);
    }
    probe.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let field = Field {
        off: y.off,
        ..(*fl).clone()
    };
    Ok(Some(matches!(
        image.check_field(&probe, &field)?,
        FieldCheck::Same
    )))
}

/// Our relocated fields inside instruction `x`.
fn fields_in<'a>(fields: &'a [Field], x: &Insn) -> Vec<&'a Field> {
    let end = x.off + x.insn.len() as u64;
    fields
        .iter()
        .filter(|fl| fl.off >= x.off && fl.off < end)
        .collect()
}

/// The two instructions' bytes are equal outside the relocated fields (ours, and the
/// target's own when it is a module).
fn same_bytes(ours: &[u8], theirs: &[u8], x: &Insn, y: &Insn, in_x: &[&Field], c: &Copy) -> bool {
    let len = x.insn.len();
    if len != y.insn.len() {
        return false;
    }
    let (xo, yo) = (x.off as usize, y.off as usize);
    let (Some(bx), Some(by)) = (ours.get(xo..xo + len), theirs.get(yo..yo + len)) else {
        return false;
    };
    let masked = |i: usize| {
        in_x.iter()
            .any(|fl| (fl.off..fl.off + fl.size).contains(&(x.off + i as u64)))
            || c.fields
                .iter()
                .any(|g| (g.off..g.off + g.size).contains(&(y.off + i as u64)))
    };
    (0..len).all(|i| bx[i] == by[i] || masked(i))
}
