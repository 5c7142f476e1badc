// SPDX-License-Identifier: GPL-2.0-only
//! The `create-klp-module` command line on synthetic patch modules: what it writes, what
//! it prints, and that a failure leaves no output file.

#[path = "../../../crates/klp/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_create-klp-module"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn converts_a_module_and_says_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.ko"), dir.path().join("out.ko"));
    let bytes = support::module(&support::records(), false);
    std::fs::write(&input, &bytes).unwrap();
    let o = run(&[Path::new("-n"), &input, &output]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).trim(),
        "4 klp relocation(s) against 3 symbol(s) in 2 section(s)"
    );
    assert_eq!(std::fs::read(&input).unwrap(), bytes, "input modified");
    let obj = kelf::read::read_file(&output).unwrap();
    let klp: Vec<&str> = obj
        .sections
        .iter()
        .filter(|s| s.sh_flags & kelf::SHF_RELA_LIVEPATCH != 0)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        klp,
        [
            ".klp.rela.vmlinux..text.patched",
            ".klp.rela.ext4..text.patched"
        ]
    );
    assert!(obj.find_section(".kpatch.relocations").is_none());
    // Nothing but the output in the directory: no temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn bad_input_is_one_line_exit_one_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.ko");
    let missing = dir.path().join("missing.ko");
    let o = run(&[&missing, &output]);
    assert_eq!(o.status.code(), Some(1));
    let e = text(&o.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("ERROR: ") && e.contains("missing.ko"), "{e}");

    let not_elf = dir.path().join("not-elf.ko");
    std::fs::write(&not_elf, b"not an ELF file").unwrap();
    let o = run(&[&not_elf, &output]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not an ELF file"),
        "{}",
        text(&o.stderr)
    );

    // Records that do not fit together: refused, nothing written.
    let mut obj = kelf::read::parse(&support::module(&support::records(), false)).unwrap();
    let ksym = obj.find_section(".kpatch.symbols").unwrap();
    obj.sec_mut(ksym).name = ".kpatch.other".into();
    let broken = dir.path().join("broken.ko");
    kelf::write::write_object(&obj, &broken).unwrap();
    let o = run(&[&broken, &output]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("incomplete klp metadata"));
    assert!(!output.exists(), "output written despite failure");
}
