//! The patch corpus (tests/patches/<series>/*.patch) and how to drive kpatch-build on it.
//!
//! Each patch starts with directives, one per line, before the diff:
//! - `kpatch-test: expect=success|no-change|unpatchable|error`, `message=<stderr substring>`
//!   (repeatable: every one must appear);
//! - `check=<guest shell test>`: fails before loading, passes while loaded, fails after
//!   unloading;
//! - `modules=<m>[,<m>...]`: modules of the kernel's image package to load (with their
//!   dependencies) before the patch, and to unload after it; `load-after=<m>[,...]`: image
//!   modules loaded with `modprobe` after the patch (the livepatch core patches them as they
//!   load), before the check; `setup=<guest shell>`, and `teardown=<guest shell>` run after
//!   the patch is unloaded, before those modules are;
//! - `load=refused` with `load-message=<text>`: the kernel refuses the patch; `kpatch load`
//!   fails saying `<text>`, and nothing is left behind (no patch, no module, no effect);
//! - `log-prefix=<text>` and `log=<a>|<b>|...`: the kernel log lines of this case that
//!   contain the prefix are exactly these messages (after the prefix), in this order;
//! - `replace=<case>:refused|accepted` (repeatable): while this case is loaded, that case's
//!   module (an atomic-replace patch) is refused by the kernel (this one stays), or replaces
//!   this one (its check passes; it is the one unloaded at the end).

#![allow(dead_code)]

pub mod guest;

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub path: PathBuf,
    pub expect: String,
    pub messages: Vec<String>,
    pub check: Option<String>,
    pub modules: Vec<String>,
    pub load_after: Vec<String>,
    pub setup: Option<String>,
    pub teardown: Option<String>,
    pub load_refused: bool,
    pub load_message: Option<String>,
    pub log_prefix: Option<String>,
    pub log: Vec<String>,
    /// `(case name, accepted)`.
    pub replace: Vec<(String, bool)>,
}

impl Case {
    pub fn exit_code(&self) -> i32 {
        match self.expect.as_str() {
            "success" => 0,
            "error" => 1,
            "unpatchable" => 2,
            "no-change" => 3,
            other => panic!("{}: unknown expectation {other}", self.name),
        }
    }
}

pub fn corpus(series: &str) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/patches")
        .join(series);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().map(|e| e == "patch").unwrap_or(false))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut case = Case {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                path: path.clone(),
                expect: String::new(),
                messages: Vec::new(),
                check: None,
                modules: Vec::new(),
                load_after: Vec::new(),
                setup: None,
                teardown: None,
                load_refused: false,
                load_message: None,
                log_prefix: None,
                log: Vec::new(),
                replace: Vec::new(),
            };
            for line in text.lines().take_while(|l| !l.starts_with("--- ")) {
                let Some(d) = line.strip_prefix("kpatch-test: ") else {
                    continue;
                };
                let (k, v) = d.split_once('=').expect("key=value");
                match k {
                    "expect" => case.expect = v.to_string(),
                    "message" => case.messages.push(v.to_string()),
                    "check" => case.check = Some(v.to_string()),
                    "modules" => case.modules = v.split(',').map(str::to_string).collect(),
                    "load-after" => case.load_after = v.split(',').map(str::to_string).collect(),
                    "setup" => case.setup = Some(v.to_string()),
                    "teardown" => case.teardown = Some(v.to_string()),
                    "load" => {
                        assert_eq!(
                            v, "refused",
                            "{}: load=refused is the only value",
                            case.name
                        );
                        case.load_refused = true;
                    }
                    "load-message" => case.load_message = Some(v.to_string()),
                    "log-prefix" => case.log_prefix = Some(v.to_string()),
                    "log" => case.log = v.split('|').map(str::to_string).collect(),
                    "replace" => {
                        let (other, how) = v.split_once(':').expect("replace=<case>:<how>");
                        let accepted = match how {
                            "accepted" => true,
                            "refused" => false,
                            _ => panic!("{}: replace=...:{how}", case.name),
                        };
                        case.replace.push((other.to_string(), accepted));
                    }
                    other => panic!("{}: unknown directive {other}", case.name),
                }
            }
            assert!(
                !case.expect.is_empty(),
                "{}: no expect= directive",
                case.name
            );
            assert_eq!(
                case.log_prefix.is_some(),
                !case.log.is_empty(),
                "{}: log= and log-prefix= go together",
                case.name
            );
            assert_eq!(
                case.load_refused,
                case.load_message.is_some(),
                "{}: load=refused needs load-message=",
                case.name
            );
            case
        })
        .collect()
}

pub struct Built {
    pub code: i32,
    pub stderr: String,
    pub module: Option<PathBuf>,
}

/// Run kpatch-build on a case for `release`, writing the module into `out`.
pub fn kpatch_build(case: &Case, release: &str, out: &Path) -> Built {
    kpatch_build_with(case, release, out, &[])
}

/// As [`kpatch_build`], with extra options.
pub fn kpatch_build_with(
    case: &Case,
    release: &str,
    out: &Path,
    extra: &[&std::ffi::OsStr],
) -> Built {
    let name = case
        .name
        .split_once('-')
        .map(|(_, n)| n)
        .unwrap_or(&case.name)
        .to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .args(["-a", release, "-n", &name, "-o"])
        .arg(out)
        .args(extra)
        .arg(&case.path)
        .output()
        .expect("run kpatch-build");
    let module = out.join(format!("livepatch-{name}.ko"));
    Built {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        module: module.exists().then_some(module),
    }
}

/// Our `kpatch` runtime binary, built beside kpatch-build by `cargo test --workspace`.
pub fn kpatch_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_kpatch-build")).with_file_name("kpatch");
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}
