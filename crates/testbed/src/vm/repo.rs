//! A local, signed apt repository for the guest: `contrib/apt-repo/kpatch-publish`
//! (`apt-ftparchive` + `gpg`, as an operator would run it) over a directory that QEMU
//! shares with the guest read-only (9p), signed with a test key kept in the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, IoContext, Result};
use crate::util::{run, run_stdout};

/// The publishing script.
pub fn publish_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/apt-repo/kpatch-publish")
}

/// A repository and the key that signs it.
#[derive(Clone, Debug)]
pub struct AptRepo {
    /// The repository (flat: `deb … ./`).
    pub dir: PathBuf,
    /// `GNUPGHOME` holding the signing key.
    pub gnupg: PathBuf,
    /// The key's fingerprint.
    pub key: String,
}

impl AptRepo {
    /// An empty repository in `dir`, signed by the key in `gnupg` (created on first use).
    pub fn new(dir: &Path, gnupg: &Path) -> Result<AptRepo> {
        fs::create_dir_all(dir).at(dir)?;
        let key = ensure_key(gnupg)?;
        Ok(AptRepo {
            dir: dir.to_path_buf(),
            gnupg: gnupg.to_path_buf(),
            key,
        })
    }

    /// Adds packages and signs the index again.
    pub fn publish(&self, debs: &[&Path]) -> Result<String> {
        run_stdout(
            Command::new(publish_script())
                .arg(&self.dir)
                .arg(&self.key)
                .args(debs)
                .env("GNUPGHOME", &self.gnupg),
        )
    }

    /// The exported public key (`signed-by`).
    pub fn public_key(&self) -> PathBuf {
        self.dir.join("kpatch-repo.gpg")
    }
}

/// The fingerprint of the signing key in `gnupg`, generated (ed25519, no passphrase) if
/// there is none.
fn ensure_key(gnupg: &Path) -> Result<String> {
    fs::create_dir_all(gnupg).at(gnupg)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(gnupg, fs::Permissions::from_mode(0o700)).at(gnupg)?;
    let list = || {
        run_stdout(
            Command::new("gpg")
                .args(["--batch", "--with-colons", "--list-secret-keys"])
                .env("GNUPGHOME", gnupg),
        )
        .unwrap_or_default()
    };
    let fingerprint = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .map(str::to_string)
    };
    if let Some(f) = fingerprint(&list()) {
        return Ok(f);
    }
    run(Command::new("gpg")
        .args(["--batch", "--passphrase", "", "--quick-gen-key"])
        .args([
            "kpatch test repository <kpatch-repo@example.org>",
            "ed25519",
            "sign",
            "never",
        ])
        .env("GNUPGHOME", gnupg))?;
    fingerprint(&list())
        .ok_or_else(|| Error::Cache(format!("gpg made no key in {}", gnupg.display())))
}
