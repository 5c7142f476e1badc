//! What the malformed-input tests share: upstream's unit objects, an ELF64 image edited
//! field by field, and one run of create-diff-object with its checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::shared_objs;

/// An x86_64 object of upstream's unit pairs.
pub fn x86(name: &str) -> PathBuf {
    shared_objs().join("x86_64").join(name)
}

/// The base pair: small, with text, data, merged strings and relocations.
pub const PAIR: &str = "zero-page-rela-issue-1064";
/// A pair built from another source file (cmdline.c rather than meminfo.c).
pub const OTHER: &str = "cmdline-ubsan";

// ELF64 layout.
pub const E_SHOFF: usize = 0x28;
pub const E_SHNUM: usize = 0x3c;
pub const E_SHSTRNDX: usize = 0x3e;
pub const SH_NAME: usize = 0;
pub const SH_TYPE: usize = 4;
pub const SH_OFFSET: usize = 24;
pub const SH_SIZE: usize = 32;
pub const SH_LINK: usize = 40;
pub const SH_INFO: usize = 44;
pub const SH_ADDRALIGN: usize = 48;
pub const SH_ENTSIZE: usize = 56;
pub const SHT_SYMTAB: u32 = 2;
pub const SHT_RELA: u32 = 4;
pub const SYM_SIZE: usize = 24;
pub const ST_NAME: usize = 0;
pub const ST_SHNDX: usize = 6;
pub const ST_VALUE: usize = 8;
pub const ST_SIZE: usize = 16;
pub const RELA_SIZE: usize = 24;
pub const R_OFFSET: usize = 0;
pub const R_INFO: usize = 8;
pub const R_ADDEND: usize = 16;

/// A little-endian ELF64 image that can be edited field by field.
#[derive(Clone)]
pub struct Image(pub Vec<u8>);

impl Image {
    pub fn load(path: &Path) -> Image {
        Image(std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    }
    pub fn get(&self, off: usize, width: usize) -> u64 {
        let mut v = 0u64;
        for i in 0..width {
            v |= u64::from(self.0[off + i]) << (8 * i);
        }
        v
    }
    pub fn set(&mut self, off: usize, width: usize, value: u64) {
        for i in 0..width {
            self.0[off + i] = (value >> (8 * i)) as u8;
        }
    }
    pub fn shnum(&self) -> usize {
        self.get(E_SHNUM, 2) as usize
    }
    /// File offset of section header `i`.
    pub fn sh(&self, i: usize) -> usize {
        self.get(E_SHOFF, 8) as usize + 64 * i
    }
    pub fn sh_get(&self, i: usize, field: usize, width: usize) -> u64 {
        self.get(self.sh(i) + field, width)
    }
    pub fn sh_set(&mut self, i: usize, field: usize, width: usize, value: u64) {
        let at = self.sh(i) + field;
        self.set(at, width, value);
    }
    pub fn name(&self, i: usize) -> String {
        let strndx = self.get(E_SHSTRNDX, 2) as usize;
        let start =
            self.sh_get(strndx, SH_OFFSET, 8) as usize + self.sh_get(i, SH_NAME, 4) as usize;
        let end = start + self.0[start..].iter().position(|b| *b == 0).unwrap();
        String::from_utf8_lossy(&self.0[start..end]).into_owned()
    }
    pub fn section(&self, name: &str) -> usize {
        (1..self.shnum())
            .find(|&i| self.name(i) == name)
            .unwrap_or_else(|| panic!("no section {name}"))
    }
    pub fn first_of_type(&self, sh_type: u32) -> usize {
        (1..self.shnum())
            .find(|&i| self.sh_get(i, SH_TYPE, 4) == u64::from(sh_type))
            .expect("section type")
    }
    /// File offset of symbol `n`.
    pub fn sym(&self, n: usize) -> usize {
        let st = self.first_of_type(SHT_SYMTAB);
        self.sh_get(st, SH_OFFSET, 8) as usize + SYM_SIZE * n
    }
    /// Index of the first symbol whose name is `name`.
    pub fn find_sym(&self, name: &str) -> usize {
        let st = self.first_of_type(SHT_SYMTAB);
        let strtab = self.sh_get(st, SH_LINK, 4) as usize;
        let strings = self.sh_get(strtab, SH_OFFSET, 8) as usize;
        let n = self.sh_get(st, SH_SIZE, 8) as usize / SYM_SIZE;
        (1..n)
            .find(|&k| {
                let start = strings + self.get(self.sym(k) + ST_NAME, 4) as usize;
                self.0[start..].starts_with(name.as_bytes()) && self.0[start + name.len()] == 0
            })
            .unwrap_or_else(|| panic!("no symbol {name}"))
    }
    /// File offset of entry `n` of relocation section `sec`.
    pub fn rela(&self, sec: usize, n: usize) -> usize {
        assert_eq!(self.sh_get(sec, SH_TYPE, 4), u64::from(SHT_RELA));
        self.sh_get(sec, SH_OFFSET, 8) as usize + RELA_SIZE * n
    }
}

/// One run: inputs in `in/`, the output in its own (otherwise empty) `out/`.
pub struct Case {
    pub _dir: tempfile::TempDir,
    pub indir: PathBuf,
    pub outdir: PathBuf,
    pub orig: PathBuf,
    pub patched: PathBuf,
    pub symtab: PathBuf,
    pub output: PathBuf,
}

impl Case {
    /// ORIG and PATCHED of `PAIR`, with the ORIG object as the parent symbol table.
    pub fn new() -> Case {
        Case::with(
            Image::load(&x86(&format!("{PAIR}.ORIG.o"))),
            Image::load(&x86(&format!("{PAIR}.PATCHED.o"))),
        )
    }

    pub fn with(orig: Image, patched: Image) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let indir = dir.path().join("in");
        let outdir = dir.path().join("out");
        std::fs::create_dir(&indir).unwrap();
        std::fs::create_dir(&outdir).unwrap();
        let c = Case {
            orig: indir.join("orig.o"),
            patched: indir.join("patched.o"),
            // The parent may be given as an ELF file: the original object plays vmlinux.
            symtab: indir.join("parent.o"),
            output: outdir.join("output.o"),
            indir,
            outdir,
            _dir: dir,
        };
        std::fs::write(&c.symtab, &orig.0).unwrap();
        std::fs::write(&c.orig, &orig.0).unwrap();
        std::fs::write(&c.patched, &patched.0).unwrap();
        c
    }

    pub fn patched(f: impl FnOnce(&mut Image)) -> Case {
        let mut p = Image::load(&x86(&format!("{PAIR}.PATCHED.o")));
        f(&mut p);
        Case::with(Image::load(&x86(&format!("{PAIR}.ORIG.o"))), p)
    }

    pub fn orig(f: impl FnOnce(&mut Image)) -> Case {
        let mut o = Image::load(&x86(&format!("{PAIR}.ORIG.o")));
        let parent = o.clone();
        f(&mut o);
        let c = Case::with(parent, Image::load(&x86(&format!("{PAIR}.PATCHED.o"))));
        std::fs::write(&c.orig, &o.0).unwrap();
        c
    }

    pub fn run(&self) -> Output {
        self.run_args(&self.orig, &self.patched, &self.symtab, &self.output)
    }

    pub fn run_env(&self, extra: &[(&str, &str)]) -> Output {
        self.run_full(&self.orig, &self.patched, &self.symtab, &self.output, extra)
    }

    pub fn run_args(&self, orig: &Path, patched: &Path, symtab: &Path, output: &Path) -> Output {
        self.run_full(orig, patched, symtab, output, &[])
    }

    pub fn run_full(
        &self,
        orig: &Path,
        patched: &Path,
        symtab: &Path,
        output: &Path,
        extra: &[(&str, &str)],
    ) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_create-diff-object"));
        cmd.env_clear()
            .envs(crate::common::arch_env("x86_64").iter().copied())
            .envs(extra.iter().copied())
            .current_dir(&self.indir)
            .arg(orig)
            .arg(patched)
            .arg("vmlinux")
            .arg(symtab)
            .arg("/dev/null")
            .arg("test_malformed")
            .arg(output);
        cmd.output().expect("run create-diff-object")
    }

    /// The run failed with `code`, one `ERROR:` line containing `needle`, no panic, and
    /// nothing left in the output directory.
    #[track_caller]
    pub fn expect(&self, out: &Output, code: i32, needle: &str) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(!stderr.contains("panicked"), "panic\n{ctx}");
        assert!(
            !stderr.contains("internal error"),
            "unforeseen panic\n{ctx}"
        );
        assert_eq!(out.status.code(), Some(code), "exit status\n{ctx}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR:")).collect();
        if code == 1 {
            assert_eq!(errors.len(), 1, "exactly one ERROR line\n{ctx}");
        } else {
            assert!(!errors.is_empty(), "an ERROR line\n{ctx}");
        }
        assert!(
            errors.iter().any(|l| l.contains(needle)),
            "ERROR line naming {needle:?}\n{ctx}"
        );
        eprintln!("{}", errors.join("\n"));
        let left: Vec<_> = std::fs::read_dir(&self.outdir)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "left in the output directory: {left:?}\n{ctx}"
        );
    }
}

pub const TEXT: &str = ".text.meminfo_proc_open";
pub const RELA_TEXT: &str = ".rela.text.meminfo_proc_open";
