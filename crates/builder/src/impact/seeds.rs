//! What a patch to a header changes: the items (directives, file-scope declarations)
//! that differ between the header before and after, matched in order (a longest common
//! subsequence of items, comments and layout aside), turned into the names whose
//! definition changes. Where a change cannot be reduced to names (an `#include` line, a
//! `#pragma`, code that every includer compiles by itself, a macro invocation that
//! pastes identifiers) the header is "wide": every unit that includes it is a candidate.

use std::collections::HashSet;

use super::decl;
use super::items::{Item, ItemKind, Parsed};
use super::knowledge::Knowledge;

/// A name whose definition the patch changes, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The changed name.
    pub name: String,
    /// `path:line` of the changed definition (in the patched header, or the original
    /// one for a definition the patch removes).
    pub at: String,
    /// What changed: `#define`, `declaration`, `definition under a changed #if`, ...
    pub what: String,
}

/// The names a header change reaches, or why every includer must be looked at.
#[derive(Clone, Debug, Default)]
pub struct Seeds {
    /// The changed names.
    pub names: Vec<Seed>,
    /// Reasons that make every includer of the header a candidate.
    pub wide: Vec<String>,
    /// Items that differ (old, new), for the log.
    pub changed_items: (usize, usize),
}

impl Seeds {
    fn add(&mut self, name: &str, at: String, what: &str) {
        if !self.names.iter().any(|s| s.name == name) {
            self.names.push(Seed {
                name: name.to_string(),
                at,
                what: what.to_string(),
            });
        }
    }
}

/// Indices of `a` and `b` outside their longest common subsequence, and the matched
/// pairs. A difference too large to compare item by item counts as all changed.
pub fn unmatched(a: &[u64], b: &[u64]) -> (Vec<usize>, Vec<usize>, Vec<(usize, usize)>) {
    let mut pre = 0;
    while pre < a.len() && pre < b.len() && a[pre] == b[pre] {
        pre += 1;
    }
    let mut suf = 0;
    while suf < a.len() - pre && suf < b.len() - pre && a[a.len() - 1 - suf] == b[b.len() - 1 - suf]
    {
        suf += 1;
    }
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut pairs: Vec<(usize, usize)> = (0..pre).map(|i| (i, i)).collect();
    let (n, m) = (ma.len(), mb.len());
    if n.saturating_mul(m) <= 16_000_000 {
        // lcs[i][j]: LCS of ma[i..], mb[j..].
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if ma[i] == mb[j] {
                pairs.push((pre + i, pre + j));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    for k in 0..suf {
        pairs.push((a.len() - suf + k, b.len() - suf + k));
    }
    let in_a: HashSet<usize> = pairs.iter().map(|p| p.0).collect();
    let in_b: HashSet<usize> = pairs.iter().map(|p| p.1).collect();
    let ua = (0..a.len()).filter(|i| !in_a.contains(i)).collect();
    let ub = (0..b.len()).filter(|i| !in_b.contains(i)).collect();
    (ua, ub, pairs)
}

fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// Macros that expand to the current line (`__LINE__` and what uses it).
fn line_macros(k: &Knowledge) -> HashSet<String> {
    let mut set: HashSet<String> = ["__LINE__", "__builtin_LINE"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    loop {
        let before = set.len();
        for (name, defs) in &k.macros {
            if !set.contains(name) && defs.iter().any(|d| d.body.iter().any(|t| set.contains(t))) {
                set.insert(name.clone());
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// The seeds of one changed header `path`, from its text before and after the patch.
pub fn seeds(path: &str, old: &[u8], new: &[u8], k: &Knowledge) -> Seeds {
    let po = Parsed::new(old.to_vec());
    let pn = Parsed::new(new.to_vec());
    let ho: Vec<u64> = po.items.iter().map(|it| hash(&po.norm(it))).collect();
    let hn: Vec<u64> = pn.items.iter().map(|it| hash(&pn.norm(it))).collect();
    let (uo, un, pairs) = unmatched(&ho, &hn);
    let mut out = Seeds {
        changed_items: (uo.len(), un.len()),
        ..Default::default()
    };
    for &i in &uo {
        reach(&po, i, path, "removed or changed", k, &mut out);
    }
    for &i in &un {
        reach(&pn, i, path, "changed", k, &mut out);
    }
    // Items that moved to other lines and expand __LINE__ change with their position.
    let moved: Vec<usize> = pairs
        .iter()
        .filter(|(a, b)| {
            pn.items[*b].kind == ItemKind::Decl
                && po.lines(&po.items[*a]) != pn.lines(&pn.items[*b])
        })
        .map(|p| p.1)
        .collect();
    if !moved.is_empty() {
        let lm = line_macros(k);
        for i in moved {
            if pn.mentions(&pn.items[i]).any(|m| lm.contains(m.as_ref())) {
                reach(
                    &pn,
                    i,
                    path,
                    "moved to another line and uses __LINE__",
                    k,
                    &mut out,
                );
            }
        }
    }
    out
}

/// What a changed item `i` of `p` reaches: names, or a reason to widen.
fn reach(p: &Parsed, i: usize, path: &str, how: &str, k: &Knowledge, out: &mut Seeds) {
    let item = &p.items[i];
    let line = p.lines(item).0;
    let at = format!("{path}:{line}");
    match &item.kind {
        ItemKind::Define { name, .. } => out.add(name, at, &format!("#define {how}")),
        ItemKind::Undef(name) => out.add(name, at, &format!("#undef {how}")),
        ItemKind::Cond => {
            // Everything the chain guards, in this version of the header.
            let chain = *item.chains.last().unwrap_or(&u32::MAX);
            for (j, other) in p.items.iter().enumerate() {
                if j != i && other.kind != ItemKind::Cond && other.chains.contains(&chain) {
                    reach_guarded(p, other, path, k, out);
                }
            }
        }
        ItemKind::Include => out.wide.push(format!("{at}: an #include line {how}")),
        ItemKind::Other => out
            .wide
            .push(format!("{at}: a directive {how} ({})", p.norm(item))),
        ItemKind::Diagnostic | ItemKind::LineMarker => {}
        ItemKind::Decl => decl_reach(p, item, &at, how, k, out),
    }
}

fn reach_guarded(p: &Parsed, item: &Item, path: &str, k: &Knowledge, out: &mut Seeds) {
    let at = format!("{path}:{}", p.lines(item).0);
    let how = "under a changed #if";
    match &item.kind {
        ItemKind::Define { name, .. } => out.add(name, at, &format!("#define {how}")),
        ItemKind::Undef(name) => out.add(name, at, &format!("#undef {how}")),
        ItemKind::Include => out.wide.push(format!("{at}: an #include {how}")),
        ItemKind::Other => out.wide.push(format!("{at}: a directive {how}")),
        ItemKind::Decl => decl_reach(p, item, &at, how, k, out),
        _ => {}
    }
}

fn decl_reach(p: &Parsed, item: &Item, at: &str, how: &str, k: &Knowledge, out: &mut Seeds) {
    let d = decl::info(p, item, k);
    let what = if d.typedef {
        "typedef"
    } else if d.function {
        "function"
    } else {
        "declaration"
    };
    for n in &d.names {
        out.add(n, at.to_string(), &format!("{what} {how}"));
    }
    if d.opaque {
        out.wide.push(format!(
            "{at}: a macro invocation {how} that pastes identifiers (what it declares cannot be read)"
        ));
    } else if d.emits {
        let names = if d.names.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.names.join(", "))
        };
        out.wide.push(format!(
            "{at}: code or data {how} that every includer compiles{names}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn know() -> Knowledge {
        let mut k = Knowledge::default();
        let src = "#define __always_inline inline __attribute__((always_inline))\n\
                   #define WARN_ON(c) __warn(__FILE__, __LINE__, c)\n";
        k.add("include/k.h", &Parsed::new(src.as_bytes().to_vec()));
        k.finish();
        k
    }

    const OLD: &str = "#ifndef _F_H\n#define _F_H\n\
        #define STEP 1\n#define for_each_x(i, n) for ((i) = 0; (i) < (n); (i) += STEP)\n\
        #if STEP > 1\n#define BIG 1\nstatic inline int big(void) { return 1; }\n#endif\n\
        static __always_inline int first(int a)\n{\n\treturn a + STEP;\n}\n\
        static inline void check(int a) { WARN_ON(a); }\n\
        #endif\n";

    fn names(s: &Seeds) -> Vec<&str> {
        s.names.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_macro_change_seeds_its_name() {
        let new = OLD.replace("(i) += STEP)", "(i) += 2 * STEP)");
        let s = seeds("include/f.h", OLD.as_bytes(), new.as_bytes(), &know());
        assert_eq!(names(&s), ["for_each_x"]);
        assert!(s.wide.is_empty());
        assert_eq!(s.names[0].at, "include/f.h:4");
    }

    #[test]
    fn a_static_inline_change_seeds_the_function() {
        let new = OLD.replace("return a + STEP;", "return a - STEP;");
        let s = seeds("include/f.h", OLD.as_bytes(), new.as_bytes(), &know());
        assert_eq!(names(&s), ["first"]);
        assert!(s.wide.is_empty(), "{:?}", s.wide);
    }

    #[test]
    fn a_condition_change_seeds_what_it_guards() {
        let new = OLD.replace("#if STEP > 1", "#if STEP > 0");
        let s = seeds("include/f.h", OLD.as_bytes(), new.as_bytes(), &know());
        assert_eq!(names(&s), ["BIG", "big"]);
    }

    #[test]
    fn moving_lines_reaches_what_expands_line() {
        let new = OLD.replace("#define STEP 1\n", "#define STEP 1\n\n");
        let s = seeds("include/f.h", OLD.as_bytes(), new.as_bytes(), &know());
        assert_eq!(names(&s), ["check"]);
        let comment_only = OLD.replace("#define STEP 1\n", "#define STEP 1 /* step */\n");
        let s = seeds(
            "include/f.h",
            OLD.as_bytes(),
            comment_only.as_bytes(),
            &know(),
        );
        assert!(s.names.is_empty() && s.wide.is_empty());
    }

    #[test]
    fn includes_and_emitted_code_widen() {
        let new = OLD.replace(
            "#define STEP 1\n",
            "#define STEP 1\n#include <linux/x.h>\nint counter;\n",
        );
        let s = seeds("include/f.h", OLD.as_bytes(), new.as_bytes(), &know());
        assert_eq!(s.wide.len(), 2, "{:?}", s.wide);
        assert_eq!(names(&s), ["counter", "check"]);
    }
}
