//! Name-based predicates: which sections and symbols are bundled, special, mangled,
//! or belong to the kernel's bookkeeping. Each rule is a small named function with the
//! reason it exists.

use kelf::consts::{STB_LOCAL, STT_FUNC, STT_OBJECT, STT_SECTION};

/// Prefixes of sections that hold exactly one function or object when compiled with
/// `-ffunction-sections -fdata-sections`, with the symbol type they hold.
const BUNDLE_PREFIXES: &[(&str, u8)] = &[
    (".text.", STT_FUNC),
    (".text.unlikely.", STT_FUNC),
    (".text.hot.", STT_FUNC),
    (".data.", STT_OBJECT),
    (".data.rel.", STT_OBJECT),
    (".data.rel.ro.", STT_OBJECT),
    (".data.rel.ro.local.", STT_OBJECT),
    (".data.rel.local.", STT_OBJECT),
    (".rodata.", STT_OBJECT),
    (".bss.", STT_OBJECT),
];

/// Is `sym` the one symbol of its own `-ffunction-sections`/`-fdata-sections` section?
pub fn is_bundleable(kind: u8, sym_name: &str, sec_name: &str) -> bool {
    for (prefix, k) in BUNDLE_PREFIXES {
        if *k == kind {
            if let Some(rest) = sec_name.strip_prefix(prefix) {
                if rest == sym_name {
                    return true;
                }
            }
        }
    }
    // gcc puts `foo.cold` in `.text.unlikely.foo`.
    if kind == STT_FUNC {
        if let Some(rest) = sec_name.strip_prefix(".text.unlikely.") {
            if sym_name.contains(".cold") && sym_name.starts_with(rest) {
                return true;
            }
        }
    }
    false
}

/// Sections and symbols of the dynamic-debug machinery (`pr_debug()` descriptors).
pub fn is_dynamic_debug(kind: u8, sym_name: &str, sec_name: Option<&str>) -> bool {
    match kind {
        STT_OBJECT => matches!(sec_name, Some("__verbose") | Some("__dyndbg")),
        STT_SECTION => matches!(sym_name, "__verbose" | "__dyndbg"),
        _ => false,
    }
}

/// `.rodata.<x>.str1.N`: merged string literals.
pub fn is_string_literal_section(name: &str) -> bool {
    name.starts_with(".rodata.") && name.contains(".str")
}

/// Clang's anonymous constants: their numbering is unstable, so they are never
/// correlated and always taken fresh from the patched object.
pub fn is_clang_unnamed_data(name: &str) -> bool {
    name.starts_with(".data..L__unnamed_") || name.starts_with(".data.__unnamed_")
}

/// UBSAN descriptors are taken wholesale; they are never correlated.
pub fn is_ubsan(name: &str) -> bool {
    const P: &[&str] = &[
        ".data.rel.local..Lubsan_data",
        ".data..Lubsan_type",
        ".Lubsan_data",
        ".data..Lubsan_data",
        ".rela.data..Lubsan_data",
        ".rela.data.rel.local..Lubsan_data",
    ];
    P.iter().any(|p| name.starts_with(p))
}

/// Debug information: included wholesale, relocations to dropped code stripped.
pub fn is_debug_section(name: &str) -> bool {
    name.starts_with(".debug_") || name.starts_with(".eh_frame")
}

/// Compiler-generated static locals whose identity does not matter (lockdep keys,
/// once-flags, `__func__`, ratelimit states, switch tables, ...). They are never
/// correlated: a patched function gets its own fresh copy.
pub fn is_special_static_name(bind: u8, kind: u8, name: &str, sec_name: &str) -> bool {
    if kind != STT_OBJECT || bind != STB_LOCAL {
        return false;
    }
    if sec_name == ".data.once" || sec_name == ".data..once" {
        return true;
    }
    const VARS: &[&str] = &[
        "__key",
        "__warned",
        "__already_done",
        "__func__",
        "__FUNCTION__",
        "_rs",
        "CSWTCH",
        "_entry",
    ];
    VARS.iter().any(|v| {
        // gcc: `<var>.<n>`; clang: `<function>.<var>`
        name.strip_prefix(v)
            .is_some_and(|rest| rest.starts_with('.'))
            || name
                .match_indices(v)
                .any(|(i, _)| i > 0 && name.as_bytes()[i - 1] == b'.')
    })
}

/// A static local variable whose gcc-numbered name (`foo.123`) must be correlated by
/// the functions that reference it.
pub fn is_normal_static_local_name(name: &str) -> bool {
    !name.starts_with(".L") && name.contains('.')
}

fn has_digit_tail(tail: &[u8]) -> bool {
    tail.len() > 1 && tail[0] == b'.' && tail[1..].iter().all(u8::is_ascii_digit) || tail == b"."
}

/// The correlation key of a name: gcc's and the kernel's numeric suffixes removed, so
/// that `foo.isra.3`, `foo.isra.7` and `__UNIQUE_ID_ddebug12.4` / `__UNIQUE_ID_ddebug98.5`
/// compare equal. Two names "match" (in upstream kpatch's sense) when their keys are equal.
pub fn mangled_key(name: &str) -> String {
    if name.contains(".str1.") {
        return name.to_string();
    }
    if let Some(pos) = unique_id_pos(name) {
        // Everything up to `__UNIQUE_ID_<tag>`: drop a `.N` tail, then trailing digits.
        let b = name.as_bytes();
        let mut end = b.len();
        if let Some(dot) = name.rfind('.') {
            if dot >= pos && has_digit_tail(&b[dot..]) {
                end = dot;
            }
        }
        while end > pos && b[end - 1].is_ascii_digit() {
            end -= 1;
        }
        return name[..end].to_string();
    }
    // Drop every `.<digits>` run.
    let b = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Where a `__UNIQUE_ID_` name starts: at the beginning of a symbol name, or after the
/// prefix of its own `-fdata-sections` section (`.bss.__UNIQUE_ID_quirk12`), so that a
/// renumbered variable's section pairs up in the same order as its symbol.
fn unique_id_pos(name: &str) -> Option<usize> {
    name.find("__UNIQUE_ID_")
}

/// Do two names match, ignoring compiler numbering?
pub fn mangled_eq(a: &str, b: &str) -> bool {
    a == b || mangled_key(a) == mangled_key(b)
}

/// Sections whose relocations the patch author marks with `KPATCH_IGNORE_SECTION`.
pub const IGNORE_SECTIONS: &str = ".kpatch.ignore.sections";
pub const IGNORE_FUNCTIONS: &str = ".kpatch.ignore.functions";

/// Patch-author callback sections (`KPATCH_PRE_PATCH_CALLBACK()` and friends).
pub fn is_callback_section(name: &str) -> bool {
    let n = name.strip_prefix(".rela").unwrap_or(name);
    matches!(
        n,
        ".kpatch.callbacks.pre_patch"
            | ".kpatch.callbacks.post_patch"
            | ".kpatch.callbacks.pre_unpatch"
            | ".kpatch.callbacks.post_unpatch"
    )
}

/// For the body of a system call (`__do_sys_<name>`, `__do_compat_sys_<name>`, which
/// the kernel builds notrace): the patch-author macro that makes it patchable.
pub fn syscall_define_hint(func: &str) -> Option<String> {
    let (name, compat) = match func.strip_prefix("__do_sys_") {
        Some(n) => (n, ""),
        None => (func.strip_prefix("__do_compat_sys_")?, "COMPAT_"),
    };
    Some(format!(
        "{func} is the body of the system call {name}: in the patched source, #include \
         \"kpatch-syscall.h\" and replace {compat}SYSCALL_DEFINEn({name}, ...) with \
         KPATCH_{compat}SYSCALL_DEFINEn({name}, ...); the patch then replaces the system \
         call's traceable entry points"
    ))
}

/// Where `KPATCH_STATE()` puts the patch's system-state declarations.
pub const STATES: &str = ".kpatch.states";

/// The system-state section or its relocations.
pub fn is_state_section(name: &str) -> bool {
    name.strip_prefix(".rela").unwrap_or(name) == STATES
}

/// Symbols the differ must never treat as sections' replacements in relocations.
pub fn is_unreplaceable_section_sym(name: &str) -> bool {
    matches!(
        name,
        ".toc" | ".fixup" | ".altinstr_replacement" | ".altinstr_aux" | ".text..refcount"
    ) || name.starts_with("__ftr_alt_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_bodies_get_the_define_hint() {
        let h = syscall_define_hint("__do_sys_newuname").unwrap();
        assert!(h.contains("KPATCH_SYSCALL_DEFINEn(newuname, ...)"), "{h}");
        let h = syscall_define_hint("__do_compat_sys_sysinfo").unwrap();
        assert!(h.contains("KPATCH_COMPAT_SYSCALL_DEFINEn(sysinfo"), "{h}");
        assert!(syscall_define_hint("do_sys_open").is_none());
    }

    #[test]
    fn mangled_names() {
        assert!(mangled_eq("foo.isra.3", "foo.isra.7"));
        assert!(mangled_eq(
            "foo.constprop.0.isra.0",
            "foo.constprop.1.isra.2"
        ));
        assert!(mangled_eq("__key.123", "__key.456"));
        assert!(mangled_eq(
            "__UNIQUE_ID_ddebug1131.186",
            "__UNIQUE_ID_ddebug1132.187"
        ));
        assert!(mangled_eq("foo.1", "foo"));
        assert!(!mangled_eq("foo.isra.3", "bar.isra.3"));
        assert!(!mangled_eq(".rodata.f.str1.1", ".rodata.f.str1.8"));
        assert!(!mangled_eq("__UNIQUE_ID_foo", "__UNIQUE_ID_fob"));
        assert!(mangled_eq(
            ".bss.__UNIQUE_ID_quirk1",
            ".bss.__UNIQUE_ID_quirk2"
        ));
        assert!(!mangled_eq(
            ".bss.__UNIQUE_ID_quirk1",
            ".data.__UNIQUE_ID_quirk1"
        ));
    }

    #[test]
    fn bundling() {
        assert!(is_bundleable(STT_FUNC, "foo", ".text.foo"));
        assert!(is_bundleable(STT_FUNC, "foo.cold", ".text.unlikely.foo"));
        assert!(is_bundleable(STT_OBJECT, "bar", ".data.rel.ro.bar"));
        assert!(!is_bundleable(STT_OBJECT, "foo", ".text.foo"));
    }

    #[test]
    fn special_statics() {
        assert!(is_special_static_name(
            STB_LOCAL,
            STT_OBJECT,
            "__warned.3",
            ".data.unlikely"
        ));
        assert!(is_special_static_name(
            STB_LOCAL,
            STT_OBJECT,
            "f.__func__",
            ".rodata"
        ));
        assert!(!is_special_static_name(
            STB_LOCAL,
            STT_OBJECT,
            "counter.1",
            ".bss.counter.1"
        ));
        // By name, not only because it usually lives in .data.once.
        assert!(is_special_static_name(
            STB_LOCAL,
            STT_OBJECT,
            "__already_done.7",
            ".data.unlikely"
        ));
    }
}
