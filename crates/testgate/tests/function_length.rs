//! House rule: no function over 120 lines outside tests. Every `.rs` file under `crates/` and `bins/` is parsed with `syn`; functions,
//! methods and trait default methods are measured from their first line (attributes and
//! doc comments excluded) to their closing brace. Test code is skipped: `tests/` and
//! `benches/` directories, `#[cfg(test)]` modules and `#[test]` functions.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

const MAX_LINES: usize = 120;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p.is_dir() {
            if !matches!(
                name.to_str(),
                Some("tests" | "benches" | "target" | "fixtures")
            ) {
                sources(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_test_attr(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let p = a.path();
        p.is_ident("test")
            || (p.is_ident("cfg")
                && a.parse_args::<syn::Meta>()
                    .is_ok_and(|m| m.path().is_ident("test")))
    })
}

struct Long<'a> {
    file: &'a Path,
    found: Vec<String>,
}

impl Long<'_> {
    fn check(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        let lines = end - start + 1;
        if lines > MAX_LINES {
            self.found.push(format!(
                "{}:{start}: fn {name} is {lines} lines",
                self.file.display()
            ));
        }
    }
}

impl<'ast> Visit<'ast> for Long<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_attr(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test_attr(&f.attrs) {
            self.check(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_attr(&f.attrs) {
            self.check(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.check(&f.sig.ident, &f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[test]
fn no_function_over_120_lines_outside_tests() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["crates", "bins"] {
        sources(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "only {} source files found", files.len());
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let rel = f.strip_prefix(&root).unwrap_or(f);
        let mut v = Long {
            file: rel,
            found: Vec::new(),
        };
        v.visit_file(&ast);
        found.extend(v.found);
    }
    assert!(
        found.is_empty(),
        "functions over {MAX_LINES} lines:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_measures_what_it_says() {
    let body = "    let x = 1;\n".repeat(MAX_LINES);
    let src = format!("fn long() {{\n{body}}}\n#[cfg(test)]\nmod tests {{ fn t() {{\n{body}}} }}");
    let ast = syn::parse_file(&src).unwrap();
    let mut v = Long {
        file: Path::new("x.rs"),
        found: Vec::new(),
    };
    v.visit_file(&ast);
    assert_eq!(v.found, ["x.rs:1: fn long is 122 lines"]);
}
