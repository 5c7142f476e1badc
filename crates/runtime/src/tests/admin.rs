// SPDX-License-Identifier: GPL-2.0-only
//! Install layout, boot-time skipping, list/info (text and JSON), force, signal, parsing.

use std::fs;

use super::{load_path, Bed, CMDLINE, SAMPLE};
use crate::error::Error;
use crate::fake::{add_task, put, Behaviour, RELEASE};
use crate::install;
use crate::{load, report, sysfs, transition};

#[test]
fn install_list_uninstall_layout() {
    let bed = Bed::new();
    let ko = bed.sample_ko(SAMPLE, &[]);
    let (res, out) = bed.run(|rt| install::install(rt, &ko, None));
    res.unwrap();
    assert!(out.contains(&format!("({RELEASE})")), "{out}");
    let dest = bed.env().lib_dir.join(RELEASE).join("livepatch-sample.ko");
    assert_eq!(fs::read(&dest).unwrap(), fs::read(&ko).unwrap());
    // Installing the same file again changes nothing and succeeds (packages' maintainer
    // scripts rely on it); another release must match vermagic.
    let (res, out) = bed.run(|rt| install::install(rt, &ko, None));
    res.unwrap();
    assert!(out.contains("already installed"), "{out}");
    let err = bed
        .run(|rt| install::install(rt, &ko, Some("6.2.0")))
        .0
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("but the install target is '6.2.0'"),
        "{err}"
    );

    let list = report::list(&bed.env());
    assert_eq!(list.installed.len(), 1);
    assert_eq!(list.installed[0].name, SAMPLE);
    assert!(list
        .to_text()
        .contains(&format!("Installed patch modules:\n{SAMPLE} ({RELEASE})")));

    // Load by installed name, with dashes.
    bed.run(|rt| load::load(rt, "livepatch-sample", &[]))
        .0
        .unwrap();

    let err = bed
        .run(|rt| install::uninstall(rt, "other", None))
        .0
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("'other' is not installed for kernel {RELEASE}")
    );
    bed.run(|rt| install::uninstall(rt, SAMPLE, None))
        .0
        .unwrap();
    assert!(!dest.exists());
    assert!(!bed.env().lib_dir.exists(), "empty directories are removed");
}

#[test]
fn interrupted_load_is_skipped_at_boot_until_reinstalled() {
    let bed = Bed::new();
    let a = bed.sample_ko("patch_a", &[]);
    let b = bed.sample_ko("patch_b", &[]);
    bed.run(|rt| install::install(rt, &a, None)).0.unwrap();
    bed.run(|rt| install::install(rt, &b, None)).0.unwrap();
    // The machine died while patch_a was loading.
    install::write_marker(&bed.env(), "patch_a", &a).unwrap();

    let list = report::list(&bed.env());
    assert!(list.to_text().contains(
        "patch_a (6.1.0-18-amd64) [interrupted load: skipped at boot until reinstalled]"
    ));

    let (res, out) = bed.run(load::load_all);
    res.unwrap();
    assert!(
        out.contains("skipping patch_a: its previous load never finished"),
        "{out}"
    );
    assert!(out.contains("kpatch install"), "{out}");
    assert_eq!(bed.k.log(), vec!["load patch_b"]);

    // Reinstalling clears the mark; the next boot loads it.
    let (res, out) = bed.run(|rt| install::install(rt, &a, None));
    res.unwrap();
    assert!(
        out.contains("cleared the interrupted-load mark of patch_a"),
        "{out}"
    );
    bed.run(load::load_all).0.unwrap();
    assert!(sysfs::read_patch(&bed.env(), "patch_a").is_some_and(|p| p.enabled));
}

#[test]
fn load_all_goes_on_after_a_failure_and_fails_at_the_end() {
    let bed = Bed::new();
    bed.k.define("patch_a", &[], Behaviour::Stalls, false);
    for n in ["patch_a", "patch_b"] {
        let ko = bed.sample_ko(n, &[]);
        bed.run(|rt| install::install(rt, &ko, None)).0.unwrap();
    }
    let (res, out) = bed.run(load::load_all);
    assert_eq!(
        res.unwrap_err().to_string(),
        "1 of 2 patch module(s) failed"
    );
    assert!(
        out.contains("kpatch: patch_a: the patching transition did not finish"),
        "{out}"
    );
    assert!(sysfs::read_patch(&bed.env(), "patch_b").is_some());
    assert!(sysfs::read_patch(&bed.env(), "patch_a").is_none());
}

#[test]
fn list_json_parses_and_shows_winner_and_state() {
    let bed = Bed::new();
    bed.k
        .define("lp_a", &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    bed.k
        .define("lp_b", &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    load_path(&bed, &bed.sample_ko("lp_a", &[])).0.unwrap();
    load_path(&bed, &bed.sample_ko("lp_b", &[])).0.unwrap();
    let json = serde_json::to_string(&report::list(&bed.env())).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kernel_release"], RELEASE);
    let loaded = v["loaded"].as_array().unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0]["name"], "lp_a", "bottom of the stack first");
    assert_eq!(loaded[1]["state"], "enabled");
    assert_eq!(loaded[1]["transition"], false);
    assert_eq!(
        loaded[1]["objects"][0]["functions"][0]["name"],
        "cmdline_proc_show"
    );
    assert_eq!(v["functions"][0]["module"], "lp_b");
    assert_eq!(v["functions"][0]["overridden"][0], "lp_a");
    assert!(v["blocked_tasks"].as_array().unwrap().is_empty());
}

#[test]
fn list_shows_transition_and_blocked_tasks() {
    let bed = Bed::new();
    let env = bed.env();
    let dir = env.patch_dir(SAMPLE);
    put(&dir.join("enabled"), "1\n");
    put(&dir.join("transition"), "1\n");
    fs::create_dir_all(dir.join("vmlinux/cmdline_proc_show,1")).unwrap();
    add_task(
        &env,
        11,
        12,
        "cat",
        'S',
        false,
        "[<0>] cmdline_proc_show+0x1/0x2\n",
        0,
    );
    let r = report::list(&env);
    let text = r.to_text();
    assert!(text.contains("livepatch_sample [enabling...]"), "{text}");
    assert!(text.contains("Stalled processes:\ntask 12 (cat) pid 11 state S: in patched function cmdline_proc_show"), "{text}");
    assert!(text.contains("cmdline_proc_show,1 (transition)"), "{text}");
}

#[test]
fn info_json_from_file_and_sysfs() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    let ko = bed.sample_ko(SAMPLE, &[]);
    bed.run(|rt| install::install(rt, &ko, None)).0.unwrap();
    let r = report::info(&bed.env(), SAMPLE).unwrap();
    assert!(r.loaded.is_none());
    assert!(r.to_text().contains("livepatch:      Y"));
    bed.run(|rt| load::load(rt, SAMPLE, &[])).0.unwrap();
    let v: serde_json::Value =
        serde_json::to_value(report::info(&bed.env(), "livepatch-sample.ko").unwrap()).unwrap();
    assert_eq!(v["name"], SAMPLE);
    assert_eq!(v["modinfo"][0], serde_json::json!(["livepatch", "Y"]));
    assert_eq!(v["loaded"]["objects"][0]["name"], "vmlinux");
    assert_eq!(v["loaded"]["objects"][0]["functions"][0]["sympos"], 1);
    let err = report::info(&bed.env(), "nothing").unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    // A module that is not a live patch is said to be one, not described.
    let plain = bed.dir.path().join("plain.ko");
    std::fs::write(&plain, crate::fake::build_ko(&[("name", "plain")], &[])).unwrap();
    let err = report::info(&bed.env(), plain.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, Error::NotLivepatch(_)), "{err}");
}

#[test]
fn force_warns_and_writes_force() {
    let bed = Bed::new();
    bed.k.define(SAMPLE, &[], Behaviour::Completes, false);
    let err = bed
        .run(|rt| transition::force_command(rt, None))
        .0
        .unwrap_err();
    assert!(matches!(err, Error::NoTransition));
    let dir = bed.env().patch_dir(SAMPLE);
    put(&dir.join("enabled"), "1\n");
    put(&dir.join("transition"), "1\n");
    put(&dir.join("force"), "");
    let (res, out) = bed.run(|rt| transition::force_command(rt, None));
    res.unwrap();
    assert!(out.starts_with("warning: forcing a transition"), "{out}");
    assert!(out.contains("can never be unloaded"), "{out}");
    assert_eq!(
        bed.k.log(),
        vec![format!("write sys/kernel/livepatch/{SAMPLE}/force=1")]
    );
}

#[test]
fn signal_without_transition_is_a_no_op() {
    let bed = Bed::new();
    let (res, out) = bed.run(transition::signal_command);
    res.unwrap();
    assert_eq!(out, "no patch transition in progress\n");
}

#[test]
fn modinfo_and_procfs_parsing() {
    let info = crate::modinfo::ModInfo::parse(
        b"livepatch=Y\0\0vermagic=6.1.0 SMP \0depends=\0alias=a\0alias=b\0junk\0",
    );
    assert!(info.is_livepatch());
    assert_eq!(info.vermagic_release(), Some("6.1.0"));
    assert_eq!(info.get("depends"), Some(""));
    assert_eq!(info.0.len(), 5);
    assert_eq!(
        crate::tasks::frame_function("[<0>] busymod_work_func+0x3e/0x60 [test_klp_callbacks_busy]"),
        Some("busymod_work_func")
    );
    assert_eq!(
        crate::tasks::frame_function("[<ffffffff8a0>] schedule+0x1/0x2"),
        Some("schedule")
    );
    let (st, flags) = crate::tasks::parse_stat("12 (a b) c)) S 1 2 3 0 -1 2097216 0");
    assert_eq!((st.as_str(), flags), ("S", 2_097_216));
    assert_eq!(crate::sysfs::parse_func_dir("foo.cold,2").name, "foo.cold");
    assert_eq!(
        crate::env::normalize_name("/x/kpatch-foo-bar.ko"),
        "kpatch_foo_bar"
    );
    assert_eq!(install::utc_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
}
