/*
 * hostile MODE [N]: what an unprivileged guest user may try against the
 * passage. Each attempt must end in a signal to this process alone (or,
 * for "segment", run to its end), with the guest and the host unharmed.
 *
 *   sysenter  execute sysenter: with the host's SYSENTER MSRs live in the
 *             guest world it would enter ring 0 at the low half of the
 *             host's entry point; expected: SIGSEGV (#GP, SYSENTER_CS = 0)
 *   syscall   execute syscall: with EFER.SCE set in the guest world it
 *             would enter ring 0 through the host's STAR; expected:
 *             SIGILL (#UD)
 *   segment   hold a data segment based at 4 MiB (made with
 *             set_thread_area) in DS and ES while N loop iterations
 *             (default 200000000) let host interrupts enter the passage;
 *             expected: the loop ends, DS and ES still hold the segment,
 *             and it prints "hostile segment: survived, ds kept"
 */
#include "bench.h"

#define SYS_set_thread_area 243

/* struct user_desc of <asm/ldt.h>, flags as bits. */
struct user_desc {
	u32 entry_number;
	u32 base_addr;
	u32 limit;
	u32 flags;
};
#define UD_SEG_32BIT		0x01
#define UD_LIMIT_IN_PAGES	0x10

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

static void say(const char *s)
{
	struct out o = { .len = 0 };

	put_str(&o, s);
	put_str(&o, "\n");
	flush(&o);
}

static int segment(u32 loops)
{
	struct user_desc d = {
		.entry_number = (u32)-1,
		.base_addr = 0x00400000,
		.limit = 0xfffff,
		.flags = UD_SEG_32BIT | UD_LIMIT_IN_PAGES,
	};
	u32 sel, ds_after, es_after;

	if (sys1(SYS_set_thread_area, (long)&d) != 0) {
		say("hostile segment: set_thread_area failed");
		return 2;
	}
	sel = d.entry_number * 8 + 3;
	/* No memory access through DS or ES while they hold the segment. */
	__asm__ volatile("mov %%ds, %%esi\n\t"
			 "mov %3, %%ds\n\t"
			 "mov %3, %%es\n\t"
			 "1: dec %0\n\t"
			 "jnz 1b\n\t"
			 "mov %%ds, %1\n\t"
			 "mov %%es, %2\n\t"
			 "mov %%esi, %%ds\n\t"
			 "mov %%esi, %%es"
			 : "+r"(loops), "=&r"(ds_after), "=&r"(es_after)
			 : "r"(sel)
			 : "esi", "memory", "cc");
	if ((ds_after & 0xffff) != sel || (es_after & 0xffff) != sel) {
		say("hostile segment: DS or ES changed under the program");
		return 3;
	}
	say("hostile segment: survived, ds kept");
	return 0;
}

int bench_main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (streq(mode, "sysenter")) {
		__asm__ volatile("sysenter" : : : "memory");
		say("hostile sysenter: returned");
		return 1;
	}
	if (streq(mode, "syscall")) {
		__asm__ volatile("syscall" : : : "memory");
		say("hostile syscall: returned");
		return 1;
	}
	if (streq(mode, "segment"))
		return segment(parse_u32(argc > 2 ? argv[2] : 0, 200000000));
	say("usage: hostile sysenter|syscall|segment [N]");
	return 2;
}
