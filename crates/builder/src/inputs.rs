//! The proof that a cached original object is what the pristine tree builds now: the
//! content hash of every input kbuild lists for it in its `.cmd` file (the source, every
//! header, the `$(wildcard ...)` configuration files, objtool), of the build files that
//! decide its command line (Makefiles, `auto.conf`), and the flags kpatch-build adds.
//! An original object is reused only when all of them are unchanged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{io, step, Result};
use crate::journal::hash;

/// Build files that decide a unit's command line, besides its directory's Makefile.
const BUILD_FILES: &[&str] = &[
    "Makefile",
    "scripts/Makefile.build",
    "scripts/Makefile.lib",
    "arch/x86/Makefile",
    "include/config/auto.conf",
    "tools/objtool/objtool",
];

/// Content hashes of files, each read once.
pub struct Hasher {
    tree: PathBuf,
    /// Where the compiler runs: absolute paths outside `shared` (system headers) are
    /// read in this root.
    root: Option<(PathBuf, Vec<PathBuf>)>,
    seen: HashMap<String, Option<u64>>,
}

impl Hasher {
    /// Hashes of files of `tree` (paths relative to it, or absolute).
    pub fn new(tree: &Path) -> Hasher {
        Hasher {
            tree: tree.to_path_buf(),
            root: None,
            seen: HashMap::new(),
        }
    }

    /// Hashes of files as a compiler running in the build root `root` sees them: the
    /// directories of `shared` are mounted there at their own paths, every other absolute
    /// path (the compiler's own headers) is the root's.
    pub fn in_root(mut self, root: &Path, shared: &[&Path]) -> Hasher {
        let shared = shared.iter().map(|p| p.to_path_buf()).collect();
        self.root = Some((root.to_path_buf(), shared));
        self
    }

    fn locate(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        match &self.root {
            Some((root, shared)) if p.is_absolute() && !shared.iter().any(|s| p.starts_with(s)) => {
                root.join(p.strip_prefix("/").unwrap_or(p))
            }
            _ => self.tree.join(p),
        }
    }

    /// The file's content hash, `None` when it does not exist.
    pub fn hash(&mut self, path: &str) -> Option<u64> {
        if let Some(h) = self.seen.get(path) {
            return *h;
        }
        let h = std::fs::read(self.locate(path)).ok().map(|b| hash(&b));
        self.seen.insert(path.to_string(), h);
        h
    }
}

/// The inputs of one original object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// The flags kpatch-build adds (`KCFLAGS`, the include directory).
    pub flags: String,
    /// kbuild's command line for the object (for the log; the files below decide it).
    pub cmd: String,
    /// Every input with its content hash (`None`: it did not exist).
    pub files: Vec<(String, Option<u64>)>,
}

fn proof_path(cache: &Path, object: &Path) -> PathBuf {
    let mut p = cache.join(object).into_os_string();
    p.push(".inputs.json");
    PathBuf::from(p)
}

/// `fs/proc/meminfo.o` → `fs/proc/.meminfo.o.cmd`.
fn cmd_file(object: &Path) -> PathBuf {
    let name = object
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    object.with_file_name(format!(".{name}.cmd"))
}

/// The command line and the dependencies listed in a `.cmd` file.
fn parse_cmd(text: &str) -> (String, Vec<String>) {
    let mut cmd = String::new();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        if let Some((lhs, rhs)) = line.split_once(" := ") {
            // `cmd_` up to 6.1, `savedcmd_` from 6.3 on.
            if lhs.starts_with("cmd_") || lhs.starts_with("savedcmd_") {
                cmd = rhs.to_string();
            } else if lhs.starts_with("source_") {
                deps.push(rhs.trim().to_string());
            }
            in_deps = lhs.starts_with("deps_");
            continue;
        }
        if !in_deps {
            continue;
        }
        let item = line.trim().trim_end_matches('\\').trim();
        if item.is_empty() {
            in_deps = false;
            continue;
        }
        let item = item
            .strip_prefix("$(wildcard ")
            .and_then(|w| w.strip_suffix(')'))
            .unwrap_or(item);
        deps.push(item.to_string());
    }
    (cmd, deps)
}

fn flags(include: &Path) -> String {
    format!(
        "KCFLAGS={} -I{}",
        super::pipeline::KCFLAGS,
        include.display()
    )
}

fn build_files(object: &Path) -> Vec<String> {
    let dir = object.parent().unwrap_or(Path::new(""));
    let mut files: Vec<String> = BUILD_FILES.iter().map(|s| s.to_string()).collect();
    for f in ["Makefile", "Kbuild"] {
        files.push(dir.join(f).display().to_string());
    }
    files
}

impl Inputs {
    /// Read the inputs of `object` (relative to the tree) just built with `include` on
    /// its include path.
    pub fn record(h: &mut Hasher, object: &Path, include: &Path) -> Result<Inputs> {
        let cmd_path = h.tree.join(cmd_file(object));
        let text = std::fs::read_to_string(&cmd_path).map_err(io(&cmd_path))?;
        let (cmd, deps) = parse_cmd(&text);
        if cmd.is_empty() || deps.is_empty() {
            return Err(step(format!(
                "{}: no command line or dependencies in it",
                cmd_path.display()
            )));
        }
        let mut files = Vec::with_capacity(deps.len() + BUILD_FILES.len() + 2);
        for f in deps.into_iter().chain(build_files(object)) {
            if !files.iter().any(|(p, _)| *p == f) {
                let v = h.hash(&f);
                files.push((f, v));
            }
        }
        Ok(Inputs {
            flags: flags(include),
            cmd,
            files,
        })
    }

    /// The inputs saved beside a cached object, if any (an unreadable proof is none).
    pub fn load(cache: &Path, object: &Path) -> Option<Inputs> {
        let text = std::fs::read(proof_path(cache, object)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Save beside the cached object.
    pub fn save(&self, cache: &Path, object: &Path) -> Result<()> {
        let path = proof_path(cache, object);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let text =
            serde_json::to_vec(self).map_err(|e| step(format!("{}: {e}", path.display())))?;
        crate::journal::write_synced(&path, &text, None)
    }

    /// What differs now (`None`: nothing, the object can be reused).
    pub fn first_change(&self, h: &mut Hasher, object: &Path, include: &Path) -> Option<String> {
        if self.flags != flags(include) {
            return Some("kpatch-build's flags changed".into());
        }
        let listed: Vec<&str> = self.files.iter().map(|(p, _)| p.as_str()).collect();
        if let Some(f) = build_files(object)
            .iter()
            .find(|f| !listed.contains(&f.as_str()))
        {
            return Some(format!("{f} is not in its recorded inputs"));
        }
        self.files
            .iter()
            .find(|(p, v)| h.hash(p) != *v)
            .map(|(p, _)| format!("{p} changed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = "cmd_fs/x.o := gcc -c -o fs/x.o fs/x.c\n\nsource_fs/x.o := fs/x.c\n\n\
        deps_fs/x.o := \\\n  include/a.h \\\n    $(wildcard include/config/FOO) \\\n  include/b.h \\\n\n\
        fs/x.o: $(deps_fs/x.o)\n\n$(deps_fs/x.o):\n";

    #[test]
    fn cmd_files() {
        let (cmd, deps) = parse_cmd(CMD);
        assert_eq!(cmd, "gcc -c -o fs/x.o fs/x.c");
        assert_eq!(
            deps,
            ["fs/x.c", "include/a.h", "include/config/FOO", "include/b.h"]
        );
        let (cmd, deps) = parse_cmd(&CMD.replace("cmd_fs", "savedcmd_fs"));
        assert_eq!(cmd, "gcc -c -o fs/x.o fs/x.c");
        assert_eq!(deps.len(), 4);
    }

    #[test]
    fn any_changed_input_invalidates() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path();
        std::fs::create_dir_all(t.join("fs")).unwrap();
        std::fs::create_dir_all(t.join("include")).unwrap();
        std::fs::write(t.join("fs/.x.o.cmd"), CMD).unwrap();
        for (f, c) in [
            ("fs/x.c", "int x;"),
            ("include/a.h", "a"),
            ("include/b.h", "b"),
            ("Makefile", "m"),
        ] {
            std::fs::write(t.join(f), c).unwrap();
        }
        let inc = Path::new("/inc");
        let obj = Path::new("fs/x.o");
        let rec = Inputs::record(&mut Hasher::new(t), obj, inc).unwrap();
        let cache = t.join("cache");
        rec.save(&cache, obj).unwrap();
        let loaded = Inputs::load(&cache, obj).unwrap();
        assert_eq!(loaded, rec);
        assert_eq!(loaded.first_change(&mut Hasher::new(t), obj, inc), None);
        assert!(loaded
            .first_change(&mut Hasher::new(t), obj, Path::new("/other"))
            .is_some());
        // A header, a config file appearing, a Makefile: each counts.
        std::fs::write(t.join("include/b.h"), "b2").unwrap();
        assert_eq!(
            loaded
                .first_change(&mut Hasher::new(t), obj, inc)
                .as_deref(),
            Some("include/b.h changed")
        );
        std::fs::write(t.join("include/b.h"), "b").unwrap();
        std::fs::create_dir_all(t.join("include/config")).unwrap();
        std::fs::write(t.join("include/config/FOO"), "").unwrap();
        assert!(loaded.first_change(&mut Hasher::new(t), obj, inc).is_some());
        std::fs::remove_file(t.join("include/config/FOO")).unwrap();
        std::fs::write(t.join("fs/Makefile"), "obj-y += x.o").unwrap();
        assert!(loaded.first_change(&mut Hasher::new(t), obj, inc).is_some());
    }

    #[test]
    fn system_headers_are_read_in_the_build_root() {
        let d = tempfile::tempdir().unwrap();
        let (root, shared) = (d.path().join("root"), d.path().join("cache"));
        let sys = root.join("usr/lib/gcc/x/14/include");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(shared.join("include")).unwrap();
        std::fs::write(sys.join("stddef.h"), "in the root").unwrap();
        std::fs::write(shared.join("include/kpatch-macros.h"), "shared").unwrap();
        let mut h = Hasher::new(&shared).in_root(&root, &[shared.as_path()]);
        assert_eq!(
            h.hash("/usr/lib/gcc/x/14/include/stddef.h"),
            Some(hash(b"in the root"))
        );
        let own = shared.join("include/kpatch-macros.h");
        assert_eq!(h.hash(&own.display().to_string()), Some(hash(b"shared")));
        assert_eq!(h.hash("include/kpatch-macros.h"), Some(hash(b"shared")));
    }
}
