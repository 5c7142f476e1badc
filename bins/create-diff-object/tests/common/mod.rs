//! Shared helpers for the create-diff-object integration tests: locating upstream's unit
//! objects and driving one pair the way upstream's test Makefile does.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn shared_objs() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kpatch-unit-test-objs");
    if let Ok(p) = std::env::var("KPATCH_UNIT_OBJS") {
        return PathBuf::from(p);
    }
    assert!(
        root.join("expected-functions.tsv").exists(),
        "upstream unit objects not found at {} (set KPATCH_UNIT_OBJS)",
        root.display()
    );
    root
}

/// Upstream's default struct sizes per architecture (kpatch-build reads them from DWARF).
pub fn arch_env(arch: &str) -> &'static [(&'static str, &'static str)] {
    match arch {
        "x86_64" => &[
            ("PARA_STRUCT_SIZE", "16"),
            ("EX_STRUCT_SIZE", "12"),
            ("BUG_STRUCT_SIZE", "12"),
            ("ALT_STRUCT_SIZE", "13"),
            ("JUMP_STRUCT_SIZE", "24"),
            ("ORC_STRUCT_SIZE", "6"),
            ("STATIC_CALL_STRUCT_SIZE", "8"),
            ("PRINTK_INDEX_STRUCT_SIZE", "44"),
        ],
        "ppc64le" => &[
            ("BUG_STRUCT_SIZE", "24"),
            ("EX_STRUCT_SIZE", "8"),
            ("FIXUP_STRUCT_SIZE", "48"),
            ("JUMP_STRUCT_SIZE", "24"),
        ],
        "s390x" => &[
            ("ALT_STRUCT_SIZE", "12"),
            ("BUG_STRUCT_SIZE", "12"),
            ("EX_STRUCT_SIZE", "12"),
            ("JUMP_STRUCT_SIZE", "16"),
        ],
        "aarch64" => &[
            ("ALT_STRUCT_SIZE", "12"),
            ("BUG_STRUCT_SIZE", "12"),
            ("EX_STRUCT_SIZE", "12"),
            ("JUMP_STRUCT_SIZE", "16"),
            ("PRINTK_INDEX_STRUCT_SIZE", "44"),
        ],
        "loongarch64" => &[
            ("ALT_STRUCT_SIZE", "12"),
            ("BUG_STRUCT_SIZE", "12"),
            ("EX_STRUCT_SIZE", "12"),
            ("JUMP_STRUCT_SIZE", "16"),
            ("ORC_STRUCT_SIZE", "8"),
        ],
        _ => &[],
    }
}

#[derive(Debug, Clone)]
pub struct Expected {
    pub arch: String,
    pub test: String,
    pub success: bool,
    pub exit_code: i32,
    pub num_text: Option<usize>,
    pub changed: BTreeSet<String>,
    pub new: BTreeSet<String>,
}

pub fn expectations() -> Vec<Expected> {
    let text = std::fs::read_to_string(shared_objs().join("expected-functions.tsv"))
        .expect("expected-functions.tsv");
    let set = |s: &str| -> BTreeSet<String> {
        if s == "-" {
            BTreeSet::new()
        } else {
            s.split(',').map(str::to_string).collect()
        }
    };
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Expected {
                arch: f[0].into(),
                test: f[1].into(),
                success: f[2] == "success",
                exit_code: f[3].parse().expect("exit code"),
                num_text: f[4].parse().ok(),
                changed: set(f[5]),
                new: set(f[6]),
            }
        })
        .collect()
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub changed: BTreeSet<String>,
    pub new: BTreeSet<String>,
    pub output: PathBuf,
}

pub fn tool(name: &str) -> Command {
    Command::new(name)
}

/// Run create-diff-object on one upstream pair, as upstream's unit Makefile does.
pub fn run_pair(exp: &Expected, workdir: &Path) -> Outcome {
    run_pair_with(exp, workdir, false)
}

/// As [`run_pair`]; with `kallsyms`, the parent symbol table is given as a
/// `/proc/kallsyms`-style dump (`nm` of the original object: no file symbols, no sizes).
pub fn run_pair_with(exp: &Expected, workdir: &Path, kallsyms: bool) -> Outcome {
    let dir = shared_objs().join(&exp.arch);
    let (orig, patched) = if let Some(t) = exp.test.strip_suffix(".NOSTRIP") {
        (
            dir.join(format!("{t}.NOSTRIP.ORIG.o")),
            dir.join(format!("{t}.NOSTRIP.PATCHED.o")),
        )
    } else if exp.success {
        (
            dir.join(format!("{}.ORIG.o", exp.test)),
            dir.join(format!("{}.PATCHED.o", exp.test)),
        )
    } else {
        (
            dir.join(format!("{}.ORIG.o", exp.test)),
            dir.join(format!("{}.PATCHED.FAIL.o", exp.test)),
        )
    };
    let symtab = if kallsyms {
        let nm = tool("nm").arg(&orig).output().expect("nm");
        String::from_utf8_lossy(&nm.stdout)
            .lines()
            .filter(|l| l.split_whitespace().count() == 3)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    } else {
        let symtab_out = tool("readelf")
            .args(["-s", "--wide"])
            .arg(&orig)
            .output()
            .expect("readelf");
        String::from_utf8_lossy(&symtab_out.stdout).replace(" [<localentry>: 8]", "")
    };
    let symtab_path = workdir.join(format!("{}-{}.symtab", exp.arch, exp.test));
    std::fs::write(&symtab_path, symtab).unwrap();
    let output = workdir.join(format!("{}-{}.OUTPUT.o", exp.arch, exp.test));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_create-diff-object"));
    cmd.current_dir(&dir);
    for (k, v) in arch_env(&exp.arch) {
        cmd.env(k, v);
    }
    if let Ok(extra) = std::fs::read_to_string(dir.join(format!("{}.env", exp.test))) {
        for line in extra.lines() {
            if let Some((k, v)) = line.trim().split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.arg(&orig)
        .arg(&patched)
        .arg("vmlinux")
        .arg(&symtab_path)
        .arg("/dev/null")
        .arg(format!("test_{}", exp.test))
        .arg(&output);
    let out = cmd.output().expect("run create-diff-object");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let pick = |prefix: &str| -> BTreeSet<String> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_string)
            .collect()
    };
    Outcome {
        code: out.status.code().unwrap_or(-1),
        changed: pick("changed function: "),
        new: pick("new function: "),
        stdout,
        stderr,
        output,
    }
}

/// `nm` lines of the output with type letter t/T.
pub fn text_symbols(obj: &Path) -> Vec<String> {
    let out = tool("nm").arg(obj).output().expect("nm");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 3 && (f[1] == "t" || f[1] == "T")
        })
        .map(str::to_string)
        .collect()
}

pub fn readelf(args: &[&str], obj: &Path) -> String {
    let out = tool("readelf")
        .args(args)
        .arg(obj)
        .output()
        .expect("readelf");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
