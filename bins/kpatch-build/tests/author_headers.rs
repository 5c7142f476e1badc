//! The patch-author headers compile, with every macro of the API, against the headers of
//! Debian's 6.1 and 6.12 kernels, with warnings as errors: an object built with kbuild
//! uses each macro the way a patch would (the kernel-facing behaviour is checked by the
//! patch corpora). Only the object is built: a patch's references to unexported kernel
//! symbols become klp relocations in kpatch-build, not module imports.

use std::process::Command;

use testbed::KernelSeries;

const MACROS_H: &str = include_str!("../../../crates/klp/src/c/kpatch-macros.h");
const SYSCALL_H: &str = include_str!("../../../crates/klp/src/c/kpatch-syscall.h");

/// Every macro, in the forms upstream kpatch's patches use them (with and without a
/// semicolon after the file-scope ones).
const USES_EVERY_MACRO: &str = r#"
#include <linux/module.h>
#include <linux/syscalls.h>
#include <linux/compat.h>
#include <linux/static_call.h>
#include "kpatch-macros.h"

static int kp_pre(patch_object *obj)
{
	KPATCH_PRINTK(KERN_INFO "pre %s\n", obj->name ? obj->name : "vmlinux");
	return 0;
}
static void kp_post(patch_object *obj)
{
	KPATCH_PRINTK_DEFERRED(KERN_INFO "post\n");
}
static void kp_pre_unpatch(patch_object *obj) { }
static void kp_post_unpatch(patch_object *obj) { }
KPATCH_PRE_PATCH_CALLBACK(kp_pre);
KPATCH_POST_PATCH_CALLBACK(kp_post)
KPATCH_PRE_UNPATCH_CALLBACK(kp_pre_unpatch);
KPATCH_POST_UNPATCH_CALLBACK(kp_post_unpatch)

static kpatch_pre_patch_call_t kp_typed = kp_pre;

static noinline int kp_helper(int x)
{
	return x + 1;
}
KPATCH_IGNORE_FUNCTION(kp_helper);
KPATCH_FORCE_UNSAFE(kp_helper)
KPATCH_IGNORE_SECTION(".data");

#define KP_SHADOW KPATCH_SHADOW_ID(3)
KPATCH_STATE(1, 1);
KPATCH_STATE(2, 3, KP_SHADOW, KPATCH_SHADOW_ID(4))

DEFINE_STATIC_CALL(kp_call, kp_helper);
static __used int kp_use_static_call(int x)
{
	return KPATCH_STATIC_CALL(kp_call)(x) + kp_typed(NULL);
}

KPATCH_SYSCALL_DEFINE0(kpatch_test0)
{
	return 0;
}
KPATCH_SYSCALL_DEFINE1(kpatch_test1, int, a)
{
	return a;
}
KPATCH_SYSCALL_DEFINE2(kpatch_test2, int, a, long, b)
{
	return a + b;
}
KPATCH_SYSCALL_DEFINE3(kpatch_test3, int, a, long, b, const char __user *, c)
{
	return a + b + (c != NULL);
}
KPATCH_SYSCALL_DEFINE4(kpatch_test4, int, a, long, b, unsigned int, c, u64, d)
{
	return a + b + c + d;
}
KPATCH_SYSCALL_DEFINE5(kpatch_test5, int, a, long, b, unsigned int, c, u64, d, int, e)
{
	return a + b + c + d + e;
}
KPATCH_SYSCALL_DEFINE6(kpatch_test6, int, a, long, b, unsigned int, c, u64, d, int, e,
		       unsigned long, f)
{
	return a + b + c + d + e + f;
}
#ifdef CONFIG_COMPAT
KPATCH_COMPAT_SYSCALL_DEFINE0(kpatch_test0)
{
	return 0;
}
KPATCH_COMPAT_SYSCALL_DEFINE1(kpatch_test1, compat_int_t, a)
{
	return a;
}
KPATCH_COMPAT_SYSCALL_DEFINE3(kpatch_test3, compat_int_t, a, compat_long_t, b,
			      compat_uptr_t, c)
{
	return a + b + c;
}
KPATCH_COMPAT_SYSCALL_DEFINE6(kpatch_test6, compat_int_t, a, compat_long_t, b,
			      compat_uint_t, c, compat_ulong_t, d, compat_int_t, e,
			      compat_ulong_t, f)
{
	return a + b + c + d + e + f;
}
#endif

MODULE_LICENSE("GPL");
"#;

fn headers_compile(series: KernelSeries) {
    testbed::init_test_logging();
    let kernel = testbed::test_kernel(series.clone());
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("kpatch-macros.h", MACROS_H),
        ("kpatch-syscall.h", SYSCALL_H),
        ("author_api.c", USES_EVERY_MACRO),
        (
            "Kbuild",
            "obj-m += author_api.o\nccflags-y += -Werror -I$(src)\n",
        ),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new("make")
        .arg("-C")
        .arg(&kernel.headers_dir)
        .arg(format!("M={}", dir.path().display()))
        .arg("author_api.o")
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the author API does not compile on {series}:\n{log}"
    );
    let obj = dir.path().join("author_api.o");
    // What the macros emit is there for the differ to find.
    let out = Command::new("readelf")
        .args(["-SW"])
        .arg(&obj)
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&out.stdout);
    for s in [
        ".kpatch.callbacks.pre_patch",
        ".kpatch.callbacks.post_unpatch",
        ".kpatch.ignore.functions",
        ".kpatch.ignore.sections",
        ".kpatch.force",
        ".kpatch.states",
    ] {
        assert!(sections.contains(s), "{s} missing from the object");
    }
    let out = Command::new("nm").arg(&obj).output().unwrap();
    let symbols = String::from_utf8_lossy(&out.stdout);
    for s in [
        " __x64_sys_kpatch_test1",
        " __ia32_sys_kpatch_test6",
        " __x64_sys_kpatch_test3",
        " __x64_sys_kpatch_test0",
        " __ia32_compat_sys_kpatch_test1",
        " __x64_compat_sys_kpatch_test6",
    ] {
        assert!(symbols.contains(s), "no{s} in the object");
    }
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn author_headers_compile_on_6_1() {
    headers_compile(KernelSeries::V6_1);
}

#[test]
#[cfg_attr(testbed_skip, ignore = "KPATCH_TESTBED_SKIP is set")]
fn author_headers_compile_on_6_12() {
    headers_compile(KernelSeries::V6_12);
}
