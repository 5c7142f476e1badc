//! What the robustness tests on 6.1 share (robust_6_1.rs, robust_6_1_refusals.rs): the
//! scratch cache and its prepared tree, Debian's copies of the files the patches touch, and
//! helpers to build, interrupt and compare.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The files the test patches touch (and the one they create): compared with Debian's.
pub const SOURCES: &[&str] = &[
    "fs/proc/meminfo.c",
    "fs/proc/cmdline.c",
    "fs/proc/Makefile",
    "fs/proc/internal.h",
];
/// Paths that must not be in the tree between builds.
pub const ABSENT: &[&str] = &[
    "fs/proc/kpatch_new.c",
    "fs/proc/meminfo.o",
    "fs/proc/cmdline.o",
    "kpatch_probe",
];

/// One test at a time: they share the scratch tree and look at it between builds.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub struct Scratch {
    pub cache: PathBuf,
    pub release: String,
    /// The prepared tree in the scratch cache.
    pub tree: PathBuf,
    /// SOURCES as Debian's linux-source package has them.
    pub debian: PathBuf,
}

pub fn main_cache() -> PathBuf {
    std::env::var_os("KPATCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".kpatch"))
}

pub fn patch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/patches/6.1-robust")
        .join(format!("{name}.patch"))
}

/// The scratch cache: packages linked from the main cache (downloaded there first if
/// need be), tree prepared by a first build, Debian's copies of SOURCES extracted.
pub fn scratch(kernel: &testbed::Kernel) -> &'static Scratch {
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
pub fn extract_debian_sources(debs: &Path, series: &str, dest: &Path) {
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
    pub fn kpatch_build(&self, patch: &Path, name: &str, out: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kpatch-build"));
        c.args(["-a", &self.release, "-n", name, "--json", "--cache-dir"])
            .arg(&self.cache)
            .arg("-o")
            .arg(out)
            .args(extra)
            .arg(patch);
        c
    }

    pub fn build(&self, patch: &Path, name: &str, out: &Path, extra: &[&str]) -> Built {
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

    pub fn spawn(&self, patch: &Path, name: &str, out: &Path, env: &[(&str, &str)]) -> Running {
        self.spawn_with(patch, name, out, env, &[])
    }

    pub fn spawn_with(
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
    pub fn assert_pristine(&self, when: &str) {
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
    pub fn dirty(&self) -> bool {
        SOURCES.iter().any(|s| {
            std::fs::read(self.tree.join(s)).ok() != std::fs::read(self.debian.join(s)).ok()
        })
    }

    pub fn work(&self, name: &str) -> PathBuf {
        self.cache.join(&self.release).join("work").join(name)
    }
}

pub struct Built {
    pub code: i32,
    pub stderr: String,
    pub json: Option<serde_json::Value>,
    pub module: Option<PathBuf>,
}

impl Built {
    pub fn functions(&self) -> String {
        self.json
            .as_ref()
            .map(|j| j["functions"].to_string())
            .unwrap_or_default()
    }
}

pub struct Running {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < end, "no {needle:?} in:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for a descendant process whose command name is one of `comms`; its pid.
    pub fn wait_descendant(&self, comms: &[&str], timeout: Duration) -> i32 {
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

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.stderr();
        eprintln!("--- interrupted kpatch-build: {status}\n{stderr}");
        (status.code().unwrap_or(-1), stderr)
    }
}

/// `(pid, comm)` of every descendant of `root`.
pub fn descendants(root: i32) -> Vec<(i32, String)> {
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
pub fn alive(pid: i32) -> bool {
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
pub fn fingerprint(ko: &Path) -> Vec<(String, Vec<u8>)> {
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

pub fn modinfo(ko: &Path) -> String {
    use object::{Object, ObjectSection};
    let data = std::fs::read(ko).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let s = file.section_by_name(".modinfo").unwrap();
    String::from_utf8_lossy(s.data().unwrap()).replace('\0', "\n")
}

pub fn same_module(a: &Path, b: &Path, what: &str) {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb), "{what}: sections differ");
    for ((n, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{what}: section {n} differs");
    }
}

pub const MINUTE: Duration = Duration::from_secs(60);
