//! `create-diff-object`: compare an original and a patched kernel object (built with
//! `-ffunction-sections -fdata-sections`) and write an object holding the changed and
//! new functions, with the metadata kpatch-build turns into a livepatch module.
//!
//! The pipeline, one private module per phase (see DESIGN.md): `prepare` → `lookup` →
//! `correlate` → `compare` → `include` → `special` → `types` + `explain` (from the
//! objects' DWARF, `dwarf`) → `migrate` → `output`, driven by [`run`] (or
//! [`run_objects`] on objects already read). Architecture specifics sit behind the
//! `arch::Arch` trait. Refusals from every phase that judges the patch's content are
//! gathered (`refusal`) and reported together.

#![warn(missing_docs)]

mod arch;
mod compare;
mod correlate;
mod dwarf;
mod elf;
mod error;
mod explain;
mod include;
mod lookup;
mod migrate;
mod names;
mod output;
mod prepare;
mod refusal;
mod reroute;
mod special;
mod types;

pub use elf::{print_log, silent_log, Elf, LogFn, Stream};
pub use error::{Error, Refusal, Refused, Result};
pub use explain::{Cause, Explain, Explanation};
pub use lookup::{read_elf_symbols, ObjSym};
pub use special::StructSizes;
pub use types::{TypeFinding, TypeReport};

use elf::Status;

use error::unpatchable;

/// Inputs of one run (upstream's positional arguments).
#[derive(Clone, Debug)]
pub struct Options {
    /// The original object.
    pub orig: String,
    /// The patched object (the same translation unit, patched).
    pub patched: String,
    /// `vmlinux`, or the name of the module the objects belong to.
    pub parent_name: String,
    /// The parent's symbol table: `readelf -s --wide` output, or the parent ELF itself.
    pub parent_symtab: String,
    /// `Module.symvers` (exported symbols), or `/dev/null`.
    pub symvers: String,
    /// The patch module's name: accepted for upstream's command line; the output does
    /// not depend on it.
    pub patch_name: String,
    /// Where the output object goes (written atomically, only on success).
    pub output: String,
    /// Special-section entry sizes.
    pub sizes: StructSizes,
    /// Where notes and error lines go.
    pub log: elf::LogFn,
    /// Keep klp-bound relocations against `.klp.sym.*` placeholders for the module
    /// link (kpatch-build); off gives upstream's output exactly.
    pub klp_placeholders: bool,
    /// How each changed function is explained in the log (always in the [`Report`]).
    pub explain: Explain,
    /// Files the patch changes, relative to the kernel tree (kpatch-build knows them):
    /// they tell an inlined callee or header the patch changed from one it did not.
    pub changed_files: Vec<String>,
    /// Functions carried across objects (kpatch-build plans it from the parent's
    /// relocations; see `reroute`).
    pub carry: Carry,
}

/// A change carried across objects of the same parent: a changed function without an
/// ftrace hook that other objects call becomes a copy of the module's own, and its
/// callers in every object are patched to call it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carry {
    /// Global functions of this object without an ftrace hook whose callers elsewhere
    /// were found and can carry them: they become the module's own (global) copies.
    pub out: Vec<String>,
    /// Functions of this object patched although unchanged, because they call a carried
    /// function (`callee`, caller) pairs.
    pub force: Vec<(String, String)>,
    /// Symbols another object of the patch module defines (carried functions): references
    /// to them stay ordinary references, resolved when the module is linked.
    pub provided: Vec<String>,
}

/// What a run found (a refused run carries it in [`Refused::report`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Functions of the original that the patch changes.
    pub changed: Vec<String>,
    /// Functions the patch adds.
    pub new: Vec<String>,
    /// False when there was nothing to patch (exit status 3); no output is written.
    pub wrote_output: bool,
    /// Why each changed function changed.
    pub explanations: Vec<Explanation>,
    /// Type layout changes between the two objects.
    pub types: TypeReport,
    /// Changed global functions without an ftrace hook (refused unless their callers in
    /// other objects carry them: see [`Carry`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hookless_globals: Vec<String>,
}

fn check_headers(orig: &Elf, patched: &Elf) -> Result<()> {
    let (a, b) = (&orig.obj.header, &patched.obj.header);
    if a.e_machine != b.e_machine {
        return Err(error::fatal(format!(
            "{} is for {} but {} is for {}",
            orig.name,
            kelf::machine_name(a.e_machine),
            patched.name,
            kelf::machine_name(b.e_machine)
        )));
    }
    if a.ident != b.ident
        || a.e_type != b.e_type
        || a.e_machine != b.e_machine
        || a.e_version != b.e_version
        || a.e_entry != b.e_entry
        || a.e_phoff != b.e_phoff
        || a.e_flags != b.e_flags
        || a.e_ehsize != b.e_ehsize
        || a.e_phentsize != b.e_phentsize
        || a.e_shentsize != b.e_shentsize
    {
        return Err(unpatchable(format!(
            "ELF headers differ between {} and {}: they were not built for the same target",
            orig.name, patched.name
        )));
    }
    // Both objects come from the same source file: their STT_FILE symbols agree.
    let files = |e: &Elf| -> Vec<String> {
        e.obj
            .symbols
            .iter()
            .filter(|s| s.kind == kelf::consts::STT_FILE)
            .map(|s| s.name.clone())
            .collect()
    };
    let (fa, fb) = (files(orig), files(patched));
    if !fa.is_empty() && !fb.is_empty() && fa != fb {
        return Err(error::fatal(format!(
            "{} and {} were built from different source files ({} vs {}): they are not an \
             original and a patched build of the same object",
            orig.name,
            patched.name,
            fa.join(","),
            fb.join(",")
        )));
    }
    for e in [orig, patched] {
        if e.obj.header.e_phnum != 0 {
            return Err(unpatchable(format!(
                "{}: ELF contains program header (not a relocatable object)",
                e.name
            )));
        }
    }
    Ok(())
}

/// Run the whole comparison. Messages for the user go to stdout/stderr as upstream's do.
pub fn run(opts: &Options) -> Result<Report> {
    let mut orig = Elf::open(&opts.orig)?;
    let mut patched = Elf::open(&opts.patched)?;
    orig.log = opts.log.clone();
    patched.log = opts.log.clone();
    run_objects(opts, &mut orig, &mut patched)
}

/// Run on already-loaded objects (their messages go to `opts.log`).
pub fn run_objects(opts: &Options, orig: &mut Elf, patched: &mut Elf) -> Result<Report> {
    orig.log = opts.log.clone();
    patched.log = opts.log.clone();
    check_headers(orig, patched)?;
    let debug = dwarf::load_sections(orig, patched);
    for e in [&mut *orig, &mut *patched] {
        prepare::find_func_profiling(e);
        prepare::bundle_symbols(e)?;
        prepare::detect_child_functions(e)?;
    }
    let lookup = lookup::Lookup::open(&opts.parent_symtab, &opts.parent_name, &opts.symvers)?;
    lookup.match_file_blocks(orig)?;

    prepare::mark_grouped_sections(patched);
    prepare::replace_section_symbols(orig)?;
    prepare::replace_section_symbols(patched)?;

    correlate::correlate(orig, patched);
    correlate::correlate_static_locals(orig, patched)?;

    compare::mark_ignored_sections(patched, orig)?;
    compare::compare(patched, orig)?;
    compare::mark_ignored_functions_same(patched)?;
    compare::mark_ignored_sections_same(patched);
    reroute::force_callers(patched, &opts.carry.force)?;
    compare::check_func_profiling(patched, orig, &opts.carry)?;

    include::include_standard_elements(patched);
    let num_changed = include::include_changed_functions(patched);
    let callbacks = include::include_callbacks(patched);
    let states = include::include_states(patched);
    include::include_force_elements(patched);
    let new_globals = include::include_new_globals(patched);
    include::include_debug_sections(patched);

    special::process_special_sections(patched, &lookup, &opts.sizes)?;

    let mut refusals = std::mem::take(&mut patched.refusals);
    let mut report = judge(opts, orig, patched, &debug, &mut refusals);
    report.hookless_globals = std::mem::take(&mut patched.hookless_globals);
    include::verify_patchability(patched, orig, &mut refusals);
    if !refusals.is_empty() {
        return Err(refusal::finish(refusals, report, &|m| patched.error(m)));
    }

    if num_changed == 0 && new_globals == 0 && !callbacks && !states {
        return Ok(report);
    }
    let out = migrate::migrate_included(patched)?;
    output::write_output(
        out,
        &lookup,
        &opts.output,
        opts.klp_placeholders,
        &opts.carry.provided,
    )?;
    report.wrote_output = true;
    Ok(report)
}

/// The type check and the explanations (from both objects' DWARF), and the list of
/// changed and new functions, each followed by its explanation.
fn judge(
    opts: &Options,
    orig: &Elf,
    patched: &Elf,
    debug: &dwarf::DebugSections,
    refusals: &mut Vec<Refusal>,
) -> Report {
    let functions = include::reported_functions(patched);
    let ids: Vec<kelf::SymbolId> = functions.iter().map(|f| f.1).collect();
    let (types, explanations) = dwarf::with_models(orig, patched, debug, |models| {
        if let Err(why) = &models {
            patched.notice(format!("note: {why}: type layouts not checked"));
        }
        let types = types::check(orig, patched, models.clone(), refusals);
        let explanations = match opts.explain {
            Explain::Off => Vec::new(),
            _ => {
                let cx = explain::Ctx {
                    orig,
                    patched,
                    models: models.ok(),
                    types: &types,
                    changed_files: &opts.changed_files,
                };
                explain::explain(&cx, &ids)
            }
        };
        (types, explanations)
    });
    let mut report = Report {
        types,
        ..Report::default()
    };
    for (status, id) in functions {
        let name = patched.y(id).name.clone();
        if status == Status::New {
            patched.note(format!("new function: {name}"));
            report.new.push(name);
            continue;
        }
        patched.note(format!("changed function: {name}"));
        if let Some(e) = explanations.iter().find(|e| e.function == name) {
            match opts.explain {
                Explain::Full => e.full().into_iter().for_each(|l| patched.note(l)),
                Explain::Line => patched.note(e.line()),
                Explain::Off => {}
            }
        }
        report.changed.push(name);
    }
    report.explanations = explanations;
    report
}
