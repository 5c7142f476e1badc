//! From the changed names to the units that may see them.
//!
//! The closure: a name joins when anything that mentions a name already in joins too —
//! a macro whose body mentions it (so its uses expand to it), a file-scope declaration
//! in a header (a static inline calling it, a struct with a field of its type, a
//! prototype using the type, ...), everything under an `#if` that tests it, and a macro
//! that may paste it together from pieces. A header item that emits code by itself, or
//! whose declared names cannot be read, makes the header "wide": all its includers are
//! candidates. Then a unit is a candidate when its own text (the `.c` and the non-header
//! files it includes) mentions a name of the closure, hands a piece of one to a pasting
//! macro, or when it includes a wide header.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;

use super::decl::{self, Names};
use super::graph::Graph;
use super::items::{bare, is_tag_keyword, tag_key, ItemKind, Parsed};
use super::knowledge::Knowledge;
use super::lex::{self, Kind};
use super::paste;
use super::seeds::Seeds;

/// The names a change reaches, each with why, and the headers that widen.
#[derive(Debug, Default)]
pub struct Closure {
    /// Name -> why it is in (for `--explain`).
    pub names: HashMap<String, String>,
    /// Header id -> why all its includers are candidates.
    pub wide: HashMap<u32, String>,
    /// Rounds until the fixed point.
    pub rounds: usize,
    /// Headers that had to be read item by item.
    pub headers_parsed: usize,
}

/// A unit to look at more closely, and why.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The unit (graph id).
    pub unit: u32,
    /// Why it is a candidate.
    pub why: String,
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Does `text` mention one of the automaton's words as a whole identifier?
fn mentions_word(ac: &AhoCorasick, text: &[u8]) -> bool {
    ac.find_iter(text).any(|m| {
        let before = m.start().checked_sub(1).map(|i| text[i]);
        let after = text.get(m.end()).copied();
        !before.is_some_and(is_ident_byte) && !after.is_some_and(is_ident_byte)
    })
}

/// An automaton for `names` and the pasting macros that may make one of them.
fn automaton(k: &Knowledge, names: &[String]) -> AhoCorasick {
    let strs: Vec<&str> = names.iter().map(|n| bare(n)).collect();
    let mut words: Vec<&str> = strs.clone();
    words.extend(k.pasters_for(&strs));
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(words)
        .expect("identifiers build an automaton")
}

/// State of one closure computation.
struct Walk<'a> {
    g: &'a Graph,
    tree: &'a Path,
    universe: Vec<u32>,
    parsed: HashMap<u32, Parsed>,
    done_items: HashMap<u32, HashSet<usize>>,
    out: Closure,
    /// When the closure stops and widens to every includer.
    deadline: std::time::Instant,
}

impl Walk<'_> {
    fn add(&mut self, name: &str, why: impl FnOnce() -> String, next: &mut Vec<String>) {
        if !self.out.names.contains_key(name) {
            self.out.names.insert(name.to_string(), why());
            next.push(name.to_string());
        }
    }

    fn widen(&mut self, file: u32, why: String) {
        self.out.wide.entry(file).or_insert(why);
    }

    /// Macros whose bodies mention or may paste a frontier name.
    fn macros(&mut self, frontier: &HashSet<String>, next: &mut Vec<String>) {
        let k = &self.g.knowledge;
        let mut found: Vec<(String, String)> = Vec::new();
        for (name, defs) in &k.macros {
            if self.out.names.contains_key(name) {
                continue;
            }
            for d in defs {
                if let Some(t) = d.body.iter().find(|t| frontier.contains(*t)) {
                    found.push((
                        name.clone(),
                        format!("macro at {}:{} uses {t}", k.files[d.file as usize], d.line),
                    ));
                    break;
                }
            }
        }
        for f in frontier {
            for m in k.making(bare(f)) {
                found.push((m.clone(), format!("macro that pastes {f} together")));
            }
        }
        for (n, why) in found {
            self.add(&n, || why, next);
        }
    }

    /// Header items that mention the closure.
    fn headers(&mut self, frontier: &[String], next: &mut Vec<String>) {
        let ac = automaton(&self.g.knowledge, frontier);
        let hits: Vec<u32> = self
            .universe
            .par_iter()
            .copied()
            .filter(|&f| {
                std::fs::read(self.tree.join(self.g.path(f)))
                    .map(|t| mentions_word(&ac, &t))
                    .unwrap_or(false)
            })
            .collect();
        for f in hits {
            if std::time::Instant::now() > self.deadline {
                return;
            }
            if !self.parsed.contains_key(&f) {
                let text = std::fs::read(self.tree.join(self.g.path(f))).unwrap_or_default();
                self.parsed.insert(f, Parsed::new(text));
                self.out.headers_parsed += 1;
            }
            self.items(f, next);
        }
    }

    fn items(&mut self, f: u32, next: &mut Vec<String>) {
        let p = self.parsed.remove(&f).expect("parsed");
        let k = &self.g.knowledge;
        let path = self.g.path(f).to_string();
        let mut chains: HashSet<u32> = HashSet::new();
        let mut found: Vec<(usize, String)> = Vec::new();
        let done = self.done_items.entry(f).or_default();
        for (i, it) in p.items.iter().enumerate() {
            if done.contains(&i) {
                continue;
            }
            let hit = p
                .mentions(it)
                .find(|m| self.out.names.contains_key(m.as_ref()));
            let pasted = if it.kind == ItemKind::Decl {
                pastes_closure(&p, it, k, &self.out.names)
            } else {
                None
            };
            if let Some(m) = hit.map(|m| m.into_owned()).or(pasted) {
                if it.kind == ItemKind::Cond {
                    chains.insert(*it.chains.last().unwrap_or(&u32::MAX));
                }
                found.push((i, m));
            }
        }
        for (i, it) in p.items.iter().enumerate() {
            if !done.contains(&i)
                && it.kind != ItemKind::Cond
                && it.chains.iter().any(|c| chains.contains(c))
                && !found.iter().any(|(j, _)| *j == i)
            {
                found.push((i, "an #if that tests a changed name".into()));
            }
        }
        let mut adds: Vec<(String, String)> = Vec::new();
        let mut widen: Vec<String> = Vec::new();
        for (i, cause) in found {
            done.insert(i);
            let it = &p.items[i];
            let at = format!("{path}:{}", p.lines(it).0);
            match &it.kind {
                ItemKind::Define { name, .. } => {
                    adds.push((name.clone(), format!("macro at {at} uses {cause}")))
                }
                ItemKind::Undef(name) => adds.push((name.clone(), format!("#undef at {at}"))),
                ItemKind::Include => {
                    widen.push(format!("{at}: an #include that depends on {cause}"))
                }
                ItemKind::Other => widen.push(format!("{at}: a directive that depends on {cause}")),
                ItemKind::Decl => {
                    let d = decl::info(&p, it, k);
                    for n in &d.names {
                        adds.push((n.clone(), format!("declared at {at}, which uses {cause}")));
                    }
                    if d.opaque {
                        widen.push(format!(
                            "{at}: a pasting macro invocation that uses {cause}"
                        ));
                    } else if d.emits {
                        widen.push(format!("{at}: code every includer compiles uses {cause}"));
                    }
                }
                _ => {}
            }
        }
        self.parsed.insert(f, p);
        for (n, why) in adds {
            self.add(&n, || why, next);
        }
        for w in widen {
            self.widen(f, w);
        }
    }
}

/// Does a file-scope item invoke a pasting macro in a way that may make a closure name?
fn pastes_closure(
    p: &Parsed,
    it: &super::items::Item,
    k: &Knowledge,
    names: &HashMap<String, String>,
) -> Option<String> {
    let toks: Vec<&str> = p.toks(it).iter().map(|t| p.s(t)).collect();
    let filter = Filter::All;
    site_hit(&toks, k, names, &filter)
}

/// A quick test that rules a pasted chain out before matching it against every name.
enum Filter<'a> {
    All,
    Substrings(HashSet<&'a str>),
}

impl Filter<'_> {
    fn may(&self, lit: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Substrings(s) => lit.is_empty() || s.contains(lit),
        }
    }
}

/// The first pasting invocation in `toks` that may make a closure name.
fn site_hit(
    toks: &[&str],
    k: &Knowledge,
    names: &HashMap<String, String>,
    filter: &Filter,
) -> Option<String> {
    for (i, t) in toks.iter().enumerate() {
        if !k.pastes(t) || toks.get(i + 1) != Some(&"(") {
            continue;
        }
        let (args, _) = paste::args_at(toks, i + 1);
        for c in k.site_chains(t, &args) {
            if !filter.may(paste::longest_literal(&c)) {
                continue;
            }
            if let Some(n) = names.keys().find(|n| paste::matches(&c, bare(n))) {
                return Some(format!("{t}(...) may paste {n} together"));
            }
        }
    }
    None
}

/// Headers reachable from the units (and the forced includes).
fn universe(g: &Graph, units: &[u32]) -> Vec<u32> {
    let mut seen: HashSet<u32> = HashSet::new();
    let mut work: Vec<u32> = units.to_vec();
    work.extend(g.forced.iter().copied());
    work.extend(g.forced_in_dir.iter().flat_map(|(_, f)| f.iter().copied()));
    while let Some(f) = work.pop() {
        for &h in &g.includes[f as usize] {
            if seen.insert(h) {
                work.push(h);
            }
        }
    }
    let mut v: Vec<u32> = seen
        .into_iter()
        .filter(|&f| !g.path(f).ends_with(".c") && !g.path(f).ends_with(".S"))
        .collect();
    v.sort_unstable();
    v
}

/// Closure size past which the analysis stops and widens to every includer.
pub const MAX_NAMES: usize = 1000;

/// Time after which the closure stops and widens to every includer (a closure that
/// grows this long reaches most of the tree anyway).
pub const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// The closure of the seeds over the headers the units can reach.
pub fn closure(g: &Graph, tree: &Path, seeds: &[(u32, Seeds)], units: &[u32]) -> Closure {
    let mut w = Walk {
        g,
        tree,
        universe: universe(g, units),
        parsed: HashMap::new(),
        done_items: HashMap::new(),
        out: Closure::default(),
        deadline: std::time::Instant::now() + MAX_TIME,
    };
    let mut frontier: Vec<String> = Vec::new();
    for (h, s) in seeds {
        for seed in &s.names {
            w.add(
                &seed.name,
                || format!("{} at {} (the patch)", seed.what, seed.at),
                &mut frontier,
            );
        }
        for why in &s.wide {
            w.widen(*h, why.clone());
        }
    }
    while !frontier.is_empty() {
        let late = std::time::Instant::now() > w.deadline;
        if w.out.names.len() > MAX_NAMES || late {
            // Past this, nearly every includer is a candidate anyway: say so instead of
            // reading the whole tree round after round.
            let why = if late {
                format!(
                    "the changed names did not settle within {} s ({} names reached through \
                     macros, inline functions and declarations)",
                    MAX_TIME.as_secs(),
                    w.out.names.len()
                )
            } else {
                format!(
                    "the changed names reach more than {MAX_NAMES} others through macros, inline \
                     functions and declarations"
                )
            };
            for (h, _) in seeds {
                w.widen(*h, why.clone());
            }
            break;
        }
        w.out.rounds += 1;
        let set: HashSet<String> = frontier.iter().cloned().collect();
        let mut next = Vec::new();
        w.macros(&set, &mut next);
        w.headers(&frontier, &mut next);
        tracing::debug!(
            round = w.out.rounds,
            names = w.out.names.len(),
            next = next.len(),
            "impact closure"
        );
        frontier = next;
    }
    w.out
}

/// Every substring of the closure's names (what a pasted literal must be to make one).
fn pieces_of(names: &HashMap<String, String>) -> HashSet<&str> {
    let mut out = HashSet::new();
    for n in names.keys() {
        let n = bare(n);
        let b = n.as_bytes();
        for i in 0..b.len() {
            for j in i + 1..b.len() {
                if n.is_char_boundary(i) && n.is_char_boundary(j) {
                    out.insert(&n[i..j]);
                }
            }
        }
    }
    out
}

/// Which of `units` are candidates: their text mentions the closure, or pastes a piece
/// of it, or they include a wide header.
pub fn candidates(g: &Graph, tree: &Path, c: &Closure, units: &[u32]) -> Vec<Candidate> {
    let mut wide_reach: HashMap<u32, u32> = HashMap::new();
    for &h in c.wide.keys() {
        for u in g.includers(h) {
            wide_reach.entry(u).or_insert(h);
        }
    }
    let pieces = Filter::Substrings(pieces_of(&c.names));
    let k = &g.knowledge;
    let names: Vec<String> = c.names.keys().cloned().collect();
    let ac = automaton(k, &names);
    units
        .par_iter()
        .filter_map(|&u| {
            let unit_path = g.path(u);
            if let Some(h) = wide_reach.get(&u).copied().or_else(|| {
                c.wide
                    .keys()
                    .copied()
                    .find(|&h| g.forced_reach(h, unit_path))
            }) {
                return Some(Candidate {
                    unit: u,
                    why: format!("includes {}: {}", g.path(h), c.wide[&h]),
                });
            }
            for f in own_texts(g, u) {
                let text = std::fs::read(tree.join(g.path(f))).unwrap_or_default();
                if !mentions_word(&ac, &text) {
                    continue;
                }
                if let Some(why) = text_reaches(&text, &c.names, &pieces, k) {
                    let file = if f == u {
                        String::new()
                    } else {
                        format!(" (in {})", g.path(f))
                    };
                    return Some(Candidate {
                        unit: u,
                        why: format!("{why}{file}"),
                    });
                }
            }
            None
        })
        .collect()
}

/// A unit and the non-header files it includes (`#include "clock.c"`).
fn own_texts(g: &Graph, u: u32) -> Vec<u32> {
    let mut out = vec![u];
    let mut i = 0;
    while i < out.len() {
        for &f in &g.includes[out[i] as usize] {
            if !g.path(f).ends_with(".h") && !out.contains(&f) {
                out.push(f);
            }
        }
        i += 1;
    }
    out
}

/// Does a unit's text use a closure name, or paste one together?
fn text_reaches(
    text: &[u8],
    names: &HashMap<String, String>,
    pieces: &Filter,
    k: &Knowledge,
) -> Option<String> {
    let toks = lex::tokens(text);
    let mut pasting = false;
    for (i, t) in toks.iter().enumerate() {
        if t.kind != Kind::Ident {
            continue;
        }
        let s = t.str(text);
        let key = match i.checked_sub(1).map(|j| toks[j].str(text)) {
            Some(kw) if is_tag_keyword(kw) => tag_key(kw, s),
            _ => s.to_string(),
        };
        if let Some(why) = names.get(&key) {
            return Some(format!("uses {key} ({why})"));
        }
        pasting |= k.pastes(s);
    }
    if !pasting {
        return None;
    }
    let strs: Vec<&str> = toks.iter().map(|t| t.str(text)).collect();
    site_hit(&strs, k, names, pieces)
}
