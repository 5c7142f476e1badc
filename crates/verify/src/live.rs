//! Run-pre matching: the functions a patch module will replace, read from the running
//! kernel (`/proc/kcore`) and compared with the bytes the module recorded at build time
//! ([`crate::record`]), after undoing what the kernel rewrites at run time: the ftrace
//! call site (a NOP, or a call to an ftrace or livepatch trampoline), alternatives and
//! paravirt sites, static-key jumps, static calls, retpoline and return-thunk sites,
//! sealed `endbr64`, SMP lock prefixes, call-depth thunks, and the KASLR offset in
//! relocated fields.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::kcore::Kcore;
use crate::record::{FieldRecord, FunctionRecord, LiveTarget, ObjectRecord, Record};
use crate::sites::{Site, SiteKind};
use crate::x86;
use crate::{Error, Result};

/// The outcome for one function.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Status {
    /// The running code is the code the module was built against. `normalised` counts
    /// the rewritten sites whose bytes differed, by kind; `fields` the relocated fields
    /// checked.
    Matches {
        normalised: BTreeMap<SiteKind, usize>,
        fields: usize,
    },
    /// The running code differs: where, both instructions, and why.
    Differs {
        offset: u64,
        expected: String,
        running: String,
        reason: String,
    },
    /// The module that holds the function is not loaded.
    NotLoaded,
    /// The function could not be read or located.
    Unreadable { error: String },
}

/// One function's check.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionCheck {
    pub object: String,
    pub function: String,
    pub sympos: u64,
    /// Its running address, when located.
    pub address: Option<u64>,
    #[serde(flatten)]
    pub status: Status,
}

/// What resolving fields on the live system needs.
pub trait Resolve {
    /// Runtime minus link-time address of vmlinux (KASLR).
    fn kaslr(&mut self) -> Result<i64>;
    /// Address of `section` of loaded module `module`.
    fn section(&mut self, module: &str, section: &str) -> Result<Option<u64>>;
    /// Addresses of kallsyms symbol `name`.
    fn symbol(&mut self, name: &str) -> Result<Vec<u64>>;
}

/// The running system.
pub struct Live {
    proc_dir: PathBuf,
    sys: PathBuf,
    kcore: Option<Kcore>,
    kernel_text: u64,
    kaslr: Option<i64>,
    kallsyms: Option<HashMap<String, Vec<u64>>>,
    sections: HashMap<(String, String), Option<u64>>,
}

impl Live {
    /// The system under `proc_dir` and `sys` (normally `/proc`, `/sys`), for a record
    /// whose vmlinux `_text` was linked at `kernel_text`.
    pub fn new(proc_dir: &Path, sys: &Path, kernel_text: u64) -> Live {
        Live {
            proc_dir: proc_dir.to_path_buf(),
            sys: sys.to_path_buf(),
            kcore: None,
            kernel_text,
            kaslr: None,
            kallsyms: None,
            sections: HashMap::new(),
        }
    }

    fn read(&mut self, addr: u64, len: u64) -> Result<Vec<u8>> {
        if self.kcore.is_none() {
            self.kcore = Some(Kcore::open(&self.proc_dir.join("kcore"))?);
        }
        self.kcore.as_ref().map_or_else(
            || Err(Error::Format("no /proc/kcore".into())),
            |k| k.read(addr, len),
        )
    }

    /// Whether module `name` is loaded.
    pub fn module_loaded(&self, name: &str) -> bool {
        self.sys.join("module").join(name).join("sections").is_dir()
    }
}

impl Resolve for Live {
    fn kaslr(&mut self) -> Result<i64> {
        if let Some(k) = self.kaslr {
            return Ok(k);
        }
        // `_text` is among the first few hundred lines: no need to read them all.
        let path = self.proc_dir.join("kallsyms");
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| Error::io(&path, e))?;
            let mut it = line.split_whitespace();
            let (Some(a), Some(_), Some("_text")) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let a = u64::from_str_radix(a, 16).unwrap_or(0);
            if a == 0 {
                return Err(Error::Format(format!(
                    "{} shows no addresses: run as root",
                    path.display()
                )));
            }
            let k = a.wrapping_sub(self.kernel_text) as i64;
            self.kaslr = Some(k);
            return Ok(k);
        }
        Err(Error::Format(format!("{}: no _text", path.display())))
    }

    fn section(&mut self, module: &str, section: &str) -> Result<Option<u64>> {
        let key = (module.to_string(), section.to_string());
        if let Some(v) = self.sections.get(&key) {
            return Ok(*v);
        }
        let path = self
            .sys
            .join("module")
            .join(module)
            .join("sections")
            .join(section);
        let v = match std::fs::read_to_string(&path) {
            Ok(t) => u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        self.sections.insert(key, v);
        Ok(v)
    }

    fn symbol(&mut self, name: &str) -> Result<Vec<u64>> {
        if self.kallsyms.is_none() {
            let path = self.proc_dir.join("kallsyms");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let mut map: HashMap<String, Vec<u64>> = HashMap::new();
            for line in text.lines() {
                let mut it = line.split_whitespace();
                if let (Some(a), Some(_), Some(n)) = (it.next(), it.next(), it.next()) {
                    if let Ok(a) = u64::from_str_radix(a, 16) {
                        map.entry(n.to_string()).or_default().push(a);
                    }
                }
            }
            self.kallsyms = Some(map);
        }
        Ok(self
            .kallsyms
            .as_ref()
            .and_then(|m| m.get(name).cloned())
            .unwrap_or_default())
    }
}

/// Checks every recorded function against the running kernel.
pub fn check(live: &mut Live, record: &Record) -> Vec<FunctionCheck> {
    let mut out = Vec::new();
    for obj in &record.objects {
        for f in &obj.functions {
            let (address, status) = match check_function(live, obj, f) {
                Ok(v) => v,
                Err(e) => (
                    None,
                    Status::Unreadable {
                        error: e.to_string(),
                    },
                ),
            };
            out.push(FunctionCheck {
                object: obj.name.clone(),
                function: f.name.clone(),
                sympos: f.sympos,
                address,
                status,
            });
        }
    }
    out
}

fn check_function(
    live: &mut Live,
    obj: &ObjectRecord,
    f: &FunctionRecord,
) -> Result<(Option<u64>, Status)> {
    let expected = f.code();
    let addr = if obj.name == "vmlinux" {
        f.addr.wrapping_add(live.kaslr()? as u64)
    } else {
        if !live.module_loaded(&obj.name) {
            return Ok((None, Status::NotLoaded));
        }
        let section = f.section.as_deref().unwrap_or(".text");
        let Some(base) = live.section(&obj.name, section)? else {
            return Err(Error::Format(format!(
                "{}: no section {section} in the loaded module",
                obj.name
            )));
        };
        base.wrapping_add(f.addr)
    };
    let running = live.read(addr, expected.len() as u64)?;
    let status = compare(f, &expected, &running, addr, &obj.name, live)?;
    Ok((Some(addr), status))
}

/// Compares the running bytes of `f` (at `addr`) with the expected ones.
pub fn compare(
    f: &FunctionRecord,
    expected: &[u8],
    running: &[u8],
    addr: u64,
    object: &str,
    r: &mut dyn Resolve,
) -> Result<Status> {
    let n = expected.len();
    let mut covered = vec![false; n];
    let mut first: Option<(u64, String)> = None;
    let note = |off: u64, why: String, first: &mut Option<(u64, String)>| {
        if first.as_ref().map_or(true, |(o, _)| off < *o) {
            *first = Some((off, why));
        }
    };
    let mut normalised: BTreeMap<SiteKind, usize> = BTreeMap::new();
    for s in &f.sites {
        let (a, b) = (s.off as usize, ((s.off + s.len) as usize).min(n));
        if a >= b {
            continue;
        }
        covered[a..b].iter_mut().for_each(|c| *c = true);
        let (e, g) = (&expected[a..b], &running[a..b]);
        if e == g {
            continue;
        }
        match site_ok(s, e, g) {
            Ok(()) => *normalised.entry(s.kind).or_default() += 1,
            Err(why) => note(s.off, why, &mut first),
        }
    }
    let mut fields = 0;
    for fr in &f.fields {
        let (a, b) = (fr.off as usize, ((fr.off + fr.size) as usize).min(n));
        if a >= b || covered[a..b].iter().any(|c| *c) {
            continue;
        }
        covered[a..b].iter_mut().for_each(|c| *c = true);
        match field_ok(fr, expected, running, addr, object, r)? {
            Ok(()) => fields += 1,
            Err(why) => note(fr.off, why, &mut first),
        }
    }
    if let Some(i) = (0..n).find(|&i| !covered[i] && expected[i] != running[i]) {
        note(i as u64, byte_reason(running, i), &mut first);
    }
    Ok(match first {
        None => Status::Matches { normalised, fields },
        Some((off, reason)) => {
            let start = insn_start(expected, off);
            Status::Differs {
                offset: off,
                expected: x86::disasm_at(expected, start, addr),
                running: x86::disasm_at(running, start, addr),
                reason,
            }
        }
    })
}

fn insn_start(code: &[u8], off: u64) -> u64 {
    let starts = x86::insn_starts(code);
    x86::insn_around(code, &starts, off).map_or(off, |(s, _)| s)
}

/// Why the running byte at `i` may differ.
fn byte_reason(running: &[u8], i: usize) -> String {
    match running.get(i..i + 1) {
        Some([0xcc]) => {
            "an int3 where the code has none: a kprobe or a debugger breakpoint is set here".into()
        }
        Some([0xe9]) => {
            "a jump where the code has none: an optimized kprobe, or code patched by another tool"
                .into()
        }
        _ => "the running code differs from the code this patch was built against".into(),
    }
}

/// Whether a rewritten site holds one of the forms the kernel writes there.
fn site_ok(s: &Site, expected: &[u8], running: &[u8]) -> std::result::Result<(), String> {
    let ok = match s.kind {
        // A NOP (not traced) or a call to an ftrace or livepatch trampoline.
        SiteKind::Fentry => x86::is_nop5(running) || running.first() == Some(&0xe8),
        // Rewritten to whatever the CPU needs; its bytes say nothing about the source.
        SiteKind::Alternative
        | SiteKind::Paravirt
        | SiteKind::Retpoline
        | SiteKind::Return
        | SiteKind::StaticCall => true,
        SiteKind::JumpLabel => {
            x86::is_nop_of_len(running)
                || matches!(
                    (running.len(), running.first()),
                    (2, Some(0xeb)) | (5, Some(0xe9))
                )
        }
        SiteKind::Endbr => running == x86::ENDBR64 || x86::is_sealed_endbr(running),
        SiteKind::Lock => matches!(running, [0xf0] | [0x3e]),
    };
    if ok {
        return Ok(());
    }
    if running.first() == Some(&0xcc) {
        return Err(byte_reason(running, 0));
    }
    Err(format!(
        "a {} site holds neither its code ({}) nor a form the kernel writes there",
        kind_name(s.kind),
        hex(expected)
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A human name for a site kind.
pub fn kind_name(k: SiteKind) -> &'static str {
    match k {
        SiteKind::Fentry => "ftrace call",
        SiteKind::Alternative => "alternative",
        SiteKind::Paravirt => "paravirt",
        SiteKind::JumpLabel => "static key",
        SiteKind::StaticCall => "static call",
        SiteKind::Retpoline => "retpoline",
        SiteKind::Return => "return thunk",
        SiteKind::Endbr => "endbr64",
        SiteKind::Lock => "lock prefix",
    }
}

/// Whether a relocated field holds what it must on the live system.
fn field_ok(
    fr: &FieldRecord,
    expected: &[u8],
    running: &[u8],
    addr: u64,
    object: &str,
    r: &mut dyn Resolve,
) -> Result<std::result::Result<(), String>> {
    let at = fr.off as usize;
    let (Some(e), Some(g)) = (
        x86::field_value(fr.r_type, &expected[at..]),
        x86::field_value(fr.r_type, &running[at..]),
    ) else {
        return Ok(Ok(()));
    };
    let place = addr.wrapping_add(fr.off);
    let pcrel = x86::is_pc_relative(fr.r_type);
    // A direct call may be sent to the call-depth accounting thunk in the 16 bytes of
    // padding in front of its target.
    let is_call = at > 0 && expected[at - 1] == 0xe8 && fr.size == 4;
    let near = |want: i64| {
        let d = truncate(g, fr.size).wrapping_sub(truncate(want, fr.size));
        d == 0 || (is_call && (-16..0).contains(&d))
    };
    let k = r.kaslr()?;
    let ok = match &fr.target {
        LiveTarget::Linked => near(e) || near(e.wrapping_add(k)) || near(e.wrapping_sub(k)),
        LiveTarget::Kernel { addr: sa } => {
            let sa = sa.wrapping_add(k as u64);
            near(value(sa, place, pcrel))
        }
        LiveTarget::Section { section, off } => match r.section(object, section)? {
            Some(base) => near(value(base.wrapping_add(*off as u64), place, pcrel)),
            None => return Ok(Ok(())),
        },
        LiveTarget::Symbol { name, addend } => {
            let addrs = r.symbol(name)?;
            addrs.is_empty()
                || addrs
                    .iter()
                    .any(|a| near(value(a.wrapping_add(*addend as u64), place, pcrel)))
        }
    };
    Ok(if ok {
        Ok(())
    } else {
        Err(
            "a relocated field designates another place than the code this patch was built against"
                .into(),
        )
    })
}

fn value(sa: u64, place: u64, pcrel: bool) -> i64 {
    if pcrel {
        sa.wrapping_sub(place) as i64
    } else {
        sa as i64
    }
}

/// `v` as the field of `size` bytes stores it, sign-extended back.
fn truncate(v: i64, size: u64) -> i64 {
    match size {
        4 => i64::from(v as i32),
        _ => v,
    }
}
