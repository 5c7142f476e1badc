/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The patch-author API of kpatch-rs live patches.
 *
 * kpatch-build puts this header (and kpatch-syscall.h) on the include path of every
 * object it compiles, so a patch only needs
 *
 *	#include "kpatch-macros.h"
 *
 * The macro names, their arguments and the types they use are those of upstream
 * kpatch, so patches written for upstream kpatch build unchanged. Each file-scope
 * macro ends its own declaration: writing a semicolon after it is optional.
 *
 * The differ recognises what these macros emit by section name (.kpatch.*) and
 * carries it into the patch module; the module's patch hook (patch-hook.c) turns it
 * into the livepatch core's klp_patch.
 */
#ifndef _KPATCH_MACROS_H_
#define _KPATCH_MACROS_H_

#include <linux/compiler.h>
#include <linux/version.h>
#include <linux/printk.h>
#include <linux/build_bug.h>
#include <linux/livepatch.h>

/* The livepatch core runs the callbacks (upstream kpatch tests for this macro). */
#define HAS_LIVEPATCH_CALLBACKS 1

/* What a callback receives: the object (vmlinux or a module) being (un)patched. */
typedef struct klp_object patch_object;

typedef int (*kpatch_pre_patch_call_t)(patch_object *obj);
typedef void (*kpatch_post_patch_call_t)(patch_object *obj);
typedef void (*kpatch_pre_unpatch_call_t)(patch_object *obj);
typedef void (*kpatch_post_unpatch_call_t)(patch_object *obj);

/*
 * One callback: the function and the object it belongs to. The differ fills in
 * objname (the parent of the object file the callback is defined in: "vmlinux" or
 * the module's name) when it writes the patch's output object.
 */
struct kpatch_callback_entry {
	void *fn;
	char *objname;
};

/*
 * The inline function checks the callback's type at compile time and costs nothing
 * (it is never called). The kernel takes one callback of each kind per object; the
 * fixed names make a second one of a kind in the same file a compile error, and the
 * patch module refuses to load (with a message) when two files of one object each
 * register one.
 */
#define __KPATCH_CALLBACK(kind, type, _fn)					\
	static inline type __kpatch_typecheck_##kind(void)			\
	{									\
		return _fn;							\
	}									\
	static struct kpatch_callback_entry __kpatch_callback_##kind		\
		__used __section(".kpatch.callbacks." #kind) = {		\
		.fn = (void *)_fn,						\
	};

/*
 * Callbacks (Documentation/livepatch/callbacks.rst). For vmlinux and for modules
 * already loaded they run when the patch is enabled or disabled; for a module loaded
 * later, when that module loads (pre/post-patch, before its init code) or unloads.
 *
 * KPATCH_PRE_PATCH_CALLBACK(fn):   int fn(patch_object *obj), before patching;
 *                                  non-zero aborts (the patch, or the module's load).
 * KPATCH_POST_PATCH_CALLBACK(fn):  void fn(patch_object *obj), after patching.
 * KPATCH_PRE_UNPATCH_CALLBACK(fn): void fn(patch_object *obj), before unpatching.
 * KPATCH_POST_UNPATCH_CALLBACK(fn): void fn(patch_object *obj), after unpatching.
 */
#define KPATCH_PRE_PATCH_CALLBACK(_fn) \
	__KPATCH_CALLBACK(pre_patch, kpatch_pre_patch_call_t, _fn)
#define KPATCH_POST_PATCH_CALLBACK(_fn) \
	__KPATCH_CALLBACK(post_patch, kpatch_post_patch_call_t, _fn)
#define KPATCH_PRE_UNPATCH_CALLBACK(_fn) \
	__KPATCH_CALLBACK(pre_unpatch, kpatch_pre_unpatch_call_t, _fn)
#define KPATCH_POST_UNPATCH_CALLBACK(_fn) \
	__KPATCH_CALLBACK(post_unpatch, kpatch_post_unpatch_call_t, _fn)

/*
 * KPATCH_IGNORE_FUNCTION(fn): count function fn as unchanged even if its code differs
 * (e.g. it only changed as a side effect of another change).
 */
#define KPATCH_IGNORE_FUNCTION(_fn)						\
	void *__kpatch_ignore_func_##_fn					\
		__section(".kpatch.ignore.functions") = _fn;

/*
 * KPATCH_IGNORE_SECTION(name): count the section called name (a string) as unchanged.
 */
#define KPATCH_IGNORE_SECTION(_sec)						\
	char *__UNIQUE_ID(kpatch_ignore_section_)				\
		__section(".kpatch.ignore.sections") = _sec;

/*
 * KPATCH_FORCE_UNSAFE(fn): mark fn as safe to run in its old and new versions at the
 * same time. Accepted for compatibility and reported by the differ; the kernel's
 * livepatch consistency model has no per-function override, so the transition still
 * waits for every task to leave the old code.
 */
#define KPATCH_FORCE_UNSAFE(_fn)						\
	void *__kpatch_force_func_##_fn __section(".kpatch.force") = _fn;

/*
 * A condition that is always true but that the compiler cannot see through: code
 * under it is a separate, conditional path. printk() is declared __cold, and gcc
 * treats every path that must reach a cold call as cold: a patched function with an
 * unconditional printk() can move to .text.unlikely, or have callees uninlined, which
 * makes the patch far bigger than the change (or unpatchable).
 */
static __always_inline int __kpatch_opaque_true(void)
{
	int t = 1;

	asm volatile("" : "+r" (t));
	return t;
}

/* KPATCH_PRINTK(fmt, ...): printk() without making the calling code path cold. */
#define KPATCH_PRINTK(_fmt, ...)						\
({										\
	if (__kpatch_opaque_true())						\
		printk(_fmt, ##__VA_ARGS__);					\
})

/*
 * KPATCH_PRINTK_DEFERRED(fmt, ...): the same with printk_deferred(), for code that
 * runs with the runqueue lock held (where printk() could deadlock).
 */
#define KPATCH_PRINTK_DEFERRED(_fmt, ...)					\
({										\
	if (__kpatch_opaque_true())						\
		printk_deferred(_fmt, ##__VA_ARGS__);				\
})

/*
 * KPATCH_STATIC_CALL(name): use instead of static_call(name) when the differ says the
 * static call's key lives in a module. The call goes through the key's current
 * function pointer (an indirect call) instead of the trampoline, so the patch module
 * needs no static call site the module loader would have to fix up.
 */
#define KPATCH_STATIC_CALL(name)						\
	((typeof(STATIC_CALL_TRAMP(name)) *)READ_ONCE(STATIC_CALL_KEY(name).func))

/*
 * Shadow variables attach new data to existing objects without changing their layout.
 * Use the livepatch core's API (klp_shadow_get_or_alloc(), klp_shadow_get(),
 * klp_shadow_free(), klp_shadow_free_all()); KPATCH_SHADOW_ID(n) gives ids that are
 * unlikely to collide with another patch's.
 */
#define KPATCH_SHADOW_ID(n) (0x6b700000UL + (n))

/*
 * System states (Documentation/livepatch/system-state.rst).
 *
 * KPATCH_STATE(id, version[, shadow_id...]) declares that the patch sets up (or keeps)
 * system state @id at @version: its klp_patch.states lists it. The kernel then refuses
 * an atomic-replace patch that does not declare @id, or declares an older version, for
 * as long as this patch is enabled, so that a replacement cannot silently drop what
 * this one set up. In a callback, klp_get_prev_state(id) says whether a loaded patch
 * already set the state up (and at which version).
 *
 * The optional shadow_ids (at most KPATCH_STATE_MAX_SHADOWS) are the shadow variable
 * ids that belong to the state: when the patch is disabled and no remaining patch
 * declares the state, they are freed (klp_shadow_free_all(id, NULL)) after the
 * patch's own post-unpatch callback. A replacement that declares the state takes
 * them over.
 *
 * @id must be a non-zero constant; declare each id once per patch.
 */
#define KPATCH_STATE_MAX_SHADOWS 8

struct kpatch_state_entry {
	unsigned long id;
	unsigned long version;
	unsigned long nr_shadows;
	unsigned long shadow_ids[KPATCH_STATE_MAX_SHADOWS];
};

#define __KPATCH_STATE_COUNT(...)						\
	(sizeof((unsigned long[]){ 0, ##__VA_ARGS__ }) / sizeof(unsigned long) - 1)

#define KPATCH_STATE(_id, _version, ...)					\
	static_assert((_id) != 0, "KPATCH_STATE: the id must not be 0");	\
	static_assert((_version) <= 0xffffffffUL,				\
		      "KPATCH_STATE: the version must fit in 32 bits");		\
	static_assert(__KPATCH_STATE_COUNT(__VA_ARGS__) <=			\
			      KPATCH_STATE_MAX_SHADOWS,				\
		      "KPATCH_STATE: too many shadow variable ids");		\
	static struct kpatch_state_entry __UNIQUE_ID(kpatch_state_)		\
		__used __section(".kpatch.states") __aligned(8) = {		\
		.id = (_id),							\
		.version = (_version),						\
		.nr_shadows = __KPATCH_STATE_COUNT(__VA_ARGS__),		\
		.shadow_ids = { __VA_ARGS__ },					\
	};

#include "kpatch-syscall.h"

#endif /* _KPATCH_MACROS_H_ */
