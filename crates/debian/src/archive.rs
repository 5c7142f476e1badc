//! The archive as kpatch-rs sees it: the private apt configuration, its kernel index, and
//! verified downloads into the cache's pool.
//!
//! What is verified about a `.deb`:
//! - listed in an index (the normal case): its SHA256 and size, from the index apt verified
//!   against the suite's signed `InRelease` with the archive keyring. A file found in the pool
//!   or in an old cache is hashed before it is trusted, once (a stamp records size, mtime and
//!   inode).
//! - not listed any more (the `linux-kbuild-*` / `linux-source-*` of an older point release,
//!   whose names carry no ABI and keep only recent versions in the index): it is fetched from
//!   the pool directory where the archive keeps its sibling packages of the same source and
//!   version (which are listed), and accepted only if its control fields (`Package`,
//!   `Version`, `Architecture`, `Source`) are the ones asked for and its data archive
//!   decompresses completely (the compressors' checksums catch corruption). No signed hash
//!   covers such a file: that is said once, as a warning, when it is first fetched.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::apt::Apt;
use crate::cache::Cache;
use crate::error::{archive, archive_hint, io, Error, Result};
use crate::index::{Entry, Index};
use crate::resolve::{self, Pkg, Release};
use crate::util::{run, FileLock};
use crate::{deb822, sources, version};

/// How the archive may be reached.
#[derive(Clone, Debug)]
pub struct Options {
    /// Never contact the network: use the lists and packages already in the cache.
    pub offline: bool,
    /// Re-read the archive's indexes when they are older than this.
    pub max_age: Duration,
}

impl Options {
    /// `KPATCH_OFFLINE` (or the test bed's `KPATCH_TESTBED_OFFLINE`) and
    /// `KPATCH_APT_MAX_AGE` (seconds, default a day).
    pub fn from_env() -> Options {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty() && v != "0");
        let max_age = std::env::var("KPATCH_APT_MAX_AGE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(86_400);
        Options {
            offline: set("KPATCH_OFFLINE") || set("KPATCH_TESTBED_OFFLINE"),
            max_age: Duration::from_secs(max_age),
        }
    }
}

/// How a fetched `.deb` was verified.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verified {
    /// SHA256 and size from the signed index.
    IndexHash,
    /// Not in any index: control fields and archive integrity only.
    ControlOnly,
}

/// A `.deb` in the pool.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// Its path.
    pub path: PathBuf,
    /// How it was verified.
    pub verified: Verified,
    /// A warning to show the user, the first time only.
    pub warning: Option<String>,
}

/// The private apt configuration, its index and the cache.
#[derive(Debug)]
pub struct Archive {
    cache: Cache,
    apt: Apt,
    index: Index,
    opts: Options,
    refreshed: bool,
}

impl Archive {
    /// Sets up the private apt configuration in `cache`, updates its lists when they are
    /// stale (unless offline), and reads the kernel index.
    pub fn open(cache: &Cache, opts: Options) -> Result<Archive> {
        let mirrors = sources::mirrors(Path::new("/"))?;
        let apt = Apt::setup(&cache.apt_dir(), mirrors)?;
        let refreshed = if opts.offline {
            false
        } else {
            apt.ensure_fresh(opts.max_age)?
        };
        let index = Index::load(&apt.index_targets()?)?;
        if index.entries().is_empty() {
            return Err(archive_hint(
                format!("no package lists in {}", cache.apt_dir().display()),
                "run once without KPATCH_OFFLINE so that the archive's indexes are downloaded",
            ));
        }
        Ok(Archive {
            cache: cache.clone(),
            apt,
            index,
            opts,
            refreshed,
        })
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }
    /// The private apt configuration.
    pub fn apt(&self) -> &Apt {
        &self.apt
    }
    /// The kernel index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Re-reads the archive's indexes now.
    pub fn refresh(&mut self) -> Result<()> {
        self.apt.update()?;
        self.index = Index::load(&self.apt.index_targets()?)?;
        self.refreshed = true;
        Ok(())
    }

    /// Resolves a target string; when it is not found in lists that were not updated by
    /// this process, updates them once and tries again.
    pub fn resolve(&mut self, target: &str) -> Result<Release> {
        let t = resolve::parse_target(target)?;
        match resolve::resolve(&self.index, &t) {
            Ok(r) => Ok(r),
            Err(e) if self.refreshed || self.opts.offline => Err(e),
            Err(_) => {
                tracing::info!(target, "not in the lists; updating them");
                self.refresh()?;
                resolve::resolve(&self.index, &t)
            }
        }
    }

    /// The pool file name of `p` (`arch` when the index does not know it).
    fn file_name(p: &Pkg, arch: &str) -> String {
        format!(
            "{}_{}_{}.deb",
            p.name,
            version::without_epoch(&p.version),
            arch
        )
    }

    /// Makes sure `p` is in the pool, verified; returns its path.
    pub fn fetch(&self, p: &Pkg) -> Result<Fetched> {
        let pool = self.cache.pool();
        std::fs::create_dir_all(&pool).map_err(io(&pool))?;
        // One lock per package: a 1 GB download does not hold up the others.
        let _lock = FileLock::acquire(&pool.join(".locks").join(format!("{}.lock", p.name)))?;
        let entry = self.index.find(&p.name, &p.version);
        let archs: Vec<String> = match (entry, &p.arch) {
            (Some(e), _) => vec![e.architecture.clone()],
            (None, Some(a)) => vec![a.clone()],
            (None, None) => vec!["amd64".into(), "all".into()],
        };
        for arch in &archs {
            let path = pool.join(Self::file_name(p, arch));
            if let Some(v) = stamp::check(&path) {
                return Ok(Fetched {
                    path,
                    verified: v,
                    warning: None,
                });
            }
            if path.exists() || self.import_legacy(&path) {
                if let Ok(f) = self.verify(p, arch, entry, &path, false) {
                    return Ok(f);
                }
                tracing::warn!(path = %path.display(), "cached file failed verification; fetching again");
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        if self.opts.offline {
            return Err(archive_hint(
                format!(
                    "{} is not in the cache and the archive may not be contacted",
                    p.spec()
                ),
                "unset KPATCH_OFFLINE (and KPATCH_TESTBED_OFFLINE)",
            ));
        }
        match entry {
            Some(e) => self.download_indexed(p, e),
            None => self.download_unindexed(p, &archs),
        }
    }

    /// Hard-links a file of the same name from an old cache into the pool.
    fn import_legacy(&self, path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return false;
        };
        for dir in self.cache.legacy_deb_dirs() {
            let old = dir.join(name);
            if old.is_file() && std::fs::hard_link(&old, path).is_ok() {
                tracing::info!(from = %old.display(), "reusing a package of an older cache");
                return true;
            }
        }
        false
    }

    fn download_indexed(&self, p: &Pkg, e: &Entry) -> Result<Fetched> {
        let path = self.cache.pool().join(Self::file_name(p, &e.architecture));
        let tmp = path.with_extension("deb.part");
        let _ = std::fs::remove_file(&tmp);
        tracing::info!(uri = %e.uri(), size = e.size, "downloading");
        self.apt.download(&e.uri(), &tmp, Some(&e.sha256))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.verify(p, &e.architecture, Some(e), &path, true)
    }

    /// An older point release's package that the index no longer lists: fetched from the
    /// pool directory of its listed siblings (same source package, same version).
    fn download_unindexed(&self, p: &Pkg, archs: &[String]) -> Result<Fetched> {
        let source = self
            .index
            .versions(&p.name)
            .next()
            .map(|e| e.source.clone())
            .unwrap_or_else(|| "linux".into());
        let sibling = self
            .index
            .entries()
            .iter()
            .find(|e| e.source == source && e.version == p.version && e.filename.contains('/'))
            .ok_or_else(|| {
                archive_hint(
                    format!(
                        "{} is not in the archive's index, and no other package of source {source} {} is",
                        p.spec(),
                        p.version
                    ),
                    "this point release has left the archive; build for a current release",
                )
            })?;
        let dir = &sibling.filename[..sibling.filename.rfind('/').unwrap_or(0)];
        let mut last = None;
        for arch in archs {
            let name = Self::file_name(p, arch);
            let uri = format!("{}{dir}/{name}", sibling.repo_uri);
            let path = self.cache.pool().join(&name);
            let tmp = path.with_extension("deb.part");
            let _ = std::fs::remove_file(&tmp);
            tracing::info!(%uri, "downloading a package the index no longer lists");
            match self.apt.download(&uri, &tmp, None) {
                Ok(()) => {
                    std::fs::rename(&tmp, &path).map_err(io(&path))?;
                    let mut f = self.verify(p, arch, None, &path, true)?;
                    f.warning = Some(format!(
                        "{} is no longer in the archive's signed index; fetched from {uri} and \
                         accepted on its control fields and archive checksums (no signed hash covers it)",
                        p.spec()
                    ));
                    return Ok(f);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| archive(format!("cannot fetch {}", p.spec()))))
    }

    /// Checks a pool file against the index entry, or its control fields when there is none.
    fn verify(
        &self,
        p: &Pkg,
        arch: &str,
        entry: Option<&Entry>,
        path: &Path,
        fresh: bool,
    ) -> Result<Fetched> {
        let verified = match entry {
            Some(e) => {
                // apt-helper checked the hash of a fresh download; a file from elsewhere is
                // hashed here.
                let len = std::fs::metadata(path).map_err(io(path))?.len();
                if len != e.size && e.size != 0 {
                    return Err(integrity(
                        path,
                        format!("size {len}, the index says {}", e.size),
                    ));
                }
                if !fresh {
                    let h = stamp::sha256(path)?;
                    if !h.eq_ignore_ascii_case(&e.sha256) {
                        return Err(integrity(
                            path,
                            format!("SHA256 {h}, the index says {}", e.sha256),
                        ));
                    }
                }
                Verified::IndexHash
            }
            None => {
                check_control(path, p, arch)?;
                Verified::ControlOnly
            }
        };
        stamp::write(path, &verified)?;
        Ok(Fetched {
            path: path.to_path_buf(),
            verified,
            warning: None,
        })
    }
}

fn integrity(path: &Path, msg: String) -> Error {
    Error::Integrity {
        path: path.display().to_string(),
        msg,
    }
}

/// The control fields of `deb` name `p` at its version for `arch`, from a source the index
/// knows, and its data archive reads to the end.
fn check_control(deb: &Path, p: &Pkg, arch: &str) -> Result<()> {
    let text = run(Command::new("dpkg-deb").arg("-f").arg(deb))
        .map_err(|e| integrity(deb, format!("not a Debian package: {e}")))?;
    let c = deb822::parse_one(&text);
    let field = |n: &str| c.get(n).unwrap_or("").to_string();
    for (name, want) in [
        ("Package", p.name.as_str()),
        ("Version", p.version.as_str()),
        ("Architecture", arch),
    ] {
        if field(name) != want {
            return Err(integrity(
                deb,
                format!("{name} is '{}', expected '{want}'", field(name)),
            ));
        }
    }
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"dpkg-deb --fsys-tarfile "$0" | tar -t >/dev/null"#)
        .arg(deb)
        .status()
        .map_err(io(deb))?;
    if !status.success() {
        return Err(integrity(
            deb,
            "its data archive does not decompress".into(),
        ));
    }
    Ok(())
}

/// Verification stamps in `<pool>/.verified/`.
mod stamp {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use super::Verified;
    use crate::error::{io, Result};

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Eq)]
    struct Stamp {
        size: u64,
        mtime: i64,
        ino: u64,
        verified: Verified,
    }

    fn stamp_path(deb: &Path) -> PathBuf {
        let name = deb.file_name().unwrap_or_default().to_string_lossy();
        deb.with_file_name(".verified").join(format!("{name}.json"))
    }

    fn of(deb: &Path, verified: Verified) -> Option<Stamp> {
        let m = std::fs::metadata(deb).ok()?;
        Some(Stamp {
            size: m.len(),
            mtime: m.mtime(),
            ino: m.ino(),
            verified,
        })
    }

    /// How `deb` was verified, if its stamp still describes it.
    pub fn check(deb: &Path) -> Option<Verified> {
        let s: Stamp =
            serde_json::from_str(&std::fs::read_to_string(stamp_path(deb)).ok()?).ok()?;
        (of(deb, s.verified.clone())? == s).then_some(s.verified)
    }

    pub fn write(deb: &Path, verified: &Verified) -> Result<()> {
        let p = stamp_path(deb);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let s = of(deb, verified.clone()).ok_or_else(|| crate::error::archive("stat failed"))?;
        std::fs::write(&p, serde_json::to_string(&s).unwrap_or_default()).map_err(io(&p))
    }

    pub fn sha256(path: &Path) -> Result<String> {
        use sha2::Digest;
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(io(path))?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io(path))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}
