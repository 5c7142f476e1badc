// SPDX-License-Identifier: GPL-2.0-only
//! State-machine and error-path tests against the fake kernel.

mod admin;
mod checks;
mod identity;
mod status;
mod transitions;

use std::fs;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::env::{Env, Runtime};
use crate::error::Result;
use crate::fake::{write_ko, FakeKernel, RELEASE};
use crate::load;

pub const SAMPLE: &str = "livepatch_sample";
pub const CMDLINE: &[(&str, u64)] = &[("cmdline_proc_show", 1)];

pub struct Bed {
    pub dir: TempDir,
    pub k: FakeKernel,
}

impl Bed {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let k = FakeKernel::new(dir.path());
        Bed { dir, k }
    }

    pub fn env(&self) -> Env {
        self.k.env.clone()
    }

    /// Runs `f` on a runtime over the fake tree; returns its result and output.
    pub fn run(&self, f: impl FnOnce(&mut Runtime<'_>) -> Result<()>) -> (Result<()>, String) {
        self.run_env(self.env(), f)
    }

    pub fn run_env(
        &self,
        env: Env,
        f: impl FnOnce(&mut Runtime<'_>) -> Result<()>,
    ) -> (Result<()>, String) {
        let mut out = Vec::new();
        let res = {
            let mut rt = Runtime::new(env, &self.k, &mut out);
            f(&mut rt)
        };
        (res, String::from_utf8(out).unwrap())
    }

    /// A sample livepatch module file outside the install directory.
    pub fn sample_ko(&self, name: &str, strings: &[&str]) -> PathBuf {
        let files = self.dir.path().join("files");
        fs::create_dir_all(&files).unwrap();
        write_ko(
            &files,
            &format!("{}.ko", name.replace('_', "-")),
            name,
            RELEASE,
            strings,
        )
    }

    pub fn patch_exists(&self, name: &str) -> bool {
        self.k.env.patch_dir(name).exists()
    }

    pub fn module_exists(&self, name: &str) -> bool {
        self.k.env.module_dir(name).exists()
    }
}

pub fn load_path(bed: &Bed, path: &std::path::Path) -> (Result<()>, String) {
    let p = path.to_string_lossy().into_owned();
    bed.run(|rt| load::load(rt, &p, &[]))
}
