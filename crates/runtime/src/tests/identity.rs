// SPDX-License-Identifier: GPL-2.0-only
//! Load-time identity on the fake tree: the build-ids a module records against
//! `/sys/kernel/notes` and `/sys/module/<name>/notes`.

use std::fs;
use std::path::PathBuf;

use super::{load_path, Bed, CMDLINE, SAMPLE};
use crate::error::Error;
use crate::fake::{build_ko, Behaviour, RELEASE};
use crate::{identity, report};

const KERNEL_ID: &str = "6a2b4ac77585b8cf102cba771300e573c8489b69";
const OTHER_ID: &str = "00112233445566778899aabbccddeeff00112233";
const XFS_ID: &str = "d849d25652ba8f994a0f4f64b45f2e2c17224ef8";

/// ELF notes holding one GNU build-id, as `/sys/kernel/notes` shows them.
fn notes(hex: &str) -> Vec<u8> {
    let id: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut v = Vec::new();
    for w in [4u32, id.len() as u32, 3] {
        v.extend(w.to_le_bytes());
    }
    v.extend(b"GNU\0");
    v.extend(&id);
    v
}

fn ko_with_ids(bed: &Bed, ids: &[(&str, &str)]) -> PathBuf {
    let vermagic = format!("{RELEASE} SMP preempt mod_unload modversions ");
    let values: Vec<String> = ids.iter().map(|(o, id)| format!("{o}:{id}")).collect();
    let mut info = vec![
        ("livepatch", "Y"),
        ("license", "GPL"),
        ("name", SAMPLE),
        ("vermagic", vermagic.as_str()),
    ];
    for v in &values {
        info.push(("kpatch_build_id", v.as_str()));
    }
    let dir = bed.dir.path().join("files");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("livepatch-sample.ko");
    fs::write(&path, build_ko(&info, &["cmdline_proc_show"])).unwrap();
    path
}

fn running_kernel(bed: &Bed, id: &str) {
    let p = bed.env().sys.join("kernel/notes");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, notes(id)).unwrap();
}

#[test]
fn matching_build_id_loads() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    running_kernel(&bed, KERNEL_ID);
    let ko = ko_with_ids(&bed, &[("vmlinux", KERNEL_ID)]);
    load_path(&bed, &ko).0.unwrap();
    assert_eq!(bed.k.log(), vec![format!("load {SAMPLE}")]);
}

#[test]
fn another_build_is_refused_naming_both_ids_unless_forced() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    running_kernel(&bed, OTHER_ID);
    let ko = ko_with_ids(&bed, &[("vmlinux", KERNEL_ID)]);
    let err = load_path(&bed, &ko).0.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::IdentityMismatch { .. }), "{msg}");
    assert!(msg.contains(KERNEL_ID) && msg.contains(OTHER_ID), "{msg}");
    assert!(msg.contains("--force-mismatch"), "{msg}");
    assert!(bed.k.log().is_empty(), "nothing may reach the kernel");

    let mut env = bed.env();
    env.checks.force_mismatch = true;
    let p = ko.to_string_lossy().into_owned();
    let (res, out) = bed.run_env(env, |rt| crate::load::load(rt, &p, &[]));
    res.unwrap();
    assert!(out.contains("warning: --force-mismatch"), "{out}");
    assert_eq!(bed.k.log(), vec![format!("load {SAMPLE}")]);
}

#[test]
fn modules_checked_when_loaded_and_named_when_not() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    running_kernel(&bed, KERNEL_ID);
    let ko = ko_with_ids(&bed, &[("vmlinux", KERNEL_ID), ("xfs", XFS_ID)]);
    // xfs not loaded: said, and loaded anyway.
    let (res, out) = load_path(&bed, &ko);
    res.unwrap();
    assert!(out.contains("xfs is not loaded"), "{out}");

    // xfs loaded, another build of it: refused.
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    running_kernel(&bed, KERNEL_ID);
    let notes_dir = bed.env().module_dir("xfs").join("notes");
    fs::create_dir_all(&notes_dir).unwrap();
    fs::write(notes_dir.join(".note.gnu.build-id"), notes(OTHER_ID)).unwrap();
    let ko = ko_with_ids(&bed, &[("vmlinux", KERNEL_ID), ("xfs", XFS_ID)]);
    let err = load_path(&bed, &ko).0.unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "xfs build-id {XFS_ID} expected, {OTHER_ID} running"
        )),
        "{err}"
    );

    // kpatch info shows both, with what runs.
    let info = report::info(&bed.env(), &ko.to_string_lossy()).unwrap();
    let st: Vec<identity::Status> = info.identity.iter().map(|c| c.status).collect();
    assert_eq!(
        st,
        vec![identity::Status::Matches, identity::Status::Differs]
    );
    let text = info.to_text();
    assert!(
        text.contains("Built against:") && text.contains(OTHER_ID),
        "{text}"
    );
}

#[test]
fn modules_without_records_are_not_checked() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    running_kernel(&bed, OTHER_ID);
    let ko = bed.sample_ko(SAMPLE, &["cmdline_proc_show"]);
    load_path(&bed, &ko).0.unwrap();
}
