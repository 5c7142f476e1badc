//! Build roots: one per distribution (`bookworm`, `trixie`), created once with `mmdebstrap`
//! from Debian's packages (the way sbuild builds Debian's kernels), holding that
//! distribution's compiler, binutils and the kernel's build tools. Every kernel is compiled
//! in the root of the distribution that built it, whatever the host runs: Debian 13's
//! kernels with trixie's gcc-14 and binutils, Debian 12's with bookworm's gcc-12.
//!
//! Commands run in a private mount namespace (`unshare --mount`): the directories they work
//! on are bind-mounted at the same absolute paths inside the root (so file names in objects,
//! DWARF and `.cmd` files are the same as outside), `/proc` and `/dev` are mounted, and
//! `chroot` enters the root. Nothing is mounted in the host's namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::apt::{Apt, KEYRING};
use crate::cache::Cache;
use crate::error::{archive_hint, io, Result};
use crate::util::{run, FileLock};

/// Packages every build root holds besides the compiler.
pub const BASE_PACKAGES: &[&str] = &[
    "gcc",
    "libc6-dev",
    "binutils",
    "make",
    "bc",
    "bison",
    "flex",
    "libelf-dev",
    "libssl-dev",
    "dwarves",
    "cpio",
    "kmod",
    "perl",
    "python3",
    "xz-utils",
];

/// What the stamp of a finished root records.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RootInfo {
    /// Distribution codename.
    pub codename: String,
    /// Packages asked for.
    pub packages: Vec<String>,
    /// Seconds mmdebstrap took.
    pub seconds: f64,
}

/// A build root.
#[derive(Clone, Debug)]
pub struct BuildRoot {
    /// Its directory.
    pub dir: PathBuf,
    /// What it holds.
    pub info: RootInfo,
    /// How long creating it took, when this call created it.
    pub created_in: Option<Duration>,
}

const STAMP: &str = ".kpatch-buildroot.json";

/// Run by `sh -c` in a new mount namespace: `ROOT CWD N BIND… PROGRAM ARG…`.
const ENTER: &str = r#"set -e
r=$1; cwd=$2; n=$3; shift 3
while [ "$n" -gt 0 ]; do
  p=$1; shift; n=$((n - 1))
  mkdir -p "$r$p"
  mount --rbind "$p" "$r$p"
done
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
exec chroot "$r" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
"#;

impl BuildRoot {
    /// The root of `codename` holding `compiler` (e.g. `gcc-14`), created if it does not
    /// exist or lacks a package.
    pub fn ensure(cache: &Cache, apt: &Apt, codename: &str, compiler: &str) -> Result<BuildRoot> {
        let dir = cache.roots_dir().join(codename);
        let mut packages: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
        packages.push(compiler.to_string());
        packages.sort();
        packages.dedup();
        if let Some(info) = read_stamp(&dir) {
            if packages.iter().all(|p| info.packages.contains(p)) {
                return Ok(BuildRoot {
                    dir,
                    info,
                    created_in: None,
                });
            }
        }
        let _lock = FileLock::acquire(&cache.roots_dir().join(format!("{codename}.lock")))?;
        if let Some(info) = read_stamp(&dir) {
            if packages.iter().all(|p| info.packages.contains(p)) {
                return Ok(BuildRoot {
                    dir,
                    info,
                    created_in: None,
                });
            }
        }
        let start = Instant::now();
        create(apt, codename, &packages, &dir)?;
        let elapsed = start.elapsed();
        let info = RootInfo {
            codename: codename.to_string(),
            packages,
            seconds: elapsed.as_secs_f64(),
        };
        let stamp = dir.join(STAMP);
        std::fs::write(
            &stamp,
            serde_json::to_string_pretty(&info).unwrap_or_default(),
        )
        .map_err(io(&stamp))?;
        Ok(BuildRoot {
            dir,
            info,
            created_in: Some(elapsed),
        })
    }

    /// An existing root of `codename`, if it was created.
    pub fn existing(cache: &Cache, codename: &str) -> Option<BuildRoot> {
        let dir = cache.roots_dir().join(codename);
        read_stamp(&dir).map(|info| BuildRoot {
            dir,
            info,
            created_in: None,
        })
    }

    /// `program args…` to run inside the root, in `cwd`, with `binds` (absolute host
    /// directories, created if missing) mounted at the same paths.
    pub fn command(&self, program: &str, binds: &[&Path], cwd: &Path) -> Command {
        const SCRIPT: &str = r#"set -e
r=$1; cwd=$2; n=$3; shift 3
while [ "$n" -gt 0 ]; do
  p=$1; shift; n=$((n - 1))
  mkdir -p "$r$p"
  mount --rbind "$p" "$r$p"
done
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
exec chroot "$r" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
"#;
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(&self.dir)
        .arg(cwd)
        .arg(binds.len().to_string())
        .args(binds)
        .arg(program)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("TMPDIR", "/tmp")
        .env("LC_ALL", "C.UTF-8");
        c
    }

    /// A shell script that runs `program` with its arguments inside the root, in the
    /// caller's working directory, with `binds` mounted (for tools that take a compiler
    /// command, like `CC=`). The working directory must be under one of `binds`.
    pub fn wrapper_script(&self, program: &str, binds: &[&Path]) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut text = String::from("#!/bin/sh\n# Runs ");
        text.push_str(&format!(
            "{program} in the build root {} (written by kpatch-rs).\n",
            self.dir.display()
        ));
        text.push_str(
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TMPDIR=/tmp \\\n",
        );
        text.push_str("exec unshare --mount --propagation private -- /bin/sh -c ");
        text.push_str(&q(ENTER));
        text.push_str(&format!(
            " sh {} \"$PWD\" {}",
            q(&self.dir.display().to_string()),
            binds.len()
        ));
        for b in binds {
            text.push(' ');
            text.push_str(&q(&b.display().to_string()));
        }
        text.push_str(&format!(" {} \"$@\"\n", q(program)));
        text
    }

    /// The first line of `<cc> --version` inside the root.
    pub fn compiler_version(&self, cc: &str) -> Result<String> {
        let out = run(self.command(cc, &[], Path::new("/")).arg("--version"))?;
        Ok(out.lines().next().unwrap_or("").trim().to_string())
    }
}

fn read_stamp(dir: &Path) -> Option<RootInfo> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(STAMP)).ok()?).ok()
}

/// `mmdebstrap` into `<dir>.tmp`, then renamed to `dir`.
fn create(apt: &Apt, codename: &str, packages: &[String], dir: &Path) -> Result<()> {
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        return Err(archive_hint(
            "mmdebstrap is not installed (it creates the build root of the target's Debian release)",
            "apt-get install mmdebstrap (scripts/install-deps.sh does)",
        ));
    }
    let m = apt.mirrors();
    let mut lines = vec![format!(
        "deb [signed-by={KEYRING}] {} {codename} {codename}-updates main",
        m.archive
    )];
    if let Some(s) = &m.security {
        lines.push(format!(
            "deb [signed-by={KEYRING}] {s} {codename}-security main"
        ));
    }
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    if let Some(p) = dir.parent() {
        std::fs::create_dir_all(p).map_err(io(p))?;
    }
    let mode = if rustix::process::geteuid().is_root() {
        "root"
    } else {
        "unshare"
    };
    tracing::info!(codename, dir = %dir.display(), "creating the build root with mmdebstrap");
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg(format!("--mode={mode}"))
        .arg("--variant=apt")
        .arg(format!("--include={}", packages.join(",")))
        .arg("--aptopt=Acquire::Languages \"none\"")
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg("--quiet")
        .arg(codename)
        .arg(&tmp)
        .args(&lines)
        .env_remove("APT_CONFIG");
    if let Err(e) = run(&mut cmd) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))
}
