//! Parsing a guest's serial output into a structured [`BootReport`].

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::scenario::{Scenario, MARK};
use crate::util::tail;

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exited 0.
    Pass,
    /// Exited non-zero (143 or 124: killed by its in-guest timeout).
    Fail {
        /// Exit status.
        rc: i32,
    },
    /// Not run because an earlier step failed.
    Skipped,
    /// Started or due, but the guest never reported an end (hang, panic, timeout).
    NotRun,
}

/// One step's result.
#[derive(Clone, Debug, PartialEq)]
pub struct StepResult {
    /// Step name.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Its standard output and error, line by line.
    pub output: Vec<String>,
    /// Guest time from start to end, when both were reported.
    pub duration: Option<Duration>,
}

impl StepResult {
    /// Whether the step passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }
}

/// One line of the guest's `dmesg`.
#[derive(Clone, Debug, PartialEq)]
pub struct DmesgLine {
    /// Kernel timestamp in seconds, when the line had one.
    pub time: Option<f64>,
    /// The message without its timestamp.
    pub text: String,
}

/// Wall-clock and guest timings of a boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// QEMU start to QEMU exit (or kill).
    pub total: Duration,
    /// QEMU start to the first byte on the kernel console.
    pub first_console_output: Option<Duration>,
    /// QEMU start to the first byte from `/init`.
    pub init_started: Option<Duration>,
    /// Guest uptime when `/init` started (kernel boot time).
    pub guest_uptime_at_init: Option<f64>,
    /// Guest uptime when the scenario finished.
    pub guest_uptime_at_done: Option<f64>,
}

/// Everything a boot produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BootReport {
    /// Scenario name.
    pub scenario: String,
    /// `uname -r` as the guest reported it.
    pub release: Option<String>,
    /// One entry per scenario step, in order.
    pub steps: Vec<StepResult>,
    /// The guest's `dmesg`, dumped after the last step.
    pub dmesg: Vec<DmesgLine>,
    /// `/proc/sys/kernel/tainted` after the last step.
    pub taint: Option<u64>,
    /// Oops, BUG, panic, warning and lockup lines seen on the console or in dmesg.
    pub kernel_errors: Vec<String>,
    /// Whether `/init` reached its end (`DONE`).
    pub completed: bool,
    /// QEMU's exit status.
    pub exit_status: String,
    /// Kernel console (`ttyS0`).
    pub console_log: String,
    /// `/init`'s protocol stream (`ttyS1`).
    pub init_log: String,
    /// Timings.
    pub timings: Timings,
    /// Where the logs and the initramfs were kept, if they were.
    pub work_dir: Option<PathBuf>,
}

/// Substrings that make a kernel log line an error.
pub const KERNEL_ERROR_PATTERNS: &[&str] = &[
    "Oops:",
    "BUG:",
    "kernel BUG at",
    "Kernel panic",
    "general protection fault",
    "WARNING: CPU:",
    "Unable to handle kernel",
    "unable to handle page fault",
    "soft lockup",
    "hard LOCKUP",
    "detected stalls",
    "blocked for more than",
];

/// Taint bit letters, bit 0 first (as in the kernel's `taint_flags`).
const TAINT_LETTERS: &[u8] = b"PFSRMBUDAWCIOELKXTN";

/// Letters of the set taint bits, e.g. 45056 → `"OEK"`.
pub fn taint_letters(taint: u64) -> String {
    TAINT_LETTERS
        .iter()
        .enumerate()
        .filter(|(bit, _)| taint & (1u64 << bit) != 0)
        .map(|(_, c)| *c as char)
        .collect()
}

fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words.iter().find_map(|w| w.strip_prefix(key))
}

fn parse_dmesg_line(line: &str) -> DmesgLine {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((ts, text)) = rest.split_once(']') {
            if let Ok(t) = ts.trim().parse::<f64>() {
                return DmesgLine {
                    time: Some(t),
                    text: text.strip_prefix(' ').unwrap_or(text).to_owned(),
                };
            }
        }
    }
    DmesgLine {
        time: None,
        text: line.to_owned(),
    }
}

impl BootReport {
    /// Parses the two serial streams against the scenario that produced them.
    pub fn parse(scenario: &Scenario, init_log: &str, console_log: &str) -> Self {
        let mut steps: Vec<StepResult> = scenario
            .steps()
            .iter()
            .map(|s| StepResult {
                name: s.name.clone(),
                outcome: Outcome::NotRun,
                output: Vec::new(),
                duration: None,
            })
            .collect();
        let mut report = BootReport {
            scenario: scenario.name.clone(),
            init_log: init_log.to_owned(),
            console_log: console_log.to_owned(),
            ..Default::default()
        };
        let mut current: Option<(usize, Option<f64>)> = None;
        let mut in_dmesg = false;
        for raw in init_log.lines() {
            let line = raw.trim_end_matches('\r');
            let Some(pos) = line.find(MARK) else {
                if in_dmesg {
                    report.dmesg.push(parse_dmesg_line(line));
                } else if let Some((i, _)) = current {
                    steps[i].output.push(line.to_owned());
                }
                continue;
            };
            let words: Vec<&str> = line[pos + MARK.len()..].split_whitespace().collect();
            let uptime = field(&words, "uptime=").and_then(|u| u.parse::<f64>().ok());
            let index =
                |name: Option<&&str>| name.and_then(|n| steps.iter().position(|s| s.name == *n));
            match words.first().copied() {
                Some("INIT") => {
                    report.timings.guest_uptime_at_init = uptime;
                    report.release = field(&words, "release=").map(str::to_owned);
                }
                Some("BEGIN") => current = index(words.get(1)).map(|i| (i, uptime)),
                Some("STEP") => {
                    if let Some(i) = index(words.get(1)) {
                        let rc = field(&words, "rc=")
                            .and_then(|r| r.parse().ok())
                            .unwrap_or(-1);
                        steps[i].outcome = match words.get(2) {
                            Some(&"PASS") => Outcome::Pass,
                            _ => Outcome::Fail { rc },
                        };
                        if let (Some((_, Some(t0))), Some(t1)) = (current, uptime) {
                            steps[i].duration = Some(Duration::from_secs_f64((t1 - t0).max(0.0)));
                        }
                    }
                    current = None;
                }
                Some("SKIP") => {
                    if let Some(i) = index(words.get(1)) {
                        steps[i].outcome = Outcome::Skipped;
                    }
                }
                Some("DMESG-BEGIN") => in_dmesg = true,
                Some("DMESG-END") => in_dmesg = false,
                Some("TAINT") => report.taint = words.get(1).and_then(|t| t.parse().ok()),
                Some("DONE") => {
                    report.completed = true;
                    report.timings.guest_uptime_at_done = uptime;
                }
                _ => {}
            }
        }
        report.steps = steps;
        report.kernel_errors = find_kernel_errors(
            console_log
                .lines()
                .chain(report.dmesg.iter().map(|d| d.text.as_str())),
        );
        report
    }

    /// The result of the step called `name`.
    pub fn step(&self, name: &str) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Whether the scenario completed, every step passed and the kernel reported no error.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// Human-readable reasons why the run did not pass (empty when it passed).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.steps {
            match &s.outcome {
                Outcome::Pass => {}
                Outcome::Fail { rc } => out.push(format!(
                    "step {} failed (exit {rc}):\n    {}",
                    s.name,
                    tail(&s.output.join("\n"), 25).replace('\n', "\n    ")
                )),
                Outcome::Skipped => out.push(format!("step {} skipped", s.name)),
                Outcome::NotRun => out.push(format!("step {} did not finish", s.name)),
            }
        }
        if !self.kernel_errors.is_empty() {
            out.push(format!(
                "kernel errors:\n    {}",
                self.kernel_errors.join("\n    ")
            ));
        }
        if !self.completed {
            out.push(format!(
                "the guest did not complete its scenario (QEMU: {}); console tail:\n{}",
                self.exit_status,
                tail(&self.console_log, 30)
            ));
        }
        out
    }

    /// `Ok` when [`BootReport::passed`], else an error listing the failures.
    pub fn ensure_passed(&self) -> Result<()> {
        let f = self.failures();
        if f.is_empty() {
            Ok(())
        } else {
            Err(Error::GuestFailed(f.join("\n")))
        }
    }

    /// Whether any dmesg line contains `needle`.
    pub fn dmesg_contains(&self, needle: &str) -> bool {
        self.dmesg.iter().any(|d| d.text.contains(needle))
    }

    /// Taint letters (`"OEK"`), empty when untainted or unknown.
    pub fn taint_letters(&self) -> String {
        self.taint.map(taint_letters).unwrap_or_default()
    }

    /// A short multi-line summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "scenario {} on {}: {}\n",
            self.scenario,
            self.release.as_deref().unwrap_or("?"),
            if self.passed() { "PASSED" } else { "FAILED" }
        );
        for st in &self.steps {
            let d = st
                .duration
                .map(|d| format!(" ({:.2}s)", d.as_secs_f64()))
                .unwrap_or_default();
            s.push_str(&format!("  {:<28} {:?}{d}\n", st.name, st.outcome));
        }
        let t = &self.timings;
        s.push_str(&format!(
            "  taint {} ({}), {} dmesg lines, {} kernel errors\n  total {:.2}s, console after {}, init after {}, kernel boot {}s\n",
            self.taint.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
            self.taint_letters(),
            self.dmesg.len(),
            self.kernel_errors.len(),
            t.total.as_secs_f64(),
            fmt_opt(t.first_console_output),
            fmt_opt(t.init_started),
            t.guest_uptime_at_init.map(|u| format!("{u:.2}")).unwrap_or_else(|| "?".into()),
        ));
        s
    }
}

fn fmt_opt(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}s", d.as_secs_f64()))
        .unwrap_or_else(|| "?".into())
}

fn find_kernel_errors<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let text = parse_dmesg_line(line.trim_end_matches('\r')).text;
        if KERNEL_ERROR_PATTERNS.iter().any(|p| text.contains(p)) && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::new("s")
            .step("one", "true")
            .step("two", "false")
            .step("three", "true")
    }

    #[test]
    fn full_run_is_parsed() {
        let log = "@@TB INIT uptime=2.50 release=6.1.0-56-amd64\r\n\
@@TB BEGIN one uptime=2.60\r\nhello\r\n@@TB STEP one PASS rc=0 uptime=3.10\r\n\
@@TB BEGIN two uptime=3.10\r\noops\r\n@@TB STEP two FAIL rc=1 uptime=3.20\r\n\
@@TB SKIP three\r\n@@TB DMESG-BEGIN\r\n[    0.000000] Linux version 6.1\r\n\
[    5.100000] livepatch: enabling patch 'x'\r\n@@TB DMESG-END\r\n@@TB TAINT 45056\r\n@@TB DONE uptime=3.30\r\n";
        let r = BootReport::parse(&scenario(), log, "");
        assert_eq!(r.release.as_deref(), Some("6.1.0-56-amd64"));
        assert!(r.completed);
        assert_eq!(r.steps[0].outcome, Outcome::Pass);
        assert_eq!(r.steps[0].output, vec!["hello"]);
        assert_eq!(r.steps[0].duration, Some(Duration::from_secs_f64(0.5)));
        assert_eq!(r.steps[1].outcome, Outcome::Fail { rc: 1 });
        assert_eq!(r.steps[2].outcome, Outcome::Skipped);
        assert_eq!(r.dmesg.len(), 2);
        assert_eq!(r.dmesg[1].text, "livepatch: enabling patch 'x'");
        assert!(r.dmesg_contains("enabling patch"));
        assert_eq!(r.taint, Some(45056));
        assert_eq!(r.taint_letters(), "OEK");
        assert!(!r.passed());
        assert_eq!(r.failures().len(), 2);
    }

    #[test]
    fn hang_and_oops_are_failures() {
        let log = "@@TB INIT uptime=2.5 release=x\n@@TB BEGIN one uptime=2.6\n";
        let console = "[    3.0] BUG: kernel NULL pointer dereference, address: 0000000000000000\n[    3.1] Kernel panic - not syncing: Fatal exception\n";
        let r = BootReport::parse(&scenario(), log, console);
        assert!(!r.completed);
        assert_eq!(r.steps[0].outcome, Outcome::NotRun);
        assert_eq!(r.kernel_errors.len(), 2);
        let err = r.ensure_passed().unwrap_err().to_string();
        assert!(err.contains("BUG: kernel NULL pointer"), "{err}");
        assert!(err.contains("did not complete"), "{err}");
    }

    #[test]
    fn clean_run_passes() {
        let s = Scenario::new("s").step("one", "true");
        let log = "@@TB INIT uptime=1 release=x\n@@TB BEGIN one uptime=1\n@@TB STEP one PASS rc=0 uptime=1\n@@TB TAINT 0\n@@TB DONE uptime=2\n";
        let r = BootReport::parse(&s, log, "[ 0.1] Linux version\n");
        assert!(r.passed(), "{:?}", r.failures());
        assert_eq!(r.taint_letters(), "");
    }
}
