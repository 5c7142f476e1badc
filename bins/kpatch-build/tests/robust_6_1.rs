//! kpatch-build's one promise, on Debian 12's real 6.1 tree: a module is either right or
//! not written, and the prepared tree is never left changed.
//!
//! - SIGINT during apply, during compile and during the module link each leave the tree
//!   byte-identical to Debian's source (compared with the files of the `linux-source`
//!   package itself), and the next build makes the same module as an uninterrupted one;
//! - a SIGKILL'd build is recovered from its journal by the next one, which also stops
//!   the children the killed build left running;
//! - a patch that deletes a built file, and one whose `---`/`+++` name two files, are
//!   refused, and the build after them carries nothing of them;
//! - odd patches and arguments are refused precisely, before any work.
//!
//! The builds run in a scratch cache (`<cache>/.robust-test`, the downloaded packages
//! hard-linked from the main cache `$KPATCH_CACHE` or `~/.kpatch`), never in the shared
//! one: these tests leave trees dirty on purpose. The scratch cache is kept for the next
//! run (the first run prepares its tree, about a minute).
//!
//! `soak_builds_some_killed_6_1` builds two patches alternately `KPATCH_SOAK_BUILDS` times
//! (default 6, about 3 minutes; 50 took about 25 minutes on the loaded 2-core machine), kills
//! one build in five at random moments (at least two), checks every completed module, the
//! tree at the end, and three modules in the guest.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use testbed::{Guest, Initramfs, KernelSeries, Scenario};

/// The files the test patches touch (and the one they create): compared with Debian's.
const SOURCES: &[&str] = &[
    "fs/proc/meminfo.c",
    "fs/proc/cmdline.c",
    "fs/proc/Makefile",
    "fs/proc/internal.h",
];
/// Paths that must not be in the tree between builds.
const ABSENT: &[&str] = &[
    "fs/proc/kpatch_new.c",
    "fs/proc/meminfo.o",
    "fs/proc/cmdline.o",
    "kpatch_probe",
];

/// One test at a time: they share the scratch tree and look at it between builds.
static SERIAL: Mutex<()> = Mutex::new(());

struct Scratch {
    cache: PathBuf,
    release: String,
    /// The prepared tree in the scratch cache.
    tree: PathBuf,
    /// SOURCES as Debian's linux-source package has them.
    debian: PathBuf,
}

fn main_cache() -> PathBuf {
    std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".kpatch"))
}

fn patch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/patches/6.1-robust")
        .join(format!("{name}.patch"))
}

/// The scratch cache: packages linked from the main cache (downloaded there first if
/// need be), tree prepared by a first build, Debian's copies of SOURCES extracted.
fn scratch(kernel: &testbed::Kernel) -> &'static Scratch {
    static S: OnceLock<Scratch> = OnceLock::new();
    S.get_or_init(|| {
        let release = kernel.release().to_string();
        let main = main_cache();
        // The main cache's package pool (and, from older layouts, `<release>/debs`).
        let pools = [main.join("debs"), main.join(&release).join("debs")];
        let has_source = |d: &Path| {
            std::fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with("linux-source-"))
                })
                .unwrap_or(false)
        };
        if !pools.iter().any(|d| has_source(d)) {
            let out = tempfile::tempdir().unwrap();
            let o = Command::new(env!("CARGO_BIN_EXE_kpatch-build"))
                .args(["-a", &release, "-n", "robust-prime", "--cache-dir"])
                .arg(&main)
                .arg("-o")
                .arg(out.path())
                .arg(patch("cmdline"))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let cache = main.join(".robust-test");
        std::fs::create_dir_all(&cache).unwrap();
        // Shared with the main cache: the verified pool, apt's lists and the build roots
        // (nothing the tests leave dirty is there); the release's tree is the scratch one's.
        for shared in ["debs", "apt", "roots"] {
            let link = cache.join(shared);
            if main.join(shared).is_dir() && std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(main.join(shared), &link).unwrap();
            }
        }
        let legacy = main.join(&release).join("debs");
        if legacy.is_dir() {
            let sdebs = cache.join(&release).join("debs");
            std::fs::create_dir_all(&sdebs).unwrap();
            for e in std::fs::read_dir(&legacy).unwrap().flatten() {
                let to = sdebs.join(e.file_name());
                if !to.exists() && std::fs::hard_link(e.path(), &to).is_err() {
                    std::fs::copy(e.path(), &to).unwrap();
                }
            }
        }
        // The release's -dbg index and debug vmlinux, read-only, from the main cache when it
        // has them (else the first scratch build makes its own).
        let (mrel, srel) = (main.join(&release), cache.join(&release));
        std::fs::create_dir_all(&srel).unwrap();
        if mrel.join("index/units.json").is_file()
            && std::fs::symlink_metadata(srel.join("index")).is_err()
        {
            std::os::unix::fs::symlink(mrel.join("index"), srel.join("index")).unwrap();
        }
        let vmlinux = Path::new("pkg/usr/lib/debug/boot").join(format!("vmlinux-{release}"));
        if mrel.join(&vmlinux).is_file() && !srel.join(&vmlinux).exists() {
            std::fs::create_dir_all(srel.join(&vmlinux).parent().unwrap()).unwrap();
            std::fs::hard_link(mrel.join(&vmlinux), srel.join(&vmlinux)).unwrap();
        }
        let source_pool = pools
            .iter()
            .find(|d| has_source(d))
            .expect("a linux-source package in the main cache")
            .clone();
        let series = release.split('.').take(2).collect::<Vec<_>>().join(".");
        let tree = cache
            .join(&release)
            .join("src")
            .join(format!("linux-source-{series}"));
        let debian = cache.join("debian-sources");
        if !SOURCES.iter().all(|f| debian.join(f).exists()) {
            extract_debian_sources(&source_pool, &series, &debian);
        }
        Scratch {
            cache,
            release,
            tree,
            debian,
        }
    })
}

/// SOURCES from the linux-source package's tarball, into `dest`.
fn extract_debian_sources(debs: &Path, series: &str, dest: &Path) {
    let deb = std::fs::read_dir(debs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("linux-source-{series}_"))
        })
        .expect("linux-source package");
    std::fs::create_dir_all(dest).unwrap();
    let members: Vec<String> = SOURCES
        .iter()
        .map(|s| format!("linux-source-{series}/{s}"))
        .collect();
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$0" | tar -xO "./usr/src/linux-source-$1.tar.xz" | tar -xJ -C "$2" --strip-components=1 "${@:3}""#)
        .arg(&deb)
        .arg(series)
        .arg(dest)
        .args(&members)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot extract Debian's sources from {}",
        deb.display()
    );
}

impl Scratch {
    fn kpatch_build(&self, patch: &Path, name: &str, out: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kpatch-build"));
        c.args(["-a", &self.release, "-n", name, "--json", "--cache-dir"])
            .arg(&self.cache)
            .arg("-o")
            .arg(out)
            .args(extra)
            .arg(patch);
        c
    }

    fn build(&self, patch: &Path, name: &str, out: &Path, extra: &[&str]) -> Built {
        let o = self.kpatch_build(patch, name, out, extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        eprintln!("--- kpatch-build {name}: {}\n{stderr}", o.status);
        Built {
            code: o.status.code().unwrap_or(-1),
            json: serde_json::from_slice(&o.stdout).ok(),
            module: Some(out.join(format!("livepatch-{name}.ko"))).filter(|m| m.exists()),
            stderr,
        }
    }

    fn spawn(&self, patch: &Path, name: &str, out: &Path, env: &[(&str, &str)]) -> Running {
        self.spawn_with(patch, name, out, env, &[])
    }

    fn spawn_with(
        &self,
        patch: &Path,
        name: &str,
        out: &Path,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Running {
        let mut c = self.kpatch_build(patch, name, out, extra);
        c.envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Running { child, stderr }
    }

    /// The tree is Debian's: every touched source byte-identical to the package's,
    /// nothing created left, no objects of ours, no journal.
    fn assert_pristine(&self, when: &str) {
        for s in SOURCES {
            let have = std::fs::read(self.tree.join(s)).unwrap();
            let want = std::fs::read(self.debian.join(s)).unwrap();
            assert!(have == want, "{when}: {s} differs from Debian's source");
        }
        for a in ABSENT {
            assert!(!self.tree.join(a).exists(), "{when}: {a} is in the tree");
        }
        let journal = self.cache.join(&self.release).join("journal");
        assert!(
            !journal.exists(),
            "{when}: a journal is left at {}",
            journal.display()
        );
    }

    /// Is any touched source different from Debian's?
    fn dirty(&self) -> bool {
        SOURCES.iter().any(|s| {
            std::fs::read(self.tree.join(s)).ok() != std::fs::read(self.debian.join(s)).ok()
        })
    }

    fn work(&self, name: &str) -> PathBuf {
        self.cache.join(&self.release).join("work").join(name)
    }
}

struct Built {
    code: i32,
    stderr: String,
    json: Option<serde_json::Value>,
    module: Option<PathBuf>,
}

impl Built {
    fn functions(&self) -> String {
        self.json
            .as_ref()
            .map(|j| j["functions"].to_string())
            .unwrap_or_default()
    }
}

struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < end, "no {needle:?} in:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for a descendant process whose command name is one of `comms`; its pid.
    fn wait_descendant(&self, comms: &[&str], timeout: Duration) -> i32 {
        let end = Instant::now() + timeout;
        loop {
            if let Some(pid) = descendants(self.pid())
                .into_iter()
                .find(|(_, c)| comms.contains(&c.as_str()))
            {
                return pid.0;
            }
            assert!(
                Instant::now() < end,
                "no {comms:?} under kpatch-build:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr();
        eprintln!("--- interrupted kpatch-build: {status}\n{stderr}");
        (status.code().unwrap_or(-1), stderr)
    }
}

/// `(pid, comm)` of every descendant of `root`.
fn descendants(root: i32) -> Vec<(i32, String)> {
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let ppid: i32 = stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        procs.push((pid, ppid, comm));
    }
    let mut out: Vec<(i32, String)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, comm) in &procs {
            if *ppid == p {
                out.push((*pid, comm.clone()));
                frontier.push(*pid);
            }
        }
    }
    out
}

/// Is `pid` a live process (not gone, not a zombie)?
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| {
            st.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        })
        .unwrap_or(false)
}

/// What a module is: every section's name and bytes except the build id (and debug
/// information, which names the work directory).
fn fingerprint(ko: &Path) -> Vec<(String, Vec<u8>)> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = file
        .sections()
        .filter_map(|s| {
            let name = s.name().ok()?.to_string();
            if name.starts_with(".debug")
                || name.starts_with(".rela.debug")
                || name == ".note.gnu.build-id"
            {
                return None;
            }
            Some((name, s.data().ok()?.to_vec()))
        })
        .collect();
    out.sort();
    out
}

fn modinfo(ko: &Path) -> String {
    use object::{Object, ObjectSection};
    let data = std::fs::read(ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let s = file.section_by_name(".modinfo").unwrap();
    String::from_utf8_lossy(s.data().unwrap()).replace('\0', "\n")
}

fn same_module(a: &Path, b: &Path, what: &str) {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb), "{what}: sections differ");
    for ((n, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{what}: section {n} differs");
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sigint_during_apply_compile_and_link_leaves_the_tree_pristine_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let p = patch("two-files");
    let reference = s.build(&p, "two-ref", out.path(), &[]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);
    s.assert_pristine("after an ordinary build");

    // During apply: paused after the first of the two files is written.
    let r = s.spawn(&p, "two", out.path(), &[("KPATCH_BUILD_PAUSE", "apply")]);
    r.wait_stderr("paused at apply", 10 * MINUTE);
    assert!(
        s.dirty(),
        "the pause is not inside the apply: nothing is patched"
    );
    r.signal("INT");
    let (code, err) = r.finish();
    check_interrupted(s, code, &err, out.path(), "SIGINT during apply");

    // During compile: gcc is compiling the patched objects.
    let r = s.spawn(&p, "two", out.path(), &[]);
    r.wait_stderr("build original objects", 10 * MINUTE);
    r.wait_descendant(&["cc1"], 10 * MINUTE);
    assert!(s.dirty(), "cc1 runs while the tree is not patched");
    r.signal("INT");
    let (code, err) = r.finish();
    check_interrupted(s, code, &err, out.path(), "SIGINT during compile");

    // During the module link: kbuild builds the patch module.
    let r = s.spawn(&p, "two", out.path(), &[]);
    r.wait_stderr("diff objects", 10 * MINUTE);
    r.wait_descendant(&["cc1", "ld", "modpost"], 10 * MINUTE);
    r.signal("INT");
    let (code, err) = r.finish();
    check_interrupted(s, code, &err, out.path(), "SIGINT during the module link");

    let again = s.build(&p, "two-ref", out.path(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.functions(), reference.functions());
    assert!(
        again.functions().contains("cmdline_proc_show")
            && again.functions().contains("meminfo_proc_show")
    );
    same_module(
        reference.module.as_ref().unwrap(),
        again.module.as_ref().unwrap(),
        "after the interruptions",
    );
    s.assert_pristine("after the last build");
}

fn check_interrupted(s: &Scratch, code: i32, stderr: &str, out: &Path, when: &str) {
    assert_eq!(code, 130, "{when}: exit status\n{stderr}");
    assert!(
        stderr.contains("interrupted by SIGINT") && stderr.contains("restored"),
        "{when}:\n{stderr}"
    );
    assert!(
        !out.join("livepatch-two.ko").exists(),
        "{when}: a module was written"
    );
    assert!(
        !s.work("two").exists(),
        "{when}: the work directory is left"
    );
    s.assert_pristine(when);
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sigkill_is_recovered_by_the_next_build_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let p = patch("two-files");
    let reference = s.build(&p, "kill-ref", out.path(), &[]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);

    // Killed half way through the apply: the tree stays half patched, with the journal.
    let r = s.spawn(
        &p,
        "kill-ref",
        out.path(),
        &[("KPATCH_BUILD_PAUSE", "apply")],
    );
    r.wait_stderr("paused at apply", 10 * MINUTE);
    r.signal("KILL");
    let (code, _) = r.finish();
    assert_eq!(code, -1);
    assert!(
        s.dirty(),
        "a SIGKILL'd build cannot clean up: the tree should be patched"
    );
    let next = s.build(&p, "kill-ref", out.path(), &[]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr.contains("an earlier build was interrupted"),
        "{}",
        next.stderr
    );
    same_module(
        reference.module.as_ref().unwrap(),
        next.module.as_ref().unwrap(),
        "after SIGKILL during apply",
    );
    s.assert_pristine("after recovering from SIGKILL during apply");

    // Killed while compiling 25 objects (--all-includers: the impact analysis would
    // rebuild none for a comment): its make goes on, orphaned, writing in the tree. The
    // next build stops it before it touches the tree.
    let slow = patch("internal-comment");
    let r = s.spawn_with(&slow, "slow", out.path(), &[], &["--all-includers"]);
    r.wait_descendant(&["cc1"], 10 * MINUTE);
    let make = r.wait_descendant(&["make"], MINUTE);
    r.signal("KILL");
    r.finish();
    assert!(alive(make), "the orphaned make is gone already");
    let next = s.build(&p, "kill-ref", out.path(), &[]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr.contains("stopped 1 process group"),
        "{}",
        next.stderr
    );
    assert!(!alive(make), "the orphaned make still runs");
    same_module(
        reference.module.as_ref().unwrap(),
        next.module.as_ref().unwrap(),
        "after SIGKILL during compile",
    );
    s.assert_pristine("after recovering from SIGKILL during compile");
}

/// A patch deleting fs/proc/meminfo.c (git's format, generated from the real file).
fn delete_patch(s: &Scratch, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(s.debian.join("fs/proc/meminfo.c")).unwrap();
    let n = text.lines().count();
    let mut p = format!(
        "diff --git a/fs/proc/meminfo.c b/fs/proc/meminfo.c\ndeleted file mode 100644\nindex 1111111..0000000\n\
         --- a/fs/proc/meminfo.c\n+++ /dev/null\n@@ -1,{n} +0,0 @@\n"
    );
    for l in text.lines() {
        p.push_str(&format!("-{l}\n"));
    }
    let path = dir.join("delete-meminfo.patch");
    std::fs::write(&path, p).unwrap();
    path
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn deleting_or_mismatched_patches_never_yield_a_stale_module_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let cmdline = s.build(&patch("cmdline"), "cmdline", out.path(), &[]);
    assert_eq!(cmdline.code, 0, "{}", cmdline.stderr);
    let first = cmdline.module.clone().unwrap();
    let kept = out.path().join("first.ko");
    std::fs::rename(&first, &kept).unwrap();

    // A change to meminfo.c first (the stale object of the issue came from here), with
    // a Latin-1 commit message and a hunk 28 lines off.
    let meminfo = s.build(&patch("meminfo-offset-latin1"), "meminfo", out.path(), &[]);
    assert_eq!(meminfo.code, 0, "{}", meminfo.stderr);
    assert!(
        meminfo
            .stderr
            .contains("fs/proc/meminfo.c: hunk #1 applied at line 128 (offset 28 line(s))"),
        "{}",
        meminfo.stderr
    );

    let del = s.build(&delete_patch(s, out.path()), "delete", out.path(), &[]);
    assert_eq!(del.code, 1, "{}", del.stderr);
    assert!(
        del.stderr
            .contains("fs/proc/meminfo.c: the patch deletes this file")
            && del.stderr.contains("fs/proc/meminfo.o"),
        "{}",
        del.stderr
    );
    assert!(del.module.is_none());
    s.assert_pristine("after the deleting patch");

    let mis = s.build(&patch("mismatched-header"), "mismatched", out.path(), &[]);
    assert_eq!(mis.code, 1, "{}", mis.stderr);
    assert!(
        mis.stderr.contains("fs/proc/meminfo.c")
            && mis.stderr.contains("fs/proc/cmdline.c")
            && mis.stderr.contains("both exist"),
        "{}",
        mis.stderr
    );
    assert!(mis.module.is_none());
    s.assert_pristine("after the mismatched patch");

    let again = s.build(&patch("cmdline"), "cmdline", out.path(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.functions(), cmdline.functions());
    assert!(
        !again.functions().contains("meminfo"),
        "{}",
        again.functions()
    );
    same_module(
        &kept,
        again.module.as_ref().unwrap(),
        "after the refused patches",
    );
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn odd_patches_and_arguments_are_refused_precisely_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let o = out.path();
    // The limit kpatch-build checks up front is the one in the target's headers.
    assert_eq!(
        builder::pipeline::resolve::module_name_len(&s.tree),
        Some(builder::pipeline::resolve::MODULE_NAME_LEN)
    );

    // Refused before any work (no phase ran): not a patch, a name too long, -o unusable.
    let garbage = o.join("garbage.patch");
    std::fs::write(&garbage, std::fs::read("/bin/true").unwrap()).unwrap();
    let b = s.build(&garbage, "garbage", o, &[]);
    assert!(
        b.code == 1 && b.stderr.contains("not a patch") && b.stderr.contains("binary"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("resolve target kernel"), "{}", b.stderr);
    let json = b.json.as_ref().expect("--json prints the error");
    assert_eq!(json["exit_code"], 1);
    assert!(json["error"].as_str().unwrap().contains("not a patch"));
    let b = s.build(&patch("cmdline"), &"n".repeat(46), o, &[]);
    assert!(
        b.code == 1 && b.stderr.contains("at most 45"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("resolve target kernel"), "{}", b.stderr);
    let file = o.join("a-file");
    std::fs::write(&file, "").unwrap();
    for bad in [file.as_path(), Path::new("/proc/kpatch-no-such-dir")] {
        let b = s.build(&patch("cmdline"), "cmdline", bad, &[]);
        assert!(
            b.code == 1 && b.stderr.contains("output directory"),
            "{}",
            b.stderr
        );
        assert!(!b.stderr.contains("resolve target kernel"), "{}", b.stderr);
    }

    // Refused when checked against the tree, naming the file, the hunk, the reason.
    let b = s.build(&patch("missing-file"), "missing", o, &[]);
    assert!(
        b.code == 1
            && b.stderr
                .contains("fs/proc/kpatch_missing.c: the patch changes this file"),
        "{}",
        b.stderr
    );
    let b = s.build(&patch("new-file-unbuilt"), "new", o, &[]);
    assert!(
        b.code == 1
            && b.stderr
                .contains("fs/proc/kpatch_new.c: the patch adds this file, but no Makefile")
            && b.stderr.contains("add kpatch_new.o to fs/proc/Makefile"),
        "{}",
        b.stderr
    );
    assert!(!b.stderr.contains("not built in this"), "{}", b.stderr);
    let b = s.build(&patch("makefile-flags"), "flags", o, &[]);
    assert!(
        b.code == 1
            && b.stderr
                .contains("fs/proc/Makefile: the patch adds the line 'CFLAGS_cmdline.o += -O1'"),
        "{}",
        b.stderr
    );
    let b = s.build(&patch("meminfo-fuzz"), "fuzz", o, &[]);
    assert!(
        b.code == 1
            && b.stderr.contains("fs/proc/meminfo.c: hunk #1")
            && b.stderr.contains("fuzz 1"),
        "{}",
        b.stderr
    );
    s.assert_pristine("after the refused patches");

    // A compile error: shown, the compiler's whole output in the build's own log.
    let b = s.build(&patch("compile-error"), "broken", o, &[]);
    assert!(
        b.code == 1 && b.stderr.contains("building patched objects failed"),
        "{}",
        b.stderr
    );
    let log = PathBuf::from(b.json.as_ref().unwrap()["log"].as_str().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("meminfo.c:131") && text.contains("error: expected"),
        "{}",
        log.display()
    );
    s.assert_pristine("after a compile error");
    // A refused patch's work directory is removed, unless --skip-cleanup.
    let init = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/patches/6.1/08-init-function.patch");
    for (extra, kept) in [(&[][..], false), (&["--skip-cleanup"][..], true)] {
        let b = s.build(&init, "init", o, extra);
        assert_eq!(b.code, 2, "{}", b.stderr);
        assert_eq!(s.work("init").join("patched").exists(), kept, "{extra:?}");
    }
    std::fs::remove_dir_all(s.work("init")).unwrap();

    // --allow-fuzz applies it and says so in the module, whose name has the longest
    // length the kernel takes (livepatch_ + 45 = 55 characters).
    let long = "f".repeat(45);
    let b = s.build(&patch("meminfo-fuzz"), &long, o, &["--allow-fuzz"]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert!(
        b.stderr
            .contains("warning: fs/proc/meminfo.c: hunk #1 applied with fuzz 1"),
        "{}",
        b.stderr
    );
    let info = modinfo(b.module.as_ref().unwrap());
    assert!(info.contains("kpatch_fuzz=fs/proc/meminfo.c:1:1"), "{info}");
    assert!(info.contains(&format!("name=livepatch_{long}")), "{info}");
    s.assert_pristine("after the fuzzy build");
}

/// A small deterministic generator (the seed is printed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn soak_builds_some_killed_6_1() {
    let builds: u64 = std::env::var("KPATCH_SOAK_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
        .max(4);
    let kills = (builds / 5).max(2);
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let patches = [("two", patch("two-files")), ("cmdline", patch("cmdline"))];
    // A warm build of each patch once, untimed (the first may compile originals), then
    // timed: signals land between 100 ms and 90% of the slower warm build.
    let mut warm_ms = 0u64;
    let refs: Vec<Built> = patches
        .iter()
        .map(|(n, p)| {
            let b = s.build(p, &format!("{n}-soakref"), out.path(), &[]);
            assert_eq!(b.code, 0, "{}", b.stderr);
            let t = Instant::now();
            let again = s.build(p, &format!("{n}-soakref"), out.path(), &[]);
            assert_eq!(again.code, 0, "{}", again.stderr);
            warm_ms = warm_ms.max(t.elapsed().as_millis() as u64);
            again
        })
        .collect();
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    eprintln!("soak seed {seed} (SOAK_SEED={seed} repeats it)");
    let mut rng = Lcg(seed);
    let mut kill_at: Vec<u64> = Vec::new();
    while (kill_at.len() as u64) < kills {
        let i = rng.next(builds);
        if !kill_at.contains(&i) {
            kill_at.push(i);
        }
    }
    let (mut completed, mut killed, mut finished_first) = (Vec::new(), 0, 0);
    let t0 = Instant::now();
    for i in 0..builds {
        let k = (i % 2) as usize;
        let (n, p) = &patches[k];
        let name = format!("{n}-soak");
        if kill_at.contains(&i) {
            let delay = Duration::from_millis(100 + rng.next((warm_ms * 9 / 10).max(200)));
            let r = s.spawn(p, &name, out.path(), &[]);
            std::thread::sleep(delay);
            let sig = if rng.next(2) == 0 { "KILL" } else { "INT" };
            r.signal(sig);
            let (code, _) = r.finish();
            eprintln!("soak {i}: {n} SIG{sig} after {delay:?}: exit {code}");
            if code == 0 {
                finished_first += 1;
            } else {
                killed += 1;
            }
            let _ = std::fs::remove_file(out.path().join(format!("livepatch-{name}.ko")));
            continue;
        }
        let b = s.build(p, &name, out.path(), &[]);
        assert_eq!(b.code, 0, "soak {i}: {n}\n{}", b.stderr);
        assert_eq!(b.functions(), refs[k].functions(), "soak {i}");
        let ko = b.module.unwrap();
        // The first completed module of each patch is the one the others must equal.
        let renamed = out.path().join(format!("soak-{i}.ko"));
        std::fs::rename(&ko, &renamed).unwrap();
        if completed.iter().all(|(kk, _): &(usize, PathBuf)| *kk != k) {
            completed.push((k, renamed.clone()));
        } else {
            same_module(
                &completed.iter().find(|(kk, _)| *kk == k).unwrap().1,
                &renamed,
                &format!("soak {i}"),
            );
            std::fs::remove_file(&renamed).unwrap();
        }
    }
    eprintln!(
        "soak: {builds} builds in {:.0} s, {killed} killed, {finished_first} finished before their signal, {} distinct modules checked",
        t0.elapsed().as_secs_f64(),
        completed.len()
    );
    let final_check = s.build(&patches[0].1, "two-soak", out.path(), &[]);
    assert_eq!(final_check.code, 0, "{}", final_check.stderr);
    s.assert_pristine("after the soak");

    // Three modules in the guest: the two references and the last soak build.
    let mut img = Initramfs::with_busybox().unwrap();
    let kpatch = img
        .add_host_binary(&common::kpatch_binary(), "/usr/local/bin")
        .unwrap();
    let mut scenario = Scenario::new("soak-6.1").keep_going();
    let checks = [
        "grep -q VMALLOCChunk /proc/meminfo && grep -q ' kpatched$' /proc/cmdline",
        "grep -q ' kpatched$' /proc/cmdline",
    ];
    let modules = [
        (refs[0].module.clone().unwrap(), checks[0]),
        (refs[1].module.clone().unwrap(), checks[1]),
        (final_check.module.clone().unwrap(), checks[0]),
    ];
    for (i, (ko, check)) in modules.iter().enumerate() {
        let g = img.add_module(ko).unwrap();
        let m = testbed::module_name(ko);
        scenario = scenario
            .step(
                &format!("{i}:before"),
                &format!("if {check}; then fail 'check passes before loading'; fi"),
            )
            .step(&format!("{i}:load"), &format!("{kpatch} load {g}"))
            .step(
                &format!("{i}:patched"),
                &format!("{check} || fail 'check fails while patched'"),
            )
            .step(&format!("{i}:unload"), &format!("{kpatch} unload {m}"));
    }
    let report = Guest::new(&kernel).run(img, &scenario).unwrap();
    eprintln!("{}", report.summary());
    report.ensure_passed().unwrap();
}
