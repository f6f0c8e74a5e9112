// SPDX-License-Identifier: GPL-2.0
/*
 * The colinux test payload: a tiny 32-bit guest that is not Linux. It
 * talks to the host only through the passage and the shared state of
 * <linux/cooperative.h>; see README.md for the entry contract.
 */
#include <linux/types.h>
#include <linux/cooperative.h>

#define NULL ((void *)0)

#define ROUNDTRIPS 100000u
#define IDT_GATES 256

/* The saved registers of a pushal, lowest address first. */
struct pushal_regs {
	__u32 edi, esi, ebp, esp, ebx, edx, ecx, eax;
};

struct idt_gate {
	__u16 offset_low;
	__u16 selector;
	__u8 zero;
	__u8 type_attr;
	__u16 offset_high;
} __attribute__((packed));

struct idt_pointer {
	__u16 limit;
	__u32 base;
} __attribute__((packed));

void payload_c_all(struct cooperative_shared_state *s);
void payload_c_roundtrips(struct cooperative_shared_state *s);
void payload_c_exceptions(struct cooperative_shared_state *s);
void payload_c_busy(struct cooperative_shared_state *s);
void payload_c_busy3(struct cooperative_shared_state *s);
void payload_c_virtio(struct cooperative_shared_state *s);
void payload_pf_handler(struct pushal_regs *regs);
void payload_de_handler(struct pushal_regs *regs);
extern void payload_pf_stub(void);
extern void payload_de_stub(void);

static struct cooperative_shared_state *shared;
static char line[160];
static __u32 line_len;

/* ---- text ---- */

static __u32 str_len(const char *s)
{
	__u32 n = 0;

	while (s[n])
		n++;
	return n;
}

static void line_reset(void)
{
	line_len = 0;
}

static void line_str(const char *s)
{
	while (*s && line_len < sizeof(line) - 1)
		line[line_len++] = *s++;
	line[line_len] = 0;
}

/* Divide *n by 10 in place, returning the remainder, without libgcc. */
static __u32 div10(__u64 *n)
{
	__u32 hi = (__u32)(*n >> 32), lo = (__u32)*n, ten = 10, qhi, qlo, rem;

	qhi = hi / ten;
	rem = hi % ten;
	/* rem < 10, so the 64/32 divide cannot overflow. */
	__asm__("divl %4" : "=a"(qlo), "=d"(rem) : "a"(lo), "d"(rem), "r"(ten));
	*n = ((__u64)qhi << 32) | qlo;
	return rem;
}

static void line_u64(__u64 v)
{
	char digits[24];
	int n = 0;

	do
		digits[n++] = (char)('0' + div10(&v));
	while (v);
	while (n > 0 && line_len < sizeof(line) - 1)
		line[line_len++] = digits[--n];
	line[line_len] = 0;
}

static void line_hex32(__u32 v)
{
	static const char hex[] = "0123456789abcdef";
	int shift;

	for (shift = 28; shift >= 0 && line_len < sizeof(line) - 1; shift -= 4)
		line[line_len++] = hex[(v >> shift) & 0xf];
	line[line_len] = 0;
}

static __u32 guest_physical(const void *p)
{
	return (__u32)p - COOPERATIVE_KERNEL_VA_OFFSET;
}

/* ---- host calls ---- */

static void host_call(__u32 op)
{
	__u32 entry = (__u32)shared->passage_entry;

	shared->vcpu[0].operation = op;
	/* The passage keeps every general register and EFLAGS (iret frame). */
	__asm__ __volatile__("pushfl\n\tcli\n\tpushl %%cs\n\tcall *%0"
			     : : "r"(entry) : "memory");
}

static void debug_line(void)
{
	shared->vcpu[0].params[0] = guest_physical(line);
	shared->vcpu[0].params[1] = line_len;
	host_call(COOPERATIVE_OP_DEBUG_LINE);
}

static void __attribute__((noreturn)) terminate(__u32 reason, const char *text)
{
	shared->vcpu[0].params[0] = reason;
	shared->vcpu[0].params[1] = text ? guest_physical(text) : 0;
	shared->vcpu[0].params[2] = text ? str_len(text) + 1 : 0;
	host_call(COOPERATIVE_OP_TERMINATE);
	for (;;)
		__asm__ __volatile__("ud2");
}

/* DEBUG_LINE the current line, then TERMINATE with COOPERATIVE_TERM_BUG. */
static void __attribute__((noreturn)) fail(void)
{
	debug_line();
	terminate(COOPERATIVE_TERM_BUG, "payload failed");
}

/* ---- roundtrips ---- */

static void run_roundtrips(void)
{
	__u32 count = 0;

	while (count < ROUNDTRIPS) {
		host_call(COOPERATIVE_OP_IDLE);
		if (shared->vcpu[0].status != COOPERATIVE_STATUS_OK) {
			line_reset();
			line_str("payload: roundtrips: IDLE returned status ");
			line_u64(shared->vcpu[0].status);
			line_str(" after ");
			line_u64(count);
			line_str(" calls");
			fail();
		}
		count++;
	}
	line_reset();
	line_str("payload: roundtrips ");
	line_u64(count);
	debug_line();
}

/* ---- exceptions ---- */

static struct idt_gate payload_idt[IDT_GATES] __attribute__((aligned(8)));
static volatile __u32 forty_two = 42;
static volatile __u32 pf_count, de_count;

static void set_gate(int vector, void (*handler)(void))
{
	__u32 addr = (__u32)handler;

	payload_idt[vector].offset_low = (__u16)addr;
	payload_idt[vector].selector = 0x10;
	payload_idt[vector].zero = 0;
	payload_idt[vector].type_attr = 0x8e;
	payload_idt[vector].offset_high = (__u16)(addr >> 16);
}

void payload_pf_handler(struct pushal_regs *regs)
{
	__u32 cr2;

	__asm__ __volatile__("movl %%cr2, %0" : "=r"(cr2));
	pf_count++;
	if (pf_count != 1 || cr2 != 0 || regs->eax != 0) {
		line_reset();
		line_str("payload: exceptions: unexpected #PF cr2=0x");
		line_hex32(cr2);
		line_str(" eax=0x");
		line_hex32(regs->eax);
		line_str(" count=");
		line_u64(pf_count);
		fail();
	}
	regs->eax = (__u32)&forty_two;
}

void payload_de_handler(struct pushal_regs *regs)
{
	de_count++;
	if (de_count != 1 || regs->ecx != 0) {
		line_reset();
		line_str("payload: exceptions: unexpected #DE ecx=0x");
		line_hex32(regs->ecx);
		line_str(" count=");
		line_u64(de_count);
		fail();
	}
	regs->ecx = 4;
}

static void run_exceptions(void)
{
	struct idt_pointer old, new;
	__u32 copy, addr, value, lo, hi, divisor;

	__asm__ __volatile__("sidt %0" : "=m"(old));
	copy = (__u32)old.limit + 1;
	if (copy > sizeof(payload_idt))
		copy = sizeof(payload_idt);
	__builtin_memcpy(payload_idt, (const void *)old.base, copy);
	set_gate(0, payload_de_stub);
	set_gate(14, payload_pf_stub);
	new.limit = sizeof(payload_idt) - 1;
	new.base = (__u32)payload_idt;
	__asm__ __volatile__("lidt %0" : : "m"(new) : "memory");

	/* (a) read through NULL: the #PF handler points EAX at forty_two. */
	addr = 0;
	__asm__ __volatile__("movl (%%eax), %%edx"
			     : "+a"(addr), "=d"(value) : : "memory");

	/* (b) 100 / 0: the #DE handler makes the divisor 4. */
	lo = 100;
	hi = 0;
	divisor = 0;
	__asm__ __volatile__("divl %%ecx"
			     : "+a"(lo), "+d"(hi), "+c"(divisor) : : "memory");

	__asm__ __volatile__("lidt %0" : : "m"(old) : "memory");

	if (pf_count != 1 || de_count != 1 || value != 42 || lo != 25) {
		line_reset();
		line_str("payload: exceptions FAILED pf=");
		line_u64(pf_count);
		line_str(" de=");
		line_u64(de_count);
		line_str(" read=");
		line_u64(value);
		line_str(" quotient=");
		line_u64(lo);
		fail();
	}
	line_reset();
	line_str("payload: exceptions ok pf=");
	line_u64(pf_count);
	line_str(" de=");
	line_u64(de_count);
	line_str(" read=");
	line_u64(value);
	line_str(" quotient=");
	line_u64(lo);
	debug_line();
}

/* ---- busy ---- */

static __u64 rdtsc(void)
{
	__u32 lo, hi;

	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((__u64)hi << 32) | lo;
}

static void run_busy(__u32 seconds)
{
	__u32 khz = shared->boot.cpu_khz;
	__u64 cycles, start, iterations = 0;
	__u32 hash = 2166136261u, counter = 0;
	int i;

	if (khz == 0) {
		line_reset();
		line_str("payload: busy: boot.cpu_khz is 0");
		fail();
	}
	cycles = (__u64)khz * 1000u * seconds;

	__asm__ __volatile__("sti" : : : "memory");
	start = rdtsc();
	do {
		/* FNV-1a over the bytes of a counter, 256 rounds per TSC read. */
		for (i = 0; i < 256; i++) {
			hash = (hash ^ (counter & 0xff)) * 16777619u;
			hash = (hash ^ ((counter >> 8) & 0xff)) * 16777619u;
			hash = (hash ^ ((counter >> 16) & 0xff)) * 16777619u;
			hash = (hash ^ (counter >> 24)) * 16777619u;
			counter++;
		}
		iterations += 256;
	} while (rdtsc() - start < cycles);
	__asm__ __volatile__("cli" : : : "memory");

	line_reset();
	line_str("payload: busy ");
	line_u64(seconds);
	line_str(" s checksum 0x");
	line_hex32(hash);
	line_str(" iterations ");
	line_u64(iterations);
	debug_line();
}

/* ---- virtio: queue notifications and a line raised by the host ---- */

/* The device and queues the driver tests bind (tests/probe, virtio). */
#define VIRTIO_DEVICE		3
#define VIRTIO_BOUND_QUEUE	1
#define VIRTIO_UNBOUND_QUEUE	2
#define VIRTIO_SPIN_QUEUE	3
#define VIRTIO_NOTIFIES		1000u
#define VIRTIO_WAIT_SECONDS	60u

static __u32 virtio_request(__u32 device, __u32 request, __u32 arg2)
{
	shared->vcpu[0].params[0] = device;
	shared->vcpu[0].params[1] = request;
	shared->vcpu[0].params[2] = arg2;
	shared->vcpu[0].params[3] = 0;
	host_call(COOPERATIVE_OP_VIRTIO);
	return shared->vcpu[0].status;
}

static void virtio_expect(const char *what, __u32 status, __u32 want)
{
	if (status == want)
		return;
	line_reset();
	line_str("payload: virtio: ");
	line_str(what);
	line_str(": status ");
	line_u64(status);
	line_str(", want ");
	line_u64(want);
	fail();
}

/*
 * A NOTIFY of an unbound queue and a SET_STATUS (both for the daemon,
 * which answers OK), VIRTIO_NOTIFIES NOTIFYs of the bound queue (served
 * by the driver: the daemon sees none), two with indices out of range
 * (refused by the driver), one NOTIFY of VIRTIO_SPIN_QUEUE (bound too:
 * it tells the host the wait begins), then interrupts on and a wait for
 * any line in pending_irqs. Terminates with END and "virtio: notifies N lines 0x..."
 * when a line came, BUG and "virtio: no line" when none came within
 * VIRTIO_WAIT_SECONDS of TSC time.
 */
static void __attribute__((noreturn)) run_virtio(void)
{
	static char text[96];
	volatile __u32 *pending = &shared->vcpu[0].pending_irqs;
	__u64 start, limit = (__u64)shared->boot.cpu_khz * 1000u *
			     VIRTIO_WAIT_SECONDS;
	__u32 i, lines = 0;

	virtio_expect("unbound NOTIFY",
		      virtio_request(VIRTIO_DEVICE, COOPERATIVE_VIRTIO_REQ_NOTIFY,
				     VIRTIO_UNBOUND_QUEUE),
		      COOPERATIVE_STATUS_OK);
	virtio_expect("SET_STATUS",
		      virtio_request(VIRTIO_DEVICE,
				     COOPERATIVE_VIRTIO_REQ_SET_STATUS, 0),
		      COOPERATIVE_STATUS_OK);
	for (i = 0; i < VIRTIO_NOTIFIES; i++)
		virtio_expect("bound NOTIFY",
			      virtio_request(VIRTIO_DEVICE,
					     COOPERATIVE_VIRTIO_REQ_NOTIFY,
					     VIRTIO_BOUND_QUEUE),
			      COOPERATIVE_STATUS_OK);
	virtio_expect("NOTIFY of device 64",
		      virtio_request(COOPERATIVE_VIRTIO_MAX_DEVICES,
				     COOPERATIVE_VIRTIO_REQ_NOTIFY, 0),
		      COOPERATIVE_STATUS_INVALID);
	virtio_expect("NOTIFY of queue 8",
		      virtio_request(VIRTIO_DEVICE, COOPERATIVE_VIRTIO_REQ_NOTIFY,
				     COOPERATIVE_VIRTIO_MAX_QUEUES),
		      COOPERATIVE_STATUS_INVALID);
	virtio_expect("NOTIFY of the spin queue",
		      virtio_request(VIRTIO_DEVICE, COOPERATIVE_VIRTIO_REQ_NOTIFY,
				     VIRTIO_SPIN_QUEUE),
		      COOPERATIVE_STATUS_OK);

	__asm__ __volatile__("sti" : : : "memory");
	start = rdtsc();
	while (!(lines = *pending) && rdtsc() - start < limit)
		__asm__ __volatile__("pause" : : : "memory");
	__asm__ __volatile__("cli" : : : "memory");

	line_reset();
	if (!lines) {
		line_str("virtio: no line");
		__builtin_memcpy(text, line, line_len + 1);
		terminate(COOPERATIVE_TERM_BUG, text);
	}
	line_str("virtio: notifies ");
	line_u64(i);
	line_str(" lines 0x");
	line_hex32(lines);
	__builtin_memcpy(text, line, line_len + 1);
	terminate(COOPERATIVE_TERM_END, text);
}

/* ---- entries (called from start.S with the shared state) ---- */

void payload_c_all(struct cooperative_shared_state *s)
{
	shared = s;
	run_roundtrips();
	run_exceptions();
	run_busy(3);
	terminate(COOPERATIVE_TERM_END, "all done");
}

void payload_c_roundtrips(struct cooperative_shared_state *s)
{
	shared = s;
	run_roundtrips();
	terminate(COOPERATIVE_TERM_END, "roundtrips done");
}

void payload_c_exceptions(struct cooperative_shared_state *s)
{
	shared = s;
	run_exceptions();
	terminate(COOPERATIVE_TERM_END, "exceptions done");
}

void payload_c_busy(struct cooperative_shared_state *s)
{
	shared = s;
	run_busy(30);
	terminate(COOPERATIVE_TERM_END, "busy done");
}

void payload_c_busy3(struct cooperative_shared_state *s)
{
	shared = s;
	run_busy(3);
	terminate(COOPERATIVE_TERM_END, "busy done");
}

void payload_c_virtio(struct cooperative_shared_state *s)
{
	shared = s;
	run_virtio();
}
