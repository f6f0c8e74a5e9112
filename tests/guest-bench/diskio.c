/*
 * diskio MODE DEVICE BLOCK COUNT START_MIB SPAN_MIB [JOBS]: direct I/O on
 * DEVICE (O_DIRECT, page-aligned buffer), the same binary in the guest and
 * natively in the test host, for `cargo xtask bench cobd`.
 *
 *   MODE seqread | seqwrite: COUNT blocks of BLOCK bytes one after the
 *        other from START_MIB MiB;
 *   MODE randread | randwrite: COUNT blocks of BLOCK bytes at random
 *        block-aligned offsets in START_MIB .. START_MIB + SPAN_MIB MiB,
 *        by JOBS processes (default 1) each doing its share.
 *
 * Writes end with fdatasync(), inside the timed part, so the figure is of
 * data that reached the device. Timed by CLOCK_MONOTONIC; prints one line:
 *   diskio mode=<MODE> bs=<BLOCK> n=<COUNT> jobs=<JOBS> s=<seconds> err=<0|errno>
 */
#include "bench.h"

#define SYS_fork 2
#define SYS_open 5
#define SYS_waitpid 7
#define SYS_fdatasync 148
#define SYS_pread64 180
#define SYS_pwrite64 181

#define O_RDONLY 0
#define O_RDWR 2
#define O_DIRECT 040000
#define O_LARGEFILE 0100000

#define MAX_BLOCK (1u << 20)

static char buf[MAX_BLOCK] __attribute__((aligned(4096)));

static inline long sys5(long nr, long a, long b, long c, long d, long e)
{
	long r;
	__asm__ volatile("int $0x80"
			 : "=a"(r)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory");
	return r;
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* xorshift32 */
static u32 next_rand(u32 *s)
{
	u32 x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

/* COUNT blocks; the first error (a negative errno) or 0. */
static long run(int fd, int write, int random, u32 block, u32 count,
		unsigned long long start, unsigned long long span, u32 seed)
{
	u32 i, blocks = (u32)(span >> 9) / (block >> 9);
	long r;
	for (i = 0; i < count; i++) {
		unsigned long long at;
		if (random)
			at = start + (unsigned long long)(next_rand(&seed) % blocks) * block;
		else
			at = start + (unsigned long long)i * block;
		r = sys5(write ? SYS_pwrite64 : SYS_pread64, fd, (long)buf, (long)block,
			 (long)(u32)at, (long)(u32)(at >> 32));
		if (r < 0)
			return r;
		if ((u32)r != block)
			return -5; /* EIO: short transfer */
	}
	if (write) {
		r = sys1(SYS_fdatasync, fd);
		if (r < 0)
			return r;
	}
	return 0;
}

int bench_main(int argc, char **argv)
{
	struct bench_time t0, t1;
	struct out o = { .len = 0 };
	const char *mode = argc > 1 ? argv[1] : "";
	u32 block, count, jobs, j, i;
	unsigned long long start, span;
	int write, random, fd;
	long err = 0;

	if (argc < 7) {
		put_str(&o, "usage: diskio MODE DEVICE BLOCK COUNT START_MIB SPAN_MIB [JOBS]\n");
		flush(&o);
		return 2;
	}
	write = same(mode, "seqwrite") || same(mode, "randwrite");
	random = same(mode, "randread") || same(mode, "randwrite");
	if (!write && !random && !same(mode, "seqread")) {
		put_str(&o, "diskio: unknown mode\n");
		flush(&o);
		return 2;
	}
	block = parse_u32(argv[3], 0);
	count = parse_u32(argv[4], 0);
	start = (unsigned long long)parse_u32(argv[5], 0) << 20;
	span = (unsigned long long)parse_u32(argv[6], 0) << 20;
	jobs = parse_u32(argc > 7 ? argv[7] : 0, 1);
	if (block == 0 || block > MAX_BLOCK || block % 512 || count == 0 || jobs == 0 ||
	    (random && span < block)) {
		put_str(&o, "diskio: bad sizes\n");
		flush(&o);
		return 2;
	}
	fd = (int)sys3(SYS_open, (long)argv[2],
		       (write ? O_RDWR : O_RDONLY) | O_DIRECT | O_LARGEFILE, 0);
	if (fd < 0) {
		put_str(&o, "diskio: cannot open the device: errno ");
		put_u32(&o, (u32)-fd, 1);
		put_str(&o, "\n");
		flush(&o);
		return 1;
	}
	for (i = 0; i < block; i++)
		buf[i] = (char)(i * 7 + 1);
	now(&t0);
	if (jobs == 1) {
		err = run(fd, write, random, block, count, start, span, 2463534242u);
	} else {
		for (j = 0; j < jobs; j++) {
			long pid = sys0(SYS_fork);
			if (pid == 0) {
				long r = run(fd, write, random, block, count / jobs, start, span,
					     2463534242u + 7919u * j);
				sys1(SYS_exit, r < 0 ? (int)-r : 0);
			}
			if (pid < 0)
				err = pid;
		}
		for (j = 0; j < jobs; j++) {
			int status = 0;
			if (sys3(SYS_waitpid, -1, (long)&status, 0) < 0)
				break;
			if (((status >> 8) & 0xff) != 0 && err == 0)
				err = -((status >> 8) & 0xff);
		}
		count = count / jobs * jobs;
	}
	now(&t1);
	put_str(&o, "diskio mode=");
	put_str(&o, mode);
	put_str(&o, " bs=");
	put_u32(&o, block, 1);
	put_str(&o, " n=");
	put_u32(&o, count, 1);
	put_str(&o, " jobs=");
	put_u32(&o, jobs, 1);
	put_str(&o, " s=");
	put_time(&o, elapsed(t0, t1));
	put_str(&o, " err=");
	put_u32(&o, (u32)-err, 1);
	put_str(&o, "\n");
	flush(&o);
	return err ? 1 : 0;
}
