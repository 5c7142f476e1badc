// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch status` (states, effective version, health and exit code, metrics) and the
//! refusal of unsigned modules under lockdown, against the fake kernel.

use std::fs;

use super::{Bed, CMDLINE, SAMPLE};
use crate::error::Error;
use crate::fake::{put, Behaviour, RELEASE};
use crate::status::{self, Health, State};
use crate::{install, load, signature};

#[test]
fn states_effective_version_and_health() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    let ko = bed.sample_ko(SAMPLE, &[]);
    let r = status::status(&bed.env());
    assert_eq!(
        (r.health, r.exit_code),
        (Health::Ok, 0),
        "nothing installed"
    );
    assert_eq!(r.effective_version, RELEASE);

    bed.run(|rt| install::install(rt, &ko, None)).0.unwrap();
    let r = status::status(&bed.env());
    assert_eq!(r.patches[0].state, State::InstalledNotLoaded);
    assert_eq!((r.health, r.exit_code), (Health::Critical, 2));
    assert_eq!(r.patches[0].signed, Some(false));

    bed.run(|rt| load::load(rt, SAMPLE, &[])).0.unwrap();
    let r = status::status(&bed.env());
    assert_eq!(r.patches.len(), 1, "{:?}", r.patches);
    assert_eq!(r.patches[0].state, State::Loaded);
    assert_eq!(r.patches[0].functions, 1);
    assert_eq!(r.effective_version, format!("{RELEASE}+sample"));
    assert_eq!(r.health, Health::Ok);
    let text = r.to_text();
    assert!(
        text.contains(&format!("effective: {RELEASE}+sample")),
        "{text}"
    );
    assert!(text.contains("status: ok (exit 0)"), "{text}");

    // Loaded but not installed: gone after a reboot.
    let dest = bed.env().lib_dir.join(RELEASE).join("livepatch-sample.ko");
    fs::remove_file(&dest).unwrap();
    let r = status::status(&bed.env());
    assert_eq!(r.health, Health::Warning);
    assert!(r.patches[0]
        .note
        .as_deref()
        .unwrap()
        .contains("not installed"));
}

#[test]
fn interrupted_boot_load_is_reported_as_skipped() {
    let bed = Bed::new();
    let ko = bed.sample_ko(SAMPLE, &[]);
    bed.run(|rt| install::install(rt, &ko, None)).0.unwrap();
    let marker = install::marker_path(&bed.env(), RELEASE, SAMPLE);
    put(
        &marker,
        "load of livepatch_sample started 2026-12-01 by pid 1\n",
    );
    let r = status::status(&bed.env());
    assert_eq!(r.patches[0].state, State::SkippedInterrupted);
    assert_eq!(r.exit_code, 2);
    assert!(r.patches[0]
        .note
        .as_deref()
        .unwrap()
        .contains("kpatch install"));
    let prom = r.to_prometheus(1_796_144_400);
    assert!(prom.contains("kpatch_status 2\n"), "{prom}");
    assert!(
        prom.contains(
            "kpatch_patch_state{patch=\"livepatch_sample\",state=\"skipped-interrupted\"} 1\n"
        ),
        "{prom}"
    );
    assert!(
        prom.contains("kpatch_patch_state{patch=\"livepatch_sample\",state=\"loaded\"} 0\n"),
        "{prom}"
    );
    assert!(
        prom.contains("kpatch_patches{state=\"skipped-interrupted\"} 1\n"),
        "{prom}"
    );
    // Every sample line belongs to a metric announced by HELP and TYPE before it.
    let mut declared = Vec::new();
    for line in prom.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.push(rest.split_whitespace().next().unwrap().to_string());
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
        }
    }
}

#[test]
fn no_livepatch_support_is_unknown() {
    let bed = Bed::new();
    fs::remove_dir_all(bed.env().livepatch_dir()).unwrap();
    let r = status::status(&bed.env());
    assert_eq!((r.health, r.exit_code), (Health::Unknown, 3));
}

#[test]
fn unsigned_module_is_refused_under_lockdown_before_loading() {
    let bed = Bed::new();
    bed.k
        .define(SAMPLE, &[("vmlinux", CMDLINE)], Behaviour::Completes, false);
    let ko = bed.sample_ko(SAMPLE, &[]);
    put(
        &bed.env().sys.join("kernel/security/lockdown"),
        "none [integrity] confidentiality\n",
    );
    let (res, _) = super::load_path(&bed, &ko);
    let err = res.unwrap_err();
    assert!(matches!(err, Error::Unsigned { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("locked down (integrity"), "{msg}");
    assert!(
        msg.contains("--sign-key") && msg.contains("mokutil --import"),
        "{msg}"
    );
    assert!(
        bed.k.log().is_empty(),
        "nothing reached the kernel: {:?}",
        bed.k.log()
    );
    assert!(!install::marker_path(&bed.env(), RELEASE, SAMPLE).exists());

    // The same module with a signature trailer goes on to the kernel.
    let mut bytes = fs::read(&ko).unwrap();
    bytes.extend_from_slice(signature::SIG_MAGIC);
    fs::write(&ko, bytes).unwrap();
    super::load_path(&bed, &ko).0.unwrap();
    assert!(bed.patch_exists(SAMPLE));
    let r = status::status(&bed.env());
    assert!(r.signatures.requires_signature());
    assert!(
        r.to_text().contains("signatures: required"),
        "{}",
        r.to_text()
    );
}
