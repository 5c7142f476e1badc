//! Refusals: why a patch cannot be applied live. The phases that judge the patch's
//! content (the symbol comparison, the ftrace-hook check, the type check and
//! `verify_patchability`) add to one list, so that a run reports every blocker of a
//! patch, not only the first.

use serde::Serialize;

use crate::error::Error;
use crate::Report;

/// One reason the patch cannot be applied.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of problem: `type-layout`, `variable-size`, `object-size`,
    /// `init-code`, `exit-code`, `data-change`, `no-ftrace-hook`, ... (stable, for tools).
    pub kind: &'static str,
    /// What the message names: a type, a variable, a function or a section.
    pub subject: String,
    /// The whole explanation: what changed, why that cannot be applied, what to do.
    pub message: String,
}

impl Refusal {
    /// A refusal of `kind` naming `subject`.
    pub(crate) fn new(
        kind: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            kind,
            subject: subject.into(),
            message: message.into(),
        }
    }
}

/// The error value of a refused run: every refusal, and what the run found before.
#[derive(Debug, Default)]
pub struct Refused {
    /// Every reason, in the order the phases found them.
    pub refusals: Vec<Refusal>,
    /// The changed and new functions, explanations and type changes seen so far.
    pub report: Report,
    summary: String,
}

impl Refused {
    /// A refusal with only a message (a phase that stops the run where it is).
    pub(crate) fn one(msg: String) -> Refused {
        Refused {
            refusals: vec![Refusal::new("other", String::new(), msg.clone())],
            report: Report::default(),
            summary: msg,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

/// End a run that has refusals: one is the error message itself; several are each
/// printed as an `ERROR:` line through `print`, and the message counts them.
pub(crate) fn finish(refusals: Vec<Refusal>, report: Report, print: &dyn Fn(String)) -> Error {
    let summary = if refusals.len() == 1 {
        refusals[0].message.clone()
    } else {
        for r in &refusals {
            print(format!("ERROR: {}", r.message));
        }
        format!("{} unsupported changes (see above)", refusals.len())
    };
    Error::Unpatchable(Box::new(Refused {
        refusals,
        report,
        summary,
    }))
}

/// Add `r` unless a refusal of the same subject already says it (the same variable
/// found by the symbol comparison and by the type check).
pub(crate) fn push_unique(list: &mut Vec<Refusal>, r: Refusal) {
    let same = |a: &str, b: &str| !a.is_empty() && crate::names::mangled_eq(a, b);
    if list
        .iter()
        .any(|x| same(&x.subject, &r.subject) && x.kind != "other")
    {
        return;
    }
    list.push(r);
}
