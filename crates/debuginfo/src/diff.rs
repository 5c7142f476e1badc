//! Comparing the keyed types of two objects.

use serde::Serialize;

use crate::die::DieId;
use crate::types::{Kind, Member, Shape, TypeDef, Types};

/// A type whose shape differs between the original and the patched object.
#[derive(Clone, Debug, Serialize)]
pub struct TypeChange {
    pub key: String,
    pub display: String,
    pub kind: Kind,
    #[serde(skip)]
    pub orig_die: DieId,
    #[serde(skip)]
    pub patched_die: DieId,
    /// Size in bytes before and after, when both are known and they differ.
    pub size: Option<(u64, u64)>,
    /// What differs, one phrase each ("member b moves from offset 8 to 16").
    pub details: Vec<String>,
    /// Members whose offset, size or type changed, or that are gone.
    pub moved: Vec<String>,
    /// Members at a new byte offset: (member, old offset, new offset).
    #[serde(skip)]
    pub offsets: Vec<(String, u64, u64)>,
    /// False when existing objects keep their meaning: members added in padding,
    /// members removed, enumerators added.
    pub breaking: bool,
}

/// Every keyed type defined in both objects whose shape differs.
pub fn compare(orig: &Types, patched: &Types) -> Vec<TypeChange> {
    let mut out = Vec::new();
    for def in &orig.defs {
        let Some(&pi) = patched.by_key.get(&def.key) else {
            continue;
        };
        let pdef = &patched.defs[pi];
        if pdef.kind != def.kind {
            continue;
        }
        let (a, b) = (orig.shape(def), patched.shape(pdef));
        if a == b {
            continue;
        }
        if let Some(c) = compare_shapes(def, pdef, &a, &b) {
            out.push(c);
        }
    }
    out
}

fn change(def: &TypeDef, pdef: &TypeDef) -> TypeChange {
    TypeChange {
        key: def.key.clone(),
        display: def.display.clone(),
        kind: def.kind,
        orig_die: def.die,
        patched_die: pdef.die,
        size: None,
        details: Vec::new(),
        moved: Vec::new(),
        offsets: Vec::new(),
        breaking: false,
    }
}

fn compare_shapes(def: &TypeDef, pdef: &TypeDef, a: &Shape, b: &Shape) -> Option<TypeChange> {
    let mut c = change(def, pdef);
    match (a, b) {
        (
            Shape::Record {
                size: sa,
                members: ma,
            },
            Shape::Record {
                size: sb,
                members: mb,
            },
        ) => compare_records(&mut c, *sa, ma, *sb, mb),
        (
            Shape::Enum {
                size: sa,
                values: va,
            },
            Shape::Enum {
                size: sb,
                values: vb,
            },
        ) => {
            if let (Some(x), Some(y)) = (sa, sb) {
                if x != y {
                    c.size = Some((*x, *y));
                    c.details.push(format!("size {x} -> {y} bytes"));
                    c.breaking = true;
                }
            }
            for (n, v) in va {
                match vb.iter().find(|(m, _)| m == n) {
                    Some((_, w)) if w != v => {
                        c.details
                            .push(format!("enumerator {n} changes value {v} -> {w}"));
                        c.moved.push(n.clone());
                        c.breaking = true;
                    }
                    Some(_) => {}
                    None => {
                        c.details.push(format!("enumerator {n} (= {v}) removed"));
                        c.moved.push(n.clone());
                        c.breaking = true;
                    }
                }
            }
            for (n, v) in vb {
                if !va.iter().any(|(m, _)| m == n) {
                    c.details.push(format!("new enumerator {n} = {v}"));
                }
            }
        }
        // A typedef's size follows its target, which is compared on its own.
        (Shape::Typedef { target: ta, .. }, Shape::Typedef { target: tb, .. }) => {
            if ta == tb {
                return None;
            }
            c.details
                .push(format!("now stands for {tb} instead of {ta}"));
            c.breaking = true;
        }
        _ => return None,
    }
    (!c.details.is_empty()).then_some(c)
}

fn bits(m: &Member) -> String {
    match m.bit_size {
        Some(n) => format!("bit {} ({n} bits)", m.bit_offset),
        None if m.bit_offset.is_multiple_of(8) => format!("offset {}", m.bit_offset / 8),
        None => format!("bit {}", m.bit_offset),
    }
}

fn end_bit(m: &Member) -> u64 {
    m.bit_offset + m.bit_size.unwrap_or_else(|| m.size.unwrap_or(0) * 8)
}

fn compare_records(
    c: &mut TypeChange,
    sa: Option<u64>,
    ma: &[Member],
    sb: Option<u64>,
    mb: &[Member],
) {
    // Renamed members alone change nothing the running kernel depends on.
    let layout = |m: &[Member]| -> Vec<(u64, Option<u64>, String)> {
        m.iter()
            .map(|x| (x.bit_offset, x.bit_size, x.ty.clone()))
            .collect()
    };
    if sa == sb && layout(ma) == layout(mb) {
        return;
    }
    if let (Some(x), Some(y)) = (sa, sb) {
        if x != y {
            c.size = Some((x, y));
            c.details.push(format!("size {x} -> {y} bytes"));
            c.breaking = true;
        }
    }
    for m in ma {
        let Some(n) = mb.iter().find(|n| n.name == m.name) else {
            c.details
                .push(format!("member {} ({}) removed", m.name, bits(m)));
            continue;
        };
        if (m.bit_offset, m.bit_size) != (n.bit_offset, n.bit_size) {
            let what = if m.bit_size.is_some() || n.bit_size.is_some() {
                "bit-field "
            } else {
                ""
            };
            c.details.push(format!(
                "{what}member {} moves from {} to {}",
                m.name,
                bits(m),
                bits(n)
            ));
            c.moved.push(m.name.clone());
            if m.bit_size.is_none() && n.bit_size.is_none() {
                c.offsets
                    .push((m.name.clone(), m.bit_offset / 8, n.bit_offset / 8));
            }
            c.breaking = true;
        } else if m.ty != n.ty {
            c.details.push(format!(
                "member {} changes type {} -> {}",
                m.name, m.ty, n.ty
            ));
            c.moved.push(m.name.clone());
            c.breaking = true;
        } else if m.size != n.size {
            // The same name for a type whose size changed (an embedded struct).
            c.details.push(format!(
                "member {} ({}) changes size {} -> {} bytes",
                m.name,
                m.ty,
                m.size.unwrap_or(0),
                n.size.unwrap_or(0)
            ));
            c.moved.push(m.name.clone());
            c.breaking = true;
        }
    }
    for n in mb {
        if ma.iter().any(|m| m.name == n.name) {
            continue;
        }
        c.details
            .push(format!("new member {} at {}", n.name, bits(n)));
        // Storage existing objects use for another member now means something else.
        let overlaps = ma
            .iter()
            .any(|m| m.bit_offset < end_bit(n) && n.bit_offset < end_bit(m));
        if overlaps {
            c.breaking = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, off: u64, ty: &str, size: u64) -> Member {
        Member {
            name: name.into(),
            bit_offset: off * 8,
            bit_size: None,
            ty: ty.into(),
            size: Some(size),
        }
    }

    fn rec(size: u64, members: Vec<Member>) -> Shape {
        Shape::Record {
            size: Some(size),
            members,
        }
    }

    fn def() -> TypeDef {
        TypeDef {
            die: 0,
            kind: Kind::Struct,
            key: "struct s".into(),
            display: "struct s".into(),
        }
    }

    #[test]
    fn member_inserted_moves_the_rest() {
        let a = rec(16, vec![m("a", 0, "int", 4), m("b", 8, "long", 8)]);
        let b = rec(
            24,
            vec![
                m("a", 0, "int", 4),
                m("x", 8, "long", 8),
                m("b", 16, "long", 8),
            ],
        );
        let c = compare_shapes(&def(), &def(), &a, &b).unwrap();
        assert!(c.breaking);
        assert_eq!(c.size, Some((16, 24)));
        assert_eq!(c.moved, vec!["b".to_string()]);
        assert!(
            c.details
                .iter()
                .any(|d| d == "member b moves from offset 8 to offset 16"),
            "{:?}",
            c.details
        );
        assert!(c.details.iter().any(|d| d == "new member x at offset 8"));
    }

    #[test]
    fn rename_and_padding_use_are_not_breaking() {
        let a = rec(16, vec![m("a", 0, "int", 4), m("b", 8, "long", 8)]);
        let renamed = rec(16, vec![m("first", 0, "int", 4), m("b", 8, "long", 8)]);
        assert!(compare_shapes(&def(), &def(), &a, &renamed).is_none());
        let padded = rec(
            16,
            vec![
                m("a", 0, "int", 4),
                m("pad", 4, "int", 4),
                m("b", 8, "long", 8),
            ],
        );
        let c = compare_shapes(&def(), &def(), &a, &padded).unwrap();
        assert!(!c.breaking);
    }

    #[test]
    fn enumerator_values() {
        let e = |v: &[(&str, i64)]| Shape::Enum {
            size: Some(4),
            values: v.iter().map(|(n, x)| (n.to_string(), *x)).collect(),
        };
        let added = compare_shapes(
            &def(),
            &def(),
            &e(&[("A", 0), ("B", 1)]),
            &e(&[("A", 0), ("B", 1), ("C", 2)]),
        )
        .unwrap();
        assert!(!added.breaking);
        let shifted = compare_shapes(
            &def(),
            &def(),
            &e(&[("A", 0), ("B", 1)]),
            &e(&[("A", 0), ("N", 1), ("B", 2)]),
        )
        .unwrap();
        assert!(shifted.breaking);
        assert_eq!(shifted.moved, vec!["B".to_string()]);
    }
}
