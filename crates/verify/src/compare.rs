//! Comparing a rebuilt function with its copies in the target: bytes outside relocated
//! fields must be equal, and each relocated field must designate the same symbol (or the
//! same merged string or constant) in both.

use serde::Serialize;

use crate::func::Function;
use crate::image::{Copy, FieldCheck, Image};
use crate::realign;
use crate::sites::{Site, SiteKind};
use crate::x86;
use crate::Result;

/// The first difference between our function and a copy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Difference {
    /// Offset in the function.
    pub offset: u64,
    /// Our instruction there, disassembled.
    pub ours: String,
    /// The target's instruction there.
    pub theirs: String,
    /// What differs, when it is not the bytes (a size, a call's target).
    pub detail: Option<String>,
}

/// Result of one function.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Equal: `fields` relocated fields designate the same targets, `unchecked` could
    /// not be named (their bytes were skipped).
    Identical {
        /// Where the copy is (link-time address, or offset in its section).
        address: u64,
        /// The copy's `sympos`.
        sympos: u64,
        /// Relocated fields whose targets were compared.
        fields: usize,
        /// Relocated fields whose targets cannot be named (their bytes are skipped).
        unchecked: usize,
    },
    /// Differs from every copy in the target; the difference with the closest one.
    Differs {
        /// Where the closest copy is.
        address: u64,
        /// Its `sympos`.
        sympos: u64,
        /// Our function's size.
        size: u64,
        /// The copy's size, when the target says.
        target_size: Option<u64>,
        #[serde(flatten)]
        /// The first difference.
        first: Difference,
    },
    /// The target has no function of that name.
    Missing,
    /// A weak definition that the target replaced with another (a strong definition
    /// elsewhere): this code is not what runs under that name, and nothing calls it.
    Overridden,
}

impl Verdict {
    /// Whether the function is identical to the target's.
    pub fn is_identical(&self) -> bool {
        matches!(self, Verdict::Identical { .. })
    }
}

/// Compares `f` with each of its copies in `image`; identical to one is enough.
pub fn function(image: &mut dyn Image, f: &Function, sites: &[Site]) -> Result<Verdict> {
    Ok(function_copy(image, f, sites)?.0)
}

/// As [`function`], with the copy `f` is identical to.
pub fn function_copy(
    image: &mut dyn Image,
    f: &Function,
    sites: &[Site],
) -> Result<(Verdict, Option<Copy>)> {
    let copies = image.candidates(f)?;
    let mut best: Option<Verdict> = None;
    for mut copy in copies {
        let mut result = with_copy(image, f, sites, &copy)?;
        if result.is_err() {
            // The same instructions with other alignment padding (call-padded objects).
            if let Some(fields) = realign::equal_without_padding(image, f, sites, &copy)? {
                result = Ok((fields, 0));
                copy.moved = realign::anchors(f, sites, &copy);
            }
        }
        match result {
            Ok((fields, unchecked)) => {
                let v = Verdict::Identical {
                    address: copy.addr,
                    sympos: copy.sympos,
                    fields,
                    unchecked,
                };
                return Ok((v, Some(copy)));
            }
            Err(first) => {
                // Keep the first candidate's difference: candidates come best first.
                if best.is_none() {
                    best = Some(Verdict::Differs {
                        address: copy.addr,
                        sympos: copy.sympos,
                        size: f.bytes.len() as u64,
                        target_size: copy.size,
                        first,
                    });
                }
            }
        }
    }
    if f.weak && best.is_some() {
        return Ok((Verdict::Overridden, None));
    }
    Ok((best.unwrap_or(Verdict::Missing), None))
}

/// `Ok((checked fields, unchecked fields))` when `f` equals `copy`, else the first
/// difference.
pub fn with_copy(
    image: &mut dyn Image,
    f: &Function,
    sites: &[Site],
    copy: &Copy,
) -> Result<std::result::Result<(usize, usize), Difference>> {
    let ours = &f.bytes;
    let theirs = &copy.bytes;
    let mut mask = vec![false; ours.len().max(theirs.len())];
    let mut hide = |off: u64, len: u64| {
        let end = ((off + len) as usize).min(mask.len());
        for m in mask.iter_mut().take(end).skip(off as usize) {
            *m = true;
        }
    };
    for fl in f.fields.iter().chain(copy.fields.iter()) {
        hide(fl.off, fl.size);
    }
    // objtool turns a static key's default jump into a NOP of the same length when it
    // processes the object; on IBT kernels (6.12) it does so only at the vmlinux link,
    // so the rebuilt object still has the jump.
    for s in sites.iter().filter(|s| s.kind == SiteKind::JumpLabel) {
        let (a, b) = (s.off as usize, (s.off + s.len) as usize);
        if let (Some(x), Some(y)) = (ours.get(a..b), theirs.get(a..b)) {
            if is_jump_or_nop(x) && is_jump_or_nop(y) {
                hide(s.off, s.len);
            }
        }
    }
    let n = ours.len().min(theirs.len());
    let mut first: Option<(u64, Option<String>)> = (0..n)
        .find(|&i| !mask[i] && ours[i] != theirs[i])
        .map(|i| (i as u64, None));
    let size_differs =
        copy.size.is_some_and(|s| s != ours.len() as u64) || theirs.len() < ours.len();
    if size_differs && first.is_none() {
        let s = copy.size.unwrap_or(theirs.len() as u64);
        first = Some((
            n as u64,
            Some(format!("size {} bytes, the target's {s}", ours.len())),
        ));
    }
    let (mut checked, mut unchecked) = (0, 0);
    for fl in &f.fields {
        if first.as_ref().is_some_and(|(o, _)| *o <= fl.off) {
            break;
        }
        match image.check_field(copy, fl)? {
            FieldCheck::Same => checked += 1,
            FieldCheck::Unchecked => unchecked += 1,
            FieldCheck::Differs(what) => {
                first = Some((
                    fl.off,
                    Some(format!(
                        "refers to {} where the target refers to {what}",
                        fl.target
                    )),
                ));
            }
        }
    }
    // A relocation the target has and we do not.
    if let Some(extra) = copy
        .fields
        .iter()
        .find(|g| !f.fields.iter().any(|fl| fl.off == g.off))
    {
        if first.as_ref().is_none_or(|(o, _)| extra.off < *o) {
            first = Some((
                extra.off,
                Some(format!(
                    "the target refers to {} here, ours does not",
                    extra.target
                )),
            ));
        }
    }
    Ok(match first {
        None => Ok((checked, unchecked)),
        Some((off, detail)) => {
            let start = insn_start(ours, off);
            Err(Difference {
                offset: off,
                ours: x86::disasm_at(ours, start, 0),
                theirs: x86::disasm_at(theirs, insn_start(theirs, off), 0),
                detail,
            })
        }
    })
}

/// A `jmp` (2 or 5 bytes) or a NOP of the same length.
fn is_jump_or_nop(b: &[u8]) -> bool {
    matches!((b.len(), b.first()), (2, Some(0xeb)) | (5, Some(0xe9))) || x86::is_nop_of_len(b)
}

/// Start of the instruction that contains `off` (or `off` itself).
fn insn_start(code: &[u8], off: u64) -> u64 {
    let starts = x86::insn_starts(code);
    x86::insn_around(code, &starts, off).map_or(off, |(s, _)| s)
}
