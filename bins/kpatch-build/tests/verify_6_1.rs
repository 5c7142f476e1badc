//! Proof before patching, the negative cases (issue 13), against Debian 12's 6.1 kernel:
//!
//! - build time: the original rebuilt with one configuration option flipped (`-c`), and
//!   from a copy of the tree with one extra line in the patched function (`-s`), are
//!   refused (exit 2) naming the function and the likely cause;
//! - load time: a module whose recorded vmlinux build-id is another build's is refused
//!   by `kpatch load` naming both ids, and loads with `--force-mismatch`;
//! - run-pre: with a kprobe in the patched function, `kpatch verify` and `kpatch load
//!   --verify` name the difference, and pass again once it is removed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

fn kpatch_cache() -> PathBuf {
    std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".kpatch"))
}

fn meminfo_case() -> common::Case {
    common::corpus("6.1")
        .into_iter()
        .find(|c| c.name == "01-meminfo-string")
        .expect("meminfo patch")
}

/// Runs kpatch-build with `--json`; its exit code, stderr and JSON output.
fn build(
    release: &str,
    name: &str,
    out: &Path,
    extra: &[&std::ffi::OsStr],
) -> (i32, String, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(["-a", release, "-n", name, "--json", "-o"])
        .arg(out)
        .args(extra)
        .arg(&meminfo_case().path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let json = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o.status.code().unwrap_or(-1), stderr, json)
}

/// The verdict the JSON gives function `f`.
fn verdict(json: &serde_json::Value, f: &str) -> String {
    json["verify"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["functions"].as_array().cloned().unwrap_or_default())
        .find(|x| x["name"] == f)
        .map(|x| x["verdict"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn verify_refuses_a_changed_config_option_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let rel = kernel.release();
    let out = tempfile::tempdir().unwrap();
    // A prepared tree of Debian's configuration first (reused when warm).
    let (code, stderr, json) = build(rel, "verify-base", out.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(verdict(&json, "meminfo_proc_show"), "identical", "{json}");

    let headers = kpatch_cache()
        .join(rel)
        .join("pkg/usr/src")
        .join(format!("linux-headers-{rel}"))
        .join(".config");
    let text = std::fs::read_to_string(&headers).unwrap();
    assert!(
        text.contains("\nCONFIG_ZSWAP=y\n"),
        "the test flips CONFIG_ZSWAP"
    );
    let flipped = out.path().join("config-no-zswap");
    std::fs::write(
        &flipped,
        text.replace("\nCONFIG_ZSWAP=y\n", "\n# CONFIG_ZSWAP is not set\n"),
    )
    .unwrap();
    let t = std::time::Instant::now();
    let (code, stderr, json) = build(
        rel,
        "verify-config",
        out.path(),
        &["-c".as_ref(), flipped.as_os_str()],
    );
    eprintln!("{stderr}\n(-c build: {:.1} s)", t.elapsed().as_secs_f64());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("meminfo_proc_show differs from vmlinux"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rebuilt: +0x") && stderr.contains("target:  +0x"),
        "{stderr}"
    );
    assert!(
        stderr.contains("CONFIG_ZSWAP is y in the target's .config, not set here"),
        "{stderr}"
    );
    assert_eq!(verdict(&json, "meminfo_proc_show"), "differs", "{json}");
    assert!(!out.path().join("livepatch-verify-config.ko").exists());

    // --skip-verify builds anyway and says so in the module.
    let (code, stderr, _) = build(
        rel,
        "verify-skipped",
        out.path(),
        &["-c".as_ref(), flipped.as_os_str(), "--skip-verify".as_ref()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--skip-verify: building anyway"),
        "{stderr}"
    );
    let ko = out.path().join("livepatch-verify-skipped.ko");
    let modinfo = Command::new("modinfo")
        .args(["-F", "kpatch_verify"])
        .arg(&ko)
        .output()
        .unwrap();
    let modinfo = String::from_utf8_lossy(&modinfo.stdout);
    assert!(
        modinfo.starts_with("skipped:") && modinfo.contains("meminfo_proc_show"),
        "{modinfo}"
    );
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn verify_refuses_a_tree_with_an_extra_line_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let rel = kernel.release();
    let out = tempfile::tempdir().unwrap();
    let (code, stderr, _) = build(rel, "verify-base", out.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    // A copy of the prepared tree (never the shared tree itself), one line added to the
    // function the patch changes.
    let tree = kpatch_cache().join(rel).join("src/linux-source-6.1");
    let copy = out.path().join("linux");
    let t = std::time::Instant::now();
    let st = Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    eprintln!("copied the tree in {:.1} s", t.elapsed().as_secs_f64());
    let file = copy.join("fs/proc/meminfo.c");
    let src = std::fs::read_to_string(&file).unwrap();
    let anchor = "\tsi_swapinfo(&i);\n";
    assert!(src.contains(anchor));
    std::fs::write(
        &file,
        src.replacen(anchor, "\tsi_swapinfo(&i);\n\tseq_puts(m, \"\");\n", 1),
    )
    .unwrap();

    let (code, stderr, json) = build(
        rel,
        "verify-source",
        out.path(),
        &["-s".as_ref(), copy.as_os_str()],
    );
    eprintln!("{stderr}");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("meminfo_proc_show differs from vmlinux"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fs/proc/meminfo.c in")
            && stderr.contains("differs from Debian's linux-source"),
        "{stderr}"
    );
    assert_eq!(verdict(&json, "meminfo_proc_show"), "differs", "{json}");
    // The other function of the file is still the target's.
    assert_eq!(
        verdict(&json, "arch_report_meminfo"),
        "overridden",
        "{json}"
    );
}

/// `(offset, hex id)` of the vmlinux build-id in a module's modinfo.
fn vmlinux_id(ko: &[u8]) -> (usize, String) {
    let key = b"kpatch_build_id=vmlinux:";
    let at = ko
        .windows(key.len())
        .position(|w| w == key)
        .expect("vmlinux build-id in modinfo")
        + key.len();
    (at, String::from_utf8_lossy(&ko[at..at + 40]).into_owned())
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn identity_and_run_pre_in_the_guest_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let out = tempfile::tempdir().unwrap();
    let case = meminfo_case();
    let built = common::kpatch_build(&case, kernel.release(), out.path());
    assert_eq!(built.code, 0, "{}", built.stderr);
    let ko = built.module.unwrap();
    let bytes = std::fs::read(&ko).unwrap();

    // Another build of the same release: the recorded build-id altered in a copy.
    let (at, id) = vmlinux_id(&bytes);
    let mut other = bytes.clone();
    other[at] = if other[at] == b'0' { b'1' } else { b'0' };
    let other_id = String::from_utf8_lossy(&other[at..at + 40]).into_owned();
    // Another file name: the guest keeps modules by file name.
    let other_ko = out.path().join("livepatch-meminfo-other-build.ko");
    std::fs::write(&other_ko, &other).unwrap();

    // Where to put the kprobe: an instruction of the patched function past its ftrace
    // site, as recorded in the module.
    let record = verify::record::Record::from_module(&bytes)
        .unwrap()
        .unwrap();
    let f = &record.objects[0].functions[0];
    assert_eq!(f.name, "meminfo_proc_show");
    let code = f.code();
    let starts = verify::x86::insn_starts(&code);
    let off = starts
        .iter()
        .map(|s| u64::from(*s))
        .filter(|s| *s >= 8 && !f.sites.iter().any(|x| *s >= x.off && *s < x.off + x.len))
        .nth(2)
        .unwrap();

    let mut img = Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let gko = img.add_module(&ko).unwrap();
    let gother = img.add_module(&other_ko).unwrap();
    let klp = testbed::module_name(&ko);
    let check = case.check.as_deref().unwrap();
    let tr = "/sys/kernel/tracing";
    let scenario = Scenario::new("verify-6.1")
        .keep_going()
        .step("info-other", &format!("{kpatch} info {gother}"))
        .step(
            "load-other-build",
            &format!(
                "if {kpatch} load {gother}; then fail 'another build was loaded'; fi\n\
                 [ ! -e /sys/kernel/livepatch/{klp} ] || fail 'a patch is left'\n\
                 [ ! -e /sys/module/{klp} ] || fail 'the module is left'"
            ),
        )
        .step(
            "load-other-forced",
            &format!(
                "{kpatch} load --force-mismatch {gother} || fail 'not loaded with --force-mismatch'\n\
                 {check} || fail 'no effect'\n{kpatch} unload {klp}"
            ),
        )
        .step(
            "kprobe-on",
            &format!(
                "mount -t tracefs nodev {tr} 2>/dev/null; \
                 echo 'p:kpverify meminfo_proc_show+{off}' > {tr}/kprobe_events || fail 'kprobe_events'\n\
                 echo 1 > {tr}/events/kprobes/kpverify/enable || fail 'enable'\n\
                 cat /proc/meminfo > /dev/null; sleep 1"
            ),
        )
        .step("verify-kprobed", &format!("if {kpatch} verify {gko}; then fail 'the kprobe was not seen'; fi"))
        .step(
            "load-verify-kprobed",
            &format!(
                "if {kpatch} load --verify {gko}; then fail 'loaded over a difference'; fi\n\
                 [ ! -e /sys/module/{klp} ] || fail 'the module is left'"
            ),
        )
        .step(
            "kprobe-off",
            &format!("echo 0 > {tr}/events/kprobes/kpverify/enable; echo '-:kpverify' >> {tr}/kprobe_events"),
        )
        .step("verify-clean", &format!("{kpatch} verify {gko}"))
        .step(
            "load-verify",
            &format!("{kpatch} load --verify {gko} && {check} && {kpatch} verify {gko} && {kpatch} unload {klp}"),
        );
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    for s in &report.steps {
        eprintln!("--- {} ---\n{}", s.name, s.output.join("\n"));
    }
    report.ensure_passed().unwrap();
    let output = |name: &str| {
        report
            .step(name)
            .map(|s| s.output.join("\n"))
            .unwrap_or_default()
    };
    let info = output("info-other");
    assert!(
        info.contains(&format!(
            "vmlinux build-id {other_id} expected, the running one is {id}"
        )),
        "{info}"
    );
    let refused = output("load-other-build");
    assert!(
        refused.contains(&other_id)
            && refused.contains(&id)
            && refused.contains("--force-mismatch"),
        "{refused}"
    );
    assert!(output("load-other-forced").contains("warning: --force-mismatch"));
    let kprobed = output("verify-kprobed");
    assert!(
        kprobed.contains(&format!("meminfo_proc_show: DIFFERS at +{off:#x}")),
        "{kprobed}"
    );
    assert!(kprobed.contains("kprobe"), "{kprobed}");
    assert!(output("load-verify-kprobed").contains("DIFFERS"));
    let clean = output("verify-clean");
    assert!(
        clean.contains("vmlinux:meminfo_proc_show: matches")
            && clean.contains(&format!("vmlinux build-id {id}: matches")),
        "{clean}"
    );
}

/// A patched module loaded after the patch is checked when it loads: the patch's hook
/// compares its build-id with the recorded one in the livepatch core's pre-patch step,
/// so another build of the module is refused (its load fails) unless the patch was
/// loaded with `--force-mismatch`; the matching build loads and is patched.
#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn module_loaded_later_is_checked_when_it_loads_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let out = tempfile::tempdir().unwrap();
    let case = common::corpus("6.1")
        .into_iter()
        .find(|c| c.name == "17-module-xfs-loaded-later")
        .expect("xfs loaded-later patch");
    let built = common::kpatch_build(&case, kernel.release(), out.path());
    assert_eq!(built.code, 0, "{}", built.stderr);
    let ko = built.module.unwrap();
    let bytes = std::fs::read(&ko).unwrap();
    let key = b"kpatch_build_id=xfs:";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("xfs build-id in modinfo")
        + key.len();
    let id = bytes[at..at + 40].to_vec();
    let mut other_id = id.clone();
    other_id[0] = if id[0] == b'0' { b'1' } else { b'0' };
    // Every copy of the id (modinfo, and the table the hook checks) altered.
    let mut other = bytes.clone();
    let mut n = 0;
    let mut i = 0;
    while let Some(p) = other[i..].windows(40).position(|w| w == id.as_slice()) {
        other[i + p..i + p + 40].copy_from_slice(&other_id);
        n += 1;
        i += p + 40;
    }
    assert!(
        n >= 2,
        "the id is in the modinfo and in the hook's table ({n})"
    );
    let other_ko = out.path().join("livepatch-xfs-other-build.ko");
    std::fs::write(&other_ko, &other).unwrap();
    let (id, other_id) = (
        String::from_utf8(id).unwrap(),
        String::from_utf8(other_id).unwrap(),
    );

    let mut img = Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
        .unwrap();
    img.add_image_modules(&kernel.image_modules().unwrap(), &["xfs"])
        .unwrap();
    let gko = img.add_module(&ko).unwrap();
    let gother = img.add_module(&other_ko).unwrap();
    let klp = testbed::module_name(&ko);
    let check = case.check.as_deref().unwrap();
    let scenario = Scenario::new("verify-xfs-later-6.1")
        .keep_going()
        .step(
            "other-then-xfs",
            &format!(
                "{kpatch} load {gother} || fail 'load'\n\
                 if /sbin/modprobe xfs; then fail 'another build of xfs was patched'; fi\n\
                 ! grep -q '^xfs ' /proc/modules || fail 'xfs is loaded'\n\
                 {kpatch} unload {klp}"
            ),
        )
        .step(
            "other-forced-then-xfs",
            &format!(
                "{kpatch} load --force-mismatch {gother} || fail 'load'\n\
                 /sbin/modprobe xfs || fail 'xfs refused despite --force-mismatch'\n\
                 {check} || fail 'not patched'\n\
                 if {kpatch} verify {gother}; then fail 'verify did not see the other build'; fi\n\
                 {kpatch} unload {klp}\nrmmod xfs"
            ),
        )
        .step(
            "same-then-xfs",
            &format!(
                "{kpatch} load {gko} || fail 'load'\n\
                 /sbin/modprobe xfs || fail 'the matching xfs was refused'\n\
                 {check} || fail 'not patched'\n\
                 {kpatch} verify {gko} || fail 'verify'\n\
                 {kpatch} unload {klp}\nrmmod xfs"
            ),
        )
        .step("log", "dmesg | grep -F 'livepatch' || true");
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    for s in &report.steps {
        eprintln!("--- {} ---\n{}", s.name, s.output.join("\n"));
    }
    report.ensure_passed().unwrap();
    let output = |name: &str| {
        report
            .step(name)
            .map(|s| s.output.join("\n"))
            .unwrap_or_default()
    };
    assert!(output("other-then-xfs").contains("xfs is not loaded"));
    let log = output("log");
    assert!(
        log.contains(&format!(
            "xfs is another build than the one this patch was made for: build-id {other_id} expected, {id} running; not patching it"
        )),
        "{log}"
    );
    assert!(log.contains("patching it anyway (force_mismatch)"), "{log}");
    let verify = output("other-forced-then-xfs");
    assert!(
        verify.contains(&format!(
            "xfs build-id {other_id} expected, the running one is {id}"
        )),
        "{verify}"
    );
}
