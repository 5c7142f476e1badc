//! A file cut into items: each preprocessor directive, and each top-level C declaration
//! or definition (ending at a `;` at depth 0, or at the closing brace of a function
//! body). Every item knows the conditional chains (`#if ... #endif`) its tokens lie in,
//! so that a change to a condition reaches what it guards. The same cutting serves raw
//! headers and preprocessed units (`gcc -E` output, where directives are only line
//! markers and `#pragma`s).

use std::borrow::Cow;

use super::lex::{self, Kind, Tok};

/// `struct`, `union` or `enum`.
pub fn is_tag_keyword(s: &str) -> bool {
    matches!(s, "struct" | "union" | "enum")
}

/// The name under which a tag is known: `enum netdev_reg_state`, apart from an ordinary
/// identifier of the same spelling.
pub fn tag_key(keyword: &str, tag: &str) -> String {
    format!("{keyword} {tag}")
}

/// The identifier of a name (a tag's without its keyword): what text searches and token
/// pasting can make.
pub fn bare(name: &str) -> &str {
    name.rsplit(' ').next().unwrap_or(name)
}

/// What an item is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// `#define NAME` or `#define NAME(params)`; `params` is `None` for an object-like
    /// macro. The body is the item's tokens after `body`.
    Define {
        /// The macro.
        name: String,
        /// Its parameters (function-like macros).
        params: Option<Vec<String>>,
        /// Token index where its body starts.
        body: usize,
    },
    /// `#undef NAME`.
    Undef(String),
    /// `#if`, `#ifdef`, `#ifndef`, `#elif`, `#else`, `#endif` (one chain from `#if` to
    /// `#endif`).
    Cond,
    /// `#include`, `#include_next`, `#import`.
    Include,
    /// `#error`, `#warning`: no effect on an object that builds.
    Diagnostic,
    /// A line marker of preprocessed output (`# 12 "file"`).
    LineMarker,
    /// `#pragma`, `#line` and directives not known here.
    Other,
    /// C tokens: a declaration, a definition, a macro invocation at file scope.
    Decl,
}

/// One item: a range of the file's tokens.
#[derive(Clone, Debug)]
pub struct Item {
    /// What the item is.
    pub kind: ItemKind,
    /// Token range (directives include their `#`).
    pub start: usize,
    /// One past its last token.
    pub end: usize,
    /// The conditional chains any of its tokens lie in (ids into [`Parsed::chains`]),
    /// the chain of a conditional directive itself included.
    pub chains: Vec<u32>,
}

/// A file, tokenized and cut into items.
pub struct Parsed {
    /// The source text.
    pub text: Vec<u8>,
    /// Its tokens.
    pub toks: Vec<Tok>,
    /// Tokens that belong to a directive (a declaration may span directives).
    pub in_directive: Vec<bool>,
    /// Its file-scope items, in order.
    pub items: Vec<Item>,
    /// Number of conditional chains.
    pub chains: u32,
}

impl Parsed {
    /// Cut `text` into items.
    pub fn new(text: Vec<u8>) -> Parsed {
        let toks = lex::tokens(&text);
        let (items, chains) = cut(&text, &toks);
        let mut in_directive = vec![false; toks.len()];
        for it in items.iter().filter(|it| it.kind != ItemKind::Decl) {
            in_directive[it.start..it.end].fill(true);
        }
        Parsed {
            text,
            toks,
            in_directive,
            items,
            chains,
        }
    }

    /// The tokens of an item (a declaration's without the directives inside it).
    pub fn toks(&self, item: &Item) -> Vec<Tok> {
        self.range(item, item.start).map(|(_, t)| *t).collect()
    }

    fn range<'a>(
        &'a self,
        item: &Item,
        from: usize,
    ) -> impl Iterator<Item = (usize, &'a Tok)> + 'a {
        let decl = item.kind == ItemKind::Decl;
        (from..item.end)
            .map(move |i| (i, &self.toks[i]))
            .filter(move |(i, _)| !decl || !self.in_directive[*i])
    }

    /// A token's text.
    pub fn s(&self, t: &Tok) -> &str {
        t.str(&self.text)
    }

    /// The item's tokens joined by single spaces: its identity for comparisons
    /// (comments and layout do not count).
    pub fn norm(&self, item: &Item) -> String {
        let mut s = String::new();
        for (_, t) in self.range(item, item.start) {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(self.s(t));
        }
        s
    }

    /// Identifiers an item mentions (a macro's parameters are not mentions). A tag after
    /// `struct`, `union` or `enum` is mentioned as [`tag_key`]: C keeps tags apart from
    /// ordinary identifiers (`enum netdev_reg_state` and the function `netdev_reg_state`).
    pub fn mentions<'a>(&'a self, item: &'a Item) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        let (from, params): (usize, &[String]) = match &item.kind {
            ItemKind::Define { body, params, .. } => (*body, params.as_deref().unwrap_or_default()),
            _ => (item.start, &[]),
        };
        // `#include <a/b.h>` and `#include "b.h"` name a file, not identifiers; only a
        // computed `#include MACRO` mentions names.
        let file_name = item.kind == ItemKind::Include
            && self.toks[item.start..item.end]
                .get(2)
                .is_some_and(|t| t.kind == Kind::Literal || self.s(t) == "<");
        let mut prev: Option<&'a str> = None;
        self.range(item, from).filter_map(move |(_, t)| {
            let s = self.s(t);
            let before = prev.replace(s);
            if file_name || t.kind != Kind::Ident || params.iter().any(|p| p == s) {
                return None;
            }
            Some(match before {
                Some(kw) if is_tag_keyword(kw) => Cow::Owned(tag_key(kw, s)),
                _ => Cow::Borrowed(s),
            })
        })
    }

    /// First and last line of an item.
    pub fn lines(&self, item: &Item) -> (u32, u32) {
        let t = &self.toks[item.start..item.end];
        (
            t.first().map_or(0, |t| t.line),
            t.last().map_or(0, |t| t.line),
        )
    }
}

/// The token index where the logical line starting at `i` ends.
fn line_end(toks: &[Tok], i: usize) -> usize {
    let mut j = i + 1;
    while j < toks.len() && !toks[j].bol {
        j += 1;
    }
    j
}

fn directive(text: &[u8], toks: &[Tok], i: usize, end: usize) -> ItemKind {
    let Some(d) = toks.get(i + 1).filter(|_| i + 1 < end) else {
        return ItemKind::Other;
    };
    if d.kind == Kind::Number {
        return ItemKind::LineMarker;
    }
    let name_at = |k: usize| {
        toks.get(k)
            .filter(|t| k < end && t.kind == Kind::Ident)
            .map(|t| t.str(text).to_string())
    };
    match d.str(text) {
        "define" => {
            let Some(name) = name_at(i + 2) else {
                return ItemKind::Other;
            };
            // Function-like only when `(` follows the name with no space.
            let lp = toks
                .get(i + 3)
                .filter(|t| i + 3 < end && t.is(text, "(") && t.start == toks[i + 2].end);
            if lp.is_none() {
                return ItemKind::Define {
                    name,
                    params: None,
                    body: i + 3,
                };
            }
            let mut params = Vec::new();
            let mut k = i + 4;
            while k < end && !toks[k].is(text, ")") {
                if toks[k].kind == Kind::Ident {
                    params.push(toks[k].str(text).to_string());
                } else if toks[k].is(text, "...") {
                    params.push("__VA_ARGS__".into());
                }
                k += 1;
            }
            ItemKind::Define {
                name,
                params: Some(params),
                body: (k + 1).min(end),
            }
        }
        "undef" => name_at(i + 2).map_or(ItemKind::Other, ItemKind::Undef),
        "if" | "ifdef" | "ifndef" | "elif" | "elifdef" | "elifndef" | "else" | "endif" => {
            ItemKind::Cond
        }
        "include" | "include_next" | "import" => ItemKind::Include,
        "error" | "warning" => ItemKind::Diagnostic,
        _ => ItemKind::Other,
    }
}

/// What kind of brace opened: a function body ends its item when it closes.
#[derive(Clone, Copy, PartialEq)]
enum Brace {
    Body,
    Aggregate,
}

/// Is the `{` at `i` (depth 0 of the item starting at `from`) a function body?
fn opens_body(text: &[u8], toks: &[Tok], from: usize, i: usize) -> bool {
    let mut depth = 0i32;
    for t in &toks[from..i] {
        match t.str(text) {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "=" if depth == 0 => return false,
            _ => {}
        }
    }
    let prev = |k: usize| (i >= from + k).then(|| toks[i - k].str(text));
    let tagged = |s: Option<&str>| matches!(s, Some("struct" | "union" | "enum"));
    !(tagged(prev(1)) || tagged(prev(2)) || prev(1).is_none())
}

fn cut(text: &[u8], toks: &[Tok]) -> (Vec<Item>, u32) {
    let mut items = Vec::new();
    let mut stack: Vec<u32> = Vec::new();
    let mut chains = 0u32;
    // The open declaration: its first token, the chains seen while open, the braces.
    let mut open: Option<(usize, Vec<u32>)> = None;
    let mut braces: Vec<Brace> = Vec::new();
    let mut parens = 0i32;
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        if t.bol && t.is(text, "#") {
            let end = line_end(toks, i);
            let kind = directive(text, toks, i, end);
            let word = toks
                .get(i + 1)
                .filter(|_| i + 1 < end)
                .map(|d| d.str(text))
                .unwrap_or("");
            if kind == ItemKind::Cond && matches!(word, "if" | "ifdef" | "ifndef") {
                stack.push(chains);
                chains += 1;
            }
            let mine = stack.clone();
            if kind == ItemKind::Cond && word == "endif" {
                stack.pop();
            }
            items.push(Item {
                kind,
                start: i,
                end,
                chains: mine,
            });
            if let Some((_, seen)) = open.as_mut() {
                for c in &stack {
                    if !seen.contains(c) {
                        seen.push(*c);
                    }
                }
            }
            i = end;
            continue;
        }
        if open.is_none() {
            open = Some((i, stack.clone()));
            braces.clear();
            parens = 0;
        }
        let from = open.as_ref().map_or(i, |o| o.0);
        let mut close = false;
        match t.str(text) {
            "(" | "[" if t.kind == Kind::Punct => parens += 1,
            ")" | "]" if t.kind == Kind::Punct => parens = (parens - 1).max(0),
            "{" if t.kind == Kind::Punct => {
                let body = braces.is_empty() && parens == 0 && opens_body(text, toks, from, i);
                braces.push(if body { Brace::Body } else { Brace::Aggregate });
            }
            "}" if t.kind == Kind::Punct => {
                if braces.pop() == Some(Brace::Body) && braces.is_empty() {
                    close = true;
                }
            }
            ";" if t.kind == Kind::Punct => close = braces.is_empty() && parens == 0,
            _ => {}
        }
        if close {
            if let Some((start, seen)) = open.take() {
                items.push(Item {
                    kind: ItemKind::Decl,
                    start,
                    end: i + 1,
                    chains: seen,
                });
            }
        }
        i += 1;
    }
    if let Some((start, seen)) = open {
        items.push(Item {
            kind: ItemKind::Decl,
            start,
            end: toks.len(),
            chains: seen,
        });
    }
    (items, chains)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "#ifndef _X_H\n#define _X_H\n#include <linux/types.h>\n\
        #define ADD(a, b) ((a) + (b) + LIMIT)\n#define LIMIT 3\n\
        struct s {\n#ifdef CONFIG_Y\n\tint y;\n#endif\n\tint z;\n};\n\
        static inline int f(int a)\n{\n\tif (a) { return ADD(a, 1); }\n\treturn 0;\n}\n\
        extern int g(void), h[2];\nstatic const int t[] = { 1, 2 };\n#endif\n";

    #[test]
    fn items_of_a_header() {
        let p = Parsed::new(H.as_bytes().to_vec());
        let kinds: Vec<String> = p
            .items
            .iter()
            .map(|it| match &it.kind {
                ItemKind::Define { name, params, .. } => {
                    format!("define {name}{}", if params.is_some() { "()" } else { "" })
                }
                ItemKind::Decl => format!("decl {}", p.s(&p.toks(it)[0])),
                k => format!("{k:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "Cond",
                "define _X_H",
                "Include",
                "define ADD()",
                "define LIMIT",
                "Cond",
                "Cond",
                "decl struct",
                "decl static",
                "decl extern",
                "decl static",
                "Cond"
            ]
        );
        // The struct lies in the include guard's chain and in CONFIG_Y's.
        assert_eq!(p.items[7].chains, vec![0, 1]);
        assert_eq!(p.items[8].chains, vec![0]);
        let add = &p.items[3];
        assert_eq!(p.mentions(add).collect::<Vec<_>>(), ["LIMIT"]);
        assert_eq!(p.norm(&p.items[9]), "extern int g ( void ) , h [ 2 ] ;");
        assert_eq!(p.lines(&p.items[8]), (12, 16));
    }

    #[test]
    fn an_include_of_a_file_mentions_no_names() {
        let p = Parsed::new(
            b"#include <linux/path.h>\n#include \"list.h\"\n#include HDR(path)\nstruct path *p;\n"
                .to_vec(),
        );
        let m: Vec<Vec<String>> = p
            .items
            .iter()
            .map(|it| p.mentions(it).map(|m| m.into_owned()).collect())
            .collect();
        assert!(m[0].is_empty() && m[1].is_empty(), "{m:?}");
        assert!(m[2].contains(&"HDR".to_string()) && m[2].contains(&"path".to_string()));
        assert!(m[3].contains(&"struct path".to_string()) && !m[3].contains(&"path".to_string()));
    }

    #[test]
    fn an_unterminated_declaration_runs_to_the_end() {
        let p = Parsed::new(b"int a;\nint b = (1".to_vec());
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.norm(&p.items[1]), "int b = ( 1");
    }
}
