//! The root file system of the Debian guest, made with `mmdebstrap` from the mirror the
//! host's apt sources name (read, never edited).
//!
//! This is the one place that runs `mmdebstrap` for the disk image; when the `debian`
//! crate (private apt configuration, build roots) lands, [`host_mirrors`] and
//! [`mmdebstrap`] move onto it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::util::run;

/// The archive and security mirrors of the host's apt sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    /// e.g. `http://deb.debian.org/debian`.
    pub archive: String,
    /// e.g. `http://deb.debian.org/debian-security`.
    pub security: Option<String>,
}

/// `(uri, suites)` of every `deb` entry in one-line and deb822 sources.
fn entries(list: &str, deb822: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in list.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut words = rest.split_whitespace().peekable();
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            // Options: `[a=b c=d]`, possibly over several words.
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    for stanza in deb822.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        if let (true, true, Some(uris), Some(suites)) =
            (enabled, is_deb, field("URIs"), field("Suites"))
        {
            for uri in uris.split_whitespace() {
                out.push((
                    uri.to_string(),
                    suites.split_whitespace().map(str::to_string).collect(),
                ));
            }
        }
    }
    out
}

/// The mirrors of the host's apt sources under `root` (`/`): the URI serving a plain
/// codename suite, and the one serving `*-security`.
pub fn host_mirrors(root: &Path) -> Result<Mirrors> {
    let etc = root.join("etc/apt");
    let mut list = fs::read_to_string(etc.join("sources.list")).unwrap_or_default();
    let mut deb822 = String::new();
    if let Ok(dir) = fs::read_dir(etc.join("sources.list.d")) {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let text = fs::read_to_string(&f).unwrap_or_default();
            match f.extension().and_then(|e| e.to_str()) {
                Some("list") => list.push_str(&format!("\n{text}")),
                Some("sources") => deb822.push_str(&format!("\n\n{text}")),
                _ => {}
            }
        }
    }
    let all = entries(&list, &deb822);
    let archive = all
        .iter()
        .find(|(_, s)| s.iter().any(|s| !s.contains('-')))
        .map(|(u, _)| u.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            Error::Apt(format!(
                "no Debian archive in {}/sources.list(.d)",
                etc.display()
            ))
        })?;
    let security = all
        .iter()
        .find(|(_, s)| s.iter().any(|s| s.ends_with("-security")))
        .map(|(u, _)| u.trim_end_matches('/').to_string());
    Ok(Mirrors { archive, security })
}

/// What goes into the root file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// `bookworm`.
    pub suite: String,
    /// Packages to install (apt syntax, `name=version` pins allowed).
    pub include: Vec<String>,
    /// `dpkg --path-exclude` patterns (documentation, drivers a VM has no use for).
    pub path_exclude: Vec<String>,
}

/// What [`mmdebstrap`] did.
#[derive(Clone, Debug)]
pub struct BootstrapReport {
    /// Wall time.
    pub elapsed: Duration,
    /// Bytes of packages downloaded now (the rest came from `debs`).
    pub downloaded: u64,
    /// Bytes of all packages it installed.
    pub packages: u64,
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Runs `mmdebstrap --mode=root` into the directory `dest`, keeping the downloaded
/// packages in `debs` so that a rebuild downloads only what changed. Needs root (the
/// directory must carry the guest's owners for `mkfs.ext4 -d`).
pub fn mmdebstrap(
    spec: &Bootstrap,
    mirrors: &Mirrors,
    debs: &Path,
    dest: &Path,
) -> Result<BootstrapReport> {
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Invalid(
            "building the Debian disk image needs root (mmdebstrap --mode=root, file owners for mkfs.ext4 -d)".into(),
        ));
    }
    fs::create_dir_all(debs).at(debs)?;
    let before = dir_bytes(debs);
    if dest.exists() {
        fs::remove_dir_all(dest).at(dest)?;
    }
    let suite = &spec.suite;
    let mut sources = vec![
        format!("deb {} {suite} main", mirrors.archive),
        format!("deb {} {suite}-updates main", mirrors.archive),
    ];
    if let Some(sec) = &mirrors.security {
        sources.push(format!("deb {sec} {suite}-security main"));
    }
    let mut cmd = Command::new("mmdebstrap");
    cmd.args([
        "--mode=root",
        "--variant=apt",
        "--format=directory",
        "--quiet",
    ])
    .arg(format!("--include={}", spec.include.join(",")))
    .arg("--aptopt=Acquire::Languages \"none\"")
    .arg("--aptopt=Acquire::Retries \"3\"")
    .arg("--skip=essential/unlink")
    .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/")
    .arg(format!(
        "--setup-hook=sync-in {} /var/cache/apt/archives/",
        debs.display()
    ))
    .arg(format!(
        "--customize-hook=sync-out /var/cache/apt/archives {}",
        debs.display()
    ));
    for p in &spec.path_exclude {
        cmd.arg(format!("--dpkgopt=path-exclude={p}"));
    }
    cmd.arg(suite)
        .arg(dest)
        .args(&sources)
        .env_remove("APT_CONFIG");
    let start = Instant::now();
    tracing::info!(dest = %dest.display(), "mmdebstrap");
    run(&mut cmd)?;
    let after = dir_bytes(debs);
    Ok(BootstrapReport {
        elapsed: start.elapsed(),
        downloaded: after.saturating_sub(before),
        packages: after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_one_line_and_deb822_sources() {
        let list = "# comment\ndeb [signed-by=/x.gpg] http://m.example/debian bookworm main\n";
        let deb822 = "Types: deb\nURIs: http://m.example/debian-security/\nSuites: bookworm-security\nComponents: main\n\n\
                      Types: deb-src\nURIs: http://src.example/\nSuites: bookworm\n";
        let e = entries(list, deb822);
        assert_eq!(
            e[0],
            ("http://m.example/debian".into(), vec!["bookworm".into()])
        );
        assert_eq!(e[1].0, "http://m.example/debian-security/");
        assert_eq!(e.len(), 2, "{e:?}");
        let dir = tempfile::tempdir().unwrap();
        let apt = dir.path().join("etc/apt/sources.list.d");
        fs::create_dir_all(&apt).unwrap();
        fs::write(apt.join("debian.sources"), deb822.to_string() + "\n\nTypes: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\n").unwrap();
        let m = host_mirrors(dir.path()).unwrap();
        assert_eq!(m.archive, "http://m.example/debian");
        assert_eq!(
            m.security.as_deref(),
            Some("http://m.example/debian-security")
        );
    }
}
