/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Patch-author annotations for kpatch-rs live patches. The names match upstream
 * kpatch's, so existing patches build unchanged. Include with
 *   #include "kpatch-macros.h"
 * (kpatch-build puts this header on the include path).
 */
#ifndef _KPATCH_MACROS_H_
#define _KPATCH_MACROS_H_

#include <linux/compiler.h>
#include <linux/livepatch.h>

typedef int (*kpatch_pre_patch_fn)(struct klp_object *obj);
typedef void (*kpatch_callback_fn)(struct klp_object *obj);

struct kpatch_callback_entry {
	void *fn;
	char *objname;	/* filled in by kpatch-build */
};

#define __KPATCH_CALLBACK(kind, type, _fn)					\
	static inline type __kpatch_check_##kind##_##_fn(void) { return _fn; }	\
	static struct kpatch_callback_entry __kpatch_cb_##kind##_##_fn		\
	__used __section(".kpatch.callbacks." #kind) = { .fn = (void *)_fn };

/* Called before patching; a non-zero return aborts the load. */
#define KPATCH_PRE_PATCH_CALLBACK(fn) \
	__KPATCH_CALLBACK(pre_patch, kpatch_pre_patch_fn, fn)
/* Called after the patch is applied. */
#define KPATCH_POST_PATCH_CALLBACK(fn) \
	__KPATCH_CALLBACK(post_patch, kpatch_callback_fn, fn)
/* Called before the patch is removed. */
#define KPATCH_PRE_UNPATCH_CALLBACK(fn) \
	__KPATCH_CALLBACK(pre_unpatch, kpatch_callback_fn, fn)
/* Called after the patch is removed. */
#define KPATCH_POST_UNPATCH_CALLBACK(fn) \
	__KPATCH_CALLBACK(post_unpatch, kpatch_callback_fn, fn)

/* Treat changes to function @fn as if there were none. */
#define KPATCH_IGNORE_FUNCTION(fn)						\
	void *__kpatch_ignore_func_##fn __section(".kpatch.ignore.functions") = fn

/* Treat changes to section @sec (a string) as if there were none. */
#define KPATCH_IGNORE_SECTION(sec)						\
	char *__UNIQUE_ID(kpatch_ignore_section_) __section(".kpatch.ignore.sections") = sec

/* Patch @fn even though the safety checks would refuse it. */
#define KPATCH_FORCE_UNSAFE(fn)							\
	void *__kpatch_force_func_##fn __section(".kpatch.force") = fn

/*
 * Shadow variables: attach new state to existing objects without changing their
 * layout. Use the livepatch core's API directly:
 *   klp_shadow_get_or_alloc(obj, id, size, gfp, ctor, ctor_data)
 *   klp_shadow_get(obj, id), klp_shadow_free(obj, id, dtor)
 * Pick ids unique to your patch (e.g. KPATCH_SHADOW_ID(1)).
 */
#define KPATCH_SHADOW_ID(n) (0x6b700000UL + (n))

#endif /* _KPATCH_MACROS_H_ */
