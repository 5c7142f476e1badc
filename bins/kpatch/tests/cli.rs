// SPDX-License-Identifier: GPL-2.0-only
//! The `kpatch` binary on a fake tree (`--root`, which acts as root of that tree
//! whoever runs it): exit codes, one-line errors, JSON output.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use object::write::Object;
use object::{Architecture, BinaryFormat, Endianness, SectionKind};

const RELEASE: &str = "6.1.0-18-amd64";

fn kpatch(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kpatch"))
        .arg("--root")
        .arg(root)
        .args(["--running-release", RELEASE])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ko(path: &Path, fields: &[(&str, &str)]) {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let sec = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
    let data: Vec<u8> = fields
        .iter()
        .flat_map(|(k, v)| format!("{k}={v}\0").into_bytes())
        .collect();
    obj.append_section_data(sec, &data, 1);
    fs::write(path, obj.write().unwrap()).unwrap();
}

fn sample(dir: &Path, release: &str) -> std::path::PathBuf {
    let p = dir.join("livepatch-sample.ko");
    let vermagic = format!("{release} SMP preempt mod_unload modversions ");
    ko(
        &p,
        &[
            ("livepatch", "Y"),
            ("name", "livepatch_sample"),
            ("vermagic", &vermagic),
        ],
    );
    p
}

fn fake_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let lp = t.path().join("sys/kernel/livepatch/livepatch_sample");
    fs::create_dir_all(lp.join("vmlinux/cmdline_proc_show,1")).unwrap();
    fs::write(lp.join("enabled"), "1\n").unwrap();
    fs::write(lp.join("transition"), "0\n").unwrap();
    fs::create_dir_all(t.path().join("proc")).unwrap();
    t
}

#[test]
fn version_prints_and_exits_zero() {
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch"))
        .arg("version")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn usage_errors_exit_non_zero() {
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch"))
        .arg("load")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn list_json_is_parseable() {
    let t = fake_tree();
    let o = kpatch(t.path(), &["list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["loaded"][0]["name"], "livepatch_sample");
    assert_eq!(v["loaded"][0]["state"], "enabled");
    assert_eq!(v["functions"][0]["function"], "cmdline_proc_show");
    let o = kpatch(t.path(), &["list"]);
    assert!(
        stdout(&o).starts_with("Loaded patch modules:\nlivepatch_sample [enabled]\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn info_json_of_a_loaded_patch() {
    let t = fake_tree();
    let o = kpatch(t.path(), &["info", "--json", "livepatch_sample"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["loaded"]["objects"][0]["functions"][0]["name"],
        "cmdline_proc_show"
    );
    let o = kpatch(t.path(), &["info", "nonesuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("kpatch: can't find patch 'nonesuch'"));
}

#[test]
fn load_errors_are_one_line_and_exit_one() {
    let t = fake_tree();
    let wrong = sample(t.path(), "5.10.0-1-amd64");
    let o = kpatch(t.path(), &["load", wrong.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("built for kernel '5.10.0-1-amd64'") && e.contains(RELEASE),
        "{e}"
    );

    let plain = t.path().join("plain.ko");
    ko(&plain, &[("name", "plain"), ("vermagic", RELEASE)]);
    let o = kpatch(t.path(), &["load", plain.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a livepatch module"));

    fs::remove_dir_all(t.path().join("sys/kernel/livepatch")).unwrap();
    let o = kpatch(t.path(), &["load", "--all"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has no livepatch support"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn install_and_uninstall_through_the_binary() {
    let t = fake_tree();
    let ko = sample(t.path(), RELEASE);
    let o = kpatch(t.path(), &["install", ko.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(t
        .path()
        .join("var/lib/kpatch")
        .join(RELEASE)
        .join("livepatch-sample.ko")
        .is_file());
    let o = kpatch(t.path(), &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["installed"][0]["kernel_release"], RELEASE);
    let o = kpatch(t.path(), &["uninstall", "livepatch-sample.ko"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!t.path().join("var/lib/kpatch").exists());
}

#[test]
fn info_errors_with_json_and_of_a_plain_module() {
    let t = fake_tree();
    let o = kpatch(t.path(), &["info", "--json", "nonesuch"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("can't find patch 'nonesuch'"),
        "{v}"
    );
    let plain = t.path().join("plain.ko");
    ko(&plain, &[("name", "plain"), ("license", "GPL")]);
    let o = kpatch(t.path(), &["info", plain.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not a livepatch module"),
        "{}",
        stderr(&o)
    );
}
