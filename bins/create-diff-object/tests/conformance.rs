//! Upstream kpatch's unit-test object pairs (../shared/kpatch-unit-test-objs): exit code,
//! changed and new functions, text-symbol count, and the extra post-checks listed in the
//! suite's README, for every pair of the architectures the differ supports.

mod common;

use std::path::Path;

use common::*;

/// The architectures this build of the differ handles.
const ARCHES: &[&str] = &["x86_64", "ppc64le", "s390x", "aarch64", "loongarch64"];

fn post_checks(exp: &Expected, out: &Path) -> Vec<String> {
    let mut errs = Vec::new();
    match (exp.arch.as_str(), exp.test.as_str()) {
        ("x86_64", "convert-global-local")
            if !text_symbols(out)
                .iter()
                .any(|l| l.ends_with(" t __kmalloc")) =>
        {
            errs.push("__kmalloc is not a local text symbol".into());
        }
        (_, "dynamic-debug-jump-label-issue-1253") => {
            let syms = readelf(&["-sW"], out);
            if syms
                .lines()
                .any(|l| l.contains(" SECTION ") && l.contains(" UND "))
            {
                errs.push("undefined SECTION symbol in output".into());
            }
            if exp.arch != "x86_64" && !readelf(&["-SW"], out).contains("__dyndbg") {
                errs.push("no __dyndbg section".into());
            }
        }
        ("x86_64", "import-ns") => {
            let data = std::fs::read(out).unwrap();
            let n = data.windows(10).filter(|w| *w == b"import_ns=").count();
            if n != 4 {
                errs.push(format!("{n} import_ns= strings, expected 4"));
            }
        }
        (arch, "mcount_loc-issue-1102") => {
            let r = readelf(&["-rW"], out);
            let want = if arch == "x86_64" {
                "R_X86_64_64"
            } else {
                "R_PPC64_ADDR64"
            };
            let addend = if arch == "x86_64" {
                "netlbl_catmap_getlong + 0"
            } else {
                "netlbl_catmap_getlong + 4"
            };
            let sec = r
                .split("Relocation section")
                .find(|s| s.contains("'.rela__mcount_loc'"))
                .unwrap_or("");
            if !sec.lines().any(|l| l.contains(want) && l.contains(addend)) {
                errs.push(format!(".rela__mcount_loc lacks {want} {addend}"));
            }
        }
        ("x86_64", "zero-page-rela-issue-1064") => {
            let r = readelf(&["-rW"], out);
            if !r
                .lines()
                .any(|l| l.contains("R_X86_64_64") && l.contains("empty_zero_page + 80000000"))
            {
                errs.push("no R_X86_64_64 empty_zero_page + 80000000".into());
            }
        }
        ("ppc64le", "ppc64le-bundled-localentry-1007")
            if !readelf(&["-rW"], out).contains(" xs_tcp_state_change + 90") =>
        {
            errs.push("no relocation ' xs_tcp_state_change + 90'".into());
        }
        _ => {}
    }
    errs
}

/// Where we knowingly differ from upstream: functions we patch that upstream includes in
/// the output without a `.kpatch.funcs` entry (so its module never redirects to them).
const EXTRA_CHANGED: &[(&str, &str, &str, &str)] = &[(
    "s390x",
    "gcc-static-local-var-5",
    "audit_log_start.part.0",
    "a changed .part.N child of an unchanged parent: the running kernel's audit_log_start \
     keeps calling the old copy unless the child itself is patched",
)];

/// Where we knowingly include more than upstream: unchanged `.cold` parts that branch
/// back into their changed parent. Upstream links the new parent to the running kernel's
/// `.cold` copy, which resumes in the OLD parent and runs the old code after the cold
/// path, bypassing the fix there (fixture `cold-jump-back-changed-parent.c`).
const EXTRA_TEXT: &[(&str, &str, &str, &str)] = &[
    (
        "x86_64",
        "cold-change-parent",
        "meminfo_proc_show.cold.0",
        "jumps back to meminfo_proc_show+0x3b",
    ),
    (
        "x86_64",
        "static-call-issue-1165",
        "do_exit.cold",
        "jumps back into do_exit",
    ),
];

#[test]
fn upstream_unit_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut passed, mut failed) = (0, 0);
    for exp in expectations()
        .iter()
        .filter(|e| ARCHES.contains(&e.arch.as_str()))
    {
        let out = run_pair(exp, tmp.path());
        let mut errs = Vec::new();
        if out.code != exp.exit_code {
            errs.push(format!("exit {} (expected {})", out.code, exp.exit_code));
        }
        let mut want_changed = exp.changed.clone();
        for (arch, pair, func, _why) in EXTRA_CHANGED {
            if exp.arch == *arch && exp.test == *pair {
                want_changed.insert(func.to_string());
            }
        }
        if out.changed != want_changed {
            errs.push(format!(
                "changed {:?} (expected {:?})",
                out.changed, want_changed
            ));
        }
        if out.new != exp.new {
            errs.push(format!("new {:?} (expected {:?})", out.new, exp.new));
        }
        if exp.exit_code == 0 {
            if !out.output.exists() {
                errs.push("no output written".into());
            } else {
                let syms: Vec<String> = text_symbols(&out.output)
                    .iter()
                    .filter_map(|l| l.split_whitespace().last().map(str::to_string))
                    .collect();
                let extra = EXTRA_TEXT
                    .iter()
                    .filter(|(a, p, f, _)| {
                        exp.arch == *a && exp.test == *p && syms.iter().any(|s| s == f)
                    })
                    .count();
                let n = syms.len() - extra;
                if Some(n) != exp.num_text {
                    errs.push(format!("{n} text symbols (expected {:?})", exp.num_text));
                }
                for (_, _, f, _) in EXTRA_TEXT
                    .iter()
                    .filter(|(a, p, _, _)| exp.arch == *a && exp.test == *p)
                {
                    if !syms.iter().any(|s| s == f) {
                        errs.push(format!("{f} is not in the output (a deliberate deviation)"));
                    }
                }
                let warnings = readelf(&["-a", "-W"], &out.output);
                if warnings
                    .lines()
                    .any(|l| l.starts_with("readelf: Warning") || l.starts_with("readelf: Error"))
                {
                    errs.push("readelf -a reports warnings".into());
                }
                errs.extend(post_checks(exp, &out.output));
            }
        } else if out.output.exists() {
            errs.push("output written despite failure".into());
        }
        if out.stderr.contains("panicked") {
            errs.push("panic".into());
        }
        if errs.is_empty() {
            passed += 1;
        } else {
            failed += 1;
            eprintln!(
                "FAIL {}/{}: {}\n  {}",
                exp.arch,
                exp.test,
                errs.join("; "),
                out.stderr.trim()
            );
        }
    }
    println!("upstream unit pairs: {passed} passed, {failed} failed");
    assert_eq!(failed, 0, "{failed} upstream unit pair(s) failed");
    assert!(passed >= 122, "only {passed} pairs ran");
}

#[test]
fn outputs_link_with_ld_r() {
    let tmp = tempfile::tempdir().unwrap();
    for exp in expectations()
        .iter()
        .filter(|e| e.arch == "x86_64" && e.exit_code == 0)
    {
        let out = run_pair(exp, tmp.path());
        let linked = tmp.path().join("linked.o");
        let st = std::process::Command::new("ld")
            .arg("-r")
            .arg("-o")
            .arg(&linked)
            .arg(&out.output)
            .status()
            .unwrap();
        assert!(st.success(), "ld -r failed on the output of {}", exp.test);
    }
}

/// The same x86_64 pairs with the parent symbol table given as a kallsyms dump (what a
/// user can take from the target machine when no vmlinux with symbols is at hand): same
/// verdicts and functions.
#[test]
fn x86_64_pairs_with_kallsyms_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let mut errs = Vec::new();
    let mut n = 0;
    for exp in expectations().iter().filter(|e| e.arch == "x86_64") {
        n += 1;
        let out = run_pair_with(exp, tmp.path(), true);
        if out.code != exp.exit_code || out.changed != exp.changed || out.new != exp.new {
            errs.push(format!(
                "{}: exit {} changed {:?} new {:?}\n{}",
                exp.test, out.code, out.changed, out.new, out.stderr
            ));
        }
    }
    assert_eq!(n, 55);
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// A kallsyms dump cannot tell two local functions of the same name apart: the differ
/// refuses to guess which one to patch, and says what to give it instead.
#[test]
fn kallsyms_parent_with_ambiguous_local() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = shared_objs().join("x86_64");
    let orig = dir.join("meminfo-string.ORIG.o");
    let nm = std::process::Command::new("nm")
        .arg(&orig)
        .output()
        .unwrap();
    let mut text = String::new();
    for l in String::from_utf8_lossy(&nm.stdout).lines() {
        if l.split_whitespace().count() == 3 {
            text.push_str(l);
            text.push('\n');
            if l.ends_with(" t meminfo_proc_show") {
                text.push_str("ffffffff81234560 t meminfo_proc_show\n");
            }
        }
    }
    let ks = tmp.path().join("kallsyms");
    std::fs::write(&ks, text).unwrap();
    let out_o = tmp.path().join("out.o");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_create-diff-object"))
        .arg(&orig)
        .arg(dir.join("meminfo-string.PATCHED.o"))
        .args(["vmlinux"])
        .arg(&ks)
        .args(["/dev/null", "test"])
        .arg(&out_o)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("meminfo_proc_show: 2 local symbols of that name"),
        "{stderr}"
    );
    assert!(!out_o.exists());
}
