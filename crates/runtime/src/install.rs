// SPDX-License-Identifier: GPL-2.0-only
//! Installed patches (`/var/lib/kpatch/<kernel-release>/<module>.ko`) and
//! the interrupted-load marker.
//!
//! Before a module is handed to the kernel, `<module-name>.loading` is
//! written (and synced) next to the installed modules of the running kernel;
//! it is removed once the transition has completed or has been cleanly
//! rolled back. A marker that is still there at the next boot means the
//! machine died during the load: `load --all` then skips that patch until it
//! is installed again.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::env::{normalize_name, Env, Runtime};
use crate::error::{Error, IoContext, Result};
use crate::modinfo::ModuleFile;

/// Suffix of marker files.
pub const MARKER_SUFFIX: &str = ".loading";

/// An installed patch module.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Installed {
    pub kernel_release: String,
    /// Module name (from its modinfo, else from the file name).
    pub name: String,
    pub file: PathBuf,
    /// Contents of the interrupted-load marker, if one is there.
    pub interrupted: Option<String>,
}

/// `/var/lib/kpatch/<release>/<name>.loading`.
pub fn marker_path(env: &Env, release: &str, name: &str) -> PathBuf {
    env.install_dir(release)
        .join(format!("{name}{MARKER_SUFFIX}"))
}

/// Writes the marker for `name` durably (file and directory synced).
pub fn write_marker(env: &Env, name: &str, file: &Path) -> Result<PathBuf> {
    let dir = env.install_dir(&env.kernel_release);
    fs::create_dir_all(&dir).at(&dir)?;
    let path = marker_path(env, &env.kernel_release, name);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = format!(
        "load of {name} from {} started {} by pid {}\n",
        file.display(),
        utc_time(now),
        std::process::id()
    );
    let mut f = File::create(&path).at(&path)?;
    f.write_all(text.as_bytes()).at(&path)?;
    f.sync_all().at(&path)?;
    File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?;
    Ok(path)
}

/// The marker's text for `name` under the running kernel, if present.
pub fn read_marker(env: &Env, release: &str, name: &str) -> Option<String> {
    fs::read_to_string(marker_path(env, release, name))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Removes the marker (and syncs the directory). Missing is fine.
pub fn clear_marker(env: &Env, release: &str, name: &str) -> Result<()> {
    let path = marker_path(env, release, name);
    match fs::remove_file(&path) {
        Ok(()) => {
            let dir = env.install_dir(release);
            Ok(File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Installed modules; of one kernel release or of all.
pub fn installed(env: &Env, release: Option<&str>) -> Vec<Installed> {
    let releases = match release {
        Some(r) => vec![r.to_string()],
        None => crate::sysfs::subdirs(&env.lib_dir),
    };
    let mut all = Vec::new();
    for rel in releases {
        let dir = env.install_dir(&rel);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ko") && p.is_file())
            .collect();
        files.sort();
        for file in files {
            let name = ModuleFile::read(&file)
                .map(|m| m.name)
                .unwrap_or_else(|_| normalize_name(&file.to_string_lossy()));
            all.push(Installed {
                kernel_release: rel.clone(),
                interrupted: read_marker(env, &rel, &name),
                name,
                file,
            });
        }
    }
    all
}

/// The installed module for the running kernel matching `spec`, which may
/// be a file name (`foo.ko`) or a module name (`foo`, `foo-bar`).
pub fn find_installed(env: &Env, release: &str, spec: &str) -> Option<Installed> {
    let wanted = normalize_name(spec);
    installed(env, Some(release)).into_iter().find(|i| {
        i.file
            .file_name()
            .is_some_and(|f| f.to_string_lossy() == spec)
            || i.name == wanted
            || normalize_name(&i.file.to_string_lossy()) == wanted
    })
}

/// `kpatch install [--kernel-version R] <module.ko>`.
pub fn install(rt: &mut Runtime<'_>, path: &Path, release: Option<&str>) -> Result<()> {
    rt.env.require_root("install")?;
    let release = release.unwrap_or(&rt.env.kernel_release).to_string();
    if path.extension().is_none_or(|x| x != "ko") {
        return Err(Error::BadModule {
            path: path.to_path_buf(),
            reason: "not a .ko file".into(),
        });
    }
    let module = ModuleFile::read(path)?;
    module.check_for(&release, "the install target")?;
    let file_name = path.file_name().ok_or_else(|| Error::BadModule {
        path: path.to_path_buf(),
        reason: "no file name".into(),
    })?;
    let dir = rt.env.install_dir(&release);
    let dest = dir.join(file_name);
    let new = fs::read(path).at(path)?;
    let had_marker = read_marker(&rt.env, &release, &module.name).is_some();
    if dest.exists() && fs::read(&dest).ok().as_deref() == Some(new.as_slice()) && !had_marker {
        // Installing the same file again changes nothing: success, so that packages'
        // maintainer scripts and configuration management can run it every time.
        rt.say(format!(
            "{} is already installed for {release}",
            file_name.to_string_lossy()
        ));
        return Ok(());
    }
    rt.say(format!("installing {} ({release})", path.display()));
    fs::create_dir_all(&dir).at(&dir)?;
    // Copy under a temporary name and rename: a crash never leaves half a module.
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(&new).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, &dest).at(&dest)?;
    if had_marker {
        rt.say(format!(
            "cleared the interrupted-load mark of {}: it will be loaded at boot again",
            module.name
        ));
    }
    clear_marker(&rt.env, &release, &module.name)?;
    if rt.env.enable_service {
        enable_boot_service(rt);
    }
    Ok(())
}

fn enable_boot_service(rt: &mut Runtime<'_>) {
    let status = std::process::Command::new("systemctl")
        .args(["enable", "kpatch.service"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => rt.say("warning: 'systemctl enable kpatch.service' failed; installed patches are loaded at boot only if the service is enabled"),
        Err(_) => {} // no systemd: the system's own boot scripts must run 'kpatch load --all'
    }
}

/// `kpatch uninstall [--kernel-version R] <module>`.
pub fn uninstall(rt: &mut Runtime<'_>, spec: &str, release: Option<&str>) -> Result<()> {
    rt.env.require_root("uninstall")?;
    let release = release.unwrap_or(&rt.env.kernel_release).to_string();
    if spec.contains('/') {
        return Err(Error::BadModule {
            path: spec.into(),
            reason: "give the patch module's name, without a directory".into(),
        });
    }
    let found = find_installed(&rt.env, &release, spec)
        .ok_or_else(|| Error::NotInstalled(spec.to_string(), release.clone()))?;
    rt.say(format!("uninstalling {spec} ({release})"));
    fs::remove_file(&found.file).at(&found.file)?;
    clear_marker(&rt.env, &release, &found.name)?;
    // Remove the directories if they became empty; a non-empty one stays.
    let dir = rt.env.install_dir(&release);
    let _ = fs::remove_dir(&dir);
    let _ = fs::remove_dir(&rt.env.lib_dir);
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the epoch.
pub fn utc_time(secs: u64) -> String {
    let (year, month, day, h, m, s) = pathio::utc_civil(secs);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC")
}
