// SPDX-License-Identifier: GPL-2.0-only
//! Staging a package's tree and running `dpkg-deb --build`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};
use pathio::IoContext;

use crate::{Content, Entry, Error, Package, Result};

/// Stages `pkg` in a temporary directory inside `out_dir`, builds the archive there and
/// renames it into place.
pub(crate) fn build(pkg: &Package, out_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(out_dir).at(out_dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(".debpkg-")
        .tempdir_in(out_dir)
        .at(out_dir)?;
    let root = tmp.path().join("root");
    let mut sums = Vec::new();
    let mut kib = 0u64;
    let mut dirs = std::collections::BTreeSet::new();
    for e in &pkg.entries {
        let dest = root.join(e.path().trim_start_matches('/'));
        let parent = dest.parent().unwrap_or(&root).to_path_buf();
        for d in parent.ancestors().take_while(|d| *d != root) {
            dirs.insert(d.to_path_buf());
        }
        fs::create_dir_all(&parent).at(&parent)?;
        match e {
            Entry::File {
                path,
                content,
                mode,
            } => {
                let bytes = match content {
                    Content::Bytes(b) => b.clone(),
                    Content::Path(p) => fs::read(p).at(p)?,
                };
                fs::write(&dest, &bytes).at(&dest)?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(*mode)).at(&dest)?;
                kib += (bytes.len() as u64).div_ceil(1024);
                sums.push(format!(
                    "{:x}  {}\n",
                    Md5::digest(&bytes),
                    path.trim_start_matches('/')
                ));
            }
            Entry::Symlink { target, .. } => {
                std::os::unix::fs::symlink(target, &dest).at(&dest)?;
                kib += 1;
            }
        }
    }
    for d in &dirs {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).at(d)?;
    }
    kib += dirs.len() as u64;
    sums.sort_by(|a, b| a[34..].cmp(&b[34..]));
    write_control_dir(pkg, &root, kib, &sums.concat())?;

    let staged = tmp.path().join("out.deb");
    dpkg_deb_build(&root, &staged)?;
    let dest = out_dir.join(pkg.file_name());
    fs::rename(&staged, &dest).at(&dest)?;
    Ok(dest)
}

fn write_control_dir(pkg: &Package, root: &Path, kib: u64, md5sums: &str) -> Result<()> {
    let debian = root.join("DEBIAN");
    fs::create_dir_all(&debian).at(&debian)?;
    fs::set_permissions(&debian, fs::Permissions::from_mode(0o755)).at(&debian)?;
    let write = |name: &str, text: &str, mode: u32| -> Result<()> {
        let p = debian.join(name);
        fs::write(&p, text).at(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).at(&p)?;
        Ok(())
    };
    write("control", &pkg.control.render(kib), 0o644)?;
    if !md5sums.is_empty() {
        write("md5sums", md5sums, 0o644)?;
    }
    if !pkg.conffiles.is_empty() {
        write(
            "conffiles",
            &format!("{}\n", pkg.conffiles.join("\n")),
            0o644,
        )?;
    }
    for (which, text) in &pkg.scripts {
        if !text.starts_with("#!") {
            return Err(Error::Invalid(format!(
                "the {} script must start with #!",
                which.file_name()
            )));
        }
        write(which.file_name(), text, 0o755)?;
    }
    Ok(())
}

fn dpkg_deb_build(root: &Path, out: &Path) -> Result<()> {
    let mut cmd = Command::new("dpkg-deb");
    cmd.args(["--root-owner-group", "-Zxz", "--build"])
        .arg(root)
        .arg(out);
    let command = format!("dpkg-deb --build {} {}", root.display(), out.display());
    let output = cmd.output().map_err(|e| Error::Command {
        command: command.clone(),
        status: "not started".into(),
        output: e.to_string(),
    })?;
    if !output.status.success() {
        let mut text = String::new();
        let _ = (&output.stderr[..]).read_to_string(&mut text);
        return Err(Error::Command {
            command,
            status: output.status.to_string(),
            output: text.trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{Control, Package, Script};

    fn dpkg_deb(args: &[&str]) -> String {
        let out = std::process::Command::new("dpkg-deb")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn built_package_holds_control_files_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Control::new("livepatch-test", "2-1", "amd64");
        c.maintainer = "Test <test@example.org>".into();
        c.synopsis = "a test".into();
        c.description = "Longer text.".into();
        c.depends = vec!["linux-image-6.1.0-57-amd64 (= 6.1.192-3)".into()];
        let mut p = Package::new(c);
        p.bytes("/usr/lib/kpatch/x.ko", vec![1; 3000], 0o644)
            .unwrap();
        p.symlink("/usr/lib/kpatch/y.ko", "x.ko").unwrap();
        p.script(Script::Postinst, "#!/bin/sh\nset -e\nexit 0\n");
        p.docs("copyright text\n", "changelog\n").unwrap();
        let deb = p.build(dir.path()).unwrap();
        assert_eq!(deb, dir.path().join("livepatch-test_2-1_amd64.deb"));
        let deb = deb.to_str().unwrap();
        let control = dpkg_deb(&["-f", deb]);
        assert!(
            control.contains("Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)"),
            "{control}"
        );
        assert!(control.contains("Installed-Size: "), "{control}");
        let contents = dpkg_deb(&["-c", deb]);
        assert!(contents.contains(" 3000 "), "{contents}");
        assert!(
            contents.contains("./usr/share/doc/livepatch-test/changelog.Debian.gz"),
            "{contents}"
        );
        assert!(
            contents.contains("./usr/lib/kpatch/y.ko -> x.ko"),
            "{contents}"
        );
        let x = tempfile::tempdir().unwrap();
        dpkg_deb(&["-e", deb, x.path().to_str().unwrap()]);
        let sums = std::fs::read_to_string(x.path().join("md5sums")).unwrap();
        assert!(sums.contains("  usr/lib/kpatch/x.ko\n"), "{sums}");
        assert!(!sums.contains("y.ko"), "{sums}");
        // Nothing is left behind but the package.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_script_without_interpreter_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Control::new("ab", "1", "all");
        c.maintainer = "T <t@example.org>".into();
        c.synopsis = "x".into();
        let mut p = Package::new(c);
        p.script(Script::Prerm, "set -e\n");
        let e = p.build(dir.path()).unwrap_err();
        assert!(e.to_string().contains("prerm"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
