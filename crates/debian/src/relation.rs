//! Package relationship fields (`Depends`, `Pre-Depends`, ...): comma-separated relations,
//! each a `|`-separated list of alternatives `name[:arch] [(op version)] [[archs]] [<profiles>]`.

use std::cmp::Ordering;

use crate::version;

/// A version constraint operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Less,
    /// `<=` (and the obsolete `<`)
    LessEq,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    GreaterEq,
    /// `>>`
    Greater,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Less,
            "<=" | "<" => Op::LessEq,
            "=" => Op::Eq,
            ">=" | ">" => Op::GreaterEq,
            ">>" => Op::Greater,
            _ => return None,
        })
    }
}

/// One alternative of a relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    /// Package name.
    pub name: String,
    /// `:arch` qualifier (`any`, `native`, an architecture), if given.
    pub arch_qualifier: Option<String>,
    /// Version constraint, if given.
    pub constraint: Option<(Op, String)>,
}

impl Dep {
    /// Does `version` of this package satisfy the constraint?
    pub fn accepts(&self, v: &str) -> bool {
        let Some((op, want)) = &self.constraint else {
            return true;
        };
        let c = version::compare(v, want);
        match op {
            Op::Less => c == Ordering::Less,
            Op::LessEq => c != Ordering::Greater,
            Op::Eq => c == Ordering::Equal,
            Op::GreaterEq => c != Ordering::Less,
            Op::Greater => c == Ordering::Greater,
        }
    }

    /// The version this dependency is pinned to with `=`, if it is.
    pub fn pinned(&self) -> Option<&str> {
        match &self.constraint {
            Some((Op::Eq, v)) => Some(v),
            _ => None,
        }
    }
}

/// One relation: any of its alternatives satisfies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    /// The alternatives, in order of preference.
    pub alternatives: Vec<Dep>,
}

/// Parses a relationship field. Malformed alternatives are skipped, not guessed at.
pub fn parse(field: &str) -> Vec<Relation> {
    field
        .split(',')
        .map(|rel| Relation {
            alternatives: rel.split('|').filter_map(parse_dep).collect(),
        })
        .filter(|r| !r.alternatives.is_empty())
        .collect()
}

fn parse_dep(text: &str) -> Option<Dep> {
    let text = text.trim();
    // Architecture restrictions `[...]` and build profiles `<...>` do not apply to binary
    // package relations in an index; drop them.
    let end = text.find(['[', '<']).map_or(text.len(), |i| {
        // `<` may also start an operator inside the parentheses.
        match text.find('(') {
            Some(p) if p < i => text.len(),
            _ => i,
        }
    });
    let text = text[..end].trim();
    let (head, constraint) = match text.split_once('(') {
        Some((h, rest)) => {
            let inner = rest.split_once(')')?.0.trim();
            let op_len = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let op = Op::parse(inner[..op_len].trim())?;
            let v = inner[op_len..].trim();
            if v.is_empty() {
                return None;
            }
            (h.trim(), Some((op, v.to_string())))
        }
        None => (text, None),
    };
    let (name, arch_qualifier) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (head, None),
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(Dep {
        name: name.to_string(),
        arch_qualifier,
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_alternatives_and_qualifiers() {
        let f = "linux-base (>= 4.12~), linux-headers-6.12.118+deb13-common (= 6.12.118-1), \
                 linux-image-6.12.118+deb13-amd64 (= 6.12.118-1) | \
                 linux-image-6.12.118+deb13-amd64-unsigned (= 6.12.118-1), \
                 linux-kbuild-6.12.118+deb13, gcc-14, python3:any, libc6 (>= 2.36) [amd64] <!nocheck>";
        let r = parse(f);
        assert_eq!(r.len(), 7);
        assert_eq!(
            r[0].alternatives[0].constraint,
            Some((Op::GreaterEq, "4.12~".into()))
        );
        assert_eq!(r[1].alternatives[0].pinned(), Some("6.12.118-1"));
        assert_eq!(r[2].alternatives.len(), 2);
        assert_eq!(
            r[2].alternatives[1].name,
            "linux-image-6.12.118+deb13-amd64-unsigned"
        );
        assert_eq!(r[3].alternatives[0].constraint, None);
        assert_eq!(r[5].alternatives[0].name, "python3");
        assert_eq!(r[5].alternatives[0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(r[6].alternatives[0].name, "libc6");
        assert!(r[6].alternatives[0].accepts("2.36-9"));
        assert!(!r[6].alternatives[0].accepts("2.31-13"));
    }

    #[test]
    fn operators() {
        let d = |s: &str| parse(s).remove(0).alternatives.remove(0);
        assert!(d("a (<< 2)").accepts("1.9"));
        assert!(!d("a (<< 2)").accepts("2"));
        assert!(d("a (<= 2)").accepts("2"));
        assert!(d("a (>> 2)").accepts("2.0.1"));
        assert!(!d("a (>> 2)").accepts("2"));
        assert!(d("a (= 1:2)").accepts("1:2"));
        assert!(!d("a (= 1:2)").accepts("2"));
        assert!(d("a").accepts("anything"));
        assert!(parse("a (~ 2), , b").len() == 1);
    }
}
