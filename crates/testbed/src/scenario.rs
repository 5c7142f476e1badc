//! Scenarios: ordered shell steps run by a generated `/init` inside the guest.
//!
//! The guest writes a line protocol on its second serial port (`/dev/ttyS1`), separate from the
//! kernel console on `ttyS0`, so kernel messages never interleave with it:
//!
//! ```text
//! @@TB INIT uptime=<s> release=<uname -r>
//! @@TB BEGIN <step> uptime=<s>
//! …the step's stdout and stderr…
//! @@TB STEP <step> PASS|FAIL rc=<n> uptime=<s>
//! @@TB SKIP <step>
//! @@TB DMESG-BEGIN / …dmesg… / @@TB DMESG-END
//! @@TB TAINT <n>
//! @@TB DONE uptime=<s>
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use crate::error::{Error, Result};

/// Marker prefix of the guest's line protocol.
pub const MARK: &str = "@@TB";

/// One step: a shell script run with busybox `sh` after sourcing the helper library
/// ([`LIB_SH`]). It passes when it exits 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Unique name, `[A-Za-z0-9_.:-]+`.
    pub name: String,
    /// Shell text.
    pub script: String,
    /// In-guest limit; the step is killed and fails after it.
    pub timeout: Duration,
}

/// A named list of steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Name (for logs).
    pub name: String,
    steps: Vec<Step>,
    stop_on_failure: bool,
    step_timeout: Duration,
}

/// Shell helpers every step can use.
pub const LIB_SH: &str = r#"# kpatch test bed helpers (busybox sh)
fail() { echo "FAIL: $*"; exit 1; }
# expect_eq ACTUAL EXPECTED [WHAT]
expect_eq() {
	if [ "$1" != "$2" ]; then
		echo "${3:-value} differs"; echo "  expected: [$2]"; echo "  actual:   [$1]"; exit 1
	fi
	echo "ok: ${3:-value} = [$1]"
}
# expect_contains HAYSTACK NEEDLE [WHAT]
expect_contains() {
	case "$1" in
	*"$2"*) echo "ok: ${3:-value} contains [$2]" ;;
	*) echo "${3:-value} lacks [$2]"; echo "  actual: [$1]"; exit 1 ;;
	esac
}
# expect_not_contains HAYSTACK NEEDLE [WHAT]
expect_not_contains() {
	case "$1" in
	*"$2"*) echo "${3:-value} unexpectedly contains [$2]"; echo "  actual: [$1]"; exit 1 ;;
	*) echo "ok: ${3:-value} has no [$2]" ;;
	esac
}
# wait_until SECONDS SHELL-CONDITION
wait_until() {
	_t=$1; shift; _i=0
	while ! eval "$*"; do
		_i=$((_i + 1))
		[ "$_i" -ge $((_t * 10)) ] && { echo "timed out after ${_t}s waiting for: $*"; return 1; }
		sleep 0.1
	done
}
klp_name() { _n=${1##*/}; _n=${_n%.ko}; echo "$_n" | tr - _; }
# klp_wait_patched NAME: the patch exists and its transition is over
klp_wait_patched() {
	wait_until 60 "[ -e /sys/kernel/livepatch/$1/transition ] && [ \"\$(cat /sys/kernel/livepatch/$1/transition)\" = 0 ]"
}
# klp_wait_gone NAME: the patch's sysfs directory is gone
klp_wait_gone() { wait_until 60 "[ ! -e /sys/kernel/livepatch/$1 ]"; }
# klp_load FILE.ko [PARAMS]: insmod and wait for the transition
klp_load() { _m=$(klp_name "$1"); insmod "$@" || fail "insmod $1"; klp_wait_patched "$_m"; }
# klp_disable NAME: echo 0 > enabled and wait until the patch is freed
klp_disable() {
	echo 0 > "/sys/kernel/livepatch/$1/enabled" || fail "disable $1"
	klp_wait_gone "$1"
}
# klp_unload NAME: wait for refcnt 0, rmmod, wait until gone
klp_unload() {
	wait_until 60 "[ \"\$(cat /sys/module/$1/refcnt 2>/dev/null)\" = 0 ]" || fail "refcnt of $1"
	rmmod "$1" || fail "rmmod $1"
	wait_until 60 "[ ! -e /sys/module/$1 ]"
}
"#;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

impl Scenario {
    /// An empty scenario; by default it stops at the first failed step and gives each step
    /// 60 s.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            steps: Vec::new(),
            stop_on_failure: true,
            step_timeout: Duration::from_secs(60),
        }
    }

    /// Appends a step with the default timeout.
    pub fn step(self, name: &str, script: &str) -> Self {
        let t = self.step_timeout;
        self.step_with_timeout(name, script, t)
    }

    /// Appends a step with its own in-guest timeout.
    pub fn step_with_timeout(mut self, name: &str, script: &str, timeout: Duration) -> Self {
        self.steps.push(Step {
            name: name.to_owned(),
            script: script.to_owned(),
            timeout,
        });
        self
    }

    /// Runs every step even after one failed.
    pub fn keep_going(mut self) -> Self {
        self.stop_on_failure = false;
        self
    }

    /// The default in-guest timeout of later steps.
    pub fn default_step_timeout(mut self, t: Duration) -> Self {
        self.step_timeout = t;
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    fn validate(&self) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.steps {
            if !valid_name(&s.name) {
                return Err(Error::Invalid(format!("step name {:?}", s.name)));
            }
            if !seen.insert(&s.name) {
                return Err(Error::Invalid(format!("duplicate step {:?}", s.name)));
            }
        }
        Ok(())
    }

    /// The generated `/init`.
    pub fn init_script(&self) -> Result<String> {
        self.validate()?;
        let mut s = String::new();
        s.push_str(&format!(
            "#!/bin/sh\n# Generated by the kpatch test bed for scenario {:?}.\n",
            self.name
        ));
        s.push_str(INIT_PRELUDE);
        s.push_str(&format!(
            "STOP_ON_FAILURE={}\n",
            u8::from(self.stop_on_failure)
        ));
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "run_step {} /testbed/steps/{:03}.sh {}",
                step.name,
                i,
                step.timeout.as_secs().max(1)
            );
        }
        s.push_str(INIT_EPILOGUE);
        Ok(s)
    }

    /// `(guest path, contents, permissions)` of every file the scenario needs.
    pub fn guest_files(&self) -> Result<Vec<(String, Vec<u8>, u32)>> {
        let mut files = vec![
            ("/init".to_owned(), self.init_script()?.into_bytes(), 0o755),
            (
                "/testbed/lib.sh".to_owned(),
                LIB_SH.as_bytes().to_vec(),
                0o644,
            ),
        ];
        for (i, step) in self.steps.iter().enumerate() {
            let text = format!("# step {}\n. /testbed/lib.sh\n{}\n", step.name, step.script);
            files.push((
                format!("/testbed/steps/{i:03}.sh"),
                text.into_bytes(),
                0o755,
            ));
        }
        Ok(files)
    }
}

const INIT_PRELUDE: &str = r#"export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
if [ -c /dev/ttyS1 ]; then
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	exec 3>/dev/ttyS1
else
	exec 3>/dev/console
fi
uptime_s() { read _u _r < /proc/uptime; echo "$_u"; }
mark() { echo "@@TB $*" >&3; }
mark INIT uptime=$(uptime_s) release=$(uname -r)
FAILED=0
run_step() {
	if [ "$FAILED" = 1 ] && [ "$STOP_ON_FAILURE" = 1 ]; then
		mark SKIP "$1"
		return
	fi
	mark BEGIN "$1" uptime=$(uptime_s)
	timeout "$3" sh "$2" < /dev/null >&3 2>&1
	_rc=$?
	if [ "$_rc" = 0 ]; then _res=PASS; else _res=FAIL; FAILED=1; fi
	mark STEP "$1" "$_res" rc=$_rc uptime=$(uptime_s)
}
"#;

const INIT_EPILOGUE: &str = r#"mark DMESG-BEGIN
dmesg >&3
mark DMESG-END
mark TAINT $(cat /proc/sys/kernel/tainted)
mark DONE uptime=$(uptime_s)
# Closing the last descriptor of the tty waits until its output has been sent.
exec 3>&-
sync
poweroff -f
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_runs_steps_in_order_with_timeouts() {
        let s = Scenario::new("t")
            .step("a", "true")
            .step_with_timeout("b-2", "false", Duration::from_secs(5))
            .keep_going();
        let init = s.init_script().unwrap();
        let a = init.find("run_step a /testbed/steps/000.sh 60").unwrap();
        let b = init.find("run_step b-2 /testbed/steps/001.sh 5").unwrap();
        assert!(a < b);
        assert!(init.contains("STOP_ON_FAILURE=0"));
        assert!(init.trim_end().ends_with("poweroff -f"));
        let files = s.guest_files().unwrap();
        assert_eq!(files.len(), 4);
        assert!(String::from_utf8_lossy(&files[3].1).contains(". /testbed/lib.sh\nfalse"));
    }

    #[test]
    fn bad_or_duplicate_step_names_are_rejected() {
        assert!(Scenario::new("t")
            .step("a b", "true")
            .init_script()
            .is_err());
        assert!(Scenario::new("t")
            .step("a", "true")
            .step("a", "true")
            .init_script()
            .is_err());
    }
}
