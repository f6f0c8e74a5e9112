/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * colinux host driver <-> daemon ABI: the ioctls of /dev/colinux.
 *
 * A host ABI, owned by the driver (driver/include/colinux/ioctl.h in the
 * colinux repository): the guest kernel never sees it. The guest <-> host
 * ABI (boot parameters, shared state, operations, messages) is the guest
 * series' <linux/cooperative.h>, which this header includes: RUN passes
 * the guest's operations through (their code and COOPERATIVE_NR_PARAMS
 * parameters) and points to its boot parameters. Compiled into the host module and, through bindgen,
 * into the daemon's Rust code, so it follows the rules of
 * <linux/cooperative.h>: fixed-width types, 64-bit fields __aligned_u64 at
 * offsets that are multiples of 8, sizes multiples of 8, no pointers, no
 * enums, reserved fields zero; the end of this header checks the layout.
 *
 * Fields the driver rewrites: RUN's out fields (exit_reason, operation,
 * vector, params, idle_round_trips, interrupts, fault_address, fault_eip,
 * text, text_size, timeout_ns, halt_polls) and input_size (how much input
 * it took); INFO's every field. The boot parameters a first RUN points to are read,
 * checked and completed by the driver (cpu_khz, p2m_address, m2p_address,
 * m2p_entries, tables_pages, host_time_ns must be zero and are filled in)
 * before the guest sees them; the daemon's copy is not written.
 */
#ifndef _UAPI_COLINUX_IOCTL_H
#define _UAPI_COLINUX_IOCTL_H

#include <linux/types.h>
#include <linux/ioctl.h>
#include <linux/cooperative.h>

/*
 * The ioctls.
 *
 * Each open file of /dev/colinux holds at most one guest. The daemon
 * creates it (CREATE), copies the guest kernel's loadable segments into
 * its RAM (LOAD), may read what the driver set up (INFO), runs it (RUN),
 * binds eventfds to its virtio queues and interrupt lines (IOEVENTFD,
 * IRQFD), and destroys it (DESTROY, or by closing the file: a killed
 * daemon leaves nothing behind). Numbers are built with _IOW/_IOR from <linux/ioctl.h>:
 * type COOPERATIVE_IOCTL_TYPE, number COOPERATIVE_IOCTL_NR_*, and the
 * size of the argument structure. Every structure carries the ABI
 * version in use (COOPERATIVE_ABI_VERSION of <linux/cooperative.h>: the
 * driver and the daemon are built against one guest ABI), and every
 * reserved field must be zero, so that later fields can be added without
 * a new ioctl. The type is not registered in the kernel's
 * Documentation/userspace-api/ioctl/ioctl-number.rst (0xC1-0xC9 are free
 * there in 6.1 and 6.12).
 */
#define COOPERATIVE_IOCTL_TYPE			0xC7

#define COOPERATIVE_IOCTL_NR_CREATE		1
#define COOPERATIVE_IOCTL_NR_LOAD		2
#define COOPERATIVE_IOCTL_NR_INFO		3
#define COOPERATIVE_IOCTL_NR_DESTROY		4
#define COOPERATIVE_IOCTL_NR_RUN		5
#define COOPERATIVE_IOCTL_NR_IOEVENTFD		6
#define COOPERATIVE_IOCTL_NR_IRQFD		7

/* Largest guest RAM the driver accepts, in bytes (further limited by the
 * host's RAM).
 */
#define COOPERATIVE_MAX_MEMORY_SIZE		(3ULL << 30)
/* Smallest guest RAM, in bytes. */
#define COOPERATIVE_MIN_MEMORY_SIZE		(8ULL << 20)

/* CREATE: make this file's guest and allocate its RAM. */
struct cooperative_ioctl_create {
	__u32 abi_version;	/* COOPERATIVE_ABI_VERSION of the daemon */
	__u32 flags;		/* none defined yet; zero */
	__aligned_u64 memory_size;	/* bytes of guest RAM, multiple of page size */
	__aligned_u64 reserved[2];	/* zero */
};

/*
 * LOAD: copy size bytes from the daemon's buffer at user_address to
 * guest-physical address guest_address, then zero zero_size bytes after
 * them (an ELF segment's memsz beyond its filesz). The whole range must
 * lie inside guest RAM.
 */
struct cooperative_ioctl_load {
	__u32 abi_version;	/* COOPERATIVE_ABI_VERSION */
	__u32 flags;		/* none defined yet; zero */
	__aligned_u64 guest_address;	/* guest-physical destination */
	__aligned_u64 user_address;	/* daemon virtual address of the data */
	__aligned_u64 size;		/* bytes to copy */
	__aligned_u64 zero_size;	/* bytes to zero after them */
	__aligned_u64 reserved[2];	/* zero */
};

/* INFO: what the driver has set up for this file's guest. */
struct cooperative_ioctl_info {
	__u32 abi_version;	/* in: COOPERATIVE_ABI_VERSION */
	__u32 guest_id;		/* out: host's number for this guest */
	__aligned_u64 memory_size;	/* out: bytes of guest RAM */
	__aligned_u64 pages;		/* out: host pages backing guest RAM */
	__aligned_u64 pages_below_4g;	/* out: of which at host-physical < 4 GiB */
	__aligned_u64 lowest_frame;	/* out: lowest host page frame number used */
	__aligned_u64 highest_frame;	/* out: highest host page frame number used */
	__aligned_u64 loaded_bytes;	/* out: bytes copied by LOAD so far */
	__u32 loads;		/* out: LOAD calls that succeeded */
	__u32 state;		/* out: COOPERATIVE_GUEST_STATE_* */
	__aligned_u64 reserved[4];	/* zero */
};

/* Bytes of text RUN can return (DEBUG_LINE, TERMINATE reason). */
#define COOPERATIVE_RUN_TEXT_SIZE		COOPERATIVE_MESSAGE_TEXT_SIZE

/*
 * RUN: run the guest on the calling thread until it needs the daemon.
 * The first RUN starts it at entry with its stack at stack (guest
 * virtual addresses in the initial page tables, which map all of guest
 * RAM at COOPERATIVE_KERNEL_VA_OFFSET); interrupts are off at entry and
 * the passage's IDT is loaded. Later RUNs (entry 0) resume it; status is
 * then the result of the operation RUN last returned. Host interrupts
 * are served in the kernel and counted; IDLE returns EXIT_IDLE (unless a
 * virtual interrupt is already pending, or an IRQFD raises one or the
 * guest's timer expires while RUN watches for them: halt polling, the
 * module parameter halt_poll_ns), a
 * queue notification bound by IOEVENTFD is served in the kernel, and
 * RUN returns EXIT_YIELD at
 * least every few milliseconds of guest time so that the daemon can
 * serve devices and pass console input.
 */
struct cooperative_ioctl_run {
	__u32 abi_version;	/* in: COOPERATIVE_ABI_VERSION */
	__u32 flags;		/* in: COOPERATIVE_RUN_* flags */
	__aligned_u64 entry;	/* in: first RUN: start address, else 0 */
	__aligned_u64 stack;	/* in: first RUN: stack top, else 0 */
	__u32 status;		/* in: COOPERATIVE_STATUS_* of the last op */
	__u32 exit_reason;	/* out: COOPERATIVE_RUN_EXIT_* */
	__u32 operation;	/* out: OPERATION: the COOPERATIVE_OP_* */
	__u32 vector;		/* out: FAULT: the exception vector */
	__aligned_u64 params[COOPERATIVE_NR_PARAMS]; /* out: its params */
	__aligned_u64 idle_round_trips; /* out: IDLEs served by this RUN */
	__aligned_u64 interrupts; /* out: host interrupts forwarded */
	__aligned_u64 fault_address; /* out: FAULT: CR2 */
	__aligned_u64 fault_eip; /* out: FAULT: EIP, or the error code */
	__u8 text[COOPERATIVE_RUN_TEXT_SIZE]; /* out: text, NUL-terminated */
	/*
	 * in: first RUN: daemon address of a struct cooperative_boot_params
	 * (memory_size, kernel_end, initrd, command_line; the driver fills
	 * the rest), else 0.
	 */
	__aligned_u64 boot;
	__aligned_u64 input;	/* in: daemon address of console input, 0: none */
	__u32 input_size;	/* in: bytes at input; out: bytes the guest got */
	__u32 text_size;	/* out: bytes in text (without the NUL) */
	__aligned_u64 timeout_ns; /* out: IDLE: ns to the guest's timer, 0: none */
	__aligned_u64 halt_polls; /* out: of idle_round_trips, those whose
				   * line came while RUN watched for it
				   * (halt polling) */
	__aligned_u64 reserved[1];	/* zero */
};

/*
 * cooperative_ioctl_run.flags: press the guest's power button before
 * running it (its virtual line COOPERATIVE_IRQ_POWER becomes pending: a
 * Linux guest runs its orderly power-off, as for a real button).
 */
#define COOPERATIVE_RUN_POWER_BUTTON		(1U << 0)
#define COOPERATIVE_RUN_FLAGS			COOPERATIVE_RUN_POWER_BUTTON

/* Why RUN returned, in cooperative_ioctl_run.exit_reason. */
#define COOPERATIVE_RUN_EXIT_OPERATION		1 /* an op for the daemon */
#define COOPERATIVE_RUN_EXIT_FAULT		2 /* unhandled exception: dead */
#define COOPERATIVE_RUN_EXIT_INTERRUPTED	3 /* a signal: RUN again */
/* The guest idles: wait for input or timeout_ns, then RUN again. */
#define COOPERATIVE_RUN_EXIT_IDLE		4
/* Its time slice is over: serve devices, then RUN again. */
#define COOPERATIVE_RUN_EXIT_YIELD		5

/*
 * Guest RAM for device back ends: mmap() of a /dev/colinux file whose
 * guest exists (after CREATE; before it: ENODEV), MAP_SHARED (else
 * EINVAL), maps its RAM in guest page frame order: file offset o is
 * guest-physical address o. The range must lie inside guest RAM (else
 * EINVAL); the mapping cannot be grown with mremap() and is left out of
 * core dumps. The mapping holds the guest's real pages (not a PFN map),
 * so O_DIRECT, get_user_pages, vmsplice and io_uring reads and writes
 * work on it (io_uring registered buffers do not: Linux refuses file
 * mappings other than shmem and hugetlbfs for those). Each page is
 * mapped on first touch with a reference of its own: a page stays
 * allocated while a mapping holds it, also after the guest is destroyed
 * (it is then the daemon's memory alone); a page first touched after the
 * guest's end gives SIGBUS (a fork's copy of a mapping touches its pages
 * anew), and a mapping never shows a later guest of the same file. Guest RAM is never freed or replaced while the guest
 * lives: the driver does not implement COOPERATIVE_OP_FREE_PAGES or
 * ALLOC_PAGES (they reach the daemon as operations), so a mapping sees
 * the guest's RAM for the guest's whole life. The descriptor can be
 * passed to another process (a vhost-user back end) for the same view.
 * The daemon and the guest access that memory at the same time: the
 * virtio rules (barriers, the order of ring updates) are the only
 * synchronisation.
 *
 * poll() on the file reports EPOLLIN while a line raised through an
 * IRQFD is pending and RUN has not taken it yet: a daemon waiting for
 * an idle guest's next event includes the file in its poll set. RUN
 * takes those lines into the guest's pending_irqs before every switch
 * into the guest, and an IDLE with one pending does not return.
 */

/* cooperative_ioctl_ioeventfd.flags and cooperative_ioctl_irqfd.flags */
#define COOPERATIVE_EVENTFD_DEASSIGN		(1U << 0)
#define COOPERATIVE_EVENTFD_FLAGS		COOPERATIVE_EVENTFD_DEASSIGN
/* cooperative_ioctl_irqfd.flags only: set ISR bits before raising */
#define COOPERATIVE_IRQFD_ISR			(1U << 1)
#define COOPERATIVE_IRQFD_FLAGS			(COOPERATIVE_EVENTFD_DEASSIGN | \
						 COOPERATIVE_IRQFD_ISR)

/*
 * IOEVENTFD: bind the notifications of one virtio queue to an eventfd.
 * While bound, the guest's COOPERATIVE_OP_VIRTIO REQ_NOTIFY of queue
 * `queue` (params[2]) of device `device` (params[0]) adds 1 to the
 * eventfd and the guest goes on at once with COOPERATIVE_STATUS_OK (RUN
 * does not return for it); notifications of unbound queues, and every
 * other COOPERATIVE_OP_VIRTIO request, return to the daemon as an
 * OPERATION. A NOTIFY whose device or queue index is out of range gets
 * COOPERATIVE_STATUS_INVALID at once (no exit). One eventfd per queue:
 * binding a bound queue is refused (EEXIST). With
 * COOPERATIVE_EVENTFD_DEASSIGN the binding of that queue is removed (fd
 * is ignored; ENOENT if there is none). Bindings end with the guest
 * (DESTROY, close). Errors: EPROTO (ABI version), EINVAL (no guest,
 * unknown flags, nonzero reserved fields, an index out of range, fd not
 * an eventfd), EBADF (fd not open). Like every ioctl of the file it waits
 * while RUN runs on another thread (at most one time slice for a Linux
 * guest): bind before RUN or while serving an operation.
 */
struct cooperative_ioctl_ioeventfd {
	__u32 abi_version;	/* COOPERATIVE_ABI_VERSION */
	__u32 flags;		/* COOPERATIVE_EVENTFD_DEASSIGN or 0 */
	__s32 fd;		/* an eventfd */
	__u32 device;		/* < COOPERATIVE_VIRTIO_MAX_DEVICES */
	__u32 queue;		/* < COOPERATIVE_VIRTIO_MAX_QUEUES */
	__u32 reserved0;	/* zero */
	__aligned_u64 reserved[2];	/* zero */
};

/*
 * IRQFD: an eventfd that raises a virtual interrupt line. Each signal of
 * the eventfd (a write from any thread or process) makes `line` pending:
 * a daemon waiting in poll() for its idle guest is woken (EPOLLIN), a
 * guest running on a CPU is interrupted at once (an IPI to that CPU) and
 * takes the line before it runs on, as a virtual interrupt (injected if
 * it left with interrupts on, as for any line). The driver consumes the
 * eventfd's count; a count already there when it is bound raises the
 * line once. Several eventfds may raise one line, one eventfd several
 * lines. With COOPERATIVE_EVENTFD_DEASSIGN the binding of that fd (the
 * same eventfd through any descriptor) and line is removed (ENOENT if
 * there is none). An eventfd closed while bound stays bound, silent,
 * until DEASSIGN or the guest's end. Bindings end with the guest
 * (DESTROY, close).
 *
 * With COOPERATIVE_IRQFD_ISR (binding only), each signal first ORs
 * isr_bits into the 32-bit word at guest-physical address isr (4-byte
 * aligned, inside guest RAM), then raises the line: a virtio device's
 * ISR word, so that another process serving its queues (a vhost-user
 * back end's call eventfd) interrupts the guest with no daemon thread
 * in between. Without it, isr and isr_bits must be zero.
 *
 * Errors: EPROTO, EINVAL (no guest, unknown flags, nonzero reserved
 * fields, line out of range, fd not an eventfd, ISR with DEASSIGN, an
 * isr word misaligned or outside guest RAM, no isr_bits), EBADF, EEXIST
 * (that fd and line are bound already), ENOSPC (more than
 * COOPERATIVE_IRQFD_MAX bindings). Waits while RUN runs, as IOEVENTFD.
 */
struct cooperative_ioctl_irqfd {
	__u32 abi_version;	/* COOPERATIVE_ABI_VERSION */
	__u32 flags;		/* COOPERATIVE_IRQFD_FLAGS */
	__s32 fd;		/* an eventfd */
	__u32 line;		/* < COOPERATIVE_NR_IRQS */
	__aligned_u64 isr;	/* COOPERATIVE_IRQFD_ISR: guest-physical */
	__u32 isr_bits;		/* COOPERATIVE_IRQFD_ISR: ORed into it */
	__u32 reserved;		/* zero */
};

/* Most IRQFD bindings one guest may have. */
#define COOPERATIVE_IRQFD_MAX			256

/* Guest states, in cooperative_ioctl_info.state. */
#define COOPERATIVE_GUEST_STATE_NONE		0 /* no guest on this file */
#define COOPERATIVE_GUEST_STATE_CREATED		1 /* RAM allocated, loading */
#define COOPERATIVE_GUEST_STATE_RUNNING		2 /* RUN has started it */
#define COOPERATIVE_GUEST_STATE_DEAD		3 /* terminated or faulted */

#define COOPERATIVE_IOCTL_CREATE \
	_IOW(COOPERATIVE_IOCTL_TYPE, COOPERATIVE_IOCTL_NR_CREATE, \
	     struct cooperative_ioctl_create)
#define COOPERATIVE_IOCTL_LOAD \
	_IOW(COOPERATIVE_IOCTL_TYPE, COOPERATIVE_IOCTL_NR_LOAD, \
	     struct cooperative_ioctl_load)
#define COOPERATIVE_IOCTL_INFO \
	_IOWR(COOPERATIVE_IOCTL_TYPE, COOPERATIVE_IOCTL_NR_INFO, \
	      struct cooperative_ioctl_info)
#define COOPERATIVE_IOCTL_DESTROY \
	_IO(COOPERATIVE_IOCTL_TYPE, COOPERATIVE_IOCTL_NR_DESTROY)
#define COOPERATIVE_IOCTL_RUN \
	_IOWR(COOPERATIVE_IOCTL_TYPE, COOPERATIVE_IOCTL_NR_RUN, \
	      struct cooperative_ioctl_run)
#define COOPERATIVE_IOCTL_IOEVENTFD \
	_IOW(COOPERATIVE_IOCTL_TYPE, COOPERATIVE_IOCTL_NR_IOEVENTFD, \
	     struct cooperative_ioctl_ioeventfd)
#define COOPERATIVE_IOCTL_IRQFD \
	_IOW(COOPERATIVE_IOCTL_TYPE, COOPERATIVE_IOCTL_NR_IRQFD, \
	     struct cooperative_ioctl_irqfd)

/* Expected sizes, for checks in C and in bindings such as Rust. */
#define COOPERATIVE_IOCTL_CREATE_SIZE		32
#define COOPERATIVE_IOCTL_LOAD_SIZE		56
#define COOPERATIVE_IOCTL_INFO_SIZE		96
#define COOPERATIVE_IOCTL_RUN_SIZE		440
#define COOPERATIVE_IOCTL_IOEVENTFD_SIZE	40
#define COOPERATIVE_IOCTL_IRQFD_SIZE		32

/* Compile-time layout checks, as in <linux/cooperative.h>. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
	!defined(__cplusplus)
#define COLINUX_IOCTL_LAYOUT_CHECKED	1

#define __COLINUX_IOCTL_SIZE(type, size)				\
	_Static_assert(sizeof(struct type) == (size),			\
		       "colinux ioctl ABI: size of struct " #type)
#define __COLINUX_IOCTL_OFFSET(type, field, offset)			\
	_Static_assert(__builtin_offsetof(struct type, field) == (offset), \
		       "colinux ioctl ABI: offset of " #type "." #field)

__COLINUX_IOCTL_SIZE(cooperative_ioctl_create, COOPERATIVE_IOCTL_CREATE_SIZE);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_create, flags, 4);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_create, memory_size, 8);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_create, reserved, 16);
__COLINUX_IOCTL_SIZE(cooperative_ioctl_load, COOPERATIVE_IOCTL_LOAD_SIZE);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_load, guest_address, 8);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_load, user_address, 16);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_load, size, 24);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_load, zero_size, 32);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_load, reserved, 40);
__COLINUX_IOCTL_SIZE(cooperative_ioctl_info, COOPERATIVE_IOCTL_INFO_SIZE);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, guest_id, 4);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, memory_size, 8);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, pages, 16);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, pages_below_4g, 24);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, lowest_frame, 32);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, highest_frame, 40);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, loaded_bytes, 48);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, loads, 56);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, state, 60);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_info, reserved, 64);
__COLINUX_IOCTL_SIZE(cooperative_ioctl_run, COOPERATIVE_IOCTL_RUN_SIZE);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, entry, 8);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, stack, 16);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, status, 24);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, exit_reason, 28);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, operation, 32);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, vector, 36);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, params, 40);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, idle_round_trips, 104);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, interrupts, 112);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, fault_address, 120);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, fault_eip, 128);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, text, 136);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, boot, 392);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, input, 400);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, input_size, 408);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, text_size, 412);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, timeout_ns, 416);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, halt_polls, 424);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_run, reserved, 432);
__COLINUX_IOCTL_SIZE(cooperative_ioctl_ioeventfd, COOPERATIVE_IOCTL_IOEVENTFD_SIZE);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_ioeventfd, flags, 4);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_ioeventfd, fd, 8);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_ioeventfd, device, 12);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_ioeventfd, queue, 16);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_ioeventfd, reserved0, 20);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_ioeventfd, reserved, 24);
__COLINUX_IOCTL_SIZE(cooperative_ioctl_irqfd, COOPERATIVE_IOCTL_IRQFD_SIZE);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_irqfd, flags, 4);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_irqfd, fd, 8);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_irqfd, line, 12);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_irqfd, isr, 16);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_irqfd, isr_bits, 24);
__COLINUX_IOCTL_OFFSET(cooperative_ioctl_irqfd, reserved, 28);

#endif /* C11 and not C++ */

#endif /* _UAPI_COLINUX_IOCTL_H */
