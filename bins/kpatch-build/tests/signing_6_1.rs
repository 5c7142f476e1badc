//! Signed patch modules and `kpatch status` against Debian 12's 6.1 kernel under QEMU.
//!
//! kpatch-build makes a key pair (`--create-sign-key`), signs a module with it and the
//! kernel's own `sign-file` (the hash of the target's `CONFIG_MODULE_SIG_HASH`), and builds
//! the same patch unsigned. Booted with `module.sig_enforce=1`, `kpatch load` refuses the
//! unsigned module itself, before `finit_module`, saying why and what to do; the kernel
//! refuses the module signed by a key it does not trust (only a MOK enrolled through
//! shim under Secure Boot makes it trusted), and nothing is left behind either way.
//! Booted without enforcement, the signed module loads (tainting `E`: the key is not
//! trusted) and `kpatch status` reports it in text, JSON and node_exporter's format with
//! the documented exit codes.

mod common;

use std::path::Path;
use std::process::Command;

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

const TRAILER: &[u8] = b"~Module signature appended~\n";

fn kpatch_build(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn build(release: &str, out: &Path, name: &str, sign: &[&std::ffi::OsStr]) -> serde_json::Value {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/meminfo.patch");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "-a".as_ref(),
        release.as_ref(),
        "-n".as_ref(),
        name.as_ref(),
        "--json".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    args.extend_from_slice(sign);
    args.push(example.as_os_str());
    let (ok, stdout, stderr) = kpatch_build(&args);
    assert!(ok, "kpatch-build {name} failed:\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn signed_modules_sig_enforce_and_status_6_1() {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let out = tempfile::tempdir().unwrap();
    let key = out.path().join("mok.key");
    let cert = out.path().join("mok.der");
    let (ok, stdout, stderr) = kpatch_build(&[
        "--create-sign-key".as_ref(),
        "--sign-key".as_ref(),
        key.as_os_str(),
        "--sign-cert".as_ref(),
        cert.as_os_str(),
    ]);
    assert!(ok, "--create-sign-key failed:\n{stderr}");
    assert!(stdout.contains("mokutil --import"), "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the private key is readable by others");

    let signed = build(
        kernel.release(),
        out.path(),
        "signed",
        &[
            "--sign-key".as_ref(),
            key.as_os_str(),
            "--sign-cert".as_ref(),
            cert.as_os_str(),
        ],
    );
    assert_eq!(signed["signed"], "sha256", "{signed}");
    let unsigned = build(
        kernel.release(),
        out.path(),
        "unsigned",
        &["--no-sign".as_ref()],
    );
    assert!(unsigned["signed"].is_null(), "{unsigned}");
    let signed_ko = out.path().join("livepatch-signed.ko");
    let unsigned_ko = out.path().join("livepatch-unsigned.ko");
    assert!(std::fs::read(&signed_ko).unwrap().ends_with(TRAILER));
    assert!(!std::fs::read(&unsigned_ko).unwrap().ends_with(TRAILER));

    let check = "grep -q '^VMALLOCChunk:' /proc/meminfo";
    let nothing_left = "[ -z \"$(ls /sys/kernel/livepatch)\" ] || fail 'a patch was left'; \
                        if grep -q '^livepatch_' /proc/modules; then fail 'a module was left'; fi";
    let boot = |enforce: bool| {
        let mut img = Initramfs::with_busybox().unwrap();
        let kpatch = img
            .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
            .unwrap();
        let s_ko = img.add_module(&signed_ko).unwrap();
        let u_ko = img.add_module(&unsigned_ko).unwrap();
        let scenario = if enforce {
            Scenario::new("sig-enforce-6.1")
                .step(
                    "enforced",
                    "grep -qx Y /sys/module/module/parameters/sig_enforce || fail 'not enforced'",
                )
                .step(
                    "unsigned-refused",
                    &format!(
                        "if {kpatch} load {u_ko} 2>/tmp/e; then fail 'unsigned module loaded'; fi; \
                         cat /tmp/e; grep -q 'not signed, and the kernel enforces module signatures (module.sig_enforce=1)' /tmp/e \
                         || fail 'no reason given'; grep -q 'mokutil' /tmp/e || fail 'no advice'"
                    ),
                )
                .step("unsigned-nothing-left", nothing_left)
                .step(
                    "untrusted-key-refused",
                    &format!(
                        "if {kpatch} load {s_ko} 2>/tmp/e; then fail 'untrusted key accepted'; fi; \
                         cat /tmp/e"
                    ),
                )
                .step("untrusted-nothing-left", nothing_left)
                .step(
                    "status-none",
                    &format!(
                        "{kpatch} status --json > /tmp/s; rc=$?; cat /tmp/s; [ $rc = 0 ] || fail \"exit $rc\"; \
                         grep -q '\"sig_enforce\": true' /tmp/s || fail 'policy not shown'"
                    ),
                )
        } else {
            Scenario::new("signed-status-6.1")
                .step(
                    "before",
                    &format!("if {check}; then fail 'patched before loading'; fi"),
                )
                .step("load-signed", &format!("{kpatch} load {s_ko}"))
                .step("patched", &format!("{check} || fail 'not patched'"))
                .step(
                    "taint",
                    // K (livepatch, 32768) and E (signature not verified: the key is not
                    // trusted by this kernel, 8192).
                    "t=$(cat /proc/sys/kernel/tainted); echo tainted=$t; \
                     [ $((t & 32768)) != 0 ] || fail 'no K taint'; \
                     [ $((t & 8192)) != 0 ] || fail 'no E taint'",
                )
                .step(
                    "status-text",
                    &format!(
                        "{kpatch} status; rc=$?; [ $rc = 1 ] || fail \"exit $rc, want 1 (loaded, not installed)\""
                    ),
                )
                .step(
                    "status-json",
                    &format!(
                        "{kpatch} status --json > /tmp/s; cat /tmp/s; \
                         grep -q '\"effective_version\": \"{}+signed\"' /tmp/s || fail 'effective version'; \
                         grep -q '\"state\": \"loaded\"' /tmp/s || fail 'state'",
                        kernel.release()
                    ),
                )
                .step(
                    "status-prometheus",
                    &format!(
                        "{kpatch} status --prometheus /tmp/k.prom > /dev/null; cat /tmp/k.prom; \
                         grep -qx 'kpatch_status 1' /tmp/k.prom || fail 'kpatch_status'; \
                         grep -qx 'kpatch_patch_state{{patch=\"livepatch_signed\",state=\"loaded\"}} 1' /tmp/k.prom \
                         || fail 'patch state'"
                    ),
                )
                .step("unload", &format!("{kpatch} unload livepatch_signed"))
                .step(
                    "after",
                    &format!("if {check}; then fail 'patched after unloading'; fi"),
                )
        };
        let mut guest = Guest::new(&kernel);
        if enforce {
            guest = guest.append("module.sig_enforce=1");
        }
        let report = guest.run(img, &scenario).unwrap();
        report.ensure_passed().unwrap();
        report
    };
    let enforced = boot(true);
    let refused = enforced
        .step("untrusted-key-refused")
        .unwrap()
        .output
        .join("\n");
    assert!(
        refused.contains("does not trust this module's signature")
            && refused.contains("mokutil --import"),
        "the kernel's refusal is not explained: {refused}"
    );
    boot(false);
}
