//! Patch reading and planning against small trees: ordinary, odd and malformed patches.

use std::path::{Path, PathBuf};

use super::*;

const MEMINFO: &str = "one\ntwo\nthree\nfour\nfive\nsix\nseven\n";

/// A tree with `fs/a.c` (MEMINFO), `fs/b.c`, `fs/Makefile`.
fn tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("fs")).unwrap();
    std::fs::write(d.path().join("fs/a.c"), MEMINFO).unwrap();
    std::fs::write(d.path().join("fs/b.c"), "bee\n").unwrap();
    std::fs::write(d.path().join("fs/Makefile"), "obj-y += a.o b.o\n").unwrap();
    d
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    r.unwrap_err().to_string()
}

fn plan_of(tree: &Path, text: &[u8]) -> Result<Plan> {
    plan(&parse(text)?, tree, false)
}

fn written(plan: &Plan, path: &str) -> Option<String> {
    plan.writes
        .iter()
        .find(|(p, _)| p == Path::new(path))
        .unwrap_or_else(|| panic!("{path} not written: {:?}", plan.writes))
        .1
        .as_ref()
        .map(|b| String::from_utf8(b.clone()).unwrap())
}

const GIT: &str =
    "From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] fix\n\n---\n fs/a.c | 2 +-\n\n\
diff --git a/fs/a.c b/fs/a.c\nindex 1111111..2222222 100644\n--- a/fs/a.c\n+++ b/fs/a.c\n\
@@ -2,3 +2,3 @@\n two\n-three\n+THREE\n four\n-- \n2.39.5\n\n";

#[test]
fn git_format_patch() {
    let t = tree();
    let p = parse(GIT.as_bytes()).unwrap();
    assert_eq!(p.files.len(), 1);
    assert_eq!(p.files[0].path(), Path::new("fs/a.c"));
    let plan = plan_of(t.path(), GIT.as_bytes()).unwrap();
    assert_eq!(plan.files[0].change, Change::Modify);
    assert_eq!(
        written(&plan, "fs/a.c").unwrap(),
        MEMINFO.replace("three", "THREE")
    );
    // Planning touches nothing.
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/a.c")).unwrap(),
        MEMINFO
    );
}

#[test]
fn latin1_commentary_and_crlf() {
    let t = tree();
    let mut latin1 = b"Subject: caf\xe9 na\xefve\n\n".to_vec();
    latin1.extend_from_slice(GIT.as_bytes());
    assert!(plan_of(t.path(), &latin1).is_ok());
    let crlf = GIT.replace('\n', "\r\n");
    let plan = plan_of(t.path(), crlf.as_bytes()).unwrap();
    assert_eq!(
        written(&plan, "fs/a.c").unwrap(),
        MEMINFO.replace("three", "THREE")
    );
}

#[test]
fn quoted_paths_and_timestamps() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("fs")).unwrap();
    std::fs::write(d.path().join("fs/sp ace\u{e9}.c"), "x\n").unwrap();
    let p = "diff --git \"a/fs/sp ace\\303\\251.c\" \"b/fs/sp ace\\303\\251.c\"\n\
             --- \"a/fs/sp ace\\303\\251.c\"\n+++ \"b/fs/sp ace\\303\\251.c\"\n@@ -1 +1 @@\n-x\n+y\n";
    let plan = plan_of(d.path(), p.as_bytes()).unwrap();
    assert_eq!(plan.files[0].path, PathBuf::from("fs/sp ace\u{e9}.c"));
    let p = "--- a/fs/a.c\t2026-01-01 10:00:00.000000000 +0100\n+++ b/fs/a.c\t2026-01-02 10:00:00.000000000 +0100\n\
             @@ -1,2 +1,2 @@\n-one\n+ONE\n two\n";
    let t = tree();
    assert!(written(&plan_of(t.path(), p.as_bytes()).unwrap(), "fs/a.c")
        .unwrap()
        .starts_with("ONE\n"));
}

#[test]
fn not_a_patch() {
    let e = err(parse(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0"));
    assert!(e.contains("not a patch") && e.contains("binary"), "{e}");
    let e = err(parse(b"just some text\nwith lines\n"));
    assert!(e.contains("not a patch") && !e.contains("binary"), "{e}");
    assert!(err(parse(b"")).contains("empty"));
    let e = err(parse(b"*** a/fs/a.c\n--- b/fs/a.c\n***************\n"));
    assert!(e.contains("context diff"), "{e}");
    let e = err(parse(b"some text\n@@ -1 +1 @@\n-a\n+b\n"));
    assert!(
        e.contains("line 2") && e.contains("without a file header"),
        "{e}"
    );
}

#[test]
fn malformed_hunks_name_the_line() {
    let e = err(parse(
        b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n",
    ));
    assert!(e.contains("line 3") && e.contains("truncated"), "{e}");
    let e = err(parse(
        b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,2 +1,2 @@\n one\n*two\n+TWO\n",
    ));
    assert!(e.contains("line 5") && e.contains("malformed hunk"), "{e}");
    let e = err(parse(
        b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,1 +1,1 @@\n-one\n-two\n+TWO\n",
    ));
    assert!(
        e.contains("line 5") && e.contains("more lines than its header"),
        "{e}"
    );
    let e = err(parse(b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -x +1 @@\n"));
    assert!(e.contains("malformed hunk header"), "{e}");
}

#[test]
fn unusable_paths() {
    let e = err(parse(
        b"--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
    ));
    assert!(e.contains("inside the kernel tree"), "{e}");
    let e = err(parse(b"--- a//etc/x\n+++ b//etc/x\n@@ -1 +1 @@\n-a\n+b\n"));
    assert!(e.contains("inside the kernel tree"), "{e}");
    let e = err(parse(b"--- a.c\n+++ a.c\n@@ -1 +1 @@\n-a\n+b\n"));
    assert!(
        e.contains("no leading directory") && e.contains("-p1"),
        "{e}"
    );
}

#[test]
fn mismatched_headers() {
    let t = tree();
    // Both exist: refused, both named.
    let both = b"--- a/fs/a.c\n+++ b/fs/b.c\n@@ -1 +1 @@\n-one\n+ONE\n";
    let e = err(plan_of(t.path(), both));
    assert!(
        e.contains("fs/a.c") && e.contains("fs/b.c") && e.contains("both exist"),
        "{e}"
    );
    // Only the old one exists (a .orig-style new name): it is the one changed.
    let one = b"--- a/fs/a.c\n+++ b/fs/a.c.new\n@@ -1 +1 @@\n-one\n+ONE\n";
    let plan = plan_of(t.path(), one).unwrap();
    assert_eq!(plan.writes.len(), 1);
    assert!(written(&plan, "fs/a.c").unwrap().starts_with("ONE"));
    let none = b"--- a/fs/x.c\n+++ b/fs/y.c\n@@ -1 +1 @@\n-one\n+ONE\n";
    assert!(err(plan_of(t.path(), none)).contains("fs/x.c"));
}

#[test]
fn missing_file_is_named() {
    let t = tree();
    let e = err(plan_of(
        t.path(),
        b"--- a/fs/gone.c\n+++ b/fs/gone.c\n@@ -1 +1 @@\n-a\n+b\n",
    ));
    assert!(
        e.contains("fs/gone.c") && e.contains("no such file") && e.contains("line 1"),
        "{e}"
    );
}

#[test]
fn new_and_deleted_files() {
    let t = tree();
    let new = b"diff --git a/fs/new.h b/fs/new.h\nnew file mode 100644\nindex 0000000..1111111\n\
                --- /dev/null\n+++ b/fs/new.h\n@@ -0,0 +1,2 @@\n+#define X 1\n+#define Y 2\n";
    let plan = plan_of(t.path(), new).unwrap();
    assert_eq!(plan.files[0].change, Change::Create);
    assert_eq!(
        written(&plan, "fs/new.h").unwrap(),
        "#define X 1\n#define Y 2\n"
    );
    let exists = b"--- /dev/null\n+++ b/fs/b.c\n@@ -0,0 +1 @@\n+x\n";
    assert!(err(plan_of(t.path(), exists)).contains("has it already"));

    let del = b"diff --git a/fs/b.c b/fs/b.c\ndeleted file mode 100644\n--- a/fs/b.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-bee\n";
    let plan = plan_of(t.path(), del).unwrap();
    assert_eq!(plan.files[0].change, Change::Delete);
    assert_eq!(written(&plan, "fs/b.c"), None);
    let partial = b"--- a/fs/a.c\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-one\n-two\n";
    assert!(err(plan_of(t.path(), partial)).contains("not the whole file"));
    // git's new empty file: no ---/+++ at all.
    let empty =
        b"diff --git a/fs/empty.h b/fs/empty.h\nnew file mode 100644\nindex 0000000..e69de29\n";
    let plan = plan_of(t.path(), empty).unwrap();
    assert_eq!(written(&plan, "fs/empty.h").unwrap(), "");
}

#[test]
fn renames_and_copies() {
    let t = tree();
    let pure = b"diff --git a/fs/b.c b/fs/c.c\nsimilarity index 100%\nrename from fs/b.c\nrename to fs/c.c\n";
    let plan = plan_of(t.path(), pure).unwrap();
    assert_eq!(
        plan.files[0].change,
        Change::Rename {
            from: PathBuf::from("fs/b.c")
        }
    );
    assert_eq!(written(&plan, "fs/b.c"), None);
    assert_eq!(written(&plan, "fs/c.c").unwrap(), "bee\n");
    let edited = b"diff --git a/fs/a.c b/fs/z.c\nsimilarity index 90%\nrename from fs/a.c\nrename to fs/z.c\n\
                   index 1..2 100644\n--- a/fs/a.c\n+++ b/fs/z.c\n@@ -1,2 +1,2 @@\n-one\n+ONE\n two\n";
    let plan = plan_of(t.path(), edited).unwrap();
    assert!(written(&plan, "fs/z.c").unwrap().starts_with("ONE\ntwo"));
    let copy =
        b"diff --git a/fs/b.c b/fs/d.c\nsimilarity index 100%\ncopy from fs/b.c\ncopy to fs/d.c\n";
    let plan = plan_of(t.path(), copy).unwrap();
    assert_eq!(plan.writes.len(), 1);
    assert_eq!(written(&plan, "fs/d.c").unwrap(), "bee\n");
    let onto = b"diff --git a/fs/b.c b/fs/a.c\nrename from fs/b.c\nrename to fs/a.c\n";
    assert!(err(plan_of(t.path(), onto)).contains("exists already"));
}

#[test]
fn binary_and_mode_changes() {
    let t = tree();
    let bin = b"diff --git a/fs/fw.bin b/fs/fw.bin\nindex 1..2 100644\nGIT binary patch\nliteral 3\nKcmZ?wb\n\nliteral 0\nHcmV?d00001\n\n";
    assert!(err(plan_of(t.path(), bin)).contains("binary change"));
    let bin2 = b"diff --git a/fs/fw.bin b/fs/fw.bin\nindex 1..2 100644\nBinary files a/fs/fw.bin and b/fs/fw.bin differ\n";
    assert!(err(plan_of(t.path(), bin2)).contains("binary change"));
    let mode = b"diff --git a/fs/a.c b/fs/a.c\nold mode 100644\nnew mode 100755\n";
    let plan = plan_of(t.path(), mode).unwrap();
    assert_eq!(written(&plan, "fs/a.c").unwrap(), MEMINFO);
}

#[test]
fn several_files_and_one_file_twice() {
    let t = tree();
    let p = b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1 +1 @@\n-one\n+ONE\n--- a/fs/b.c\n+++ b/fs/b.c\n@@ -1 +1 @@\n-bee\n+BEE\n\
              --- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n ONE\n-two\n+TWO\n three\n";
    let plan = plan_of(t.path(), p).unwrap();
    assert_eq!(plan.writes.len(), 2);
    assert!(written(&plan, "fs/a.c")
        .unwrap()
        .starts_with("ONE\nTWO\nthree"));
    assert_eq!(written(&plan, "fs/b.c").unwrap(), "BEE\n");
}

#[test]
fn fuzz_offsets_and_already_applied() {
    let t = tree();
    // The last context line ("SIX") differs: fuzz 1.
    let fuzzy =
        b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -2,5 +2,5 @@\n two\n three\n-four\n+FOUR\n five\n SIX\n";
    let e = err(plan_of(t.path(), fuzzy));
    assert!(
        e.contains("fs/a.c: hunk #1")
            && e.contains("fuzz 1")
            && e.contains("patch line 3")
            && e.contains("--allow-fuzz"),
        "{e}"
    );
    let plan = plan(&parse(fuzzy).unwrap(), t.path(), true).unwrap();
    assert_eq!(plan.fuzz, vec!["fs/a.c:1:1".to_string()]);
    assert!(written(&plan, "fs/a.c")
        .unwrap()
        .contains("FOUR\nfive\nsix\n"));
    // Declared at line 1, found at line 4: offset 3.
    let offset = b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n four\n-five\n+FIVE\n six\n";
    let plan = plan_of(t.path(), offset).unwrap();
    assert_eq!(plan.files[0].placed[0].offset, 3);
    assert_eq!(plan.files[0].placed[0].line, 4);
    let applied = b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,2 +1,2 @@\n-ONE\n+one\n two\n";
    let e = err(plan_of(t.path(), applied));
    assert!(e.contains("already applied"), "{e}");
    let wrong = b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,2 +1,2 @@\n-zero\n+ZERO\n nine\n";
    let e = err(plan_of(t.path(), wrong));
    assert!(
        e.contains("does not apply") && e.contains("@@ -1,2 +1,2 @@"),
        "{e}"
    );
}

#[test]
fn blank_context_lines_and_no_newline() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("fs")).unwrap();
    std::fs::write(d.path().join("fs/n.c"), "a\n\nb").unwrap();
    // A mailer stripped the space of the blank context line.
    let p = b"--- a/fs/n.c\n+++ b/fs/n.c\n@@ -1,3 +1,3 @@\n a\n\n-b\n\\ No newline at end of file\n+c\n";
    let plan = plan_of(d.path(), p).unwrap();
    assert_eq!(written(&plan, "fs/n.c").unwrap(), "a\n\nc\n");
}

#[test]
fn write_records_before_touching() {
    let t = tree();
    let plan = plan_of(
        t.path(),
        b"--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1 +1 @@\n-one\n+ONE\n\
                                 --- /dev/null\n+++ b/fs/sub/new.h\n@@ -0,0 +1 @@\n+x\n\
                                 --- a/fs/b.c\n+++ /dev/null\n@@ -1 +0,0 @@\n-bee\n",
    )
    .unwrap();
    let jdir = t.path().join("journal");
    let mut j = crate::journal::Journal::begin(&jdir, t.path()).unwrap();
    write(&plan, &mut j, None).unwrap();
    assert!(std::fs::read_to_string(t.path().join("fs/a.c"))
        .unwrap()
        .starts_with("ONE"));
    assert!(t.path().join("fs/sub/new.h").exists());
    assert!(!t.path().join("fs/b.c").exists());
    j.roll_back().unwrap();
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/a.c")).unwrap(),
        MEMINFO
    );
    assert_eq!(
        std::fs::read_to_string(t.path().join("fs/b.c")).unwrap(),
        "bee\n"
    );
    assert!(!t.path().join("fs/sub").exists());
}
