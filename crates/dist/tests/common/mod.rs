//! What the deployment tests share: the release binaries, the Debian disk image with
//! Debian 12's 6.1 kernel, a machine-owner key, the kpatch-rs package and a signed
//! live-patch package built with kpatch-build, and a signed apt repository.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testbed::vm::{AptRepo, DebianImage, ImageSpec, Machine, MachineConfig};
use testbed::{Cache, Kernel, KernelSeries};

/// The release binaries (`target/release`), built by `cargo test --workspace --release`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/release/deps/<test>-<hash>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    for (b, _, _) in dist::BINARIES {
        assert!(
            dir.join(b).exists(),
            "{} is not built: run `cargo build --release --bins` (or the tests with `cargo test --workspace --release`)",
            dir.join(b).display()
        );
    }
    dir
}

/// Everything the tests share, made once per test binary.
pub struct Fixture {
    pub kernel: Kernel,
    pub cache: Cache,
    pub image: DebianImage,
    pub bins: PathBuf,
    /// Where the packages and repositories of this run go.
    pub work: PathBuf,
    /// The machine-owner key: `(private key, DER certificate)`.
    pub mok: (PathBuf, PathBuf),
    pub project_deb: PathBuf,
    /// `livepatch-meminfo_1_amd64.deb`, signed with the MOK.
    pub meminfo_deb: PathBuf,
    /// The module in it.
    pub meminfo_ko: PathBuf,
    /// What preparing cost, for the report.
    pub timings: Vec<(String, Duration)>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The shared fixture (the first test to ask builds it; the others wait).
pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    testbed::init_test_logging();
    let mut timings = Vec::new();
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let cache = Cache::from_env();
    let bins = bin_dir();
    let t = Instant::now();
    let image = DebianImage::ensure(
        cache.root(),
        &ImageSpec::bookworm(kernel.release(), kernel.version()),
    )
    .expect("Debian disk image");
    timings.push(("image (build or cache)".into(), t.elapsed()));
    let i = &image.info;
    eprintln!(
        "debian-vm image: {} ({:.0} MB qcow2); building it took {:.0} s (mmdebstrap {:.0} s, {:.0} MB of packages){}",
        image.disk.display(),
        i.image_bytes as f64 / 1e6,
        i.build_secs,
        i.bootstrap_secs,
        i.package_bytes as f64 / 1e6,
        if image.built_in.is_some() { ", built now" } else { ", cached" }
    );
    let work = bins.join("dist-tests");
    if work.exists() {
        std::fs::remove_dir_all(&work).unwrap();
    }
    std::fs::create_dir_all(&work).unwrap();
    let mok = mok_key(&testbed::vm::vm_cache(cache.root()).join("mok"), &bins);
    let t = Instant::now();
    let project_deb =
        dist::project_package(&dist::ProjectOptions::new(&bins, &work.join("debs"))).unwrap();
    timings.push(("kpatch-rs package".into(), t.elapsed()));
    let t = Instant::now();
    let meminfo_deb = patch_deb(
        &bins,
        kernel.release(),
        &dist::workspace_root().join("examples/meminfo.patch"),
        "meminfo",
        Some(&mok),
        &work.join("debs"),
    );
    timings.push(("kpatch-build --deb (meminfo)".into(), t.elapsed()));
    Fixture {
        meminfo_ko: work.join("debs/livepatch-meminfo.ko"),
        kernel,
        cache,
        image,
        bins,
        work,
        mok,
        project_deb,
        meminfo_deb,
        timings,
    }
}

/// The test MOK, made once with `kpatch-build --create-sign-key`.
fn mok_key(dir: &Path, bins: &Path) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join("mok.key"), dir.join("mok.der"));
    if !(key.exists() && cert.exists()) {
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(&cert);
        let out = Command::new(bins.join("kpatch-build"))
            .arg("--create-sign-key")
            .arg("--sign-key")
            .arg(&key)
            .arg("--sign-cert")
            .arg(&cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&format!("mokutil --import {}", cert.display())),
            "{text}"
        );
    }
    (key, cert)
}

/// `kpatch-build --deb` of `patch` as `name`; the package's path.
pub fn patch_deb(
    bins: &Path,
    release: &str,
    patch: &Path,
    name: &str,
    key: Option<&(PathBuf, PathBuf)>,
    out: &Path,
) -> PathBuf {
    let mut c = Command::new(bins.join("kpatch-build"));
    c.args(["-a", release, "-n", name, "--deb", "-o"])
        .arg(out)
        .env("DEBFULLNAME", "kpatch-rs tests")
        .env("DEBEMAIL", "tests@kpatch-rs.example.org");
    match key {
        Some((k, cert)) => {
            c.arg("--sign-key").arg(k).arg("--sign-cert").arg(cert);
        }
        None => {
            c.arg("--no-sign");
        }
    }
    let o = c.arg(patch).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "kpatch-build {name}: {err}");
    let deb = out.join(format!("livepatch-{name}_1_amd64.deb"));
    assert!(deb.exists(), "{err}");
    deb
}

/// A signed repository in `dir` holding `debs` (signing key kept in the VM cache).
pub fn repo(f: &Fixture, dir: &Path, debs: &[&Path]) -> AptRepo {
    let repo = AptRepo::new(
        dir,
        &testbed::vm::vm_cache(f.cache.root()).join("repo-gnupg"),
    )
    .unwrap();
    let said = repo.publish(debs).unwrap();
    eprintln!("{said}");
    repo
}

/// A machine booting the image with `firmware`, sharing `share` as 9p tag `kpatchrepo`.
pub fn start(
    f: &Fixture,
    firmware: testbed::vm::Firmware,
    share: Option<&Path>,
) -> (Machine, Duration) {
    let mut config = MachineConfig::new(&testbed::vm::tools_dir(f.cache.root()));
    config.firmware = firmware;
    config.share = share.map(|p| (p.to_path_buf(), "kpatchrepo".to_string()));
    let mut vm = Machine::start(&f.image, &config).unwrap();
    let up = vm.wait_ssh(Duration::from_secs(900)).unwrap();
    eprintln!("SSH up {:.1} s after QEMU started", up.as_secs_f64());
    (vm, up)
}

/// What an operator does once per host: mount the repository (here a 9p share), trust
/// its key, add it to apt's sources.
pub const ADD_REPO: &str = r#"
set -ex
mkdir -p /srv/kpatch-repo /etc/apt/keyrings
grep -q kpatchrepo /etc/fstab || echo 'kpatchrepo /srv/kpatch-repo 9p trans=virtio,version=9p2000.L,ro,nofail 0 0' >> /etc/fstab
systemctl daemon-reload
mountpoint -q /srv/kpatch-repo || mount /srv/kpatch-repo
test -f /srv/kpatch-repo/InRelease
install -m 644 /srv/kpatch-repo/kpatch-repo.gpg /etc/apt/keyrings/kpatch-repo.gpg
echo 'deb [signed-by=/etc/apt/keyrings/kpatch-repo.gpg] file:/srv/kpatch-repo ./' > /etc/apt/sources.list.d/kpatch.list
apt-get update -q
"#;

/// A JSON document in `text` (it may follow other lines).
pub fn json(text: &str) -> serde_json::Value {
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `kpatch status --json` in the guest: (exit code, report).
pub fn status(vm: &Machine) -> (i32, serde_json::Value) {
    let out = vm.sh("kpatch status --json").unwrap();
    (
        out.status.code().unwrap_or(-1),
        json(&String::from_utf8_lossy(&out.stdout)),
    )
}
