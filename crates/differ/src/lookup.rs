//! The parent's symbol table (vmlinux or a module) and Module.symvers: where each symbol
//! the patch references lives in the running kernel, with the `sympos` the livepatch
//! core needs for duplicate local names.
//!
//! Local symbols are resolved through "file blocks": the parent's symbol table split at
//! `STT_FILE` symbols. Each `STT_FILE` of the original object is matched with the one
//! block that has the same file name and the same local functions and objects.

use std::collections::HashMap;

use kelf::consts::*;
use kelf::SymbolId;

use crate::elf::Elf;
use crate::error::{fatal, Result};

/// One symbol of a parent's symbol table (vmlinux or a module).
#[derive(Clone, Debug)]
pub struct ObjSym {
    /// `st_value`.
    pub addr: u64,
    /// `st_size`.
    pub size: u64,
    /// Name.
    pub name: String,
    /// `STT_*`.
    pub kind: u8,
    /// `STB_*`.
    pub bind: u8,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupResult {
    pub objname: String,
    pub addr: u64,
    pub size: u64,
    pub sympos: u64,
    pub global: bool,
    pub exported: bool,
}

pub struct Lookup {
    objname: String,
    syms: Vec<ObjSym>,
    /// Global/weak symbols by name.
    globals: HashMap<String, Vec<usize>>,
    /// Local symbols by name: their addresses give sympos; without FILE symbols
    /// (kallsyms) the name alone must identify the symbol.
    locals: HashMap<String, Vec<usize>>,
    /// Does the table have FILE symbols (file blocks)?
    has_files: bool,
    /// Exported symbols: name -> module.
    exports: HashMap<String, Vec<String>>,
}

/// Symbols that the linker may or may not keep, depending on the kernel and on whether
/// the parent is vmlinux or a module: ignored when comparing symbol lists.
fn maybe_discarded(name: &str) -> bool {
    name.starts_with("__exitcall_")
        || name.starts_with("__brk_reservation_fn_")
        || name.starts_with("__func_stack_frame_non_standard_")
        || name.starts_with("__trace_check")
        || name.contains("__addressable_")
        || name.contains("__UNIQUE_ID_")
        || name.starts_with(".L.str")
        || name.starts_with(".L__const")
        || crate::names::is_ubsan(name)
}

/// Module name from a path: basename with '-' turned into '_'.
pub fn make_modname(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.replace('-', "_")
}

fn parse_type(t: &str) -> Option<u8> {
    Some(match t {
        "NOTYPE" => STT_NOTYPE,
        "OBJECT" => STT_OBJECT,
        "FUNC" => STT_FUNC,
        "FILE" => STT_FILE,
        "TLS" => STT_TLS,
        "COMMON" => STT_COMMON,
        "IFUNC" => STT_GNU_IFUNC,
        _ => return None,
    })
}

fn parse_bind(b: &str) -> Option<u8> {
    Some(match b {
        "LOCAL" => STB_LOCAL,
        "GLOBAL" => STB_GLOBAL,
        "WEAK" => STB_WEAK,
        "UNIQUE" => STB_GNU_UNIQUE,
        _ => return None,
    })
}

/// Parse `readelf -s --wide` output (the `.dynsym` table, if present, is skipped).
pub fn parse_readelf(text: &str) -> Result<Vec<ObjSym>> {
    let mut out = Vec::new();
    let mut skip = false;
    for line in text.lines() {
        if line.starts_with("Symbol table ") {
            skip = line.contains(".dynsym");
            continue;
        }
        if skip {
            continue;
        }
        // ppc64le prints "[<localentry>: 8]" inside the Vis column.
        let cleaned;
        let line = if line.contains('[') {
            let mut s = String::with_capacity(line.len());
            let mut depth = 0;
            for c in line.chars() {
                match c {
                    '[' => depth += 1,
                    ']' if depth > 0 => depth -= 1,
                    _ if depth == 0 => s.push(c),
                    _ => {}
                }
            }
            cleaned = s;
            cleaned.as_str()
        } else {
            line
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 7 || !f[0].ends_with(':') {
            continue;
        }
        let Ok(addr) = u64::from_str_radix(f[1], 16) else {
            continue;
        };
        let size = if let Some(h) = f[2].strip_prefix("0x") {
            u64::from_str_radix(h, 16)
        } else {
            f[2].parse::<u64>()
        };
        let Ok(size) = size else { continue };
        let (ty, bind, ndx) = (f[3], f[4], f[6]);
        if ndx == "UND" || ty == "SECTION" {
            continue;
        }
        let kind = parse_type(ty)
            .ok_or_else(|| fatal(format!("parent symbol table: unknown symbol type {ty}")))?;
        let bind = parse_bind(bind)
            .ok_or_else(|| fatal(format!("parent symbol table: unknown symbol bind {bind}")))?;
        let name = f.get(7).map(|s| s.to_string()).unwrap_or_default();
        out.push(ObjSym {
            addr,
            size,
            name,
            kind,
            bind,
        });
    }
    Ok(out)
}

/// Is this text a `/proc/kallsyms` dump (`<hex address> <type letter> <name> [[module]]`)?
pub fn looks_like_kallsyms(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (3..=4).contains(&f.len())
                && f[0].len() >= 8
                && f[0].bytes().all(|b| b.is_ascii_hexdigit())
                && f[1].len() == 1
        })
}

/// Parse a `/proc/kallsyms` dump, keeping the symbols of `objname` (`vmlinux`: those
/// without a `[module]` tag). Addresses may all be zero (kptr_restrict), so each symbol's
/// `addr` is its line number: the livepatch core counts `sympos` in this order. Sizes are
/// unknown (0). Text symbols become functions, the other defined ones objects.
pub fn parse_kallsyms(text: &str, objname: &str) -> Result<Vec<ObjSym>> {
    let want_module = (objname != "vmlinux").then(|| make_modname(objname));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if !(3..=4).contains(&f.len())
            || u64::from_str_radix(f[0], 16).is_err()
            || f[1].chars().count() != 1
        {
            return Err(fatal(format!(
                "parent symbol table: line {} is not a kallsyms line: {line:?}",
                n + 1
            )));
        }
        let module = f
            .get(3)
            .map(|m| m.trim_start_matches('[').trim_end_matches(']'));
        if module != want_module.as_deref() {
            continue;
        }
        let t = f[1].chars().next().unwrap_or('?');
        let kind = match t.to_ascii_lowercase() {
            't' => STT_FUNC,
            'd' | 'b' | 'r' | 'g' | 's' | 'v' => STT_OBJECT,
            'w' => STT_NOTYPE,
            _ => continue, // absolute, undefined, debugging
        };
        let bind = if matches!(t, 'w' | 'W' | 'v' | 'V') {
            STB_WEAK
        } else if t.is_ascii_uppercase() {
            STB_GLOBAL
        } else {
            STB_LOCAL
        };
        out.push(ObjSym {
            addr: n as u64,
            size: 0,
            name: f[2].to_string(),
            kind,
            bind,
        });
    }
    if out.is_empty() {
        return Err(fatal(format!(
            "the kallsyms dump has no symbols of {objname}{}",
            if want_module.is_some() {
                ": load the module on the target before dumping /proc/kallsyms"
            } else {
                ""
            }
        )));
    }
    Ok(out)
}

/// Read the symbol table of an ELF file (vmlinux or a module) directly. Only the
/// section headers, `.symtab` and its string table are read, so a 600 MB debug vmlinux
/// costs a few megabytes of I/O.
pub fn read_elf_symbols(path: &str) -> Result<Vec<ObjSym>> {
    use object::read::elf::{FileHeader, SectionHeader, Sym};
    use std::io::{Read, Seek, SeekFrom};
    let bad = |m: &str| fatal(format!("parent object {path}: malformed ELF: {m}"));
    let mut f = std::fs::File::open(path).map_err(|e| fatal(format!("{path}: {e}")))?;
    let len = f
        .metadata()
        .map_err(|e| fatal(format!("{path}: {e}")))?
        .len();
    let mut read_at = |off: u64, size: u64| -> Result<Vec<u8>> {
        if off.checked_add(size).is_none_or(|end| end > len) || size > 1 << 31 {
            return Err(bad("section lies outside the file"));
        }
        let mut buf = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| fatal(format!("{path}: {e}")))?;
        Ok(buf)
    };
    let head = read_at(0, 64.min(len))?;
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 {
        return Err(bad("not a 64-bit ELF file"));
    }
    let fh = object::elf::FileHeader64::<object::Endianness>::parse(&head[..])
        .map_err(|e| bad(&e.to_string()))?;
    let endian = fh.endian().map_err(|e| bad(&e.to_string()))?;
    let shoff = fh.e_shoff.get(endian);
    let shnum = u64::from(fh.e_shnum.get(endian));
    let shdrs_raw = read_at(shoff, shnum * 64)?;
    let shdrs: &[object::elf::SectionHeader64<object::Endianness>] =
        object::pod::slice_from_all_bytes(&shdrs_raw).map_err(|_| bad("bad section headers"))?;
    let symtab = shdrs
        .iter()
        .find(|s| s.sh_type(endian) == object::elf::SHT_SYMTAB)
        .ok_or_else(|| bad("no symbol table"))?;
    let strtab = shdrs
        .get(symtab.sh_link(endian) as usize)
        .ok_or_else(|| bad("bad string table link"))?;
    let syms_raw = read_at(symtab.sh_offset(endian), symtab.sh_size(endian))?;
    let strs = read_at(strtab.sh_offset(endian), strtab.sh_size(endian))?;
    let n = syms_raw.len() / 24;
    let syms: &[object::elf::Sym64<object::Endianness>] =
        object::pod::slice_from_all_bytes(&syms_raw[..n * 24])
            .map_err(|_| bad("bad symbol table"))?;
    let mut out = Vec::with_capacity(n);
    for s in syms.iter().skip(1) {
        if s.st_shndx(endian) == SHN_UNDEF || s.st_type() == STT_SECTION {
            continue;
        }
        let off = s.st_name(endian) as usize;
        let name = strs
            .get(off..)
            .map(|r| &r[..r.iter().position(|b| *b == 0).unwrap_or(r.len())])
            .unwrap_or(b"");
        out.push(ObjSym {
            addr: s.st_value(endian),
            size: s.st_size(endian),
            name: String::from_utf8_lossy(name).into_owned(),
            kind: s.st_type(),
            bind: s.st_bind(),
        });
    }
    Ok(out)
}

/// Parse Module.symvers: `<crc> <symbol> <module> <export> [<namespace>]` (tab separated;
/// the module column is found by looking for `vmlinux`).
pub fn parse_symvers(text: &str) -> Result<HashMap<String, Vec<String>>> {
    let mut mod_col = None;
    for line in text.lines() {
        for (i, f) in line.split('\t').enumerate() {
            if i > 0 && f.starts_with("vmlinux") {
                mod_col = Some(i);
            }
        }
        if mod_col.is_some() {
            break;
        }
    }
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    let col = mod_col.ok_or_else(|| fatal("Module.symvers: invalid format (no vmlinux column)"))?;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(name), Some(module)) = (f.get(1), f.get(col)) else {
            continue;
        };
        if name.is_empty() || module.is_empty() {
            continue;
        }
        out.entry(name.to_string())
            .or_default()
            .push(make_modname(module));
    }
    Ok(out)
}

impl Lookup {
    pub fn new(objname: &str, syms: Vec<ObjSym>, exports: HashMap<String, Vec<String>>) -> Lookup {
        let mut globals: HashMap<String, Vec<usize>> = HashMap::new();
        let mut locals: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in syms.iter().enumerate() {
            if s.bind == STB_GLOBAL || s.bind == STB_WEAK {
                globals.entry(s.name.clone()).or_default().push(i);
            } else if s.bind == STB_LOCAL {
                locals.entry(s.name.clone()).or_default().push(i);
            }
        }
        let has_files = syms.iter().any(|s| s.kind == STT_FILE);
        Lookup {
            objname: objname.to_string(),
            syms,
            globals,
            locals,
            has_files,
            exports,
        }
    }

    /// Open from the command-line arguments: a `readelf -s` text dump or an ELF file.
    pub fn open(symtab_path: &str, objname: &str, symvers_path: &str) -> Result<Lookup> {
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(symtab_path)
                .map_err(|e| fatal(format!("{symtab_path}: {e}")))?;
            let _ = f.read(&mut magic);
        }
        let syms = if &magic == b"\x7fELF" {
            read_elf_symbols(symtab_path)?
        } else {
            let data =
                std::fs::read(symtab_path).map_err(|e| fatal(format!("{symtab_path}: {e}")))?;
            let text = String::from_utf8_lossy(&data);
            if looks_like_kallsyms(&text) {
                parse_kallsyms(&text, objname)?
            } else {
                parse_readelf(&text)?
            }
        };
        let symvers = std::fs::read_to_string(symvers_path)
            .map_err(|e| fatal(format!("{symvers_path}: {e}")))?;
        Ok(Lookup::new(objname, syms, parse_symvers(&symvers)?))
    }

    pub fn objname(&self) -> &str {
        &self.objname
    }

    /// Local FUNC/OBJECT symbols of the block that starts after FILE symbol `file`.
    fn block_locals(&self, file: usize) -> impl Iterator<Item = &ObjSym> {
        self.syms[file + 1..]
            .iter()
            .take_while(|s| s.kind != STT_FILE)
            .filter(|s| s.bind == STB_LOCAL && (s.kind == STT_FUNC || s.kind == STT_OBJECT))
    }

    /// Without file blocks (kallsyms), the object must at least belong to this kernel:
    /// its local functions and objects are all in the table.
    fn check_locals_present(&self, elf: &Elf) -> Result<()> {
        let missing: Vec<&str> = elf
            .obj
            .symbols
            .iter()
            .filter(|s| s.bind == STB_LOCAL && (s.kind == STT_FUNC || s.kind == STT_OBJECT))
            .filter(|s| s.kind == STT_FUNC && !maybe_discarded(&s.name) && !s.name.contains('.'))
            // A module's init code leaves kallsyms once it has run; exit code may be
            // discarded from vmlinux.
            .filter(|s| {
                s.sec.is_some_and(|id| {
                    let n = &elf.obj.sec(id).name;
                    !n.starts_with(".init.") && !n.starts_with(".exit.")
                })
            })
            .map(|s| s.name.as_str())
            .filter(|n| !self.locals.contains_key(*n) && !self.globals.contains_key(*n))
            .collect();
        if let Some(first) = missing.first() {
            return Err(fatal(format!(
                "local function {first} (and {} more) of this object is not in the {} symbol \
                 table: the kallsyms dump does not come from the kernel this object was built for",
                missing.len() - 1,
                self.objname
            )));
        }
        Ok(())
    }

    /// Attach each FILE symbol of `elf` (and the symbols after it) to its block.
    pub fn match_file_blocks(&self, elf: &mut Elf) -> Result<()> {
        if !self.has_files {
            return self.check_locals_present(elf);
        }
        let mut files_by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, s) in self.syms.iter().enumerate() {
            if s.kind == STT_FILE {
                files_by_name.entry(s.name.as_str()).or_default().push(i);
            }
        }
        let symbols = elf.obj.symbols.as_slice();
        let nsym = symbols.len();
        let mut i = 0;
        while i < nsym {
            if symbols[i].kind != STT_FILE {
                i += 1;
                continue;
            }
            let end = (i + 1..nsym)
                .find(|&j| symbols[j].kind == STT_FILE)
                .unwrap_or(nsym);
            let locals: Vec<(&str, u8)> = symbols[i + 1..end]
                .iter()
                .filter(|s| s.bind == STB_LOCAL && (s.kind == STT_FUNC || s.kind == STT_OBJECT))
                .map(|s| (s.name.as_str(), s.kind))
                .collect();
            let kept: Vec<(&str, u8)> = locals
                .iter()
                .copied()
                .filter(|(n, _)| !maybe_discarded(n))
                .collect();
            let fname = symbols[i].name.clone();
            let mut found = None;
            for &f in files_by_name
                .get(fname.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if !self.locals_match(f, &locals, &kept) {
                    continue;
                }
                if found.is_some() {
                    return Err(fatal(format!(
                        "found duplicate matches for {fname} local symbols in {} symbol table",
                        self.objname
                    )));
                }
                found = Some(f);
                if kept.is_empty() {
                    break;
                }
            }
            if found.is_none() && locals.is_empty() {
                // No local function or object to resolve: a file the parent does not have
                // (a new translation unit) needs no block.
                i = end;
                continue;
            }
            let block = found.ok_or_else(|| {
                fatal(format!(
                    "couldn't find matching {fname} local symbols in {} symbol table: the parent \
                     symbol table does not come from the kernel this object was built for",
                    self.objname
                ))
            })?;
            for st in &mut elf.sym.as_mut_slice()[i + 1..end] {
                st.file_block = Some(block);
            }
            i = end;
        }
        Ok(())
    }

    fn locals_match(&self, file: usize, locals: &[(&str, u8)], kept: &[(&str, u8)]) -> bool {
        use std::collections::HashSet;
        let mine: HashSet<(&str, u8)> = locals.iter().copied().collect();
        for t in self.block_locals(file) {
            if !mine.contains(&(t.name.as_str(), t.kind)) {
                return false;
            }
        }
        let theirs: HashSet<(&str, u8)> = self
            .block_locals(file)
            .filter(|t| !maybe_discarded(&t.name))
            .map(|t| (t.name.as_str(), t.kind))
            .collect();
        kept.iter().all(|k| theirs.contains(k))
    }

    /// A local symbol by name alone (no file blocks): it must be unique.
    fn lookup_local_by_name(&self, elf: &Elf, sym: SymbolId) -> Result<Option<LookupResult>> {
        let s = elf.y(sym);
        if s.bind != STB_LOCAL {
            return Ok(None);
        }
        match self.locals.get(&s.name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([i]) => Ok(Some(LookupResult {
                objname: self.objname.clone(),
                addr: self.syms[*i].addr,
                size: self.syms[*i].size,
                sympos: 0,
                global: false,
                exported: false,
            })),
            Some(many) => Err(fatal(format!(
                "{}: {} local symbols of that name in the {} symbol table, which has no file \
                 symbols to tell them apart; give the parent's vmlinux or module with symbols \
                 (kpatch-build -v, or the -dbg package) instead of a kallsyms dump",
                s.name,
                many.len(),
                self.objname
            ))),
        }
    }

    fn lookup_local(&self, elf: &Elf, sym: SymbolId) -> Result<Option<LookupResult>> {
        if !self.has_files {
            return self.lookup_local_by_name(elf, sym);
        }
        let Some(block) = elf.sym[sym].file_block else {
            return Ok(None);
        };
        let name = &elf.y(sym).name;
        let mut result: Option<LookupResult> = None;
        for s in self.syms[block + 1..]
            .iter()
            .take_while(|s| s.kind != STT_FILE)
        {
            if s.bind == STB_LOCAL && &s.name == name {
                if result.is_some() {
                    return Err(fatal(format!("duplicate local symbol found for {name}")));
                }
                result = Some(LookupResult {
                    objname: self.objname.clone(),
                    addr: s.addr,
                    size: s.size,
                    sympos: 0,
                    global: false,
                    exported: false,
                });
            }
        }
        let Some(mut r) = result else { return Ok(None) };
        // The kernel numbers duplicates by address order.
        r.sympos = self
            .locals
            .get(name)
            .map(|v| v.iter().filter(|&&i| self.syms[i].addr <= r.addr).count())
            .unwrap_or(0) as u64;
        Ok(Some(r))
    }

    fn lookup_exported(&self, name: &str) -> Result<Option<LookupResult>> {
        match self.exports.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([m]) => Ok(Some(LookupResult {
                objname: m.clone(),
                addr: 0,
                size: 0,
                sympos: 0,
                global: true,
                exported: true,
            })),
            Some(_) => Err(fatal(format!("duplicate exported symbol found for {name}"))),
        }
    }

    fn lookup_global(&self, name: &str) -> Result<Option<LookupResult>> {
        match self.globals.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([i]) => {
                let s = &self.syms[*i];
                Ok(Some(LookupResult {
                    objname: self.objname.clone(),
                    addr: s.addr,
                    size: s.size,
                    sympos: 0,
                    global: true,
                    exported: self.exports.contains_key(name),
                }))
            }
            Some(_) => Err(fatal(format!("duplicate global symbol found for {name}"))),
        }
    }

    /// Where does this symbol of the patched object live in the running kernel?
    pub fn lookup(&self, elf: &Elf, sym: SymbolId) -> Result<Option<LookupResult>> {
        if let Some(r) = self.lookup_local(elf, sym)? {
            return Ok(Some(r));
        }
        let name = &elf.y(sym).name;
        if let Some(r) = self.lookup_global(name)? {
            return Ok(Some(r));
        }
        self.lookup_exported(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readelf_lines() {
        let text = "Symbol table '.symtab' contains 3 entries:\n   Num:    Value          Size Type    Bind   Vis      Ndx Name\n     0: 0000000000000000     0 NOTYPE  LOCAL  DEFAULT  UND \n     1: 0000000000000000     0 FILE    LOCAL  DEFAULT  ABS meminfo.c\n     2: ffffffff81000010    42 FUNC    GLOBAL DEFAULT    2 foo\n     3: 0000000000000010    42 FUNC    LOCAL  DEFAULT [<localentry>: 8]     2 bar\n";
        let s = parse_readelf(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].addr, 0xffffffff81000010);
        assert_eq!(s[1].name, "foo");
        assert_eq!(s[2].name, "bar");
    }

    #[test]
    fn kallsyms_lines() {
        let text = "0000000000000000 T _text\n0000000000000000 t helper\n0000000000000000 d table\n0000000000000000 t helper\n0000000000000000 t modfn\t[my_mod]\n0000000000000000 W weakfn\n";
        assert!(looks_like_kallsyms(text));
        assert!(!looks_like_kallsyms(
            "Symbol table '.symtab' contains 3 entries:\n"
        ));
        let v = parse_kallsyms(text, "vmlinux").unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!((v[1].kind, v[1].bind), (STT_FUNC, STB_LOCAL));
        assert_eq!((v[2].kind, v[2].bind), (STT_OBJECT, STB_LOCAL));
        assert_eq!(v[4].bind, STB_WEAK);
        assert!(v[3].addr > v[1].addr, "line order stands in for addresses");
        let m = parse_kallsyms(text, "my-mod").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "modfn");
        assert!(parse_kallsyms(text, "other").is_err());
        assert!(parse_kallsyms("ffffffff81000000 T _text\ngarbage\n", "vmlinux").is_err());
    }

    #[test]
    fn symvers_columns() {
        let t = "0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n0x2\tfoo_bar\tdrivers/foo-bar\tEXPORT_SYMBOL_GPL\tNS\n";
        let m = parse_symvers(t).unwrap();
        assert_eq!(m["printk"], vec!["vmlinux".to_string()]);
        assert_eq!(m["foo_bar"], vec!["foo_bar".to_string()]);
    }
}
