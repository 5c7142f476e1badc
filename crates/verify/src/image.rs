//! The target's shipped binaries, where the rebuilt functions are looked up:
//!
//! - [`KernelImage`]: a linked kernel (`ET_EXEC`), with its own symbol table (the `-dbg`
//!   `vmlinux`, or `-v`'s), or without (the image extracted from `vmlinuz`), located by a
//!   `/proc/kallsyms` dump of the target, whose KASLR offset is taken out;
//! - [`ModuleImage`]: a module `.ko` (`ET_REL`), from the image package or the `-dbg`
//!   package.
//!
//! Both answer the same two questions ([`Image`]): where are the copies of a function,
//! and does a relocated field of ours designate the same thing as the copy's.

use std::collections::HashMap;
use std::path::Path;

use crate::elf::Elf;
use crate::func::{Field, Function, RelFile, Target};
use crate::x86;
use crate::{Error, Result};

/// A copy of a function in the target.
#[derive(Clone, Debug)]
pub struct Copy {
    /// Link-time address (kernel), or offset in `section` (module).
    pub addr: u64,
    /// The section that holds it (modules): index and name.
    pub section: Option<(usize, String)>,
    /// Its symbol's size, when the target says.
    pub size: Option<u64>,
    /// Its bytes: as many as ours, or its own size if that is larger.
    pub bytes: Vec<u8>,
    /// Its relocated fields (modules: their relocations; kernels: none, the fields hold
    /// final values).
    pub fields: Vec<Field>,
    /// Position among the target's symbols of the same name (1-based, address order),
    /// 0 when the name is unique: the livepatch core's `sympos`.
    pub sympos: u64,
    /// When its alignment padding differs from ours ([`crate::realign`]): pairs of
    /// (our offset, its offset) of the same instructions, in order. Empty: same offsets.
    pub moved: Vec<(u64, u64)>,
}

impl Copy {
    /// Where offset `off` of our function lies in this copy.
    pub fn place(&self, off: u64) -> u64 {
        let i = self.moved.partition_point(|(ours, _)| *ours <= off);
        match i.checked_sub(1).map(|j| self.moved[j]) {
            Some((ours, theirs)) => theirs + (off - ours),
            None => off,
        }
    }
}

/// What a relocated field of ours designates in a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldCheck {
    /// The same symbol (or the same merged data).
    Same,
    /// Something else: what the copy's field designates.
    Differs(String),
    /// Cannot be told (a target this crate cannot name); the bytes are not compared.
    Unchecked,
}

/// A target binary.
pub trait Image {
    /// The copies of `f` (same name, same binding), best candidates first.
    fn candidates(&mut self, f: &Function) -> Result<Vec<Copy>>;
    /// Whether field `field` of ours designates the same as the copy's field at the same
    /// offset.
    fn check_field(&mut self, copy: &Copy, field: &Field) -> Result<FieldCheck>;
    /// What the image is, for messages (`vmlinux-6.1.0-57-amd64`).
    fn describe(&self) -> String;
}

/// A kernel symbol at its link-time address.
#[derive(Clone, Debug)]
struct KSym {
    addr: u64,
    size: Option<u64>,
    local: bool,
    func: bool,
    file: Option<String>,
}

/// A linked kernel image.
pub struct KernelImage {
    /// The image file.
    pub elf: Elf,
    syms: HashMap<String, Vec<KSym>>,
    /// Runtime address minus link-time address of the kallsyms dump the symbols came
    /// from (0 for the image's own symbol table).
    pub kaslr_offset: i64,
}

/// Addresses below this are per-CPU offsets (x86_64's per-CPU section is linked at 0);
/// KASLR does not move them.
pub const PERCPU_LIMIT: u64 = 0xffff_0000_0000_0000;

impl KernelImage {
    /// A kernel with its own symbol table (`-dbg` vmlinux).
    pub fn open(path: &Path) -> Result<KernelImage> {
        let elf = Elf::open(path)?;
        if elf.e_type != object::elf::ET_EXEC {
            return Err(Error::Format(format!(
                "{}: not a linked kernel image",
                path.display()
            )));
        }
        if elf.symbols.len() < 2 {
            return Err(Error::Format(format!(
                "{}: has no symbol table (give the target's kallsyms with it)",
                path.display()
            )));
        }
        let mut syms: HashMap<String, Vec<KSym>> = HashMap::with_capacity(elf.symbols.len());
        for s in &elf.symbols {
            let named = !s.name.is_empty() && !s.is_section() && s.kind != object::elf::STT_FILE;
            if named && (s.is_defined() || s.shndx == object::elf::SHN_ABS) {
                syms.entry(s.name.clone()).or_default().push(KSym {
                    addr: s.value,
                    size: Some(s.size),
                    local: s.is_local(),
                    func: s.is_func() || s.kind == object::elf::STT_NOTYPE,
                    file: elf.file_name(s.file).map(str::to_string),
                });
            }
        }
        sort_and_number(&mut syms);
        Ok(KernelImage {
            elf,
            syms,
            kaslr_offset: 0,
        })
    }

    /// A kernel without symbols (extracted from `vmlinuz`), located by the target's
    /// `/proc/kallsyms` (as root: the addresses are real).
    pub fn with_kallsyms(path: &Path, kallsyms: &str) -> Result<KernelImage> {
        let elf = Elf::open(path)?;
        let text = elf
            .section_by_name(".text")
            .map(|i| elf.sections[i].addr)
            .or_else(|| elf.segments.iter().map(|s| s.vaddr).min())
            .ok_or_else(|| {
                Error::Format(format!("{}: no .text and no segments", path.display()))
            })?;
        let mut entries: Vec<(u64, char, &str)> = Vec::new();
        for line in kallsyms.lines() {
            let mut it = line.split_whitespace();
            let (Some(a), Some(t), Some(n)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if it.next().is_some() {
                continue; // a module's symbol: `[module]` follows
            }
            let Ok(addr) = u64::from_str_radix(a, 16) else {
                continue;
            };
            let t = t.chars().next().unwrap_or('?');
            entries.push((addr, t, n));
        }
        let runtime_text = entries
            .iter()
            .find(|(_, _, n)| *n == "_text")
            .map(|e| e.0)
            .ok_or_else(|| {
                Error::Format("the kallsyms dump has no _text (dump it as root)".into())
            })?;
        if runtime_text == 0 {
            return Err(Error::Format(
                "the kallsyms dump shows no addresses (dump it as root)".into(),
            ));
        }
        let kaslr_offset = runtime_text.wrapping_sub(text) as i64;
        let mut order: Vec<u64> = entries.iter().map(|e| e.0).collect();
        order.sort_unstable();
        order.dedup();
        let mut syms: HashMap<String, Vec<KSym>> = HashMap::with_capacity(entries.len());
        for (addr, t, name) in entries {
            let link = if addr < PERCPU_LIMIT {
                addr
            } else {
                addr.wrapping_sub(kaslr_offset as u64)
            };
            // No sizes in kallsyms: the next symbol's address bounds this one.
            let next = order.partition_point(|a| *a <= addr);
            let size = order.get(next).map(|n| n - addr);
            syms.entry(name.to_string()).or_default().push(KSym {
                addr: link,
                size,
                local: t.is_ascii_lowercase(),
                func: matches!(t, 't' | 'T' | 'w' | 'W'),
                file: None,
            });
        }
        sort_and_number(&mut syms);
        Ok(KernelImage {
            elf,
            syms,
            kaslr_offset,
        })
    }

    /// Link-time addresses of the symbols named `name`.
    pub fn addresses(&self, name: &str) -> Vec<u64> {
        self.syms
            .get(name)
            .map(|v| v.iter().map(|s| s.addr).collect())
            .unwrap_or_default()
    }

    /// Link-time address of the function `name` at `sympos` (0: the only one).
    pub fn function_address(&self, name: &str, sympos: u64) -> Option<u64> {
        let v: Vec<&KSym> = self.syms.get(name)?.iter().filter(|s| s.func).collect();
        match sympos {
            0 if v.len() == 1 => Some(v[0].addr),
            0 => None,
            n => v.get(n as usize - 1).map(|s| s.addr),
        }
    }

    /// The build-id of the image.
    pub fn build_id(&self) -> Result<Option<Vec<u8>>> {
        self.elf.build_id()
    }

    /// Link-time address of `_text`, from which the KASLR offset is measured.
    pub fn text_address(&self) -> Option<u64> {
        if self.kaslr_offset == 0 {
            if let Some(a) = self.addresses("_text").first() {
                return Some(*a);
            }
        }
        self.elf
            .section_by_name(".text")
            .map(|i| self.elf.sections[i].addr)
    }
}

fn sort_and_number(syms: &mut HashMap<String, Vec<KSym>>) {
    for v in syms.values_mut() {
        v.sort_by_key(|s| s.addr);
        v.dedup_by_key(|s| s.addr);
    }
}

impl Image for KernelImage {
    fn candidates(&mut self, f: &Function) -> Result<Vec<Copy>> {
        let Some(all) = self.syms.get(&f.name) else {
            return Ok(Vec::new());
        };
        let funcs: Vec<&KSym> = all.iter().filter(|s| s.func).collect();
        let n = funcs.len();
        let mut scored: Vec<(u8, u64, &KSym, u64)> = Vec::new();
        for (i, s) in funcs.iter().enumerate() {
            if s.local != f.local && s.file.is_some() {
                continue;
            }
            let same_file = u8::from(f.file.is_some() && s.file == f.file);
            let same_size = u8::from(s.size == Some(f.bytes.len() as u64));
            let pos = if n > 1 { i as u64 + 1 } else { 0 };
            scored.push((2 - same_file - same_size, s.addr, s, pos));
        }
        scored.sort_by_key(|(score, addr, _, _)| (*score, *addr));
        let mut out = Vec::new();
        for (_, _, s, pos) in scored {
            let want = f.bytes.len() as u64;
            let len = match s.size {
                Some(sz) if sz > 0 => sz.max(want),
                _ => want,
            };
            // As many bytes as ours, for messages; only its own when the image ends first
            // (a shorter copy: a short branch where ours has a long one).
            let own = s.size.filter(|sz| *sz > 0).unwrap_or(want);
            let Ok(bytes) = self
                .elf
                .read_vaddr(s.addr, len)
                .or_else(|_| self.elf.read_vaddr(s.addr, own))
            else {
                continue;
            };
            out.push(Copy {
                addr: s.addr,
                section: None,
                size: s.size.filter(|_| self.kaslr_offset == 0),
                bytes,
                fields: Vec::new(),
                sympos: pos,
                moved: Vec::new(),
            });
        }
        Ok(out)
    }

    fn check_field(&mut self, copy: &Copy, field: &Field) -> Result<FieldCheck> {
        let at = field.off as usize;
        let Some(raw) = copy.bytes.get(at..at + field.size as usize) else {
            return Ok(FieldCheck::Differs("nothing (the copy is shorter)".into()));
        };
        let Some(v) = x86::field_value(field.r_type, raw) else {
            return Ok(FieldCheck::Unchecked);
        };
        let place = copy.addr.wrapping_add(field.off);
        // S + A: what the field designates.
        let t = if x86::is_pc_relative(field.r_type) {
            place.wrapping_add(v as u64)
        } else {
            v as u64
        };
        Ok(match &field.target {
            Target::Symbol { name, addend } => {
                let s = t.wrapping_sub(*addend as u64);
                let addrs = self.addresses(name);
                if addrs.is_empty() {
                    FieldCheck::Unchecked
                } else if addrs.contains(&s) {
                    FieldCheck::Same
                } else {
                    FieldCheck::Differs(self.name_at(t))
                }
            }
            Target::Content { bytes, at } => {
                match self
                    .elf
                    .read_vaddr(t.wrapping_add(*at as u64), bytes.len() as u64)
                {
                    Ok(theirs) if theirs == *bytes => FieldCheck::Same,
                    Ok(theirs) => FieldCheck::Differs(
                        Target::Content {
                            bytes: theirs,
                            at: *at,
                        }
                        .to_string(),
                    ),
                    Err(_) => FieldCheck::Differs(format!("{t:#x} (outside the image)")),
                }
            }
            Target::Unnamed { .. } => FieldCheck::Unchecked,
        })
    }

    fn describe(&self) -> String {
        let name = self
            .elf
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        name.unwrap_or_default()
    }
}

impl KernelImage {
    /// The symbol at or before `addr`, as `name+off` (for messages).
    pub fn name_at(&self, addr: u64) -> String {
        let mut best: Option<(&str, u64)> = None;
        for (name, v) in &self.syms {
            for s in v {
                if s.addr <= addr && best.is_none_or(|(_, a)| s.addr > a) && addr - s.addr < 1 << 20
                {
                    best = Some((name, s.addr));
                }
            }
        }
        match best {
            Some((n, a)) if a == addr => n.to_string(),
            Some((n, a)) => format!("{n}+{:#x}", addr - a),
            None => format!("{addr:#x}"),
        }
    }
}

/// A kernel module (`.ko`) of the target.
pub struct ModuleImage {
    /// The module file.
    pub file: RelFile,
    name: String,
}

impl ModuleImage {
    /// Opens a module file (`ET_REL`).
    pub fn open(path: &Path) -> Result<ModuleImage> {
        let file = RelFile::open(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ModuleImage { file, name })
    }

    /// The build-id of the module.
    pub fn build_id(&self) -> Result<Option<Vec<u8>>> {
        self.file.elf.build_id()
    }
}

impl Image for ModuleImage {
    fn candidates(&mut self, f: &Function) -> Result<Vec<Copy>> {
        let ids: Vec<usize> = (0..self.file.elf.symbols.len())
            .filter(|i| {
                let s = &self.file.elf.symbols[*i];
                s.name == f.name && s.is_func() && s.is_defined() && s.is_local() == f.local
            })
            .collect();
        let n = ids.len();
        let mut out = Vec::new();
        for (k, i) in ids.into_iter().enumerate() {
            let g = self.file.function(i)?;
            out.push(Copy {
                addr: g.value,
                section: Some((g.section, g.section_name.clone())),
                size: Some(g.bytes.len() as u64),
                bytes: g.bytes,
                fields: g.fields,
                sympos: if n > 1 { k as u64 + 1 } else { 0 },
                moved: Vec::new(),
            });
        }
        out.sort_by_key(|c| u8::from(c.size != Some(f.bytes.len() as u64)));
        Ok(out)
    }

    fn check_field(&mut self, copy: &Copy, field: &Field) -> Result<FieldCheck> {
        let Some(theirs) = copy.fields.iter().find(|g| g.off == field.off) else {
            return Ok(self.resolved_in_place(copy, field));
        };
        if theirs.r_type != field.r_type {
            return Ok(FieldCheck::Differs(format!(
                "{} ({})",
                theirs.target,
                x86::reloc_name(theirs.r_type)
            )));
        }
        Ok(match (&field.target, &theirs.target) {
            (Target::Unnamed { .. }, _) | (_, Target::Unnamed { .. }) => FieldCheck::Unchecked,
            (a, b) if a == b => FieldCheck::Same,
            (Target::Content { bytes: a, .. }, Target::Content { bytes: b, .. })
                if a.starts_with(b) || b.starts_with(a) =>
            {
                FieldCheck::Same
            }
            (a, b) if self.same_place(a, b) => FieldCheck::Same,
            (_, b) => FieldCheck::Differs(b.to_string()),
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl ModuleImage {
    /// The places (section index, offset) in the module that `name + addend` can be.
    fn places(&self, name: &str, addend: i64) -> Vec<(u16, u64)> {
        self.file
            .elf
            .symbols
            .iter()
            .filter(|x| x.name == name && x.is_defined() && !x.is_section())
            .map(|x| (x.shndx, x.value.wrapping_add(addend as u64)))
            .collect()
    }

    /// Whether two symbol references designate the same place of the module: the end of
    /// one array (`nlm_files+0x400`) is where the next object starts (`nsm_stats`), and an
    /// empty object (a `lock_class_key` without lockdep) shares its address with the next.
    fn same_place(&self, ours: &Target, theirs: &Target) -> bool {
        let (Target::Symbol { name: a, addend: x }, Target::Symbol { name: b, addend: y }) =
            (ours, theirs)
        else {
            return false;
        };
        let want = self.places(b, *y);
        let have = self.places(a, *x);
        if want.len() == 1 && have.contains(&want[0]) {
            return true;
        }
        // Empty objects of several files at one address: the target's reference was named
        // after one of them, which one is arbitrary (mlx5_core.ko's `__key.104` and the
        // other files' `__key.0`). Empty, they hold nothing to tell them apart.
        self.empty(a) && self.empty(b) && have.iter().any(|h| want.contains(h))
    }

    /// Every definition of `name` is an empty object.
    fn empty(&self, name: &str) -> bool {
        let mut defs = self
            .file
            .elf
            .symbols
            .iter()
            .filter(|x| x.name == name && x.is_defined() && !x.is_section())
            .peekable();
        defs.peek().is_some() && defs.all(|x| x.size == 0 && !x.is_func())
    }

    /// A field the assembler resolved itself: a PC-relative reference to a symbol of the
    /// same section (a call between functions of one `.text`).
    fn resolved_in_place(&self, copy: &Copy, field: &Field) -> FieldCheck {
        let no = || FieldCheck::Differs("a value, not a relocation".into());
        let (Target::Symbol { name, addend }, Some((sec, _))) = (&field.target, &copy.section)
        else {
            return no();
        };
        let at = field.off as usize;
        let Some(v) = copy
            .bytes
            .get(at..at + field.size as usize)
            .and_then(|b| x86::field_value(field.r_type, b))
        else {
            return no();
        };
        if !x86::is_pc_relative(field.r_type) {
            return no();
        }
        let s = (copy.addr + field.off)
            .wrapping_add(v as u64)
            .wrapping_sub(*addend as u64);
        let found = self
            .file
            .elf
            .symbols
            .iter()
            .any(|x| x.name == *name && usize::from(x.shndx) == *sec && x.value == s);
        if found {
            FieldCheck::Same
        } else {
            let other = self.file.elf.symbols.iter().find(|x| {
                usize::from(x.shndx) == *sec
                    && x.value == s
                    && !x.name.is_empty()
                    && !x.is_section()
            });
            FieldCheck::Differs(other.map_or(
                format!("{}{s:+#x}", copy.section.as_ref().map_or("", |c| &c.1)),
                |x| x.name.clone(),
            ))
        }
    }
}
