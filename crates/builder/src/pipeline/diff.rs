//! Phase 6, diff: run the differ (`create-diff-object`) on each unit's original and
//! patched objects against the right parent (vmlinux or the unit's module), keeping the
//! changed and new functions and what they need. The differ's messages join the build's
//! log at their severity.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::carry::{CarryPlan, Hookless};
use super::objects::Objects;
use super::prepare::Prepared;
use super::resolve::Target;
use super::units::Units;
use super::{BuildOptions, FunctionChange};
use crate::error::{io, step, Error, Result};
use crate::progress::{Level, Progress};
use crate::units::{Parent, Unit};

/// The differ's outputs.
pub struct Diffed {
    /// One object per unit with a functional change, to be linked into the module.
    pub outputs: Vec<PathBuf>,
    /// Changed and new functions, in unit order.
    pub functions: Vec<FunctionChange>,
    /// Set when functions without an ftrace hook can be carried by callers in other
    /// objects: the build runs again with this plan (and these outputs are dropped).
    pub carry: Option<CarryPlan>,
}

/// Messages of one differ run, with their severity.
type Messages = Arc<Mutex<Vec<(Level, String)>>>;

fn differ_log(messages: &Messages) -> differ::LogFn {
    let m = messages.clone();
    differ::LogFn::new(move |stream, msg| {
        let level = match stream {
            differ::Stream::Note => Level::Debug,
            differ::Stream::Notice => Level::Info,
            differ::Stream::Warning => Level::Warn,
            differ::Stream::Error => Level::Error,
        };
        // The severity says what these prefixes said.
        let msg = ["ERROR: ", "WARNING: ", "NOTICE: "]
            .iter()
            .find_map(|p| msg.strip_prefix(p))
            .unwrap_or(msg);
        if let Ok(mut v) = m.lock() {
            v.push((level, msg.to_string()));
        }
    })
}

/// Phase entry point.
pub fn run(
    opts: &BuildOptions,
    target: &Target,
    prepared: &Prepared,
    units: &Units,
    objects: &Objects,
    p: &mut Progress,
) -> Result<Diffed> {
    p.phase("diff objects");
    let out_dir = prepared.work.join("output");
    std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;
    let mut diffed = Diffed {
        outputs: Vec::new(),
        functions: Vec::new(),
        carry: None,
    };
    let mut refused: Vec<String> = Vec::new();
    let mut refused_units: Vec<(&Unit, differ::Refused)> = Vec::new();
    check_unpatchable(&units.units, objects, p, &mut refused)?;
    for u in units.units.iter().filter(|u| u.unpatchable.is_none()) {
        let (parent, symtab) = parent_of(opts, prepared, u, p)?;
        // One object can be linked into several modules: one output per parent.
        let output = out_dir.join(format!(
            "{parent}--{}",
            u.object.to_string_lossy().replace('/', "__")
        ));
        let messages = Messages::default();
        let dopts = differ::Options {
            orig: objects.orig_of(u).display().to_string(),
            patched: objects.patched.join(&u.object).display().to_string(),
            parent_name: parent.clone(),
            parent_symtab: symtab.display().to_string(),
            symvers: prepared.kernel.symvers().display().to_string(),
            patch_name: target.stem.replace('-', "_"),
            output: output.display().to_string(),
            sizes: objects.sizes.clone(),
            log: differ_log(&messages),
            klp_placeholders: true,
            explain: differ::Explain::Line,
            changed_files: units
                .plan
                .files
                .iter()
                .map(|f| f.path.display().to_string())
                .collect(),
            carry: units.carry.for_object(&u.object),
        };
        let result = differ::run(&dopts);
        let taken = messages
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        // A refused unit's refusals come back in the error, every one of them: its error
        // lines go to the log only.
        let refused_unit = matches!(result, Err(differ::Error::Unpatchable(_)));
        for (level, line) in taken {
            let level = match level {
                Level::Error if refused_unit => Level::Debug,
                l => l,
            };
            p.event(level, &format!("{}: {line}", u.object.display()));
        }
        // Every unit is diffed, so that one run reports all the patch's blockers.
        let report = match result {
            Ok(r) => r,
            Err(differ::Error::Unpatchable(r)) => {
                refused_units.push((u, *r));
                continue;
            }
            Err(e) => return Err(refusal(u, e)),
        };
        record_functions(&report, u, &parent, &mut diffed.functions, p);
        if report.wrote_output {
            diffed.outputs.push(output);
        } else {
            p.note(&format!("{}: no functional change", u.object.display()));
        }
    }
    if !refused_units.is_empty() {
        match carry_or_explain(prepared, units, &refused_units, p)? {
            Ok(plan) if refused.is_empty() => {
                diffed.carry = Some(plan);
                return Ok(diffed);
            }
            Ok(_) => refused.extend(refused_units.iter().map(|(u, r)| refusal_text(u, r, None))),
            Err(why) => refused.extend(
                refused_units
                    .iter()
                    .map(|(u, r)| refusal_text(u, r, Some(&why))),
            ),
        }
    }
    if !refused.is_empty() {
        return Err(Error::Unpatchable(refused.join("\n")));
    }
    if diffed.outputs.is_empty() {
        return Err(Error::NoChange);
    }
    Ok(diffed)
}

/// The unit's changed and new functions, each noted with its explanation.
fn record_functions(
    report: &differ::Report,
    u: &Unit,
    parent: &str,
    functions: &mut Vec<FunctionChange>,
    p: &mut Progress,
) {
    for (list, new) in [(&report.changed, false), (&report.new, true)] {
        for f in list {
            let what = if new { "new" } else { "changed" };
            p.note(&format!("{}: {what} function {f}", u.object.display()));
            let explanation = report
                .explanations
                .iter()
                .find(|e| !new && e.function == *f)
                .cloned();
            if let Some(e) = &explanation {
                p.note(&format!(
                    "{}: {}",
                    u.object.display(),
                    e.line().trim_start()
                ));
            }
            functions.push(FunctionChange {
                object: parent.to_string(),
                function: f.clone(),
                new,
                unit: u.object.clone(),
                explanation,
            });
        }
    }
}

/// The parent's name and symbol table: the vmlinux (given or -dbg) when there is one,
/// else the kallsyms dump; a module's symbol table kept by the -dbg index, else the
/// kallsyms dump.
fn parent_of(
    opts: &BuildOptions,
    prepared: &Prepared,
    u: &Unit,
    p: &mut Progress,
) -> Result<(String, PathBuf)> {
    Ok(match (&u.parent, &opts.kallsyms) {
        (Parent::Vmlinux, ks) => {
            let table = prepared
                .vmlinux
                .clone()
                .or_else(|| ks.clone())
                .unwrap_or_default();
            ("vmlinux".to_string(), table)
        }
        (Parent::Module { name, .. }, Some(ks)) => (name.clone(), ks.clone()),
        (Parent::Module { name, ko }, None) => {
            (name.clone(), prepared.kernel.module_symtab(ko, p)?)
        }
    })
}

/// Units that a changed header reaches but a live patch cannot change (assembly, vDSO
/// code) must come out of the patched build unchanged.
fn check_unpatchable(
    units: &[Unit],
    objects: &Objects,
    p: &mut Progress,
    refused: &mut Vec<String>,
) -> Result<()> {
    for u in units {
        let Some(why) = &u.unpatchable else { continue };
        let change = crate::units::object_change(
            &objects.orig.join(&u.object),
            &objects.patched.join(&u.object),
        )?;
        match change {
            Some(change) => refused.push(format!(
                "{why}; {} changes with the patch ({change})",
                u.object.display()
            )),
            None => p.note(&format!(
                "{}: includes the changed header, object unchanged",
                u.object.display()
            )),
        }
    }
    Ok(())
}

/// When the only refusals are changed global functions without an ftrace hook (and
/// this is the first pass), look for their callers in other objects: the plan to carry
/// them (`Ok`), or why each cannot be carried (`Err`: function -> reason).
fn carry_or_explain(
    prepared: &Prepared,
    units: &Units,
    refused: &[(&Unit, differ::Refused)],
    p: &mut Progress,
) -> Result<std::result::Result<CarryPlan, BTreeMap<String, String>>> {
    let hookless: Vec<Hookless> = refused
        .iter()
        .flat_map(|(u, r)| {
            r.report.hookless_globals.iter().map(|f| Hookless {
                unit: u,
                function: f.clone(),
            })
        })
        .collect();
    let only_hookless = refused.iter().all(|(_, r)| {
        r.refusals
            .iter()
            .all(|x| x.kind == "no-ftrace-hook" && r.report.hookless_globals.contains(&x.subject))
    });
    if hookless.is_empty() || !units.carry.is_empty() {
        return Ok(Err(BTreeMap::new()));
    }
    let plan = super::carry::plan(prepared, &units.units, &hookless, p)?;
    Ok(match plan {
        Ok(plan) if only_hookless => Ok(plan),
        Ok(_) => Err(hookless
            .iter()
            .map(|h| {
                let why = "its callers in other objects can carry it once the patch's other \
                           blockers are fixed";
                (h.function.clone(), why.to_string())
            })
            .collect()),
        Err(why) => Err(why),
    })
}

/// One unit's refusals: the message itself, or each of several on its own line. `why`:
/// why a hookless global function's callers in other objects cannot carry it.
fn refusal_text(u: &Unit, r: &differ::Refused, why: Option<&BTreeMap<String, String>>) -> String {
    let head = format!("{} ({})", u.source.display(), u.object.display());
    let message = |m: &differ::Refusal| match why.and_then(|w| w.get(&m.subject)) {
        Some(reason) if m.kind == "no-ftrace-hook" => hookless_message(u, &m.subject, reason),
        _ => m.message.clone(),
    };
    match r.refusals.as_slice() {
        [one] => format!("{head}: {}", message(one)),
        many => {
            let mut s = format!("{head}: {} unsupported changes:", many.len());
            for m in many {
                s.push_str(&format!("\n  - {}", message(m)));
            }
            s
        }
    }
}

/// A changed global function without an ftrace hook whose callers cannot carry it.
fn hookless_message(u: &Unit, f: &str, why: &str) -> String {
    let built = if u.source.starts_with("lib") && u.source.components().count() == 2 {
        "lib/Makefile builds lib/ without -pg"
    } else {
        "notrace, or a file built without -pg/-mfentry"
    };
    format!(
        "function {f} doesn't have patchable function entry, unable to patch: it has no \
         ftrace hook ({built}), so the kernel cannot redirect calls to it, and its callers \
         cannot carry the change: {why}. Move the fix into its callers, or into a \
         traceable function that calls it."
    )
}

fn refusal(u: &Unit, e: differ::Error) -> Error {
    match e {
        differ::Error::Unpatchable(msg) => Error::Unpatchable(format!(
            "{} ({}): {msg}",
            u.source.display(),
            u.object.display()
        )),
        differ::Error::Fatal(msg) => step(format!(
            "create-diff-object failed on {}: {msg}",
            u.object.display()
        )),
    }
}
