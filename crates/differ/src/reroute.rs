//! A changed function without an ftrace hook (`notrace`, a syscall body `__do_sys_*`,
//! code built without `-pg`) cannot be redirected itself. When it is local to the object
//! and only a few traceable functions of the same object call it, the patch carries it
//! through them instead: the module gets its own copy of the function (a new local
//! function, not redirected), and the callers are patched, so that every call made after
//! the transition goes through a patched caller to the new copy. Tasks inside the old
//! copy are inside an old caller too, which the livepatch consistency model waits for.
//! A caller without a hook of its own carries the change only if it is carried in turn
//! (its callers, or, for a global function of `lib/`, its callers in other objects).

use kelf::consts::*;
use kelf::{SectionId, SymbolId};

use crate::elf::{Elf, Status};
use crate::names;
use crate::special;

/// At most this many callers carry a function (more suggests a helper used all over).
pub const MAX_CALLERS: usize = 8;

/// Sections whose references to a function follow the function wherever it goes
/// (regenerated per included function), so they are not callers.
fn follows_code(elf: &Elf, name: &str) -> bool {
    special::is_special_section(elf, name)
        || names::is_debug_section(name)
        || matches!(
            name,
            ".orc_unwind_ip"
                | ".orc_unwind"
                | "__mcount_loc"
                | "__patchable_function_entries"
                | ".return_sites"
                | ".retpoline_sites"
                | ".call_sites"
                | ".ibt_endbr_seal"
        )
        || name.starts_with(".discard")
}

/// The function a text section belongs to (a `.cold` part counts as its parent).
fn function_of(elf: &Elf, sec: SectionId) -> Option<SymbolId> {
    let f = elf.sec[sec].bundled?;
    let mut f = f;
    while let Some(p) = elf.sym[f].parent {
        f = p;
    }
    Some(f)
}

/// The functions of `patched` that call `n`, or why `n` cannot be carried by them.
/// `elsewhere`: `n` is global and kpatch-build found its callers in the other objects of
/// the parent (see [`crate::Carry`]): those of this object join them, and there may be
/// none here.
pub fn callers(patched: &Elf, n: SymbolId, elsewhere: bool) -> Result<Vec<SymbolId>, String> {
    let s = patched.y(n);
    if s.bind != STB_LOCAL && !elsewhere {
        return Err(format!(
            "{} is global, so other units may call it and their callers cannot be found here",
            s.name
        ));
    }
    let own = s.sec;
    let mut out: Vec<SymbolId> = Vec::new();
    for rs in patched.sections() {
        if !patched.is_rela(rs) {
            continue;
        }
        let base = patched.base_of(rs);
        if Some(base) == own || !patched.relas(rs).iter().any(|r| r.sym == n) {
            continue;
        }
        let bname = &patched.s(base).name;
        if follows_code(patched, bname) {
            continue;
        }
        let caller = patched
            .s(base)
            .is_text()
            .then(|| function_of(patched, base))
            .flatten();
        let Some(c) = caller else {
            return Err(format!(
                "its address is taken in {bname}, so calls through that pointer would still \
                 reach the old copy"
            ));
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() && !elsewhere {
        return Err("no function of this object calls it".into());
    }
    if out.len() > MAX_CALLERS {
        return Err(format!(
            "{} functions call it (at most {MAX_CALLERS} can carry it)",
            out.len()
        ));
    }
    Ok(out)
}

/// Whether `c` lacks an ftrace hook of its own (a new function has none to lack).
pub fn hookless(patched: &Elf, orig: &Elf, c: SymbolId) -> bool {
    patched.sym[c].twin.map(|t| orig.sym[t].has_func_profiling) == Some(false)
}

/// Carry `n` through `callers`: a new copy of `n` (private, or global for callers in
/// other objects), its callers patched.
pub fn apply(patched: &mut Elf, n: SymbolId, callers: &[SymbolId], elsewhere: bool) {
    patched.sym[n].status = Status::New;
    for &c in callers {
        if patched.sym[c].status == Status::Same {
            patched.sym[c].status = Status::Changed;
        }
    }
    let names: Vec<String> = callers.iter().map(|&c| patched.y(c).name.clone()).collect();
    let through = match (names.is_empty(), elsewhere) {
        (_, false) => format!("its caller(s) {}", names.join(", ")),
        (true, true) => "its callers in other objects".to_string(),
        (false, true) => format!(
            "its caller(s) {} and its callers in other objects",
            names.join(", ")
        ),
    };
    patched.notice(format!(
        "{} has no ftrace hook: the patch carries its new version through {through}",
        patched.y(n).name
    ));
    patched.rerouted.push((n, callers.to_vec()));
}

/// Patch the functions named in `force` although they did not change: each calls a
/// function another object of the module carries (`callee`). The callee is an undefined
/// symbol here, and stays one (the module's own copy defines it).
pub fn force_callers(patched: &mut Elf, force: &[(String, String)]) -> crate::Result<()> {
    fn find(patched: &Elf, name: &str, defined: bool) -> Option<SymbolId> {
        patched.symbols().find(|&id| {
            let y = patched.y(id);
            y.name == *name && y.sec.is_some() == defined
        })
    }
    for (callee, caller) in force {
        let Some(c) = find(patched, caller, true).filter(|&c| patched.y(c).kind == STT_FUNC) else {
            return Err(crate::error::fatal(format!(
                "{}: function {caller}, which calls {callee}, is not in this object",
                patched.name
            )));
        };
        if patched.sym[c].status == Status::Same {
            patched.sym[c].status = Status::Changed;
        }
        let n = find(patched, callee, false).unwrap_or(c);
        match patched.rerouted.iter_mut().find(|(k, _)| *k == n && n != c) {
            Some((_, v)) => v.push(c),
            None if n != c => patched.rerouted.push((n, vec![c])),
            None => {}
        }
    }
    Ok(())
}
