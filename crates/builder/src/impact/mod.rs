//! Impact analysis of a header change: which of the units that include a changed header
//! can see the change, so that only those are compiled.
//!
//! 1. [`graph`]: the tree's include graph and its headers' definitions ([`knowledge`]),
//!    in one parallel pass. The header's includers are the units of this configuration
//!    that reach it.
//! 2. [`seeds`]: the header before and after, cut into items ([`items`], over the
//!    tokens of [`lex`]) and matched in order; the items that differ give the names
//!    whose definition changes ([`decl`] reads what a declaration declares).
//! 3. [`closure`]: every macro, declaration and `#if` of the reachable headers that
//!    mentions (or may paste together, [`paste`]) a changed name joins, to a fixed point; a unit is
//!    a candidate when its own text mentions a name of the closure or it includes a
//!    header whose change cannot be reduced to names.
//! 4. [`stream`]: each candidate preprocessed before and after with its own command
//!    line; it is rebuilt only if the difference reaches code or data it emits.
//!
//! Every step errs on the side of looking at more units: an unreadable declaration
//! counts as emitting, a name that might be pasted counts as used, a difference too
//! large to align counts as changed.

pub mod closure;
pub mod decl;
pub mod graph;
pub mod items;
pub mod knowledge;
pub mod lex;
pub mod paste;
pub mod seeds;
pub mod stream;

use std::path::Path;

pub use closure::Candidate;
pub use graph::Graph;
pub(crate) use seeds::unmatched as seeds_lcs;

/// One changed header: its text before and after the patch.
#[derive(Clone, Debug)]
pub struct HeaderChange {
    /// Tree-relative path.
    pub path: String,
    /// The header before the patch.
    pub old: Vec<u8>,
    /// The header after the patch.
    pub new: Vec<u8>,
}

/// The candidates among a header change's includers.
#[derive(Debug, Default)]
pub struct Narrowed {
    /// Changed names, each with where and how it changed.
    pub seeds: Vec<seeds::Seed>,
    /// Reasons that made whole headers' includers candidates.
    pub wide: Vec<(String, String)>,
    /// Names in the closure.
    pub closure: usize,
    /// Headers read item by item to build the closure.
    pub headers_parsed: usize,
    /// Units to look at more closely (paths), with why.
    pub candidates: Vec<(String, String)>,
}

/// Narrow `units` (tree-relative sources that include one of the changed headers) to
/// the candidates that may see the change.
pub fn narrow(g: &Graph, tree: &Path, changes: &[HeaderChange], units: &[String]) -> Narrowed {
    let mut all = Vec::new();
    let mut out = Narrowed::default();
    for c in changes {
        let s = seeds::seeds(&c.path, &c.old, &c.new, &g.knowledge);
        out.seeds.extend(s.names.iter().cloned());
        // A header outside the graph (a new file) widens to every includer given.
        let id = g.id(&c.path);
        match id {
            Some(id) => all.push((id, s)),
            None if !s.names.is_empty() || !s.wide.is_empty() => {
                out.wide
                    .push((c.path.clone(), "not part of the scanned tree".into()));
            }
            None => {}
        }
    }
    let ids: Vec<u32> = units.iter().filter_map(|u| g.id(u)).collect();
    // Units the graph does not know cannot be narrowed.
    let unknown = units
        .iter()
        .filter(|u| g.id(u).is_none())
        .map(|u| (u.clone(), "not in the scanned tree".to_string()));
    if out
        .wide
        .iter()
        .any(|(_, w)| w == "not part of the scanned tree")
    {
        out.candidates = units
            .iter()
            .map(|u| {
                (
                    u.clone(),
                    "a changed header outside the scanned tree".to_string(),
                )
            })
            .collect();
        return out;
    }
    out.candidates.extend(unknown);
    let c = closure::closure(g, tree, &all, &ids);
    out.closure = c.names.len();
    out.headers_parsed = c.headers_parsed;
    out.wide = c
        .wide
        .iter()
        .map(|(h, why)| (g.path(*h).to_string(), why.clone()))
        .collect();
    out.wide.sort();
    let mut cands = closure::candidates(g, tree, &c, &ids);
    cands.sort_by(|a, b| g.path(a.unit).cmp(g.path(b.unit)));
    out.candidates.extend(
        cands
            .into_iter()
            .map(|c| (g.path(c.unit).to_string(), c.why)),
    );
    out
}
