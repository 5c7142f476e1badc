//! A private apt configuration: its own sources list, lists, cache and state directories,
//! so looking packages up and downloading them never touches (or depends on) the host's apt
//! state. The host's configuration is only read: its sources (for the mirror URIs, see
//! [`crate::sources`]) and its proxy and `Check-Valid-Until`/`Check-Date` settings.
//!
//! Layout under `<cache>/apt/`:
//! ```text
//! apt.conf                    APT_CONFIG for every apt call
//! etc/sources.list.d/debian.sources
//! etc/apt.conf.d/ preferences.d/   empty: the host's parts are not read
//! lists/                      the indexes (InRelease verified against the archive keyring)
//! state/status                empty: nothing is "installed" here
//! cache/                      apt's download cache (unused: .debs go to the pool)
//! lock                        serialises `apt-get update`
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::error::{archive, archive_hint, io, Error, Result};
use crate::sources::{Mirrors, TARGET_CODENAMES};
use crate::util::{run, FileLock};

/// The archive keyring apt verifies the indexes with (package `debian-archive-keyring`).
pub const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// apt's helper that downloads one file with apt's own transports (proxy, retries) and
/// checks its hash.
pub const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

/// One `Packages` index apt has downloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexTarget {
    /// The index file in `lists/`.
    pub file: PathBuf,
    /// The suite's codename, e.g. `trixie-security`.
    pub codename: String,
    /// The archive's URI, ending in `/`.
    pub repo_uri: String,
}

/// The private apt configuration in `dir`.
#[derive(Clone, Debug)]
pub struct Apt {
    dir: PathBuf,
    mirrors: Mirrors,
}

impl Apt {
    /// Writes (or refreshes) the configuration in `dir` for `mirrors`.
    pub fn setup(dir: &Path, mirrors: Mirrors) -> Result<Apt> {
        if !Path::new(KEYRING).exists() {
            return Err(archive_hint(
                format!("{KEYRING} is missing"),
                "apt-get install debian-archive-keyring",
            ));
        }
        let apt = Apt {
            dir: dir.to_path_buf(),
            mirrors,
        };
        for d in [
            "etc/sources.list.d",
            "etc/apt.conf.d",
            "etc/preferences.d",
            "lists/partial",
            "cache/archives/partial",
            "state",
        ] {
            let p = dir.join(d);
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        let status = dir.join("state/status");
        if !status.exists() {
            std::fs::write(&status, "").map_err(io(&status))?;
        }
        write_if_changed(
            &dir.join("etc/sources.list.d/debian.sources"),
            &apt.sources(),
        )?;
        write_if_changed(&apt.conf_path(), &apt.conf(&host_settings()))?;
        Ok(apt)
    }

    /// The mirrors this configuration uses.
    pub fn mirrors(&self) -> &Mirrors {
        &self.mirrors
    }

    /// The configuration file (`APT_CONFIG`).
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("apt.conf")
    }

    /// The deb822 sources: every target codename and its `-updates` suite from the archive,
    /// its `-security` suite from the security archive.
    fn sources(&self) -> String {
        let stanza = |uri: &str, suites: Vec<String>| {
            format!(
                "Types: deb\nURIs: {uri}\nSuites: {}\nComponents: main\nArchitectures: amd64\n\
                 Signed-By: {KEYRING}\n",
                suites.join(" ")
            )
        };
        let mut text = String::from("# Written by kpatch-rs from the host's apt sources.\n");
        let main: Vec<String> = TARGET_CODENAMES
            .iter()
            .flat_map(|c| [c.to_string(), format!("{c}-updates")])
            .collect();
        text.push_str(&stanza(&self.mirrors.archive, main));
        if let Some(sec) = &self.mirrors.security {
            let suites = TARGET_CODENAMES
                .iter()
                .map(|c| format!("{c}-security"))
                .collect();
            text.push('\n');
            text.push_str(&stanza(sec, suites));
        }
        text
    }

    fn conf(&self, carried: &[String]) -> String {
        let d = self.dir.display();
        let mut text = format!(
            "// Written by kpatch-rs: a private apt configuration (the host's is not used).\n\
             Dir::Etc \"{d}/etc\";\n\
             Dir::Etc::SourceList \"{d}/etc/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/etc/sources.list.d\";\n\
             Dir::Etc::Parts \"{d}/etc/apt.conf.d\";\n\
             Dir::Etc::Preferences \"{d}/etc/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/etc/preferences.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::Lists \"{d}/lists\";\n\
             Dir::State::status \"{d}/state/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures {{ \"amd64\"; }};\n\
             APT::Sandbox::User \"root\";\n\
             Acquire::Languages \"none\";\n\
             Acquire::GzipIndexes \"false\";\n\
             Acquire::Retries \"3\";\n\
             // Carried over from the host's configuration:\n"
        );
        for line in carried {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// An apt command (`apt-get`, `apt-cache`, the helper) under this configuration.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.conf_path())
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    fn stamp(&self) -> PathBuf {
        self.dir.join("lists/.kpatch-updated")
    }

    /// When the lists were last updated, if ever.
    pub fn updated_at(&self) -> Option<SystemTime> {
        std::fs::metadata(self.stamp())
            .and_then(|m| m.modified())
            .ok()
    }

    /// `apt-get update` on the private lists (serialised by a lock).
    pub fn update(&self) -> Result<()> {
        let _lock = FileLock::acquire(&self.dir.join("lock"))?;
        tracing::info!(dir = %self.dir.display(), "apt-get update (private lists)");
        let out = run(self.command("apt-get").args(["update", "-q"]))?;
        if out.contains("\nE: ") || out.starts_with("E: ") {
            return Err(archive_hint(
                format!("apt-get update failed:\n{}", crate::util::tail(&out, 10)),
                "check the network and the mirror in the host's apt sources",
            ));
        }
        std::fs::write(self.stamp(), "").map_err(io(self.stamp()))
    }

    /// Updates the lists when they are missing or older than `max_age`. Returns whether it
    /// updated.
    pub fn ensure_fresh(&self, max_age: Duration) -> Result<bool> {
        let stale = match self.updated_at() {
            Some(t) => t.elapsed().map(|e| e > max_age).unwrap_or(true),
            None => true,
        };
        if stale || self.index_targets()?.is_empty() {
            self.update()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The `Packages` indexes apt has, with their suites and archive URIs
    /// (`apt-get indextargets`).
    pub fn index_targets(&self) -> Result<Vec<IndexTarget>> {
        let out = run(self.command("apt-get").args([
            "indextargets",
            "--format",
            "$(IDENTIFIER)\t$(FILENAME)\t$(CODENAME)\t$(REPO_URI)",
        ]))?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                let (id, file, codename, uri) = (f.next()?, f.next()?, f.next()?, f.next()?);
                (id == "Packages" && Path::new(file).exists()).then(|| IndexTarget {
                    file: PathBuf::from(file),
                    codename: codename.to_string(),
                    repo_uri: uri.to_string(),
                })
            })
            .collect())
    }

    /// Downloads `uri` to `dest` with apt's own transport. With `sha256`, apt checks the
    /// hash and removes a file that does not match.
    pub fn download(&self, uri: &str, dest: &Path, sha256: Option<&str>) -> Result<()> {
        let mut cmd = self.command(APT_HELPER);
        cmd.args(["-q", "download-file", uri]).arg(dest);
        if let Some(h) = sha256 {
            cmd.arg(format!("SHA256:{h}"));
        }
        match run(&mut cmd) {
            Ok(_) if dest.exists() => Ok(()),
            Ok(_) => Err(archive(format!("{uri}: apt-helper left no file"))),
            Err(Error::Command { output, .. }) => Err(archive_hint(
                format!("cannot download {uri}:\n{}", crate::util::tail(&output, 6)),
                "check the network; an old point release may have left the mirror's pool",
            )),
            Err(e) => Err(e),
        }
    }
}

/// The host's proxy and validity-check settings, as `apt-config dump` prints them.
fn host_settings() -> Vec<String> {
    let Ok(out) = Command::new("apt-config")
        .arg("dump")
        .env_remove("APT_CONFIG")
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            [
                "Acquire::http::Proxy",
                "Acquire::https::Proxy",
                "Acquire::ftp::Proxy",
            ]
            .iter()
            .any(|p| l.starts_with(p))
                || l.starts_with("Acquire::Check-Valid-Until ")
                || l.starts_with("Acquire::Check-Date ")
        })
        .map(str::to_string)
        .collect()
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_every_target_suite_from_the_host_uris() {
        let dir = tempfile::tempdir().unwrap();
        let apt = Apt::setup(
            dir.path(),
            Mirrors {
                archive: "http://m.example/debian".into(),
                security: Some("http://m.example/debian-security".into()),
            },
        )
        .unwrap();
        let sources =
            std::fs::read_to_string(dir.path().join("etc/sources.list.d/debian.sources")).unwrap();
        assert!(sources.contains(
            "URIs: http://m.example/debian\nSuites: bookworm bookworm-updates trixie trixie-updates\n"
        ));
        assert!(sources.contains("Suites: bookworm-security trixie-security\n"));
        assert!(sources.contains(&format!("Signed-By: {KEYRING}")));
        let conf = std::fs::read_to_string(apt.conf_path()).unwrap();
        assert!(conf.contains(&format!(
            "Dir::State::Lists \"{}/lists\";",
            dir.path().display()
        )));
        assert!(conf.contains("Dir::Etc::Parts"));
    }
}
