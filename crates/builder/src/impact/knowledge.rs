//! What the tree's headers define, collected in one pass: every macro (with its body
//! when the body can refer to other names), every typedef name. From it: which macros
//! are only attributes or specifiers (never declared names), and which paste their
//! arguments into identifiers (`##`), whose uses may form any name from their arguments.

use std::collections::{HashMap, HashSet};

use super::decl::Names;
use super::items::{ItemKind, Parsed};
use super::lex::{is_keyword, Kind};
use super::paste::{self, Chain, Piece};

/// One `#define`.
#[derive(Clone, Debug)]
pub struct MacroDef {
    /// The defining file (an index into [`Knowledge::files`]) and line.
    pub file: u32,
    /// Line of the definition.
    pub line: u32,
    /// Parameters (function-like macros).
    pub params: Option<Vec<String>>,
    /// The body's tokens.
    pub body: Vec<String>,
}

impl MacroDef {
    /// Is `s` one of its parameters?
    pub fn has_param(&self, s: &str) -> bool {
        self.params
            .as_ref()
            .is_some_and(|p| p.iter().any(|x| x == s) || (s == "__VA_ARGS__" && !p.is_empty()))
    }

    fn param_list(&self) -> &[String] {
        self.params.as_deref().unwrap_or_default()
    }
}

/// The tree's macros and typedef names.
#[derive(Default)]
pub struct Knowledge {
    /// Files the definitions come from (tree-relative).
    pub files: Vec<String>,
    /// Every definition of each macro whose body mentions an identifier or pastes, or
    /// that takes parameters.
    pub macros: HashMap<String, Vec<MacroDef>>,
    /// Names of the other macros (constants, empty bodies).
    pub plain: HashSet<String>,
    /// Names declared by a typedef somewhere in the tree.
    pub typedefs: HashSet<String>,
    attributes: HashSet<String>,
    /// What each macro pastes, in terms of its parameters.
    chains: HashMap<String, Vec<Chain>>,
    pasters: HashSet<String>,
    /// Identifiers some macro pastes from literals alone -> those macros.
    made: HashMap<String, Vec<String>>,
}

impl Knowledge {
    /// Take the definitions of one parsed file.
    pub fn add(&mut self, path: &str, p: &Parsed) {
        let file = self.files.len() as u32;
        self.files.push(path.to_string());
        for it in &p.items {
            match &it.kind {
                ItemKind::Define { name, params, body } => {
                    let toks = &p.toks[(*body).min(it.end)..it.end];
                    let rich = params.is_some()
                        || toks.iter().any(|t| t.kind == Kind::Ident || p.s(t) == "##");
                    if rich {
                        self.macros.entry(name.clone()).or_default().push(MacroDef {
                            file,
                            line: p.toks[it.start].line,
                            params: params.clone(),
                            body: toks.iter().map(|t| p.s(t).to_string()).collect(),
                        });
                    } else {
                        self.plain.insert(name.clone());
                    }
                }
                ItemKind::Decl => {
                    let t = p.toks(it);
                    if t.iter().any(|x| p.s(x) == "typedef") {
                        typedef_names(p, &t, &mut self.typedefs);
                    }
                }
                _ => {}
            }
        }
    }

    /// Merge another file set's knowledge (files renumbered).
    pub fn merge(&mut self, other: Knowledge) {
        let base = self.files.len() as u32;
        self.files.extend(other.files);
        for (name, defs) in other.macros {
            let e = self.macros.entry(name).or_default();
            e.extend(defs.into_iter().map(|mut d| {
                d.file += base;
                d
            }));
        }
        self.plain.extend(other.plain);
        self.typedefs.extend(other.typedefs);
    }

    /// Decide which macros are attributes and which paste their arguments.
    pub fn finish(&mut self) {
        // Attributes: every definition is empty or starts with an attribute, or (for an
        // object-like macro) with a keyword; to a fixed point.
        loop {
            let mut grew = false;
            for (name, defs) in &self.macros {
                if self.attributes.contains(name) {
                    continue;
                }
                let attr = defs.iter().all(|d| match d.body.first() {
                    None => true,
                    Some(f) => {
                        f == "__attribute__"
                            || f == "__attribute"
                            || self.attributes.contains(f)
                            || (d.params.is_none() && is_keyword(f))
                    }
                });
                if attr {
                    self.attributes.insert(name.clone());
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        self.paste_chains();
    }

    /// Each macro's pasted chains, through the pasting macros it invokes, to a fixed
    /// point (bounded: a chain deeper than that is not followed further).
    fn paste_chains(&mut self) {
        let mut chains: HashMap<String, Vec<Chain>> = HashMap::new();
        for (name, defs) in &self.macros {
            for d in defs {
                for c in paste::own_chains(&d.body, d.param_list()) {
                    let e = chains.entry(name.clone()).or_default();
                    if !e.contains(&c) {
                        e.push(c);
                    }
                }
            }
        }
        for _ in 0..8 {
            let mut grew = false;
            let mut adds: Vec<(String, Chain)> = Vec::new();
            for (name, defs) in &self.macros {
                for d in defs {
                    let b = &d.body;
                    for i in 0..b.len() {
                        let Some(rc) = chains
                            .get(&b[i])
                            .filter(|_| b.get(i + 1).is_some_and(|t| t == "("))
                        else {
                            continue;
                        };
                        let (args, _) = paste::args_at(b, i + 1);
                        let get = |m: &str| chains.get(m).cloned();
                        let vals: Vec<paste::ArgVal> = args
                            .iter()
                            .map(|a| paste::arg_val(a, d.param_list(), &get))
                            .collect();
                        for c in rc {
                            for n in paste::substitute(c, &vals) {
                                adds.push((name.clone(), n));
                            }
                        }
                    }
                }
            }
            for (name, c) in adds {
                let e = chains.entry(name).or_default();
                if e.len() < paste::MAX_CHAINS && !e.contains(&c) {
                    e.push(c);
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        for (name, cs) in &chains {
            if cs
                .iter()
                .any(|c| c.iter().any(|p| matches!(p, Piece::Param(_))))
            {
                self.pasters.insert(name.clone());
            }
            for c in cs {
                if let Some(lit) = paste::literal(c) {
                    self.made.entry(lit).or_default().push(name.clone());
                }
            }
        }
        self.chains = chains;
    }

    /// Macros that paste `name` from literals alone.
    pub fn making(&self, name: &str) -> &[String] {
        self.made.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// Pasting macros that may make one of `names` whatever their arguments.
    pub fn pasters_for<'a>(&'a self, names: &[&str]) -> Vec<&'a str> {
        self.pasters
            .iter()
            .filter(|m| {
                self.chains[*m].iter().any(|c| {
                    names
                        .iter()
                        .any(|n| paste::matches(c, super::items::bare(n)))
                })
            })
            .map(String::as_str)
            .collect()
    }

    /// What an invocation of pasting macro `m` with `args` may paste.
    pub fn site_chains(&self, m: &str, args: &[Vec<&str>]) -> Vec<Chain> {
        let Some(cs) = self.chains.get(m) else {
            return Vec::new();
        };
        let get = |x: &str| self.chains.get(x).cloned();
        let vals: Vec<paste::ArgVal> = args.iter().map(|a| paste::arg_val(a, &[], &get)).collect();
        cs.iter()
            .flat_map(|c| paste::substitute(c, &vals))
            .collect()
    }

    /// Is `name` a macro at all?
    pub fn is_macro(&self, name: &str) -> bool {
        self.macros.contains_key(name) || self.plain.contains(name)
    }
}

/// Typedef names of a `typedef` declaration: the last identifier of each declarator,
/// or the name inside `(*name)`.
fn typedef_names(p: &Parsed, t: &[super::lex::Tok], out: &mut HashSet<String>) {
    let mut depth = 0i32;
    let mut last: Option<&str> = None;
    let mut grouped: Option<&str> = None;
    for (i, x) in t.iter().enumerate() {
        let s = p.s(x);
        match s {
            "{" | "[" => depth += 1,
            "}" | "]" => depth -= 1,
            "(" => {
                if depth == 0 && t.get(i + 1).is_some_and(|n| p.s(n) == "*") {
                    grouped = t[i + 2..]
                        .iter()
                        .find(|n| n.kind == Kind::Ident && !is_keyword(p.s(n)))
                        .map(|n| p.s(n));
                }
                depth += 1;
            }
            ")" => depth -= 1,
            "," | ";" if depth == 0 => {
                if let Some(n) = grouped.take().or(last) {
                    out.insert(n.to_string());
                }
                last = None;
            }
            _ if depth == 0 && x.kind == Kind::Ident && !is_keyword(s) => last = Some(s),
            _ => {}
        }
    }
}

impl Names for Knowledge {
    fn is_typedef(&self, name: &str) -> bool {
        self.typedefs.contains(name)
    }
    fn is_attribute(&self, name: &str) -> bool {
        self.attributes.contains(name)
    }
    fn is_function_macro(&self, name: &str) -> bool {
        self.macros
            .get(name)
            .is_some_and(|d| d.iter().any(|d| d.params.is_some()))
    }
    fn pastes(&self, name: &str) -> bool {
        self.pasters.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_pasters_and_typedefs() {
        let src = "#define __section(s) __attribute__((__section__(s)))\n\
                   #define __init __section(\".init.text\") __cold\n\
                   #define __cold __attribute__((cold))\n\
                   #define __always_inline inline __attribute__((always_inline))\n\
                   #define DECLARE_BITMAP(n, b) unsigned long n[b]\n\
                   #define ___PASTE(a, b) a##b\n#define __PASTE(a, b) ___PASTE(a, b)\n\
                   #define __UNIQUE_ID(p) __PASTE(__PASTE(__UNIQUE_ID_, p), __COUNTER__)\n\
                   #define MAKE(n) int n##_count\n#define FIXED foo ## _bar\n\
                   #define LIMIT 3\n#define _GUARD_H\n\
                   typedef unsigned int u32, *u32p;\ntypedef int (*fn_t)(int);\n\
                   typedef struct { int a; } pair_t;\n";
        let p = Parsed::new(src.as_bytes().to_vec());
        let mut k = Knowledge::default();
        k.add("include/x.h", &p);
        k.finish();
        for a in ["__section", "__init", "__cold", "__always_inline"] {
            assert!(k.is_attribute(a), "{a}");
        }
        assert!(!k.is_attribute("DECLARE_BITMAP"));
        for m in ["___PASTE", "__PASTE", "__UNIQUE_ID", "MAKE"] {
            assert!(k.pastes(m), "{m}");
        }
        assert!(!k.pastes("DECLARE_BITMAP") && !k.pastes("FIXED"));
        assert!(k.plain.contains("LIMIT") && k.plain.contains("_GUARD_H"));
        let mut td: Vec<_> = k.typedefs.iter().cloned().collect();
        td.sort();
        assert_eq!(td, ["fn_t", "pair_t", "u32", "u32p"]);
        assert_eq!(k.making("foo_bar"), ["FIXED"]);
        let site = k.site_chains("__UNIQUE_ID", &[vec!["x"]]);
        assert!(site.iter().any(|c| paste::matches(c, "__UNIQUE_ID_x12")));
        assert!(!site.iter().any(|c| paste::matches(c, "__UNIQUE_ID_y12")));
    }
}
