//! A read-only view of a 64-bit little-endian ELF file (relocatable object, module or
//! linked kernel) that reads only what it is asked for: the headers and the symbol table
//! when opened, section contents and relocations on demand. A debug `vmlinux` is over
//! 600 MB, of which a verification needs a few: nothing is mapped or read whole.
//!
//! Every size, offset and index read from the file is checked against the file before it
//! is used; errors name the file and the table at fault.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use object::elf::{FileHeader64, ProgramHeader64, Rela64, SectionHeader64, Sym64};
use object::read::elf::{FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::LittleEndian as LE;

use crate::{Error, Result};

/// `SHT_RELA`, `SHT_SYMTAB`, `SHT_NOBITS`, `SHT_NOTE`.
pub use object::elf::{SHT_NOBITS, SHT_NOTE, SHT_RELA, SHT_SYMTAB};

/// A section header.
#[derive(Clone, Debug)]
pub struct Section {
    /// Its name.
    pub name: String,
    /// `SHT_*`.
    pub sh_type: u32,
    /// `SHF_*`.
    pub flags: u64,
    /// Its address in a linked image.
    pub addr: u64,
    /// Its offset in the file.
    pub offset: u64,
    /// Its size in bytes.
    pub size: u64,
    /// `sh_link`.
    pub link: u32,
    /// `sh_info`.
    pub info: u32,
    /// Entry size of a table.
    pub entsize: u64,
}

impl Section {
    /// Executable (`SHF_EXECINSTR`).
    pub fn is_text(&self) -> bool {
        self.flags & u64::from(object::elf::SHF_EXECINSTR) != 0
    }
    /// Part of the loaded image (`SHF_ALLOC`).
    pub fn is_alloc(&self) -> bool {
        self.flags & u64::from(object::elf::SHF_ALLOC) != 0
    }
    /// A mergeable string section (`SHF_MERGE|SHF_STRINGS`).
    pub fn is_strings(&self) -> bool {
        let f = u64::from(object::elf::SHF_MERGE | object::elf::SHF_STRINGS);
        self.flags & f == f
    }
    /// A mergeable constant section (`SHF_MERGE` without `SHF_STRINGS`).
    pub fn is_merge_constants(&self) -> bool {
        self.flags & u64::from(object::elf::SHF_MERGE) != 0 && !self.is_strings()
    }
}

/// A symbol table entry.
#[derive(Clone, Debug)]
pub struct Symbol {
    /// Its name.
    pub name: String,
    /// Its value (an address in a linked image, an offset in its section otherwise).
    pub value: u64,
    /// Its size in bytes.
    pub size: u64,
    /// `STT_*`.
    pub kind: u8,
    /// `STB_*`.
    pub bind: u8,
    /// Section index (`SHN_UNDEF` for an undefined symbol).
    pub shndx: u16,
    /// Index of the last `STT_FILE` symbol before this one (local symbols only).
    pub file: Option<u32>,
}

impl Symbol {
    /// `STT_FUNC`.
    pub fn is_func(&self) -> bool {
        self.kind == object::elf::STT_FUNC
    }
    /// `STT_SECTION`.
    pub fn is_section(&self) -> bool {
        self.kind == object::elf::STT_SECTION
    }
    /// `STB_LOCAL`.
    pub fn is_local(&self) -> bool {
        self.bind == object::elf::STB_LOCAL
    }
    /// Defined in a section of the file.
    pub fn is_defined(&self) -> bool {
        self.shndx != object::elf::SHN_UNDEF && self.shndx < object::elf::SHN_LORESERVE
    }
}

/// A relocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reloc {
    /// The field's offset in the section.
    pub offset: u64,
    /// `R_X86_64_*`.
    pub r_type: u32,
    /// Index into [`Elf::symbols`].
    pub sym: u32,
    /// `A`.
    pub addend: i64,
}

/// A loadable segment.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Its first virtual address.
    pub vaddr: u64,
    /// Its offset in the file.
    pub offset: u64,
    /// Its size in the file.
    pub filesz: u64,
}

/// An opened ELF file.
pub struct Elf {
    /// The file.
    pub path: PathBuf,
    file: File,
    len: u64,
    /// `ET_REL`, `ET_EXEC`, ...
    pub e_type: u16,
    /// `EM_*`.
    pub machine: u16,
    /// The section headers, by index.
    pub sections: Vec<Section>,
    /// The loadable segments.
    pub segments: Vec<Segment>,
    /// The symbol table (empty when stripped); index 0 is the null symbol.
    pub symbols: Vec<Symbol>,
}

fn pod<T: object::Pod>(bytes: &[u8]) -> Option<&T> {
    object::pod::from_bytes::<T>(bytes).ok().map(|(t, _)| t)
}

impl Elf {
    /// Opens `path` and reads its headers and symbol table.
    pub fn open(path: impl AsRef<Path>) -> Result<Elf> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        let mut elf = Elf {
            path,
            file,
            len,
            e_type: 0,
            machine: 0,
            sections: Vec::new(),
            segments: Vec::new(),
            symbols: Vec::new(),
        };
        elf.read_headers()?;
        elf.read_symbols()?;
        Ok(elf)
    }

    fn bad(&self, what: impl std::fmt::Display) -> Error {
        Error::Format(format!("{}: {what}", self.path.display()))
    }

    /// `len` bytes at file offset `off`, checked against the file's size.
    pub fn read_at(&self, off: u64, len: u64) -> Result<Vec<u8>> {
        let end = off
            .checked_add(len)
            .filter(|e| *e <= self.len)
            .ok_or_else(|| {
                self.bad(format!(
                    "range {off:#x}+{len:#x} beyond the end of the file"
                ))
            })?;
        let n = usize::try_from(end - off).map_err(|_| self.bad("range too large"))?;
        let mut buf = vec![0; n];
        self.file
            .read_exact_at(&mut buf, off)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    fn read_headers(&mut self) -> Result<()> {
        let raw = self.read_at(0, 64.min(self.len))?;
        let hdr: &FileHeader64<LE> =
            pod(&raw).ok_or_else(|| self.bad("too short for an ELF header"))?;
        if !hdr.is_supported() || !hdr.is_class_64() || !hdr.is_little_endian() {
            return Err(self.bad("not a 64-bit little-endian ELF file"));
        }
        self.e_type = hdr.e_type(LE);
        self.machine = hdr.e_machine(LE);
        let (shoff, shnum, shent) = (hdr.e_shoff(LE), hdr.e_shnum(LE), hdr.e_shentsize(LE));
        let (phoff, phnum, phent) = (hdr.e_phoff(LE), hdr.e_phnum(LE), hdr.e_phentsize(LE));
        let shstrndx = usize::from(hdr.e_shstrndx(LE));
        if shnum > 0 && usize::from(shent) != std::mem::size_of::<SectionHeader64<LE>>() {
            return Err(self.bad(format!("section header size {shent}")));
        }
        if phnum > 0 && usize::from(phent) != std::mem::size_of::<ProgramHeader64<LE>>() {
            return Err(self.bad(format!("program header size {phent}")));
        }
        let ph = self.read_at(phoff, u64::from(phnum) * u64::from(phent))?;
        for chunk in ph.chunks_exact(usize::from(phent.max(1))) {
            let p: &ProgramHeader64<LE> = pod(chunk).ok_or_else(|| self.bad("program header"))?;
            if p.p_type(LE) == object::elf::PT_LOAD {
                let seg = Segment {
                    vaddr: p.p_vaddr(LE),
                    offset: p.p_offset(LE),
                    filesz: p.p_filesz(LE),
                };
                if seg
                    .offset
                    .checked_add(seg.filesz)
                    .is_none_or(|e| e > self.len)
                {
                    return Err(self.bad("a loadable segment lies beyond the end of the file"));
                }
                self.segments.push(seg);
            }
        }
        let sh = self.read_at(shoff, u64::from(shnum) * u64::from(shent))?;
        let mut heads = Vec::with_capacity(usize::from(shnum));
        for chunk in sh.chunks_exact(usize::from(shent.max(1))) {
            heads.push(
                *pod::<SectionHeader64<LE>>(chunk).ok_or_else(|| self.bad("section header"))?,
            );
        }
        let names = match heads.get(shstrndx) {
            Some(s) if shnum > 0 => self.read_at(s.sh_offset(LE), s.sh_size(LE))?,
            _ if shnum == 0 => Vec::new(),
            _ => return Err(self.bad(format!("section name table index {shstrndx} out of range"))),
        };
        for h in &heads {
            let sec = Section {
                name: cstr(&names, h.sh_name(LE) as usize)
                    .ok_or_else(|| self.bad("section name"))?,
                sh_type: h.sh_type(LE),
                flags: h.sh_flags(LE),
                addr: h.sh_addr(LE),
                offset: h.sh_offset(LE),
                size: h.sh_size(LE),
                link: h.sh_link(LE),
                info: h.sh_info(LE),
                entsize: h.sh_entsize(LE),
            };
            if sec.sh_type != SHT_NOBITS
                && sec
                    .offset
                    .checked_add(sec.size)
                    .is_none_or(|e| e > self.len)
            {
                return Err(self.bad(format!(
                    "section {} lies beyond the end of the file",
                    sec.name
                )));
            }
            self.sections.push(sec);
        }
        Ok(())
    }

    fn read_symbols(&mut self) -> Result<()> {
        let Some(symtab) = self.sections.iter().position(|s| s.sh_type == SHT_SYMTAB) else {
            return Ok(());
        };
        let st = self.sections[symtab].clone();
        let strtab = self
            .sections
            .get(st.link as usize)
            .cloned()
            .ok_or_else(|| self.bad("symbol table's string table index out of range"))?;
        if st.entsize != std::mem::size_of::<Sym64<LE>>() as u64 {
            return Err(self.bad(format!("symbol entry size {}", st.entsize)));
        }
        let raw = self.read_at(st.offset, st.size)?;
        let strings = self.read_at(strtab.offset, strtab.size)?;
        let mut file = None;
        let mut out = Vec::with_capacity(raw.len() / 24);
        for (i, chunk) in raw.chunks_exact(24).enumerate() {
            let s: &Sym64<LE> = pod(chunk).ok_or_else(|| self.bad("symbol"))?;
            let sym = Symbol {
                name: cstr(&strings, s.st_name(LE) as usize)
                    .ok_or_else(|| self.bad(format!("symbol {i}: name out of range")))?,
                value: s.st_value(LE),
                size: s.st_size(LE),
                kind: s.st_type(),
                bind: s.st_bind(),
                shndx: s.st_shndx(LE),
                file: None,
            };
            if sym.kind == object::elf::STT_FILE {
                file = Some(i as u32);
            }
            let shndx = usize::from(sym.shndx);
            if sym.is_defined() && shndx >= self.sections.len() {
                return Err(self.bad(format!(
                    "symbol {}: section index {shndx} out of range",
                    sym.name
                )));
            }
            out.push(Symbol {
                file: if sym.is_local() { file } else { None },
                ..sym
            });
        }
        self.symbols = out;
        Ok(())
    }

    /// Index of the section named `name`.
    pub fn section_by_name(&self, name: &str) -> Option<usize> {
        self.sections.iter().position(|s| s.name == name)
    }

    /// The contents of section `idx` (empty for `SHT_NOBITS`).
    pub fn section_data(&self, idx: usize) -> Result<Vec<u8>> {
        let s = self
            .sections
            .get(idx)
            .ok_or_else(|| self.bad(format!("no section {idx}")))?;
        if s.sh_type == SHT_NOBITS {
            return Ok(Vec::new());
        }
        self.read_at(s.offset, s.size)
    }

    /// `len` bytes at offset `off` of section `idx`.
    pub fn section_bytes(&self, idx: usize, off: u64, len: u64) -> Result<Vec<u8>> {
        let s = self
            .sections
            .get(idx)
            .ok_or_else(|| self.bad(format!("no section {idx}")))?;
        if off.checked_add(len).is_none_or(|e| e > s.size) || s.sh_type == SHT_NOBITS {
            return Err(self.bad(format!(
                "{}+{off:#x} ({len} bytes) is outside the section",
                s.name
            )));
        }
        self.read_at(s.offset + off, len)
    }

    /// The relocation section that applies to section `idx`, if any.
    pub fn rela_for(&self, idx: usize) -> Option<usize> {
        self.sections.iter().position(|s| {
            s.sh_type == SHT_RELA && s.info as usize == idx && s.is_rela_of_symtab(self)
        })
    }

    /// The relocations of section `idx`, sorted by offset.
    pub fn relocations(&self, idx: usize) -> Result<Vec<Reloc>> {
        let Some(r) = self.rela_for(idx) else {
            return Ok(Vec::new());
        };
        let rs = &self.sections[r];
        if rs.entsize != std::mem::size_of::<Rela64<LE>>() as u64 {
            return Err(self.bad(format!("{}: relocation entry size {}", rs.name, rs.entsize)));
        }
        let raw = self.read_at(rs.offset, rs.size)?;
        let mut out = Vec::with_capacity(raw.len() / 24);
        for chunk in raw.chunks_exact(24) {
            let r: &Rela64<LE> = pod(chunk).ok_or_else(|| self.bad("relocation"))?;
            let sym = r.r_sym(LE, false);
            if sym as usize >= self.symbols.len() {
                return Err(self.bad(format!("{}: symbol index {sym} out of range", rs.name)));
            }
            out.push(Reloc {
                offset: r.r_offset(LE),
                r_type: r.r_type(LE, false),
                sym,
                addend: r.r_addend(LE),
            });
        }
        out.sort_by_key(|r| r.offset);
        Ok(out)
    }

    /// `len` bytes at virtual address `addr` of a linked image, from its loadable
    /// segments (or its sections, for a file without program headers).
    pub fn read_vaddr(&self, addr: u64, len: u64) -> Result<Vec<u8>> {
        let end = addr
            .checked_add(len)
            .ok_or_else(|| self.bad("address overflow"))?;
        for s in &self.segments {
            if addr >= s.vaddr && end <= s.vaddr + s.filesz {
                return self.read_at(s.offset + (addr - s.vaddr), len);
            }
        }
        for s in &self.sections {
            if s.is_alloc() && s.sh_type != SHT_NOBITS && addr >= s.addr && end <= s.addr + s.size {
                return self.read_at(s.offset + (addr - s.addr), len);
            }
        }
        Err(self.bad(format!(
            "address {addr:#x} ({len} bytes) is not in the image"
        )))
    }

    /// The name of the `STT_FILE` symbol at index `idx`.
    pub fn file_name(&self, idx: Option<u32>) -> Option<&str> {
        idx.and_then(|i| self.symbols.get(i as usize))
            .map(|s| s.name.as_str())
    }

    /// The GNU build-id (`NT_GNU_BUILD_ID`) from the note sections, if any.
    pub fn build_id(&self) -> Result<Option<Vec<u8>>> {
        for (i, s) in self.sections.iter().enumerate() {
            if s.sh_type == SHT_NOTE {
                if let Some(id) = crate::buildid::from_notes(&self.section_data(i)?) {
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }

    /// The strings of the `.comment` section (compiler and linker versions).
    pub fn comments(&self) -> Result<Vec<String>> {
        let Some(i) = self.section_by_name(".comment") else {
            return Ok(Vec::new());
        };
        Ok(self
            .section_data(i)?
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }
}

impl Section {
    /// Whether this relocation section's symbol table is the file's symbol table.
    fn is_rela_of_symtab(&self, elf: &Elf) -> bool {
        elf.sections
            .get(self.link as usize)
            .is_some_and(|s| s.sh_type == SHT_SYMTAB)
    }
}

/// The NUL-terminated string at `off` of a string table.
fn cstr(table: &[u8], off: usize) -> Option<String> {
    let rest = table.get(off..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}
