// SPDX-License-Identifier: GPL-2.0-only
//! `kpatch verify MODULE` (run-pre matching): each function the module will replace,
//! read from the running kernel and compared with the code the module was built against
//! (recorded by kpatch-build in the module's `.kpatch.verify` section), after undoing
//! what the kernel rewrites at run time (`verify::live`). With the build-ids of the
//! patched objects (`identity`), this says whether the patch fits this kernel.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use verify::live::{self, FunctionCheck, Status};
use verify::record::Record;

use crate::env::Runtime;
use crate::error::{Error, IoContext, Result};
use crate::identity;
use crate::load::resolve;
use crate::modinfo::ModuleFile;

/// `kpatch verify`'s report.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub name: String,
    pub file: PathBuf,
    /// What the build said about its own verification (`kpatch_verify` in modinfo).
    pub built: Option<String>,
    pub identity: Vec<identity::Check>,
    pub functions: Vec<FunctionCheck>,
    /// No function differs, none is unreadable, no build-id differs.
    pub ok: bool,
    /// Milliseconds the check took.
    pub millis: u128,
}

/// Checks `spec` (a module file, or an installed patch's name) against the running
/// kernel.
pub fn verify(rt: &mut Runtime<'_>, spec: &str) -> Result<VerifyReport> {
    let start = std::time::Instant::now();
    rt.env.require_root("verify")?;
    let path = resolve(rt, spec)?;
    let module = ModuleFile::read(&path)?;
    let data = std::fs::read(&path).at(&path)?;
    let record = Record::from_module(&data)
        .map_err(|reason| Error::BadModule {
            path: path.clone(),
            reason,
        })?
        .ok_or_else(|| Error::BadModule {
            path: path.clone(),
            reason: "no run-pre record (.kpatch.verify): not built by this project's kpatch-build"
                .into(),
        })?;
    if record.release != rt.env.kernel_release {
        return Err(Error::WrongKernel {
            path,
            module: format!("'{}'", record.release),
            target: format!("'{}'", rt.env.kernel_release),
            wanted: "the running kernel",
        });
    }
    let identity = identity::check(&rt.env, &module);
    let mut l = live::Live::new(&rt.env.proc, &rt.env.sys, record.kernel_text);
    let functions = live::check(&mut l, &record);
    let ok = functions
        .iter()
        .all(|f| matches!(f.status, Status::Matches { .. } | Status::NotLoaded))
        && identity
            .iter()
            .all(|c| c.status != identity::Status::Differs);
    Ok(VerifyReport {
        name: module.name.clone(),
        file: path,
        built: module.modinfo.get("kpatch_verify").map(str::to_string),
        identity,
        functions,
        ok,
        millis: start.elapsed().as_millis(),
    })
}

impl VerifyReport {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}: the code it replaces, checked against the running kernel\n",
            self.name
        );
        if let Some(b) = self.built.as_deref().filter(|b| b.starts_with("skipped")) {
            let _ = writeln!(s, "  warning: built with --skip-verify ({b})");
        }
        for c in &self.identity {
            let _ = writeln!(s, "  {}", c.describe());
        }
        for f in &self.functions {
            let name = if f.sympos > 0 {
                format!("{}:{},{}", f.object, f.function, f.sympos)
            } else {
                format!("{}:{}", f.object, f.function)
            };
            match &f.status {
                Status::Matches { normalised, fields } => {
                    let _ = write!(s, "  {name}: matches");
                    let what: Vec<String> = normalised
                        .iter()
                        .map(|(k, n)| format!("{n} {} site(s)", live::kind_name(*k)))
                        .collect();
                    if !what.is_empty() {
                        let _ = write!(s, " (rewritten at run time: {})", what.join(", "));
                    }
                    let _ = writeln!(s, "; {fields} relocated field(s) checked");
                }
                Status::Differs {
                    offset,
                    expected,
                    running,
                    reason,
                } => {
                    let _ = writeln!(
                        s,
                        "  {name}: DIFFERS at +{offset:#x}: {reason}\n      expected: {expected}\n      running:  {running}"
                    );
                }
                Status::NotLoaded => {
                    let _ = writeln!(
                        s,
                        "  {name}: {} is not loaded; run this again once it is",
                        f.object
                    );
                }
                Status::Unreadable { error } => {
                    let _ = writeln!(s, "  {name}: cannot be checked: {error}");
                }
            }
        }
        let _ = writeln!(
            s,
            "{} ({} ms)",
            if self.ok {
                "result: the running code is the code this patch was built against"
            } else {
                "result: the running kernel is not what this patch was built against: do not load it"
            },
            self.millis
        );
        s
    }

    /// The error `kpatch verify` and `kpatch load --verify` fail with.
    pub fn failure(&self) -> Option<Error> {
        if self.ok {
            return None;
        }
        let bad: Vec<String> = self
            .functions
            .iter()
            .filter(|f| !matches!(f.status, Status::Matches { .. } | Status::NotLoaded))
            .map(|f| f.function.clone())
            .chain(
                self.identity
                    .iter()
                    .filter(|c| c.status == identity::Status::Differs)
                    .map(|c| format!("{} build-id", c.object)),
            )
            .collect();
        Some(Error::VerifyFailed {
            name: self.name.clone(),
            what: bad.join(", "),
        })
    }
}
