//! Debian version comparison (`[epoch:]upstream[-revision]`), as dpkg orders versions
//! (deb-version(7)): numeric and non-numeric parts alternate; `~` sorts before anything,
//! even the end of the string; letters sort before other characters.
//!
//! Written here because the one crate for it on crates.io is licensed Apache-2.0 only, which
//! cannot be combined with this GPL-2.0-only project.

use std::cmp::Ordering;

/// A parsed Debian version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version<'a> {
    /// The epoch (0 when absent).
    pub epoch: u64,
    /// The upstream version.
    pub upstream: &'a str,
    /// The Debian revision (`""` when absent).
    pub revision: &'a str,
}

impl<'a> Version<'a> {
    /// Splits `v` into epoch, upstream version and revision.
    pub fn parse(v: &'a str) -> Version<'a> {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().unwrap_or(0), r)
            }
            _ => (0, v),
        };
        let (upstream, revision) = match rest.rfind('-') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        Version {
            epoch,
            upstream,
            revision,
        }
    }
}

/// The weight of a non-digit character: `~` lowest, then the end of the part, then letters,
/// then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix, character by character.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            match order(ca).cmp(&order(cb)) {
                Ordering::Equal => {}
                other => return other,
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Numeric part, compared as a number (leading zeros ignored).
        let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
        let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let da = trim_zeros(&a[..na]);
        let db = trim_zeros(&b[..nb]);
        match da.len().cmp(&db.len()).then_with(|| da.cmp(db)) {
            Ordering::Equal => {}
            other => return other,
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n..]
}

/// Compares two Debian versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (va, vb) = (Version::parse(a), Version::parse(b));
    va.epoch
        .cmp(&vb.epoch)
        .then_with(|| compare_part(va.upstream, vb.upstream))
        .then_with(|| compare_part(va.revision, vb.revision))
}

/// The version as it appears in a `.deb` file name: without the epoch.
pub fn without_epoch(v: &str) -> &str {
    match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn dpkg_ordering() {
        let cases = [
            ("6.1.192-3", "6.1.192-2", Greater),
            ("6.1.192-2", "6.1.190-1", Greater),
            ("6.12.117-1~deb12u1", "6.12.117-1", Less),
            ("6.12.118-1", "6.12.117-1", Greater),
            ("6.12.9-1", "6.12.10-1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1:1.0", "2.0", Greater),
            ("1.0a", "1.0+", Less),
            ("12.2.0-14+deb12u1", "12.2.0-14", Greater),
            ("1.001", "1.1", Equal),
            ("2.0", "2.0", Equal),
            ("a", "", Greater),
            ("~", "", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
        assert_eq!(without_epoch("1:2.0-1"), "2.0-1");
        assert_eq!(without_epoch("6.1.192-3"), "6.1.192-3");
    }
}
