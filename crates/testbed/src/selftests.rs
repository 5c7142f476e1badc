//! Running the kernel's own livepatch selftest scripts
//! (`tools/testing/selftests/livepatch/test-*.sh`) unchanged inside a guest.
//!
//! The scripts compare the kernel log against the transcripts they expect (`check_result`)
//! and need bash, kmod's `modprobe`/`modinfo`, coreutils' `comm`/`mktemp`/`stat`/`date`
//! and procps' `sysctl`; those are copied from the host with their shared libraries. The
//! `test_klp_*` modules are built from the matching `linux-source` and installed both for
//! `modprobe` (6.1's scripts) and in the scripts' `test_modules/` directory (6.12's scripts
//! `insmod` them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::Kernel;
use crate::error::{Error, Result};
use crate::guest::Guest;
use crate::initramfs::{Initramfs, GUEST_HOST_BIN};
use crate::kbuild::build_selftest_modules;
use crate::report::{BootReport, StepResult};
use crate::scenario::Scenario;
use crate::util::which;

/// Guest directory holding the selftest scripts.
pub const GUEST_SELFTEST_DIR: &str = "/testbed/selftests";

/// The selftest scripts of 6.1 that this test bed runs (`test-ftrace.sh` and `test-sysfs.sh`
/// exist too and can be named explicitly).
pub const DEFAULT_SCRIPTS: &[&str] = &[
    "test-livepatch.sh",
    "test-callbacks.sh",
    "test-shadow-vars.sh",
    "test-state.sh",
];

/// `(program, links to it)` copied from the host; links go to `/usr/local/sbin`.
const HOST_TOOLS: &[(&str, &[&str])] = &[
    ("bash", &[]),
    (
        "kmod",
        &["modprobe", "rmmod", "insmod", "modinfo", "depmod", "lsmod"],
    ),
    ("comm", &[]),
    ("mktemp", &[]),
    ("stat", &[]),
    ("sysctl", &[]),
    ("diff", &[]),
    ("date", &[]),
];

/// One `TEST: <name> ... ok|not ok` line of a selftest script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelftestCase {
    /// The name given to `start_test`.
    pub name: String,
    /// Whether the script printed `ok`.
    pub ok: bool,
}

fn find_tool(name: &str) -> Result<PathBuf> {
    which(name)
        .or_else(|| {
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| Error::MissingHostPackages(vec![format!("(program {name})")]))
}

/// Busybox plus the host tools the selftest scripts need.
pub fn selftest_base_initramfs() -> Result<Initramfs> {
    let mut img = Initramfs::with_busybox()?;
    for (tool, links) in HOST_TOOLS {
        let guest = img.add_host_binary(&find_tool(tool)?, GUEST_HOST_BIN)?;
        for link in *links {
            img.add_symlink(&format!("/usr/local/sbin/{link}"), &guest)?;
        }
    }
    // test-sysfs.sh calls /bin/stat by path.
    img.add_symlink("/bin/stat", &format!("{GUEST_HOST_BIN}/stat"))?;
    img.add_symlink("/bin/bash", &format!("{GUEST_HOST_BIN}/bash"))?;
    Ok(img)
}

/// An initramfs with the host tools, the `test_klp_*` modules (for `modprobe`) and the
/// selftest scripts of `kernel`'s source.
pub fn selftest_initramfs(kernel: &Kernel) -> Result<Initramfs> {
    let modules = build_selftest_modules(kernel)?;
    let mut img = selftest_base_initramfs()?;
    let release = kernel.release();
    img.add_modprobe_modules(release, &modules.paths())?;
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        img.add_file(&format!("/lib/modules/{release}/{f}"), "", 0o644)?;
    }
    img.add_host_tree(
        &kernel
            .source_subset
            .join("tools/testing/selftests/livepatch"),
        GUEST_SELFTEST_DIR,
    )?;
    // Later scripts (6.12) insmod `test_modules/<name>.ko` instead of using modprobe.
    for ko in modules.paths() {
        let name = format!("{}.ko", crate::kbuild::module_name(&ko));
        img.add_host_file(&ko, &format!("{GUEST_SELFTEST_DIR}/test_modules/{name}"))?;
    }
    Ok(img)
}

/// Step name for a script: its name without `.sh`.
pub fn step_name(script: &str) -> String {
    script.trim_end_matches(".sh").to_owned()
}

/// A scenario that runs `depmod`, then each script in its own step.
pub fn selftest_scenario(scripts: &[&str]) -> Scenario {
    let mut s = Scenario::new("kernel-livepatch-selftests")
        .keep_going()
        .step(
            "depmod",
            // busybox sh prefers its own applets over PATH: name kmod's tools by path.
            "/usr/local/sbin/depmod -a \"$(uname -r)\" || fail depmod\n\
             /usr/local/sbin/modprobe --dry-run test_klp_livepatch || fail 'modprobe cannot find test_klp_livepatch'",
        );
    for script in scripts {
        s = s.step_with_timeout(
            &step_name(script),
            // 6.12's scripts only check that KDIR exists (they would build the modules there).
            &format!("cd {GUEST_SELFTEST_DIR} && KDIR=/lib/modules/$(uname -r) bash ./{script}"),
            Duration::from_secs(600),
        );
    }
    s
}

/// Boots `kernel` once and runs `scripts` (e.g. [`DEFAULT_SCRIPTS`]).
pub fn run_selftests(kernel: &Kernel, scripts: &[&str], guest: &Guest) -> Result<BootReport> {
    let img = selftest_initramfs(kernel)?;
    guest.run(img, &selftest_scenario(scripts))
}

/// The `TEST: … ok` verdicts in a selftest step's output.
pub fn selftest_cases(step: &StepResult) -> Vec<SelftestCase> {
    step.output
        .iter()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("TEST: ")?;
            let (name, verdict) = rest.rsplit_once(" ... ")?;
            Some(SelftestCase {
                name: name.to_owned(),
                ok: verdict.trim() == "ok",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;

    #[test]
    fn test_lines_become_cases() {
        let step = StepResult {
            name: "test-livepatch".into(),
            outcome: Outcome::Pass,
            output: vec![
                "TEST: basic function patching ... ok".into(),
                "TEST: multiple livepatches ... not ok".into(),
                "noise".into(),
            ],
            duration: None,
        };
        assert_eq!(
            selftest_cases(&step),
            vec![
                SelftestCase {
                    name: "basic function patching".into(),
                    ok: true
                },
                SelftestCase {
                    name: "multiple livepatches".into(),
                    ok: false
                }
            ]
        );
    }
}
