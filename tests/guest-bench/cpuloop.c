/*
 * cpuloop [MILLIONS]: a CPU-bound loop, no system calls inside it
 * (xorshift32 steps summed, MILLIONS x 1e6 of them; default 100), timed by
 * CLOCK_MONOTONIC around the loop. Prints one line:
 *   cpuloop n=<millions> s=<seconds> check=<hex>
 */
#include "bench.h"

int bench_main(int argc, char **argv)
{
	u32 millions = parse_u32(argc > 1 ? argv[1] : 0, 100);
	u32 x = 2463534242u, sum = 0, i, j;
	struct bench_time t0, t1;
	struct out o = { .len = 0 };

	now(&t0);
	for (i = 0; i < millions; i++) {
		for (j = 0; j < 1000000; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			sum += x;
		}
	}
	now(&t1);
	put_str(&o, "cpuloop n=");
	put_u32(&o, millions, 1);
	put_str(&o, " s=");
	put_time(&o, elapsed(t0, t1));
	put_str(&o, " check=");
	put_hex(&o, sum);
	put_str(&o, "\n");
	flush(&o);
	return 0;
}
