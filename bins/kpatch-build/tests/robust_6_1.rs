//! kpatch-build's one promise, on Debian 12's real 6.1 tree: a module is either right or
//! not written, and the prepared tree is never left changed.
//!
//! - SIGINT during apply, during compile and during the module link each leave the tree
//!   byte-identical to Debian's source (compared with the files of the `linux-source`
//!   package itself), and the next build makes the same module as an uninterrupted one;
//! - a SIGKILL'd build is recovered from its journal by the next one, which also stops
//!   the children the killed build left running;
//! - a patch that deletes a built file, and one whose `---`/`+++` name two files, are
//!   refused, and the build after them carries nothing of them;
//! - odd patches and arguments are refused precisely, before any work.
//!
//! The builds run in a scratch cache (`<cache>/.robust-test`, the downloaded packages
//! hard-linked from the main cache `$KPATCH_CACHE` or `~/.kpatch`), never in the shared
//! one: these tests leave trees dirty on purpose. The scratch cache is kept for the next
//! run (the first run prepares its tree, about a minute).
//!
//! `soak_builds_some_killed_6_1` builds two patches alternately `KPATCH_SOAK_BUILDS` times
//! (default 6, about 3 minutes; 50 took about 25 minutes on the loaded 2-core machine), kills
//! one build in five at random moments (at least two), checks every completed module, the
//! tree at the end, and three modules in the guest.

mod common;
mod robust_support;

use std::path::{Path, PathBuf};

use testbed::KernelSeries;

use robust_support::*;

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sigint_during_apply_compile_and_link_leaves_the_tree_pristine_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let p = patch("two-files");
    let reference = s.build(&p, "two-ref", out.path(), &[]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);
    s.assert_pristine("after an ordinary build");

    // During apply: paused after the first of the two files is written.
    let r = s.spawn(&p, "two", out.path(), &[("KPATCH_BUILD_PAUSE", "apply")]);
    r.wait_stderr("paused at apply", 10 * MINUTE);
    assert!(
        s.dirty(),
        "the pause is not inside the apply: nothing is patched"
    );
    r.signal("INT");
    let (code, err) = r.finish();
    check_interrupted(s, code, &err, out.path(), "SIGINT during apply");

    // During compile: gcc is compiling the patched objects.
    let r = s.spawn(&p, "two", out.path(), &[]);
    r.wait_stderr("build original objects", 10 * MINUTE);
    r.wait_descendant(&["cc1"], 10 * MINUTE);
    assert!(s.dirty(), "cc1 runs while the tree is not patched");
    r.signal("INT");
    let (code, err) = r.finish();
    check_interrupted(s, code, &err, out.path(), "SIGINT during compile");

    // During the module link: kbuild builds the patch module.
    let r = s.spawn(&p, "two", out.path(), &[]);
    r.wait_stderr("diff objects", 10 * MINUTE);
    r.wait_descendant(&["cc1", "ld", "modpost"], 10 * MINUTE);
    r.signal("INT");
    let (code, err) = r.finish();
    check_interrupted(s, code, &err, out.path(), "SIGINT during the module link");

    let again = s.build(&p, "two-ref", out.path(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.functions(), reference.functions());
    assert!(
        again.functions().contains("cmdline_proc_show")
            && again.functions().contains("meminfo_proc_show")
    );
    same_module(
        reference.module.as_ref().unwrap(),
        again.module.as_ref().unwrap(),
        "after the interruptions",
    );
    s.assert_pristine("after the last build");
}

fn check_interrupted(s: &Scratch, code: i32, stderr: &str, out: &Path, when: &str) {
    assert_eq!(code, 130, "{when}: exit status\n{stderr}");
    assert!(
        stderr.contains("interrupted by SIGINT") && stderr.contains("restored"),
        "{when}:\n{stderr}"
    );
    assert!(
        !out.join("livepatch-two.ko").exists(),
        "{when}: a module was written"
    );
    assert!(
        !s.work("two").exists(),
        "{when}: the work directory is left"
    );
    s.assert_pristine(when);
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn sigkill_is_recovered_by_the_next_build_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let p = patch("two-files");
    let reference = s.build(&p, "kill-ref", out.path(), &[]);
    assert_eq!(reference.code, 0, "{}", reference.stderr);

    // Killed half way through the apply: the tree stays half patched, with the journal.
    let r = s.spawn(
        &p,
        "kill-ref",
        out.path(),
        &[("KPATCH_BUILD_PAUSE", "apply")],
    );
    r.wait_stderr("paused at apply", 10 * MINUTE);
    r.signal("KILL");
    let (code, _) = r.finish();
    assert_eq!(code, -1);
    assert!(
        s.dirty(),
        "a SIGKILL'd build cannot clean up: the tree should be patched"
    );
    let next = s.build(&p, "kill-ref", out.path(), &[]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr.contains("an earlier build was interrupted"),
        "{}",
        next.stderr
    );
    same_module(
        reference.module.as_ref().unwrap(),
        next.module.as_ref().unwrap(),
        "after SIGKILL during apply",
    );
    s.assert_pristine("after recovering from SIGKILL during apply");

    // Killed while compiling 25 objects (--all-includers: the impact analysis would
    // rebuild none for a comment): its make goes on, orphaned, writing in the tree. The
    // next build stops it before it touches the tree.
    let slow = patch("internal-comment");
    let r = s.spawn_with(&slow, "slow", out.path(), &[], &["--all-includers"]);
    r.wait_descendant(&["cc1"], 10 * MINUTE);
    let make = r.wait_descendant(&["make"], MINUTE);
    r.signal("KILL");
    r.finish();
    assert!(alive(make), "the orphaned make is gone already");
    let next = s.build(&p, "kill-ref", out.path(), &[]);
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr.contains("stopped 1 process group"),
        "{}",
        next.stderr
    );
    assert!(!alive(make), "the orphaned make still runs");
    same_module(
        reference.module.as_ref().unwrap(),
        next.module.as_ref().unwrap(),
        "after SIGKILL during compile",
    );
    s.assert_pristine("after recovering from SIGKILL during compile");
}

/// A patch deleting fs/proc/meminfo.c (git's format, generated from the real file).
fn delete_patch(s: &Scratch, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(s.debian.join("fs/proc/meminfo.c")).unwrap();
    let n = text.lines().count();
    let mut p = format!(
        "diff --git a/fs/proc/meminfo.c b/fs/proc/meminfo.c\ndeleted file mode 100644\nindex 1111111..0000000\n\
         --- a/fs/proc/meminfo.c\n+++ /dev/null\n@@ -1,{n} +0,0 @@\n"
    );
    for l in text.lines() {
        p.push_str(&format!("-{l}\n"));
    }
    let path = dir.join("delete-meminfo.patch");
    std::fs::write(&path, p).unwrap();
    path
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn deleting_or_mismatched_patches_never_yield_a_stale_module_6_1() {
    let kernel = testbed::test_kernel(KernelSeries::V6_1);
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let s = scratch(&kernel);
    let out = tempfile::tempdir().unwrap();
    let cmdline = s.build(&patch("cmdline"), "cmdline", out.path(), &[]);
    assert_eq!(cmdline.code, 0, "{}", cmdline.stderr);
    let first = cmdline.module.clone().unwrap();
    let kept = out.path().join("first.ko");
    std::fs::rename(&first, &kept).unwrap();

    // A change to meminfo.c first (the stale object of the issue came from here), with
    // a Latin-1 commit message and a hunk 28 lines off.
    let meminfo = s.build(&patch("meminfo-offset-latin1"), "meminfo", out.path(), &[]);
    assert_eq!(meminfo.code, 0, "{}", meminfo.stderr);
    assert!(
        meminfo
            .stderr
            .contains("fs/proc/meminfo.c: hunk #1 applied at line 128 (offset 28 line(s))"),
        "{}",
        meminfo.stderr
    );

    let del = s.build(&delete_patch(s, out.path()), "delete", out.path(), &[]);
    assert_eq!(del.code, 1, "{}", del.stderr);
    assert!(
        del.stderr
            .contains("fs/proc/meminfo.c: the patch deletes this file")
            && del.stderr.contains("fs/proc/meminfo.o"),
        "{}",
        del.stderr
    );
    assert!(del.module.is_none());
    s.assert_pristine("after the deleting patch");

    let mis = s.build(&patch("mismatched-header"), "mismatched", out.path(), &[]);
    assert_eq!(mis.code, 1, "{}", mis.stderr);
    assert!(
        mis.stderr.contains("fs/proc/meminfo.c")
            && mis.stderr.contains("fs/proc/cmdline.c")
            && mis.stderr.contains("both exist"),
        "{}",
        mis.stderr
    );
    assert!(mis.module.is_none());
    s.assert_pristine("after the mismatched patch");

    let again = s.build(&patch("cmdline"), "cmdline", out.path(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.functions(), cmdline.functions());
    assert!(
        !again.functions().contains("meminfo"),
        "{}",
        again.functions()
    );
    same_module(
        &kept,
        again.module.as_ref().unwrap(),
        "after the refused patches",
    );
}
