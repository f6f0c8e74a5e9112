/* SPDX-License-Identifier: GPL-2.0 */
/* colinux host driver: the passage, as the rest of the shim sees it. */
#ifndef COLINUX_PASSAGE_C_H
#define COLINUX_PASSAGE_C_H

/*
 * At module load: find which MSRs the passage restores this CPU has, and
 * register the NMI handler of the run watchdog; at unload, unregister it.
 */
int colinux_passage_init(void);
void colinux_passage_exit(void);
/* Run the passage self-test: @rounds round trips host -> guest -> host. */
int colinux_passage_selftest_run(unsigned long rounds);
/* Run a guest that computes with interrupts on for @seconds. */
int colinux_passage_busy_run(unsigned long seconds);
/* Run guests that fault; each must come back as a reported fault. */
int colinux_passage_fault_run(void);
/* Run a guest that changes MSRs/FPU/XCR0; the host's must come back. */
int colinux_passage_clobber_run(void);
/* The assembly's returns were patched like the C code's (return thunk). */
int colinux_passage_thunk_check(void);
/* An NMI in the switch-time IDT is recorded and replayed to the host. */
int colinux_passage_nmi_run(void);

struct colinux_run;
struct cooperative_ioctl_run;
struct colinux_events;
/*
 * A runnable guest over the guest RAM @frames (host frame of each page),
 * its asynchronous events in @ev (the shim's, living longer than it).
 */
struct colinux_run *colinux_run_create(const u64 *frames, u64 nr_frames,
				       struct colinux_events *ev);
void colinux_run_free(struct colinux_run *r);
/* Run the guest until it needs the daemon (see COOPERATIVE_IOCTL_RUN). */
int colinux_run(struct colinux_run *r, struct cooperative_ioctl_run *arg);
/* COOPERATIVE_GUEST_STATE_CREATED (not started), _RUNNING or _DEAD. */
u32 colinux_run_state(const struct colinux_run *r);

/*
 * The guest's asynchronous events, implemented by the shim for RUN (the
 * file's mutex held, except for enter/leave, which run with interrupts
 * off around the switch).
 *
 * notify: signal the eventfd bound to (@device, @queue) by IOEVENTFD;
 * false if none is (the indices are in range).
 * take: the lines IRQFDs raised since the last take, as pending_irqs bits.
 * enter: the guest world is about to run on @cpu: from now on a raised
 * line interrupts @cpu. True if a line is already raised: then the
 * caller does not switch (and calls leave).
 * leave: the guest world no longer runs.
 */
bool colinux_events_notify(struct colinux_events *ev, u32 device, u32 queue);
u32 colinux_events_take(struct colinux_events *ev);
bool colinux_events_pending(struct colinux_events *ev);
bool colinux_events_enter(struct colinux_events *ev, int cpu);
void colinux_events_leave(struct colinux_events *ev);

#endif /* COLINUX_PASSAGE_C_H */
