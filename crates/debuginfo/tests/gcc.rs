//! Keys, shapes and liveness read from objects gcc builds at test time, in DWARF 5 and
//! DWARF 4 (whose bit-fields are described differently).

use std::process::Command;

use debuginfo::types::{Shape, Types};

const SRC: &str = r#"
typedef struct { int x; int y; } point_t;
struct outer {
	int kind;
	union { long l; char c[8]; } u;
	struct { short a; short b; };
	unsigned int f1 : 3, f2 : 5;
	point_t where;
};
enum { E_ONE = 1, E_TWO };
struct outer the_outer;
struct heap_item { long key; struct heap_item *next; };
struct stack_only { long a; long b; };
extern long sink(long);
__attribute__((noinline)) long walk(struct heap_item *h) { return h->key; }
__attribute__((noinline)) long local_only(long x)
{
	struct stack_only s = { sink(x), sink(x + 1) };
	struct local_t { int q; } l = { (int)sink(2) };
	return s.a + s.b + l.q + E_TWO + the_outer.u.l;
}
"#;

fn width(t: u32) -> Option<usize> {
    match t {
        1 => Some(8),
        10 | 11 => Some(4),
        _ => None,
    }
}

fn build(dwarf: &str) -> Option<kelf::Object> {
    if !cfg!(target_arch = "x86_64") || Command::new("gcc").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "gcc is required under CI");
        println!("skipped: needs gcc on x86_64");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, obj) = (dir.path().join("t.c"), dir.path().join("t.o"));
    std::fs::write(&src, SRC).unwrap();
    let st = Command::new("gcc")
        .args([
            "-c",
            "-O2",
            dwarf,
            "-ffunction-sections",
            "-fdata-sections",
            "-o",
        ])
        .arg(&obj)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    Some(kelf::read::read_file(&obj).unwrap())
}

fn check(dwarf: &str) {
    let Some(obj) = build(dwarf) else { return };
    let secs = debuginfo::load::Sections::load(&obj, &width)
        .unwrap()
        .unwrap();
    let d = secs.dwarf();
    let dies = debuginfo::die::parse(&d).unwrap();
    let types = Types::new(&dies);
    let keys: Vec<&str> = types.defs.iter().map(|t| t.key.as_str()).collect();
    for k in [
        "struct outer",
        "typedef point_t",
        "struct {typedef point_t}",
        "union {struct outer.u}",
        "struct {struct outer.<anonymous #0>}",
        "enum {E_ONE, ...}",
        "local_only()::struct local_t",
    ] {
        assert!(keys.contains(&k), "{dwarf}: no {k} in {keys:?}");
    }
    let outer = &types.defs[types.by_key["struct outer"]];
    let Shape::Record { size, members } = types.shape(outer) else {
        panic!("struct outer is not a record");
    };
    assert_eq!(size, Some(32));
    let bits: Vec<(&str, u64, Option<u64>)> = members
        .iter()
        .map(|m| (m.name.as_str(), m.bit_offset, m.bit_size))
        .collect();
    assert_eq!(
        bits,
        [
            ("kind", 0, None),
            ("u", 64, None),
            ("<anonymous #0>", 128, None),
            ("f1", 160, Some(3)),
            ("f2", 163, Some(5)),
            ("where", 192, None),
        ],
        "{dwarf}"
    );
    assert_eq!(members[5].ty, "point_t");
    assert_eq!(members[1].ty, "union {struct outer.u}");

    // Every function is "unchanged": the_outer is live as a variable, heap_item through
    // walk()'s parameter; stack_only only as a local of local_only(), which is live too
    // since local_only() is unchanged.
    let live = debuginfo::usage::liveness(&types, &|_| debuginfo::usage::FnState::Unchanged);
    let die = |k: &str| types.defs[types.by_key[k]].die;
    assert!(live
        .reason(die("struct outer"))
        .unwrap()
        .root
        .contains("variable the_outer"));
    assert!(live.reason(die("struct heap_item")).is_some());
    assert!(live.reason(die("struct stack_only")).is_some());
    // Every function changed: only what static storage and pointers reach stays live.
    let live = debuginfo::usage::liveness(&types, &|_| debuginfo::usage::FnState::Changed);
    assert!(live.reason(die("struct outer")).is_some());
    assert!(live.reason(die("struct stack_only")).is_none(), "{dwarf}");
    // walk() is external: its callers elsewhere hand it objects.
    assert!(live
        .reason(die("struct heap_item"))
        .unwrap()
        .root
        .contains("which other units call"));
}

#[test]
fn dwarf5() {
    check("-gdwarf-5");
}

#[test]
fn dwarf4() {
    check("-gdwarf-4");
}
