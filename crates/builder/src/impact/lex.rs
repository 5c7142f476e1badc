//! A C tokenizer good enough for impact analysis: identifiers, numbers, string and
//! character literals and punctuators, with comments and line continuations dropped,
//! each token knowing its line and whether it starts a logical line (so that
//! preprocessor directives can be told apart). It never fails: bytes it does not know
//! become one-byte punctuators.

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An identifier or keyword.
    Ident,
    /// A preprocessing number (`0x1f`, `1UL`, `1e+5`).
    Number,
    /// A string or character literal, quotes included.
    Literal,
    /// An operator or punctuator.
    Punct,
}

/// One token: a byte range of the text it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tok {
    /// What the token is.
    pub kind: Kind,
    /// Byte offset of its start.
    pub start: u32,
    /// Byte offset past its end.
    pub end: u32,
    /// 1-based line of the token's first byte.
    pub line: u32,
    /// The first token of a logical line (continuations joined).
    pub bol: bool,
}

impl Tok {
    /// The token's bytes in `text`.
    pub fn text<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        &text[self.start as usize..self.end as usize]
    }

    /// The token's text as a string (lossy).
    pub fn str<'a>(&self, text: &'a [u8]) -> &'a str {
        std::str::from_utf8(self.text(text)).unwrap_or("\u{fffd}")
    }

    /// Is this token the punctuator `p`?
    pub fn is(&self, text: &[u8], p: &str) -> bool {
        self.kind == Kind::Punct && self.text(text) == p.as_bytes()
    }
}

/// Punctuators longer than one byte, longest first.
const PUNCTS: &[&str] = &[
    "...", "<<=", ">>=", "##", "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=",
];

fn ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

fn ident_char(b: u8) -> bool {
    ident_start(b) || b.is_ascii_digit()
}

/// Tokens of `text`.
pub fn tokens(text: &[u8]) -> Vec<Tok> {
    let mut out = Vec::with_capacity(text.len() / 5);
    let n = text.len();
    let mut i = 0usize;
    let mut line = 1u32;
    let mut bol = true;
    while i < n {
        let b = text[i];
        match b {
            b'\n' => {
                line += 1;
                bol = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' | b'\x0b' => i += 1,
            b'\\' if text.get(i + 1) == Some(&b'\n') => {
                line += 1;
                i += 2;
            }
            b'\\' if text.get(i + 1) == Some(&b'\r') && text.get(i + 2) == Some(&b'\n') => {
                line += 1;
                i += 3;
            }
            b'/' if text.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < n && !(text[i] == b'*' && text.get(i + 1) == Some(&b'/')) {
                    if text[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i = (i + 2).min(n);
            }
            b'/' if text.get(i + 1) == Some(&b'/') => {
                // To the end of the line, continuations included.
                while i < n && text[i] != b'\n' {
                    if text[i] == b'\\' && text.get(i + 1) == Some(&b'\n') {
                        line += 1;
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {
                let start = i;
                let kind;
                if ident_start(b) {
                    // An encoding prefix makes a literal: L"x", u8"x".
                    while i < n && ident_char(text[i]) {
                        i += 1;
                    }
                    let word = &text[start..i];
                    if i < n
                        && (text[i] == b'"' || text[i] == b'\'')
                        && matches!(word, b"L" | b"u" | b"U" | b"u8")
                    {
                        let (end, lines) = literal(text, i);
                        i = end;
                        line += lines;
                        kind = Kind::Literal;
                    } else {
                        kind = Kind::Ident;
                    }
                } else if b.is_ascii_digit()
                    || (b == b'.' && text.get(i + 1).is_some_and(u8::is_ascii_digit))
                {
                    i += 1;
                    while i < n {
                        let c = text[i];
                        if matches!(c, b'+' | b'-')
                            && matches!(text[i - 1], b'e' | b'E' | b'p' | b'P')
                        {
                            i += 1;
                        } else if ident_char(c) || c == b'.' {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    kind = Kind::Number;
                } else if b == b'"' || b == b'\'' {
                    let (end, lines) = literal(text, i);
                    i = end;
                    let t = Tok {
                        kind: Kind::Literal,
                        start: start as u32,
                        end: i as u32,
                        line,
                        bol,
                    };
                    line += lines;
                    out.push(t);
                    bol = false;
                    continue;
                } else {
                    let rest = &text[i..];
                    let len = PUNCTS
                        .iter()
                        .find(|p| rest.starts_with(p.as_bytes()))
                        .map_or(1, |p| p.len());
                    i += len;
                    kind = Kind::Punct;
                }
                out.push(Tok {
                    kind,
                    start: start as u32,
                    end: i as u32,
                    line,
                    bol,
                });
                bol = false;
            }
        }
    }
    out
}

/// The end of the literal opening at `i` and the newlines it spans (escaped ones). An
/// unterminated literal ends at the end of its line (`#error don't`).
fn literal(text: &[u8], i: usize) -> (usize, u32) {
    let q = text[i];
    let mut j = i + 1;
    let mut lines = 0;
    while j < text.len() {
        match text[j] {
            b'\\' => {
                if text.get(j + 1) == Some(&b'\n') {
                    lines += 1;
                }
                j += 2;
            }
            b'\n' => return (j, lines),
            c if c == q => return (j + 1, lines),
            _ => j += 1,
        }
    }
    (text.len(), lines)
}

/// Is `word` a C keyword (or a GNU spelling of one)? Keywords are never declared names.
pub fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "auto"
            | "break"
            | "case"
            | "char"
            | "const"
            | "continue"
            | "default"
            | "do"
            | "double"
            | "else"
            | "enum"
            | "extern"
            | "float"
            | "for"
            | "goto"
            | "if"
            | "inline"
            | "int"
            | "long"
            | "register"
            | "restrict"
            | "return"
            | "short"
            | "signed"
            | "sizeof"
            | "static"
            | "struct"
            | "switch"
            | "typedef"
            | "union"
            | "unsigned"
            | "void"
            | "volatile"
            | "while"
            | "_Bool"
            | "_Complex"
            | "_Alignas"
            | "_Alignof"
            | "_Atomic"
            | "_Generic"
            | "_Noreturn"
            | "_Static_assert"
            | "_Thread_local"
            | "__attribute__"
            | "__attribute"
            | "__asm__"
            | "__asm"
            | "asm"
            | "__inline__"
            | "__inline"
            | "__const"
            | "__const__"
            | "__volatile__"
            | "__volatile"
            | "__restrict"
            | "__restrict__"
            | "__signed__"
            | "__signed"
            | "__typeof__"
            | "__typeof"
            | "typeof"
            | "__extension__"
            | "__alignof__"
            | "__auto_type"
            | "__label__"
            | "__int128"
            | "__thread"
            | "__seg_gs"
            | "__seg_fs"
            | "__builtin_offsetof"
            | "__builtin_va_arg"
            | "__builtin_types_compatible_p"
            | "__builtin_choose_expr"
            | "__real__"
            | "__imag__"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(text: &str) -> Vec<String> {
        tokens(text.as_bytes())
            .iter()
            .map(|t| t.str(text.as_bytes()).to_string())
            .collect()
    }

    #[test]
    fn tokens_skip_comments_and_join_continuations() {
        let t = "#define A(x) \\\n  ((x) ## _y) /* c\n */ // d\nint a = 0x1fUL + 1e+5; char *s = \"a\\\"b\", c = 'x';\n";
        assert_eq!(
            strs(t),
            [
                "#",
                "define",
                "A",
                "(",
                "x",
                ")",
                "(",
                "(",
                "x",
                ")",
                "##",
                "_y",
                ")",
                "int",
                "a",
                "=",
                "0x1fUL",
                "+",
                "1e+5",
                ";",
                "char",
                "*",
                "s",
                "=",
                "\"a\\\"b\"",
                ",",
                "c",
                "=",
                "'x'",
                ";"
            ]
        );
        let toks = tokens(t.as_bytes());
        // The directive's continuation does not start a line; `int` does, on line 4.
        let bols: Vec<_> = toks.iter().filter(|t| t.bol).map(|t| t.line).collect();
        assert_eq!(bols, [1, 4]);
    }

    #[test]
    fn unterminated_quote_ends_at_the_line() {
        let t = "#error don't\nint x;\n";
        let s = strs(t);
        assert_eq!(s[2], "don");
        assert_eq!(&s[s.len() - 3..], ["int", "x", ";"]);
    }
}
