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
        /// Rewritten sites whose bytes differed, by kind.
        normalised: BTreeMap<SiteKind, usize>,
        /// Relocated fields checked.
        fields: usize,
    },
    /// The running code differs: where, both instructions, and why.
    Differs {
        /// Offset in the function.
        offset: u64,
        /// The instruction the module was built against.
        expected: String,
        /// The running instruction.
        running: String,
        /// Why they may differ.
        reason: String,
    },
    /// The module that holds the function is not loaded.
    NotLoaded,
    /// The function could not be read or located.
    Unreadable {
        /// Why.
        error: String,
    },
}

/// One function's check.
#[derive(Clone, Debug, Serialize)]
pub struct FunctionCheck {
    /// `vmlinux` or the module.
    pub object: String,
    /// The function.
    pub function: String,
    /// Its `sympos`.
    pub sympos: u64,
    /// Its running address, when located.
    pub address: Option<u64>,
    #[serde(flatten)]
    /// What the check found.
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
        if first.as_ref().is_none_or(|(o, _)| off < *o) {
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
            // A per-CPU variable's "address" is its offset in the per-CPU area (`%gs:`
            // relative): KASLR does not move it.
            let sa = if *sa < crate::image::PERCPU_LIMIT {
                *sa
            } else {
                sa.wrapping_add(k as u64)
            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::hex_encode;
    use object::elf::{R_X86_64_32S, R_X86_64_PLT32};

    struct Fake {
        kaslr: i64,
    }

    impl Resolve for Fake {
        fn kaslr(&mut self) -> Result<i64> {
            Ok(self.kaslr)
        }
        fn section(&mut self, _: &str, s: &str) -> Result<Option<u64>> {
            Ok((s == ".text").then_some(0xffff_ffff_c000_0000))
        }
        fn symbol(&mut self, _: &str) -> Result<Vec<u64>> {
            Ok(Vec::new())
        }
    }

    const KASLR: i64 = 0x1e00_0000;
    const LINK: u64 = 0xffff_ffff_8100_1000;

    /// `call __fentry__; push %rbx; mov $sym,%rax (32S); call foo; pop %rbx; ret`.
    fn record() -> (FunctionRecord, Vec<u8>) {
        let code = vec![
            0xe8, 0x10, 0x20, 0x30, 0x00, // call __fentry__
            0x53, // push %rbx
            0x48, 0xc7, 0xc0, 0x00, 0x10, 0x00, 0x81, // mov $0xffffffff81001000,%rax
            0xe8, 0x00, 0x01, 0x00, 0x00, // call foo
            0x5b, // pop %rbx
            0xc3, // ret
        ];
        let f = FunctionRecord {
            name: "f".into(),
            addr: LINK,
            bytes: hex_encode(&code),
            sites: vec![Site {
                off: 0,
                len: 5,
                kind: SiteKind::Fentry,
            }],
            fields: vec![
                FieldRecord {
                    off: 1,
                    size: 4,
                    r_type: R_X86_64_PLT32,
                    target: LiveTarget::Linked,
                },
                FieldRecord {
                    off: 9,
                    size: 4,
                    r_type: R_X86_64_32S,
                    target: LiveTarget::Linked,
                },
                FieldRecord {
                    off: 14,
                    size: 4,
                    r_type: R_X86_64_PLT32,
                    target: LiveTarget::Linked,
                },
            ],
            ..Default::default()
        };
        (f, code)
    }

    /// The code as the running kernel holds it: absolute addresses moved by KASLR.
    fn running(code: &[u8]) -> Vec<u8> {
        let mut r = code.to_vec();
        let v = i32::from_le_bytes(r[9..13].try_into().unwrap()) as i64 + KASLR;
        r[9..13].copy_from_slice(&(v as i32).to_le_bytes());
        r
    }

    fn run(f: &FunctionRecord, code: &[u8], live: &[u8]) -> Status {
        compare(
            f,
            code,
            live,
            LINK + KASLR as u64,
            "vmlinux",
            &mut Fake { kaslr: KASLR },
        )
        .unwrap()
    }

    #[test]
    fn kaslr_and_ftrace_states_match() {
        let (f, code) = record();
        let mut live = running(&code);
        assert!(matches!(
            run(&f, &code, &live),
            Status::Matches { fields: 2, .. }
        ));
        // Not traced: a NOP.
        live[..5].copy_from_slice(&[0x0f, 0x1f, 0x44, 0, 0]);
        let Status::Matches { normalised, .. } = run(&f, &code, &live) else {
            panic!("NOP at the ftrace site");
        };
        assert_eq!(normalised.get(&SiteKind::Fentry), Some(&1));
        // Patched: a call to a trampoline.
        live[..5].copy_from_slice(&[0xe8, 0xaa, 0xbb, 0xcc, 0x7f]);
        assert!(matches!(run(&f, &code, &live), Status::Matches { .. }));
        // A call sent to its target's call-depth thunk, in the padding before it.
        let mut thunk = live.clone();
        thunk[14] = 0xf0;
        thunk[15] = 0x00;
        assert!(matches!(run(&f, &code, &thunk), Status::Matches { .. }));
    }

    #[test]
    fn kprobe_code_change_and_wrong_target_differ() {
        let (f, code) = record();
        let live = running(&code);
        let mut probed = live.clone();
        probed[5] = 0xcc;
        let Status::Differs {
            offset,
            reason,
            expected,
            running,
            ..
        } = run(&f, &code, &probed)
        else {
            panic!("int3 not caught");
        };
        assert_eq!(offset, 5);
        assert!(reason.contains("kprobe"), "{reason}");
        assert!(
            expected.contains("push %rbx") && running.contains("int3"),
            "{expected} / {running}"
        );
        // Another instruction.
        let mut other = live.clone();
        other[18] = 0x59; // pop %rcx
        assert!(matches!(
            run(&f, &code, &other),
            Status::Differs { offset: 18, .. }
        ));
        // A call to another function.
        let mut elsewhere = live.clone();
        elsewhere[15] = 0x02;
        let Status::Differs { offset, reason, .. } = run(&f, &code, &elsewhere) else {
            panic!("call target not caught");
        };
        assert_eq!(offset, 14);
        assert!(reason.contains("relocated field"), "{reason}");
        // An absolute address moved by something else than KASLR.
        let mut abs = live;
        abs[9] ^= 0x40;
        assert!(matches!(
            run(&f, &code, &abs),
            Status::Differs { offset: 9, .. }
        ));
    }

    #[test]
    fn module_fields_resolve_against_sections() {
        // `lea .rodata+0x10(%rip),%rdi` in a module, its .rodata at a fixed address.
        let code = vec![0x48, 0x8d, 0x3d, 0, 0, 0, 0, 0xc3];
        let f = FunctionRecord {
            name: "g".into(),
            section: Some(".text".into()),
            bytes: hex_encode(&code),
            fields: vec![FieldRecord {
                off: 3,
                size: 4,
                r_type: object::elf::R_X86_64_PC32,
                target: LiveTarget::Section {
                    section: ".text".into(),
                    off: 0x100 - 4,
                },
            }],
            ..Default::default()
        };
        let base = 0xffff_ffff_c000_0000u64;
        let addr = base + 0x40;
        let mut live = code.clone();
        // S + A - P = base + 0xfc - (addr + 3)
        let v = (base + 0xfc).wrapping_sub(addr + 3) as i32;
        live[3..7].copy_from_slice(&v.to_le_bytes());
        let mut fake = Fake { kaslr: KASLR };
        assert!(matches!(
            compare(&f, &code, &live, addr, "m", &mut fake).unwrap(),
            Status::Matches { fields: 1, .. }
        ));
        live[3] ^= 1;
        assert!(matches!(
            compare(&f, &code, &live, addr, "m", &mut fake).unwrap(),
            Status::Differs { offset: 3, .. }
        ));
    }

    /// Regression (kvm_amd's sev_mem_enc_ioctl on 6.1): `mov %gs:pcpu_hot,%rax` in a
    /// module holds the per-CPU offset of a vmlinux variable, which KASLR does not move.
    #[test]
    fn per_cpu_reference_is_not_moved_by_kaslr() {
        let code = vec![0x65, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0xc3];
        let f = FunctionRecord {
            name: "g".into(),
            addr: 0,
            bytes: hex_encode(&code),
            fields: vec![FieldRecord {
                off: 5,
                size: 4,
                r_type: R_X86_64_32S,
                target: LiveTarget::Kernel { addr: 0x1fb80 },
            }],
            ..Default::default()
        };
        let mut live = code.clone();
        live[5..9].copy_from_slice(&0x1fb80u32.to_le_bytes());
        let addr = 0xffff_ffff_c000_0000;
        let mut fake = Fake { kaslr: KASLR };
        assert!(matches!(
            compare(&f, &code, &live, addr, "m", &mut fake).unwrap(),
            Status::Matches { fields: 1, .. }
        ));
        // Another per-CPU variable is a difference.
        live[5..9].copy_from_slice(&0x1fb88u32.to_le_bytes());
        assert!(matches!(
            compare(&f, &code, &live, addr, "m", &mut fake).unwrap(),
            Status::Differs { offset: 5, .. }
        ));
    }

    #[test]
    fn rewritten_sites_accept_only_kernel_forms() {
        let s = |kind, len| Site { off: 0, len, kind };
        assert!(site_ok(&s(SiteKind::JumpLabel, 2), &[0xeb, 0x10], &[0x66, 0x90]).is_ok());
        assert!(site_ok(
            &s(SiteKind::JumpLabel, 5),
            &[0xe9, 0, 0, 0, 0],
            &[0x0f, 0x1f, 0x44, 0, 0]
        )
        .is_ok());
        assert!(site_ok(&s(SiteKind::JumpLabel, 2), &[0xeb, 0x10], &[0x31, 0xc0]).is_err());
        assert!(site_ok(
            &s(SiteKind::Endbr, 4),
            &x86::ENDBR64,
            &[0x0f, 0x1f, 0x40, 0xd6]
        )
        .is_ok());
        // The seal 6.1 and 6.12 write (gen_endbr_poison(), osp nopl (%rax)).
        assert!(site_ok(
            &s(SiteKind::Endbr, 4),
            &x86::ENDBR64,
            &[0x66, 0x0f, 0x1f, 0x00]
        )
        .is_ok());
        assert!(site_ok(
            &s(SiteKind::Endbr, 4),
            &x86::ENDBR64,
            &[0xcc, 0x1f, 0x40, 0xd6]
        )
        .is_err());
        assert!(site_ok(&s(SiteKind::Lock, 1), &[0xf0], &[0x3e]).is_ok());
        assert!(site_ok(
            &s(SiteKind::Fentry, 5),
            &[0xe8, 0, 0, 0, 0],
            &[0xcc, 0, 0, 0, 0]
        )
        .is_err());
        assert!(site_ok(
            &s(SiteKind::Alternative, 3),
            &[0x0f, 0x01, 0xca],
            &[0x90, 0x90, 0x90]
        )
        .is_ok());
    }
}
