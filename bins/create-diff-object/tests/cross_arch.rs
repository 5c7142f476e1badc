//! Architecture-specific behaviour, on objects compiled at test time with Debian's cross
//! compilers (gcc-aarch64-linux-gnu, gcc-powerpc64le-linux-gnu, gcc-s390x-linux-gnu):
//! arm64 patchable function entries (with and without CALL_OPS padding, with BTI),
//! ppc64le TOC-relative references and the sibling-call refusal, s390x expolines.

mod common;

use std::path::Path;
use std::process::Command;

struct Fixture {
    name: &'static str,
    gcc: &'static str,
    flags: &'static [&'static str],
    orig: &'static str,
    patched: &'static str,
    exit: i32,
    changed: &'static [&'static str],
    /// Substrings the relocation dump (`readelf -rW`) of the output must contain.
    relocs: &'static [&'static str],
    /// Substrings the section dump (`readelf -SW`) must contain.
    sections: &'static [&'static str],
    /// Substring expected in stderr (failures).
    message: &'static str,
}

const ARM64_SRC: &str = "extern int counter;\nint helper(int x) { return x * 3; }\nint f(int x) { counter += 1; return helper(x) + 7; }\n";
const ARM64_PATCHED: &str = "extern int counter;\nint helper(int x) { return x * 3; }\nint f(int x) { counter += 2; return helper(x) + 7; }\n";

const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "arm64-call-ops-padding-bti",
        gcc: "aarch64-linux-gnu-gcc",
        flags: &["-fpatchable-function-entry=4,2", "-mbranch-protection=bti"],
        orig: ARM64_SRC,
        patched: ARM64_PATCHED,
        exit: 0,
        changed: &["f"],
        // The ftrace site is the padding before the function: offset 0 of .text.f.
        relocs: &["'.rela__patchable_function_entries'", "R_AARCH64_ABS64", ".text.f + 0"],
        sections: &["__patchable_function_entries"],
        message: "",
    },
    Fixture {
        name: "arm64-pfe-bti-no-padding",
        gcc: "aarch64-linux-gnu-gcc",
        flags: &["-fpatchable-function-entry=2", "-mbranch-protection=bti"],
        orig: ARM64_SRC,
        patched: ARM64_PATCHED,
        exit: 0,
        changed: &["f"],
        // `bti c` comes first; the two NOPs follow at offset 4.
        relocs: &["'.rela__patchable_function_entries'", ".text.f + 4"],
        sections: &["__patchable_function_entries"],
        message: "",
    },
    Fixture {
        name: "ppc64le-toc-slots-move",
        gcc: "powerpc64le-linux-gnu-gcc",
        flags: &["-pg", "-mprofile-kernel", "-mcmodel=large"],
        orig: "extern int counter, other;\n__attribute__((noinline)) int helper(int x) { return x * 3; }\nint f(int x) { counter++; return helper(x) + 1; }\n",
        // helper now uses `other` first, so counter's .toc slot moves: f is unchanged.
        patched: "extern int counter, other;\n__attribute__((noinline)) int helper(int x) { return x * 3 + other; }\nint f(int x) { counter++; return helper(x) + 1; }\n",
        exit: 0,
        changed: &["helper"],
        relocs: &["'.rela.toc'", "other"],
        sections: &[".toc"],
        message: "",
    },
    Fixture {
        name: "ppc64le-toc-target-changes",
        gcc: "powerpc64le-linux-gnu-gcc",
        flags: &["-pg", "-mprofile-kernel", "-mcmodel=large"],
        orig: "extern int counter, other;\nint f(int x) { counter++; return x + 1; }\n",
        // Same code and TOC offsets, but the slot now designates another variable.
        patched: "extern int counter, other;\nint f(int x) { other++; return x + 1; }\n",
        exit: 0,
        changed: &["f"],
        relocs: &["'.rela.toc'", "other"],
        sections: &[],
        message: "",
    },
    Fixture {
        name: "ppc64le-sibling-call-refused",
        gcc: "powerpc64le-linux-gnu-gcc",
        flags: &["-pg", "-mprofile-kernel"],
        // g is defined here, so gcc may branch to it without a TOC restore: a sibling call.
        orig: "__attribute__((noinline)) int g(int x) { return x * 7 + 3; }\nint f(int x) { int r = g(x + 1); return r * 2; }\n",
        patched: "__attribute__((noinline)) int g(int x) { return x * 7 + 3; }\nint f(int x) { return g(x + 1); }\n",
        exit: 1,
        changed: &["f"],
        relocs: &[],
        sections: &[],
        message: "sibling call",
    },
    Fixture {
        name: "s390x-expolines",
        gcc: "s390x-linux-gnu-gcc",
        flags: &[
            "-pg",
            "-mfentry",
            "-mnop-mcount",
            "-mrecord-mcount",
            "-mindirect-branch=thunk-extern",
            "-mfunction-return=thunk-extern",
            "-mindirect-branch-table",
        ],
        orig: "int call(int (*fp)(int), int x) { return fp(x) + 1; }\nint other(int (*fp)(int), int x) { return fp(x) * 2; }\n",
        patched: "int call(int (*fp)(int), int x) { return fp(x) + 2; }\nint other(int (*fp)(int), int x) { return fp(x) * 2; }\n",
        exit: 0,
        changed: &["call"],
        // Expoline thunks stay ordinary relocations (the module gets its own thunks);
        // the branch tables keep only the changed function's entries.
        relocs: &["__s390_indirect_jump_r", "'.rela.s390_indirect_call'", "call + "],
        sections: &[".s390_indirect_call", "__mcount_loc"],
        message: "",
    },
];

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn compile(gcc: &str, flags: &[&str], src: &str, dir: &Path, stem: &str) -> std::path::PathBuf {
    // Both versions are compiled from the same file name, as a rebuild of a patched tree
    // is: the differ refuses objects whose STT_FILE symbols differ.
    let srcdir = dir.join(stem);
    std::fs::create_dir_all(&srcdir).unwrap();
    let c = srcdir.join("fixture.c");
    std::fs::write(&c, src).unwrap();
    let o = dir.join(format!("{stem}.o"));
    let out = Command::new(gcc)
        .args([
            "-O2",
            "-c",
            "-ffunction-sections",
            "-fdata-sections",
            "-fno-asynchronous-unwind-tables",
        ])
        .args(flags)
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{gcc} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    o
}

#[test]
fn cross_architecture_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut passed, mut failed) = (0, 0);
    for fx in FIXTURES {
        assert!(
            have(fx.gcc),
            "{} is not installed (scripts/install-deps.sh installs it)",
            fx.gcc
        );
        let dir = tmp.path().join(fx.name);
        std::fs::create_dir_all(&dir).unwrap();
        let orig = compile(fx.gcc, fx.flags, fx.orig, &dir, "orig");
        let patched = compile(fx.gcc, fx.flags, fx.patched, &dir, "patched");
        let symtab = Command::new("readelf")
            .args(["-s", "--wide"])
            .arg(&orig)
            .output()
            .unwrap();
        let symtab_text = String::from_utf8_lossy(&symtab.stdout).replace(" [<localentry>: 8]", "");
        std::fs::write(dir.join("symtab"), symtab_text).unwrap();
        let output = dir.join("output.o");
        let run = Command::new(env!("CARGO_BIN_EXE_create-diff-object"))
            .env("BUG_STRUCT_SIZE", "12")
            .env("EX_STRUCT_SIZE", "12")
            .env("JUMP_STRUCT_SIZE", "16")
            .env("ALT_STRUCT_SIZE", "12")
            .env("FIXUP_STRUCT_SIZE", "48")
            .arg(&orig)
            .arg(&patched)
            .arg("vmlinux")
            .arg(dir.join("symtab"))
            .arg("/dev/null")
            .arg("test")
            .arg(&output)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        let mut errs = Vec::new();
        let code = run.status.code().unwrap_or(-1);
        if code != fx.exit {
            errs.push(format!("exit {code}, expected {}", fx.exit));
        }
        let changed: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("changed function: "))
            .collect();
        if changed != fx.changed {
            errs.push(format!("changed {changed:?}, expected {:?}", fx.changed));
        }
        if !fx.message.is_empty() && !stderr.contains(fx.message) {
            errs.push(format!("stderr lacks {:?}", fx.message));
        }
        if fx.exit == 0 {
            let r = common::readelf(&["-rW"], &output);
            let s = common::readelf(&["-SW"], &output);
            for want in fx.relocs {
                if !r.contains(want) {
                    errs.push(format!("relocations lack {want:?}"));
                }
            }
            for want in fx.sections {
                if !s.contains(want) {
                    errs.push(format!("sections lack {want:?}"));
                }
            }
            let all = common::readelf(&["-a", "-W"], &output);
            if all
                .lines()
                .any(|l| l.starts_with("readelf: Warning") || l.starts_with("readelf: Error"))
            {
                errs.push("readelf -a warns".into());
            }
        } else if output.exists() {
            errs.push("output written despite failure".into());
        }
        if errs.is_empty() {
            passed += 1;
        } else {
            failed += 1;
            eprintln!(
                "FAIL {}: {}\n  stdout: {}\n  stderr: {}",
                fx.name,
                errs.join("; "),
                stdout.trim(),
                stderr.trim()
            );
        }
    }
    println!("cross-architecture fixtures: {passed} passed, {failed} failed");
    assert_eq!(failed, 0);
}
