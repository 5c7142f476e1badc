//! What a file-scope C item declares, and whether it puts code or data into every
//! object that includes it. Read from tokens, with or without macros expanded: where the
//! reading is unsure it errs towards more names (more units looked at) and towards
//! "emits" (more units rebuilt), never the other way.

use super::items::{Item, Parsed};
use super::lex::{is_keyword, Kind, Tok};

/// What the reader knows about names it meets in declarations.
pub trait Names {
    /// A typedef name (a type, not a declared name, in specifier position).
    fn is_typedef(&self, name: &str) -> bool;
    /// A macro that expands to specifiers or attributes only (`__read_mostly`,
    /// `__printf(1, 2)`, `__always_inline`): never a declared name.
    fn is_attribute(&self, name: &str) -> bool;
    /// A function-like macro (an item starting with one is a macro invocation).
    fn is_function_macro(&self, name: &str) -> bool;
    /// A macro that pastes its arguments into new identifiers (`##`): what an invocation
    /// declares cannot be read from its tokens.
    fn pastes(&self, name: &str) -> bool;
}

/// Nothing known: every name is a plain identifier (preprocessed code).
pub struct NoMacros<'a>(pub &'a std::collections::HashSet<String>);

impl Names for NoMacros<'_> {
    fn is_typedef(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn is_attribute(&self, _: &str) -> bool {
        false
    }
    fn is_function_macro(&self, _: &str) -> bool {
        false
    }
    fn pastes(&self, _: &str) -> bool {
        false
    }
}

/// What one item declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeclInfo {
    /// Names it declares or defines (functions, variables, typedefs, tags, enumerators).
    pub names: Vec<String>,
    /// It emits code or data into the object by itself (a function definition that is not
    /// inline, a variable definition, a top-level `asm`, an unknown macro invocation).
    pub emits: bool,
    /// What it declares cannot be read (a macro invocation that pastes identifiers).
    pub opaque: bool,
    /// A `typedef`.
    pub typedef: bool,
    /// A function definition (with a body).
    pub function: bool,
}

/// Skip a balanced group opening at `i` (`(`, `[` or `{`); the index after it.
fn skip_group(p: &Parsed, t: &[Tok], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while j < t.len() {
        match p.s(&t[j]) {
            "(" | "[" | "{" if t[j].kind == Kind::Punct => depth += 1,
            ")" | "]" | "}" if t[j].kind == Kind::Punct => {
                depth -= 1;
                if depth <= 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    t.len()
}

fn is_attr_keyword(s: &str) -> bool {
    matches!(
        s,
        "__attribute__"
            | "__attribute"
            | "asm"
            | "__asm__"
            | "__asm"
            | "__typeof__"
            | "__typeof"
            | "typeof"
            | "_Alignas"
            | "__declspec"
            | "_Static_assert"
            | "static_assert"
            | "__alignof__"
            | "_Alignof"
            | "sizeof"
    )
}

/// Read a file-scope item.
pub fn info(p: &Parsed, item: &Item, names: &dyn Names) -> DeclInfo {
    let owned = p.toks(item);
    let t = &owned[..];
    let mut first = 0;
    while first < t.len() && p.s(&t[first]) == "__extension__" {
        first += 1;
    }
    let mut out = DeclInfo::default();
    let Some(head) = t.get(first) else {
        return out;
    };
    let head_s = p.s(head);
    if matches!(head_s, "_Static_assert" | "static_assert") || head.kind != Kind::Ident {
        return out;
    }
    if matches!(head_s, "asm" | "__asm__" | "__asm") {
        out.emits = true;
        return out;
    }
    let invoked = t.get(first + 1).is_some_and(|n| n.is(&p.text, "("))
        && names.is_function_macro(head_s)
        && !names.is_attribute(head_s);
    if invoked {
        return invocation(p, &t[first..], head_s, names);
    }
    declaration(p, &t[first..], names)
}

/// `MACRO(args);` at file scope: it may declare any identifier of its arguments, and
/// may emit anything.
fn invocation(p: &Parsed, t: &[Tok], macro_name: &str, names: &dyn Names) -> DeclInfo {
    let mut out = DeclInfo {
        emits: true,
        opaque: names.pastes(macro_name),
        ..Default::default()
    };
    let mut prev = "";
    for (i, tok) in t.iter().enumerate().skip(1) {
        let s = p.s(tok);
        let tag_ref = matches!(prev, "struct" | "union" | "enum")
            && !t.get(i + 1).is_some_and(|n| n.is(&p.text, "{"));
        if tok.kind == Kind::Ident
            && !is_keyword(s)
            && !tag_ref
            && !names.is_typedef(s)
            && !names.is_attribute(s)
            && !names.is_function_macro(s)
        {
            push(&mut out.names, s);
        }
        prev = s;
    }
    out
}

fn push(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// State of the declarator being read.
#[derive(Default)]
struct Segment {
    /// Candidate names of this declarator, in order.
    idents: Vec<String>,
}

impl Segment {
    /// End of a declarator: its last identifier is its name for sure, the others are
    /// names unless known to be types.
    fn close(&mut self, out: &mut DeclInfo, names: &dyn Names) {
        let n = self.idents.len();
        for (i, s) in self.idents.drain(..).enumerate() {
            if i + 1 == n || !names.is_typedef(&s) {
                push(&mut out.names, &s);
            }
        }
    }
}

/// A declaration or definition.
fn declaration(p: &Parsed, t: &[Tok], names: &dyn Names) -> DeclInfo {
    let mut out = DeclInfo::default();
    let mut seg = Segment::default();
    let mut inline = false;
    let mut is_extern = false;
    let mut function_declarator = false;
    let mut i = 0;
    while i < t.len() {
        let tok = &t[i];
        let s = p.s(tok);
        let next = t.get(i + 1).map(|n| p.s(n)).unwrap_or("");
        match tok.kind {
            Kind::Ident => {
                if s == "typedef" {
                    out.typedef = true;
                } else if s == "extern" {
                    is_extern = true;
                } else if matches!(s, "inline" | "__inline" | "__inline__")
                    || (names.is_attribute(s) && s.contains("inline") && !s.contains("noinline"))
                {
                    inline = true;
                } else if matches!(s, "alias" | "__alias__" | "__alias") {
                    // An alias definition emits a symbol.
                    out.emits = true;
                }
                if matches!(s, "struct" | "union" | "enum") {
                    i = tagged(p, t, i, &mut out);
                    continue;
                }
                if is_attr_keyword(s) || (names.is_attribute(s) && next == "(") {
                    i = if next == "(" {
                        skip_group(p, t, i + 1)
                    } else {
                        i + 1
                    };
                    continue;
                }
                if !is_keyword(s) && !names.is_attribute(s) {
                    seg.idents.push(s.to_string());
                }
                i += 1;
            }
            Kind::Punct => match s {
                "(" => {
                    // `(*name)`: a declarator group; `name(`: parameters.
                    if next == "*" || next == "^" {
                        let end = skip_group(p, t, i);
                        for k in i + 1..end {
                            let ks = p.s(&t[k]);
                            if t[k].kind == Kind::Ident
                                && !is_keyword(ks)
                                && !names.is_attribute(ks)
                            {
                                seg.idents.push(ks.to_string());
                                break;
                            }
                        }
                        i = end;
                    } else {
                        function_declarator = true;
                        i = skip_group(p, t, i);
                    }
                }
                "[" => i = skip_group(p, t, i),
                "=" => {
                    seg.close(&mut out, names);
                    out.emits |= !out.typedef;
                    // The initializer, to the next declarator.
                    let mut k = i + 1;
                    while k < t.len() && !t[k].is(&p.text, ",") && !t[k].is(&p.text, ";") {
                        k = match p.s(&t[k]) {
                            "(" | "[" | "{" => skip_group(p, t, k),
                            _ => k + 1,
                        };
                    }
                    i = k;
                }
                "," | ";" | ":" => {
                    if !seg.idents.is_empty() {
                        seg.close(&mut out, names);
                        out.emits |= !out.typedef && !is_extern && !function_declarator;
                    }
                    function_declarator = false;
                    i += 1;
                }
                "{" => {
                    // A function body.
                    seg.close(&mut out, names);
                    out.function = true;
                    out.emits |= !inline;
                    i = skip_group(p, t, i);
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    if !seg.idents.is_empty() {
        seg.close(&mut out, names);
        out.emits |= !out.typedef && !is_extern && !function_declarator && !out.function;
    }
    out
}

/// `struct|union|enum [tag] [{ ... }]` at `i`: a tag with a body is declared, and so are
/// an enum's constants. Returns the index after it.
fn tagged(p: &Parsed, t: &[Tok], i: usize, out: &mut DeclInfo) -> usize {
    let is_enum = p.s(&t[i]) == "enum";
    let mut j = i + 1;
    // Attributes may sit between the keyword and the tag.
    while j < t.len() && is_attr_keyword(p.s(&t[j])) {
        j = skip_group(p, t, j + 1);
    }
    let tag = t.get(j).filter(|x| x.kind == Kind::Ident).map(|x| p.s(x));
    if tag.is_some() {
        j += 1;
    }
    if !t.get(j).is_some_and(|x| x.is(&p.text, "{")) {
        return j;
    }
    if let Some(tag) = tag {
        push(&mut out.names, &super::items::tag_key(p.s(&t[i]), tag));
    }
    let end = skip_group(p, t, j);
    if is_enum {
        let mut expect = true;
        let mut depth = 0i32;
        for x in &t[j + 1..end.saturating_sub(1)] {
            match p.s(x) {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth -= 1,
                "," if depth == 0 => {
                    expect = true;
                    continue;
                }
                s if expect && depth == 0 && x.kind == Kind::Ident => push(&mut out.names, s),
                _ => {}
            }
            expect = false;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    struct K;
    impl Names for K {
        fn is_typedef(&self, n: &str) -> bool {
            matches!(n, "u32" | "size_t")
        }
        fn is_attribute(&self, n: &str) -> bool {
            matches!(
                n,
                "__read_mostly" | "__printf" | "__always_inline" | "__must_check"
            )
        }
        fn is_function_macro(&self, n: &str) -> bool {
            matches!(n, "DECLARE_BITMAP" | "TRACE_EVENT" | "__printf")
        }
        fn pastes(&self, n: &str) -> bool {
            n == "TRACE_EVENT"
        }
    }

    fn read(src: &str) -> Vec<DeclInfo> {
        let p = Parsed::new(src.as_bytes().to_vec());
        p.items.iter().map(|it| info(&p, it, &K)).collect()
    }

    fn names(d: &DeclInfo) -> Vec<&str> {
        d.names.iter().map(String::as_str).collect()
    }

    #[test]
    fn declarations() {
        let d = read(
            "static __always_inline u32 find_it(const unsigned long *addr, size_t n) { return (u32)n; }\n\
             __printf(2, 3) __must_check int say(int a, const char *fmt, ...);\n\
             extern const struct cpumask *const cpu_possible_mask __read_mostly;\n\
             int counter, *table[4] = { 0 };\n\
             typedef int (*handler_t)(int);\n\
             enum state { IDLE = 1 << 0, BUSY = (2, 3), DONE };\n\
             struct pair { int a, b; } __attribute__((packed));\n\
             static void helper(void) { }\n\
             DECLARE_BITMAP(cpu_bits, 64);\n\
             TRACE_EVENT(sched_x, TP_PROTO(int a));\n",
        );
        assert_eq!(names(&d[0]), ["find_it"]);
        assert!(!d[0].emits && d[0].function);
        assert_eq!(names(&d[1]), ["say"]);
        assert!(!d[1].emits);
        assert_eq!(names(&d[2]), ["cpu_possible_mask"]);
        assert!(!d[2].emits);
        assert_eq!(names(&d[3]), ["counter", "table"]);
        assert!(d[3].emits);
        assert_eq!(names(&d[4]), ["handler_t"]);
        assert!(d[4].typedef && !d[4].emits);
        assert_eq!(names(&d[5]), ["enum state", "IDLE", "BUSY", "DONE"]);
        assert!(!d[5].emits);
        assert_eq!(names(&d[6]), ["struct pair"]);
        assert!(!d[6].emits);
        assert_eq!(names(&d[7]), ["helper"]);
        assert!(d[7].emits);
        assert_eq!(names(&d[8]), ["cpu_bits"]);
        assert!(d[8].emits && !d[8].opaque);
        assert!(d[9].opaque);
    }

    #[test]
    fn preprocessed_code_knows_its_own_typedefs() {
        let p = Parsed::new(b"typedef unsigned int u32;\nstatic inline __attribute__((always_inline)) u32 f(void) { return 0; }\n".to_vec());
        let mut td = HashSet::new();
        let a = info(&p, &p.items[0], &NoMacros(&td));
        assert_eq!(names(&a), ["u32"]);
        td.insert("u32".to_string());
        let b = info(&p, &p.items[1], &NoMacros(&td));
        assert_eq!(names(&b), ["f"]);
        assert!(!b.emits);
    }
}
