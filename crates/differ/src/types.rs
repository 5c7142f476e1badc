//! Type-aware refusal: compare the layouts of every struct, union, enum and typedef of
//! the original and the patched object (their DWARF), and refuse the patch when a type
//! whose layout changes has objects in the running kernel; also refuse variables whose
//! type changes size. See DESIGN.md ("Type layouts") for how "objects in the running
//! kernel" is decided ([`debuginfo::usage`]) and how types are matched
//! ([`debuginfo::types`]).

use std::collections::HashMap;

use debuginfo::die::{DieId, Dies, DECLARATION, EXTERNAL, STATIC_ADDR};
use debuginfo::diff::TypeChange;
use debuginfo::gimli::constants as dw;
use debuginfo::types::{Kind, Types};
use debuginfo::usage;
use serde::Serialize;

use crate::dwarf::{orig_fn_state, Model};
use crate::elf::{Elf, Status};
use crate::refusal::{push_unique, Refusal};

/// What the type check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeReport {
    /// False when the objects carry no usable DWARF (see `skipped`).
    pub checked: bool,
    /// Why the check did not run (no DWARF, compressed or malformed debug sections).
    pub skipped: Option<String>,
    /// The types whose layout differs, refused or allowed.
    pub changes: Vec<TypeFinding>,
}

/// One type whose layout differs between the two objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeFinding {
    /// `struct foo`, `foo_t (typedef of an anonymous struct)`, ...
    pub name: String,
    /// Struct, union, enum or typedef.
    pub kind: Kind,
    /// `file:line` of the definition (header or source file).
    pub defined_at: Option<String>,
    /// Size in bytes before and after, when it changes.
    pub size: Option<(u64, u64)>,
    /// What differs, one phrase each ("member b moves from offset 8 to offset 16").
    pub details: Vec<String>,
    /// Members that moved, changed type or size, or went away.
    pub moved: Vec<String>,
    /// True when the patch is refused because of this type.
    pub refused: bool,
    /// Why objects of this type exist in the running kernel (refused types).
    pub live_because: Option<String>,
    /// Changed or new functions of the patch that declare objects or pointers of it.
    pub used_by: Vec<String>,
    /// Member offset moves, for the explanations: (member, old, new).
    #[serde(skip)]
    pub offsets: Vec<(String, u64, u64)>,
}

/// Compare the types of the two objects; add refusals to `out`.
pub(crate) fn check(
    orig: &Elf,
    patched: &Elf,
    models: Result<(&Model, &Model), String>,
    out: &mut Vec<Refusal>,
) -> TypeReport {
    let (om, pm) = match models {
        Ok(m) => m,
        Err(why) => {
            return TypeReport {
                checked: false,
                skipped: Some(why),
                changes: Vec::new(),
            }
        }
    };
    let (ot, pt) = (Types::new(&om.dies), Types::new(&pm.dies));
    let changes = debuginfo::diff::compare(&ot, &pt);
    let mut report = TypeReport {
        checked: true,
        skipped: None,
        changes: Vec::new(),
    };
    if !changes.is_empty() {
        let state = |addr: u64| orig_fn_state(orig, patched, om, addr);
        let live = usage::liveness(&ot, &state);
        for c in &changes {
            let f = finding(c, &ot, &pt, &live, patched, pm);
            if f.refused {
                out.push(type_refusal(&f));
            } else {
                patched.notice(format!("note: {}", allowed_note(&f)));
            }
            report.changes.push(f);
        }
    }
    check_variables(&ot, &pt, out);
    report
}

fn finding(
    c: &TypeChange,
    ot: &Types,
    pt: &Types,
    live: &usage::Liveness,
    patched: &Elf,
    pm: &Model,
) -> TypeFinding {
    let dies = ot.dies;
    let defined_at = dies.decl_path(c.orig_die).map(|f| {
        let line = dies.get(c.orig_die).map_or(0, |d| d.decl_line);
        format!("{f}:{line}")
    });
    let live_because = if !c.breaking {
        None
    } else if !dies.in_primary_file(c.orig_die) {
        Some(format!(
            "it is defined in {}, which other units of the running kernel share",
            dies.decl_path(c.orig_die).unwrap_or("a header")
        ))
    } else if let Some(r) = live.reason(c.orig_die) {
        let via = r
            .via
            .and_then(|v| ot.def(v))
            .filter(|d| d.key != c.key)
            .map(|d| format!(", through {}", d.display))
            .unwrap_or_default();
        Some(format!("{}{via}", r.root))
    } else if c.kind == Kind::Enum {
        Some("its values are compiled into code the running kernel keeps".into())
    } else {
        None
    };
    let mut used_by: Vec<String> = usage::users(pt, c.patched_die)
        .into_iter()
        .filter_map(|a| pm.func_at(a))
        .filter(|&s| patched.sym[s].status != Status::Same)
        .map(|s| patched.y(s).name.clone())
        .collect();
    for f in referencing(patched, &usage::variables_of(pt, c.patched_die)) {
        if !used_by.contains(&f) {
            used_by.push(f);
        }
    }
    TypeFinding {
        name: c.display.clone(),
        kind: c.kind,
        defined_at,
        size: c.size,
        details: c.details.clone(),
        moved: c.moved.clone(),
        refused: live_because.is_some(),
        live_because,
        used_by,
        offsets: c.offsets.clone(),
    }
}

/// Changed or new functions whose code refers to one of these variables.
fn referencing(patched: &Elf, vars: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if vars.is_empty() {
        return out;
    }
    for id in patched.symbols() {
        let s = patched.y(id);
        if s.kind != kelf::consts::STT_FUNC || patched.sym[id].status == Status::Same {
            continue;
        }
        let Some(rs) = s.sec.and_then(|sec| patched.s(sec).rela) else {
            continue;
        };
        let uses = patched.relas(rs).iter().any(|r| {
            let n = &patched.y(r.sym).name;
            vars.iter().any(|v| crate::names::mangled_eq(n, v))
        });
        if uses && !out.contains(&s.name) {
            out.push(s.name.clone());
        }
    }
    out
}

fn type_refusal(f: &TypeFinding) -> Refusal {
    let at = f
        .defined_at
        .as_deref()
        .map(|d| format!(" (defined at {d})"))
        .unwrap_or_default();
    let users = if f.used_by.is_empty() {
        "the patched code".to_string()
    } else {
        format!("the patched code ({})", f.used_by.join(", "))
    };
    let what = if f.kind == Kind::Enum {
        "changes its values"
    } else {
        "changes layout"
    };
    let message = format!(
        "{}{at} {what}: {}. Objects of it exist in the running kernel ({}), and {users} would \
         use them with the new layout. Keep {} as it is: attach new fields to existing objects \
         with a shadow variable keyed on the object (klp_shadow_get_or_alloc), and use a new \
         type only for objects the patched code creates itself",
        f.name,
        f.details.join("; "),
        f.live_because.as_deref().unwrap_or("?"),
        f.name,
    );
    Refusal::new("type-layout", f.name.clone(), message)
}

fn allowed_note(f: &TypeFinding) -> String {
    let why = if f.details.iter().any(|d| d.starts_with("size ")) || !f.moved.is_empty() {
        "no object of it exists in the running kernel (only new code or stack objects of \
         changed functions use it)"
    } else {
        "existing objects keep their layout"
    };
    format!(
        "{} changes ({}): allowed, {why}",
        f.name,
        f.details.join("; ")
    )
}

/// A static-storage variable: (scope-qualified name) → (DIE, size).
fn variables(t: &Types) -> HashMap<String, (DieId, Option<u64>)> {
    let dies: &Dies = t.dies;
    let mut m = HashMap::new();
    for (i, d) in dies.dies.iter().enumerate() {
        if d.tag != dw::DW_TAG_variable {
            continue;
        }
        let id = i as DieId;
        let at_file_scope = dies
            .get(d.parent)
            .is_some_and(|p| p.tag == dw::DW_TAG_compile_unit);
        let is_static =
            at_file_scope || d.has(STATIC_ADDR) || d.has(EXTERNAL) && d.has(DECLARATION);
        let Some(name) = dies.name_of(id) else {
            continue;
        };
        if !is_static {
            continue;
        }
        let scope = if at_file_scope {
            String::new()
        } else {
            let mut p = d.parent;
            let mut f = "?";
            while let Some(pd) = dies.get(p) {
                if pd.tag == dw::DW_TAG_subprogram {
                    f = dies.name_of(p).unwrap_or("?");
                    break;
                }
                p = pd.parent;
            }
            format!("{f}()::")
        };
        let size = t.size_of(dies.type_of(id));
        m.entry(format!("{scope}{name}")).or_insert((id, size));
    }
    m
}

/// Variables (globals, statics, static locals, extern declarations) whose type changes
/// size.
fn check_variables(ot: &Types, pt: &Types, out: &mut Vec<Refusal>) {
    let (ov, pv) = (variables(ot), variables(pt));
    let mut names: Vec<&String> = ov.keys().collect();
    names.sort();
    for name in names {
        let (odie, osize) = ov[name];
        let Some(&(pdie, psize)) = pv.get(name) else {
            continue;
        };
        let (Some(a), Some(b)) = (osize, psize) else {
            continue;
        };
        if a == b {
            continue;
        }
        let plain = name.rsplit("::").next().unwrap_or(name);
        let (oty, pty) = (
            ot.spell(ot.dies.type_of(odie)),
            pt.spell(pt.dies.type_of(pdie)),
        );
        let message = format!(
            "variable {name} changes size from {a} to {b} bytes (type {oty} -> {pty}): the \
             running kernel's {plain} keeps its old size and layout, and other code uses it \
             there. Keep its type as it is; put new state in a shadow variable \
             (klp_shadow_get_or_alloc) or a new variable"
        );
        push_unique(out, Refusal::new("variable-size", plain, message));
    }
}
