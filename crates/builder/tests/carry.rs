//! `builder::carry::find_callers` on a small "vmlinux" linked at test time with
//! `ld --emit-relocs` from C files compiled by gcc: a function built without ftrace hooks
//! (like lib/) and callers in other compile units, found through the relocations and
//! `.debug_aranges`, or refused for the right reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use builder::carry::{find_callers, Caller};

const LIB: &str = r#"
int lib_helper(int x) { return x * 3; }
int lib_exported(int x) { return x + 1; }
int lib_taken(int x) { return x - 1; }
int lib_stored(int x) { return x ^ 1; }
int lib_by_untraced(int x) { return x << 1; }
int lib_many(int x) { return x | 1; }
/* A kernel-like export table entry for lib_exported. */
__attribute__((section("__ksymtab"), used)) static void *__ksymtab_lib_exported = (void *)lib_exported;
"#;

const USERS: &str = r#"
extern int lib_helper(int), lib_exported(int), lib_taken(int), lib_stored(int);
extern int lib_by_untraced(int), lib_many(int);
int seq_user(int x) { return lib_helper(x) + 2; }
int seq_other(int x) { return lib_helper(x + 1) * 5; }
int exp_user(int x) { return lib_exported(x) + 2; }
int (*volatile sink)(int);
int take_user(int x) { sink = lib_taken; return x; }
int (*table[])(int) = { lib_stored };
#define MANY(n) int many##n(int x) { return lib_many(x + n) + n; }
MANY(1) MANY(2) MANY(3) MANY(4) MANY(5) MANY(6) MANY(7) MANY(8) MANY(9)
"#;

const UNTRACED: &str = r#"
extern int lib_by_untraced(int);
int raw_user(int x) { return lib_by_untraced(x) + 3; }
"#;

const FENTRY: &str = "void __fentry__(void) {}\nvoid _start(void) {}\n";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compile each (name, source, traced) in `dir` (relative names, as kbuild does) and
/// link them into `vmlinux` with relocations kept.
fn link(dir: &Path, units: &[(&str, &str, bool)]) -> PathBuf {
    let mut objs = Vec::new();
    for (name, src, traced) in units {
        let c = dir.join(name);
        std::fs::create_dir_all(c.parent().unwrap()).unwrap();
        std::fs::write(&c, src).unwrap();
        let o = c.with_extension("o");
        let mut cc = Command::new("gcc");
        cc.current_dir(dir)
            .args(["-c", "-O2", "-g", "-ffunction-sections", "-fdata-sections"])
            .args(["-fno-pic", "-fno-asynchronous-unwind-tables", "-fno-inline"]);
        if *traced {
            cc.args(["-pg", "-mfentry", "-mrecord-mcount", "-mnop-mcount"]);
        }
        run(cc.arg(name).arg("-o").arg(&o));
        objs.push(o);
    }
    let vmlinux = dir.join("vmlinux");
    run(Command::new("ld")
        .args(["--emit-relocs", "-static", "-o"])
        .arg(&vmlinux)
        .args(&objs));
    vmlinux
}

fn caller(function: &str, source: &str) -> Caller {
    Caller {
        function: function.into(),
        source: source.into(),
    }
}

#[test]
fn callers_in_other_units_found_or_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let vmlinux = link(
        dir.path(),
        &[
            ("lib/helpers.c", LIB, false),
            ("fs/users.c", USERS, true),
            ("kernel/raw.c", UNTRACED, false),
            ("kernel/fentry.c", FENTRY, false),
        ],
    );
    let none = |_: &str| Vec::new();
    let search = |f: &str, importers: &dyn Fn(&str) -> Vec<String>| {
        find_callers(&vmlinux, f, "lib/helpers.c", importers).unwrap()
    };

    let found = search("lib_helper", &none).unwrap();
    assert_eq!(
        found.callers,
        vec![
            caller("seq_user", "fs/users.c"),
            caller("seq_other", "fs/users.c")
        ]
    );
    assert!(!found.exported);

    // Exported: carried when no module of the release imports it, refused naming them.
    let found = search("lib_exported", &none).unwrap();
    assert_eq!(found.callers, vec![caller("exp_user", "fs/users.c")]);
    assert!(found.exported);
    let why = search("lib_exported", &|_| vec!["virtio_blk".into()]).unwrap_err();
    assert!(
        why.contains("exported and 1 module(s)") && why.contains("virtio_blk"),
        "{why}"
    );

    let why = search("lib_taken", &none).unwrap_err();
    assert!(why.contains("its address is taken in take_user"), "{why}");
    let why = search("lib_stored", &none).unwrap_err();
    assert!(
        why.contains("its address is stored in .data") && why.contains("table"),
        "{why}"
    );
    let why = search("lib_by_untraced", &none).unwrap_err();
    assert!(
        why.contains("its caller raw_user has no ftrace hook either"),
        "{why}"
    );
    let why = search("lib_many", &none).unwrap_err();
    assert!(
        why.contains("9 functions of other objects call it"),
        "{why}"
    );
    let why = search("no_such_function", &none).unwrap_err();
    assert!(why.contains("is not a global function"), "{why}");
}

/// Kernels since 6.x strip the relocations after linking: the same answers come from
/// decoding the code and reading the data.
#[test]
fn without_relocations_the_code_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let vmlinux = link(
        dir.path(),
        &[
            ("lib/helpers.c", LIB, false),
            ("fs/users.c", USERS, true),
            ("kernel/raw.c", UNTRACED, false),
            ("kernel/fentry.c", FENTRY, false),
        ],
    );
    let stripped = dir.path().join("vmlinux.norelocs");
    run(Command::new("objcopy")
        .arg("--remove-section=.rela*")
        .arg(&vmlinux)
        .arg(&stripped));
    for (name, _) in object_sections(&stripped) {
        assert!(!name.starts_with(".rela"), "{name} left");
    }
    let none = |_: &str| Vec::new();
    for f in [
        "lib_helper",
        "lib_exported",
        "lib_taken",
        "lib_stored",
        "lib_by_untraced",
        "lib_many",
    ] {
        let with = find_callers(&vmlinux, f, "lib/helpers.c", &none).unwrap();
        let without = find_callers(&stripped, f, "lib/helpers.c", &none).unwrap();
        assert_eq!(with, without, "{f}");
    }
}

fn object_sections(path: &Path) -> Vec<(String, u64)> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    file.sections()
        .map(|s| (s.name().unwrap_or_default().to_string(), s.size()))
        .collect()
}
