//! Type layouts: every struct, union, enum and typedef of an object, under a key that
//! names the same type in the original and the patched build, with a shape that says
//! everything the running kernel's data depends on (size, member offsets and types,
//! bit-fields, enumerator values).

use std::collections::HashMap;

use gimli::constants as dw;
use serde::Serialize;

use crate::die::{DieId, Dies, DECLARATION, NONE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Struct,
    Union,
    Enum,
    Typedef,
}

impl Kind {
    fn of(tag: gimli::DwTag) -> Option<Kind> {
        Some(match tag {
            dw::DW_TAG_structure_type | dw::DW_TAG_class_type => Kind::Struct,
            dw::DW_TAG_union_type => Kind::Union,
            dw::DW_TAG_enumeration_type => Kind::Enum,
            dw::DW_TAG_typedef => Kind::Typedef,
            _ => return None,
        })
    }

    pub fn word(self) -> &'static str {
        match self {
            Kind::Struct => "struct",
            Kind::Union => "union",
            Kind::Enum => "enum",
            Kind::Typedef => "typedef",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub bit_offset: u64,
    pub bit_size: Option<u64>,
    pub ty: String,
    pub size: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Record {
        size: Option<u64>,
        members: Vec<Member>,
    },
    Enum {
        size: Option<u64>,
        values: Vec<(String, i64)>,
    },
    Typedef {
        target: String,
        size: Option<u64>,
    },
}

/// One defined type.
#[derive(Clone, Debug)]
pub struct TypeDef {
    pub die: DieId,
    pub kind: Kind,
    /// Matches the same type in the other object: kind, name and scope; anonymous types
    /// are named by the typedef, member or variable that uses them.
    pub key: String,
    /// What messages call it.
    pub display: String,
}

/// All keyed types of one object.
pub struct Types<'d, 'a> {
    pub dies: &'d Dies<'a>,
    pub defs: Vec<TypeDef>,
    pub by_key: HashMap<String, usize>,
    pub by_die: HashMap<DieId, usize>,
    /// Which DIE names each anonymous type (typedef, member or variable), by priority.
    namer: HashMap<DieId, (u8, DieId)>,
}

const MODIFIERS: &[gimli::DwTag] = &[
    dw::DW_TAG_const_type,
    dw::DW_TAG_volatile_type,
    dw::DW_TAG_restrict_type,
    dw::DW_TAG_atomic_type,
    dw::DW_TAG_pointer_type,
    dw::DW_TAG_array_type,
];

impl<'d, 'a> Types<'d, 'a> {
    pub fn new(dies: &'d Dies<'a>) -> Types<'d, 'a> {
        let mut t = Types {
            dies,
            defs: Vec::new(),
            by_key: HashMap::new(),
            by_die: HashMap::new(),
            namer: HashMap::new(),
        };
        t.find_namers();
        for (i, d) in dies.dies.iter().enumerate() {
            let Some(kind) = Kind::of(d.tag) else {
                continue;
            };
            if d.has(DECLARATION) {
                continue;
            }
            let die = i as DieId;
            let Some((key, display)) = t.key(die, 0) else {
                continue;
            };
            let mut key = key;
            // Two types under one key (same name in two blocks of a function): number them.
            let mut n = 1;
            while t.by_key.contains_key(&key) {
                n += 1;
                key = format!("{key}#{n}");
            }
            t.by_key.insert(key.clone(), t.defs.len());
            t.by_die.insert(die, t.defs.len());
            t.defs.push(TypeDef {
                die,
                kind,
                key,
                display,
            });
        }
        t
    }

    /// Strip pointers, qualifiers and arrays.
    pub fn strip(&self, mut ty: DieId) -> DieId {
        for _ in 0..32 {
            match self.dies.get(ty) {
                Some(d) if MODIFIERS.contains(&d.tag) => ty = d.ty,
                _ => break,
            }
        }
        ty
    }

    fn is_anonymous_type(&self, id: DieId) -> bool {
        self.dies.get(id).is_some_and(|d| {
            d.name.is_none()
                && !d.has(DECLARATION)
                && Kind::of(d.tag).is_some_and(|k| k != Kind::Typedef)
        })
    }

    fn find_namers(&mut self) {
        for (i, d) in self.dies.dies.iter().enumerate() {
            let prio = match d.tag {
                dw::DW_TAG_typedef => 0,
                dw::DW_TAG_member => 2,
                dw::DW_TAG_variable => 3,
                _ => continue,
            };
            if d.ty == NONE {
                continue;
            }
            let target = self.strip(d.ty);
            if !self.is_anonymous_type(target) {
                continue;
            }
            let prio = if prio == 0 && target != d.ty { 1 } else { prio };
            let e = self.namer.entry(target).or_insert((prio, i as DieId));
            if prio < e.0 {
                *e = (prio, i as DieId);
            }
        }
    }

    /// Prefix for types defined inside a function.
    fn scope(&self, id: DieId) -> String {
        let mut p = self.dies.get(id).map_or(NONE, |d| d.parent);
        while let Some(d) = self.dies.get(p) {
            if d.tag == dw::DW_TAG_subprogram {
                return format!("{}()::", self.dies.name_of(p).unwrap_or("?"));
            }
            p = d.parent;
        }
        String::new()
    }

    /// (key, display) of a type DIE.
    fn key(&self, id: DieId, depth: u32) -> Option<(String, String)> {
        let d = self.dies.get(id)?;
        let kind = Kind::of(d.tag)?;
        if depth > 16 {
            return None;
        }
        let scope = self.scope(id);
        if let Some(name) = d.name {
            let k = format!("{scope}{} {name}", kind.word());
            let display = if kind == Kind::Typedef {
                format!("typedef {name}")
            } else {
                k.clone()
            };
            return Some((k, display));
        }
        let word = kind.word();
        match self.namer.get(&id) {
            Some(&(_, n)) => {
                let nd = self.dies.get(n)?;
                let nname = nd.name;
                match nd.tag {
                    dw::DW_TAG_typedef => {
                        let t = nname?;
                        Some((
                            format!("{scope}{word} {{typedef {t}}}"),
                            format!("{t} (typedef of an anonymous {word})"),
                        ))
                    }
                    dw::DW_TAG_member => {
                        let (pk, pd) = self.key(nd.parent, depth + 1)?;
                        let m = match nname {
                            Some(m) => m.to_string(),
                            None => format!("<anonymous #{}>", self.anon_index(nd.parent, n)),
                        };
                        Some((
                            format!("{word} {{{pk}.{m}}}"),
                            format!("anonymous {word} {m} in {pd}"),
                        ))
                    }
                    _ => {
                        let v = nname?;
                        Some((
                            format!("{scope}{word} {{variable {v}}}"),
                            format!("anonymous {word} of variable {v}"),
                        ))
                    }
                }
            }
            None if kind == Kind::Enum => {
                let first = self
                    .dies
                    .children(id)
                    .find_map(|c| self.dies.get(c).and_then(|e| e.name))?;
                Some((
                    format!("{scope}enum {{{first}, ...}}"),
                    format!("anonymous enum {{{first}, ...}}"),
                ))
            }
            None => None,
        }
    }

    /// Position of an unnamed member among the unnamed members of its record.
    fn anon_index(&self, record: DieId, member: DieId) -> usize {
        self.dies
            .children(record)
            .filter(|&c| {
                self.dies
                    .get(c)
                    .is_some_and(|d| d.tag == dw::DW_TAG_member && d.name.is_none())
            })
            .position(|c| c == member)
            .unwrap_or(0)
    }

    /// How a type is written, naming structs by key (never expanding them), so that it is
    /// finite and independent of the layouts of the types it names.
    pub fn spell(&self, ty: DieId) -> String {
        let mut out = String::new();
        self.spell_into(ty, &mut out, 0);
        out
    }

    fn spell_into(&self, ty: DieId, out: &mut String, depth: u32) {
        // Every call appends, so a length cap bounds the work even for DWARF whose
        // function types refer to themselves through many parameters.
        if depth > 24 || out.len() > 4096 {
            out.push_str("...");
            return;
        }
        let Some(d) = self.dies.get(ty) else {
            out.push_str("void");
            return;
        };
        match d.tag {
            dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type => {
                self.spell_into(d.ty, out, depth + 1);
                out.push_str(" *");
            }
            dw::DW_TAG_const_type => self.prefixed("const ", d.ty, out, depth),
            dw::DW_TAG_volatile_type => self.prefixed("volatile ", d.ty, out, depth),
            dw::DW_TAG_restrict_type => self.prefixed("restrict ", d.ty, out, depth),
            dw::DW_TAG_atomic_type => self.prefixed("_Atomic ", d.ty, out, depth),
            dw::DW_TAG_array_type => {
                self.spell_into(d.ty, out, depth + 1);
                for c in self.dies.children(ty) {
                    match self.dies.get(c).and_then(|s| s.value) {
                        Some(n) => out.push_str(&format!("[{n}]")),
                        None => out.push_str("[]"),
                    }
                }
            }
            dw::DW_TAG_subroutine_type => {
                out.push_str("fn(");
                let mut first = true;
                for c in self.dies.children(ty) {
                    let Some(p) = self.dies.get(c) else { continue };
                    if !first {
                        out.push_str(", ");
                    }
                    first = false;
                    if p.tag == dw::DW_TAG_unspecified_parameters {
                        out.push_str("...");
                    } else {
                        self.spell_into(p.ty, out, depth + 1);
                    }
                }
                out.push_str(") -> ");
                self.spell_into(d.ty, out, depth + 1);
            }
            _ => match self.by_die.get(&ty).map(|&i| &self.defs[i]) {
                Some(def) if def.kind == Kind::Typedef => out.push_str(d.name.unwrap_or("?")),
                Some(def) => out.push_str(&def.key),
                None => match (Kind::of(d.tag), d.name) {
                    // A declaration (incomplete type).
                    (Some(k), Some(n)) if k != Kind::Typedef => {
                        out.push_str(k.word());
                        out.push(' ');
                        out.push_str(n);
                    }
                    (_, Some(n)) => out.push_str(n),
                    _ => out.push('?'),
                },
            },
        }
    }

    fn prefixed(&self, p: &str, ty: DieId, out: &mut String, depth: u32) {
        out.push_str(p);
        self.spell_into(ty, out, depth + 1);
    }

    /// Size in bytes of a type, if known.
    pub fn size_of(&self, ty: DieId) -> Option<u64> {
        self.size_rec(ty, 0)
    }

    fn size_rec(&self, ty: DieId, depth: u32) -> Option<u64> {
        let d = self.dies.get(ty)?;
        if let Some(s) = d.byte_size {
            return Some(s);
        }
        if depth > 24 {
            return None;
        }
        match d.tag {
            dw::DW_TAG_pointer_type | dw::DW_TAG_reference_type => self
                .dies
                .units
                .get(usize::from(d.unit))
                .map(|u| u64::from(u.address_size)),
            dw::DW_TAG_array_type => {
                let mut n: u64 = 1;
                for c in self.dies.children(ty) {
                    let count = self.dies.get(c).and_then(|s| s.value).unwrap_or(0);
                    n = n.checked_mul(u64::try_from(count).ok()?)?;
                }
                n.checked_mul(self.size_rec(d.ty, depth + 1)?)
            }
            dw::DW_TAG_typedef
            | dw::DW_TAG_const_type
            | dw::DW_TAG_volatile_type
            | dw::DW_TAG_restrict_type
            | dw::DW_TAG_atomic_type => self.size_rec(d.ty, depth + 1),
            _ => None,
        }
    }

    /// The layout-relevant shape of a keyed type.
    pub fn shape(&self, def: &TypeDef) -> Shape {
        let d = &self.dies.dies[def.die as usize];
        match def.kind {
            Kind::Typedef => Shape::Typedef {
                target: self.spell(d.ty),
                size: self.size_of(d.ty),
            },
            Kind::Enum => Shape::Enum {
                size: d.byte_size,
                values: self
                    .dies
                    .children(def.die)
                    .filter_map(|c| self.dies.get(c))
                    .filter(|e| e.tag == dw::DW_TAG_enumerator)
                    .map(|e| (e.name.unwrap_or("?").to_string(), e.value.unwrap_or(0)))
                    .collect(),
            },
            Kind::Struct | Kind::Union => {
                let mut anon = 0;
                let mut members = Vec::new();
                for c in self.dies.children(def.die) {
                    let Some(m) = self.dies.get(c) else { continue };
                    if m.tag != dw::DW_TAG_member {
                        continue;
                    }
                    let name = match m.name {
                        Some(n) => n.to_string(),
                        None => {
                            anon += 1;
                            format!("<anonymous #{}>", anon - 1)
                        }
                    };
                    members.push(Member {
                        name,
                        bit_offset: m.bit_offset.unwrap_or(0),
                        bit_size: m.bit_size,
                        ty: self.spell(m.ty),
                        size: self.size_of(m.ty),
                    });
                }
                Shape::Record {
                    size: d.byte_size,
                    members,
                }
            }
        }
    }

    pub fn def(&self, die: DieId) -> Option<&TypeDef> {
        self.by_die.get(&die).map(|&i| &self.defs[i])
    }
}
