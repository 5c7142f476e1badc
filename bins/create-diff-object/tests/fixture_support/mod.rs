//! Fixture loading, directives, and the checks run on one fixture.

mod klp;
mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use tools::{run, Inspect};

/// Kernel-like compilation: one section per function and object, `call __fentry__`
/// at every function entry (the ftrace hook the differ requires), `__mcount_loc`
/// records, kernel code model, no unwind tables.
const CFLAGS: &[&str] = &[
    "-c",
    "-O2",
    "-ffunction-sections",
    "-fdata-sections",
    "-fno-asynchronous-unwind-tables",
    "-mfentry",
    "-pg",
    "-mrecord-mcount",
    "-fno-pic",
    "-mcmodel=kernel",
    "-fno-common",
    "-nostdinc",
    "-Wall",
    "-Wno-unused-function",
];

/// Upstream kpatch's x86_64 unit-test environment (struct sizes from vmlinux DWARF).
const STRUCT_SIZES: &[(&str, &str)] = &[
    ("PARA_STRUCT_SIZE", "16"),
    ("EX_STRUCT_SIZE", "12"),
    ("BUG_STRUCT_SIZE", "12"),
    ("ALT_STRUCT_SIZE", "13"),
    ("JUMP_STRUCT_SIZE", "16"),
    ("ORC_STRUCT_SIZE", "6"),
    ("STATIC_CALL_STRUCT_SIZE", "8"),
    ("PRINTK_INDEX_STRUCT_SIZE", "44"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Success,
    NoChange,
    Unpatchable,
    Error,
}

impl Expect {
    fn parse(s: &str) -> Result<Expect, String> {
        Ok(match s {
            "success" => Expect::Success,
            "no-change" => Expect::NoChange,
            "unpatchable" => Expect::Unpatchable,
            "error" => Expect::Error,
            _ => return Err(format!("unknown //#Expect: {s}")),
        })
    }

    fn exit_code(self) -> i32 {
        match self {
            Expect::Success => 0,
            Expect::Error => 1,
            Expect::Unpatchable => 2,
            Expect::NoChange => 3,
        }
    }
}

/// What a fixture declares, one `//#Key: value` comment line per item.
#[derive(Debug, Default)]
pub struct Directives {
    /// `Expect: success|no-change|unpatchable|error` (required): exit 0, 3, 2, 1.
    pub expect: Option<Expect>,
    /// `Changed: a,b`: the exact set of `changed function:` lines (default: none).
    pub changed: Option<BTreeSet<String>>,
    /// `New: a,b`: the exact set of `new function:` lines (default: none).
    pub new: Option<BTreeSet<String>>,
    /// `Message: text`: must occur in stdout+stderr (repeatable).
    pub messages: Vec<String>,
    /// `NoMessage: text`: must not occur in stdout+stderr (repeatable).
    pub no_messages: Vec<String>,
    /// `TextSymbols: N`: lines of `nm OUTPUT.o` with type t/T.
    pub text_symbols: Option<usize>,
    /// `Cflags: ...`: extra compiler flags for both objects.
    pub cflags: Vec<String>,
    /// `Args: ...`: extra create-diff-object options (before the positional arguments).
    pub args: Vec<String>,
    /// `Parent: name`: the parent object's name (default `vmlinux`; anything else means
    /// the patch is for a module).
    pub parent: Option<String>,
    /// `Env: KEY=VALUE`: extra environment for create-diff-object.
    pub env: Vec<(String, String)>,
    /// `EnvUnset: KEY`: remove a default variable (e.g. a struct size).
    pub env_unset: Vec<String>,
    /// `OrigSym: name` / `PatchedSym: name`: preconditions on what gcc emitted, so a
    /// fixture fails loudly when a compiler stops producing the shape it tests.
    pub orig_syms: Vec<String>,
    pub patched_syms: Vec<String>,
    /// `OrigRelocTo:` / `PatchedRelocTo:` like `RelocTo`, as preconditions on the inputs.
    pub orig_reloc_to: Vec<(String, Vec<String>)>,
    pub patched_reloc_to: Vec<(String, Vec<String>)>,
    /// `InputsDiffer: section`: precondition that the section's bytes differ between
    /// the two objects (so that a no-change verdict is not trivially true).
    pub inputs_differ: Vec<String>,
    /// `ExpectSym: name letter`: `nm` type letter of a symbol in the output.
    pub syms: Vec<(String, String)>,
    /// `NoSym: name`: the output has no such symbol.
    pub no_syms: Vec<String>,
    /// `ExpectReloc: section count`: relocation entries for `section` in the output.
    pub relocs: Vec<(String, usize)>,
    /// `RelocTo: section sym + addend`: some relocation of `section` ends with these
    /// `readelf -r` tokens (`*` matches any one token, e.g. the addend).
    pub reloc_to: Vec<(String, Vec<String>)>,
    /// `Section: name` / `NoSection: name`: output section presence.
    pub sections: Vec<String>,
    pub no_sections: Vec<String>,
    /// `SectionStrings: section prefix count`: NUL-terminated strings starting with
    /// `prefix` in the output section.
    pub section_strings: Vec<(String, String, usize)>,
    /// `KlpSyms: a,b`: the exact set of symbols resolved through `.kpatch.symbols`
    /// (references to the running kernel's non-exported symbols).
    pub klp_syms: Option<BTreeSet<String>>,
    /// `KlpSympos: name N`: every `.kpatch.symbols` entry for `name` (at least one)
    /// carries sympos N.
    pub klp_sympos: Vec<(String, u64)>,
    /// `FuncSympos: name N`: the `.kpatch.funcs` entry of `name` carries sympos N.
    pub func_sympos: Vec<(String, u64)>,
    /// `NoRelocTo: sec tokens`: no relocation of `sec` ends with these tokens.
    pub no_reloc_to: Vec<(String, Vec<String>)>,
    /// `SectionBytes: sec hex`: the output section's exact contents (relocated fields
    /// are zero: the relocations are not applied).
    pub section_bytes: Vec<(String, Vec<u8>)>,
    /// `ParentLink: item ...`: the parent is not the original object alone but the
    /// `ld` link of these items, in order: `@orig` / `@patched` (the fixture's objects),
    /// a C file of `fixtures/parent/`, compiled like the fixture, or a `.lds` file
    /// there (an implicit linker script).
    pub parent_link: Vec<String>,
    /// `Known-bug: text`: the differ is believed wrong here; reported, not counted.
    pub known_bug: Option<String>,
}

fn name_set(v: &str) -> BTreeSet<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Directives {
    pub fn parse(text: &str) -> Result<Directives, String> {
        let mut d = Directives::default();
        for (lineno, line) in text.lines().enumerate() {
            let Some(rest) = line.trim_start().strip_prefix("//#") else {
                continue;
            };
            let (key, value) = rest
                .split_once(':')
                .ok_or_else(|| format!("line {}: directive without ':'", lineno + 1))?;
            let value = value.trim();
            let words: Vec<&str> = value.split_whitespace().collect();
            let bad = || format!("line {}: bad //#{key}: {value}", lineno + 1);
            match key.trim() {
                "Expect" => d.expect = Some(Expect::parse(value)?),
                "Changed" => d.changed = Some(name_set(value)),
                "New" => d.new = Some(name_set(value)),
                "Message" => d.messages.push(value.to_string()),
                "NoMessage" => d.no_messages.push(value.to_string()),
                "TextSymbols" => d.text_symbols = Some(value.parse().map_err(|_| bad())?),
                "Cflags" => d.cflags.extend(words.iter().map(|w| w.to_string())),
                "Args" => d.args.extend(words.iter().map(|w| w.to_string())),
                "EnvUnset" => d.env_unset.push(value.to_string()),
                "Parent" => d.parent = Some(value.to_string()),
                "Env" => {
                    let (k, v) = value.split_once('=').ok_or_else(bad)?;
                    d.env.push((k.to_string(), v.to_string()));
                }
                "InputsDiffer" => d.inputs_differ.push(value.to_string()),
                "OrigSym" => d.orig_syms.push(value.to_string()),
                "PatchedSym" => d.patched_syms.push(value.to_string()),
                "ExpectSym" => match words.as_slice() {
                    [n, l] => d.syms.push((n.to_string(), l.to_string())),
                    _ => return Err(bad()),
                },
                "NoSym" => d.no_syms.push(value.to_string()),
                "ExpectReloc" => match words.as_slice() {
                    [s, n] => d
                        .relocs
                        .push((s.to_string(), n.parse().map_err(|_| bad())?)),
                    _ => return Err(bad()),
                },
                k @ ("RelocTo" | "OrigRelocTo" | "PatchedRelocTo" | "NoRelocTo") => {
                    let v = match k {
                        "RelocTo" => &mut d.reloc_to,
                        "OrigRelocTo" => &mut d.orig_reloc_to,
                        "NoRelocTo" => &mut d.no_reloc_to,
                        _ => &mut d.patched_reloc_to,
                    };
                    match words.split_first() {
                        Some((s, rest)) if !rest.is_empty() => {
                            v.push((s.to_string(), rest.iter().map(|w| w.to_string()).collect()))
                        }
                        _ => return Err(bad()),
                    }
                }
                "Section" => d.sections.push(value.to_string()),
                "NoSection" => d.no_sections.push(value.to_string()),
                "SectionStrings" => match words.as_slice() {
                    [s, p, n] => d.section_strings.push((
                        s.to_string(),
                        p.to_string(),
                        n.parse().map_err(|_| bad())?,
                    )),
                    _ => return Err(bad()),
                },
                "KlpSyms" => d.klp_syms = Some(name_set(value)),
                k @ ("KlpSympos" | "FuncSympos") => match words.as_slice() {
                    [n, pos] => {
                        let v = if k == "KlpSympos" {
                            &mut d.klp_sympos
                        } else {
                            &mut d.func_sympos
                        };
                        v.push((n.to_string(), pos.parse().map_err(|_| bad())?));
                    }
                    _ => return Err(bad()),
                },
                "SectionBytes" => match words.split_first() {
                    Some((s, hex)) if !hex.is_empty() => {
                        let hex: String = hex.concat();
                        if !hex.len().is_multiple_of(2) {
                            return Err(bad());
                        }
                        let bytes = (0..hex.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                            .collect::<Result<Vec<u8>, _>>()
                            .map_err(|_| bad())?;
                        d.section_bytes.push((s.to_string(), bytes));
                    }
                    _ => return Err(bad()),
                },
                "ParentLink" => {
                    if words.is_empty() {
                        return Err(bad());
                    }
                    d.parent_link.extend(words.iter().map(|w| w.to_string()));
                }
                "Known-bug" => d.known_bug = Some(value.to_string()),
                k => return Err(format!("line {}: unknown directive //#{k}", lineno + 1)),
            }
        }
        if d.expect.is_none() {
            return Err("missing //#Expect".into());
        }
        Ok(d)
    }
}

pub struct Fixture {
    pub name: String,
    pub path: PathBuf,
    pub d: Directives,
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Fixture, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Ok(Fixture {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            d: Directives::parse(&text)?,
        })
    }
}

pub enum Outcome {
    Pass,
    Fail(Vec<String>),
    /// The declared bug, and what the checks observed.
    KnownBug(String, Vec<String>),
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "gcc".into())
}

/// Why fixtures can't run here, if they can't.
pub fn unsupported_host() -> Option<String> {
    if !cfg!(target_arch = "x86_64") {
        return Some("fixtures are x86_64 code".into());
    }
    for tool in [cc().as_str(), "readelf", "nm", "ld"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

fn compile(f: &Fixture, include: &Path, out: &Path, patched: bool) -> Result<(), String> {
    let which = if patched { "patched" } else { "orig" };
    compile_source(&f.path, &f.d.cflags, include, out, patched, which)
}

fn compile_source(
    src: &Path,
    cflags: &[String],
    include: &Path,
    out: &Path,
    patched: bool,
    which: &str,
) -> Result<(), String> {
    let mut cmd = Command::new(cc());
    cmd.args(CFLAGS).arg("-I").arg(include).args(cflags);
    if patched {
        cmd.arg("-DPATCHED");
    }
    cmd.arg("-o").arg(out).arg(src);
    let r = run(&mut cmd)?;
    if r.code != Some(0) {
        return Err(format!("{which} build failed:\n{}", r.stderr));
    }
    Ok(())
}

/// Where the linked parent's text starts: the x86_64 kernel's usual address, so that
/// `-mcmodel=kernel` code links.
const PARENT_TEXT: &str = "0xffffffff81000000";

/// `ParentLink`: compile the parent-only sources and link everything, in order, into
/// an executable whose symbol table plays the parent's (unresolved references, such
/// as `__fentry__`, are left at 0: nothing runs).
fn link_parent(
    f: &Fixture,
    include: &Path,
    dir: &Path,
    orig: &Path,
    patched: &Path,
) -> Result<PathBuf, String> {
    let parent_dir = f
        .path
        .parent()
        .map(|p| p.join("parent"))
        .unwrap_or_default();
    let mut inputs = Vec::new();
    for (i, item) in f.d.parent_link.iter().enumerate() {
        match item.as_str() {
            "@orig" => inputs.push(orig.to_path_buf()),
            "@patched" => inputs.push(patched.to_path_buf()),
            // An implicit linker script, e.g. to discard sections as vmlinux.lds does.
            lds if lds.ends_with(".lds") => inputs.push(parent_dir.join(lds)),
            src => {
                let out = dir.join(format!("parent-{i}.o"));
                compile_source(
                    &parent_dir.join(src),
                    &f.d.cflags,
                    include,
                    &out,
                    false,
                    &format!("parent source {src}"),
                )?;
                inputs.push(out);
            }
        }
    }
    let elf = dir.join("parent.elf");
    let r = run(Command::new("ld")
        .args(["-o"])
        .arg(&elf)
        .args([
            "-nostdlib",
            "-static",
            "--unresolved-symbols=ignore-all",
            "-e",
            "0",
        ])
        .arg(format!("-Ttext={PARENT_TEXT}"))
        .args(&inputs))?;
    if r.code != Some(0) {
        return Err(format!("parent link failed:\n{}{}", r.stdout, r.stderr));
    }
    Ok(elf)
}

fn fmt_set(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// Compile, run create-diff-object, and check everything the fixture declares.
pub fn run_fixture(f: &Fixture, bin: &Path, include: &Path) -> Outcome {
    let mut errs = Vec::new();
    if let Err(e) = check(f, bin, include, &mut errs) {
        errs.push(e);
    }
    match (&f.d.known_bug, errs.is_empty()) {
        (None, true) => Outcome::Pass,
        (None, false) => Outcome::Fail(errs),
        (Some(why), false) => Outcome::KnownBug(why.clone(), errs),
        (Some(_), true) => Outcome::Fail(vec![
            "known bug no longer reproduces: every check passes; remove //#Known-bug".into(),
        ]),
    }
}

fn check(f: &Fixture, bin: &Path, include: &Path, errs: &mut Vec<String>) -> Result<(), String> {
    let keep = std::env::var_os("FIXTURES_KEEP").is_some();
    let tmp = tempfile::Builder::new()
        .prefix(&format!("fixture-{}-", f.name))
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let dir = tmp.path().to_path_buf();
    let _guard = if keep {
        println!("    (work directory kept: {})", dir.display());
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };

    let (orig, patched) = (dir.join("orig.o"), dir.join("patched.o"));
    let (symtab, output) = (dir.join("parent.symtab"), dir.join("output.o"));
    compile(f, include, &orig, false)?;
    compile(f, include, &patched, true)?;

    for (obj, syms, relocs, which) in [
        (&orig, &f.d.orig_syms, &f.d.orig_reloc_to, "orig"),
        (
            &patched,
            &f.d.patched_syms,
            &f.d.patched_reloc_to,
            "patched",
        ),
    ] {
        if syms.is_empty() && relocs.is_empty() {
            continue;
        }
        let have = Inspect::new(obj)?;
        let precondition = |what: String| {
            format!(
                "precondition: gcc did not emit {what} in the {which} object \
                 (the fixture no longer tests what it says)"
            )
        };
        for s in syms {
            if have.sym_letters(s).is_empty() {
                return Err(precondition(format!("symbol {s}")));
            }
        }
        for (sec, tail) in relocs {
            if !have.has_reloc_to(sec, tail) {
                return Err(precondition(format!(
                    "a relocation of {sec} to {}",
                    tail.join(" ")
                )));
            }
        }
    }

    if !f.d.inputs_differ.is_empty() {
        let (o, p) = (Inspect::new(&orig)?, Inspect::new(&patched)?);
        for sec in &f.d.inputs_differ {
            let (a, b) = (o.section_bytes(sec)?, p.section_bytes(sec)?);
            if a.is_empty() || a == b {
                return Err(format!(
                    "precondition: section {sec} is missing or identical in both objects \
                     (the fixture no longer tests what it says)"
                ));
            }
        }
    }

    let parent = if f.d.parent_link.is_empty() {
        orig.clone()
    } else {
        link_parent(f, include, &dir, &orig, &patched)?
    };
    let r = run(Command::new("readelf").args(["-s", "--wide"]).arg(&parent))?;
    if r.code != Some(0) {
        return Err(format!("readelf -s {}: {}", parent.display(), r.stderr));
    }
    std::fs::write(&symtab, r.stdout).map_err(|e| format!("write symtab: {e}"))?;

    let mut cmd = Command::new(bin);
    cmd.args(&f.d.args)
        .arg(&orig)
        .arg(&patched)
        .arg(f.d.parent.as_deref().unwrap_or("vmlinux"))
        .arg(&symtab)
        .arg("/dev/null")
        .arg(format!("test_{}", f.name))
        .arg(&output)
        .current_dir(&dir)
        .env_remove("RUST_LOG");
    // Hermetic: only the sizes the fixture asks for, whatever the caller's environment.
    cmd.env_remove("FIXUP_STRUCT_SIZE");
    for (k, v) in STRUCT_SIZES {
        cmd.env(k, v);
    }
    for (k, v) in &f.d.env {
        cmd.env(k, v);
    }
    for k in &f.d.env_unset {
        cmd.env_remove(k);
    }
    let r = run(&mut cmd)?;
    let all = format!("{}{}", r.stdout, r.stderr);
    let transcript = || {
        format!(
            "create-diff-object output (exit {:?}):\n{}",
            r.code,
            all.trim_end()
        )
    };

    let expect = f.d.expect.unwrap_or(Expect::Success);
    if r.code != Some(expect.exit_code()) {
        errs.push(format!(
            "exit status {:?}, expected {} ({expect:?})\n{}",
            r.code,
            expect.exit_code(),
            transcript()
        ));
    }
    let reported = |prefix: &str| -> BTreeSet<String> {
        r.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let (changed, new) = (reported("changed function: "), reported("new function: "));
    let default_empty = matches!(expect, Expect::Success | Expect::NoChange);
    for (what, got, want) in [("changed", &changed, &f.d.changed), ("new", &new, &f.d.new)] {
        let want = match want {
            Some(w) => w.clone(),
            None if default_empty => BTreeSet::new(),
            None => continue,
        };
        if *got != want {
            errs.push(format!(
                "{what} functions: got {}, expected {}",
                fmt_set(got),
                fmt_set(&want)
            ));
        }
    }
    for m in &f.d.messages {
        if !all.contains(m.as_str()) {
            errs.push(format!("message {m:?} not found\n{}", transcript()));
        }
    }
    for m in &f.d.no_messages {
        if all.contains(m.as_str()) {
            errs.push(format!("unwanted message {m:?} found\n{}", transcript()));
        }
    }

    let exists = output.exists();
    if expect != Expect::Success {
        if exists {
            errs.push("an output object was written although the run did not succeed".into());
        }
        return Ok(());
    }
    if !exists {
        errs.push("no output object was written".into());
        return Ok(());
    }
    check_output(f, &output, &changed, &new, errs)
}

fn check_output(
    f: &Fixture,
    output: &Path,
    changed: &BTreeSet<String>,
    new: &BTreeSet<String>,
    errs: &mut Vec<String>,
) -> Result<(), String> {
    let out = Inspect::new(output)?;
    errs.extend(klp::check_conversion(output)?);
    if !out.readelf_warnings.is_empty() {
        errs.push(format!(
            "readelf complains about the output:\n{}",
            out.readelf_warnings
        ));
    }
    // The kpatch contract, for every fixture: one .kpatch.funcs entry (3 relocations)
    // per changed function, changed functions local ('t'), new ones defined text.
    let funcs = out.reloc_count(".kpatch.funcs");
    if funcs != 3 * changed.len() {
        errs.push(format!(
            ".rela.kpatch.funcs has {funcs} entries, expected 3 per changed function ({})",
            3 * changed.len()
        ));
    }
    for name in changed {
        let l = out.sym_letters(name);
        if l != ["t"] {
            errs.push(format!(
                "changed function {name}: nm type {l:?}, expected [\"t\"]"
            ));
        }
    }
    for name in new {
        let l = out.sym_letters(name);
        if l != ["t"] && l != ["T"] {
            errs.push(format!(
                "new function {name}: nm type {l:?}, expected t or T"
            ));
        }
    }

    let d = &f.d;
    if let Some(n) = d.text_symbols {
        let got = out.text_symbols();
        if got != n {
            errs.push(format!("{got} text symbols in nm output, expected {n}"));
        }
    }
    for (name, letter) in &d.syms {
        let l = out.sym_letters(name);
        if l != [letter.as_str()] {
            errs.push(format!(
                "symbol {name}: nm type {l:?}, expected [{letter:?}]"
            ));
        }
    }
    for name in &d.no_syms {
        let l = out.sym_letters(name);
        if !l.is_empty() {
            errs.push(format!("symbol {name} is in the output (nm type {l:?})"));
        }
    }
    for (sec, n) in &d.relocs {
        let got = out.reloc_count(sec);
        if got != *n {
            errs.push(format!(
                "{} relocations for {sec}, expected {n}:\n{}",
                got,
                out.reloc_lines(sec).join("\n")
            ));
        }
    }
    for (sec, tail) in &d.reloc_to {
        if !out.has_reloc_to(sec, tail) {
            errs.push(format!(
                "no relocation of {sec} ends with {:?}:\n{}",
                tail.join(" "),
                out.reloc_lines(sec).join("\n")
            ));
        }
    }
    for (sec, tail) in &d.no_reloc_to {
        if out.has_reloc_to(sec, tail) {
            errs.push(format!(
                "a relocation of {sec} ends with {:?}:\n{}",
                tail.join(" "),
                out.reloc_lines(sec).join("\n")
            ));
        }
    }
    for (sec, want) in &d.section_bytes {
        let got = out.section_bytes(sec)?;
        if got != *want {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            errs.push(format!(
                "section {sec} holds {}, expected {}",
                if got.is_empty() {
                    "nothing".into()
                } else {
                    hex(&got)
                },
                hex(want)
            ));
        }
    }
    for (what, table, wanted) in [
        (".kpatch.symbols", out.klp_sympos()?, &d.klp_sympos),
        (".kpatch.funcs", out.func_sympos()?, &d.func_sympos),
    ] {
        for (name, pos) in wanted {
            let got: Vec<u64> = table
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, p)| *p)
                .collect();
            if got.is_empty() || got.iter().any(|p| p != pos) {
                errs.push(format!(
                    "{what}: sympos of {name} is {got:?}, expected {pos} (entries: {table:?})"
                ));
            }
        }
    }
    for s in &d.sections {
        if !out.has_section(s) {
            errs.push(format!("section {s} missing from the output"));
        }
    }
    for s in &d.no_sections {
        if out.has_section(s) {
            errs.push(format!("section {s} unexpectedly in the output"));
        }
    }
    if let Some(want) = &d.klp_syms {
        let got: BTreeSet<String> = out.klp_symbols()?.into_iter().collect();
        if got != *want {
            errs.push(format!(
                "klp symbols (.kpatch.symbols): got {}, expected {}",
                fmt_set(&got),
                fmt_set(want)
            ));
        }
    }
    for (sec, prefix, n) in &d.section_strings {
        let strings = out.section_strings(sec)?;
        let got = strings
            .iter()
            .filter(|s| s.starts_with(prefix.as_str()))
            .count();
        if got != *n {
            errs.push(format!(
                "{got} strings starting with {prefix:?} in {sec}, expected {n}: {strings:?}"
            ));
        }
    }
    Ok(())
}

/// Every fixture of `dir` as a test (libtest-mimic): ok when every expectation holds (or,
/// for a `//#Known-bug` fixture, when the known wrong behaviour still reproduces: it is
/// listed as `known-bug`). With `skip`, each is ignored (or failed under `CI=true`).
pub fn trials(
    dir: &Path,
    bin: &Path,
    skip: Option<&testgate::Skip>,
) -> Result<Vec<libtest_mimic::Trial>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("can't read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| trial(p, dir.to_path_buf(), bin.to_path_buf(), skip))
        .collect())
}

fn trial(
    path: PathBuf,
    dir: PathBuf,
    bin: PathBuf,
    skip: Option<&testgate::Skip>,
) -> libtest_mimic::Trial {
    use libtest_mimic::{Failed, Trial};
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fixture = Fixture::load(&path);
    let known_bug = fixture.as_ref().is_ok_and(|f| f.d.known_bug.is_some());
    let failure = match skip {
        Some(testgate::Skip::Fail(why)) => Some(why.clone()),
        _ => None,
    };
    let t = Trial::test(name, move || {
        if let Some(why) = failure {
            return Err(Failed::from(why));
        }
        let fixture = fixture.map_err(|e| format!("bad fixture: {e}"))?;
        match run_fixture(&fixture, &bin, &dir.join("include")) {
            Outcome::Pass => Ok(()),
            Outcome::KnownBug(why, observed) => {
                let first = observed.first().and_then(|o| o.lines().next());
                println!("known bug ({why}); observed: {}", first.unwrap_or("?"));
                Ok(())
            }
            Outcome::Fail(reasons) => Err(Failed::from(reasons.join("\n"))),
        }
    });
    let t = if known_bug {
        t.with_kind("known-bug")
    } else {
        t
    };
    t.with_ignored_flag(skip == Some(&testgate::Skip::Ignore))
}
