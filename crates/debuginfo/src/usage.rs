//! Which types have instances in the running kernel, read from the original object's
//! DWARF, and which functions of an object use a type.
//!
//! A type is *live* when objects of it may already exist when the patch is applied and
//! be handed to patched code:
//! - it is reachable from a variable with static storage (a global, a `static`, a
//!   static local, or an `extern` declaration of another unit's variable);
//! - it is reachable from a parameter, return value or local variable of a function the
//!   patch leaves unchanged, or from the prototype of a function defined elsewhere;
//! - it is reachable *through a pointer* from a parameter or local of a changed
//!   function (the pointer designates an object the old code may have made), or from
//!   any parameter of a changed function with external linkage (its callers are in
//!   other units and unchanged).
//!
//! "Reachable" follows typedefs, qualifiers, arrays, members, pointers and function
//! pointer types. Objects held by value on the stack of a changed function are not live:
//! the patched function makes its own. Types only new functions use are not in the
//! original at all.

use gimli::constants as dw;

use crate::die::{DieId, Dies, DECLARATION, EXTERNAL, HAS_PC, INLINE, NONE, STATIC_ADDR};
use crate::types::Types;

/// What the caller knows about a concrete function, found by its code address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FnState {
    Unchanged,
    Changed,
    /// Not in the symbol table the caller has (treated as unchanged: conservative).
    Unknown,
}

/// Why a type is live: the root it is reachable from, and the nearest named type on the
/// way (when the root is not the type itself).
#[derive(Clone, Debug)]
pub struct Reason {
    pub root: String,
    pub via: Option<DieId>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    Stack,
}

pub struct Liveness {
    reasons: Vec<String>,
    /// Per DIE: (reason index + 1, via) when live.
    live: Vec<(u32, DieId)>,
}

impl Liveness {
    pub fn reason(&self, die: DieId) -> Option<Reason> {
        let &(r, via) = self.live.get(die as usize)?;
        (r != 0).then(|| Reason {
            root: self.reasons[r as usize - 1].clone(),
            via: (via != NONE).then_some(via),
        })
    }
}

/// The concrete function a DIE belongs to (nearest subprogram ancestor), if any.
fn owner(dies: &Dies, id: DieId) -> Option<DieId> {
    let mut p = dies.get(id)?.parent;
    while let Some(d) = dies.get(p) {
        if d.tag == dw::DW_TAG_subprogram {
            return Some(p);
        }
        p = d.parent;
    }
    None
}

fn fn_name(dies: &Dies, sub: DieId) -> String {
    dies.name_of(sub).unwrap_or("?").to_string()
}

/// Compute live types. `state` classifies a concrete subprogram by its lowest code
/// address (a synthetic address, see [`crate::load::address`]).
pub fn liveness(types: &Types, state: &dyn Fn(u64) -> FnState) -> Liveness {
    let dies = types.dies;
    let mut lv = Liveness {
        reasons: Vec::new(),
        live: vec![(0, NONE); dies.dies.len()],
    };
    let mut stack_seen = vec![false; dies.dies.len()];
    let mut work: Vec<(DieId, Mode, u32, DieId)> = Vec::new();
    for (i, d) in dies.dies.iter().enumerate() {
        let id = i as DieId;
        let is_sub = d.tag == dw::DW_TAG_subprogram;
        if !(is_sub || d.tag == dw::DW_TAG_variable || d.tag == dw::DW_TAG_formal_parameter) {
            continue;
        }
        let ty = dies.type_of(id);
        if ty == NONE {
            continue;
        }
        let Some((mode, why)) = classify(dies, id, is_sub, state) else {
            continue;
        };
        lv.reasons.push(why);
        work.push((ty, mode, lv.reasons.len() as u32, NONE));
    }
    // Stack roots whose pointers lead to live objects get a reason saying so.
    let mut through_pointer: std::collections::HashMap<u32, u32> = Default::default();
    while let Some((t, mode, reason, via)) = work.pop() {
        let Some(d) = dies.get(t) else { continue };
        if lv.live[t as usize].0 != 0 {
            continue;
        }
        if mode == Mode::Live {
            lv.live[t as usize] = (reason, via);
        } else {
            if stack_seen[t as usize] {
                continue;
            }
            stack_seen[t as usize] = true;
        }
        let next_via = if types.by_die.contains_key(&t) {
            t
        } else {
            via
        };
        // Leaving the stack: objects behind a pointer may predate the patch.
        let live_reason = if mode == Mode::Stack {
            *through_pointer.entry(reason).or_insert_with(|| {
                let root = &lv.reasons[reason as usize - 1];
                lv.reasons.push(format!(
                    "pointers in {root} may designate objects made before the patch"
                ));
                lv.reasons.len() as u32
            })
        } else {
            reason
        };
        match d.tag {
            dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type => {
                work.push((d.ty, Mode::Live, live_reason, next_via));
            }
            dw::DW_TAG_subroutine_type => {
                work.push((d.ty, Mode::Live, live_reason, next_via));
                for c in dies.children(t) {
                    work.push((dies.type_of(c), Mode::Live, live_reason, next_via));
                }
            }
            dw::DW_TAG_structure_type | dw::DW_TAG_union_type | dw::DW_TAG_class_type => {
                for c in dies.children(t) {
                    if dies.get(c).is_some_and(|m| m.tag == dw::DW_TAG_member) {
                        work.push((dies.type_of(c), mode, reason, next_via));
                    }
                }
            }
            _ => {
                if d.ty != NONE {
                    work.push((d.ty, mode, reason, next_via));
                }
            }
        }
    }
    lv
}

/// Is this variable, parameter or function (its return type) a root, and how?
fn classify(
    dies: &Dies,
    id: DieId,
    is_sub: bool,
    state: &dyn Fn(u64) -> FnState,
) -> Option<(Mode, String)> {
    let d = dies.get(id)?;
    let name = dies.name_of(id).unwrap_or("?");
    // The function whose code holds it: the subprogram itself for a return type.
    let sub = if is_sub { Some(id) } else { owner(dies, id) };
    let Some(sub) = sub else {
        // File scope: a variable of this unit or an extern declaration.
        let what = if d.has(DECLARATION) {
            "extern variable"
        } else {
            "variable"
        };
        return Some((Mode::Live, format!("{what} {name}")));
    };
    if d.tag == dw::DW_TAG_variable && (d.has(STATIC_ADDR) || d.has(EXTERNAL)) {
        return Some((
            Mode::Live,
            format!("static variable {name} in {}()", fn_name(dies, sub)),
        ));
    }
    let s = dies.get(sub)?;
    let fname = fn_name(dies, sub);
    if !s.has(HAS_PC) {
        if s.has(INLINE) || s.origin != NONE {
            // An abstract instance: its concrete copies inside real functions count.
            return None;
        }
        // A prototype of a function defined elsewhere: its callers hold such objects.
        return Some((Mode::Live, format!("the prototype of {fname}()")));
    }
    let st = s.low_pc.map_or(FnState::Unknown, state);
    let what = if is_sub {
        "the return value".to_string()
    } else if d.tag == dw::DW_TAG_formal_parameter {
        format!("parameter {name}")
    } else {
        format!("local {name}")
    };
    match st {
        FnState::Unchanged | FnState::Unknown => Some((
            Mode::Live,
            format!("{what} of {fname}(), which the patch does not change"),
        )),
        FnState::Changed => {
            let external = s.has(EXTERNAL) || dies.get(s.origin).is_some_and(|o| o.has(EXTERNAL));
            let direct_param = is_sub || d.parent == sub;
            if external && direct_param && d.tag != dw::DW_TAG_variable {
                Some((
                    Mode::Live,
                    format!("{what} of {fname}(), which other units call"),
                ))
            } else {
                Some((Mode::Stack, format!("{what} of {fname}()")))
            }
        }
    }
}

/// Functions (by lowest code address) whose parameters, locals or return value have
/// type `target` (directly, or through pointers, qualifiers, arrays and typedefs).
pub fn users(types: &Types, target: DieId) -> Vec<u64> {
    let dies = types.dies;
    let mut out = Vec::new();
    for (i, d) in dies.dies.iter().enumerate() {
        let id = i as DieId;
        let is_sub = d.tag == dw::DW_TAG_subprogram;
        if !(is_sub || d.tag == dw::DW_TAG_variable || d.tag == dw::DW_TAG_formal_parameter) {
            continue;
        }
        if !reaches(types, dies.type_of(id), target) {
            continue;
        }
        let sub = if is_sub { Some(id) } else { owner(dies, id) };
        if let Some(pc) = sub.and_then(|s| dies.get(s)).and_then(|s| s.low_pc) {
            if sub.and_then(|s| dies.get(s)).is_some_and(|s| s.has(HAS_PC)) && !out.contains(&pc) {
                out.push(pc);
            }
        }
    }
    out
}

/// Does `ty` name `target` through pointers, qualifiers, arrays and typedefs?
fn reaches(types: &Types, mut ty: DieId, target: DieId) -> bool {
    for _ in 0..32 {
        if ty == target {
            return true;
        }
        let Some(d) = types.dies.get(ty) else {
            return false;
        };
        if d.ty == NONE {
            return false;
        }
        ty = d.ty;
    }
    false
}

/// Variables with static storage (globals, statics, static locals, extern declarations)
/// whose type is `target`, an array of it or a pointer to it: their names.
pub fn variables_of(types: &Types, target: DieId) -> Vec<String> {
    let dies = types.dies;
    let mut out = Vec::new();
    for (i, d) in dies.dies.iter().enumerate() {
        if d.tag != dw::DW_TAG_variable {
            continue;
        }
        let id = i as DieId;
        let file_scope = owner(dies, id).is_none();
        if !(file_scope || d.has(STATIC_ADDR) || d.has(EXTERNAL)) {
            continue;
        }
        if reaches(types, dies.type_of(id), target) {
            if let Some(n) = dies.name_of(id) {
                out.push(n.to_string());
            }
        }
    }
    out
}
