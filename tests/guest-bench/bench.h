/*
 * Freestanding i386 Linux helpers for the guest benchmarks: no libc, no
 * libgcc. System calls go through `int $0x80`; `_start` hands the initial
 * stack (argc, argv) to `bench_main`, whose return value is the exit status.
 * Built by xtask (`xtask::bench::build_guest_bench`) with
 * `gcc -m32 -static -nostdlib -fno-pie -no-pie -O2`.
 */
#ifndef COLINUX_GUEST_BENCH_H
#define COLINUX_GUEST_BENCH_H

typedef unsigned int u32;
typedef long long s64;

#define SYS_exit 1
#define SYS_write 4
#define SYS_getppid 64
#define SYS_clock_gettime 265
#define SYS_clock_gettime64 403
#define CLOCK_MONOTONIC 1

static inline long sys0(long nr)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr) : "memory");
	return r;
}

static inline long sys1(long nr, long a)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a) : "memory");
	return r;
}

static inline long sys2(long nr, long a, long b)
{
	long r;
	__asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
	return r;
}

static inline long sys3(long nr, long a, long b, long c)
{
	long r;
	__asm__ volatile("int $0x80"
			 : "=a"(r)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory");
	return r;
}

int bench_main(int argc, char **argv);

/* The entry point: argc at 0(%esp), argv from 4(%esp). */
__asm__(".text\n"
	".globl _start\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movl (%esp), %eax\n"
	"	leal 4(%esp), %edx\n"
	"	andl $-16, %esp\n"
	"	subl $8, %esp\n"
	"	pushl %edx\n"
	"	pushl %eax\n"
	"	call bench_main\n"
	"	movl %eax, %ebx\n"
	"	movl $1, %eax\n"
	"	int $0x80\n"
	"	hlt\n");

/* A monotonic time as seconds and nanoseconds. */
struct bench_time {
	u32 sec;
	u32 nsec;
};

static __attribute__((unused)) void now(struct bench_time *t)
{
	struct {
		s64 sec;
		s64 nsec;
	} t64;
	struct {
		long sec;
		long nsec;
	} t32;
	if (sys2(SYS_clock_gettime64, CLOCK_MONOTONIC, (long)&t64) == 0) {
		t->sec = (u32)t64.sec;
		t->nsec = (u32)t64.nsec;
	} else if (sys2(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&t32) == 0) {
		t->sec = (u32)t32.sec;
		t->nsec = (u32)t32.nsec;
	} else {
		t->sec = 0;
		t->nsec = 0;
	}
}

/* b - a, normalised. */
static __attribute__((unused)) struct bench_time elapsed(struct bench_time a, struct bench_time b)
{
	struct bench_time d;
	d.sec = b.sec - a.sec;
	if (b.nsec >= a.nsec) {
		d.nsec = b.nsec - a.nsec;
	} else {
		d.sec -= 1;
		d.nsec = b.nsec + 1000000000u - a.nsec;
	}
	return d;
}

/* A small output buffer, written with one write(1). */
struct out {
	char buf[256];
	u32 len;
};

static __attribute__((unused)) void put_str(struct out *o, const char *s)
{
	while (*s && o->len < sizeof(o->buf))
		o->buf[o->len++] = *s++;
}

/* `v` in decimal, at least `width` digits (zero-padded). */
static __attribute__((unused)) void put_u32(struct out *o, u32 v, int width)
{
	char tmp[10];
	int n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n < width && n < 10)
		tmp[n++] = '0';
	while (n > 0 && o->len < sizeof(o->buf))
		o->buf[o->len++] = tmp[--n];
}

static __attribute__((unused)) void put_hex(struct out *o, u32 v)
{
	int i;
	for (i = 28; i >= 0 && o->len < sizeof(o->buf); i -= 4)
		o->buf[o->len++] = "0123456789abcdef"[(v >> i) & 15];
}

static __attribute__((unused)) void put_time(struct out *o, struct bench_time t)
{
	put_u32(o, t.sec, 1);
	put_str(o, ".");
	put_u32(o, t.nsec, 9);
}

static __attribute__((unused)) void flush(struct out *o)
{
	sys3(SYS_write, 1, (long)o->buf, (long)o->len);
	o->len = 0;
}

/* A decimal argument; `fallback` when absent or not a number. */
static __attribute__((unused)) u32 parse_u32(const char *s, u32 fallback)
{
	u32 v = 0;
	if (!s || !*s)
		return fallback;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return fallback;
		v = v * 10 + (u32)(*s - '0');
	}
	return v;
}

#endif
