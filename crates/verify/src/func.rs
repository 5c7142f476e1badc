//! Functions of a relocatable file (a rebuilt original object, or a module `.ko`): their
//! bytes and their relocated fields, each field's target put in a form that can be
//! compared across files that were laid out differently ([`Target`]).

use std::collections::HashMap;

use crate::elf::{Elf, Reloc};
use crate::x86;
use crate::{Error, Result};

/// What a relocated field designates, independent of where the linker put it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Target {
    /// Symbol `name` plus `addend` (the field holds `name + addend`, minus the field's
    /// address when PC-relative).
    Symbol {
        /// The symbol.
        name: String,
        /// Added to its address.
        addend: i64,
    },
    /// Bytes of a merged string or constant section: the data that the field's
    /// reference points at (`S + A + at`), which the linker may have moved.
    Content {
        /// The bytes (a string with its NUL).
        bytes: Vec<u8>,
        /// Where they are, from `S + A`.
        at: i64,
    },
    /// A place this crate cannot name (a section without a symbol there); the field is
    /// not compared.
    Unnamed {
        /// The section and offset, for messages.
        what: String,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Symbol { name, addend } if *addend == 0 => write!(f, "{name}"),
            Target::Symbol { name, addend } => write!(f, "{name}{addend:+#x}"),
            Target::Content { bytes, .. } => {
                let end = bytes
                    .iter()
                    .position(|b| *b == 0)
                    .unwrap_or(bytes.len())
                    .min(40);
                if bytes[..end]
                    .iter()
                    .all(|b| b.is_ascii_graphic() || *b == b' ')
                    && end > 0
                {
                    write!(f, "\"{}\"", String::from_utf8_lossy(&bytes[..end]))
                } else {
                    let hex: Vec<String> =
                        bytes.iter().take(16).map(|b| format!("{b:02x}")).collect();
                    write!(f, "constant {}", hex.join(""))
                }
            }
            Target::Unnamed { what } => write!(f, "{what}"),
        }
    }
}

/// One relocated field of a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Offset in the function.
    pub off: u64,
    /// Bytes the relocation writes.
    pub size: u64,
    /// `R_X86_64_*`.
    pub r_type: u32,
    /// What it designates.
    pub target: Target,
}

/// A function of a relocatable file.
#[derive(Clone, Debug)]
pub struct Function {
    /// Its symbol's name.
    pub name: String,
    /// Index of its symbol in the file's symbol table.
    pub sym: usize,
    /// Its section's index.
    pub section: usize,
    /// Its section's name.
    pub section_name: String,
    /// Offset of the function in its section.
    pub value: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its relocated fields, by offset.
    pub fields: Vec<Field>,
    /// A local (static) function.
    pub local: bool,
    /// A weak definition, which another definition may override in the target.
    pub weak: bool,
    /// The `STT_FILE` name it belongs to, if the file has file symbols.
    pub file: Option<String>,
}

/// A relocatable file's functions and what resolving their fields needs.
pub struct RelFile {
    /// The file.
    pub elf: Elf,
    /// Named symbols by section, sorted by value: `(value, size, symbol index)`.
    by_section: HashMap<u16, Vec<(u64, u64, usize)>>,
    data: HashMap<usize, Vec<u8>>,
}

impl RelFile {
    /// Opens a relocatable file (`ET_REL`).
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<RelFile> {
        let elf = Elf::open(path)?;
        if elf.e_type != object::elf::ET_REL {
            return Err(Error::Format(format!(
                "{}: not a relocatable object or module",
                elf.path.display()
            )));
        }
        let mut by_section: HashMap<u16, Vec<(u64, u64, usize)>> = HashMap::new();
        for (i, s) in elf.symbols.iter().enumerate() {
            if s.is_defined()
                && !s.is_section()
                && !s.name.is_empty()
                && s.kind != object::elf::STT_FILE
            {
                by_section
                    .entry(s.shndx)
                    .or_default()
                    .push((s.value, s.size, i));
            }
        }
        for v in by_section.values_mut() {
            v.sort();
        }
        Ok(RelFile {
            elf,
            by_section,
            data: HashMap::new(),
        })
    }

    /// Section `idx`'s contents, read once.
    pub fn data(&mut self, idx: usize) -> Result<&[u8]> {
        if !self.data.contains_key(&idx) {
            let d = self.elf.section_data(idx)?;
            self.data.insert(idx, d);
        }
        Ok(&self.data[&idx])
    }

    /// Every defined function with code (`STT_FUNC`, non-zero size, in an executable
    /// section).
    pub fn functions(&mut self) -> Result<Vec<Function>> {
        let ids: Vec<usize> = (0..self.elf.symbols.len())
            .filter(|i| {
                let s = &self.elf.symbols[*i];
                s.is_func()
                    && s.is_defined()
                    && s.size > 0
                    && self
                        .elf
                        .sections
                        .get(usize::from(s.shndx))
                        .is_some_and(|x| x.is_text())
            })
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for i in ids {
            out.push(self.function(i)?);
        }
        Ok(out)
    }

    /// The function of symbol `sym`.
    pub fn function(&mut self, sym: usize) -> Result<Function> {
        let s = self.elf.symbols[sym].clone();
        let section = usize::from(s.shndx);
        let path = self.elf.path.display().to_string();
        let data = self.data(section)?;
        let end = s
            .value
            .checked_add(s.size)
            .filter(|e| *e <= data.len() as u64)
            .ok_or_else(|| {
                Error::Format(format!(
                    "{path}: function {} lies outside its section",
                    s.name
                ))
            })?;
        let bytes = data[s.value as usize..end as usize].to_vec();
        let fields = self.fields_in(section, s.value, &bytes)?;
        Ok(Function {
            name: s.name.clone(),
            sym,
            section,
            section_name: self.elf.sections[section].name.clone(),
            value: s.value,
            bytes,
            fields,
            local: s.is_local(),
            weak: s.bind == object::elf::STB_WEAK,
            file: self.elf.file_name(s.file).map(str::to_string),
        })
    }

    /// The target of relocation `r`, whose reference is `bias` bytes past `S + A`.
    pub fn target(&mut self, r: &Reloc, bias: i64) -> Result<Target> {
        let s = self.elf.symbols[r.sym as usize].clone();
        if !s.is_section() {
            return Ok(Target::Symbol {
                name: s.name,
                addend: r.addend,
            });
        }
        let sec = usize::from(s.shndx);
        let at = r.addend + bias;
        // A named symbol there (a function in its own section, a static variable).
        if let Some(list) = self.by_section.get(&s.shndx) {
            let i = list.partition_point(|(v, _, _)| (*v as i64) <= at);
            if let Some((v, size, idx)) = i.checked_sub(1).and_then(|i| list.get(i)) {
                // Inside the symbol, or just past its end (an array's end pointer).
                if at <= (*v + *size) as i64 {
                    return Ok(Target::Symbol {
                        name: self.elf.symbols[*idx].name.clone(),
                        addend: r.addend - *v as i64,
                    });
                }
            }
        }
        let section = self.elf.sections[sec].clone();
        // Plain data with nothing relocated in it can be compared by content too.
        let plain = section.is_alloc()
            && !section.is_text()
            && section.sh_type != crate::elf::SHT_NOBITS
            && self.elf.rela_for(sec).is_none();
        if (section.is_strings() || section.is_merge_constants() || plain) && at >= 0 {
            let data = self.data(sec)?;
            let Some(rest) = data.get(at as usize..) else {
                return Ok(Target::Unnamed {
                    what: format!("{}{at:+#x}", section.name),
                });
            };
            let len = if section.is_strings() {
                rest.iter()
                    .position(|b| *b == 0)
                    .map_or(rest.len(), |n| n + 1)
            } else if section.is_merge_constants() {
                (section.entsize.max(1) as usize).min(rest.len())
            } else {
                rest.len().min(16)
            };
            if len == 0 {
                return Ok(Target::Unnamed {
                    what: format!("{}{at:+#x}", section.name),
                });
            }
            return Ok(Target::Content {
                bytes: rest[..len].to_vec(),
                at: bias,
            });
        }
        Ok(Target::Unnamed {
            what: format!("{}{at:+#x}", section.name),
        })
    }

    /// The relocated fields at `[start, start + len)` of section `section`, with the
    /// offsets relative to `start`.
    pub fn fields_in(&mut self, section: usize, start: u64, bytes: &[u8]) -> Result<Vec<Field>> {
        let end = start + bytes.len() as u64;
        let relocs: Vec<Reloc> = self
            .elf
            .relocations(section)?
            .into_iter()
            .filter(|r| r.offset >= start && r.offset < end)
            .collect();
        let starts = x86::insn_starts(bytes);
        let mut out = Vec::new();
        for r in relocs {
            let off = r.offset - start;
            let Some(size) = x86::field_size(r.r_type) else {
                return Err(Error::Format(format!(
                    "{}: {}+{:#x}: unsupported {}",
                    self.elf.path.display(),
                    self.elf.sections[section].name,
                    r.offset,
                    x86::reloc_name(r.r_type)
                )));
            };
            if size == 0 {
                continue;
            }
            let bias = if x86::is_pc_relative(r.r_type) {
                x86::insn_around(bytes, &starts, off).map_or(4, |(_, e)| (e - off) as i64)
            } else {
                0
            };
            out.push(Field {
                off,
                size,
                r_type: r.r_type,
                target: self.target(&r, bias)?,
            });
        }
        Ok(out)
    }
}
