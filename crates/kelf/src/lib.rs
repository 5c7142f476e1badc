//! An editable model of ELF relocatable objects for the kpatch tools.
//!
//! [`Object`] holds a file's sections and symbols in tables addressed by typed ids
//! ([`SectionId`], [`SymbolId`]). Relocation sections carry their entries as [`Rela`]
//! values that point at symbols by id, so passes can rewrite relocations, create
//! sections and drop elements without tracking file indices. Indices are assigned once,
//! when [`write::write_object`] serialises the model.
//!
//! Reading ([`read::parse`]) sits on `object`'s low-level `read::elf` layer and checks
//! what that layer trusts: sizes, entry sizes, alignments, and every index that links
//! one table to another. Errors name the section or symbol at fault.

#![warn(missing_docs)]

pub mod edit;
mod idvec;
pub mod read;
pub mod write;

pub use idvec::{Id, IdVec};

use std::fmt;

pub use object::Endianness;

/// Re-exported ELF constants, so users of this crate need not depend on `object`.
pub use object::elf as consts;

/// `sh_flags` bit of a livepatch relocation section (`.klp.rela.<object>.<section>`),
/// applied by the livepatch core rather than the module loader. Such a section applies
/// to a section that may also have its ordinary relocation section.
pub const SHF_RELA_LIVEPATCH: u64 = 0x0010_0000;

/// Index of a section in [`Object::sections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SectionId(pub u32);

/// Index of a symbol in [`Object::symbols`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SymbolId(pub u32);

impl Id for SectionId {
    #[inline]
    fn from_index(index: usize) -> Self {
        SectionId(index as u32)
    }
    #[inline]
    fn index(self) -> usize {
        self.0 as usize
    }
}

impl Id for SymbolId {
    #[inline]
    fn from_index(index: usize) -> Self {
        SymbolId(index as u32)
    }
    #[inline]
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// Errors from reading or writing an object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the file failed (the message names it).
    #[error(transparent)]
    Io(#[from] pathio::PathError),
    /// The file is not a well-formed ELF object; the message says where.
    #[error("malformed ELF: {0}")]
    Malformed(String),
    /// Well-formed, but outside what the model handles (32-bit, `SHT_REL`, ...).
    #[error("unsupported ELF: {0}")]
    Unsupported(String),
    /// The model cannot be serialised as it stands (a dangling reference, ...).
    #[error("cannot write ELF: {0}")]
    Write(String),
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io(pathio::PathError::new(path, source))
    }
}

/// Result of reading or writing an object.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn malformed(msg: impl Into<String>) -> Error {
    Error::Malformed(msg.into())
}

/// The ELF file header fields that matter for relocatable objects.
#[derive(Clone, Debug, PartialEq, Eq)]
/// (The fields are the ELF header's, named as in `<elf.h>`.)
#[allow(missing_docs)]
pub struct Header {
    /// Byte order, from `e_ident[EI_DATA]`.
    pub endian: Endianness,
    pub ident: [u8; 16],
    pub e_type: u16,
    pub e_machine: u16,
    pub e_version: u32,
    pub e_entry: u64,
    pub e_phoff: u64,
    pub e_flags: u32,
    pub e_ehsize: u16,
    pub e_phentsize: u16,
    pub e_phnum: u16,
    pub e_shentsize: u16,
}

/// One section. For `SHT_RELA` sections `relas` holds the entries and `data` is empty.
#[derive(Clone, Debug)]
pub struct Section {
    /// The section's name (from `.shstrtab`).
    pub name: String,
    /// `sh_type` (`SHT_PROGBITS`, `SHT_RELA`, ...).
    pub sh_type: u32,
    /// `sh_flags` (`SHF_ALLOC`, `SHF_EXECINSTR`, ...).
    pub sh_flags: u64,
    /// `sh_addr` as read (the writer writes 0: objects are relocatable).
    pub sh_addr: u64,
    /// `sh_addralign` (0 or a power of two).
    pub sh_addralign: u64,
    /// `sh_entsize`.
    pub sh_entsize: u64,
    /// Size in bytes (for `SHT_NOBITS`, the size the section occupies in memory).
    pub size: u64,
    /// Contents; empty for `SHT_NOBITS` and relocation sections.
    pub data: Vec<u8>,
    /// Section index in the file it was read from (0 for sections made later).
    pub index: u32,
    /// Relocation entries (relocation sections only).
    pub relas: Vec<Rela>,
    /// For a relocation section: the section its entries apply to.
    pub base: Option<SectionId>,
    /// For a non-relocation section: its relocation section, if any.
    pub rela: Option<SectionId>,
    /// The `STT_SECTION` symbol of this section, if the symbol table has one.
    pub secsym: Option<SymbolId>,
    /// `sh_link` when it names another section (`SHF_LINK_ORDER`).
    pub link_sec: Option<SectionId>,
    /// `sh_info` when it names a symbol (`SHT_GROUP` signature).
    pub info_sym: Option<SymbolId>,
    /// `sh_link`/`sh_info` as read, for sections whose links this model does not interpret.
    pub raw_link: u32,
    /// `sh_info` as read (see `raw_link`).
    pub raw_info: u32,
}

impl Section {
    /// A new, empty `SHT_PROGBITS` section with the given flags.
    pub fn new(name: impl Into<String>, sh_type: u32, sh_flags: u64) -> Section {
        Section {
            name: name.into(),
            sh_type,
            sh_flags,
            sh_addr: 0,
            sh_addralign: 1,
            sh_entsize: 0,
            size: 0,
            data: Vec::new(),
            index: 0,
            relas: Vec::new(),
            base: None,
            rela: None,
            secsym: None,
            link_sec: None,
            info_sym: None,
            raw_link: 0,
            raw_info: 0,
        }
    }

    /// Whether this is a relocation section (`SHT_RELA`).
    pub fn is_rela(&self) -> bool {
        self.sh_type == consts::SHT_RELA
    }

    /// Whether this holds code (`SHT_PROGBITS` with `SHF_EXECINSTR`).
    pub fn is_text(&self) -> bool {
        self.sh_type == consts::SHT_PROGBITS
            && self.sh_flags & u64::from(consts::SHF_EXECINSTR) != 0
    }

    /// Whether this occupies no file space (`SHT_NOBITS`, like `.bss`).
    pub fn is_nobits(&self) -> bool {
        self.sh_type == consts::SHT_NOBITS
    }

    /// Replace the contents (and size) of a section.
    pub fn set_data(&mut self, data: Vec<u8>) {
        self.size = data.len() as u64;
        self.data = data;
    }
}

/// One symbol-table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// The symbol's name (a section symbol takes its section's name).
    pub name: String,
    /// `STB_LOCAL`, `STB_GLOBAL`, `STB_WEAK`.
    pub bind: u8,
    /// `STT_FUNC`, `STT_OBJECT`, `STT_SECTION`, ...
    pub kind: u8,
    /// `st_other` (visibility).
    pub other: u8,
    /// `st_shndx` as read (`SHN_UNDEF`, `SHN_ABS`, ... or the real index); the writer
    /// uses `sec` when it is set and this value otherwise.
    pub shndx: u16,
    /// `st_value`: in a relocatable object, the offset in its section.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
    /// The section it is defined in (`None` for undefined and absolute symbols).
    pub sec: Option<SectionId>,
    /// Index in the symbol table it was read from.
    pub index: u32,
}

impl Symbol {
    /// An undefined symbol with value and size 0.
    pub fn new(name: impl Into<String>, bind: u8, kind: u8) -> Symbol {
        Symbol {
            name: name.into(),
            bind,
            kind,
            other: 0,
            shndx: 0,
            value: 0,
            size: 0,
            sec: None,
            index: 0,
        }
    }

    /// `st_info` as written: binding and type.
    pub fn st_info(&self) -> u8 {
        (self.bind << 4) | (self.kind & 0xf)
    }

    /// Whether the binding is `STB_LOCAL`.
    pub fn is_local(&self) -> bool {
        self.bind == consts::STB_LOCAL
    }
}

/// One relocation entry with addend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rela {
    /// Where in the target section the relocation applies.
    pub offset: u64,
    /// The architecture's relocation type (`R_X86_64_PC32`, ...).
    pub r_type: u32,
    /// The symbol it refers to.
    pub sym: SymbolId,
    /// The addend.
    pub addend: i64,
}

/// A relocatable object.
#[derive(Clone, Debug)]
pub struct Object {
    /// The file header.
    pub header: Header,
    /// The sections, without the null section (`SectionId(i)` was file index `i + 1`).
    pub sections: IdVec<SectionId, Section>,
    /// The symbol table; entry 0 is the null symbol.
    pub symbols: IdVec<SymbolId, Symbol>,
}

impl Object {
    /// The section `id`.
    #[inline]
    pub fn sec(&self, id: SectionId) -> &Section {
        &self.sections[id]
    }

    /// The section `id`, mutably.
    #[inline]
    pub fn sec_mut(&mut self, id: SectionId) -> &mut Section {
        &mut self.sections[id]
    }

    /// The symbol `id`.
    #[inline]
    pub fn sym(&self, id: SymbolId) -> &Symbol {
        &self.symbols[id]
    }

    /// The symbol `id`, mutably.
    #[inline]
    pub fn sym_mut(&mut self, id: SymbolId) -> &mut Symbol {
        &mut self.symbols[id]
    }

    /// Ids of all sections, in table order.
    pub fn section_ids(&self) -> impl DoubleEndedIterator<Item = SectionId> {
        self.sections.ids()
    }

    /// Ids of all symbols, in table order (the null symbol first).
    pub fn symbol_ids(&self) -> impl DoubleEndedIterator<Item = SymbolId> {
        self.symbols.ids()
    }

    /// The first section called `name`.
    pub fn find_section(&self, name: &str) -> Option<SectionId> {
        self.sections.position(|s| s.name == name)
    }

    /// The first symbol called `name`.
    pub fn find_symbol(&self, name: &str) -> Option<SymbolId> {
        self.symbols.position(|s| s.name == name)
    }

    /// Appends a section and returns its id.
    pub fn add_section(&mut self, sec: Section) -> SectionId {
        self.sections.push(sec)
    }

    /// Appends a symbol and returns its id (the writer requires locals before globals).
    pub fn add_symbol(&mut self, sym: Symbol) -> SymbolId {
        self.symbols.push(sym)
    }

    /// Add a section together with its (empty) `.rela<name>` section.
    pub fn add_section_pair(&mut self, sec: Section) -> (SectionId, SectionId) {
        let rela_name = format!(".rela{}", sec.name);
        let base = self.add_section(sec);
        let mut rela = Section::new(
            rela_name,
            consts::SHT_RELA,
            u64::from(consts::SHF_INFO_LINK),
        );
        rela.sh_addralign = 8;
        rela.sh_entsize = 24;
        rela.base = Some(base);
        let rela = self.add_section(rela);
        self.sections[base].rela = Some(rela);
        (base, rela)
    }

    /// Whether the object is little-endian.
    pub fn is_little_endian(&self) -> bool {
        self.header.endian == Endianness::Little
    }

    /// Read an unsigned integer of `width` bytes (1, 2, 4 or 8) in the object's byte order.
    pub fn read_uint(&self, bytes: &[u8]) -> u64 {
        let mut v: u64 = 0;
        if self.is_little_endian() {
            for (i, b) in bytes.iter().enumerate() {
                v |= u64::from(*b) << (8 * i);
            }
        } else {
            for b in bytes {
                v = (v << 8) | u64::from(*b);
            }
        }
        v
    }

    /// Encode `value` in `width` bytes in the object's byte order.
    pub fn encode_uint(&self, value: u64, width: usize) -> Vec<u8> {
        let le = value.to_le_bytes();
        let mut out: Vec<u8> = le[..width].to_vec();
        if !self.is_little_endian() {
            out.reverse();
        }
        out
    }
}

impl fmt::Display for SectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "section#{}", self.0)
    }
}

/// Human name of a machine, for messages.
pub fn machine_name(machine: u16) -> String {
    match machine {
        consts::EM_X86_64 => "x86_64".into(),
        consts::EM_PPC64 => "ppc64".into(),
        consts::EM_S390 => "s390x".into(),
        consts::EM_AARCH64 => "aarch64".into(),
        consts::EM_LOONGARCH => "loongarch64".into(),
        consts::EM_RISCV => "riscv64".into(),
        consts::EM_386 => "i386".into(),
        consts::EM_ARM => "arm".into(),
        consts::EM_MIPS => "mips".into(),
        m => format!("machine {m}"),
    }
}
