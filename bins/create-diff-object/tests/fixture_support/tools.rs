//! Looking at objects through binutils (`nm`, `readelf`): an oracle independent of
//! the ELF code under test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Result<Run, String> {
    let o = cmd
        .output()
        .map_err(|e| format!("can't run {:?}: {e}", cmd.get_program()))?;
    Ok(Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    })
}

fn tool(args: &[&str], obj: &Path) -> Result<Run, String> {
    let r = run(Command::new(args[0]).args(&args[1..]).arg(obj))?;
    if r.code != Some(0) {
        return Err(format!(
            "{} {} failed: {}",
            args.join(" "),
            obj.display(),
            r.stderr
        ));
    }
    Ok(r)
}

/// Does a `readelf -r` line end with these tokens (`*` matches any one token, a token
/// ending in `*` any token with that prefix)?
pub fn reloc_line_matches(line: &str, tail: &[String]) -> bool {
    let t: Vec<&str> = line.split_whitespace().collect();
    t.len() >= tail.len()
        && t[t.len() - tail.len()..]
            .iter()
            .zip(tail)
            .all(|(have, want)| match want.strip_suffix('*') {
                Some("") => true,
                Some(prefix) => have.starts_with(prefix),
                None => have == want,
            })
}

/// What binutils say about one object.
pub struct Inspect {
    path: PathBuf,
    /// nm: name -> type letters (one per symbol of that name).
    syms: BTreeMap<String, Vec<String>>,
    /// readelf -r: relocation section name -> entry lines.
    relocs: BTreeMap<String, Vec<String>>,
    sections: Vec<String>,
    /// Anything `readelf -a` printed on stderr.
    pub readelf_warnings: String,
}

impl Inspect {
    pub fn new(obj: &Path) -> Result<Inspect, String> {
        let mut syms: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in tool(&["nm"], obj)?.stdout.lines() {
            // "0000000000000000 t foo" or "                 U bar"
            let t: Vec<&str> = line.split_whitespace().collect();
            let (letter, name) = match t.as_slice() {
                [_, l, n] => (*l, *n),
                [l, n] => (*l, *n),
                _ => continue,
            };
            syms.entry(name.to_string())
                .or_default()
                .push(letter.to_string());
        }

        let mut relocs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut cur: Option<String> = None;
        for line in tool(&["readelf", "-r", "-W"], obj)?.stdout.lines() {
            if let Some(rest) = line.strip_prefix("Relocation section '") {
                let name = rest.split('\'').next().unwrap_or("").to_string();
                relocs.entry(name.clone()).or_default();
                cur = Some(name);
                continue;
            }
            let Some(sec) = &cur else { continue };
            let t = line.trim_start();
            if t.is_empty() {
                cur = None;
            } else if t.starts_with(|c: char| c.is_ascii_hexdigit()) && !t.starts_with("Offset") {
                if let Some(v) = relocs.get_mut(sec) {
                    v.push(t.to_string());
                }
            }
        }

        let mut sections = Vec::new();
        for line in tool(&["readelf", "-S", "-W"], obj)?.stdout.lines() {
            // "  [ 4] .text.foo  PROGBITS ..."
            let Some((head, rest)) = line.split_once(']') else {
                continue;
            };
            if !head.trim_start().starts_with('[') || head.contains("Nr") {
                continue;
            }
            if let Some(name) = rest.split_whitespace().next() {
                sections.push(name.to_string());
            }
        }

        let warnings = tool(&["readelf", "-a", "-W"], obj)?.stderr;
        Ok(Inspect {
            path: obj.to_path_buf(),
            syms,
            relocs,
            sections,
            readelf_warnings: warnings.trim().to_string(),
        })
    }

    /// `nm` type letters of the symbols called `name`; a trailing `*` in `name` matches
    /// every symbol with that prefix.
    pub fn sym_letters(&self, name: &str) -> Vec<&str> {
        match name.strip_suffix('*').filter(|p| !p.is_empty()) {
            Some(prefix) => self
                .syms
                .iter()
                .filter(|(n, _)| n.starts_with(prefix))
                .flat_map(|(_, v)| v.iter().map(String::as_str))
                .collect(),
            None => self
                .syms
                .get(name)
                .map(|v| v.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        }
    }

    /// Lines of `nm` output with type t or T (upstream's `num_text_syms`).
    pub fn text_symbols(&self) -> usize {
        self.syms
            .values()
            .flatten()
            .filter(|l| *l == "t" || *l == "T")
            .count()
    }

    fn rela_name(sec: &str) -> String {
        if sec.starts_with(".rela") {
            sec.to_string()
        } else {
            format!(".rela{sec}")
        }
    }

    /// Relocation entries applying to `sec` (`.rela` prefix optional).
    pub fn reloc_lines(&self, sec: &str) -> &[String] {
        self.relocs
            .get(&Self::rela_name(sec))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Does some relocation of `sec` end with these `readelf -r` tokens (`*` matches
    /// any one token, `name*` any token starting with `name`)?
    pub fn has_reloc_to(&self, sec: &str, tail: &[String]) -> bool {
        self.reloc_lines(sec)
            .iter()
            .any(|l| reloc_line_matches(l, tail))
    }

    pub fn reloc_count(&self, sec: &str) -> usize {
        self.reloc_lines(sec).len()
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s == name)
    }

    /// The section's contents split at NUL bytes.
    pub fn section_strings(&self, sec: &str) -> Result<Vec<String>, String> {
        Ok(self
            .section_bytes(sec)?
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    /// Names of the running-kernel symbols the livepatch core resolves: the name
    /// strings `.kpatch.symbols` entries (40 bytes, name at +24) point to.
    pub fn klp_symbols(&self) -> Result<Vec<String>, String> {
        Ok(self
            .kpatch_entries(".kpatch.symbols", 40, 24, 8)?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// `(name, sympos)` of every `.kpatch.symbols` entry (sympos: u64 at +8).
    pub fn klp_sympos(&self) -> Result<Vec<(String, u64)>, String> {
        self.kpatch_entries(".kpatch.symbols", 40, 24, 8)
    }

    /// `(name, sympos)` of every `.kpatch.funcs` entry (56 bytes: name at +40, sympos
    /// u64 at +32).
    pub fn func_sympos(&self) -> Result<Vec<(String, u64)>, String> {
        self.kpatch_entries(".kpatch.funcs", 56, 40, 32)
    }

    /// Entries of a `.kpatch.*` table of `size`-byte structures: the string a
    /// relocation at `+name_at` points to in `.kpatch.strings`, and the 64-bit
    /// little-endian field at `+field_at`.
    fn kpatch_entries(
        &self,
        sec: &str,
        size: u64,
        name_at: u64,
        field_at: u64,
    ) -> Result<Vec<(String, u64)>, String> {
        let strings = self.section_bytes(".kpatch.strings")?;
        let data = self.section_bytes(sec)?;
        let mut out = Vec::new();
        for line in self.reloc_lines(sec) {
            let t: Vec<&str> = line.split_whitespace().collect();
            let off = u64::from_str_radix(t[0], 16).map_err(|_| format!("bad reloc {line}"))?;
            if off % size != name_at {
                continue;
            }
            let addend = match t.as_slice() {
                [.., ".kpatch.strings", "+", a] => {
                    usize::from_str_radix(a, 16).map_err(|_| format!("bad reloc {line}"))?
                }
                _ => return Err(format!("{sec} name not in .kpatch.strings: {line}")),
            };
            let rest = strings.get(addend..).unwrap_or(&[]);
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let at = (off - name_at + field_at) as usize;
            let field = data
                .get(at..at + 8)
                .ok_or_else(|| format!("{sec}: entry at {off:#x} lies outside the section"))?;
            let field = u64::from_le_bytes(field.try_into().unwrap_or([0; 8]));
            out.push((String::from_utf8_lossy(&rest[..end]).into_owned(), field));
        }
        Ok(out)
    }

    /// The section's contents (from `readelf -x`), empty if there is no such section.
    pub fn section_bytes(&self, sec: &str) -> Result<Vec<u8>, String> {
        if !self.has_section(sec) {
            return Ok(Vec::new());
        }
        let dump = tool(&["readelf", "-x", sec], &self.path)?.stdout;
        let mut bytes = Vec::new();
        for line in dump.lines() {
            // "  0x00000000 696d706f 72745f6e 733d464f 4f00     import_ns=FOO."
            let Some(rest) = line.trim_start().strip_prefix("0x") else {
                continue;
            };
            let hex: String = rest
                .get(9..44.min(rest.len()))
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            for i in (0..hex.len() / 2 * 2).step_by(2) {
                let b = u8::from_str_radix(&hex[i..i + 2], 16)
                    .map_err(|_| format!("readelf -x {sec}: bad hex in {line:?}"))?;
                bytes.push(b);
            }
        }
        Ok(bytes)
    }
}
