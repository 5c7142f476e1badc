//! Module signing, the Debian way: the kernel's own `sign-file` (from the target's
//! `linux-kbuild` package, reached through the headers' `scripts` link) with the hash the
//! target was configured with (`CONFIG_MODULE_SIG_HASH`), and a machine-owner key (MOK)
//! from the command line or from where DKMS and shim-signed keep theirs, so that one
//! enrolled key signs DKMS modules and live patches alike.
//!
//! A kernel that enforces signatures (Secure Boot's lockdown, `module.sig_enforce=1`)
//! refuses unsigned modules; one that does not loads them and taints itself `E`. The key is
//! trusted once its certificate is enrolled with `mokutil --import` (see
//! [`create_key`]): shim passes the MOK list to the kernel, which trusts it for module
//! signatures.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{io, step, step_hint, Result};
use crate::progress::Progress;

/// The trailer `sign-file` appends (include/linux/module_signature.h's `MODULE_SIG_STRING`).
pub const SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// DKMS's configuration file, which may move its key.
pub const DKMS_FRAMEWORK_CONF: &str = "/etc/dkms/framework.conf";

/// Where Debian's tools keep a machine-owner key, searched in this order: `(private key,
/// certificate, who uses it)`.
pub const MOK_LOCATIONS: &[(&str, &str, &str)] = &[
    ("/var/lib/dkms/mok.key", "/var/lib/dkms/mok.pub", "DKMS"),
    (
        "/var/lib/shim-signed/mok/MOK.priv",
        "/var/lib/shim-signed/mok/MOK.der",
        "shim-signed",
    ),
];

/// A key pair to sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKey {
    /// The private key (PEM).
    pub key: PathBuf,
    /// The certificate (DER or PEM).
    pub cert: PathBuf,
    /// Where it came from, for messages.
    pub origin: String,
}

/// The key to sign with: `--sign-key`/`--sign-cert` if given (both or neither), else the
/// first readable pair at DKMS's configured or usual location or shim-signed's. `None`:
/// no key anywhere, the module stays unsigned.
pub fn find_key(key: Option<&Path>, cert: Option<&Path>) -> Result<Option<SigningKey>> {
    match (key, cert) {
        (Some(k), Some(c)) => {
            for p in [k, c] {
                std::fs::File::open(p).map_err(io(p))?;
            }
            return Ok(Some(SigningKey {
                key: k.to_path_buf(),
                cert: c.to_path_buf(),
                origin: "the command line".into(),
            }));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(step_hint(
                "--sign-key and --sign-cert go together",
                "give the private key (PEM) and its certificate (DER or PEM)",
            ))
        }
        (None, None) => {}
    }
    let dkms = std::fs::read_to_string(DKMS_FRAMEWORK_CONF).unwrap_or_default();
    let mut candidates: Vec<(PathBuf, PathBuf, String)> = Vec::new();
    if let (Some(k), Some(c)) = (
        conf_value(&dkms, "mok_signing_key"),
        conf_value(&dkms, "mok_certificate"),
    ) {
        candidates.push((k.into(), c.into(), format!("DKMS ({DKMS_FRAMEWORK_CONF})")));
    }
    for (k, c, who) in MOK_LOCATIONS {
        candidates.push((k.into(), c.into(), (*who).to_string()));
    }
    for (k, c, who) in candidates {
        if !(k.exists() && c.exists()) {
            continue;
        }
        if let Err(e) = std::fs::File::open(&k) {
            return Err(step_hint(
                format!(
                    "{}'s machine-owner key {} is not readable: {e}",
                    who,
                    k.display()
                ),
                "run kpatch-build as root to sign with it, pass another key with --sign-key \
                 and --sign-cert, or --no-sign for an unsigned module",
            ));
        }
        return Ok(Some(SigningKey {
            origin: format!("{who}'s machine-owner key"),
            key: k,
            cert: c,
        }));
    }
    Ok(None)
}

/// `name="value"` (or unquoted) in a shell-style configuration file.
fn conf_value(text: &str, name: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let v = l
            .trim()
            .strip_prefix(name)?
            .trim_start()
            .strip_prefix('=')?;
        let v = v.trim().trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

/// `CONFIG_MODULE_SIG_HASH` of a kernel configuration; `None` when the kernel does not
/// check module signatures (`CONFIG_MODULE_SIG` is not set).
pub fn config_hash(config_text: &str) -> Option<String> {
    let sig = config_text
        .lines()
        .any(|l| l.trim() == "CONFIG_MODULE_SIG=y");
    let hash = config_text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("CONFIG_MODULE_SIG_HASH=")
            .map(|v| v.trim_matches('"').to_string())
    })?;
    (sig && !hash.is_empty()).then_some(hash)
}

/// Whether a module file carries an appended signature.
pub fn is_signed(module: &[u8]) -> bool {
    module.ends_with(SIG_MAGIC)
}

/// Signs `module` in place with `sign-file` (from `headers/scripts`) and the hash of
/// `config`. Returns the hash used, or `None` (with a note) when the kernel does not check
/// signatures.
pub fn sign(
    headers: &Path,
    config: &Path,
    key: &SigningKey,
    module: &Path,
    p: &mut Progress,
) -> Result<Option<String>> {
    let text = std::fs::read_to_string(config).map_err(io(config))?;
    let Some(hash) = config_hash(&text) else {
        p.warn(&format!(
            "{} does not check module signatures (no CONFIG_MODULE_SIG): the module is not signed",
            config.display()
        ));
        return Ok(None);
    };
    let sign_file = headers.join("scripts/sign-file");
    if !sign_file.exists() {
        return Err(step(format!(
            "{} is missing: the kernel's linux-kbuild package provides it",
            sign_file.display()
        )));
    }
    let mut c = Command::new(&sign_file);
    c.arg(&hash).arg(&key.key).arg(&key.cert).arg(module);
    cmd::run(&mut c, "signing the module (sign-file)", p)?;
    let bytes = std::fs::read(module).map_err(io(module))?;
    if !is_signed(&bytes) {
        return Err(step(format!(
            "sign-file left {} without a signature",
            module.display()
        )));
    }
    p.note(&format!(
        "signed with {} ({}, {hash})",
        key.cert.display(),
        key.origin
    ));
    Ok(Some(hash))
}

/// Creates a key pair for module signing (RSA 2048, self-signed, valid 100 years, as DKMS
/// makes it: PEM private key readable by root only, DER certificate) and returns the
/// instructions for enrolling it. Refuses to overwrite an existing key.
pub fn create_key(key: &Path, cert: &Path, common_name: &str) -> Result<String> {
    for p in [key, cert] {
        if p.exists() {
            return Err(step_hint(
                format!("{} already exists", p.display()),
                "kpatch-build signs with an existing key by itself; remove it first to make a \
                 new one (modules signed with it then no longer load under Secure Boot)",
            ));
        }
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    let mut c = Command::new("openssl");
    c.args(["req", "-new", "-x509", "-nodes", "-days", "36500"])
        .args(["-newkey", "rsa:2048", "-sha256"])
        .arg("-subj")
        .arg(format!("/CN={common_name}/"))
        .args(["-addext", "extendedKeyUsage=codeSigning"])
        .arg("-keyout")
        .arg(key)
        .args(["-outform", "DER", "-out"])
        .arg(cert);
    let out = c.output().map_err(|e| {
        step_hint(
            format!("cannot run openssl: {e}"),
            "apt-get install openssl",
        )
    })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(key);
        let _ = std::fs::remove_file(cert);
        return Err(step(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).map_err(io(key))?;
    Ok(enrol_instructions(key, cert))
}

/// What to do with a new key so that the kernel trusts what it signs.
pub fn enrol_instructions(key: &Path, cert: &Path) -> String {
    let (k, c) = (key.display(), cert.display());
    format!(
        "Created a module signing key:\n\
         \x20 private key: {k} (root only; keep a backup in a safe place)\n\
         \x20 certificate: {c} (DER)\n\
         \n\
         kpatch-build signs with it when given --sign-key {k} --sign-cert {c}\n\
         (it looks at DKMS's and shim-signed's locations by itself).\n\
         \n\
         To make a machine with Secure Boot trust it, enrol the certificate as a Machine\n\
         Owner Key (MOK), on each machine:\n\
         \x20 1. mokutil --import {c}\n\
         \x20    (choose a one-time password)\n\
         \x20 2. reboot; shim's MokManager appears on the console: Enroll MOK, Continue, Yes,\n\
         \x20    type the password, Reboot\n\
         \x20 3. mokutil --test-key {c}   # \"... is already enrolled\"\n\
         \x20    keyctl list %:.platform   # lists the key's CN\n\
         Without Secure Boot the kernel loads unsigned and signed modules alike (tainted 'E'\n\
         when it cannot verify the signature).\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_comes_from_the_configuration() {
        let cfg = "CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_HASH=\"sha256\"\n";
        assert_eq!(config_hash(cfg).as_deref(), Some("sha256"));
        assert_eq!(
            config_hash("# CONFIG_MODULE_SIG is not set\nCONFIG_MODULE_SIG_HASH=\"sha256\"\n"),
            None
        );
        assert_eq!(config_hash("CONFIG_MODULE_SIG=y\n"), None);
    }

    #[test]
    fn dkms_configuration_values() {
        let text = "# mok_signing_key=\"/nope\"\nmok_signing_key=\"/etc/k.key\"\nmok_certificate=/etc/k.der\n";
        assert_eq!(
            conf_value(text, "mok_signing_key").as_deref(),
            Some("/etc/k.key")
        );
        assert_eq!(
            conf_value(text, "mok_certificate").as_deref(),
            Some("/etc/k.der")
        );
        assert_eq!(conf_value(text, "sign_tool"), None);
    }

    #[test]
    fn key_and_certificate_go_together() {
        assert!(find_key(Some(Path::new("/k")), None).is_err());
        let e = find_key(Some(Path::new("/nonexistent/k")), Some(Path::new("/c"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/k"), "{e}");
    }

    #[test]
    fn created_key_is_private_and_signs_a_file_sign_file_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (k, c) = (dir.path().join("x/mok.key"), dir.path().join("x/mok.pub"));
        let text = create_key(&k, &c, "test key").unwrap();
        assert!(
            text.contains(&format!("mokutil --import {}", c.display())),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&k).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let der = std::fs::read(&c).unwrap();
        assert_eq!(der[0], 0x30, "a DER certificate starts with a SEQUENCE");
        assert!(
            create_key(&k, &c, "again").is_err(),
            "an existing key is kept"
        );
    }
}
