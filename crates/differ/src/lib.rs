//! `create-diff-object`: compare an original and a patched kernel object (built with
//! `-ffunction-sections -fdata-sections`) and write an object holding the changed and
//! new functions, with the metadata kpatch-build turns into a livepatch module.
//!
//! The pipeline, one private module per phase (see DESIGN.md): `prepare` → `lookup` →
//! `correlate` → `compare` → `include` → `special` → `migrate` → `output`, driven by
//! [`run`] (or [`run_objects`] on objects already read). Architecture specifics sit behind
//! the `arch::Arch` trait.

#![warn(missing_docs)]

mod arch;
mod compare;
mod correlate;
mod elf;
mod error;
mod include;
mod lookup;
mod migrate;
mod names;
mod output;
mod prepare;
mod special;

pub use elf::{print_log, silent_log, Elf, LogFn, Stream};
pub use error::{Error, Result};
pub use lookup::{read_elf_symbols, ObjSym};
pub use special::StructSizes;

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
}

/// What a successful run found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Functions of the original that the patch changes.
    pub changed: Vec<String>,
    /// Functions the patch adds.
    pub new: Vec<String>,
    /// False when there was nothing to patch (exit status 3); no output is written.
    pub wrote_output: bool,
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

/// Run on already-loaded objects.
pub fn run_objects(opts: &Options, orig: &mut Elf, patched: &mut Elf) -> Result<Report> {
    check_headers(orig, patched)?;
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
    compare::check_func_profiling(patched, orig)?;

    include::include_standard_elements(patched);
    let num_changed = include::include_changed_functions(patched);
    let callbacks = include::include_callbacks(patched);
    let states = include::include_states(patched);
    include::include_force_elements(patched);
    let new_globals = include::include_new_globals(patched);
    include::include_debug_sections(patched);

    special::process_special_sections(patched, &lookup, &opts.sizes)?;

    let mut report = Report::default();
    for (status, name) in include::print_changes(patched) {
        match status {
            Status::New => {
                patched.note(format!("new function: {name}"));
                report.new.push(name);
            }
            _ => {
                patched.note(format!("changed function: {name}"));
                report.changed.push(name);
            }
        }
    }
    include::verify_patchability(patched, orig)?;

    if num_changed == 0 && new_globals == 0 && !callbacks && !states {
        return Ok(report);
    }
    let out = migrate::migrate_included(patched)?;
    output::write_output(out, &lookup, &opts.output, opts.klp_placeholders)?;
    report.wrote_output = true;
    Ok(report)
}
