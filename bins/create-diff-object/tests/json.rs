//! `create-diff-object --json`: the summary of a refused run lists every refusal with its
//! kind, and a successful run carries each changed function's explanation and the type
//! changes. Two C fixtures compiled with gcc (`-g`), as in the fixture harness.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crates/differ/tests/fixtures")
}

/// Build `name`.c twice and run create-diff-object --json on it: (exit code, JSON).
fn run_json(name: &str) -> Option<(i32, serde_json::Value)> {
    if !cfg!(target_arch = "x86_64") || Command::new("gcc").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "gcc is required under CI");
        println!("skipped: needs gcc on x86_64");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = fixtures().join(format!("{name}.c"));
    for (out, patched) in [("orig.o", false), ("patched.o", true)] {
        let mut cc = Command::new("gcc");
        cc.args([
            "-c",
            "-O2",
            "-g",
            "-ffunction-sections",
            "-fdata-sections",
            "-fno-asynchronous-unwind-tables",
            "-mfentry",
            "-pg",
            "-mrecord-mcount",
            "-fno-pic",
            "-mcmodel=kernel",
            "-fno-common",
            "-nostdinc",
        ])
        .arg("-I")
        .arg(fixtures().join("include"));
        if patched {
            cc.arg("-DPATCHED");
        }
        let st = cc
            .arg("-o")
            .arg(dir.path().join(out))
            .arg(&src)
            .status()
            .unwrap();
        assert!(st.success(), "gcc failed on {name}");
    }
    let symtab = Command::new("readelf")
        .args(["-s", "--wide"])
        .arg(dir.path().join("orig.o"))
        .output()
        .unwrap();
    std::fs::write(dir.path().join("parent.symtab"), &symtab.stdout).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_create-diff-object"))
        .current_dir(dir.path())
        .args([
            "--json",
            "orig.o",
            "patched.o",
            "vmlinux",
            "parent.symtab",
            "/dev/null",
        ])
        .args(["test_json", "output.o"])
        .envs([
            ("BUG_STRUCT_SIZE", "12"),
            ("EX_STRUCT_SIZE", "12"),
            ("JUMP_STRUCT_SIZE", "16"),
            ("ALT_STRUCT_SIZE", "13"),
            ("PARA_STRUCT_SIZE", "16"),
            ("ORC_STRUCT_SIZE", "6"),
            ("STATIC_CALL_STRUCT_SIZE", "8"),
            ("PRINTK_INDEX_STRUCT_SIZE", "44"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Some((out.status.code().unwrap_or(-1), v))
}

#[test]
fn refused_run_lists_every_refusal() {
    let Some((code, v)) = run_json("types-three-blockers") else {
        return;
    };
    assert_eq!(code, 2);
    assert_eq!(v["result"], "unpatchable");
    let kinds: Vec<&str> = v["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "{v:#}");
    for k in ["type-layout", "object-size", "init-code"] {
        assert!(kinds.contains(&k), "no {k} refusal: {kinds:?}");
    }
    let job = &v["types"]["changes"][0];
    assert_eq!(job["name"], "struct job");
    assert_eq!(job["refused"], true);
    assert_eq!(job["size"], serde_json::json!([16, 24]));
    assert!(job["live_because"].as_str().unwrap().contains("job_id()"));
}

#[test]
fn success_carries_explanations() {
    let Some((code, v)) = run_json("explain-inlined-callee") else {
        return;
    };
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["changed"], serde_json::json!(["apply_scale"]));
    let e = &v["explanations"][0];
    assert_eq!(e["function"], "apply_scale");
    assert_eq!(e["cause"]["kind"], "inlined");
    assert_eq!(e["inlined"][0]["function"], "scale");
    assert!(e["patched_line"]["file"]
        .as_str()
        .unwrap()
        .ends_with("explain-inlined-callee.c"));
    assert_eq!(v["types"]["checked"], true);
}
