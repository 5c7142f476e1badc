//! Phase 3b, narrow: of the units a changed header reaches, rebuild only those whose
//! compiled code can change (see [`crate::impact`]).
//!
//! 1. The tree's include graph and definitions are scanned once; the changed names and
//!    their closure over the headers give the candidates: includers whose own text uses
//!    one of the names (or includes a header whose change cannot be reduced to names).
//! 2. Each candidate is preprocessed with its own command line (`make <unit>.i`) in the
//!    pristine tree and with the patch applied; a unit is rebuilt only if the difference
//!    of the two streams reaches code or data it emits.
//!
//! Units the patch reaches directly (a changed `.c`) are never narrowed. Assembly units a
//! header reaches are only candidates (they are built anyway just to show that they do
//! not change). Everything errs towards rebuilding: a unit the graph does not know, or
//! whose preprocessing fails, is kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::prepare::Prepared;
use super::{BuildOptions, KCFLAGS};
use crate::error::{io, step_hint, Result};
use crate::impact::{self, stream, Graph, HeaderChange};
use crate::patch::Plan;
use crate::progress::Progress;
use crate::units::Unit;

/// Header-reached units below this count are rebuilt without analysis (the scan costs
/// about as much as compiling a few units).
pub const MIN_UNITS: usize = 9;

/// More candidates than this after the name analysis refuse the patch: preprocessing
/// and compiling them all would take longer than the full kernel build we exist to avoid.
pub const MAX_CANDIDATES: usize = 600;

/// What the narrowing found, for the report and `--explain`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Narrowing {
    /// Units of this configuration that include a changed header.
    pub includers: usize,
    /// Candidates of the name analysis.
    pub candidates: usize,
    /// Units kept for rebuilding.
    pub rebuilt: usize,
    /// The changed names (seeds) with where they changed.
    pub seeds: Vec<String>,
    /// Each kept unit's source and why it is rebuilt.
    pub why: Vec<(String, String)>,
    /// Candidates left out after preprocessing, with why.
    pub dropped: Vec<(String, String)>,
}

/// The headers the plan changes, before and after.
fn header_changes(tree: &Path, plan: &Plan) -> Vec<HeaderChange> {
    plan.writes
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "h"))
        .map(|(p, new)| HeaderChange {
            path: p.display().to_string(),
            old: std::fs::read(tree.join(p)).unwrap_or_default(),
            new: new.clone().unwrap_or_default(),
        })
        .collect()
}

/// Phase entry point: narrow `units` in place. `via_header` are the sources reached only
/// through a changed header.
pub fn run(
    opts: &BuildOptions,
    prepared: &Prepared,
    plan: &Plan,
    units: &mut Vec<Unit>,
    via_header: &BTreeSet<PathBuf>,
    p: &mut Progress,
) -> Result<Option<Narrowing>> {
    let reached: Vec<&Unit> = units
        .iter()
        .filter(|u| via_header.contains(&u.source))
        .collect();
    if opts.all_includers || reached.len() < MIN_UNITS {
        return Ok(None);
    }
    let k = &prepared.kernel;
    let tree = k.tree();
    p.phase("impact analysis");
    let changes = header_changes(&tree, plan);
    let sources: BTreeSet<String> = reached
        .iter()
        .map(|u| u.source.display().to_string())
        .collect();
    let extra: Vec<String> = sources
        .iter()
        .filter(|s| s.starts_with("tools/"))
        .cloned()
        .collect();
    let g = Graph::scan(&tree, &extra);
    p.debug(&format!(
        "include graph: {} files in {:.1} s",
        g.files.len(),
        g.seconds
    ));
    let list: Vec<String> = sources.iter().cloned().collect();
    let n = impact::narrow(&g, &tree, &changes, &list);
    let mut out = Narrowing {
        includers: sources.len(),
        candidates: n.candidates.len(),
        seeds: n
            .seeds
            .iter()
            .map(|s| format!("{} ({} at {})", s.name, s.what, s.at))
            .collect(),
        ..Default::default()
    };
    for (u, why) in n.candidates.iter().take(20) {
        p.debug(&format!("candidate {u}: {why}"));
    }
    const SHOWN: usize = 5;
    for (i, (h, why)) in n.wide.iter().enumerate() {
        let line = format!("{h}: every includer is a candidate: {why}");
        if i < SHOWN {
            p.note(&line);
        } else {
            p.debug(&line);
        }
    }
    if n.wide.len() > SHOWN {
        p.note(&format!(
            "... and {} more header(s) whose includers are all candidates (in the log)",
            n.wide.len() - SHOWN
        ));
    }
    if n.candidates.len() > MAX_CANDIDATES {
        return Err(too_many(&out, &n));
    }
    let cands: BTreeMap<String, String> = n.candidates.iter().cloned().collect();
    let c_units: Vec<Unit> = reached
        .iter()
        .filter(|u| cands.contains_key(&u.source.display().to_string()))
        .filter(|u| u.source.extension().is_some_and(|e| e == "c"))
        .map(|u| (*u).clone())
        .collect();
    p.phase("preprocess candidates");
    let verdicts = streams(opts, prepared, plan, &c_units, p)?;
    let mut keep: BTreeSet<PathBuf> = BTreeSet::new();
    for u in reached.iter() {
        let src = u.source.display().to_string();
        let Some(cause) = cands.get(&src) else {
            continue;
        };
        match verdicts.get(&u.object) {
            Some(stream::Verdict::Same) => out.dropped.push((
                src,
                format!("{cause}; its preprocessed code does not change"),
            )),
            Some(stream::Verdict::Unused(names)) => out.dropped.push((
                src,
                format!(
                    "{cause}; only declarations it does not use change: {}",
                    short(names)
                ),
            )),
            Some(stream::Verdict::Changed(items)) => {
                keep.insert(u.source.clone());
                out.why.push((
                    src,
                    format!("{cause}; its code changes in {}", short(items)),
                ));
            }
            None => {
                keep.insert(u.source.clone());
                out.why
                    .push((src, format!("{cause} (not preprocessed on its own: kept)")));
            }
        }
    }
    units.retain(|u| !via_header.contains(&u.source) || keep.contains(&u.source));
    out.rebuilt = keep.len();
    out.why.sort();
    out.why.dedup();
    out.dropped.sort();
    out.dropped.dedup();
    report(opts, &changes, &out, p);
    Ok(Some(out))
}

/// The counts, and with `--explain` each includer's reason (always in the log).
fn report(opts: &BuildOptions, changes: &[HeaderChange], out: &Narrowing, p: &mut Progress) {
    p.note(&format!(
        "impact of {}: {} includer(s) built in this configuration, {} candidate(s) by name, {} rebuilt",
        changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>().join(", "),
        out.includers,
        out.candidates,
        out.rebuilt
    ));
    for (u, why) in &out.why {
        if opts.explain {
            p.note(&format!("rebuild {u}: {why}"));
        } else {
            p.debug(&format!("rebuild {u}: {why}"));
        }
    }
    for (u, why) in &out.dropped {
        if opts.explain {
            p.note(&format!("skip {u}: {why}"));
        } else {
            p.debug(&format!("skip {u}: {why}"));
        }
    }
}

fn short(v: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = v.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > SHOWN {
        s.push_str(&format!(" and {} more", v.len() - SHOWN));
    }
    s
}

fn too_many(out: &Narrowing, n: &impact::Narrowed) -> crate::error::Error {
    let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, why) in &n.candidates {
        *causes.entry(why.as_str()).or_default() += 1;
    }
    let mut top: Vec<(&str, usize)> = causes.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1));
    let top: Vec<String> = top
        .iter()
        .take(3)
        .map(|(w, c)| format!("{c} unit(s): {w}"))
        .collect();
    // A changed struct or union: its layout, not only its users, is the problem.
    let types: Vec<&str> = out
        .seeds
        .iter()
        .filter_map(|s| {
            let name = s.split(" (").next().unwrap_or(s);
            (name.starts_with("struct ") || name.starts_with("union ")).then_some(name)
        })
        .collect();
    let layout = if types.is_empty() {
        String::new()
    } else {
        format!(
            "{} changes: objects of the running kernel keep the old layout, so a live patch \
             cannot change it (and every unit that uses it would change); keep the type as it \
             is and attach new fields with a shadow variable (klp_shadow_alloc/klp_shadow_get, \
             keyed on the object); otherwise ",
            types.join(", ")
        )
    };
    step_hint(
        format!(
            "the header change reaches {} of its {} includers (more than {MAX_CANDIDATES}); changed names: {}; \
             most common causes: {}",
            out.candidates,
            out.includers,
            short(&out.seeds),
            top.join("; ")
        ),
        format!(
            "{layout}keep the fix in the functions that need it (a new helper in the .c files that call it) \
             instead of a widely used macro or inline; a change that moves lines under inline functions \
             expanding __LINE__ (WARN_ON, might_sleep) reaches all their users; --all-includers rebuilds every \
             includer regardless"
        ),
    )
}

/// Preprocess `units` before and after the patch and compare their streams.
fn streams(
    opts: &BuildOptions,
    prepared: &Prepared,
    plan: &Plan,
    units: &[Unit],
    p: &mut Progress,
) -> Result<HashMap<PathBuf, stream::Verdict>> {
    if units.is_empty() {
        return Ok(HashMap::new());
    }
    let before = preprocess(opts, prepared, None, units, p)?;
    let after = preprocess(opts, prepared, Some(plan), units, p)?;
    let mut out = HashMap::new();
    for u in units {
        if let (Some(b), Some(a)) = (before.get(&u.object), after.get(&u.object)) {
            out.insert(u.object.clone(), stream::compare(b, a));
        }
    }
    Ok(out)
}

/// `make <unit>.i` for every unit (with the patch written under the journal when
/// `plan` is given, rolled back afterwards); the streams read, the `.i` files removed. A
/// unit that does not preprocess is left out of the result (and so kept).
fn preprocess(
    opts: &BuildOptions,
    prepared: &Prepared,
    plan: Option<&Plan>,
    units: &[Unit],
    p: &mut Progress,
) -> Result<HashMap<PathBuf, stream::Stream>> {
    let k = &prepared.kernel;
    let tree = k.tree();
    let targets: Vec<PathBuf> = units.iter().map(|u| u.object.with_extension("i")).collect();
    let mut journal = prepared.journal()?;
    let mut pristine = prepared.pristine()?;
    let made = (|| {
        for t in &targets {
            journal.record(t)?;
        }
        if let Some(plan) = plan {
            crate::patch::write(plan, &mut journal, pristine.as_mut())?;
        }
        let mut args = k.make_args(opts.jobs);
        args.push("-k".into());
        args.push(format!(
            "KCFLAGS={KCFLAGS} -I{}",
            prepared.include.display()
        ));
        args.extend(targets.iter().map(|t| t.display().to_string()));
        let what = if plan.is_some() {
            "preprocessing candidates with the patch"
        } else {
            "preprocessing candidates"
        };
        crate::cmd::run_lenient(k.command("make").args(&args), what, p)?;
        let mut out = HashMap::new();
        for (u, t) in units.iter().zip(&targets) {
            let path = tree.join(t);
            match std::fs::read(&path) {
                Ok(text) => {
                    out.insert(u.object.clone(), stream::read(text));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    p.debug(&format!("{}: not preprocessed; kept", u.source.display()));
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(out)
    })();
    let restored = journal.roll_back();
    let out = made?;
    restored?;
    Ok(out)
}
