//! Debian packages: the project's own `kpatch-rs_*.deb` and a patch's
//! `livepatch-<name>_<ver>_amd64.deb` (`kpatch-build --deb`), both lintian-clean (their
//! overrides say why each remaining tag does not apply), with the contents and
//! relationships Debian expects; the patch package's maintainer scripts run against
//! Debian's real 6.1 kernel under QEMU, as dpkg runs them (`postinst configure`, `prerm
//! remove`, `postrm purge`): installed for kpatch.service and loaded when the running
//! kernel is its kernel, unloaded and uninstalled on removal.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

fn output(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn lintian_clean(deb: &Path) {
    let o = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--no-tag-display-limit"])
        .arg(deb)
        .output()
        .expect("lintian (scripts/install-deps.sh installs it)");
    assert!(
        o.status.success(),
        "lintian {}:\n{}{}",
        deb.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn project_package_is_lintian_clean_with_man_pages_completions_and_service() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        bin_dir.join("kpatch").exists(),
        "run with cargo test --workspace"
    );
    let out = tempfile::tempdir().unwrap();
    let deb = dist::project_package(&dist::ProjectOptions::new(&bin_dir, out.path())).unwrap();
    lintian_clean(&deb);
    let files = output(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for f in [
        "./usr/sbin/kpatch",
        "./usr/bin/kpatch-build",
        "./usr/libexec/kpatch/create-diff-object",
        "./lib/systemd/system/kpatch.service",
        "./usr/share/man/man8/kpatch.8.gz",
        "./usr/share/man/man8/kpatch-load.8.gz",
        "./usr/share/man/man1/kpatch-build.1.gz",
        "./usr/share/bash-completion/completions/kpatch",
        "./usr/share/zsh/vendor-completions/_kpatch",
    ] {
        assert!(
            files.contains(f),
            "{f} missing from {}:\n{files}",
            deb.display()
        );
    }
    let info = output(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("Depends: libc6"), "{info}");
    assert!(info.contains("postinst"), "{info}");
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn patch_package_installs_loads_and_removes_in_debian_6_1() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let out = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args([
            "-a",
            kernel.release(),
            "-n",
            "meminfo",
            "--deb",
            "--no-sign",
        ])
        .args([
            "--deb-maintainer",
            "Live Patch Team <livepatch@example.org>",
            "-o",
        ])
        .arg(out.path())
        .arg(&example)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deb: PathBuf = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("no .deb written");
    let file = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file.starts_with("livepatch-meminfo_") && file.ends_with("_amd64.deb"),
        "{file}"
    );
    lintian_clean(&deb);
    let info = output(Command::new("dpkg-deb").arg("-I").arg(&deb));
    let version = &kernel.resolved.version;
    let depends = format!("linux-image-{} (= {version})", kernel.release());
    assert!(info.contains(&depends), "no {depends}:\n{info}");

    // The package's files and maintainer scripts, as dpkg would lay them out.
    let root = out.path().join("root");
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let control = out.path().join("control");
    output(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let mut img = Initramfs::with_busybox().unwrap();
    img.add_host_tree(&root.join("usr"), "/usr").unwrap();
    img.add_host_tree(&control, "/var/lib/dpkg/info/livepatch-meminfo")
        .unwrap();
    img.add_host_binary(&common::kpatch_binary(), "/usr/sbin")
        .unwrap();
    // debianutils' ischroot: this is the running system.
    img.add_file("/usr/bin/ischroot", "#!/bin/sh\nexit 1\n", 0o755)
        .unwrap();
    let scripts = "/var/lib/dpkg/info/livepatch-meminfo";
    let check = "grep -q '^VMALLOCChunk:' /proc/meminfo";
    let installed = format!("/var/lib/kpatch/{}/livepatch-meminfo.ko", kernel.release());
    let scenario = Scenario::new("patch-package-6.1")
        .step(
            "before",
            &format!("if {check}; then fail 'patched before'; fi"),
        )
        .step(
            "postinst-configure",
            &format!("PATH=/usr/sbin:/usr/bin:$PATH sh {scripts}/postinst configure"),
        )
        .step(
            "loaded",
            &format!("{check} || fail 'not loaded by postinst'"),
        )
        .step(
            "installed",
            &format!("[ -e {installed} ] || fail 'not installed for kpatch.service'"),
        )
        .step(
            "status-ok",
            "/usr/sbin/kpatch status; rc=$?; [ $rc = 0 ] || fail \"exit $rc, want 0\"",
        )
        .step(
            "prerm-remove",
            &format!("PATH=/usr/sbin:/usr/bin:$PATH sh {scripts}/prerm remove"),
        )
        .step(
            "unloaded",
            &format!(
                "if {check}; then fail 'still patched'; fi; \
                 [ -z \"$(ls /sys/kernel/livepatch)\" ] || fail 'a patch is left'; \
                 [ ! -e {installed} ] || fail 'still installed'"
            ),
        )
        .step(
            "postrm-purge",
            &format!("PATH=/usr/sbin:/usr/bin:$PATH sh {scripts}/postrm purge"),
        );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    report.ensure_passed().unwrap();
}
