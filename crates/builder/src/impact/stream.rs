//! The confirmation: a candidate unit preprocessed before and after the patch (`make
//! <unit>.i`, the unit's own command line), both streams cut into file-scope items (line
//! markers dropped), compared in order. Items that differ seed a closure over the
//! stream's own declarations (a function that calls a changed inline, a variable of a
//! changed type, ...); the unit's object can change only if an item that emits code or
//! data is reached, or the emitted items are reordered. If none is, the unit is left out:
//! what changed are declarations that nothing it compiles uses.

use std::collections::{HashMap, HashSet};

use super::decl::{self, NoMacros};
use super::items::{ItemKind, Parsed};
use super::seeds_lcs;

/// One file-scope item of a preprocessed unit.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct SItem {
    hash: u64,
    names: Vec<String>,
    mentions: Vec<String>,
    emits: bool,
}

/// A preprocessed unit, reduced to what the comparison needs.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Stream {
    items: Vec<SItem>,
}

/// What the comparison found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The preprocessed streams are the same (layout aside).
    Same,
    /// They differ only in declarations no emitted item uses (named).
    Unused(Vec<String>),
    /// Emitted code or data may change: the items reached (functions, variables).
    Changed(Vec<String>),
}

/// Read a preprocessed unit.
pub fn read(text: Vec<u8>) -> Stream {
    let p = Parsed::new(text);
    let mut typedefs: HashSet<String> = HashSet::new();
    for it in &p.items {
        if it.kind == ItemKind::Decl && p.toks(it).first().is_some_and(|t| p.s(t) == "typedef") {
            let d = decl::info(&p, it, &NoMacros(&typedefs));
            typedefs.extend(d.names);
        }
    }
    let known = NoMacros(&typedefs);
    let mut items = Vec::with_capacity(p.items.len());
    for it in &p.items {
        match it.kind {
            ItemKind::LineMarker => continue,
            ItemKind::Decl => {
                let mut norm = p.norm(it);
                let mentions: Vec<String> = {
                    let mut m: Vec<String> = p.mentions(it).map(|m| m.into_owned()).collect();
                    m.sort_unstable();
                    m.dedup();
                    m
                };
                if mentions
                    .iter()
                    .any(|m| m.starts_with("__builtin_LINE") || m.starts_with("__builtin_FILE"))
                {
                    // Its value depends on where it stands.
                    norm.push_str(&format!(" @{}", p.lines(it).0));
                }
                let d = decl::info(&p, it, &known);
                items.push(SItem {
                    hash: xxhash_rust::xxh3::xxh3_64(norm.as_bytes()),
                    names: d.names,
                    mentions,
                    emits: d.emits || d.opaque,
                });
            }
            // #pragma and anything else: counts as emitting (it may change code).
            _ => items.push(SItem {
                hash: xxhash_rust::xxh3::xxh3_64(p.norm(it).as_bytes()),
                names: Vec::new(),
                mentions: Vec::new(),
                emits: true,
            }),
        }
    }
    Stream { items }
}

impl Stream {
    /// Number of file-scope items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No items at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Items reached from `seeds` through the stream's names.
fn reached(s: &Stream, seeds: &HashSet<String>) -> Vec<usize> {
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, it) in s.items.iter().enumerate() {
        for m in &it.mentions {
            by_name.entry(m.as_str()).or_default().push(i);
        }
    }
    let mut names: HashSet<&str> = seeds.iter().map(String::as_str).collect();
    let mut work: Vec<&str> = names.iter().copied().collect();
    let mut hit: Vec<bool> = vec![false; s.items.len()];
    while let Some(n) = work.pop() {
        for &i in by_name.get(n).into_iter().flatten() {
            if hit[i] {
                continue;
            }
            hit[i] = true;
            for d in &s.items[i].names {
                if names.insert(d.as_str()) {
                    work.push(d.as_str());
                }
            }
        }
    }
    (0..s.items.len()).filter(|&i| hit[i]).collect()
}

fn label(it: &SItem) -> String {
    it.names
        .first()
        .cloned()
        .unwrap_or_else(|| "(unnamed item)".into())
}

/// Compare a unit's streams before and after the patch.
pub fn compare(before: &Stream, after: &Stream) -> Verdict {
    let hb: Vec<u64> = before.items.iter().map(|i| i.hash).collect();
    let ha: Vec<u64> = after.items.iter().map(|i| i.hash).collect();
    let (ub, ua, _) = seeds_lcs(&hb, &ha);
    if ub.is_empty() && ua.is_empty() {
        return Verdict::Same;
    }
    let mut seeds: HashSet<String> = HashSet::new();
    let mut changed: Vec<String> = Vec::new();
    for (s, idx) in [(before, &ub), (after, &ua)] {
        for &i in idx.iter() {
            let it = &s.items[i];
            seeds.extend(it.names.iter().cloned());
            if it.emits {
                changed.push(label(it));
            }
        }
    }
    for s in [before, after] {
        for i in reached(s, &seeds) {
            let it = &s.items[i];
            if it.emits {
                changed.push(label(it));
            }
        }
    }
    changed.sort();
    changed.dedup();
    if changed.is_empty() {
        let mut names: Vec<String> = seeds.into_iter().collect();
        names.sort();
        Verdict::Unused(names)
    } else {
        Verdict::Changed(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# 1 \"x.c\"\ntypedef unsigned int u32;\n\
        struct s { int a; };\nstruct t { struct s *p; };\n\
        static inline __attribute__((always_inline)) u32 helper(u32 x) { return x + 1; }\n\
        static inline int unused(void) { return 2; }\n\
        extern int g(struct t *);\n\
        int user(struct t *v) { return v->p->a; }\n\
        int caller(void) { return helper(3); }\n\
        # 40 \"x.c\"\nint plain(void) { return 0; }\n";

    fn cmp(after: &str) -> Verdict {
        compare(
            &read(BEFORE.as_bytes().to_vec()),
            &read(after.as_bytes().to_vec()),
        )
    }

    #[test]
    fn line_markers_and_layout_do_not_count() {
        let after = BEFORE.replace("# 40 \"x.c\"\n", "# 41 \"x.c\"\n\n\n");
        assert_eq!(cmp(&after), Verdict::Same);
    }

    #[test]
    fn a_changed_inline_reaches_its_callers_only() {
        let after = BEFORE.replace("x + 1", "x + 2");
        assert_eq!(cmp(&after), Verdict::Changed(vec!["caller".into()]));
        let after = BEFORE.replace("return 2;", "return 3;");
        assert_eq!(cmp(&after), Verdict::Unused(vec!["unused".into()]));
    }

    #[test]
    fn a_changed_type_reaches_users_through_other_types() {
        let after = BEFORE.replace("struct s { int a; }", "struct s { long b; int a; }");
        assert_eq!(cmp(&after), Verdict::Changed(vec!["user".into()]));
    }

    #[test]
    fn a_tag_is_not_the_function_of_the_same_name() {
        // The kernel's `enum netdev_reg_state` and the inline `netdev_reg_state()`: a
        // change to the inline must not reach every user of the enum's constants.
        let before = "enum st { ST_A, ST_B };\nstruct dev { enum st s; };\n\
            static inline const char *st(const struct dev *d) { return d->s == ST_A ? \"a\" : \"\"; }\n\
            int uses_constant(struct dev *d) { return d->s == ST_B; }\n\
            int uses_struct(struct dev *d) { return sizeof(*d); }\n\
            const char *uses_inline(struct dev *d) { return st(d); }\n";
        let after = before.replace("\"a\" : \"\"", "\"a\" : \"b\"");
        let v = compare(&read(before.as_bytes().to_vec()), &read(after.into_bytes()));
        assert_eq!(v, Verdict::Changed(vec!["uses_inline".into()]));
        let after = before.replace("ST_B }", "ST_B, ST_C }");
        let v = compare(&read(before.as_bytes().to_vec()), &read(after.into_bytes()));
        assert_eq!(
            v,
            Verdict::Changed(vec![
                "uses_constant".into(),
                "uses_inline".into(),
                "uses_struct".into()
            ])
        );
    }

    #[test]
    fn a_new_variable_or_pragma_changes_the_object() {
        let after = BEFORE.replace("int plain", "int added;\nint plain");
        assert_eq!(cmp(&after), Verdict::Changed(vec!["added".into()]));
        let after = BEFORE.replace("int plain", "#pragma GCC optimize(\"O0\")\nint plain");
        assert!(matches!(cmp(&after), Verdict::Changed(_)));
    }
}
