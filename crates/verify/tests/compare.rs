//! The build-time comparison on C fixtures compiled with gcc at test time: an object
//! built with `-ffunction-sections` (as kpatch-build builds originals) against a
//! "shipped" binary built from the same source without it, once relocatable (like a
//! module `.ko`) and once linked (like vmlinux). Same source: identical; an extra line,
//! or a macro flipped: the function named, with its first differing instruction.

use std::path::{Path, PathBuf};
use std::process::Command;

use verify::compare::{self, Verdict};
use verify::func::RelFile;
use verify::image::{Image, KernelImage, ModuleImage};
use verify::sites::{Layout, SiteIndex};

const SOURCE: &str = r#"
static const char *names[] = { "zero", "one", "two" };
int counter;
extern void sink(const char *s, int v);

__attribute__((noinline)) static int helper(int x)
{
    return x * 3 + counter;
}

void show(int i)
{
    sink("value: ", helper(i));
    sink(names[i % 3], i);
#ifdef EXTRA
    sink("extra", 0);
#endif
    counter++;
}

__attribute__((weak)) int tunable(void) { return 1; }

__attribute__((noipa)) void sink(const char *s, int v) { counter += v + s[0]; }
"#;

fn gcc(dir: &Path, src: &str, out: &str, args: &[&str]) -> PathBuf {
    let c = dir.join(format!("{out}.c"));
    std::fs::write(&c, src).unwrap();
    let o = dir.join(out);
    let st = Command::new("gcc")
        .args([
            "-O2",
            "-fno-pic",
            "-fno-asynchronous-unwind-tables",
            "-mcmodel=kernel",
        ])
        .args(args)
        .arg(&c)
        .arg("-o")
        .arg(&o)
        .status()
        .expect("gcc");
    assert!(st.success(), "gcc {args:?}");
    o
}

/// Every function of `obj` against `image`.
fn verdicts(image: &mut dyn Image, obj: &Path) -> Vec<(String, Verdict)> {
    let mut f = RelFile::open(obj).unwrap();
    let index = SiteIndex::build(&mut f, &Layout::default()).unwrap();
    f.functions()
        .unwrap()
        .into_iter()
        .map(|func| {
            let v = compare::function(image, &func, &index.for_function(&func)).unwrap();
            (func.name.clone(), v)
        })
        .collect()
}

fn get<'a>(v: &'a [(String, Verdict)], name: &str) -> &'a Verdict {
    &v.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {v:?}"))
        .1
}

#[test]
fn relocatable_target_like_a_module() {
    let d = tempfile::tempdir().unwrap();
    let shipped = gcc(d.path(), SOURCE, "shipped.o", &["-c"]);
    let ko = d.path().join("shipped.ko");
    assert!(Command::new("ld")
        .arg("-r")
        .arg("-o")
        .arg(&ko)
        .arg(&shipped)
        .status()
        .unwrap()
        .success());
    let same = gcc(
        d.path(),
        SOURCE,
        "same.o",
        &["-c", "-ffunction-sections", "-fdata-sections"],
    );
    let mut image = ModuleImage::open(&ko).unwrap();
    let v = verdicts(&mut image, &same);
    assert!(v.iter().all(|(_, v)| v.is_identical()), "{v:#?}");
    // `show` calls `helper`: a relocation in ours, resolved in place in the target.
    match get(&v, "show") {
        Verdict::Identical {
            fields, unchecked, ..
        } => assert!(*fields >= 3 && *unchecked == 0, "{fields} {unchecked}"),
        other => panic!("{other:?}"),
    }

    let extra = gcc(
        d.path(),
        SOURCE,
        "extra.o",
        &["-c", "-ffunction-sections", "-fdata-sections", "-DEXTRA"],
    );
    let v = verdicts(&mut image, &extra);
    let Verdict::Differs { first, .. } = get(&v, "show") else {
        panic!("{v:#?}");
    };
    assert!(!first.ours.is_empty() && !first.theirs.is_empty());
    assert!(get(&v, "helper").is_identical(), "{v:#?}");
}

#[test]
fn linked_target_like_vmlinux() {
    let d = tempfile::tempdir().unwrap();
    let exe = gcc(
        d.path(),
        SOURCE,
        "vmlinux",
        &[
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,-e,show",
            "-Wl,--build-id",
        ],
    );
    let mut image = KernelImage::open(&exe).unwrap();
    assert_eq!(image.build_id().unwrap().map(|b| b.len()), Some(20));
    let same = gcc(
        d.path(),
        SOURCE,
        "same.o",
        &["-c", "-ffunction-sections", "-fdata-sections"],
    );
    let v = verdicts(&mut image, &same);
    assert!(v.iter().all(|(_, v)| v.is_identical()), "{v:#?}");

    // A string that differs in content, at the same place in the code.
    let changed = SOURCE.replace("\"value: \"", "\"VALUE: \"");
    let o = gcc(
        d.path(),
        &changed,
        "changed.o",
        &["-c", "-ffunction-sections", "-fdata-sections"],
    );
    let v = verdicts(&mut image, &o);
    let Verdict::Differs { first, .. } = get(&v, "show") else {
        panic!("{v:#?}");
    };
    let detail = first.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("\"VALUE: \"") && detail.contains("\"value: \""),
        "{detail}"
    );

    // Another definition of a weak function wins in the target.
    let strong = format!("{SOURCE}\n");
    let exe2 = gcc(
        d.path(),
        &strong.replace(
            "__attribute__((weak)) int tunable(void) { return 1; }",
            "int tunable(void) { return 42 + counter; }",
        ),
        "vmlinux2",
        &["-nostdlib", "-static", "-no-pie", "-Wl,-e,show"],
    );
    let mut image2 = KernelImage::open(&exe2).unwrap();
    let v = verdicts(&mut image2, &same);
    assert_eq!(get(&v, "tunable"), &Verdict::Overridden);
}

/// A loop gcc aligns to 32 bytes, in a call-padded function (16 bytes of NOPs before
/// each entry, as 6.12's IBT kernels build), after a function of `filler` bytes; and
/// a loop that runs to the end of an array (the reference one past it names the next
/// object in a linked module).
fn padded_source(filler: usize) -> String {
    format!(
        r#"
static long table[16];
static long after_table;
void filler(void) {{ asm volatile(".fill {filler}, 1, 0x90"); }}
long sum_bytes(const unsigned char *p, unsigned long n)
{{
    long s = 0;
    for (unsigned long i = 0; i < n; i++)
        s += p[i] * (long)(i + 3);
    for (long *q = table; q < table + 16; q++)
        s += *q;
    return s + after_table;
}}
"#
    )
}

const PADDED: &[&str] = &[
    "-fpatchable-function-entry=16,16",
    "-falign-functions=16",
    "-falign-loops=32",
    "-falign-jumps=32",
];

/// Regression: on Debian 13 (gcc-14, call padding) the rebuilt `-ffunction-sections`
/// object aligns loops relative to its own section, whose entry is 16 bytes in; the
/// kernel's copy has other NOP runs before its loops and other branch displacements for
/// the same instructions (remove_arg_zero, do_task_stat, ... in 6.12.118+deb13). Such a
/// copy is the same code, whatever the padding; a real change still differs.
#[test]
fn alignment_padding_is_not_a_difference() {
    let d = tempfile::tempdir().unwrap();
    let mut args = vec!["-c", "-ffunction-sections", "-fdata-sections"];
    args.extend(PADDED);
    let ours = gcc(d.path(), &padded_source(0), "ours.o", &args);
    let mut file = RelFile::open(&ours).unwrap();
    let index = SiteIndex::build(&mut file, &Layout::default()).unwrap();
    let func = file
        .functions()
        .unwrap()
        .into_iter()
        .find(|f| f.name == "sum_bytes")
        .unwrap();
    let sites = index.for_function(&func);
    let mut byte_exact_failed = 0;
    for filler in (0..32).step_by(4) {
        let mut link = vec!["-nostdlib", "-static", "-no-pie", "-Wl,-e,sum_bytes"];
        link.extend(PADDED);
        let name = format!("vmlinux{filler}");
        let exe = gcc(d.path(), &padded_source(filler), &name, &link);
        let mut image = KernelImage::open(&exe).unwrap();
        let copy = image.candidates(&func).unwrap().remove(0);
        if compare::with_copy(&mut image, &func, &sites, &copy)
            .unwrap()
            .is_err()
        {
            byte_exact_failed += 1;
        }
        let (v, copy) = compare::function_copy(&mut image, &func, &sites).unwrap();
        assert!(v.is_identical(), "filler {filler}: {v:#?}");
        // The record `kpatch verify` checks at run time: each field at its offset in the
        // kernel's copy, which the padding moved (6.12's do_task_stat).
        let copy = copy.unwrap();
        let rec = verify::record::build::kernel_function(&func, &copy, &sites);
        assert_eq!(rec.fields.len(), func.fields.len());
        for (fl, r) in func.fields.iter().zip(&rec.fields) {
            let moved = verify::func::Field {
                off: r.off,
                ..fl.clone()
            };
            let check = image.check_field(&copy, &moved).unwrap();
            assert!(
                matches!(check, verify::image::FieldCheck::Same),
                "filler {filler}: {} at +{:#x} (ours +{:#x}): {check:?}",
                fl.target,
                r.off,
                fl.off
            );
        }

        // Relocatable, like a module.
        let shipped = gcc(
            d.path(),
            &padded_source(filler),
            &format!("shipped{filler}.o"),
            &[&["-c"][..], PADDED].concat(),
        );
        let ko = d.path().join(format!("shipped{filler}.ko"));
        assert!(Command::new("ld")
            .arg("-r")
            .arg("-o")
            .arg(&ko)
            .arg(&shipped)
            .status()
            .unwrap()
            .success());
        let mut module = ModuleImage::open(&ko).unwrap();
        let v = compare::function(&mut module, &func, &sites).unwrap();
        assert!(v.is_identical(), "module, filler {filler}: {v:#?}");
    }
    assert!(
        byte_exact_failed > 0,
        "no filler moved the loops: the test does not exercise the padding"
    );

    // A real change (another multiplier) still differs, padding or not.
    let changed = padded_source(8).replace("(i + 3)", "(i + 5)");
    let mut link = vec!["-nostdlib", "-static", "-no-pie", "-Wl,-e,sum_bytes"];
    link.extend(PADDED);
    let exe = gcc(d.path(), &changed, "vmlinux-changed", &link);
    let mut image = KernelImage::open(&exe).unwrap();
    let v = compare::function(&mut image, &func, &sites).unwrap();
    assert!(matches!(v, Verdict::Differs { .. }), "{v:#?}");
}

/// Two functions of one file, the second tail-calling `callee`.
fn tail_call_source(callee: &str) -> String {
    format!(
        r#"
__attribute__((noinline)) int cmp_bytes(const unsigned char *p, const unsigned char *q,
                                        unsigned long n)
{{
    for (unsigned long i = 0; i < n; i++)
        if (p[i] != q[i])
            return p[i] - q[i];
    return 0;
}}
__attribute__((noinline)) int cmp_other(const unsigned char *p, const unsigned char *q,
                                        unsigned long n)
{{
    return p[n] == q[0] ? 7 : (int)n;
}}
int tail(const unsigned char *p, const unsigned char *q, unsigned long n)
{{
    return {callee}(p, q, n);
}}
"#
    )
}

/// Regression: lib/string.c's `bcmp` is `jmp memcmp`. In our `-ffunction-sections`
/// object that is a `rel32` jump with a relocation; in vmlinux, built without the option,
/// the assembler resolved it within `.text` and chose the 2-byte `rel8` form. The same
/// branch to the same function, whatever its encoding; a jump to another function differs.
#[test]
fn near_tail_call_in_short_form_is_the_same_branch() {
    let d = tempfile::tempdir().unwrap();
    let args = ["-c", "-ffunction-sections", "-fdata-sections"];
    let ours = gcc(d.path(), &tail_call_source("cmp_bytes"), "ours.o", &args);
    let mut file = RelFile::open(&ours).unwrap();
    let index = SiteIndex::build(&mut file, &Layout::default()).unwrap();
    let func = file
        .functions()
        .unwrap()
        .into_iter()
        .find(|f| f.name == "tail")
        .unwrap();
    assert_eq!(func.bytes.first(), Some(&0xe9), "ours: a rel32 jmp");
    let sites = index.for_function(&func);
    let link = ["-nostdlib", "-static", "-no-pie", "-Wl,-e,tail"];
    for (callee, same) in [("cmp_bytes", true), ("cmp_other", false)] {
        let exe = gcc(
            d.path(),
            &tail_call_source(callee),
            &format!("vmlinux-{callee}"),
            &link,
        );
        let mut image = KernelImage::open(&exe).unwrap();
        let copy = image.candidates(&func).unwrap().remove(0);
        assert_eq!(copy.bytes.first(), Some(&0xeb), "{callee}: a rel8 jmp");
        let v = compare::function(&mut image, &func, &sites).unwrap();
        assert_eq!(v.is_identical(), same, "{callee}: {v:#?}");

        // Relocatable, like a module.
        let shipped = gcc(
            d.path(),
            &tail_call_source(callee),
            &format!("shipped-{callee}.o"),
            &["-c"],
        );
        let mut module = ModuleImage::open(&shipped).unwrap();
        let v = compare::function(&mut module, &func, &sites).unwrap();
        assert_eq!(v.is_identical(), same, "module, {callee}: {v:#?}");
    }
}

/// Empty objects (a `lock_class_key` without lockdep) of several files share one address
/// in a module; the target's references are named after whichever symbol is found there.
#[test]
fn empty_objects_sharing_an_address_are_the_same_place() {
    let d = tempfile::tempdir().unwrap();
    let a = "struct key {};\nextern void take(void *);\n\
             void fa(void) { static struct key key; take(&key); }\n";
    let b = "struct key {};\nextern void take(void *);\n\
             void fb1(void) { static struct key key; take(&key); }\n\
             void fb2(void) { static struct key key; take(&key); }\n";
    let oa = gcc(d.path(), a, "a.o", &["-c"]);
    let ob = gcc(d.path(), b, "b.o", &["-c"]);
    let ko = d.path().join("ab.ko");
    assert!(Command::new("ld")
        .args(["-r", "-o"])
        .arg(&ko)
        .args([&oa, &ob])
        .status()
        .unwrap()
        .success());
    let rebuilt = gcc(
        d.path(),
        b,
        "b2.o",
        &["-c", "-ffunction-sections", "-fdata-sections"],
    );
    let mut image = ModuleImage::open(&ko).unwrap();
    let v = verdicts(&mut image, &rebuilt);
    for f in ["fb1", "fb2"] {
        assert!(get(&v, f).is_identical(), "{f}: {v:#?}");
    }
}
