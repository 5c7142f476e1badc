// SPDX-License-Identifier: GPL-2.0-only
//! Module signatures: whether the running kernel insists on them, and whether a module
//! file carries one, so that `kpatch load` refuses an unsigned module *before*
//! `finit_module`, saying what to do, instead of passing on the kernel's
//! "Key was rejected by service".
//!
//! A kernel refuses unsigned modules when it is locked down (`integrity` or
//! `confidentiality` in `/sys/kernel/security/lockdown`: Debian's kernels lock down when
//! booted with UEFI Secure Boot) or when `module.sig_enforce=1`
//! (`/sys/module/module/parameters/sig_enforce`). `sign-file` appends the signature and
//! the trailer [`SIG_MAGIC`] to the module file.

use serde::Serialize;

use crate::env::Env;
use crate::sysfs::read_attr;

/// The trailer of a signed module (`MODULE_SIG_STRING` in the kernel).
pub const SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// Whether module bytes end with an appended signature.
pub fn is_signed(data: &[u8]) -> bool {
    data.ends_with(SIG_MAGIC)
}

/// What the running kernel requires of module signatures.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Policy {
    /// The lockdown mode in force (`none`, `integrity`, `confidentiality`), when the
    /// kernel has the lockdown LSM.
    pub lockdown: Option<String>,
    /// `module.sig_enforce`.
    pub sig_enforce: bool,
}

impl Policy {
    /// Reads it from `sys` (`/sys/kernel/security/lockdown`,
    /// `/sys/module/module/parameters/sig_enforce`).
    pub fn read(env: &Env) -> Policy {
        let lockdown = read_attr(&env.sys.join("kernel/security/lockdown"))
            .and_then(|t| selected(&t).map(str::to_string));
        let sig_enforce = read_attr(&env.sys.join("module/module/parameters/sig_enforce"))
            .is_some_and(|v| v == "Y" || v == "1");
        Policy {
            lockdown,
            sig_enforce,
        }
    }

    /// Whether the kernel loads only modules with a valid signature.
    pub fn requires_signature(&self) -> bool {
        self.sig_enforce
            || matches!(
                self.lockdown.as_deref(),
                Some("integrity" | "confidentiality")
            )
    }

    /// Why signatures are required, for messages.
    pub fn reason(&self) -> String {
        match (&self.lockdown, self.sig_enforce) {
            (Some(mode), _) if mode != "none" => format!(
                "the kernel is locked down ({mode}; Debian's kernels lock down under UEFI Secure Boot)"
            ),
            (_, true) => "the kernel enforces module signatures (module.sig_enforce=1)".into(),
            _ => "the kernel does not require signatures".into(),
        }
    }
}

/// The bracketed word of a sysfs choice list (`none [integrity] confidentiality`).
fn selected(text: &str) -> Option<&str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

/// What to do about an unsigned module on a kernel that requires signatures.
pub fn unsigned_advice() -> &'static str {
    "sign it: build it with `kpatch-build --sign-key KEY --sign-cert CERT` (or let \
     kpatch-build find DKMS's machine-owner key in /var/lib/dkms), and enrol the \
     certificate once with `mokutil --import CERT` (see `kpatch-build --create-sign-key`)"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(lockdown: Option<&str>, enforce: Option<&str>) -> (tempfile::TempDir, Env) {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::rooted(dir.path(), "6.1.0-57-amd64");
        if let Some(l) = lockdown {
            let p = env.sys.join("kernel/security");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("lockdown"), format!("{l}\n")).unwrap();
        }
        if let Some(e) = enforce {
            let p = env.sys.join("module/module/parameters");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("sig_enforce"), format!("{e}\n")).unwrap();
        }
        (dir, env)
    }

    #[test]
    fn lockdown_and_sig_enforce_require_signatures() {
        let (_d, env) = env_with(Some("none [integrity] confidentiality"), Some("N"));
        let p = Policy::read(&env);
        assert_eq!(p.lockdown.as_deref(), Some("integrity"));
        assert!(p.requires_signature());
        assert!(p.reason().contains("Secure Boot"), "{}", p.reason());

        let (_d, env) = env_with(Some("[none] integrity confidentiality"), Some("Y"));
        let p = Policy::read(&env);
        assert!(p.requires_signature());
        assert!(p.reason().contains("sig_enforce"), "{}", p.reason());

        let (_d, env) = env_with(Some("[none] integrity confidentiality"), Some("N"));
        assert!(!Policy::read(&env).requires_signature());
        let (_d, env) = env_with(None, None);
        assert_eq!(Policy::read(&env), Policy::default());
    }

    #[test]
    fn signed_modules_end_with_the_trailer() {
        let mut m = b"\x7fELF....".to_vec();
        assert!(!is_signed(&m));
        m.extend_from_slice(SIG_MAGIC);
        assert!(is_signed(&m));
    }
}
