//! Explain each changed function: its first differing instruction on each side, the
//! source line of each (DWARF line table), and what made it change when that is not the
//! function's own source: an inlined callee, a header, a constant or a structure offset,
//! a different referenced symbol.

use debuginfo::lines::{inlined_at, Inlined, Loc};
use kelf::{SectionId, SymbolId};
use serde::Serialize;

use crate::arch::InsnDelta;
use crate::dwarf::{sym_address, Model};
use crate::elf::{Elf, Status};
use crate::names;
use crate::types::TypeReport;

/// How much the differ says about each changed function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Explain {
    /// Not in the log (still in the [`crate::Report`]).
    Off,
    /// One line per changed function (the default).
    #[default]
    Line,
    /// Both instructions, both source lines, the inlining chain and the cause.
    Full,
}

/// Why one changed function changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The changed function.
    pub function: String,
    /// The part holding the first difference when it is not the function itself
    /// (a `.cold` part).
    pub part: Option<String>,
    /// Offset of the first differing instruction in the original (`None`: past its end).
    pub orig_offset: Option<u64>,
    /// Offset of the first differing instruction in the patched function.
    pub patched_offset: Option<u64>,
    /// That instruction of the original, as text, with what its relocations designate.
    pub orig_insn: Option<String>,
    /// That instruction of the patched function.
    pub patched_insn: Option<String>,
    /// Source line of the original instruction (DWARF line table).
    pub orig_line: Option<Loc>,
    /// Source line of the patched instruction.
    pub patched_line: Option<Loc>,
    /// Inlined calls covering the patched instruction, outermost first.
    pub inlined: Vec<Inlined>,
    /// What made the function change.
    pub cause: Cause,
}

/// What made a function change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// `source`, `inlined`, `header`, `type-layout`, `constant`, `reference`,
    /// `branch`, `length`, `no-code-change`.
    pub kind: &'static str,
    /// The explanation in words.
    pub text: String,
}

/// Where two functions first differ.
struct Diff {
    /// Offsets from the function starts (`None` past the end).
    o: Option<u64>,
    p: Option<u64>,
    delta: InsnDelta,
    /// Bytes equal, relocations differ.
    reloc_only: bool,
}

/// A function's code: its section, the range of its bytes, and the relocations that
/// apply to them (by offset).
struct Code<'a> {
    elf: &'a Elf,
    sym: SymbolId,
    sec: SectionId,
    start: u64,
    end: u64,
    rs: Option<SectionId>,
    /// (offset, index in `rs`), sorted.
    relas: Vec<(u64, usize)>,
}

/// What a relocation designates, for comparison.
#[derive(PartialEq)]
enum Target<'a> {
    Str(&'a [u8]),
    Sym(&'a str, i64),
    TocConstant,
}

impl<'a> Code<'a> {
    fn of(elf: &'a Elf, sym: SymbolId) -> Option<Code<'a>> {
        let s = elf.y(sym);
        let sec = s.sec?;
        let len = elf.s(sec).data.len() as u64;
        let end = if s.size > 0 { s.value + s.size } else { len };
        if s.value > end || end > len {
            return None;
        }
        let rs = elf.s(sec).rela;
        let mut relas: Vec<(u64, usize)> = rs
            .map(|r| {
                elf.relas(r)
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.offset >= s.value && x.offset < end)
                    .map(|(i, x)| (x.offset, i))
                    .collect()
            })
            .unwrap_or_default();
        relas.sort_unstable();
        Some(Code {
            elf,
            sym,
            sec,
            start: s.value,
            end,
            rs,
            relas,
        })
    }

    fn bytes(&self, off: u64, len: u64) -> &'a [u8] {
        let d = &self.elf.s(self.sec).data;
        d.get(off as usize..(off + len).min(self.end) as usize)
            .unwrap_or(&[])
    }

    fn insn_len(&self, off: u64) -> u64 {
        let code = self.bytes(off, self.end - off);
        (self.elf.arch.insn_len(code) as u64).max(1)
    }

    /// Relocations applying to [off, off + len).
    fn in_range(&self, off: u64, len: u64) -> &[(u64, usize)] {
        let a = self.relas.partition_point(|r| r.0 < off);
        let b = self.relas.partition_point(|r| r.0 < off + len);
        &self.relas[a..b]
    }

    fn target(&self, i: usize) -> Target<'a> {
        let Some(rs) = self.rs else {
            return Target::TocConstant;
        };
        let elf: &'a Elf = self.elf;
        let Some((ts, ti)) = elf.target_rela(rs, i) else {
            return Target::TocConstant;
        };
        if let Some(s) = elf.rela_string(ts, ti) {
            return Target::Str(s);
        }
        let r = &elf.relas(ts)[ti];
        let off = elf.rela_target_offset(ts, r).unwrap_or(r.addend);
        Target::Sym(elf.y(r.sym).name.as_str(), off)
    }

    /// The type of relocation `i` (of a non-empty [`Code::in_range`]).
    fn r_type(&self, i: usize) -> u32 {
        self.rs.map_or(0, |rs| self.elf.relas(rs)[i].r_type)
    }

    /// Do the relocations of two instructions designate the same things?
    fn same_relocs(&self, off: u64, len: u64, other: &Code, ooff: u64, olen: u64) -> bool {
        let (a, b) = (self.in_range(off, len), other.in_range(ooff, olen));
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.0 - off == y.0 - ooff
                    && self.r_type(x.1) == other.r_type(y.1)
                    && match (self.target(x.1), other.target(y.1)) {
                        (Target::Sym(n, o), Target::Sym(m, p)) => o == p && names::mangled_eq(n, m),
                        (t, u) => t == u,
                    }
            })
    }

    /// What the relocations of [off, off + len) designate, as text.
    fn reloc_texts(&self, off: u64, len: u64) -> Vec<String> {
        self.in_range(off, len)
            .iter()
            .map(|&(_, i)| match self.target(i) {
                Target::Str(s) => {
                    let s = String::from_utf8_lossy(s);
                    let short: String = s.chars().take(48).collect();
                    let more = if short.len() < s.len() { "..." } else { "" };
                    format!("{short:?}{more}")
                }
                Target::Sym(n, 0) => names::mangled_key(n),
                Target::Sym(n, o) => format!("{}{o:+#x}", names::mangled_key(n)),
                Target::TocConstant => "(toc constant)".into(),
            })
            .collect()
    }

    /// The instruction at `off` as text, with the symbols its relocations designate.
    fn insn_text(&self, off: u64) -> String {
        let len = self.insn_len(off);
        let mut s = self
            .elf
            .arch
            .format_insn(self.bytes(off, len), off - self.start);
        for t in self.reloc_texts(off, len) {
            s.push_str(&format!(" <{t}>"));
        }
        s
    }
}

/// The first instruction where two functions differ; a branch that only changes its
/// target is passed over when a later instruction differs otherwise.
fn first_diff(o: &Code, p: &Code) -> Option<Diff> {
    let (mut oo, mut po) = (o.start, p.start);
    let mut branch: Option<Diff> = None;
    loop {
        match (oo < o.end, po < p.end) {
            (false, false) => return branch,
            (true, false) | (false, true) => {
                return branch.or(Some(Diff {
                    o: (oo < o.end).then_some(oo - o.start),
                    p: (po < p.end).then_some(po - p.start),
                    delta: InsnDelta::Other,
                    reloc_only: false,
                }))
            }
            (true, true) => {}
        }
        let (ol, pl) = (o.insn_len(oo), p.insn_len(po));
        let (ob, pb) = (o.bytes(oo, ol), p.bytes(po, pl));
        let same_bytes = ob == pb;
        if same_bytes && o.same_relocs(oo, ol, p, po, pl) {
            oo += ol;
            po += pl;
            continue;
        }
        let delta = if same_bytes {
            InsnDelta::Other
        } else {
            p.elf.arch.insn_delta(ob, pb, oo - o.start, po - p.start)
        };
        let d = Diff {
            o: Some(oo - o.start),
            p: Some(po - p.start),
            delta,
            reloc_only: same_bytes,
        };
        match delta {
            InsnDelta::BranchTarget(..) => {
                branch.get_or_insert(d);
                oo += ol;
                po += pl;
            }
            _ => return Some(d),
        }
    }
}

/// What the explanations are made from.
pub struct Ctx<'a> {
    pub orig: &'a Elf,
    pub patched: &'a Elf,
    pub models: Option<(&'a Model<'a>, &'a Model<'a>)>,
    pub types: &'a TypeReport,
    /// Files the patch changes (paths as in the kernel tree), when known.
    pub changed_files: &'a [String],
}

/// Explanations for every changed function, in symbol-table order.
pub fn explain(cx: &Ctx, functions: &[SymbolId]) -> Vec<Explanation> {
    let mut out = Vec::new();
    for &ps in functions {
        if cx.patched.sym[ps].status != Status::Changed {
            continue;
        }
        let Some(os) = cx.patched.sym[ps].twin else {
            continue;
        };
        out.push(explain_one(cx, ps, os));
    }
    out
}

/// The read-only tables a function's code refers to whose contents changed: a switch's
/// lookup table (`CSWTCH.N`) or a changed `static const` object.
fn lookup_tables(elf: &Elf, f: SymbolId) -> Vec<String> {
    let Some(rela) = elf.y(f).sec.and_then(|s| elf.s(s).rela) else {
        return Vec::new();
    };
    let mut out: Vec<String> = elf
        .relas(rela)
        .iter()
        .filter_map(|r| {
            let y = elf.y(r.sym);
            let name = match (y.kind, y.sec) {
                (kelf::consts::STT_SECTION, Some(sec)) => &elf.y(elf.sec[sec].bundled?).name,
                _ => &y.name,
            };
            let changed_table = crate::compare::rodata_users(elf, r.sym).is_some()
                || (y.kind == kelf::consts::STT_SECTION
                    && y.sec
                        .and_then(|sec| elf.sec[sec].bundled)
                        .is_some_and(|b| crate::compare::rodata_users(elf, b).is_some()));
            (name.starts_with("CSWTCH.") || changed_table).then(|| name.clone())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn explain_one(cx: &Ctx, ps: SymbolId, os: SymbolId) -> Explanation {
    let function = cx.patched.y(ps).name.clone();
    // The function itself, then its subfunctions (`.cold`, `.part.N`).
    let mut parts = vec![(ps, os)];
    for &c in &cx.patched.sym[ps].children {
        if let Some(t) = cx.patched.sym[c].twin {
            parts.push((c, t));
        }
    }
    for (i, &(p, o)) in parts.iter().enumerate() {
        let (Some(pc), Some(oc)) = (Code::of(cx.patched, p), Code::of(cx.orig, o)) else {
            continue;
        };
        let Some(d) = first_diff(&oc, &pc) else {
            continue;
        };
        let part = (i > 0).then(|| cx.patched.y(p).name.clone());
        return describe(cx, function, part, &oc, &pc, &d);
    }
    let carried: Vec<String> = cx
        .patched
        .rerouted
        .iter()
        .filter(|(_, callers)| callers.contains(&ps))
        .map(|(n, _)| cx.patched.y(*n).name.clone())
        .collect();
    let tables: Vec<String> = parts
        .iter()
        .flat_map(|&(p, _)| lookup_tables(cx.patched, p))
        .collect();
    let cause = if !tables.is_empty() && carried.is_empty() {
        Cause {
            kind: "lookup-table",
            text: format!(
                "no instruction differs, but what its read-only table {} holds does (a \
                 `static const` array, or the lookup table of a `switch` that returns values)",
                tables.join(", ")
            ),
        }
    } else if carried.is_empty() {
        Cause {
            kind: "no-code-change",
            text: "no instruction differs: it changed with a part of it or its section \
                   (a .cold part branching back, or a move to .text.unlikely)"
                .into(),
        }
    } else {
        Cause {
            kind: "carries-callee",
            text: format!(
                "it calls {}, which changed but has no ftrace hook: patched so that its \
                 calls reach the new version",
                carried.join(", ")
            ),
        }
    };
    Explanation {
        function,
        part: None,
        orig_offset: None,
        patched_offset: None,
        orig_insn: None,
        patched_insn: None,
        orig_line: None,
        patched_line: None,
        inlined: Vec::new(),
        cause,
    }
}

/// The source position of an offset in a function.
fn line_at(m: &Model, code: &Code, off: Option<u64>) -> Option<Loc> {
    let addr = sym_address(code.elf, code.sym, off?)?;
    m.lines.at(&m.dies, addr)
}

fn describe(
    cx: &Ctx,
    function: String,
    part: Option<String>,
    oc: &Code,
    pc: &Code,
    d: &Diff,
) -> Explanation {
    let (orig_line, patched_line, inlined) = match cx.models {
        Some((om, pm)) => {
            let inl =
                d.p.and_then(|o| sym_address(pc.elf, pc.sym, o))
                    .map(|a| inlined_at(&pm.dies, a))
                    .unwrap_or_default();
            (line_at(om, oc, d.o), line_at(pm, pc, d.p), inl)
        }
        None => (None, None, Vec::new()),
    };
    let mut e = Explanation {
        function,
        part,
        orig_offset: d.o,
        patched_offset: d.p,
        orig_insn: d.o.map(|o| oc.insn_text(oc.start + o)),
        patched_insn: d.p.map(|o| pc.insn_text(pc.start + o)),
        orig_line,
        patched_line,
        inlined,
        cause: Cause {
            kind: "source",
            text: String::new(),
        },
    };
    e.cause = cause(cx, d, &e, oc, pc);
    e
}

fn in_files(path: &str, files: &[String]) -> bool {
    files
        .iter()
        .any(|f| path == f || path.ends_with(&format!("/{f}")))
}

fn defined_at(i: &Inlined) -> String {
    i.defined
        .as_ref()
        .map(|l| format!(" (defined at {l})"))
        .unwrap_or_default()
}

fn cause(cx: &Ctx, d: &Diff, e: &Explanation, oc: &Code, pc: &Code) -> Cause {
    let c = |kind, text: String| Cause { kind, text };
    let line = e.patched_line.as_ref();
    if let InsnDelta::Constant(a, b) = d.delta {
        for f in &cx.types.changes {
            if let Some((m, _, _)) = f
                .offsets
                .iter()
                .find(|(_, x, y)| *x as i64 == a && *y as i64 == b)
            {
                return c(
                    "type-layout",
                    format!(
                        "member {m} of {} moved from offset {a:#x} to {b:#x}",
                        f.name
                    ),
                );
            }
        }
    }
    let changed = |i: &&Inlined| {
        i.defined
            .as_ref()
            .is_some_and(|l| in_files(&l.file, cx.changed_files))
    };
    // The innermost inlined call from a file the patch changes, else the innermost.
    if let Some(i) = e.inlined.iter().rev().find(changed).or(e.inlined.last()) {
        return c(
            "inlined",
            format!("inlined {}(){} changed", i.function, defined_at(i)),
        );
    }
    if let Some(l) = line {
        if !cx.changed_files.is_empty() && !in_files(&l.file, cx.changed_files) {
            return indirect(cx, pc, l);
        }
        let primary = cx
            .models
            .and_then(|(_, pm)| pm.dies.units.first())
            .map(|u| u.path.as_str());
        if primary.is_some_and(|p| p != l.file) {
            return c("header", format!("code from {l}"));
        }
    }
    match d.delta {
        InsnDelta::Constant(a, b) => {
            return c(
                "constant",
                format!("a constant or offset changed from {a:#x} to {b:#x}"),
            )
        }
        InsnDelta::BranchTarget(..) => {
            return c(
                "branch",
                "only branch targets differ: code moved inside the function".into(),
            )
        }
        InsnDelta::Other => {}
    }
    if d.reloc_only {
        return reference(d, oc, pc);
    }
    if d.o.is_none() || d.p.is_none() {
        let what = if d.p.is_none() { "shorter" } else { "longer" };
        return c("length", format!("the patched function is {what}"));
    }
    let name = names::mangled_key(&pc.elf.y(pc.sym).name);
    let uses: Vec<&str> = cx
        .types
        .changes
        .iter()
        .filter(|f| f.used_by.iter().any(|u| names::mangled_key(u) == name))
        .map(|f| f.name.as_str())
        .collect();
    let at = line.map(|l| format!(" at {l}")).unwrap_or_default();
    if !uses.is_empty() {
        return c(
            "type-layout",
            format!(
                "it uses {}, which the patch changes (first difference{at})",
                uses.join(", ")
            ),
        );
    }
    match line {
        Some(l) => c("source", format!("source change at {l}")),
        None => c("source", "the function's code changed".into()),
    }
}

/// The first difference is in code of a file the patch does not change: name what the
/// function inlines from a changed file, if anything.
fn indirect(cx: &Ctx, pc: &Code, l: &Loc) -> Cause {
    let inl = cx.models.and_then(|(_, pm)| {
        let start = sym_address(pc.elf, pc.sym, 0)?;
        let end = start + (pc.end - pc.start);
        debuginfo::lines::inlined_within(&pm.dies, start, end)
            .into_iter()
            .map(|(_, i)| i)
            .find(|i| {
                i.defined
                    .as_ref()
                    .is_some_and(|d| in_files(&d.file, cx.changed_files))
            })
    });
    match inl {
        Some(i) => Cause {
            kind: "inlined",
            text: format!(
                "it inlines {}(){}, which the patch changes (first difference at {l})",
                i.function,
                defined_at(&i)
            ),
        },
        None => Cause {
            kind: "indirect",
            text: format!(
                "code generated for {l} changed, a line the patch does not touch (a macro, \
                 constant or type from a changed file?)"
            ),
        },
    }
}

/// The first difference is only in what a relocation designates.
fn reference(d: &Diff, oc: &Code, pc: &Code) -> Cause {
    let c = |text: String| Cause {
        kind: "reference",
        text,
    };
    let (Some(o), Some(p)) = (d.o, d.p) else {
        return c("it refers to another symbol".into());
    };
    let first = |v: Vec<String>| v.into_iter().next();
    let (was, now) = (
        first(oc.reloc_texts(oc.start + o, oc.insn_len(oc.start + o))),
        first(pc.reloc_texts(pc.start + p, pc.insn_len(pc.start + p))),
    );
    match (was, now) {
        (Some(w), Some(n)) if w != n => c(format!("it refers to {n} instead of {w}")),
        _ => c("a relocation differs".into()),
    }
}

/// `fs/proc/base.c:120 -> 121`
fn line_pair(o: Option<&Loc>, p: Option<&Loc>) -> Option<String> {
    Some(match (o, p) {
        (Some(o), Some(p)) if o.file == p.file => format!("{o} -> {}", p.line),
        (Some(o), Some(p)) => format!("{o} -> {p}"),
        (None, Some(p)) => format!("-> {p}"),
        (Some(o), None) => format!("{o} ->"),
        (None, None) => return None,
    })
}

fn off(v: Option<u64>) -> String {
    v.map_or("end".into(), |o| format!("+{o:#x}"))
}

impl Explanation {
    /// The default form: one line.
    pub fn line(&self) -> String {
        let Some(_) = self.orig_offset.or(self.patched_offset) else {
            return format!("  {}: {}", self.function, self.cause.text);
        };
        let part = self
            .part
            .as_ref()
            .map(|p| format!(" (in {p})"))
            .unwrap_or_default();
        let insns = format!(
            "'{}' -> '{}'",
            self.orig_insn.as_deref().unwrap_or("(end)"),
            self.patched_insn.as_deref().unwrap_or("(end)")
        );
        let lines = line_pair(self.orig_line.as_ref(), self.patched_line.as_ref())
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        format!(
            "  {}{part}{}: {insns}{lines}: {}",
            self.function,
            off(self.patched_offset.or(self.orig_offset)),
            self.cause.text
        )
    }

    /// The `--explain` form: several lines.
    pub fn full(&self) -> Vec<String> {
        let mut v = Vec::new();
        let part = self
            .part
            .as_ref()
            .map(|p| format!(" in {p}"))
            .unwrap_or_default();
        v.push(format!(
            "  {}: first difference{part} at {} (original {})",
            self.function,
            off(self.patched_offset),
            off(self.orig_offset)
        ));
        let loc = |l: &Option<Loc>| l.as_ref().map(|l| format!("  [{l}]")).unwrap_or_default();
        if let Some(i) = &self.orig_insn {
            v.push(format!("    original: {i}{}", loc(&self.orig_line)));
        }
        if let Some(i) = &self.patched_insn {
            v.push(format!("    patched:  {i}{}", loc(&self.patched_line)));
        }
        for i in &self.inlined {
            let def = i
                .defined
                .as_ref()
                .map(|l| format!(", defined at {l}"))
                .unwrap_or_default();
            let call = i
                .call
                .as_ref()
                .map(|l| format!(", inlined at {l}"))
                .unwrap_or_default();
            v.push(format!("    inlined:  {}(){def}{call}", i.function));
        }
        v.push(format!("    cause:    {}", self.cause.text));
        v
    }
}
