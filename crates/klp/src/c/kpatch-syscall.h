/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Patching system calls (x86_64 kernels 5.7 and later: Debian's 6.1 and 6.12).
 *
 * SYSCALL_DEFINEn(name, ...) puts the body of a system call in
 * __do_sys_<name>(), declared `static inline`. The kernel builds every inline
 * function notrace, so when gcc keeps __do_sys_<name>() out of line it has no ftrace
 * hook and a change to it cannot be live-patched. The entry points the kernel calls,
 * __x64_sys_<name>() and __ia32_sys_<name>() (the syscall table's wrappers), are
 * ordinary traceable functions.
 *
 * Replace SYSCALL_DEFINEn with KPATCH_SYSCALL_DEFINEn (and COMPAT_SYSCALL_DEFINEn
 * with KPATCH_COMPAT_SYSCALL_DEFINEn) in the patched source. The body then goes into
 * __kpatch_do_sys_<name>(), a function the running kernel does not have (a new
 * function needs no ftrace hook), and the wrappers that call it change: the patch
 * module replaces __x64_sys_<name>() and __ia32_sys_<name>() (or, for compat calls,
 * __ia32_compat_sys_<name>() and __x64_compat_sys_<name>()), which are traceable.
 *
 * The wrappers are generated with the kernel's own stub macros from
 * <asm/syscall_wrapper.h>, so they take their arguments exactly as the originals do.
 * The system call's tracing metadata is not generated again (the running kernel keeps
 * its own): placeholders with the original's names keep the metadata sections'
 * layout, and the differ is told to ignore those sections.
 */
#ifndef _KPATCH_SYSCALL_H_
#define _KPATCH_SYSCALL_H_

#include "kpatch-macros.h"

#ifdef CONFIG_FTRACE_SYSCALLS
/* Stand-ins for SYSCALL_METADATA()'s section entries, with the same names. */
#define __KPATCH_SYSCALL_META(sname)						\
	static struct syscall_metadata __used					\
		__section("__syscalls_metadata")				\
		*__p_syscall_meta_##sname = NULL;				\
	KPATCH_IGNORE_SECTION("__syscalls_metadata")				\
	static struct trace_event_call __used					\
		__section("_ftrace_events")					\
		*__event_enter_##sname = NULL;					\
	static struct trace_event_call __used					\
		__section("_ftrace_events")					\
		*__event_exit_##sname = NULL;					\
	KPATCH_IGNORE_SECTION("_ftrace_events")
#else
#define __KPATCH_SYSCALL_META(sname)
#endif

#if defined(CONFIG_X86_64) && LINUX_VERSION_CODE >= KERNEL_VERSION(5, 7, 0)

/*
 * A system call without arguments needs nothing special: the kernel's body
 * __do_sys_<name>() is an ordinary static function there (traceable), and the entry
 * points are aliases of it, so a change to it is patched directly (with its aliases).
 */
#define KPATCH_SYSCALL_DEFINE0(sname) SYSCALL_DEFINE0(sname)

/* The kernel's __SYSCALL_DEFINEx() with the body renamed. */
#define __KPATCH_SYSCALL_DEFINEx(x, name, ...)					\
	static long __se_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__));		\
	static inline long __kpatch_do_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__)); \
	__X64_SYS_STUBx(x, name, __VA_ARGS__)					\
	__IA32_SYS_STUBx(x, name, __VA_ARGS__)					\
	static long __se_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__))		\
	{									\
		long ret = __kpatch_do_sys##name(__MAP(x, __SC_CAST, __VA_ARGS__)); \
		__MAP(x, __SC_TEST, __VA_ARGS__);				\
		__PROTECT(x, ret, __MAP(x, __SC_ARGS, __VA_ARGS__));		\
		return ret;							\
	}									\
	static inline long __kpatch_do_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__))

#ifdef CONFIG_COMPAT
/* Compat system calls: the ia32 and x32 entry points of COMPAT_SYSCALL_DEFINEn. */
#define KPATCH_COMPAT_SYSCALL_DEFINE0(name) COMPAT_SYSCALL_DEFINE0(name)

#define __KPATCH_COMPAT_SYSCALL_DEFINEx(x, name, ...)				\
	static long __se_compat_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__));	\
	static inline long __kpatch_do_compat_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__)); \
	__IA32_COMPAT_SYS_STUBx(x, name, __VA_ARGS__)				\
	__X32_COMPAT_SYS_STUBx(x, name, __VA_ARGS__)				\
	static long __se_compat_sys##name(__MAP(x, __SC_LONG, __VA_ARGS__))	\
	{									\
		return __kpatch_do_compat_sys##name(__MAP(x, __SC_DELOUSE, __VA_ARGS__)); \
	}									\
	static inline long __kpatch_do_compat_sys##name(__MAP(x, __SC_DECL, __VA_ARGS__))

#define KPATCH_COMPAT_SYSCALL_DEFINE1(name, ...) \
	__KPATCH_COMPAT_SYSCALL_DEFINEx(1, _##name, __VA_ARGS__)
#define KPATCH_COMPAT_SYSCALL_DEFINE2(name, ...) \
	__KPATCH_COMPAT_SYSCALL_DEFINEx(2, _##name, __VA_ARGS__)
#define KPATCH_COMPAT_SYSCALL_DEFINE3(name, ...) \
	__KPATCH_COMPAT_SYSCALL_DEFINEx(3, _##name, __VA_ARGS__)
#define KPATCH_COMPAT_SYSCALL_DEFINE4(name, ...) \
	__KPATCH_COMPAT_SYSCALL_DEFINEx(4, _##name, __VA_ARGS__)
#define KPATCH_COMPAT_SYSCALL_DEFINE5(name, ...) \
	__KPATCH_COMPAT_SYSCALL_DEFINEx(5, _##name, __VA_ARGS__)
#define KPATCH_COMPAT_SYSCALL_DEFINE6(name, ...) \
	__KPATCH_COMPAT_SYSCALL_DEFINEx(6, _##name, __VA_ARGS__)
#endif /* CONFIG_COMPAT */

#define KPATCH_SYSCALL_DEFINEx(x, sname, ...)					\
	__KPATCH_SYSCALL_META(sname)						\
	__KPATCH_SYSCALL_DEFINEx(x, sname, __VA_ARGS__)

#define KPATCH_SYSCALL_DEFINE1(name, ...) KPATCH_SYSCALL_DEFINEx(1, _##name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE2(name, ...) KPATCH_SYSCALL_DEFINEx(2, _##name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE3(name, ...) KPATCH_SYSCALL_DEFINEx(3, _##name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE4(name, ...) KPATCH_SYSCALL_DEFINEx(4, _##name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE5(name, ...) KPATCH_SYSCALL_DEFINEx(5, _##name, __VA_ARGS__)
#define KPATCH_SYSCALL_DEFINE6(name, ...) KPATCH_SYSCALL_DEFINEx(6, _##name, __VA_ARGS__)

#else
/* Other architectures and older kernels: no KPATCH_SYSCALL_DEFINEn here, so a patch
 * that uses them fails to compile instead of building something untested. */
#endif /* CONFIG_X86_64 && >= 5.7 */

#endif /* _KPATCH_SYSCALL_H_ */
