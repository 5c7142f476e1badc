//! The patch corpus in the real kernel: build every patch, then check every module that
//! built in one boot, as its directives say (see the parent module).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use testbed::{BootReport, Guest, ImageModules, Initramfs, Kernel, Scenario};

use super::{kpatch_binary, kpatch_build, Case};

/// Builds every case for `release` into `out`; panics listing every case whose exit
/// status, message or output is not the expected one. Returns the modules by case name.
pub fn build_all(cases: &[Case], release: &str, out: &Path) -> HashMap<String, PathBuf> {
    let mut failures = Vec::new();
    let mut built = HashMap::new();
    for case in cases {
        let t = std::time::Instant::now();
        let b = kpatch_build(case, release, out);
        eprintln!(
            "{}: exit {} in {:.1}s",
            case.name,
            b.code,
            t.elapsed().as_secs_f64()
        );
        if b.code != case.exit_code() {
            failures.push(format!(
                "{}: exit {} (expected {})\n{}",
                case.name,
                b.code,
                case.exit_code(),
                b.stderr
            ));
            continue;
        }
        for m in &case.messages {
            if !b.stderr.contains(m.as_str()) {
                failures.push(format!("{}: message lacks {m:?}\n{}", case.name, b.stderr));
            }
        }
        match (case.exit_code(), b.module) {
            (0, Some(ko)) => {
                built.insert(case.name.clone(), ko);
            }
            (0, None) => failures.push(format!("{}: no module written", case.name)),
            (_, Some(_)) => failures.push(format!(
                "{}: a module was written despite the failure",
                case.name
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    built
}

/// The guest being put together: the image, the scenario and what the steps need.
struct Plan<'a> {
    img: Initramfs,
    scenario: Scenario,
    kpatch: String,
    image_modules: Option<ImageModules>,
    kernel: &'a Kernel,
    built: &'a HashMap<String, PathBuf>,
    cases: &'a [Case],
}

impl Plan<'_> {
    fn step(&mut self, name: &str, script: &str) {
        let s = std::mem::replace(&mut self.scenario, Scenario::new(""));
        self.scenario = s.step(name, script);
    }

    /// The guest files to `insmod`, in order, for image module `m`.
    fn image_module(&mut self, m: &str) -> Vec<String> {
        if self.image_modules.is_none() {
            self.image_modules = Some(self.kernel.image_modules().expect("image modules"));
        }
        let mods = self.image_modules.as_ref().unwrap();
        self.img
            .add_image_modules(mods, &[m])
            .unwrap_or_else(|e| panic!("image module {m}: {e}"))
            .remove(0)
    }

    /// The module of case `name`, in the guest, and its livepatch name.
    fn patch_module(&mut self, name: &str) -> (String, String) {
        let ko = self
            .built
            .get(name)
            .unwrap_or_else(|| panic!("{name}: no module was built"));
        (self.img.add_module(ko).unwrap(), testbed::module_name(ko))
    }

    fn check_of(&self, name: &str) -> String {
        self.cases
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.check.clone())
            .unwrap_or_else(|| panic!("{name}: no check="))
    }

    fn add_case(&mut self, case: &Case) {
        let n = case.name.as_str();
        let kpatch = self.kpatch.clone();
        let check = case.check.clone().expect("check= for a loadable patch");
        self.step(
            &format!("{n}:begin"),
            &format!("echo 'kpatch-test: begin {n}' > /dev/kmsg"),
        );
        let mut loaded: Vec<String> = Vec::new();
        for m in &case.modules {
            let files = self.image_module(m);
            let script: String = files
                .iter()
                .map(|f| {
                    let name = testbed::module_name(Path::new(f));
                    format!("grep -q '^{name} ' /proc/modules || insmod {f} || fail 'insmod {f}'\n")
                })
                .collect();
            self.step(&format!("{n}:insmod-{m}"), &script);
            loaded.extend(files);
        }
        for m in &case.load_after {
            loaded.extend(self.image_module(m));
        }
        if let Some(s) = &case.setup {
            self.step(&format!("{n}:setup"), s);
        }
        let (ko, klp) = self.patch_module(n);
        self.step(
            &format!("{n}:before"),
            &format!("if {check}; then fail 'check passes before loading'; fi"),
        );
        // Run-pre: the code the patch replaces is the running code (nothing patched).
        self.step(
            &format!("{n}:verify-before"),
            &format!("{kpatch} verify {ko}"),
        );
        if case.load_refused {
            self.step(
                &format!("{n}:load-refused"),
                &format!("if {kpatch} load {ko}; then fail 'the load was not refused'; fi"),
            );
            self.step(
                &format!("{n}:nothing-left"),
                &format!(
                    "[ ! -e /sys/kernel/livepatch/{klp} ] || fail 'a patch is left'\n\
                     [ ! -e /sys/module/{klp} ] || fail 'the module is left'\n\
                     if {check}; then fail 'the change took effect'; fi"
                ),
            );
        } else {
            self.step(
                &format!("{n}:load"),
                &format!("{kpatch} load --verify {ko}"),
            );
            for m in &case.load_after {
                self.step(
                    &format!("{n}:modprobe-{m}"),
                    &format!("/sbin/modprobe {m} || fail 'modprobe {m}'"),
                );
            }
            // Still the same code while patched (the ftrace sites call the livepatch
            // trampoline), and a module loaded later is checked now that it is there.
            self.step(
                &format!("{n}:verify-loaded"),
                &format!("{kpatch} verify {ko}"),
            );
            self.step(
                &format!("{n}:patched"),
                &format!("{check} || fail 'check fails while patched'"),
            );
            let mut current = klp.clone();
            for (other, accepted) in &case.replace {
                let (oko, oklp) = self.patch_module(other);
                // Another patch is loaded: its trampolines are no difference.
                self.step(
                    &format!("{n}:verify-{other}"),
                    &format!("{kpatch} verify {oko}"),
                );
                if *accepted {
                    let ocheck = self.check_of(other);
                    self.step(
                        &format!("{n}:replace-{other}"),
                        &format!(
                            "{kpatch} load {oko} || fail 'the replacement was refused'\n\
                             {ocheck} || fail 'the replacement does not take effect'\n\
                             [ ! -e /sys/kernel/livepatch/{current} ] || fail '{current} was not replaced'"
                        ),
                    );
                    current = oklp;
                } else {
                    self.step(
                        &format!("{n}:replace-{other}"),
                        &format!(
                            "if {kpatch} load {oko}; then fail 'the replacement was not refused'; fi\n\
                             [ ! -e /sys/kernel/livepatch/{oklp} ] || fail '{oklp} is loaded'\n\
                             {check} || fail 'the loaded patch stopped working'"
                        ),
                    );
                }
            }
            self.step(
                &format!("{n}:unload"),
                &format!("{kpatch} unload {current}"),
            );
            self.step(
                &format!("{n}:after"),
                &format!("if {check}; then fail 'check still passes after unloading'; fi"),
            );
        }
        if let Some(t) = &case.teardown {
            self.step(&format!("{n}:teardown"), t);
        }
        if !loaded.is_empty() {
            let mut script = String::new();
            for f in loaded.iter().rev() {
                let name = testbed::module_name(Path::new(f));
                script.push_str(&format!(
                    "grep -q '^{name} ' /proc/modules && rmmod {name}\n"
                ));
            }
            for m in case.modules.iter().chain(&case.load_after) {
                script.push_str(&format!(
                    "! grep -q '^{m} ' /proc/modules || fail '{m} is still loaded'\n"
                ));
            }
            self.step(&format!("{n}:rmmod"), &script);
        }
        if let Some(prefix) = &case.log_prefix {
            assert!(!prefix.contains('\''), "{n}: quote in log-prefix");
            self.step(
                &format!("{n}:log"),
                &format!(
                    "dmesg | sed -n '/kpatch-test: begin {n}$/,$p' | grep -F -- '{prefix}' || true"
                ),
            );
        }
    }
}

/// Host-side checks of one case's step outputs: the refusal message and the log order.
fn check_case(case: &Case, report: &BootReport) -> Vec<String> {
    let mut failures = Vec::new();
    let n = &case.name;
    if let Some(msg) = &case.load_message {
        let out = report
            .step(&format!("{n}:load-refused"))
            .map(|s| s.output.join("\n"))
            .unwrap_or_default();
        if !out.contains(msg.as_str()) {
            failures.push(format!("{n}: kpatch load did not say {msg:?}:\n{out}"));
        }
    }
    for (other, accepted) in &case.replace {
        let out = report
            .step(&format!("{n}:replace-{other}"))
            .map(|s| s.output.join("\n"))
            .unwrap_or_default();
        if !accepted && !out.contains("not compatible") {
            failures.push(format!(
                "{n}: the refusal of {other} does not say it is not compatible:\n{out}"
            ));
        }
    }
    if let Some(prefix) = &case.log_prefix {
        let got: Vec<String> = report
            .step(&format!("{n}:log"))
            .map(|s| s.output.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|l| l.find(prefix.as_str()).map(|i| &l[i + prefix.len()..]))
            .map(|m| m.trim_end().to_string())
            .collect();
        if got != case.log {
            failures.push(format!("{n}: kernel log {got:?}, expected {:?}", case.log));
        }
    }
    failures
}

/// The run-pre checks' own times (`kpatch verify` prints them), for the reader: the
/// issue's budget is 1 s in the guest for the largest patch.
pub fn print_verify_times(report: &BootReport) {
    let mut worst = (0u64, String::new());
    for step in report.steps.iter().filter(|s| s.name.contains(":verify-")) {
        let funcs = step
            .output
            .iter()
            .filter(|l| l.contains(": matches"))
            .count();
        let ms = step
            .output
            .iter()
            .filter_map(|l| {
                l.rsplit_once(" (")?
                    .1
                    .strip_suffix(" ms)")?
                    .parse::<u64>()
                    .ok()
            })
            .next_back()
            .unwrap_or(0);
        eprintln!(
            "kpatch verify {}: {funcs} function(s) in {ms} ms ({:.2} s with the process)",
            step.name,
            step.duration.map_or(0.0, |d| d.as_secs_f64())
        );
        if ms >= worst.0 {
            worst = (ms, step.name.clone());
        }
    }
    eprintln!("slowest kpatch verify: {} ({} ms)", worst.1, worst.0);
}

/// One boot checking every case that built a module (see the module docs); panics with
/// every failure. Returns the report.
pub fn check_in_guest(
    kernel: &Kernel,
    cases: &[Case],
    built: &HashMap<String, PathBuf>,
    name: &str,
) -> BootReport {
    let mut img = Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let mut plan = Plan {
        img,
        scenario: Scenario::new(name).keep_going(),
        kpatch,
        image_modules: None,
        kernel,
        built,
        cases,
    };
    let loadable: Vec<&Case> = cases
        .iter()
        .filter(|c| built.contains_key(&c.name))
        .collect();
    for case in &loadable {
        plan.add_case(case);
    }
    let report = Guest::new(kernel).run(plan.img, &plan.scenario).unwrap();
    eprintln!("{}", report.summary());
    // What the refusals and the logs said, for the reader of the test's output.
    for step in &report.steps {
        if [":load-refused", ":replace-", ":log"]
            .iter()
            .any(|k| step.name.contains(k))
        {
            eprintln!("--- {} ---\n{}", step.name, step.output.join("\n"));
        }
    }
    let mut failures: Vec<String> = report.failures();
    for case in &loadable {
        failures.extend(check_case(case, &report));
    }
    print_verify_times(&report);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    report
}
