// SPDX-License-Identifier: GPL-2.0-only
//! A fake kernel for the tests: a sysfs/procfs tree in a temporary
//! directory, and a [`Kernel`] that edits it the way the livepatch core
//! would (creating patch directories on load, reversing transitions, freeing
//! disabled patches, refusing to delete modules in use).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use object::write::Object;
use object::{Architecture, BinaryFormat, Endianness, SectionKind};

use crate::env::{Env, Timeouts};
use crate::kernel::Kernel;
use crate::kmsg::KernelLog;

pub const RELEASE: &str = "6.1.0-18-amd64";

/// How a fake patch's transitions behave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Every transition finishes at once.
    #[default]
    Completes,
    /// The patching transition never finishes; its reversal does.
    Stalls,
    /// The patching transition finishes once a task is interrupted.
    CompletesOnInterrupt,
    /// Neither the patching transition nor its reversal finishes.
    ReverseStalls,
    /// Patching finishes; the unpatching transition never does.
    DisableStalls,
}

/// What the fake kernel creates when a module is loaded.
#[derive(Debug, Clone, Default)]
pub struct FakePatch {
    /// `(object, [(function, sympos)])`.
    pub objects: Vec<(String, Vec<(String, u64)>)>,
    pub replace: bool,
    pub behaviour: Behaviour,
    /// `finit_module` fails with this errno.
    pub load_errno: Option<i32>,
    /// The module loads but registers no patch.
    pub no_patch: bool,
    /// What the kernel logs when the load fails.
    pub load_log: Vec<String>,
}

pub struct FakeKernel {
    pub env: Env,
    pub patches: RefCell<HashMap<String, FakePatch>>,
    /// Every call, in order: `load X`, `delete X`, `write <path relative to root>=V`, `interrupt T`.
    pub log: RefCell<Vec<String>>,
    /// For each load: whether the interrupted-load marker existed at that moment.
    pub marker_seen_at_load: RefCell<Vec<bool>>,
    /// Kernel log messages not yet read by a [`KernelLog`] reader.
    kmsg: std::rc::Rc<RefCell<Vec<String>>>,
    root: PathBuf,
}

/// A fake system in `root`: `sys/kernel/livepatch`, `sys/module`, `proc`.
pub fn fake_env(root: &Path) -> Env {
    let mut env = Env::rooted(root, RELEASE);
    env.timeouts = Timeouts {
        enable_wait: Duration::from_millis(60),
        signal_wait: Duration::from_millis(60),
        refcount_wait: Duration::from_millis(60),
        poll: Duration::from_millis(5),
    };
    fs::create_dir_all(env.livepatch_dir()).unwrap();
    fs::create_dir_all(env.sys.join("module")).unwrap();
    fs::create_dir_all(&env.proc).unwrap();
    fs::write(env.proc.join("modules"), "").unwrap();
    env
}

pub fn put(path: &Path, value: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, value).unwrap();
}

/// Adds a task to the fake procfs. (One argument per procfs file keeps the
/// test cases readable on one line.)
#[allow(clippy::too_many_arguments)]
pub fn add_task(
    env: &Env,
    pid: u32,
    tid: u32,
    comm: &str,
    state: char,
    kthread: bool,
    stack: &str,
    patch_state: i32,
) {
    let dir = env.proc.join(format!("{pid}/task/{tid}"));
    let flags = if kthread { 0x0020_8040u64 } else { 0x0040_0100 };
    put(&dir.join("comm"), &format!("{comm}\n"));
    put(
        &dir.join("stat"),
        &format!("{tid} ({comm}) {state} 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0\n"),
    );
    put(&dir.join("stack"), stack);
    put(&dir.join("patch_state"), &format!("{patch_state}\n"));
}

/// A minimal relocatable ELF with a `.modinfo` section and the given strings
/// in `.rodata.str1.1`, as a kernel module has.
pub fn build_ko(modinfo: &[(&str, &str)], strings: &[&str]) -> Vec<u8> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let mut info = Vec::new();
    for (k, v) in modinfo {
        info.extend_from_slice(format!("{k}={v}").as_bytes());
        info.push(0);
    }
    let sec = obj.add_section(Vec::new(), b".modinfo".to_vec(), SectionKind::ReadOnlyData);
    obj.append_section_data(sec, &info, 1);
    let mut strs = Vec::new();
    for s in strings {
        strs.extend_from_slice(s.as_bytes());
        strs.push(0);
    }
    let sec = obj.add_section(
        Vec::new(),
        b".rodata.str1.1".to_vec(),
        SectionKind::ReadOnlyString,
    );
    obj.append_section_data(sec, &strs, 1);
    obj.write().unwrap()
}

/// Writes a livepatch module `name` built for `release` into `dir`.
pub fn write_ko(dir: &Path, file: &str, name: &str, release: &str, strings: &[&str]) -> PathBuf {
    let vermagic = format!("{release} SMP preempt mod_unload modversions ");
    let data = build_ko(
        &[
            ("livepatch", "Y"),
            ("license", "GPL"),
            ("depends", ""),
            ("name", name),
            ("vermagic", &vermagic),
        ],
        strings,
    );
    let path = dir.join(file);
    fs::write(&path, data).unwrap();
    path
}

impl FakeKernel {
    pub fn new(root: &Path) -> Self {
        FakeKernel {
            env: fake_env(root),
            patches: RefCell::new(HashMap::new()),
            log: RefCell::new(Vec::new()),
            marker_seen_at_load: RefCell::new(Vec::new()),
            kmsg: Default::default(),
            root: root.to_path_buf(),
        }
    }

    /// Declares what loading module `name` does.
    pub fn define(
        &self,
        name: &str,
        objects: &[(&str, &[(&str, u64)])],
        behaviour: Behaviour,
        replace: bool,
    ) {
        let objects = objects
            .iter()
            .map(|(o, fs)| {
                (
                    o.to_string(),
                    fs.iter().map(|(f, p)| (f.to_string(), *p)).collect(),
                )
            })
            .collect();
        self.patches.borrow_mut().insert(
            name.to_string(),
            FakePatch {
                objects,
                replace,
                behaviour,
                load_errno: None,
                no_patch: false,
                load_log: Vec::new(),
            },
        );
    }

    pub fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    fn behaviour(&self, name: &str) -> Behaviour {
        self.patches
            .borrow()
            .get(name)
            .map(|p| p.behaviour)
            .unwrap_or_default()
    }

    fn attr(&self, patch: &str, attr: &str) -> String {
        fs::read_to_string(self.env.patch_dir(patch).join(attr))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    fn set_all_tasks(&self, value: i32) {
        for e in fs::read_dir(&self.env.proc).unwrap().flatten() {
            let tasks = e.path().join("task");
            for t in fs::read_dir(&tasks).into_iter().flatten().flatten() {
                let _ = fs::write(t.path().join("patch_state"), format!("{value}\n"));
            }
        }
    }

    /// The patching transition of `name` ends.
    fn finish_enable(&self, name: &str) {
        put(&self.env.patch_dir(name).join("transition"), "0\n");
        self.set_all_tasks(-1);
        let replace = self.patches.borrow().get(name).is_some_and(|p| p.replace);
        if replace {
            for other in crate::sysfs::patch_names(&self.env) {
                if other != name {
                    self.free_patch(&other);
                }
            }
        }
    }

    /// A disabled (or replaced) patch is freed: its directory goes and its
    /// module reference is dropped.
    fn free_patch(&self, name: &str) {
        let _ = fs::remove_dir_all(self.env.patch_dir(name));
        put(&self.env.module_dir(name).join("refcnt"), "0\n");
        self.set_all_tasks(-1);
    }

    fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

impl Kernel for FakeKernel {
    fn load_module(&self, _file: &File, name: &str, params: &str) -> io::Result<()> {
        let line = if params.is_empty() {
            format!("load {name}")
        } else {
            format!("load {name} {params}")
        };
        self.log.borrow_mut().push(line);
        let marker = crate::install::marker_path(&self.env, RELEASE, name);
        self.marker_seen_at_load.borrow_mut().push(marker.exists());
        let spec = self.patches.borrow().get(name).cloned().unwrap_or_default();
        if let Some(errno) = spec.load_errno {
            self.kmsg.borrow_mut().extend(spec.load_log.iter().cloned());
            return Err(io::Error::from_raw_os_error(errno));
        }
        if self.env.module_dir(name).exists() {
            return Err(io::Error::from_raw_os_error(17));
        }
        let m = self.env.module_dir(name);
        put(&m.join("refcnt"), "1\n");
        put(&m.join("taint"), "K\n");
        let modules = self.env.proc.join("modules");
        let old = fs::read_to_string(&modules).unwrap_or_default();
        fs::write(&modules, format!("{name} 16384 1 - Live 0x0 (K)\n{old}"))?;

        if spec.no_patch {
            put(&m.join("refcnt"), "0\n");
            return Ok(());
        }
        let dir = self.env.patch_dir(name);
        let stalls =
            spec.behaviour != Behaviour::Completes && spec.behaviour != Behaviour::DisableStalls;
        put(&dir.join("enabled"), "1\n");
        put(&dir.join("transition"), if stalls { "1\n" } else { "0\n" });
        put(&dir.join("force"), "");
        for (obj, funcs) in &spec.objects {
            put(&dir.join(obj).join("patched"), "1\n");
            for (f, pos) in funcs {
                fs::create_dir_all(dir.join(obj).join(format!("{f},{pos}")))?;
            }
        }
        if !stalls {
            self.finish_enable(name);
        }
        Ok(())
    }

    fn delete_module(&self, name: &str) -> io::Result<()> {
        self.log.borrow_mut().push(format!("delete {name}"));
        let m = self.env.module_dir(name);
        if !m.exists() {
            return Err(io::Error::from_raw_os_error(2));
        }
        if fs::read_to_string(m.join("refcnt"))
            .unwrap_or_default()
            .trim()
            != "0"
        {
            return Err(io::Error::from_raw_os_error(11));
        }
        fs::remove_dir_all(&m)?;
        let modules = self.env.proc.join("modules");
        let kept: String = fs::read_to_string(&modules)?
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(name))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&modules, kept)
    }

    fn write_attr(&self, path: &Path, value: &str) -> io::Result<()> {
        self.log
            .borrow_mut()
            .push(format!("write {}={value}", self.rel(path)));
        let attr = path.file_name().unwrap().to_string_lossy().into_owned();
        let patch = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !path.exists() {
            return Err(io::Error::from_raw_os_error(2));
        }
        let behaviour = self.behaviour(&patch);
        let in_transition = self.attr(&patch, "transition") == "1";
        match (attr.as_str(), value) {
            ("enabled", "0") => {
                put(path, "0\n");
                if in_transition {
                    // Reversal of a patching transition.
                    if behaviour == Behaviour::ReverseStalls {
                        return Ok(());
                    }
                    self.free_patch(&patch);
                } else if behaviour == Behaviour::DisableStalls {
                    put(&self.env.patch_dir(&patch).join("transition"), "1\n");
                } else {
                    self.free_patch(&patch);
                }
            }
            ("enabled", "1") => {
                put(path, "1\n");
                // Reversal of an unpatching transition: back to patched at once.
                put(&self.env.patch_dir(&patch).join("transition"), "0\n");
                self.set_all_tasks(-1);
            }
            ("force", "1") => {
                put(&self.env.patch_dir(&patch).join("transition"), "0\n");
                self.set_all_tasks(-1);
            }
            _ => put(path, value),
        }
        Ok(())
    }

    fn interrupt_task(&self, tid: u32) -> io::Result<bool> {
        self.log.borrow_mut().push(format!("interrupt {tid}"));
        if let Some(p) = crate::sysfs::transition_patch(&self.env) {
            if self.behaviour(&p.name) == Behaviour::CompletesOnInterrupt {
                self.finish_enable(&p.name);
            }
        }
        Ok(true)
    }

    fn kernel_log(&self) -> Option<Box<dyn KernelLog>> {
        self.kmsg.borrow_mut().clear();
        Some(Box::new(FakeLog(self.kmsg.clone())))
    }
}

/// Reads (and drains) the fake kernel's log.
struct FakeLog(std::rc::Rc<RefCell<Vec<String>>>);

impl KernelLog for FakeLog {
    fn new_messages(&mut self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}
