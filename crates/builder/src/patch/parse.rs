//! Reading a patch as GNU patch and git do: unified diffs with or without git's extended
//! headers (renames, copies, new and deleted files, modes), quoted paths, CRLF line ends,
//! commentary in any encoding before and between the files (only the headers and hunks
//! are read), `\ No newline at end of file`. Paths lose one leading component (`-p1`).
//!
//! What cannot be applied is refused with the line it is on: context diffs, binary
//! changes, hunks whose line counts do not add up, paths that leave the tree.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{step, step_hint, Error, Result};

/// A parsed patch: the files it changes, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    /// One entry per file header; a file may come more than once.
    pub files: Vec<FilePatch>,
}

/// The change to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePatch {
    /// Line of the patch (1-based) where this file's header starts.
    pub line: usize,
    /// The file before the change (`None`: the patch creates it), `-p1` stripped.
    pub old: Option<PathBuf>,
    /// The file after the change (`None`: the patch deletes it).
    pub new: Option<PathBuf>,
    /// git's `rename from`/`rename to`: `old` becomes `new`.
    pub rename: bool,
    /// git's `copy from`/`copy to`: `new` is made from `old`, which stays.
    pub copy: bool,
    /// A binary change (`GIT binary patch`, `Binary files ... differ`).
    pub binary: bool,
    /// The hunks, in order.
    pub hunks: Vec<Hunk>,
}

impl FilePatch {
    /// The file this change is about: the new name, else the old one.
    pub fn path(&self) -> &Path {
        self.new
            .as_deref()
            .or(self.old.as_deref())
            .unwrap_or(Path::new(""))
    }
}

/// One line of a hunk, with its line end (absent on a line marked
/// `\ No newline at end of file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// In the file before and after.
    Context(Vec<u8>),
    /// Removed.
    Del(Vec<u8>),
    /// Added.
    Add(Vec<u8>),
}

/// One `@@ -a,b +c,d @@` hunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    /// Line of the patch (1-based) of its `@@` header.
    pub line: usize,
    /// First line of the old text (1-based; 0 for an empty file).
    pub old_start: usize,
    /// First line of the new text.
    pub new_start: usize,
    /// The lines, in order.
    pub lines: Vec<Line>,
    /// The `@@` header as written (for messages).
    pub header: String,
}

impl Hunk {
    /// The old text's lines (context and removed).
    pub fn old_lines(&self) -> Vec<&[u8]> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Context(b) | Line::Del(b) => Some(b.as_slice()),
                Line::Add(_) => None,
            })
            .collect()
    }

    /// The new text's lines (context and added).
    pub fn new_lines(&self) -> Vec<&[u8]> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Context(b) | Line::Add(b) => Some(b.as_slice()),
                Line::Del(_) => None,
            })
            .collect()
    }

    /// Context lines before the first change and after the last one.
    pub fn context(&self) -> (usize, usize) {
        let is_ctx = |l: &&Line| matches!(l, Line::Context(_));
        let lead = self.lines.iter().take_while(is_ctx).count();
        let trail = self.lines.iter().rev().take_while(is_ctx).count();
        (lead, trail.min(self.lines.len() - lead))
    }
}

/// The patch's lines: content without the line end, and whether it had one.
struct Lines<'a> {
    lines: Vec<(&'a [u8], bool)>,
    pos: usize,
    /// The patch has CRLF line ends: a trailing CR is not part of any line.
    crlf: bool,
}

impl<'a> Lines<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut lines: Vec<(&[u8], bool)> =
            data.split(|b| *b == b'\n').map(|l| (l, true)).collect();
        if let Some(last) = lines.last_mut() {
            if last.0.is_empty() {
                lines.pop();
            } else {
                last.1 = false;
            }
        }
        // CRLF patches (GNU patch strips the CRs unless --binary): decided by the first
        // file header, so that a CR inside one line of commentary does not count.
        let crlf = lines
            .iter()
            .find(|(l, _)| l.starts_with(b"--- ") || l.starts_with(b"diff --git "))
            .is_some_and(|(l, _)| l.ends_with(b"\r"));
        Lines {
            lines,
            pos: 0,
            crlf,
        }
    }

    fn peek(&self) -> Option<&'a [u8]> {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> Option<&'a [u8]> {
        self.lines.get(self.pos + n).map(|(l, _)| self.trim(l))
    }

    fn trim(&self, l: &'a [u8]) -> &'a [u8] {
        if self.crlf {
            l.strip_suffix(b"\r").unwrap_or(l)
        } else {
            l
        }
    }

    fn next(&mut self) -> Option<(&'a [u8], bool)> {
        let (l, nl) = *self.lines.get(self.pos)?;
        self.pos += 1;
        Some((self.trim(l), nl))
    }

    /// 1-based number of the line `peek` returns.
    fn number(&self) -> usize {
        self.pos + 1
    }
}

fn at(line: usize, msg: impl std::fmt::Display) -> Error {
    step(format!("patch line {line}: {msg}"))
}

/// Parse a patch. `data` is the whole file, in any encoding.
pub fn parse(data: &[u8]) -> Result<Patch> {
    let mut lines = Lines::new(data);
    let mut patch = Patch::default();
    while let Some(l) = lines.peek() {
        let n = lines.number();
        if l.starts_with(b"diff --git ") {
            lines.next();
            patch.files.push(git_file(&mut lines, l, n)?);
        } else if l.starts_with(b"--- ") && lines.peek_at(1).is_some_and(|x| x.starts_with(b"+++ "))
        {
            let mut f = unified_header(&mut lines, n)?;
            f.hunks = hunks(&mut lines)?;
            patch.files.push(f);
        } else if l.starts_with(b"*** ") && lines.peek_at(1).is_some_and(|x| x.starts_with(b"--- "))
        {
            return Err(step_hint(
                format!("patch line {n}: a context diff (*** / ---); only unified diffs are read"),
                "make the patch with `git diff` or `diff -u`",
            ));
        } else if l.starts_with(b"@@ -") {
            return Err(at(
                n,
                "a hunk without a file header (--- a/... +++ b/...) before it",
            ));
        } else {
            // Commentary: a mail header, the commit message, a diffstat, a signature.
            lines.next();
        }
    }
    if patch.files.is_empty() {
        return Err(not_a_patch(data));
    }
    Ok(patch)
}

fn not_a_patch(data: &[u8]) -> Error {
    if data.is_empty() {
        return step("the patch is empty");
    }
    let binary = data
        .iter()
        .any(|b| *b == 0 || (*b < 0x20 && !b"\t\r\n\x0c\x1b".contains(b)));
    let what = if binary { "binary data, " } else { "" };
    step_hint(
        format!("not a patch: {what}no file header (--- a/FILE, +++ b/FILE) in it"),
        "give a unified diff made with `git diff`, `git format-patch` or `diff -u` (paths with a/ and b/ prefixes)",
    )
}

/// `--- OLD` and `+++ NEW` of a plain unified diff.
fn unified_header(lines: &mut Lines, n: usize) -> Result<FilePatch> {
    let (minus, _) = lines.next().unwrap_or_default();
    let (plus, _) = lines.next().unwrap_or_default();
    let old = header_path(&minus[4..], n)?;
    let new = header_path(&plus[4..], n + 1)?;
    if old.is_none() && new.is_none() {
        return Err(at(n, "both --- and +++ are /dev/null"));
    }
    Ok(FilePatch {
        line: n,
        old,
        new,
        rename: false,
        copy: false,
        binary: false,
        hunks: Vec::new(),
    })
}

/// A `diff --git` block: extended headers, then optional `---`/`+++` and hunks.
fn git_file(lines: &mut Lines, first: &[u8], n: usize) -> Result<FilePatch> {
    let (a, b) = git_names(&first[b"diff --git ".len()..], n)?;
    let mut f = FilePatch {
        line: n,
        old: a,
        new: b,
        rename: false,
        copy: false,
        binary: false,
        hunks: Vec::new(),
    };
    while let Some(l) = lines.peek() {
        let ln = lines.number();
        let value = |prefix: &[u8]| l.strip_prefix(prefix);
        if let Some(p) = value(b"rename from ").or_else(|| value(b"copy from ")) {
            f.old = Some(plain_path(unquote(p, ln)?, ln)?);
            f.rename |= l.starts_with(b"rename");
            f.copy |= l.starts_with(b"copy");
        } else if let Some(p) = value(b"rename to ").or_else(|| value(b"copy to ")) {
            f.new = Some(plain_path(unquote(p, ln)?, ln)?);
        } else if l.starts_with(b"new file mode ") {
            f.old = None;
        } else if l.starts_with(b"deleted file mode ") {
            f.new = None;
        } else if l.starts_with(b"Binary files ") || l.starts_with(b"GIT binary patch") {
            f.binary = true;
        } else if [
            &b"old mode "[..],
            b"new mode ",
            b"similarity index ",
            b"dissimilarity index ",
            b"index ",
        ]
        .iter()
        .any(|p| l.starts_with(p))
        {
        } else {
            break;
        }
        lines.next();
    }
    if f.binary {
        // Skip the base85 data up to the next file.
        while lines.peek().is_some_and(|l| !l.starts_with(b"diff --git ")) {
            lines.next();
        }
        return Ok(f);
    }
    if lines.peek().is_some_and(|l| l.starts_with(b"--- "))
        && lines.peek_at(1).is_some_and(|l| l.starts_with(b"+++ "))
    {
        let ln = lines.number();
        let h = unified_header(lines, ln)?;
        // The ---/+++ names win, except that /dev/null agrees with the mode headers.
        if h.old.is_some() || f.old.is_none() {
            f.old = h.old;
        }
        if h.new.is_some() || f.new.is_none() {
            f.new = h.new;
        }
        f.hunks = hunks(lines)?;
    }
    Ok(f)
}

/// The two names of `diff --git a/X b/Y`: quoted, or split where both halves name the
/// same file (git's usual case), else at the only space. `None` when ambiguous.
fn git_names(rest: &[u8], n: usize) -> Result<(Option<PathBuf>, Option<PathBuf>)> {
    if rest.starts_with(b"\"") {
        let (a, after) = quoted(rest, n)?;
        let after = after.trim_ascii_start();
        let b = if after.starts_with(b"\"") {
            quoted(after, n)?.0
        } else {
            after.to_vec()
        };
        return Ok((Some(strip_one(&a, n)?), Some(strip_one(&b, n)?)));
    }
    let spaces: Vec<usize> = rest
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b' ')
        .map(|(i, _)| i)
        .collect();
    for &s in &spaces {
        let (a, b) = (&rest[..s], &rest[s + 1..]);
        if b.ends_with(b"\"") {
            let q = b.iter().position(|c| *c == b'"').unwrap_or(0);
            let bq = quoted(&b[q..], n)?.0;
            return Ok((Some(strip_one(a, n)?), Some(strip_one(&bq, n)?)));
        }
        let strip = |p: &[u8]| {
            p.iter()
                .position(|c| *c == b'/')
                .map(|i| p[i + 1..].to_vec())
        };
        if spaces.len() == 1 || (strip(a).is_some() && strip(a) == strip(b)) {
            return Ok((Some(strip_one(a, n)?), Some(strip_one(b, n)?)));
        }
    }
    Ok((None, None))
}

/// A `---`/`+++` name: quoted, or up to the first TAB (a timestamp may follow);
/// `/dev/null` is no file.
fn header_path(raw: &[u8], n: usize) -> Result<Option<PathBuf>> {
    let name = if raw.starts_with(b"\"") {
        quoted(raw, n)?.0
    } else {
        let end = raw.iter().position(|c| *c == b'\t').unwrap_or(raw.len());
        raw[..end].trim_ascii_end().to_vec()
    };
    if name == b"/dev/null" {
        return Ok(None);
    }
    if name.is_empty() {
        return Err(at(n, "a file header without a file name"));
    }
    strip_one(&name, n).map(Some)
}

/// Remove the first path component (`-p1`): `a/fs/x.c` is `fs/x.c`.
fn strip_one(name: &[u8], n: usize) -> Result<PathBuf> {
    let Some(i) = name.iter().position(|c| *c == b'/') else {
        return Err(step_hint(
            format!(
                "patch line {n}: {} has no leading directory to strip",
                String::from_utf8_lossy(name)
            ),
            "kpatch-build applies patches with -p1: paths need a prefix such as a/ and b/ \
             (git diff without --no-prefix)",
        ));
    };
    plain_path(name[i + 1..].to_vec(), n)
}

/// A relative path inside the tree: no `..`, not absolute, not empty.
fn plain_path(name: Vec<u8>, n: usize) -> Result<PathBuf> {
    let p = PathBuf::from(OsStr::from_bytes(&name));
    let ok = !name.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return Err(at(
            n,
            format!(
                "unusable path '{}' (it must stay inside the kernel tree)",
                p.display()
            ),
        ));
    }
    Ok(p.components().collect())
}

fn unquote(raw: &[u8], n: usize) -> Result<Vec<u8>> {
    let raw = raw.trim_ascii_end();
    if raw.starts_with(b"\"") {
        Ok(quoted(raw, n)?.0)
    } else {
        Ok(raw.to_vec())
    }
}

/// A C-style quoted string as git writes it (`\t`, `\"`, `\\`, octal `\303`); the bytes
/// and what follows the closing quote.
fn quoted(raw: &[u8], n: usize) -> Result<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < raw.len() {
        match raw[i] {
            b'"' => return Ok((out, &raw[i + 1..])),
            b'\\' => {
                let c = *raw
                    .get(i + 1)
                    .ok_or_else(|| at(n, "unterminated quoted path"))?;
                i += 2;
                out.push(match c {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    b'0'..=b'7' => {
                        let digits = raw[i - 1..]
                            .iter()
                            .take(3)
                            .take_while(|d| (b'0'..=b'7').contains(d));
                        let (mut v, mut k) = (0u32, 0);
                        for d in digits {
                            v = v * 8 + u32::from(d - b'0');
                            k += 1;
                        }
                        i += k - 1;
                        u8::try_from(v).map_err(|_| at(n, "bad octal escape in a quoted path"))?
                    }
                    other => other,
                });
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(at(n, "unterminated quoted path"))
}

/// `@@ -a[,b] +c[,d] @@`: (a, b, c, d).
fn hunk_header(l: &[u8], n: usize) -> Result<(usize, usize, usize, usize)> {
    let bad = || {
        at(
            n,
            format!("malformed hunk header '{}'", String::from_utf8_lossy(l)),
        )
    };
    let text = std::str::from_utf8(l).map_err(|_| bad())?;
    let inner = text
        .strip_prefix("@@ -")
        .and_then(|t| t.split_once(" @@"))
        .map(|(r, _)| r)
        .ok_or_else(bad)?;
    let (old, new) = inner.split_once(" +").ok_or_else(bad)?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((s, l)) => Some((s.parse().ok()?, l.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(old).ok_or_else(bad)?;
    let (c, d) = range(new).ok_or_else(bad)?;
    Ok((a, b, c, d))
}

/// The hunks following a file header.
fn hunks(lines: &mut Lines) -> Result<Vec<Hunk>> {
    let mut out = Vec::new();
    while let Some(l) = lines.peek() {
        if !l.starts_with(b"@@ -") {
            break;
        }
        let n = lines.number();
        lines.next();
        let (old_start, mut old_left, new_start, mut new_left) = hunk_header(l, n)?;
        let mut h = Hunk {
            line: n,
            old_start,
            new_start,
            lines: Vec::new(),
            header: String::from_utf8_lossy(l).into_owned(),
        };
        while old_left > 0 || new_left > 0 {
            let ln = lines.number();
            let Some((text, _)) = lines.next() else {
                return Err(at(
                    n,
                    "the hunk ends before its line counts are reached (truncated patch?)",
                ));
            };
            let body = |t: &[u8]| [t.get(1..).unwrap_or_default(), b"\n"].concat();
            let (line, old, new) = match text.first() {
                Some(b' ') => (Line::Context(body(text)), 1, 1),
                None => (Line::Context(b"\n".to_vec()), 1, 1),
                Some(b'-') => (Line::Del(body(text)), 1, 0),
                Some(b'+') => (Line::Add(body(text)), 0, 1),
                Some(b'\\') => {
                    no_newline(&mut h, ln)?;
                    continue;
                }
                Some(_) => {
                    return Err(at(
                        ln,
                        format!(
                            "malformed hunk: '{}' is not a context (' '), removed ('-') or added ('+') line; \
                             the hunk at line {n} expects {old_left} more old and {new_left} more new line(s)",
                            String::from_utf8_lossy(&text[..text.len().min(60)])
                        ),
                    ))
                }
            };
            if old > old_left || new > new_left {
                return Err(at(
                    ln,
                    format!("the hunk at line {n} has more lines than its header counts"),
                ));
            }
            old_left -= old;
            new_left -= new;
            h.lines.push(line);
        }
        if lines.peek().is_some_and(|t| t.starts_with(b"\\")) {
            let ln = lines.number();
            lines.next();
            no_newline(&mut h, ln)?;
        }
        out.push(h);
    }
    Ok(out)
}

/// `\ No newline at end of file`: the previous line has no line end.
fn no_newline(h: &mut Hunk, ln: usize) -> Result<()> {
    match h.lines.last_mut() {
        Some(Line::Context(b) | Line::Del(b) | Line::Add(b)) => {
            b.pop();
            Ok(())
        }
        None => Err(at(
            ln,
            "'\\ No newline at end of file' before any line of the hunk",
        )),
    }
}
