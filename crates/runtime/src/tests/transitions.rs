// SPDX-License-Identifier: GPL-2.0-only
//! Transitions: stalls, signalling, reversal, unload, replace, overlaps.

use super::{load_path, Bed, CMDLINE, SAMPLE};
use crate::error::Error;
use crate::fake::{add_task, put, Behaviour, RELEASE};
use crate::install::marker_path;
use crate::{load, sysfs, unload};

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
    let v2 = bed.sample_ko("lp_v2", &[]).to_string_lossy().into_owned();
    let (res, out) = bed.run(|rt| load::load(rt, &v2, &["replace=1".to_string()]));
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
