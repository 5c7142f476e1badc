//! The differ pipeline in process: one object of a real upstream unit pair is replaced by
//! the fuzz input, the other stays as built, the parent symbol table is the real original
//! object (written once to a temporary directory), and the output goes to a temporary
//! path. Any outcome but a panic is fine, as long as a failed run leaves no file behind
//! and a successful one leaves an object that parses.
//!
//! Input: one selector byte, then the object. `selector & 0x7f` picks the pair (modulo the
//! number of pairs); with `selector & 0x80` the input replaces ORIG, otherwise PATCHED.
//! `fuzz/seed-corpus.sh` writes seeds in this format.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// Small x86_64 pairs that between them have cold subfunctions, static locals, merged
/// strings, `.fixup`/`__ex_table`, jump labels, bug tables, `.smp_locks`, ORC and
/// `__mcount_loc`. Keep in sync with `seed-corpus.sh`.
pub const PAIRS: &[&str] = &[
    "clang-unnamed",
    "plt32-relocations-issue-975",
    "cmdline-ubsan",
    "import-ns",
    "zero-page-rela-issue-1064",
    "cold-add",
    "smp-locks-section",
    "jump-label-issue-1021",
    "fixup-section",
    "gcc-static-local-var-3",
];

struct Pair {
    /// `JUMP_STRUCT_SIZE` from the pair's `.env` file, where it has one.
    jump: Option<u64>,
    orig: Vec<u8>,
    patched: Vec<u8>,
    parent: String,
}

struct Fixture {
    dir: PathBuf,
    output: String,
    pairs: Vec<Pair>,
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let objs = std::env::var("KPATCH_UNIT_OBJS").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/kpatch-unit-test-objs"
            )
            .into()
        });
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // One directory per process; those of processes that are gone are removed.
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("kpatch-fuzz-differ.") {
                    if !std::path::Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = base.join(format!("kpatch-fuzz-differ.{}", std::process::id()));
        let outdir = dir.join("out");
        std::fs::create_dir_all(&outdir).expect("temporary directory");
        let read = |p: String| std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
        let pairs = PAIRS
            .iter()
            .map(|name| {
                let orig = read(format!("{objs}/x86_64/{name}.ORIG.o"));
                let patched = read(format!("{objs}/x86_64/{name}.PATCHED.o"));
                let parent = dir.join(format!("{name}.parent.o"));
                std::fs::write(&parent, &orig).expect("parent symbol table");
                let env = std::fs::read_to_string(format!("{objs}/x86_64/{name}.env"));
                let jump = env.ok().and_then(|e| {
                    e.split_whitespace()
                        .find_map(|kv| kv.strip_prefix("JUMP_STRUCT_SIZE="))
                        .and_then(|v| v.parse().ok())
                });
                Pair {
                    jump,
                    orig,
                    patched,
                    parent: parent.to_string_lossy().into_owned(),
                }
            })
            .collect();
        Fixture {
            output: outdir.join("output.o").to_string_lossy().into_owned(),
            dir: outdir,
            pairs,
        }
    })
}

fn sizes(pair: &Pair) -> differ::StructSizes {
    differ::StructSizes {
        para: Some(16),
        ex: Some(12),
        bug: Some(12),
        alt: Some(13),
        jump: pair.jump.or(Some(24)),
        orc: Some(6),
        static_call: Some(8),
        printk_index: Some(44),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let pair = &fx.pairs[usize::from(sel & 0x7f) % fx.pairs.len()];
    let (ob, pb) = if sel & 0x80 != 0 {
        (bytes, &pair.patched[..])
    } else {
        (&pair.orig[..], bytes)
    };
    let debug = std::env::var_os("FUZZ_DEBUG").is_some();
    let (o, p) = match (kelf::read::parse(ob), kelf::read::parse(pb)) {
        (Ok(o), Ok(p)) => (o, p),
        (a, b) => {
            if debug {
                eprintln!("parse: {:?} / {:?}", a.err(), b.err());
            }
            return;
        }
    };
    let (mut orig, mut patched) = match (
        differ::Elf::from_object("orig.o", o),
        differ::Elf::from_object("patched.o", p),
    ) {
        (Ok(o), Ok(p)) => (o, p),
        (a, b) => {
            if debug {
                eprintln!("load: {:?} / {:?}", a.err(), b.err());
            }
            return;
        }
    };
    let opts = differ::Options {
        orig: "orig.o".into(),
        patched: "patched.o".into(),
        parent_name: "vmlinux".into(),
        parent_symtab: pair.parent.clone(),
        symvers: "/dev/null".into(),
        patch_name: "test_fuzz".into(),
        output: fx.output.clone(),
        sizes: sizes(pair),
        log: differ::silent_log(),
        klp_placeholders: false,
        explain: differ::Explain::default(),
        changed_files: Vec::new(),
            carry: Default::default(),
    };
    let res = differ::run_objects(&opts, &mut orig, &mut patched);
    if debug {
        eprintln!("result: {res:?}");
    }
    if let Ok(r) = &res {
        if r.wrote_output {
            let out = std::fs::read(&fx.output).expect("output written");
            if let Err(e) = kelf::read::parse(&out) {
                panic!("output does not parse: {e}");
            }
            std::fs::remove_file(&fx.output).expect("remove output");
        }
    }
    let left: Vec<_> = std::fs::read_dir(&fx.dir)
        .expect("output directory")
        .map(|e| e.map(|e| e.file_name()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?} ({:?})", res.err());
});
