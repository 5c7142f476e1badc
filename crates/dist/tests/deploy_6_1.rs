//! Deployment on a real Debian 12 system (Debian's 6.1 kernel, systemd, apt) booted
//! from its disk under QEMU through UEFI:
//!
//! - the live-patch package from a signed apt repository: installed with apt-get it is
//!   live at once; `kpatch.service` loads it again early in the next boot (before
//!   `sysinit.target`, checked from the journal); `apt-get remove` unloads it;
//! - `kpatch status` (text, `--json`, exit codes, `--prometheus` read back by
//!   node_exporter's parser when available) in each of those states;
//! - the crash-loop guard across real resets: the VM is hard-reset while the boot-time
//!   load stalls on the kernel's busy-callback selftest module, and the next boot skips
//!   the patch and reports it;
//! - both packages are lintian-clean.
//!
//! Times (boot to SSH, install to patched, reboot to patched, ...) are printed and
//! written to `target/release/dist-tests/debian-vm-times.json`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fixture, status, ADD_REPO};
use testbed::vm::{strip_ansi, Firmware, Machine};

/// Named durations for the report.
#[derive(Default)]
struct Times(Vec<(String, f64)>);

impl Times {
    fn add(&mut self, name: &str, d: Duration) {
        eprintln!("time: {name}: {:.1} s", d.as_secs_f64());
        self.0.push((name.to_string(), d.as_secs_f64()));
    }
    fn write(&self, path: &Path) {
        let map: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!((v * 10.0).round() / 10.0)))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&map).unwrap()).unwrap();
        eprintln!("debian-vm times: {}", serde_json::Value::Object(map));
    }
}

fn lintian(deb: &Path) {
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--pedantic", "-I"])
        .arg(deb)
        .output()
        .expect("lintian (apt-get install lintian)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lintian {}: {text}", deb.display());
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "{text}"
    );
    eprintln!(
        "lintian {}: clean{}",
        deb.display(),
        if text.trim().is_empty() {
            String::new()
        } else {
            format!(" apart from: {text}")
        }
    );
}

/// The monotonic time (µs since the kernel started) a unit reached `property`.
fn unit_time(vm: &Machine, unit: &str, property: &str) -> u64 {
    vm.sh_ok(&format!("systemctl show -P {property} {unit}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{unit} {property}: {e}"))
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn apt_install_reboot_and_remove_on_debian_12() {
    let f = fixture();
    let start = Instant::now();
    let mut times = Times::default();
    for (n, d) in &f.timings {
        times.add(n, *d);
    }
    lintian(&f.project_deb);
    lintian(&f.meminfo_deb);
    let repo_dir = f.work.join("repo-scenario");
    common::repo(f, &repo_dir, &[&f.project_deb, &f.meminfo_deb]);
    let release = f.kernel.release().to_string();

    let (mut vm, up) = common::start(f, Firmware::Uefi { moks: vec![] }, Some(&repo_dir));
    times.add("boot to SSH (QEMU start to login)", up);
    vm.sh_ok(ADD_REPO).unwrap();

    // Install: the patch is live as soon as apt-get returns.
    assert!(vm
        .sh_ok("grep VmallocChunk /proc/meminfo")
        .unwrap()
        .contains("VmallocChunk"));
    let t = Instant::now();
    let out = vm
        .sh_ok(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q kpatch-rs livepatch-meminfo 2>&1",
        )
        .unwrap();
    times.add("apt-get install to patched", t.elapsed());
    assert!(out.contains("transition complete"), "{out}");
    let meminfo = vm.sh_ok("grep -i vmallocchunk /proc/meminfo").unwrap();
    assert!(meminfo.contains("VMALLOCChunk"), "{meminfo}");
    let (code, st) = status(&vm);
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["patches"][0]["name"], "livepatch_meminfo", "{st}");
    assert_eq!(st["patches"][0]["state"], "loaded", "{st}");
    assert_eq!(st["patches"][0]["signed"], true, "{st}");
    assert_eq!(
        st["effective_version"],
        format!("{release}+meminfo"),
        "{st}"
    );
    let enabled = vm.sh_ok("systemctl is-enabled kpatch.service").unwrap();
    assert_eq!(enabled.trim(), "enabled");
    let text = vm
        .sh_ok("kpatch status; man -w kpatch-status 2>/dev/null || true")
        .unwrap();
    assert!(text.contains("livepatch_meminfo  loaded"), "{text}");
    prometheus_check(&vm, f, "loaded");

    // Reboot: kpatch.service loads it before sysinit.target.
    let (mark, asked) = vm.reboot().unwrap();
    let reset_at = vm
        .wait_console("reboot: Restarting system", mark, Duration::from_secs(300))
        .unwrap();
    let patched_at = vm
        .wait_console("transition complete", mark, Duration::from_secs(900))
        .unwrap();
    let patched_instant = vm.started + patched_at;
    times.add(
        "reboot to patched (systemctl reboot to the boot-time load done)",
        patched_instant.duration_since(asked),
    );
    times.add(
        "boot to patched (machine reset to the boot-time load done)",
        patched_at - reset_at,
    );
    let t = Instant::now();
    vm.wait_ssh(Duration::from_secs(900)).unwrap();
    times.add("patched to SSH", t.elapsed());
    let meminfo = vm.sh_ok("grep -i vmallocchunk /proc/meminfo").unwrap();
    assert!(meminfo.contains("VMALLOCChunk"), "after reboot: {meminfo}");
    let journal = vm
        .sh_ok("journalctl -b -o short-monotonic -u kpatch.service")
        .unwrap();
    assert!(
        journal.contains("loading patch module: /var/lib/kpatch/"),
        "{journal}"
    );
    let kpatch_done = unit_time(&vm, "kpatch.service", "ActiveEnterTimestampMonotonic");
    let kpatch_start = unit_time(&vm, "kpatch.service", "InactiveExitTimestampMonotonic");
    let local_fs = unit_time(&vm, "local-fs.target", "ActiveEnterTimestampMonotonic");
    let sysinit = unit_time(&vm, "sysinit.target", "ActiveEnterTimestampMonotonic");
    let networkd = unit_time(
        &vm,
        "systemd-networkd.service",
        "InactiveExitTimestampMonotonic",
    );
    let ssh = unit_time(&vm, "ssh.service", "InactiveExitTimestampMonotonic");
    eprintln!(
        "boot order (s after kernel start): local-fs.target {:.1}, kpatch.service start {:.1} done {:.1}, sysinit.target {:.1}, systemd-networkd start {:.1}, ssh start {:.1}",
        local_fs as f64 / 1e6, kpatch_start as f64 / 1e6, kpatch_done as f64 / 1e6,
        sysinit as f64 / 1e6, networkd as f64 / 1e6, ssh as f64 / 1e6
    );
    assert!(
        local_fs <= kpatch_start && kpatch_done <= sysinit,
        "kpatch.service runs after local-fs.target and before sysinit.target"
    );
    // Ordinary services (After=basic.target, like ssh) start on the patched kernel;
    // early-boot services without default dependencies (systemd-networkd) may start
    // beside it.
    assert!(kpatch_done < ssh, "SSH starts on the patched kernel");
    times.add(
        "kernel start to patched (journal)",
        Duration::from_micros(kpatch_done),
    );
    let (code, st) = status(&vm);
    assert_eq!(
        (code, st["patches"][0]["state"].as_str()),
        (0, Some("loaded")),
        "{st}"
    );

    // Remove: unloaded, uninstalled.
    let t = Instant::now();
    let out = vm
        .sh_ok("DEBIAN_FRONTEND=noninteractive apt-get remove -y -q livepatch-meminfo 2>&1")
        .unwrap();
    times.add("apt-get remove to unpatched", t.elapsed());
    assert!(out.contains("unloading patch module"), "{out}");
    vm.sh_ok(&format!(
        "! test -e /sys/kernel/livepatch/livepatch_meminfo && grep -q VmallocChunk /proc/meminfo \
         && ! test -e /var/lib/kpatch/{release}/livepatch-meminfo.ko"
    ))
    .unwrap();
    let (code, st) = status(&vm);
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["patches"].as_array().unwrap().len(), 0, "{st}");
    assert_eq!(st["effective_version"], release.as_str(), "{st}");

    vm.poweroff().unwrap();
    times.add("whole scenario", start.elapsed());
    times.write(&f.work.join("debian-vm-times.json"));
}

/// The crash-loop guard across real resets: a boot-time load that stalls on the kernel's
/// busy-callback selftest module, a hard reset during it, and the next boot skipping the
/// patch and reporting it.
#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn crash_guard_skips_a_load_interrupted_by_a_hard_reset_on_debian_12() {
    let f = fixture();
    let start = Instant::now();
    let selftests = testbed::build_selftest_modules(&f.kernel).unwrap();
    let release = f.kernel.release().to_string();
    let (mut vm, _) = common::start(f, Firmware::Uefi { moks: vec![] }, None);
    vm.copy_to(&[&f.project_deb], "/root/").unwrap();
    vm.sh_ok("dpkg -i /root/kpatch-rs_*.deb").unwrap();
    crash_guard(&mut vm, &selftests, &release);
    vm.poweroff().unwrap();
    eprintln!("crash guard test: {:.0} s", start.elapsed().as_secs_f64());
}

/// Installs `test_klp_callbacks_demo` for boot while `test_klp_callbacks_busy` is loaded
/// at boot with `block_transition=Y` (its worker sits in the function the demo patches),
/// resets the machine while kpatch.service waits for the transition, and checks that the
/// next boot skips the patch and says so.
fn crash_guard(vm: &mut Machine, selftests: &testbed::BuiltModules, release: &str) {
    let busy = selftests.get("test_klp_callbacks_busy").unwrap();
    let demo = selftests.get("test_klp_callbacks_demo").unwrap();
    vm.copy_to(&[busy, demo], "/root/").unwrap();
    vm.sh_ok(&format!(
        "install -D -m 644 /root/test_klp_callbacks_busy.ko /lib/modules/{release}/extra/test_klp_callbacks_busy.ko
         depmod -a {release}
         echo test_klp_callbacks_busy > /etc/modules-load.d/kpatch-test.conf
         echo 'options test_klp_callbacks_busy block_transition=Y' > /etc/modprobe.d/kpatch-test.conf
         kpatch install /root/test_klp_callbacks_demo.ko"
    ))
    .unwrap();
    // A reset rather than `systemctl reboot`: the soft reboot did not come back here.
    vm.sh_ok("sync").unwrap();
    let mark = vm.console_mark();
    vm.hard_reset().unwrap();
    let loading =
        format!("loading patch module: /var/lib/kpatch/{release}/test_klp_callbacks_demo.ko");
    vm.wait_console(&loading, mark, Duration::from_secs(900))
        .unwrap();
    // The transition waits for the busy worker; give it a moment, then pull the plug.
    std::thread::sleep(Duration::from_secs(5));
    let console = strip_ansi(&vm.console_text()[mark..]);
    assert!(
        !console.contains("transition complete"),
        "the load was meant to stall:\n{console}"
    );
    let mark = vm.console_mark();
    vm.hard_reset().unwrap();
    vm.wait_console(
        "skipping test_klp_callbacks_demo",
        mark,
        Duration::from_secs(900),
    )
    .unwrap();
    vm.wait_ssh(Duration::from_secs(900)).unwrap();
    let (code, st) = status(vm);
    assert_eq!(code, 2, "{st}");
    let demo = st["patches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "test_klp_callbacks_demo")
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(demo["state"], "skipped-interrupted", "{st}");
    let journal = vm.sh_ok("journalctl -b -u kpatch.service").unwrap();
    assert!(
        journal.contains("skipping test_klp_callbacks_demo: its previous load never finished"),
        "{journal}"
    );
    vm.sh_ok("! test -e /sys/kernel/livepatch/test_klp_callbacks_demo")
        .unwrap();
    let text = vm.sh("kpatch status").unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("skipped-interrupted") && text.contains("status: critical (exit 2)"),
        "{text}"
    );
}

/// `kpatch status --prometheus` in the guest, checked here: the expected sample lines,
/// and node_exporter's own parser (its textfile collector) when it is installed.
fn prometheus_check(vm: &Machine, f: &common::Fixture, state: &str) {
    let file = f.work.join("kpatch.prom");
    vm.sh_ok("mkdir -p /var/lib/prometheus/node-exporter && kpatch status --prometheus /var/lib/prometheus/node-exporter/kpatch.prom >/dev/null")
        .unwrap();
    vm.copy_from("/var/lib/prometheus/node-exporter/kpatch.prom", &file)
        .unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("kpatch_status 0\n"), "{text}");
    assert!(
        text.contains(&format!(
            "kpatch_patch_state{{patch=\"livepatch_meminfo\",state=\"{state}\"}} 1\n"
        )),
        "{text}"
    );
    match testbed::vm::node_exporter_parse(&file) {
        Ok(metrics) => {
            assert!(
                metrics.contains("node_textfile_scrape_error 0"),
                "{metrics}"
            );
            assert!(metrics.contains("kpatch_status 0"), "{metrics}");
            eprintln!("node_exporter read kpatch.prom without error");
        }
        Err(e) => panic!("node_exporter: {e}"),
    }
}

/// The module without its appended signature (`sign-file`'s trailer: the PKCS#7 data,
/// a 12-byte `struct module_signature` ending in its big-endian length, the magic).
fn strip_signature(signed: &[u8]) -> Vec<u8> {
    let magic = b"~Module signature appended~\n";
    assert!(signed.ends_with(magic), "not signed");
    let info_end = signed.len() - magic.len();
    let info = &signed[info_end - 12..info_end];
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    signed[..info_end - 12 - sig_len].to_vec()
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn secure_boot_takes_the_signed_patch_and_kpatch_refuses_the_unsigned_one() {
    let f = fixture();
    let start = Instant::now();
    let unsigned_dir = f.work.join("unsigned");
    std::fs::create_dir_all(&unsigned_dir).unwrap();
    let unsigned = unsigned_dir.join("livepatch-meminfo.ko");
    std::fs::write(
        &unsigned,
        strip_signature(&std::fs::read(&f.meminfo_ko).unwrap()),
    )
    .unwrap();

    let (vm, up) = common::start(
        f,
        Firmware::SecureBoot {
            moks: vec![f.mok.1.clone()],
        },
        None,
    );
    eprintln!("secure boot: SSH up after {:.1} s", up.as_secs_f64());
    let console = strip_ansi(&vm.console_text());
    assert!(
        console.contains("UEFI Secure Boot is enabled"),
        "the shim/GRUB/kernel chain booted in Secure Boot mode"
    );
    let lockdown = vm.sh_ok("cat /sys/kernel/security/lockdown").unwrap();
    assert!(lockdown.contains("[integrity]"), "{lockdown}");
    let keys = vm.sh_ok("cat /proc/keys").unwrap();
    assert!(
        keys.contains("live patch signing key"),
        "the MOK is a kernel key: {keys}"
    );
    vm.sh_ok("mkdir -p /root/unsigned").unwrap();
    vm.copy_to(&[&f.project_deb, &f.meminfo_deb], "/root/")
        .unwrap();
    vm.copy_to(&[&unsigned], "/root/unsigned/").unwrap();
    vm.sh_ok("dpkg -i /root/kpatch-rs_*.deb").unwrap();

    // Unsigned: kpatch refuses before finit_module, saying what to do.
    let out = vm
        .sh("kpatch load /root/unsigned/livepatch-meminfo.ko")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        "not signed",
        "locked down (integrity",
        "--sign-key",
        "mokutil --import",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    let dmesg = vm.sh_ok("dmesg").unwrap();
    assert!(
        !dmesg.contains("livepatch_meminfo"),
        "the kernel never saw the unsigned module: {dmesg}"
    );
    vm.sh_ok("! test -e /sys/kernel/livepatch/livepatch_meminfo")
        .unwrap();

    // Signed, from its package: loads, and the kernel trusts the signature (no E taint).
    let out = vm
        .sh_ok("dpkg -i /root/livepatch-meminfo_1_amd64.deb 2>&1")
        .unwrap();
    assert!(out.contains("transition complete"), "{out}");
    assert!(vm
        .sh_ok("cat /proc/meminfo")
        .unwrap()
        .contains("VMALLOCChunk"));
    let taint: u64 = vm
        .sh_ok("cat /proc/sys/kernel/tainted")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let letters = testbed::taint_letters(taint);
    assert_eq!(taint & (1 << 13), 0, "unsigned-module taint E: {letters}");
    assert_ne!(taint & (1 << 15), 0, "livepatch taint K: {letters}");
    let dmesg = vm.sh_ok("dmesg").unwrap();
    assert!(!dmesg.contains("module verification failed"), "{dmesg}");
    let (code, st) = status(&vm);
    assert_eq!(code, 0, "{st}");
    assert_eq!(st["signatures"]["lockdown"], "integrity", "{st}");
    assert_eq!(st["patches"][0]["signed"], true, "{st}");
    let prom = vm
        .sh_ok("kpatch status --prometheus /root/k.prom >/dev/null; cat /root/k.prom")
        .unwrap();
    assert!(prom.contains("kpatch_signatures_required 1\n"), "{prom}");
    vm.poweroff().unwrap();
    eprintln!(
        "secure boot test: {:.0} s, taint {taint} ({letters})",
        start.elapsed().as_secs_f64()
    );
}

/// `ansible-playbook` from Debian's `ansible-core` (installed on the host when missing).
fn ansible_playbook() -> std::path::PathBuf {
    testbed::apt::install_host_packages(&["ansible-core"], true).unwrap();
    std::path::PathBuf::from("/usr/bin/ansible-playbook")
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn ansible_rollout_goes_stage_by_stage_and_stops_at_the_first_failure() {
    let f = fixture();
    let start = Instant::now();
    let playbook = ansible_playbook();
    let refused = common::patch_deb(
        &f.bins,
        f.kernel.release(),
        &dist::workspace_root().join("tests/patches/6.1/21-pre-patch-refuses.patch"),
        "pre-patch-refuses",
        Some(&f.mok),
        &f.work.join("debs-ansible"),
    );
    let repo_dir = f.work.join("repo-ansible");
    let repo = common::repo(f, &repo_dir, &[&f.project_deb, &f.meminfo_deb, &refused]);
    let (vm, _) = common::start(f, Firmware::Uefi { moks: vec![] }, Some(&repo_dir));
    // The host side of the repository: the 9p share mounted (an HTTP server's job in a
    // real fleet); the role adds the key and the source.
    vm.sh_ok("mkdir -p /srv/kpatch-repo && mount -t 9p -o trans=virtio,version=9p2000.L,ro kpatchrepo /srv/kpatch-repo")
        .unwrap();
    // Two inventory names for the one guest: two stages of the rollout.
    let inventory = f.work.join("inventory.ini");
    let ssh_args = vm.ssh_options()[2..].join(" ");
    std::fs::write(
        &inventory,
        format!(
            "[kpatch_fleet]\nstage1-host\nstage2-host\n\n[kpatch_fleet:vars]\n\
             ansible_host=127.0.0.1\nansible_port={}\nansible_user=root\n\
             ansible_ssh_private_key_file={}\nansible_ssh_common_args='{ssh_args}'\n\
             ansible_python_interpreter=/usr/bin/python3\n",
            vm.ssh_port,
            vm.ssh_key().display()
        ),
    )
    .unwrap();
    let run = |package: &str| {
        let out = Command::new(&playbook)
            .arg("-i")
            .arg(&inventory)
            .arg(dist::workspace_root().join("contrib/ansible/rollout.yml"))
            .args(["-e", &format!("kpatch_package={package}")])
            .args(["-e", "kpatch_repo_url=file:/srv/kpatch-repo"])
            .arg("-e")
            .arg(format!("kpatch_repo_key={}", repo.public_key().display()))
            .args(["-e", "{\"kpatch_serial\": [1, 1]}"])
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_NOCOLOR", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!(
            "--- ansible-playbook {package} ---\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = run("livepatch-meminfo");
    assert_eq!(code, Some(0), "{text}");
    for host in ["stage1-host", "stage2-host"] {
        assert!(
            text.contains(&format!("ok: [{host}]")),
            "{host} ran: {text}"
        );
        assert!(
            text.contains(&format!("{host} runs {}+meminfo", f.kernel.release())),
            "{text}"
        );
    }
    let first = text.find("[stage1-host]").unwrap();
    let second = text.find("[stage2-host]").unwrap();
    assert!(first < second, "stage 1 before stage 2");
    assert!(vm
        .sh_ok("cat /proc/meminfo")
        .unwrap()
        .contains("VMALLOCChunk"));

    // A patch the kernel refuses: stage 1 fails, stage 2 never starts.
    let (code, text) = run("livepatch-pre-patch-refuses");
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("fatal: [stage1-host]"), "{text}");
    assert!(
        !text.contains("[stage2-host]"),
        "the rollout stopped after stage 1: {text}"
    );
    let (code, st) = status(&vm);
    assert_eq!(code, 0, "the host keeps the patch it had: {st}");
    assert_eq!(st["patches"][0]["name"], "livepatch_meminfo", "{st}");
    assert_eq!(
        st["patches"].as_array().unwrap().len(),
        1,
        "the refused patch is not left installed: {st}"
    );
    vm.poweroff().unwrap();
    eprintln!("ansible test: {:.0} s", start.elapsed().as_secs_f64());
}
