// SPDX-License-Identifier: GPL-2.0-only
//! State-machine and error-path tests against the fake kernel.

use std::fs;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::env::{Env, Runtime};
use crate::error::{Error, Result};
use crate::fake::{add_task, put, write_ko, Behaviour, FakeKernel, RELEASE};
use crate::install::{self, marker_path};
use crate::{load, report, sysfs, transition, unload};

const SAMPLE: &str = "livepatch_sample";
const CMDLINE: &[(&str, u64)] = &[("cmdline_proc_show", 1)];

struct Bed {
    dir: TempDir,
    k: FakeKernel,
}

impl Bed {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let k = FakeKernel::new(dir.path());
        Bed { dir, k }
    }

    fn env(&self) -> Env {
        self.k.env.clone()
    }

    /// Runs `f` on a runtime over the fake tree; returns its result and output.
    fn run(&self, f: impl FnOnce(&mut Runtime<'_>) -> Result<()>) -> (Result<()>, String) {
        self.run_env(self.env(), f)
    }

    fn run_env(
        &self,
        env: Env,
        f: impl FnOnce(&mut Runtime<'_>) -> Result<()>,
    ) -> (Result<()>, String) {
        let mut out = Vec::new();
        let res = {
            let mut rt = Runtime::new(env, &self.k, &mut out);
            f(&mut rt)
        };
        (res, String::from_utf8(out).unwrap())
    }

    /// A sample livepatch module file outside the install directory.
    fn sample_ko(&self, name: &str, strings: &[&str]) -> PathBuf {
        let files = self.dir.path().join("files");
        fs::create_dir_all(&files).unwrap();
        write_ko(
            &files,
            &format!("{}.ko", name.replace('_', "-")),
            name,
            RELEASE,
            strings,
        )
    }

    fn patch_exists(&self, name: &str) -> bool {
        self.k.env.patch_dir(name).exists()
    }

    fn module_exists(&self, name: &str) -> bool {
        self.k.env.module_dir(name).exists()
    }
}

fn load_path(bed: &Bed, path: &std::path::Path) -> (Result<()>, String) {
    let p = path.to_string_lossy().into_owned();
    bed.run(|rt| load::load(rt, &p))
}

#[test]
fn load_happy_path_enables_patch_and_clears_marker() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    let ko = bed.sample_ko(SAMPLE, &["cmdline_proc_show"]);
    let (res, out) = load_path(&bed, &ko);
    res.unwrap();
    assert!(out.contains("loading patch module:"), "{out}");
    let p = sysfs::read_patch(&bed.env(), SAMPLE).unwrap();
    assert!(p.enabled && !p.transition);
    assert_eq!(p.objects[0].functions[0].name, "cmdline_proc_show");
    assert_eq!(bed.k.log(), vec![format!("load {SAMPLE}")]);
    // The marker existed while the kernel was loading, and is gone now.
    assert_eq!(*bed.k.marker_seen_at_load.borrow(), vec![true]);
    assert!(!marker_path(&bed.env(), RELEASE, SAMPLE).exists());
}

#[test]
fn load_of_loaded_patch_is_a_no_op() {
    let bed = Bed::new();
    let ko = bed.sample_ko(SAMPLE, &[]);
    load_path(&bed, &ko).0.unwrap();
    let (res, out) = load_path(&bed, &ko);
    res.unwrap();
    assert!(out.contains("already loaded and enabled"), "{out}");
    assert_eq!(bed.k.log().len(), 1);
}

#[test]
fn vermagic_mismatch_names_both_releases() {
    let bed = Bed::new();
    let files = bed.dir.path().join("files");
    fs::create_dir_all(&files).unwrap();
    let ko = write_ko(&files, "old.ko", "old", "6.1.0-10-amd64", &[]);
    let err = load_path(&bed, &ko).0.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::WrongKernel { .. }));
    assert!(msg.contains("built for kernel '6.1.0-10-amd64'"), "{msg}");
    assert!(
        msg.contains("the running kernel is '6.1.0-18-amd64'"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert!(bed.k.log().is_empty());
}

#[test]
fn not_a_livepatch_is_refused_before_the_kernel_sees_it() {
    let bed = Bed::new();
    let ko = bed.dir.path().join("plain.ko");
    let vermagic = format!("{RELEASE} SMP mod_unload ");
    fs::write(
        &ko,
        crate::fake::build_ko(&[("name", "plain"), ("vermagic", &vermagic)], &[]),
    )
    .unwrap();
    let err = load_path(&bed, &ko).0.unwrap_err();
    assert!(matches!(err, Error::NotLivepatch(_)), "{err}");
    assert!(err.to_string().contains("not a livepatch module"));
    assert!(bed.k.log().is_empty());

    let junk = bed.dir.path().join("junk.ko");
    fs::write(&junk, b"not an elf").unwrap();
    let err = load_path(&bed, &junk).0.unwrap_err();
    assert!(err.to_string().contains("not an ELF module"), "{err}");
}

#[test]
fn non_root_is_refused_for_every_changing_command() {
    let bed = Bed::new();
    let mut env = bed.env();
    env.is_root = false;
    let ko = bed.sample_ko(SAMPLE, &[]);
    let k = ko.to_string_lossy().into_owned();
    type Command<'k> = Box<dyn FnOnce(&mut Runtime<'_>) -> Result<()> + 'k>;
    let cases: Vec<(&str, Command<'_>)> = vec![
        ("load", Box::new(|rt| load::load(rt, &k))),
        ("load", Box::new(load::load_all)),
        ("unload", Box::new(|rt| unload::unload(rt, SAMPLE))),
        ("install", Box::new(|rt| install::install(rt, &ko, None))),
        (
            "uninstall",
            Box::new(|rt| install::uninstall(rt, SAMPLE, None)),
        ),
        ("signal", Box::new(transition::signal_command)),
        ("force", Box::new(|rt| transition::force_command(rt, None))),
    ];
    for (cmd, f) in cases {
        let err = bed.run_env(env.clone(), f).0.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("'kpatch {cmd}' must be run as root")
        );
    }
    assert!(bed.k.log().is_empty());
}

#[test]
fn missing_livepatch_sysfs_is_one_line() {
    let bed = Bed::new();
    fs::remove_dir_all(bed.env().livepatch_dir()).unwrap();
    let ko = bed.sample_ko(SAMPLE, &[]);
    let err = load_path(&bed, &ko).0.unwrap_err();
    assert!(matches!(err, Error::NoLivepatchSysfs(_)));
    assert!(
        err.to_string().contains("kernel/livepatch does not exist"),
        "{err}"
    );
    let err = bed.run(|rt| unload::unload(rt, SAMPLE)).0.unwrap_err();
    assert!(matches!(err, Error::NoLivepatchSysfs(_)));
    // list still works and says so.
    let r = report::list(&bed.env());
    assert!(!r.livepatch_supported);
    assert!(r.to_text().contains("no /sys/kernel/livepatch"));
}

#[test]
fn unknown_patch_name_is_not_found() {
    let bed = Bed::new();
    let err = bed.run(|rt| load::load(rt, "nonesuch")).0.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("can't find patch 'nonesuch': no such file, and nothing by that name is installed for kernel {RELEASE}")
    );
}

#[test]
fn kernel_refusal_is_explained_and_marker_cleared() {
    let bed = Bed::new();
    bed.k.define(SAMPLE, &[], Behaviour::Completes, false);
    bed.k
        .patches
        .borrow_mut()
        .get_mut(SAMPLE)
        .unwrap()
        .load_errno = Some(8); // ENOEXEC
    let ko = bed.sample_ko(SAMPLE, &[]);
    let err = load_path(&bed, &ko).0.unwrap_err();
    assert!(err.to_string().contains("invalid module format"), "{err}");
    assert!(!marker_path(&bed.env(), RELEASE, SAMPLE).exists());
    assert!(!bed.patch_exists(SAMPLE));
}

const BUSY_STACK: &str = "[<0>] msleep+0x2a/0x40\n\
[<0>] busymod_work_func+0x3e/0x60 [test_klp_callbacks_busy]\n\
[<0>] process_one_work+0x1c7/0x380\n\
[<0>] worker_thread+0x4d/0x380\n\
[<0>] kthread+0xd7/0x100\n";

#[test]
fn stalled_transition_is_reported_reversed_and_unloaded() {
    let bed = Bed::new();
    let name = "test_klp_callbacks_demo";
    bed.k.define(
        name,
        &[("test_klp_callbacks_busy", &[("busymod_work_func", 0)])],
        Behaviour::Stalls,
        false,
    );
    let env = bed.env();
    add_task(&env, 42, 42, "kworker/0:1", 'S', true, BUSY_STACK, 0);
    add_task(&env, 7, 7, "bash", 'S', false, "[<0>] do_wait+0x1/0x2\n", 1);
    let ko = bed.sample_ko(name, &["busymod_work_func", "test_klp_callbacks_busy"]);
    let (res, out) = load_path(&bed, &ko);
    let err = res.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Stalled {
                tasks: 1,
                what: "patching",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("rolled back and unloaded"), "{msg}");
    // The blocking task, named with the patched function, and its stack.
    assert!(
        out.contains("kernel thread 42 (kworker/0:1) pid 42 state S: in patched function busymod_work_func [test_klp_callbacks_busy]"),
        "{out}"
    );
    assert!(
        out.contains("    [<0>] process_one_work+0x1c7/0x380"),
        "{out}"
    );
    assert!(
        !out.contains("bash"),
        "a switched task is not a blocker: {out}"
    );
    // Kernel threads are not interrupted; the reversal and unload happened.
    let log = bed.k.log();
    assert_eq!(
        log,
        vec![
            format!("load {name}"),
            format!("write sys/kernel/livepatch/{name}/enabled=0"),
            format!("delete {name}"),
        ]
    );
    assert!(!bed.patch_exists(name));
    assert!(!bed.module_exists(name));
    assert!(sysfs::patch_names(&env).is_empty());
    assert!(!marker_path(&env, RELEASE, name).exists());
}

#[test]
fn blocking_user_task_is_interrupted_and_transition_finishes() {
    let bed = Bed::new();
    bed.k.define(
        SAMPLE,
        &[("vmlinux", CMDLINE)],
        Behaviour::CompletesOnInterrupt,
        false,
    );
    let env = bed.env();
    add_task(
        &env,
        300,
        301,
        "cat",
        'S',
        false,
        "[<0>] cmdline_proc_show+0x10/0x30\n",
        0,
    );
    add_task(
        &env,
        400,
        400,
        "stuck",
        'D',
        false,
        "[<0>] io_schedule+0x1/0x2\n",
        0,
    );
    let ko = bed.sample_ko(SAMPLE, &["cmdline_proc_show"]);
    let (res, out) = load_path(&bed, &ko);
    res.unwrap();
    assert!(out.contains("patch transition has stalled!"), "{out}");
    assert!(out.contains("signalled task 301 (cat)"), "{out}");
    assert!(
        out.contains("task 400 (stuck) is not in an interruptible sleep (state D)"),
        "{out}"
    );
    assert!(out.contains("transition complete"), "{out}");
    assert_eq!(
        bed.k.log(),
        vec![format!("load {SAMPLE}"), "interrupt 301".to_string()]
    );
    assert!(sysfs::read_patch(&env, SAMPLE).unwrap().enabled);
}

#[test]
fn old_kernels_signal_attribute_is_used_when_present() {
    let bed = Bed::new();
    bed.k.define(SAMPLE, &[], Behaviour::Stalls, false);
    let ko = bed.sample_ko(SAMPLE, &[]);
    // Create the attribute as soon as the patch appears: pre-create the dir.
    put(&bed.env().patch_dir(SAMPLE).join("signal"), "");
    let (res, out) = load_path(&bed, &ko);
    assert!(res.is_err());
    assert!(out.contains("signalling the tasks blocking"), "{out}");
    assert!(bed
        .k
        .log()
        .contains(&format!("write sys/kernel/livepatch/{SAMPLE}/signal=1")));
}

#[test]
fn reverse_that_stalls_keeps_the_marker_and_says_so() {
    let bed = Bed::new();
    bed.k.define(
        SAMPLE,
        &[("vmlinux", CMDLINE)],
        Behaviour::ReverseStalls,
        false,
    );
    add_task(
        &bed.env(),
        9,
        9,
        "x",
        'D',
        false,
        "[<0>] cmdline_proc_show+0x1/0x2\n",
        0,
    );
    let ko = bed.sample_ko(SAMPLE, &["cmdline_proc_show"]);
    let err = load_path(&bed, &ko).0.unwrap_err();
    assert!(
        err.to_string().contains("reverse transition stalled too"),
        "{err}"
    );
    assert!(bed.module_exists(SAMPLE));
    assert!(marker_path(&bed.env(), RELEASE, SAMPLE).exists());
}

#[test]
fn unload_disables_and_removes_the_module() {
    let bed = Bed::new();
    let ko = bed.sample_ko(SAMPLE, &[]);
    load_path(&bed, &ko).0.unwrap();
    let (res, out) = bed.run(|rt| unload::unload(rt, "livepatch-sample.ko"));
    res.unwrap();
    assert!(
        out.contains("disabling patch module: livepatch_sample"),
        "{out}"
    );
    assert!(
        out.contains("unloading patch module: livepatch_sample"),
        "{out}"
    );
    assert!(!bed.patch_exists(SAMPLE) && !bed.module_exists(SAMPLE));
}

#[test]
fn unload_that_stalls_is_reversed_and_patch_stays() {
    let bed = Bed::new();
    bed.k.define(
        SAMPLE,
        &[("vmlinux", CMDLINE)],
        Behaviour::DisableStalls,
        false,
    );
    let ko = bed.sample_ko(SAMPLE, &[]);
    load_path(&bed, &ko).0.unwrap();
    add_task(
        &bed.env(),
        5,
        6,
        "reader",
        'R',
        false,
        "[<0>] livepatch_cmdline_proc_show+0x5/0x9 [livepatch_sample]\n",
        1,
    );
    let (res, out) = bed.run(|rt| unload::unload(rt, SAMPLE));
    let err = res.unwrap_err();
    assert!(matches!(
        err,
        Error::Stalled {
            what: "unpatching",
            ..
        }
    ));
    assert!(err.to_string().contains("re-enabled"), "{err}");
    assert!(
        out.contains("in patched function livepatch_cmdline_proc_show [livepatch_sample]"),
        "{out}"
    );
    let p = sysfs::read_patch(&bed.env(), SAMPLE).unwrap();
    assert!(p.enabled && !p.transition);
    assert!(bed.module_exists(SAMPLE));
}

#[test]
fn unload_errors() {
    let bed = Bed::new();
    let err = bed.run(|rt| unload::unload(rt, "nothing")).0.unwrap_err();
    assert_eq!(err.to_string(), "patch module 'nothing' is not loaded");
    put(&bed.env().module_dir("ext4").join("refcnt"), "3\n");
    put(&bed.env().module_dir("ext4").join("taint"), "\n");
    let err = bed.run(|rt| unload::unload(rt, "ext4")).0.unwrap_err();
    assert!(matches!(err, Error::NotAPatchModule(_)), "{err}");
    assert!(bed.k.log().is_empty());
}

#[test]
fn unload_all_removes_patches_and_orphans() {
    let bed = Bed::new();
    let a = bed.sample_ko("patch_a", &[]);
    let b = bed.sample_ko("patch_b", &[]);
    load_path(&bed, &a).0.unwrap();
    load_path(&bed, &b).0.unwrap();
    // An orphan: livepatch module loaded, patch already disabled.
    put(&bed.env().module_dir("patch_c").join("refcnt"), "0\n");
    put(&bed.env().module_dir("patch_c").join("taint"), "K\n");
    bed.run(unload::unload_all).0.unwrap();
    let deletes: Vec<String> = bed
        .k
        .log()
        .into_iter()
        .filter(|l| l.starts_with("delete"))
        .collect();
    // Newest first, then the orphan.
    assert_eq!(
        deletes,
        vec!["delete patch_b", "delete patch_a", "delete patch_c"]
    );
}

#[test]
fn atomic_replace_unloads_the_replaced_module() {
    let bed = Bed::new();
    bed.k.define(
        "lp_v1",
        &[("vmlinux", CMDLINE)],
        Behaviour::Completes,
        false,
    );
    bed.k
        .define("lp_v2", &[("vmlinux", CMDLINE)], Behaviour::Completes, true);
    load_path(&bed, &bed.sample_ko("lp_v1", &[])).0.unwrap();
    let (res, out) = load_path(&bed, &bed.sample_ko("lp_v2", &[]));
    res.unwrap();
    assert!(
        out.contains("lp_v2 replaced lp_v1; unloading lp_v1"),
        "{out}"
    );
    assert_eq!(sysfs::patch_names(&bed.env()), vec!["lp_v2"]);
    assert!(!bed.module_exists("lp_v1"));
}

#[test]
fn overlapping_patch_is_reported_with_the_winner() {
    let bed = Bed::new();
    bed.k.define(
        "lp_a",
        &[("vmlinux", CMDLINE), ("ext4", &[("ext4_sync_fs", 2)])],
        Behaviour::Completes,
        false,
    );
    load_path(&bed, &bed.sample_ko("lp_a", &[])).0.unwrap();
    let (res, out) = load_path(
        &bed,
        &bed.sample_ko("lp_b", &["cmdline_proc_show", "ext4_sync_fs"]),
    );
    res.unwrap();
    assert!(
        out.contains("lp_b patches functions that loaded patches already patch"),
        "{out}"
    );
    assert!(
        out.contains("vmlinux:cmdline_proc_show,1 is patched by lp_a; lp_b will win"),
        "{out}"
    );
    // ext4 is not named by lp_b, so its ext4_sync_fs is another object's.
    assert!(!out.contains("ext4_sync_fs"), "{out}");
}

#[test]
fn install_list_uninstall_layout() {
    let bed = Bed::new();
    let ko = bed.sample_ko(SAMPLE, &[]);
    let (res, out) = bed.run(|rt| install::install(rt, &ko, None));
    res.unwrap();
    assert!(out.contains(&format!("({RELEASE})")), "{out}");
    let dest = bed.env().lib_dir.join(RELEASE).join("livepatch-sample.ko");
    assert_eq!(fs::read(&dest).unwrap(), fs::read(&ko).unwrap());
    // Installing the same file again is an error; another release must match vermagic.
    let err = bed.run(|rt| install::install(rt, &ko, None)).0.unwrap_err();
    assert!(matches!(err, Error::AlreadyInstalled(..)));
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
    bed.run(|rt| load::load(rt, "livepatch-sample")).0.unwrap();

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
    bed.run(|rt| load::load(rt, SAMPLE)).0.unwrap();
    let v: serde_json::Value =
        serde_json::to_value(report::info(&bed.env(), "livepatch-sample.ko").unwrap()).unwrap();
    assert_eq!(v["name"], SAMPLE);
    assert_eq!(v["modinfo"][0], serde_json::json!(["livepatch", "Y"]));
    assert_eq!(v["loaded"]["objects"][0]["name"], "vmlinux");
    assert_eq!(v["loaded"]["objects"][0]["functions"][0]["sympos"], 1);
    let err = report::info(&bed.env(), "nothing").unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
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

#[test]
fn module_that_registers_no_patch_is_unloaded() {
    let bed = Bed::new();
    let ko = bed.sample_ko(SAMPLE, &[]);
    // Make the fake kernel's patch directory vanish right after the load,
    // as for a module whose init never calls klp_enable_patch().
    bed.k.define(SAMPLE, &[], Behaviour::Completes, false);
    bed.k.patches.borrow_mut().get_mut(SAMPLE).unwrap().no_patch = true;
    let err = load_path(&bed, &ko).0.unwrap_err();
    assert!(err.to_string().contains("registered no patch"), "{err}");
    assert!(!bed.module_exists(SAMPLE));
    assert!(!marker_path(&bed.env(), RELEASE, SAMPLE).exists());
}

#[test]
fn unwritable_marker_directory_only_warns() {
    let bed = Bed::new();
    let mut env = bed.env();
    // A file where the install directory should be: the marker cannot be written.
    env.lib_dir = bed.dir.path().join("not-a-dir");
    fs::write(&env.lib_dir, "").unwrap();
    let ko = bed.sample_ko(SAMPLE, &[]);
    let p = ko.to_string_lossy().into_owned();
    let (res, out) = bed.run_env(env, |rt| load::load(rt, &p));
    res.unwrap();
    assert!(
        out.contains("warning: cannot write the interrupted-load marker"),
        "{out}"
    );
}
