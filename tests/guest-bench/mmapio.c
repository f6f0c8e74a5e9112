/*
 * mmapio: a file through a memory mapping, for the cofs test (the Debian
 * guest has no tool that maps a file MAP_SHARED and writes to it).
 *
 *   mmapio read FILE shared|private
 *        maps the whole of FILE read-only (MAP_SHARED or MAP_PRIVATE) and
 *        writes the mapped bytes to standard output;
 *   mmapio write FILE OFFSET TEXT
 *        maps the whole of FILE read-write MAP_SHARED, copies TEXT into
 *        the mapping at OFFSET, msync(MS_SYNC)s and unmaps it; prints
 *        "mmapio-write-ok".
 *
 * On failure it prints "mmapio-err-<step>-<errno>" (step: open, size,
 * mmap, range, msync, munmap; errno as a number, e.g. 19 = ENODEV) and
 * exits with 1.
 */
#include "bench.h"

#define SYS_open 5
#define SYS_close 6
#define SYS_lseek 19
#define SYS_old_mmap 90
#define SYS_munmap 91
#define SYS_msync 144

#define O_RDONLY 0
#define O_RDWR 2
#define SEEK_END 2
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 1
#define MAP_PRIVATE 2
#define MS_SYNC 4

/* The argument block of i386's old mmap(2) (system call 90). */
struct mmap_args {
	unsigned long addr;
	unsigned long len;
	unsigned long prot;
	unsigned long flags;
	unsigned long fd;
	unsigned long offset;
};

static int same(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

static int fail(const char *step, long r)
{
	struct out o = { .len = 0 };
	put_str(&o, "mmapio-err-");
	put_str(&o, step);
	put_str(&o, "-");
	put_u32(&o, (u32)-r, 1);
	put_str(&o, "\n");
	flush(&o);
	return 1;
}

/* Open FILE, find its size, map it whole; the address (or a negative errno
 * with *step saying where). */
static long map(const char *file, int writable, int shared, long *fd, u32 *len,
		const char **step)
{
	struct mmap_args a;
	long r;
	*step = "open";
	*fd = sys3(SYS_open, (long)file, writable ? O_RDWR : O_RDONLY, 0);
	if (*fd < 0)
		return *fd;
	*step = "size";
	r = sys3(SYS_lseek, *fd, 0, SEEK_END);
	if (r <= 0)
		return r < 0 ? r : -22;
	*len = (u32)r;
	*step = "mmap";
	a.addr = 0;
	a.len = *len;
	a.prot = PROT_READ | (writable ? PROT_WRITE : 0);
	a.flags = shared ? MAP_SHARED : MAP_PRIVATE;
	a.fd = (unsigned long)*fd;
	a.offset = 0;
	/* An address, or -4095..-1: an errno (the caller tells them apart). */
	return sys1(SYS_old_mmap, (long)&a);
}

int bench_main(int argc, char **argv)
{
	const char *step;
	long fd = -1, addr, r;
	u32 len = 0;
	if (argc == 4 && same(argv[1], "read")) {
		int shared = same(argv[3], "shared");
		addr = map(argv[2], 0, shared, &fd, &len, &step);
		if ((unsigned long)addr >= (unsigned long)-4095)
			return fail(step, addr);
		sys3(SYS_write, 1, addr, (long)len);
		sys2(SYS_munmap, addr, (long)len);
		sys1(SYS_close, fd);
		return 0;
	}
	if (argc == 5 && same(argv[1], "write")) {
		u32 off = parse_u32(argv[3], 0xffffffffu), n = 0, i;
		const char *text = argv[4];
		while (text[n])
			n++;
		addr = map(argv[2], 1, 1, &fd, &len, &step);
		if ((unsigned long)addr >= (unsigned long)-4095)
			return fail(step, addr);
		if (off > len || n > len - off)
			return fail("range", -22);
		for (i = 0; i < n; i++)
			((volatile char *)addr)[off + i] = text[i];
		r = sys3(SYS_msync, addr, (long)len, MS_SYNC);
		if (r < 0)
			return fail("msync", r);
		r = sys2(SYS_munmap, addr, (long)len);
		if (r < 0)
			return fail("munmap", r);
		sys1(SYS_close, fd);
		{
			struct out o = { .len = 0 };
			put_str(&o, "mmapio-write-ok\n");
			flush(&o);
		}
		return 0;
	}
	{
		struct out o = { .len = 0 };
		put_str(&o, "usage: mmapio read FILE shared|private | write FILE OFFSET TEXT\n");
		sys3(SYS_write, 2, (long)o.buf, (long)o.len);
	}
	return 2;
}
