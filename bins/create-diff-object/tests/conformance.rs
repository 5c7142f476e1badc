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
                let n = text_symbols(&out.output).len();
                if Some(n) != exp.num_text {
                    errs.push(format!("{n} text symbols (expected {:?})", exp.num_text));
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
