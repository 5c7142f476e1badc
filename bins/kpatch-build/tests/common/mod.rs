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
//! - `endbr=<function>,...`: functions of the module that must start with ENDBR64 and not be
//!   sealed (IBT kernels; checked statically).

#![allow(dead_code)]

pub mod guest;
pub mod ibt;

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
    pub endbr: Vec<String>,
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
                endbr: Vec::new(),
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
                    "endbr" => case.endbr = v.split(',').map(str::to_string).collect(),
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
    /// `--json`'s summary, when asked for and printed.
    pub json: Option<serde_json::Value>,
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
    // The cache the test bed prepared the kernel in (one cache for both).
    let cache = testbed::Cache::from_env();
    let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
        .arg("--cache-dir")
        .arg(cache.root())
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
        json: serde_json::from_slice(&o.stdout).ok(),
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

/// A module of the kernel image package, unpacked into `dest` for the guest.
pub fn image_module(kernel: &testbed::Kernel, name: &str, dest: &Path) -> PathBuf {
    let image = kernel
        .debs
        .iter()
        .find(|d| {
            d.file_name()
                .map(|f| f.to_string_lossy().starts_with("linux-image-"))
                .unwrap_or(false)
        })
        .expect("image package");
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(image)
        .output()
        .unwrap();
    let member = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|p| p.ends_with(&format!("/{name}.ko")) || p.ends_with(&format!("/{name}.ko.xz")))
        .unwrap_or_else(|| panic!("{name}.ko not in {}", image.display()))
        .to_string();
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$0" | tar -x -C "$1" "$2""#)
        .arg(image)
        .arg(dest)
        .arg(&member)
        .status()
        .unwrap();
    assert!(status.success());
    let path = dest.join(member.trim_start_matches("./"));
    if path.extension().is_some_and(|e| e == "xz") {
        assert!(Command::new("xz")
            .arg("-df")
            .arg(&path)
            .status()
            .unwrap()
            .success());
        return path.with_extension("");
    }
    path
}

/// Builds every case of a corpus for `kernel`; checks each verdict and message; returns
/// the loadable ones with their modules and `--json` summaries, and the failures.
pub fn build_corpus(
    kernel: &testbed::Kernel,
    corpus_dir: &str,
    out: &Path,
) -> (Vec<(Case, PathBuf, serde_json::Value)>, Vec<String>) {
    let mut failures = Vec::new();
    let mut loadable = Vec::new();
    for case in corpus(corpus_dir) {
        let t = std::time::Instant::now();
        let built = kpatch_build_with(&case, kernel.release(), out, &["--json".as_ref()]);
        eprintln!(
            "{}: exit {} in {:.1}s",
            case.name,
            built.code,
            t.elapsed().as_secs_f64()
        );
        if built.code != case.exit_code() {
            failures.push(format!(
                "{}: exit {} (expected {})\n{}",
                case.name,
                built.code,
                case.exit_code(),
                built.stderr
            ));
            continue;
        }
        for m in &case.messages {
            if !built.stderr.contains(m.as_str()) {
                failures.push(format!(
                    "{}: message lacks {m:?}\n{}",
                    case.name, built.stderr
                ));
            }
        }
        match (case.exit_code(), built.module) {
            (0, Some(ko)) => loadable.push((case, ko, built.json.unwrap_or_default())),
            (0, None) => failures.push(format!("{}: no module written", case.name)),
            (_, Some(_)) => failures.push(format!(
                "{}: a module was written despite the failure",
                case.name
            )),
            _ => {}
        }
    }
    (loadable, failures)
}

/// One boot: for each loadable case, its check fails before loading, passes while loaded
/// and fails after unloading (modules of the image and setup steps first).
pub fn corpus_scenario(
    kernel: &testbed::Kernel,
    loadable: &[(Case, PathBuf, serde_json::Value)],
    out: &Path,
    name: &str,
) -> (testbed::Initramfs, testbed::Scenario) {
    let mut img = testbed::Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let mut scenario = testbed::Scenario::new(name).keep_going();
    for (case, ko, _) in loadable {
        let n = &case.name;
        for m in &case.modules {
            let guest = img.add_module(&image_module(kernel, m, out)).unwrap();
            scenario = scenario.step(&format!("{n}:insmod-{m}"), &format!("insmod {guest}"));
        }
        if let Some(s) = &case.setup {
            scenario = scenario.step(&format!("{n}:setup"), s);
        }
        let guest_ko = img.add_module(ko).unwrap();
        let check = case.check.as_deref().expect("check= for a loadable patch");
        let klp = testbed::module_name(ko);
        scenario = scenario
            .step(
                &format!("{n}:before"),
                &format!("if {check}; then fail 'check passes before loading'; fi"),
            )
            // Run-pre: the code the patch replaces is the running code, before the load,
            // with `load --verify`, and while patched (its ftrace sites then call the
            // livepatch trampoline, which is no difference).
            .step(
                &format!("{n}:verify-before"),
                &format!("{kpatch} verify {guest_ko}"),
            )
            .step(
                &format!("{n}:load"),
                &format!("{kpatch} load --verify {guest_ko}"),
            )
            .step(
                &format!("{n}:patched"),
                &format!("{check} || fail 'check fails while patched'"),
            )
            .step(
                &format!("{n}:verify-loaded"),
                &format!("{kpatch} verify {guest_ko}"),
            )
            .step(&format!("{n}:unload"), &format!("{kpatch} unload {klp}"))
            .step(
                &format!("{n}:after"),
                &format!("if {check}; then fail 'check still passes after unloading'; fi"),
            );
    }
    (img, scenario)
}
