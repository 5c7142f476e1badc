//! Debian's control-file syntax (deb822): stanzas of `Field: value` lines separated by blank
//! lines, with continuation lines starting with a space or a tab. Used for `Packages` indexes,
//! `.sources` files and the control members of `.deb` files.

/// One stanza: its fields in file order. Field names compare case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    /// The value of `name` (continuation lines joined with `\n`), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field in file order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// Is the stanza empty?
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Parses every stanza of `text`. Lines starting with `#` are comments (allowed in
/// `.sources` files); a line that is neither a field, a continuation nor a comment is
/// ignored, as apt does for unknown syntax in index files.
pub fn parse(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.fields.last_mut() {
                let cont = line.trim();
                if cont != "." {
                    if !v.is_empty() {
                        v.push('\n');
                    }
                    v.push_str(cont);
                }
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.fields
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The first stanza of `text` (a `.deb`'s control file has one).
pub fn parse_one(text: &str) -> Stanza {
    parse(text).into_iter().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_fields_and_continuations() {
        let text = "# comment\nPackage: a\nDescription: short\n long\n .\n more\n\n\n\
                    package: b\nVersion: 1:2.0-1\n";
        let s = parse(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get("package"), Some("a"));
        assert_eq!(s[0].get("Description"), Some("short\nlong\nmore"));
        assert_eq!(s[1].get("Package"), Some("b"));
        assert_eq!(s[1].get("Version"), Some("1:2.0-1"));
        assert_eq!(s[1].get("Depends"), None);
    }
}
