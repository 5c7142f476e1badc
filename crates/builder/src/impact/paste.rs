//! Identifiers made by pasting (`##`): each macro's pastes as chains of pieces —
//! literals, its own parameters, or anything — followed through the pasting macros it
//! invokes (`__UNIQUE_ID(p)` pastes `__UNIQUE_ID_ ## p ## <counter>` through `__PASTE`).
//! At a use, the arguments fill the parameters, and the chain is a pattern that a
//! changed name either matches (the use may form it) or not.

/// One piece of a pasted identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// The macro's parameter (by position).
    Param(usize),
    /// Anything (a multi-token or computed argument).
    Wild,
}

/// A pasted identifier: its pieces in order.
pub type Chain = Vec<Piece>;

fn pasteable(t: &str) -> bool {
    t.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The piece a token stands for in a body whose parameters are `params`.
fn piece(t: &str, params: &[String]) -> Piece {
    if let Some(i) = params.iter().position(|p| p == t) {
        Piece::Param(i)
    } else if t == "__VA_ARGS__" && !params.is_empty() {
        Piece::Param(params.len() - 1)
    } else if t == "__COUNTER__" || t == "__LINE__" || !pasteable(t) {
        Piece::Wild
    } else {
        Piece::Lit(t.to_string())
    }
}

/// The chains a body pastes itself (`a ## b ## c`).
pub fn own_chains(body: &[String], params: &[String]) -> Vec<Chain> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let mut j = i;
        while j + 2 < body.len() && body[j + 1] == "##" {
            j += 2;
        }
        // `, ## __VA_ARGS__` is GNU's comma swallowing, not a paste; no identifier is
        // pasted with punctuation.
        if j > i
            && (i..=j)
                .step_by(2)
                .all(|k| pasteable(&body[k]) || body[k] == "__VA_ARGS__")
        {
            out.push(
                (i..=j)
                    .step_by(2)
                    .map(|k| piece(&body[k], params))
                    .collect(),
            );
        }
        i = j + 1;
    }
    out
}

/// The arguments of an invocation whose `(` is at `open`: tokens of each argument
/// (split at top-level commas), and the index after the `)`.
pub fn args_at<S: AsRef<str>>(toks: &[S], open: usize) -> (Vec<Vec<&str>>, usize) {
    let mut args: Vec<Vec<&str>> = vec![Vec::new()];
    let mut depth = 0;
    let mut k = open;
    while k < toks.len() {
        let t = toks[k].as_ref();
        match t {
            "(" => {
                depth += 1;
                if depth == 1 {
                    k += 1;
                    continue;
                }
            }
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return (args, k + 1);
                }
            }
            "," if depth == 1 => {
                args.push(Vec::new());
                k += 1;
                continue;
            }
            _ => {}
        }
        if let Some(a) = args.last_mut() {
            a.push(t);
        }
        k += 1;
    }
    (args, toks.len())
}

/// What an argument can stand for in a pasted identifier: alternatives, each a
/// sequence of pieces.
pub type ArgVal = Vec<Chain>;

/// Most chains kept for one macro or one substitution; more make a wild piece.
pub const MAX_CHAINS: usize = 16;

/// What an argument gives a parameter: one token is itself; one invocation of a
/// pasting macro is what that macro pastes (`__PASTE(__UNIQUE_ID_, p)`); anything else
/// is wild.
pub fn arg_val(
    arg: &[&str],
    params: &[String],
    chains_of: &dyn Fn(&str) -> Option<Vec<Chain>>,
) -> ArgVal {
    match arg {
        [one] => vec![vec![piece(one, params)]],
        [m, "(", ..] if arg.last() == Some(&")") => {
            let (inner, end) = args_at(arg, 1);
            match chains_of(m) {
                Some(chs) if end == arg.len() => {
                    let vals: Vec<ArgVal> = inner
                        .iter()
                        .map(|a| arg_val(a, params, chains_of))
                        .collect();
                    chs.iter().flat_map(|c| substitute(c, &vals)).collect()
                }
                _ => vec![vec![Piece::Wild]],
            }
        }
        _ => vec![vec![Piece::Wild]],
    }
}

/// A chain with a macro's parameters replaced by its arguments' values (every
/// combination of alternatives, at most [`MAX_CHAINS`]).
pub fn substitute(chain: &Chain, args: &[ArgVal]) -> Vec<Chain> {
    let mut out: Vec<Chain> = vec![Vec::new()];
    for p in chain {
        match p {
            Piece::Param(i) => {
                let wild = vec![vec![Piece::Wild]];
                let alts = args.get(*i).unwrap_or(&wild);
                if out.len() * alts.len() > MAX_CHAINS {
                    out.iter_mut().for_each(|c| c.push(Piece::Wild));
                    continue;
                }
                out = out
                    .iter()
                    .flat_map(|c| {
                        alts.iter().map(move |a| {
                            let mut n = c.clone();
                            n.extend(a.iter().cloned());
                            n
                        })
                    })
                    .collect();
            }
            other => out.iter_mut().for_each(|c| c.push(other.clone())),
        }
    }
    out
}

/// The chain's text when it has only literals.
pub fn literal(chain: &Chain) -> Option<String> {
    chain
        .iter()
        .map(|p| match p {
            Piece::Lit(s) => Some(s.as_str()),
            _ => None,
        })
        .collect::<Option<Vec<&str>>>()
        .map(|v| v.concat())
}

/// The longest literal of a chain (to rule names out quickly).
pub fn longest_literal(chain: &Chain) -> &str {
    chain
        .iter()
        .filter_map(|p| match p {
            Piece::Lit(s) => Some(s.as_str()),
            _ => None,
        })
        .max_by_key(|s| s.len())
        .unwrap_or("")
}

/// Shortest literal piece that makes a partly computed chain worth matching.
pub const MIN_LITERAL: usize = 3;

/// Can the chain make `name` (parameters and wild pieces match anything)? A glob
/// match: literals in order, anything between them; linear backtracking to the last
/// wildcard only, so chains with many wild pieces stay cheap.
///
/// A chain with no literal text of at least [`MIN_LITERAL`] characters (`a ## b` over
/// computed arguments) is not followed: it could make any name, and following it makes
/// every trace event and unique-id macro in the tree a candidate. This is the analysis's
/// one deliberate gap; the brute-force test (`impact_soundness`) measures it.
pub fn matches(chain: &Chain, name: &str) -> bool {
    if literal(chain).is_none() && longest_literal(chain).len() < MIN_LITERAL {
        return false;
    }
    // Quick rejection without allocating: every literal piece must occur in the name.
    if !chain.iter().all(|p| match p {
        Piece::Lit(l) => name.contains(l.as_str()),
        _ => true,
    }) {
        return false;
    }
    // Literal runs separated by wildcards; `lead`/`star_after`: does one open/close it?
    let mut lead = false;
    let mut star_after = false;
    let mut cur = String::new();
    let mut owned: Vec<String> = Vec::new();
    for p in chain {
        match p {
            Piece::Lit(l) => cur.push_str(l),
            _ => {
                if owned.is_empty() && cur.is_empty() {
                    lead = true;
                } else if !cur.is_empty() {
                    owned.push(std::mem::take(&mut cur));
                }
                star_after = true;
                continue;
            }
        }
        star_after = false;
    }
    if !cur.is_empty() {
        owned.push(cur);
    }
    let lits: Vec<&str> = owned.iter().map(String::as_str).collect();
    if lits.is_empty() {
        return lead || name.is_empty();
    }
    let mut rest = name;
    for (i, l) in lits.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == lits.len();
        if first && !lead {
            match rest.strip_prefix(l) {
                Some(r) => rest = r,
                None => return false,
            }
            if last && !star_after {
                return rest.is_empty();
            }
            continue;
        }
        if last && !star_after {
            return rest.len() >= l.len() && rest.ends_with(l);
        }
        match rest.find(l) {
            Some(at) => rest = &rest[at + l.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn chains_and_patterns() {
        let body = v(&[
            "int",
            "n",
            "##",
            "_count",
            ";",
            "foo",
            "##",
            "_bar",
            "##",
            "__COUNTER__",
        ]);
        let c = own_chains(&body, &v(&["n"]));
        assert_eq!(c[0], vec![Piece::Param(0), Piece::Lit("_count".into())]);
        assert_eq!(c[1][2], Piece::Wild);
        assert!(matches(&c[0], "x_count") && !matches(&c[0], "x_counter"));
        assert!(matches(&c[1], "foo_bar12"));
        let site = substitute(&c[0], &[vec![vec![Piece::Lit("dev".into())]]]);
        assert_eq!(literal(&site[0]).as_deref(), Some("dev_count"));
        let toks = v(&[
            "F", "(", "a", ",", "g", "(", "x", ",", "y", ")", ",", ")", ";",
        ]);
        let (args, end) = args_at(&toks, 1);
        assert_eq!(
            args,
            vec![vec!["a"], vec!["g", "(", "x", ",", "y", ")"], vec![]]
        );
        assert_eq!(end, 12);
        let none = |_: &str| None;
        assert_eq!(arg_val(&args[1], &[], &none), vec![vec![Piece::Wild]]);
        let paster = |m: &str| (m == "g").then(|| vec![vec![Piece::Param(0), Piece::Param(1)]]);
        assert_eq!(
            arg_val(&args[1], &[], &paster),
            vec![vec![Piece::Lit("x".into()), Piece::Lit("y".into())]]
        );
        assert_eq!(longest_literal(&c[1]), "_bar");
        assert!(own_chains(
            &v(&["f", "(", "x", ",", "##", "__VA_ARGS__", ")"]),
            &v(&["x", "__VA_ARGS__"])
        )
        .is_empty());
    }

    #[test]
    fn matching_is_a_linear_glob() {
        let lit = |s: &str| Piece::Lit(s.into());
        // Many wild pieces: no exponential backtracking.
        let mut c = vec![lit("abc")];
        c.extend(std::iter::repeat_n(Piece::Wild, 40));
        c.push(lit("xyz"));
        assert!(matches(&c, "abc_0123456789_0123456789_xyz"));
        assert!(!matches(&c, "abc_0123456789_0123456789_xy"));
        assert!(matches(&vec![Piece::Wild, lit("_count")], "dev_count"));
        assert!(!matches(&vec![Piece::Wild, lit("_count")], "dev_counter"));
        assert!(matches(
            &vec![lit("sys_"), Piece::Param(0), lit("_enter")],
            "sys_read_enter"
        ));
        // Wholly computed chains (or with only a short literal) are not followed.
        assert!(!matches(&vec![Piece::Wild, Piece::Param(1)], "anything"));
        assert!(!matches(&vec![Piece::Wild, lit("_"), Piece::Wild], "a_b"));
        assert!(matches(&vec![lit("ab")], "ab"));
    }
}
