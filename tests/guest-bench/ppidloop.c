/*
 * ppidloop [CALLS]: CALLS getppid() system calls through `int $0x80`
 * (eax = 64; default 1000000), timed by CLOCK_MONOTONIC around the loop.
 * Prints one line:
 *   ppidloop n=<calls> s=<seconds> ppid=<ppid>
 */
#include "bench.h"

int bench_main(int argc, char **argv)
{
	u32 calls = parse_u32(argc > 1 ? argv[1] : 0, 1000000);
	u32 i;
	long ppid = 0;
	struct bench_time t0, t1;
	struct out o = { .len = 0 };

	now(&t0);
	for (i = 0; i < calls; i++)
		ppid = sys0(SYS_getppid);
	now(&t1);
	put_str(&o, "ppidloop n=");
	put_u32(&o, calls, 1);
	put_str(&o, " s=");
	put_time(&o, elapsed(t0, t1));
	put_str(&o, " ppid=");
	put_u32(&o, (u32)ppid, 1);
	put_str(&o, "\n");
	flush(&o);
	return 0;
}
