//! Applying a file's hunks to its content in memory, as GNU patch does: each hunk is
//! looked for at its line (shifted by the previous hunk's offset), then ever farther
//! before and after it, never before the end of the previous hunk; with fuzz N, up to N
//! lines of leading and trailing context may differ. A hunk that is not found is checked
//! in reverse, to tell "already applied" from "does not apply".

use super::parse::Hunk;

/// Where a hunk applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// 1-based line of the old text where the hunk's old lines start.
    pub line: usize,
    /// Lines away from where the hunk said (after earlier hunks' offsets).
    pub offset: isize,
    /// Context lines ignored at each end (0: exact).
    pub fuzz: usize,
}

/// Why a hunk did not apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// Its old lines are nowhere in the file (within the fuzz allowed).
    NotFound,
    /// Its new lines are already there: the change was made before.
    AlreadyApplied,
    /// It applies only with more fuzz than allowed: where, and how much.
    NeedsFuzz(Placed),
}

/// How much fuzz is looked for, to say that a hunk would apply with it (GNU patch's
/// default maximum).
pub const FUZZ_SEARCH: usize = 2;

fn split_lines(content: &[u8]) -> Vec<&[u8]> {
    content.split_inclusive(|b| *b == b'\n').collect()
}

/// Positions to try: `from`, then alternately farther before and after, within
/// `[low, high]`.
fn search_order(from: usize, low: usize, high: usize) -> impl Iterator<Item = usize> {
    let from = from.clamp(low, high.max(low));
    let span = (high.saturating_sub(low)) + 1;
    (0..2 * span).filter_map(move |k| {
        let d = k.div_ceil(2);
        if k % 2 == 1 {
            from.checked_sub(d).filter(|p| *p >= low)
        } else {
            Some(from + d).filter(|p| *p <= high)
        }
    })
}

fn find(lines: &[&[u8]], pattern: &[&[u8]], from: usize, low: usize) -> Option<usize> {
    if pattern.len() > lines.len() {
        return None;
    }
    let high = lines.len() - pattern.len();
    if low > high {
        return None;
    }
    search_order(from, low, high).find(|&p| lines[p..p + pattern.len()] == *pattern)
}

/// Apply `hunks` to `content`, allowing up to `max_fuzz` lines of context to differ;
/// the new content and where each hunk went, or the first hunk (index) that missed.
pub fn apply(
    content: &[u8],
    hunks: &[Hunk],
    max_fuzz: usize,
) -> Result<(Vec<u8>, Vec<Placed>), (usize, Miss)> {
    let lines = split_lines(content);
    let mut out: Vec<u8> = Vec::with_capacity(content.len() + 256);
    let mut done = 0usize; // lines of `lines` consumed
    let mut offset = 0isize;
    let mut placed = Vec::with_capacity(hunks.len());
    for (i, h) in hunks.iter().enumerate() {
        let old = h.old_lines();
        let new = h.new_lines();
        // An insertion with no old lines goes after line `old_start`.
        let want = if old.is_empty() {
            h.old_start
        } else {
            h.old_start.saturating_sub(1)
        };
        let expected = (want as isize + offset).max(0) as usize;
        let (lead, trail) = h.context();
        let context = lead.max(trail);
        let mut hit = None;
        for fuzz in 0..=context.min(FUZZ_SEARCH.max(max_fuzz)) {
            // As GNU patch: less context at one end than at the other anchors the hunk to
            // that end of the file, until the fuzz makes up the difference.
            let pf = (fuzz + lead) as isize - context as isize;
            let sf = (fuzz + trail) as isize - context as isize;
            let (cut_lead, cut_trail) = (pf.max(0) as usize, sf.max(0) as usize);
            if cut_lead + cut_trail > old.len() {
                break;
            }
            let pattern = &old[cut_lead..old.len() - cut_trail];
            let matches = |p: usize| p >= done && lines.get(p..p + pattern.len()) == Some(pattern);
            let found = match (pf < 0, sf < 0) {
                (false, false) => find(&lines, pattern, expected + cut_lead, done),
                (true, false) => Some(0).filter(|&p| matches(p)),
                (false, true) => lines
                    .len()
                    .checked_sub(pattern.len())
                    .filter(|&p| matches(p)),
                (true, true) => Some(0).filter(|&p| matches(p) && pattern.len() == lines.len()),
            };
            if let Some(p) = found {
                hit = Some((p, fuzz, cut_lead, cut_trail));
                break;
            }
        }
        let Some((p, fuzz, cut_lead, cut_trail)) = hit else {
            let reversed = !new.is_empty() && find(&lines, &new, expected, done).is_some();
            return Err((
                i,
                if reversed {
                    Miss::AlreadyApplied
                } else {
                    Miss::NotFound
                },
            ));
        };
        let start = p - cut_lead;
        let at = Placed {
            line: start + 1,
            offset: start as isize - want as isize,
            fuzz,
        };
        if fuzz > max_fuzz {
            return Err((i, Miss::NeedsFuzz(at)));
        }
        for l in &lines[done..p] {
            out.extend_from_slice(l);
        }
        for l in &new[cut_lead..new.len() - cut_trail] {
            out.extend_from_slice(l);
        }
        done = p + old.len() - cut_lead - cut_trail;
        offset = at.offset;
        placed.push(at);
    }
    for l in &lines[done..] {
        out.extend_from_slice(l);
    }
    Ok((out, placed))
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn hunks(patch: &str) -> Vec<Hunk> {
        parse(patch.as_bytes()).unwrap().files.remove(0).hunks
    }

    const FILE: &str = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";

    #[test]
    fn exact_offset_and_order() {
        let h = hunks(
            "--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n b\n-c\n+C\n d\n@@ -8,2 +8,3 @@\n h\n+H\n i\n",
        );
        let (out, at) = apply(FILE.as_bytes(), &h, 0).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\nb\nC\nd\ne\nf\ng\nh\nH\ni\nj\n"
        );
        assert_eq!(
            at[0],
            Placed {
                line: 2,
                offset: 0,
                fuzz: 0
            }
        );
        // Shifted by two lines: an offset, reported.
        let shifted = format!("0\n1\n{FILE}");
        let (_, at) = apply(shifted.as_bytes(), &h, 0).unwrap();
        assert_eq!(at[0].offset, 2);
        assert_eq!(
            at[1],
            Placed {
                line: 10,
                offset: 2,
                fuzz: 0
            }
        );
    }

    #[test]
    fn fuzz_needs_permission() {
        let h = hunks("--- a/x\n+++ b/x\n@@ -2,5 +2,5 @@\n b\n c\n-d\n+D\n e\n X\n");
        assert_eq!(
            apply(FILE.as_bytes(), &h, 0),
            Err((
                0,
                Miss::NeedsFuzz(Placed {
                    line: 2,
                    offset: 0,
                    fuzz: 1
                })
            ))
        );
        let (out, at) = apply(FILE.as_bytes(), &h, 2).unwrap();
        assert_eq!(at[0].fuzz, 1);
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("a\nb\nc\nD\ne\nf\n"));
    }

    #[test]
    fn missing_and_already_applied() {
        let h = hunks("--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n b\n-z\n+c\n d\n");
        assert_eq!(
            apply(FILE.as_bytes(), &h, 2),
            Err((0, Miss::AlreadyApplied))
        );
        let h = hunks("--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n q\n-r\n+s\n t\n");
        assert_eq!(apply(FILE.as_bytes(), &h, 2), Err((0, Miss::NotFound)));
    }

    #[test]
    fn hunks_never_go_back() {
        // The second hunk's text is only before the first hunk: not found.
        let h = hunks("--- a/x\n+++ b/x\n@@ -5,1 +5,1 @@\n-e\n+E\n@@ -9,1 +9,1 @@\n-b\n+B\n");
        assert_eq!(apply(FILE.as_bytes(), &h, 0), Err((1, Miss::NotFound)));
    }

    #[test]
    fn uneven_context_anchors_to_the_end_of_the_file() {
        // Three lines of context before the change, two after: GNU patch takes it for a
        // hunk at the end of the file, and applies it elsewhere only with fuzz 1.
        let h = hunks("--- a/x\n+++ b/x\n@@ -2,6 +2,6 @@\n b\n c\n d\n-e\n+E\n f\n g\n");
        assert!(matches!(
            apply(FILE.as_bytes(), &h, 0),
            Err((0, Miss::NeedsFuzz(_)))
        ));
        let (_, at) = apply(FILE.as_bytes(), &h, 2).unwrap();
        assert_eq!(at[0].fuzz, 1);
        let tail = "a\nb\nc\nd\ne\nf\ng\n";
        let (out, at) = apply(tail.as_bytes(), &h, 0).unwrap();
        assert_eq!(
            (at[0].fuzz, String::from_utf8(out).unwrap()),
            (0, tail.replace('e', "E"))
        );
        // At the start of a file, the context before the change is short by nature.
        let h = hunks("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n+A\n b\n c\n");
        assert_eq!(apply(FILE.as_bytes(), &h, 0).unwrap().1[0].fuzz, 0);
    }

    #[test]
    fn insertion_and_no_newline() {
        let h = hunks("--- a/x\n+++ b/x\n@@ -0,0 +1,1 @@\n+top\n");
        let (out, _) = apply(b"x\n", &h, 0).unwrap();
        assert_eq!(out, b"top\nx\n");
        let h = hunks("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-x\n\\ No newline at end of file\n+y\n");
        let (out, _) = apply(b"x", &h, 0).unwrap();
        assert_eq!(out, b"y\n");
        assert!(apply(b"x\n", &h, 0).is_err());
    }
}
