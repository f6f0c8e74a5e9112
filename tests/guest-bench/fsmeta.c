/*
 * fsmeta DIR COUNT: a metadata-heavy workload in DIR, the same binary in
 * the guest and natively in the test host, for `cargo xtask bench cofs`.
 *
 * Makes DIR/fsmeta.d, then in three timed phases: creates COUNT files in
 * it (open O_CREAT|O_EXCL, a 64-byte write, close), stats each (by name),
 * unlinks each; removes the directory. Timed by CLOCK_MONOTONIC; prints
 * one line:
 *   fsmeta n=<COUNT> create=<s> stat=<s> unlink=<s> err=<0|errno>
 */
#include "bench.h"

#define SYS_open 5
#define SYS_close 6
#define SYS_unlink 10
#define SYS_mkdir 39
#define SYS_rmdir 40
#define SYS_stat64 195

#define O_WRONLY 1
#define O_CREAT 0100
#define O_EXCL 0200

static char path[4096];
static char data[64];
/* struct stat64 of i386 is 96 bytes. */
static char st[128];

/* DIR/fsmeta.d/f<i> into path (or DIR/fsmeta.d when i < 0). */
static void name(const char *dir, long i)
{
	u32 n = 0, k;
	char tmp[12];
	int t = 0;
	const char *sub = "/fsmeta.d";
	while (dir[n] && n < sizeof(path) - 32) {
		path[n] = dir[n];
		n++;
	}
	for (k = 0; sub[k]; k++)
		path[n++] = sub[k];
	if (i >= 0) {
		u32 v = (u32)i;
		path[n++] = '/';
		path[n++] = 'f';
		do {
			tmp[t++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		while (t > 0)
			path[n++] = tmp[--t];
	}
	path[n] = 0;
}

static struct bench_time t0;

static void mark(struct out *o, const char *what)
{
	struct bench_time t1;
	now(&t1);
	put_str(o, what);
	put_time(o, elapsed(t0, t1));
	t0 = t1;
}

int bench_main(int argc, char **argv)
{
	struct out o = { .len = 0 };
	u32 count, i;
	long r = 0, fd;
	const char *dir;
	if (argc != 3) {
		put_str(&o, "usage: fsmeta DIR COUNT\n");
		sys3(SYS_write, 2, (long)o.buf, (long)o.len);
		return 2;
	}
	dir = argv[1];
	count = parse_u32(argv[2], 0);
	for (i = 0; i < sizeof(data); i++)
		data[i] = (char)('a' + i % 26);
	put_str(&o, "fsmeta n=");
	put_u32(&o, count, 1);
	name(dir, -1);
	r = sys2(SYS_mkdir, (long)path, 0755);
	if (r < 0)
		goto out;
	now(&t0);
	for (i = 0; i < count; i++) {
		name(dir, (long)i);
		fd = sys3(SYS_open, (long)path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0) {
			r = fd;
			goto out;
		}
		r = sys3(SYS_write, fd, (long)data, sizeof(data));
		sys1(SYS_close, fd);
		if (r != (long)sizeof(data)) {
			r = r < 0 ? r : -5;
			goto out;
		}
	}
	mark(&o, " create=");
	for (i = 0; i < count; i++) {
		name(dir, (long)i);
		r = sys2(SYS_stat64, (long)path, (long)st);
		if (r < 0)
			goto out;
	}
	mark(&o, " stat=");
	for (i = 0; i < count; i++) {
		name(dir, (long)i);
		r = sys1(SYS_unlink, (long)path);
		if (r < 0)
			goto out;
	}
	mark(&o, " unlink=");
	name(dir, -1);
	r = sys1(SYS_rmdir, (long)path);
out:
	put_str(&o, " err=");
	put_u32(&o, r < 0 ? (u32)-r : 0, 1);
	put_str(&o, "\n");
	flush(&o);
	return r < 0;
}
