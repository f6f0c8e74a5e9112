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
void payload_c_cobd_hostile(struct cooperative_shared_state *s);
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

/* ---- cobd: a hostile driver of the cooperative virtio transport ---- */

/*
 * The daemon runs this entry with `--cobd 0=DISK`: one virtio-blk device
 * (cobd0) in a virtio table at the first page after the payload's end
 * (guest-physical). Sector 0 of DISK starts with COBD_MARKER. The payload
 * drives the device as Linux's virtio drivers would, then breaks every
 * rule of the transport and the split ring in turn and checks the answer:
 * a refused request (COOPERATIVE_STATUS_INVALID), an I/O error in the
 * request's status byte, or the device marked DEVICE_NEEDS_RESET with a
 * configuration interrupt (isr bit) after which a reset and a new set-up
 * make it work again. Each case sends a DEBUG_LINE "cobd-hostile: ...";
 * anything unexpected ends the payload with BUG.
 */
#define HQ			16	/* the queue size the payload uses */
#define COBD_MARKER		"cobd hostile disk"
#define COBD_WAIT_SECONDS	20u
#define COBD_FLOOD		20000u
#define COBD_FLOOD_INVALID	2000u

#define S_ACKNOWLEDGE		1u
#define S_DRIVER		2u
#define S_DRIVER_OK		4u
#define S_FEATURES_OK		8u
#define S_NEEDS_RESET		64u
#define S_READY			(S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK)
#define F_VERSION_1		(1ull << 32)
#define D_NEXT			1u
#define D_WRITE			2u
#define D_INDIRECT		4u
#define BLK_T_IN		0u
#define BLK_T_OUT		1u
#define BLK_S_OK		0u
#define BLK_S_IOERR		1u
#define VIRTIO_ID_BLOCK		2u

struct vdesc {
	__u64 addr;
	__u32 len;
	__u16 flags;
	__u16 next;
};

struct vavail {
	__u16 flags;
	__u16 idx;
	__u16 ring[HQ];
	__u16 used_event;
};

struct vused {
	__u16 flags;
	__u16 idx;
	struct {
		__u32 id;
		__u32 len;
	} ring[HQ];
	__u16 avail_event;
};

struct blk_header {
	__u32 type;
	__u32 reserved;
	__u64 sector;
};

extern char _end[];

static struct vdesc vq_desc[HQ] __attribute__((aligned(4096)));
static struct vavail vq_avail __attribute__((aligned(4096)));
static struct vused vq_used __attribute__((aligned(4096)));
static struct vdesc vq_indirect[64] __attribute__((aligned(16)));
static struct blk_header blk_hdr;
static __u8 blk_data[4096] __attribute__((aligned(4096)));
static volatile __u8 blk_status;
static volatile struct cooperative_virtio_device *cobd;
static __u32 cobd_table;
static __u16 vq_next_avail, vq_seen_used;

#define barrier() __asm__ __volatile__("" : : : "memory")

static __u32 cobd_request(__u32 device, __u32 request, __u64 a, __u64 b)
{
	shared->vcpu[0].params[0] = device;
	shared->vcpu[0].params[1] = request;
	shared->vcpu[0].params[2] = a;
	shared->vcpu[0].params[3] = b;
	host_call(COOPERATIVE_OP_VIRTIO);
	return shared->vcpu[0].status;
}

static void cobd_say(const char *what, const char *result)
{
	line_reset();
	line_str("cobd-hostile: ");
	line_str(what);
	line_str(": ");
	line_str(result);
	debug_line();
}

static void __attribute__((noreturn)) cobd_fail(const char *what, const char *why,
						__u32 value)
{
	line_reset();
	line_str("cobd-hostile: ");
	line_str(what);
	line_str(": ");
	line_str(why);
	line_str(" (0x");
	line_hex32(value);
	line_str(")");
	fail();
}

static void cobd_expect(const char *what, __u32 status, __u32 want)
{
	if (status != want)
		cobd_fail(what, want == COOPERATIVE_STATUS_OK ?
			  "refused, want OK" : "status not INVALID", status);
}

static void cobd_set_status(const char *what, __u32 status)
{
	cobd_expect(what, cobd_request(0, COOPERATIVE_VIRTIO_REQ_SET_STATUS,
				       status, 0), COOPERATIVE_STATUS_OK);
}

static void cobd_reset(void)
{
	cobd_set_status("reset", 0);
	if (cobd->status != 0 || cobd->isr != 0)
		cobd_fail("reset", "status or isr not cleared", cobd->status);
}

/* Reset, negotiate, set queue 0 up at the given addresses; DRIVER_OK's status. */
static __u32 cobd_setup(__u16 num, __u64 desc, __u64 avail, __u64 used)
{
	cobd_reset();
	__builtin_memset(vq_desc, 0, sizeof(vq_desc));
	__builtin_memset(&vq_avail, 0, sizeof(vq_avail));
	__builtin_memset(&vq_used, 0, sizeof(vq_used));
	vq_next_avail = vq_seen_used = 0;
	cobd_set_status("ACKNOWLEDGE", S_ACKNOWLEDGE);
	cobd_set_status("DRIVER", S_ACKNOWLEDGE | S_DRIVER);
	cobd->driver_features = F_VERSION_1;
	cobd_set_status("FEATURES_OK", S_READY);
	if (!(cobd->status & S_FEATURES_OK))
		cobd_fail("FEATURES_OK", "VERSION_1 alone refused", cobd->status);
	cobd->queue[0].num = num;
	cobd->queue[0].desc = desc;
	cobd->queue[0].driver = avail;
	cobd->queue[0].device = used;
	cobd->queue[0].ready = 1;
	barrier();
	return cobd_request(0, COOPERATIVE_VIRTIO_REQ_SET_STATUS,
			    S_READY | S_DRIVER_OK, 0);
}

static void cobd_setup_good(void)
{
	cobd_expect("DRIVER_OK", cobd_setup(HQ, guest_physical(vq_desc),
					     guest_physical(&vq_avail),
					     guest_physical(&vq_used)),
		    COOPERATIVE_STATUS_OK);
	if (cobd->status != (S_READY | S_DRIVER_OK))
		cobd_fail("DRIVER_OK", "status", cobd->status);
}

/* Make `head` available (and the index `extra` further) and notify queue 0. */
static void cobd_post(__u16 head, __u16 extra)
{
	vq_avail.ring[vq_next_avail % HQ] = head;
	vq_next_avail++;
	barrier();
	vq_avail.idx = (__u16)(vq_next_avail + extra);
	barrier();
	cobd_expect("NOTIFY of queue 0",
		    cobd_request(0, COOPERATIVE_VIRTIO_REQ_NOTIFY, 0, 0),
		    COOPERATIVE_STATUS_OK);
}

#define WAIT_USED	1
#define WAIT_RESET	2

/* Wait for a used buffer or DEVICE_NEEDS_RESET, interrupts on. */
static int cobd_wait(const char *what)
{
	volatile __u16 *used_idx = &vq_used.idx;
	__u64 start, limit = (__u64)shared->boot.cpu_khz * 1000u *
			     COBD_WAIT_SECONDS;
	int got = 0;

	__asm__ __volatile__("sti" : : : "memory");
	start = rdtsc();
	while (!got && rdtsc() - start < limit) {
		if (*used_idx != vq_seen_used)
			got = WAIT_USED;
		else if (cobd->status & S_NEEDS_RESET)
			got = WAIT_RESET;
		else
			__asm__ __volatile__("pause" : : : "memory");
	}
	__asm__ __volatile__("cli" : : : "memory");
	if (!got)
		cobd_fail(what, "no answer from the device within 20 s", 0);
	if (got == WAIT_USED)
		vq_seen_used++;
	return got;
}

/* One request: header, one data buffer, status; the status byte. */
static __u32 cobd_io(const char *what, __u32 type, __u64 sector, __u64 addr,
		     __u32 len)
{
	blk_hdr.type = type;
	blk_hdr.sector = sector;
	blk_status = 0xff;
	vq_desc[0] = (struct vdesc){ guest_physical(&blk_hdr), sizeof(blk_hdr),
				     D_NEXT, 1 };
	vq_desc[1] = (struct vdesc){ addr, len,
				     D_NEXT | (type == BLK_T_IN ? D_WRITE : 0), 2 };
	vq_desc[2] = (struct vdesc){ guest_physical((const void *)&blk_status),
				     1, D_WRITE, 0 };
	cobd_post(0, 0);
	if (cobd_wait(what) != WAIT_USED)
		cobd_fail(what, "the device broke on a good chain", cobd->status);
	return blk_status;
}

static void cobd_good_read(const char *what)
{
	__u32 st, i;

	__builtin_memset(blk_data, 0, sizeof(blk_data));
	st = cobd_io(what, BLK_T_IN, 0, guest_physical(blk_data), 512);
	if (st != BLK_S_OK)
		cobd_fail(what, "read of sector 0 failed", st);
	for (i = 0; i < sizeof(COBD_MARKER) - 1; i++)
		if (blk_data[i] != (__u8)COBD_MARKER[i])
			cobd_fail(what, "sector 0 does not start with the marker",
				  blk_data[i]);
	cobd_say(what, "read ok");
}

static void cobd_ioerr(const char *what, __u32 type, __u64 sector, __u64 addr,
		       __u32 len)
{
	__u32 st = cobd_io(what, type, sector, addr, len);

	if (st != BLK_S_IOERR)
		cobd_fail(what, "status byte not IOERR", st);
	cobd_say(what, "IOERR");
}

/* After a broken ring: NEEDS_RESET and a config interrupt; reset; works. */
static void cobd_expect_broken(const char *what)
{
	if (cobd_wait(what) != WAIT_RESET)
		cobd_fail(what, "the device served a broken chain", blk_status);
	if (!(cobd->isr & COOPERATIVE_VIRTIO_ISR_CONFIG))
		cobd_fail(what, "NEEDS_RESET without a config interrupt", cobd->isr);
	cobd_say(what, "NEEDS_RESET");
	cobd_setup_good();
	cobd_good_read("after reset");
}

static void cobd_expect_invalid(const char *what, __u32 request, __u64 a,
				__u64 b, __u32 device)
{
	cobd_expect(what, cobd_request(device, request, a, b),
		    COOPERATIVE_STATUS_INVALID);
	cobd_say(what, "INVALID");
}

/* DRIVER_OK refused with these queue settings; the device needs a reset. */
static void cobd_bad_queue(const char *what, __u16 num, __u64 desc)
{
	__u32 st = cobd_setup(num, desc, guest_physical(&vq_avail),
			      guest_physical(&vq_used));

	if (st != COOPERATIVE_STATUS_INVALID || !(cobd->status & S_NEEDS_RESET))
		cobd_fail(what, "activation not refused", cobd->status);
	cobd_say(what, "INVALID, NEEDS_RESET");
}

static void __attribute__((noreturn)) run_cobd_hostile(void)
{
	__u32 i, gen, capacity;

	cobd_table = (guest_physical(_end) + 4095) & ~4095u;
	cobd = (volatile struct cooperative_virtio_device *)
		(cobd_table + COOPERATIVE_KERNEL_VA_OFFSET);
	if (cobd->device_id != VIRTIO_ID_BLOCK || cobd->num_queues != 1) {
		line_reset();
		line_str("cobd-hostile: no cobd at 0x");
		line_hex32(cobd_table);
		fail();
	}
	cobd_setup_good();
	cobd_good_read("good read");

	/* Requests the device answers with an I/O error. */
	cobd_ioerr("buffer outside guest RAM", BLK_T_IN, 0, 0xf0000000u, 512);
	cobd_ioerr("buffer above 4 GiB", BLK_T_IN, 0, 0x100000000ull, 512);
	cobd_ioerr("buffer in the virtio table", BLK_T_IN, 0, cobd_table, 512);
	if (cobd->device_id != VIRTIO_ID_BLOCK)
		cobd_fail("buffer in the virtio table", "the table was overwritten",
			  cobd->device_id);
	cobd_ioerr("read of 4 GiB", BLK_T_IN, 0, guest_physical(blk_data),
		   0xfffffe00u);
	cobd_ioerr("write of 4 GiB", BLK_T_OUT, 0, guest_physical(blk_data),
		   0xfffffe00u);
	cobd_ioerr("sector beyond the disk", BLK_T_IN, 0xffffffffffffull,
		   guest_physical(blk_data), 512);
	cobd_good_read("still works");

	/* Broken rings: the device needs a reset. */
	vq_desc[0] = (struct vdesc){ guest_physical(&blk_hdr), 16, D_NEXT, 1 };
	vq_desc[1] = (struct vdesc){ guest_physical(blk_data), 512,
				     D_NEXT | D_WRITE, 0 };
	cobd_post(0, 0);
	cobd_expect_broken("descriptor loop");

	vq_desc[0] = (struct vdesc){ guest_physical(&blk_hdr), 16, D_NEXT, 500 };
	cobd_post(0, 0);
	cobd_expect_broken("next index outside the queue");

	vq_desc[0] = (struct vdesc){ guest_physical(&blk_hdr), 0xfffffff0u,
				     D_NEXT, 1 };
	vq_desc[1] = (struct vdesc){ guest_physical(blk_data), 0xfffffff0u,
				     D_NEXT | D_WRITE, 2 };
	vq_desc[2] = (struct vdesc){ guest_physical((const void *)&blk_status),
				     1, D_WRITE, 0 };
	cobd_post(0, 0);
	cobd_expect_broken("chain of 8 GiB");

	blk_hdr.type = BLK_T_IN;
	blk_hdr.sector = 0;
	vq_indirect[0] = (struct vdesc){ guest_physical(&blk_hdr), 16, D_NEXT, 1 };
	for (i = 1; i < 63; i++)
		vq_indirect[i] = (struct vdesc){ guest_physical(blk_data), 512,
						 D_NEXT | D_WRITE, (__u16)(i + 1) };
	vq_indirect[63] = (struct vdesc){
		guest_physical((const void *)&blk_status), 1, D_WRITE, 0 };
	vq_desc[0] = (struct vdesc){ guest_physical(vq_indirect),
				     sizeof(vq_indirect), D_INDIRECT, 0 };
	cobd_post(0, 0);
	cobd_expect_broken("chain of 64 in a queue of 16");

	vq_desc[0] = (struct vdesc){ 0xf0000000u, 4 * 16, D_INDIRECT, 0 };
	cobd_post(0, 0);
	cobd_expect_broken("indirect table outside RAM");

	cobd_post(200, 0);
	cobd_expect_broken("head outside the queue");

	cobd_post(0, 1000);
	cobd_expect_broken("available index 1000 ahead");

	/* Queues the device refuses to start. */
	cobd_bad_queue("descriptor table above RAM", HQ, 0x100000000ull);
	cobd_bad_queue("descriptor table outside RAM", HQ, 0xf0000000u);
	cobd_bad_queue("descriptor table in the virtio table", HQ,
		       cobd_table + 0x400);
	cobd_bad_queue("queue size 15", 15, guest_physical(vq_desc));
	cobd_bad_queue("queue size 0", 0, guest_physical(vq_desc));
	cobd_bad_queue("queue size 512", 512, guest_physical(vq_desc));
	cobd_bad_queue("misaligned descriptor table", HQ,
		       guest_physical(vq_desc) + 8);

	/* Status writes out of order. */
	cobd_reset();
	cobd_expect_invalid("DRIVER_OK before FEATURES_OK",
			    COOPERATIVE_VIRTIO_REQ_SET_STATUS,
			    S_ACKNOWLEDGE | S_DRIVER | S_DRIVER_OK, 0, 0);
	cobd_reset();
	cobd_set_status("DRIVER", S_ACKNOWLEDGE | S_DRIVER);
	cobd_expect_invalid("status bit cleared without reset",
			    COOPERATIVE_VIRTIO_REQ_SET_STATUS, S_ACKNOWLEDGE, 0, 0);
	cobd_expect_invalid("status wider than 32 bits",
			    COOPERATIVE_VIRTIO_REQ_SET_STATUS, 1ull << 40, 0, 0);
	cobd->driver_features = 1ull << 60;
	cobd_set_status("FEATURES_OK", S_READY);
	if (cobd->status & S_FEATURES_OK)
		cobd_fail("unknown feature", "FEATURES_OK accepted", cobd->status);
	cobd_say("feature bit 60 and no VERSION_1", "FEATURES_OK refused");

	/* Config writes: cobd's config is read-only; out of range ones. */
	cobd_setup_good();
	capacity = (__u32)cobd->config[0] | ((__u32)cobd->config[1] << 8);
	gen = cobd->config_generation;
	cobd->config[0] ^= 0xff;
	cobd_expect_invalid("config write of the capacity",
			    COOPERATIVE_VIRTIO_REQ_CONFIG_WRITE, 0, 8, 0);
	if (((__u32)cobd->config[0] | ((__u32)cobd->config[1] << 8)) != capacity ||
	    cobd->config_generation != gen + 2)
		cobd_fail("config write", "config not restored or generation not bumped",
			  cobd->config_generation);
	cobd_expect_invalid("config write at 250", COOPERATIVE_VIRTIO_REQ_CONFIG_WRITE,
			    250, 8, 0);
	cobd_expect_invalid("config write at 2^64-1",
			    COOPERATIVE_VIRTIO_REQ_CONFIG_WRITE, ~0ull, 2, 0);
	cobd_expect_invalid("config write of 100 bytes",
			    COOPERATIVE_VIRTIO_REQ_CONFIG_WRITE, 0, 100, 0);

	/* Requests for what does not exist. */
	cobd_expect_invalid("NOTIFY of queue 5", COOPERATIVE_VIRTIO_REQ_NOTIFY, 5, 0, 0);
	cobd_expect_invalid("NOTIFY of queue 8", COOPERATIVE_VIRTIO_REQ_NOTIFY, 8, 0, 0);
	cobd_expect_invalid("NOTIFY of queue 2^32", COOPERATIVE_VIRTIO_REQ_NOTIFY,
			    1ull << 32, 0, 0);
	cobd_expect_invalid("NOTIFY of device 9", COOPERATIVE_VIRTIO_REQ_NOTIFY, 0, 0, 9);
	cobd_expect_invalid("NOTIFY of device 64", COOPERATIVE_VIRTIO_REQ_NOTIFY, 0, 0,
			    COOPERATIVE_VIRTIO_MAX_DEVICES);
	cobd_expect_invalid("request 7", 7, 0, 0, 0);
	cobd_good_read("still works");

	/* Floods of notifications: bound (the driver's) and refused (the daemon's). */
	for (i = 0; i < COBD_FLOOD; i++)
		cobd_expect("flood", cobd_request(0, COOPERATIVE_VIRTIO_REQ_NOTIFY, 0, 0),
			    COOPERATIVE_STATUS_OK);
	for (i = 0; i < COBD_FLOOD_INVALID; i++)
		cobd_expect("flood of queue 5",
			    cobd_request(0, COOPERATIVE_VIRTIO_REQ_NOTIFY, 5, 0),
			    COOPERATIVE_STATUS_INVALID);
	for (i = 0; i < COBD_FLOOD_INVALID; i++)
		cobd_expect("flood of device 64",
			    cobd_request(COOPERATIVE_VIRTIO_MAX_DEVICES,
					 COOPERATIVE_VIRTIO_REQ_NOTIFY, 0, 0),
			    COOPERATIVE_STATUS_INVALID);
	cobd_say("flood", "20000 NOTIFY OK, 2000 NOTIFY INVALID of queue 5, 2000 of device 64");
	cobd_good_read("after the flood");

	terminate(COOPERATIVE_TERM_END, "cobd hostile done");
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

void payload_c_cobd_hostile(struct cooperative_shared_state *s)
{
	shared = s;
	run_cobd_hostile();
}
