// SPDX-License-Identifier: GPL-2.0-only
//! `debian/changelog` entries and their compression.

use std::io::Write;

/// One changelog entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogEntry {
    /// The version it describes.
    pub version: String,
    /// `unstable`, `bookworm`, ... (`UNRELEASED` is what lintian flags).
    pub distribution: String,
    /// The change lines (each becomes `  * line`).
    pub changes: Vec<String>,
    /// `Name <address>`.
    pub maintainer: String,
    /// Seconds since the epoch.
    pub time: u64,
}

/// The changelog of `package` in Debian's format, newest entry first.
pub fn changelog(package: &str, entries: &[ChangelogEntry]) -> String {
    let mut s = String::new();
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&format!(
            "{package} ({}) {}; urgency=medium\n\n",
            e.version, e.distribution
        ));
        for c in &e.changes {
            for (i, line) in crate::wrap(c, 76).iter().enumerate() {
                s.push_str(if i == 0 { "  * " } else { "    " });
                s.push_str(line);
                s.push('\n');
            }
        }
        s.push_str(&format!(
            "\n -- {}  {}\n",
            e.maintainer,
            rfc2822_date(e.time)
        ));
    }
    s
}

/// `Tue, 01 Dec 2026 17:00:00 +0000` for seconds since the epoch (UTC).
pub fn rfc2822_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (secs / 86_400) as i64;
    let (year, month, day, hour, minute, second) = pathio::utc_civil(secs);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        DAYS[(days.rem_euclid(7)) as usize],
        MONTHS[(month - 1) as usize],
        hour,
        minute,
        second
    )
}

/// gzip at the best compression with no file name and no time stamp (`gzip -9n`), as
/// policy and lintian expect of documentation.
pub(crate) fn gzip_best(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc2822() {
        assert_eq!(rfc2822_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc2822_date(1_796_144_400),
            "Tue, 01 Dec 2026 17:00:00 +0000"
        );
    }

    #[test]
    fn entries_render_in_debian_format() {
        let text = changelog(
            "livepatch-x",
            &[ChangelogEntry {
                version: "1".into(),
                distribution: "bookworm".into(),
                changes: vec!["Live patch x.".into()],
                maintainer: "A <a@example.org>".into(),
                time: 0,
            }],
        );
        assert_eq!(
            text,
            "livepatch-x (1) bookworm; urgency=medium\n\n  * Live patch x.\n\n -- A <a@example.org>  Thu, 01 Jan 1970 00:00:00 +0000\n"
        );
        let gz = gzip_best(text.as_bytes());
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    }
}
