// SPDX-License-Identifier: GPL-2.0-only
//! Checks before the kernel is touched, refusals, and the marker's edge cases.

use std::fs;

use super::{load_path, Bed, CMDLINE, SAMPLE};
use crate::env::Runtime;
use crate::error::{Error, Result};
use crate::fake::{write_ko, Behaviour, RELEASE};
use crate::install::{self, marker_path};
use crate::{load, report, sysfs, transition, unload};

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
        ("load", Box::new(|rt| load::load(rt, &k, &[]))),
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
    let err = bed.run(|rt| load::load(rt, "nonesuch", &[])).0.unwrap_err();
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

/// A pre-patch callback's refusal comes back as its return value (here EPERM,
/// which alone would suggest a locked-down kernel): the kernel's log says what
/// happened, and the error says it.
#[test]
fn refusing_pre_patch_callback_is_named() {
    let bed = Bed::new();
    bed.k.define(SAMPLE, &[], Behaviour::Completes, false);
    {
        let mut p = bed.k.patches.borrow_mut();
        let spec = p.get_mut(SAMPLE).unwrap();
        spec.load_errno = Some(1); // EPERM
        spec.load_log = vec![
            "random: crng reseeded".to_string(),
            format!("livepatch: enabling patch '{SAMPLE}'"),
            "livepatch: pre-patch callback failed for object 'vmlinux'".to_string(),
            format!("livepatch: failed to enable patch '{SAMPLE}'"),
        ];
    }
    let ko = bed.sample_ko(SAMPLE, &[]);
    let (res, out) = load_path(&bed, &ko);
    let err = res.unwrap_err().to_string();
    assert!(
        err.contains("pre-patch callback for vmlinux refused the patch"),
        "{err}"
    );
    assert!(!err.contains("locked down"), "{err}");
    assert!(
        out.contains("kernel: livepatch: pre-patch callback failed for object 'vmlinux'"),
        "{out}"
    );
    assert!(!out.contains("crng"), "{out}");
    assert!(!marker_path(&bed.env(), RELEASE, SAMPLE).exists());
    assert!(!bed.patch_exists(SAMPLE));
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
    let (res, out) = bed.run_env(env, |rt| load::load(rt, &p, &[]));
    res.unwrap();
    assert!(
        out.contains("warning: cannot write the interrupted-load marker"),
        "{out}"
    );
}
