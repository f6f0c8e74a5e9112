/*
 * netio: TCP throughput and round trips, the same binary in the guest and
 * natively in the test host, for `cargo xtask bench conet`.
 *
 *   netio recv PORT [CONNS]   listen on PORT (all addresses), take CONNS
 *                             connections (default 1) one after the other,
 *                             read each to its end and close it; prints,
 *                             for each, the bytes and the time from the
 *                             accept to the end of the stream.
 *   netio send ADDR PORT MIB  connect to ADDR:PORT (dotted IPv4), write MIB
 *                             MiB, shut the writing side and wait for the
 *                             peer to close (so every byte was read); prints
 *                             the time from before the connect to the
 *                             peer's close.
 *   netio echo PORT [CONNS]   listen on PORT, take CONNS connections one
 *                             after the other, write back what each reads
 *                             until its end.
 *   netio rr ADDR PORT COUNT  connect, then COUNT times write one byte and
 *                             read it back (TCP_NODELAY); prints the time of
 *                             the COUNT round trips.
 *
 * Timed by CLOCK_MONOTONIC; one line each:
 *   netio mode=<MODE> bytes=<N> n=<COUNT> s=<seconds> err=<0|errno>
 */
#include "bench.h"

#define SYS_read 3
#define SYS_close 6
#define SYS_socket 359
#define SYS_bind 361
#define SYS_connect 362
#define SYS_listen 363
#define SYS_accept4 364
#define SYS_setsockopt 366
#define SYS_shutdown 373

#define AF_INET 2
#define SOCK_STREAM 1
#define SOL_SOCKET 1
#define SO_REUSEADDR 2
#define IPPROTO_TCP 6
#define TCP_NODELAY 1
#define SHUT_WR 1
#define EINTR 4

#define CHUNK (128u << 10)

static char buf[CHUNK];

static inline long sys4(long nr, long a, long b, long c, long d)
{
	long r;
	__asm__ volatile("int $0x80"
			 : "=a"(r)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d)
			 : "memory");
	return r;
}

static inline long sys5(long nr, long a, long b, long c, long d, long e)
{
	long r;
	__asm__ volatile("int $0x80"
			 : "=a"(r)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory");
	return r;
}

struct sockaddr_in {
	unsigned short family;
	unsigned short port; /* network order */
	u32 addr;	     /* network order */
	char zero[8];
};

static int same(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* Dotted IPv4 to network order; 0 when malformed. */
static u32 parse_addr(const char *s)
{
	u32 parts[4], n = 0, v = 0, digits = 0;
	for (;; s++) {
		if (*s >= '0' && *s <= '9') {
			v = v * 10 + (u32)(*s - '0');
			if (++digits > 3 || v > 255)
				return 0;
		} else if ((*s == '.' || *s == 0) && digits && n < 4) {
			parts[n++] = v;
			v = 0;
			digits = 0;
			if (*s == 0)
				break;
		} else {
			return 0;
		}
	}
	if (n != 4)
		return 0;
	return parts[0] | parts[1] << 8 | parts[2] << 16 | parts[3] << 24;
}

static struct sockaddr_in sockaddr_of(u32 addr, u32 port)
{
	struct sockaddr_in a = { .family = AF_INET };
	a.port = (unsigned short)((port & 0xff) << 8 | (port >> 8 & 0xff));
	a.addr = addr;
	return a;
}

/* A socket listening on PORT: its descriptor or a negative errno. */
static long listen_on(u32 port)
{
	struct sockaddr_in a = sockaddr_of(0, port);
	int one = 1;
	long s, r;
	s = sys3(SYS_socket, AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return s;
	sys5(SYS_setsockopt, s, SOL_SOCKET, SO_REUSEADDR, (long)&one, sizeof(one));
	if ((r = sys3(SYS_bind, s, (long)&a, sizeof(a))) < 0)
		return r;
	if ((r = sys2(SYS_listen, s, 4)) < 0)
		return r;
	return s;
}

/* The next connection on listening socket `s`. */
static long accept_one(long s)
{
	long c;
	do {
		c = sys4(SYS_accept4, s, 0, 0, 0);
	} while (c == -EINTR);
	return c;
}

static long connect_to(u32 addr, u32 port)
{
	struct sockaddr_in a = sockaddr_of(addr, port);
	long s, r;
	s = sys3(SYS_socket, AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return s;
	if ((r = sys3(SYS_connect, s, (long)&a, sizeof(a))) < 0)
		return r;
	return s;
}

static long write_all(long fd, const char *p, u32 n)
{
	while (n) {
		long r = sys3(SYS_write, fd, (long)p, (long)n);
		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		p += r;
		n -= (u32)r;
	}
	return 0;
}

/* Read `fd` to its end: the bytes, or a negative errno. */
static long long drain(long fd)
{
	long long total = 0;
	for (;;) {
		long r = sys3(SYS_read, fd, (long)buf, CHUNK);
		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		if (r == 0)
			return total;
		total += r;
	}
}

static void report(const char *mode, unsigned long long bytes, u32 count,
		   struct bench_time t0, struct bench_time t1, long err)
{
	struct out o = { .len = 0 };
	put_str(&o, "netio mode=");
	put_str(&o, mode);
	put_str(&o, " bytes=");
	/* (at most 4 GiB - 1: netio moves far less) */
	put_u32(&o, bytes >> 32 ? 0xffffffffu : (u32)bytes, 1);
	put_str(&o, " n=");
	put_u32(&o, count, 1);
	put_str(&o, " s=");
	put_time(&o, elapsed(t0, t1));
	put_str(&o, " err=");
	put_u32(&o, (u32)-err, 1);
	put_str(&o, "\n");
	flush(&o);
}

/* Take the next connection on `ls`: read it to its end (echoing it back
 * if `echo`), close it and report; its error (a negative errno) or 0. */
static long serve(long ls, int echo, const char *mode)
{
	struct bench_time t0, t1;
	unsigned long long bytes = 0;
	u32 count = 0;
	long err = 0, fd = accept_one(ls);
	now(&t0);
	if (fd < 0) {
		err = fd;
	} else if (!echo) {
		long long r = drain(fd);
		if (r < 0)
			err = (long)r;
		else
			bytes = (unsigned long long)r;
	} else {
		for (;;) {
			long r = sys3(SYS_read, fd, (long)buf, CHUNK);
			if (r == -EINTR)
				continue;
			if (r <= 0) {
				err = r;
				break;
			}
			if ((err = write_all(fd, buf, (u32)r)) < 0)
				break;
			bytes += (unsigned long long)r;
			count++;
		}
	}
	now(&t1);
	if (fd >= 0)
		sys1(SYS_close, fd);
	report(mode, bytes, count, t0, t1, err);
	return err;
}

int bench_main(int argc, char **argv)
{
	struct bench_time t0, t1;
	struct out o = { .len = 0 };
	const char *mode = argc > 1 ? argv[1] : "";
	long fd, err = 0;
	unsigned long long bytes = 0;
	u32 i, count = 0;

	if (same(mode, "recv") || same(mode, "echo")) {
		u32 port = parse_u32(argc > 2 ? argv[2] : 0, 0);
		u32 conns = parse_u32(argc > 3 ? argv[3] : 0, 1), k;
		int failed = 0;
		long ls;
		if (!port || port > 65535 || !conns)
			goto usage;
		ls = listen_on(port);
		if (ls < 0) {
			now(&t0);
			report(mode, 0, 0, t0, t0, ls);
			return 1;
		}
		for (k = 0; k < conns; k++)
			failed |= serve(ls, same(mode, "echo"), mode) != 0;
		return failed;
	}
	if (same(mode, "send") || same(mode, "rr")) {
		u32 addr = parse_addr(argc > 2 ? argv[2] : "");
		u32 port = parse_u32(argc > 3 ? argv[3] : 0, 0);
		count = parse_u32(argc > 4 ? argv[4] : 0, 0);
		if (!addr || !port || port > 65535 || !count)
			goto usage;
		for (i = 0; i < CHUNK; i++)
			buf[i] = (char)(i * 7 + 1);
		now(&t0);
		fd = connect_to(addr, port);
		if (fd < 0) {
			err = fd;
		} else if (same(mode, "send")) {
			unsigned long long want = (unsigned long long)count << 20;
			while (bytes < want && err == 0) {
				err = write_all(fd, buf, CHUNK);
				if (err == 0)
					bytes += CHUNK;
			}
			if (err == 0)
				err = sys2(SYS_shutdown, fd, SHUT_WR);
			if (err == 0) {
				long long r = drain(fd);
				if (r < 0)
					err = (long)r;
			}
		} else {
			int one = 1;
			char c = 'x';
			sys5(SYS_setsockopt, fd, IPPROTO_TCP, TCP_NODELAY, (long)&one,
			     sizeof(one));
			for (i = 0; i < count && err == 0; i++) {
				long r;
				err = write_all(fd, &c, 1);
				if (err)
					break;
				do {
					r = sys3(SYS_read, fd, (long)&c, 1);
				} while (r == -EINTR);
				if (r < 0)
					err = r;
				else if (r == 0)
					err = -104; /* ECONNRESET: the peer went away */
				else
					bytes++;
			}
			count = i;
		}
		now(&t1);
		if (fd >= 0)
			sys1(SYS_close, fd);
		report(mode, bytes, count, t0, t1, err);
		return err ? 1 : 0;
	}
usage:
	put_str(&o, "usage: netio recv PORT | send ADDR PORT MIB | echo PORT | rr ADDR PORT COUNT\n");
	flush(&o);
	return 2;
}
