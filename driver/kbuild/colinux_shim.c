// SPDX-License-Identifier: GPL-2.0
/*
 * colinux host driver: the kernel-facing shim.
 *
 * /dev/colinux (root only): each open file holds at most one cooperative
 * guest, made by the ioctls of <colinux/ioctl.h>. This file does what
 * needs the kernel: the device, copying ioctl arguments in and out, the
 * per-file mutex, pages, mappings and logging, and the device back ends'
 * interfaces: mmap() of guest RAM, eventfds bound to virtio queues
 * (IOEVENTFD) and to interrupt lines (IRQFD), poll(). The guest logic
 * (argument checks, guest RAM, loading, accounting, teardown) is in the
 * Rust core, behind colinux_core.h. Closing the file (also when the
 * daemon is killed) destroys the guest.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/capability.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/nodemask.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "colinux_core.h"
#include "colinux_passage_c.h"

static unsigned long passage_busy;
module_param(passage_busy, ulong, 0444);
MODULE_PARM_DESC(passage_busy,
		 "at load, run a built-in busy 32-bit guest for this many seconds");

static bool passage_faults;
module_param(passage_faults, bool, 0444);
MODULE_PARM_DESC(passage_faults,
		 "at load, run built-in 32-bit guests that fault and check each is reported");

static unsigned long passage_selftest;
module_param(passage_selftest, ulong, 0444);
MODULE_PARM_DESC(passage_selftest,
		 "at load, switch this many times into a built-in 32-bit guest and back");

static_assert(PAGE_SIZE == COOPERATIVE_PAGE_SIZE);
/* The core's RUN check looks at every reserved field: one of them today. */
static_assert(sizeof(struct cooperative_ioctl_run) == COOPERATIVE_IOCTL_RUN_SIZE);
static_assert(sizeof(((struct cooperative_ioctl_run *)0)->reserved) ==
	      sizeof(__u64));

/*
 * Guest RAM is charged to the daemon's memory cgroup. It comes from below
 * 4 GiB: a 32-bit PAE guest loads its page directories' host addresses
 * into a 32-bit CR3, and any of its pages may become one (the p2m table
 * holds 32-bit frames too).
 */
#define COLINUX_PAGE_GFP	(GFP_KERNEL_ACCOUNT | __GFP_DMA32 | __GFP_ZERO | \
				 __GFP_NOWARN)

/*
 * The host-wide limit on guest RAM: all guests together get at most half
 * of the host's RAM below 4 GiB (ZONE_DMA32, where guest RAM comes from:
 * devices that can only address 32 bits need the rest) and half of all
 * its RAM. colinux_guest_pages counts what the guests hold: CREATE checks
 * and adds under colinux_create_lock; a guest's RAM stops counting when
 * its struct colinux_mem goes, after the guest and every mapping of it.
 */
static DEFINE_MUTEX(colinux_create_lock);
static atomic_long_t colinux_guest_pages = ATOMIC_LONG_INIT(0);

static unsigned long colinux_limit_pages(void)
{
	unsigned long dma32 = 0;
	int nid;

	for_each_online_node(nid)
		dma32 += zone_managed_pages(&NODE_DATA(nid)->node_zones[ZONE_DMA32]);
	return min(totalram_pages(), dma32) / 2;
}

/* Longest log message the core sends. */
#define COLINUX_LOG_MAX		256

/*
 * Guest RAM as mmap() sees it: the guest's frame table while the guest
 * lives, NULL after. The file holds one reference while it has the
 * guest, each mapping one more; the fault handler takes its pages under
 * @lock, so DESTROY (which clears @frames under it before the core frees
 * the pages) never frees a page between the lookup and the reference the
 * mapping takes. A page mapped keeps that reference until it is unmapped.
 */
struct colinux_mem {
	refcount_t ref;
	spinlock_t lock;		/* guards @frames against DESTROY */
	const u64 *frames;		/* the core's table; NULL: guest gone */
	u64 nr_frames;			/* guest RAM, pages (fixed) */
	u32 guest_id;
};

/* One IRQFD binding: an eventfd raising a line (KVM's irqfd). */
struct colinux_irqfd {
	struct list_head link;		/* in colinux_events.irqfds */
	struct colinux_events *ev;
	struct eventfd_ctx *ctx;	/* a reference of ours */
	wait_queue_entry_t wait;	/* on the eventfd's wait queue */
	poll_table pt;
	u32 line;
	/*
	 * COOPERATIVE_IRQFD_ISR: the word in guest RAM (its page stays until
	 * the guest ends, after its bindings) and the bits ORed into it
	 * before the line is raised; NULL: none.
	 */
	u32 *isr;
	u32 isr_bits;
};

/*
 * A guest's asynchronous events. @lines, @guest_cpu, @kick_busy, @csd and
 * @poll_wq are used from any context (an eventfd's wake function runs
 * wherever the eventfd is signalled, with its wait-queue lock held);
 * @ioeventfds, @irqfds and @nr_irqfds change only under the file's mutex
 * (which RUN holds while it reads @ioeventfds).
 */
struct colinux_events {
	unsigned long lines;		/* raised, not yet taken by RUN */
	int guest_cpu;			/* CPU in the guest world, or -1 */
	unsigned long kick_busy;	/* bit 0: @csd is queued */
	call_single_data_t csd;		/* the IPI that interrupts the guest */
	unsigned long kicks;		/* IPIs sent (under @kick_busy) */
	wait_queue_head_t poll_wq;	/* poll() waits for @lines */
	/* COOPERATIVE_VIRTIO_MAX_DEVICES x _MAX_QUEUES, or NULL: none bound */
	struct eventfd_ctx **ioeventfds;
	struct list_head irqfds;
	unsigned int nr_irqfds;
};

struct colinux_file {
	struct mutex lock;		/* serialises the ioctls of this file */
	struct colinux_guest *guest;	/* owned by the core; NULL if none */
	struct colinux_run *run;	/* its passage and page tables, once run */
	spinlock_t mem_lock;		/* guards @mem (mmap takes no mutex) */
	struct colinux_mem *mem;	/* the guest's RAM for mmap; NULL if none */
	struct colinux_events ev;
};

int colinux_shim_alloc_page(u64 *frame)
{
	struct page *page;

	/* A huge request can be interrupted by killing the daemon. */
	if (fatal_signal_pending(current))
		return -EINTR;
	cond_resched();
	page = alloc_page(COLINUX_PAGE_GFP);
	if (!page)
		return -ENOMEM;
	*frame = page_to_pfn(page);
	return 0;
}

void colinux_shim_free_page(u64 frame)
{
	__free_page(pfn_to_page(frame));
}

int colinux_shim_copy_from_user(u64 frame, u32 offset, u64 user_address,
				u32 len)
{
	unsigned long left;
	void *kaddr;

	if (offset > PAGE_SIZE || len > PAGE_SIZE - offset)
		return -EINVAL;
	if (fatal_signal_pending(current))
		return -EINTR;
	cond_resched();
	kaddr = kmap_local_page(pfn_to_page(frame));
	left = copy_from_user(kaddr + offset, u64_to_user_ptr(user_address),
			      len);
	kunmap_local(kaddr);
	return left ? -EFAULT : 0;
}

int colinux_shim_zero(u64 frame, u32 offset, u32 len)
{
	if (offset > PAGE_SIZE || len > PAGE_SIZE - offset)
		return -EINVAL;
	if (fatal_signal_pending(current))
		return -EINTR;
	cond_resched();
	memzero_page(pfn_to_page(frame), offset, len);
	return 0;
}

void *colinux_shim_alloc(size_t size)
{
	return kvzalloc(size, GFP_KERNEL_ACCOUNT);
}

void colinux_shim_free(void *ptr)
{
	kvfree(ptr);
}

void colinux_shim_log(u32 level, u32 guest_id, const char *msg, size_t len)
{
	int n = min_t(size_t, len, COLINUX_LOG_MAX);

	if (guest_id == COLINUX_NO_GUEST) {
		if (level == COLINUX_LOG_WARN)
			pr_warn_ratelimited("%s[%d]: %.*s\n", current->comm,
					    task_pid_nr(current), n, msg);
		else
			pr_info_ratelimited("%s[%d]: %.*s\n", current->comm,
					    task_pid_nr(current), n, msg);
	} else {
		if (level == COLINUX_LOG_WARN)
			pr_warn_ratelimited("guest %u: %.*s\n", guest_id, n,
					    msg);
		else
			pr_info_ratelimited("guest %u: %.*s\n", guest_id, n,
					    msg);
	}
}

void *colinux_shim_memcpy(void *dst, const void *src, size_t len)
{
	return memcpy(dst, src, len);
}

void *colinux_shim_memmove(void *dst, const void *src, size_t len)
{
	return memmove(dst, src, len);
}

void *colinux_shim_memset(void *dst, int c, size_t len)
{
	return memset(dst, c, len);
}

int colinux_shim_memcmp(const void *a, const void *b, size_t len)
{
	return memcmp(a, b, len);
}

/* ---- Guest RAM for device back ends: mmap() ---- */

static void colinux_mem_put(struct colinux_mem *mem)
{
	if (refcount_dec_and_test(&mem->ref)) {
		atomic_long_sub(mem->nr_frames, &colinux_guest_pages);
		kfree(mem);
	}
}

/*
 * A page of a mapping touched for the first time: the guest's page at that
 * guest pfn, with a reference for the mapping (the core's table holds
 * order-0 pages of the page allocator, so the mapping is an ordinary one:
 * no VM_PFNMAP, and get_user_pages works on it). SIGBUS once the guest is
 * gone.
 */
static vm_fault_t colinux_vm_fault(struct vm_fault *vmf)
{
	struct colinux_mem *mem = vmf->vma->vm_private_data;
	struct page *page = NULL;

	spin_lock(&mem->lock);
	if (mem->frames && vmf->pgoff < mem->nr_frames) {
		page = pfn_to_page(mem->frames[vmf->pgoff]);
		get_page(page);
	}
	spin_unlock(&mem->lock);
	if (!page)
		return VM_FAULT_SIGBUS;
	vmf->page = page;
	return 0;
}

/* A mapping copied (fork) or split holds its own reference. */
static void colinux_vm_open(struct vm_area_struct *vma)
{
	struct colinux_mem *mem = vma->vm_private_data;

	refcount_inc(&mem->ref);
}

static void colinux_vm_close(struct vm_area_struct *vma)
{
	colinux_mem_put(vma->vm_private_data);
}

static const struct vm_operations_struct colinux_vm_ops = {
	.open = colinux_vm_open,
	.close = colinux_vm_close,
	.fault = colinux_vm_fault,
};

/*
 * mmap(): guest RAM, file offset = guest-physical address, MAP_SHARED,
 * inside guest RAM (the core checks). It takes no mutex: mmap runs with
 * the caller's mmap_lock held, and RUN holds the file's mutex while it
 * copies from and to the daemon's memory.
 */
static int colinux_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct colinux_file *cf = file->private_data;
	struct colinux_mem *mem;
	int ret;

	spin_lock(&cf->mem_lock);
	mem = cf->mem;
	if (mem)
		refcount_inc(&mem->ref);
	spin_unlock(&cf->mem_lock);
	ret = colinux_core_mmap_check(mem ? mem->guest_id : COLINUX_NO_GUEST,
				      mem ? mem->nr_frames : 0, vma->vm_pgoff,
				      vma_pages(vma),
				      !!(vma->vm_flags & VM_MAYSHARE));
	if (ret) {
		if (mem)
			colinux_mem_put(mem);
		return ret;
	}
	/* Not grown by mremap (pages beyond RAM); not in core dumps. */
	vma->vm_flags |= VM_DONTEXPAND | VM_DONTDUMP;
	vma->vm_private_data = mem;
	vma->vm_ops = &colinux_vm_ops;
	return 0;
}

/* ---- Asynchronous events: IOEVENTFD, IRQFD, poll() ---- */

/* Runs on the guest's CPU (an IPI): the guest world has left already. */
static void colinux_kick_done(void *info)
{
	struct colinux_events *ev = info;

	clear_bit_unlock(0, &ev->kick_busy);
}

static void colinux_events_init(struct colinux_events *ev)
{
	ev->guest_cpu = -1;
	INIT_CSD(&ev->csd, colinux_kick_done, ev);
	init_waitqueue_head(&ev->poll_wq);
	INIT_LIST_HEAD(&ev->irqfds);
}

/*
 * Raise @line, from any context: RUN takes it before it next enters the
 * guest; a guest in the guest world now is interrupted (its CPU gets an
 * IPI, which makes the guest world leave at once if the guest has
 * interrupts on, else as soon as it enables them or the run watchdog's
 * NMI comes); poll() reports it.
 */
static void colinux_events_raise(struct colinux_events *ev, u32 line)
{
	int cpu;

	set_bit(line, &ev->lines);
	/* Pairs with colinux_events_enter(): the line or the CPU is seen. */
	smp_mb__after_atomic();
	cpu = READ_ONCE(ev->guest_cpu);
	/* One IPI in flight at a time: the csd must not be queued twice. */
	if (cpu >= 0 && !test_and_set_bit_lock(0, &ev->kick_busy)) {
		ev->kicks++;
		if (smp_call_function_single_async(cpu, &ev->csd)) {
			ev->kicks--;
			clear_bit_unlock(0, &ev->kick_busy);
		}
	}
	wake_up_interruptible_poll(&ev->poll_wq, EPOLLIN | EPOLLRDNORM);
}

bool colinux_events_enter(struct colinux_events *ev, int cpu)
{
	WRITE_ONCE(ev->guest_cpu, cpu);
	/* Pairs with colinux_events_raise(). */
	smp_mb();
	return READ_ONCE(ev->lines) != 0;
}

void colinux_events_leave(struct colinux_events *ev)
{
	WRITE_ONCE(ev->guest_cpu, -1);
}

/* A line is raised and not taken yet (a look, no barrier: polling). */
bool colinux_events_pending(struct colinux_events *ev)
{
	return READ_ONCE(ev->lines) != 0;
}

u32 colinux_events_take(struct colinux_events *ev)
{
	return READ_ONCE(ev->lines) ? xchg(&ev->lines, 0) : 0;
}

bool colinux_events_notify(struct colinux_events *ev, u32 device, u32 queue)
{
	struct eventfd_ctx *ctx;

	if (!ev->ioeventfds)
		return false;
	ctx = ev->ioeventfds[device * COOPERATIVE_VIRTIO_MAX_QUEUES + queue];
	if (!ctx)
		return false;
	eventfd_signal(ctx, 1);
	return true;
}

/*
 * One signal of a binding: its ISR bits first (a locked OR: the guest
 * reads and clears the word at once with xchg), then the line, whose
 * raising orders the word before the guest sees the line.
 */
static void colinux_irqfd_fire(struct colinux_irqfd *irqfd)
{
	if (irqfd->isr)
		atomic_or(irqfd->isr_bits, (atomic_t *)irqfd->isr);
	colinux_events_raise(irqfd->ev, irqfd->line);
}

/*
 * The eventfd was signalled (or is being released: EPOLLHUP, ignored; the
 * binding holds a reference to the eventfd, so its wait queue stays until
 * the binding goes). Runs with the eventfd's wait-queue lock held, in any
 * context.
 */
static int colinux_irqfd_wake(wait_queue_entry_t *wait, unsigned int mode,
			      int sync, void *key)
{
	struct colinux_irqfd *irqfd = container_of(wait, struct colinux_irqfd,
						   wait);
	u64 count;

	if (key_to_poll(key) & EPOLLIN) {
		eventfd_ctx_do_read(irqfd->ctx, &count);
		colinux_irqfd_fire(irqfd);
	}
	return 0;
}

/* vfs_poll() of the eventfd hands us its wait queue. */
static void colinux_irqfd_queue(struct file *file, wait_queue_head_t *wqh,
				poll_table *pt)
{
	struct colinux_irqfd *irqfd = container_of(pt, struct colinux_irqfd,
						   pt);

	add_wait_queue(wqh, &irqfd->wait);
}

/*
 * Remove a binding: off the eventfd's wait queue (under its lock, so the
 * wake function is neither running nor called again), then free.
 */
static void colinux_irqfd_free(struct colinux_events *ev,
			       struct colinux_irqfd *irqfd)
{
	u64 count;

	eventfd_ctx_remove_wait_queue(irqfd->ctx, &irqfd->wait, &count);
	eventfd_ctx_put(irqfd->ctx);
	list_del(&irqfd->link);
	ev->nr_irqfds--;
	kfree(irqfd);
}

/* Every binding goes, and the lines they raised: the guest has ended. */
static void colinux_events_clear(struct colinux_events *ev)
{
	struct colinux_irqfd *irqfd, *next;
	unsigned int i;

	list_for_each_entry_safe(irqfd, next, &ev->irqfds, link)
		colinux_irqfd_free(ev, irqfd);
	/* Nothing raises lines any more; an IPI may still be in flight. */
	while (test_bit(0, &ev->kick_busy))
		usleep_range(50, 100);
	if (ev->ioeventfds) {
		for (i = 0; i < COOPERATIVE_VIRTIO_MAX_DEVICES *
		     COOPERATIVE_VIRTIO_MAX_QUEUES; i++)
			if (ev->ioeventfds[i])
				eventfd_ctx_put(ev->ioeventfds[i]);
		kfree(ev->ioeventfds);
		ev->ioeventfds = NULL;
	}
	xchg(&ev->lines, 0);
	if (ev->kicks)
		pr_info("%s[%d]: the guest's CPU was interrupted %lu times for lines raised while it ran\n",
			current->comm, task_pid_nr(current), ev->kicks);
	ev->kicks = 0;
}

/* The eventfd of @fd, or an error logged with the ioctl's name. */
static struct eventfd_ctx *colinux_eventfd(int fd, const char *ioctl)
{
	struct eventfd_ctx *ctx = eventfd_ctx_fdget(fd);

	if (IS_ERR(ctx))
		pr_warn_ratelimited("%s[%d]: %s refused: fd %d is %s\n",
				    current->comm, task_pid_nr(current), ioctl,
				    fd, PTR_ERR(ctx) == -EBADF ? "not open" :
				    "not an eventfd");
	return ctx;
}

static long colinux_ioeventfd(struct colinux_file *cf,
			      const struct cooperative_ioctl_ioeventfd *arg)
{
	struct colinux_events *ev = &cf->ev;
	struct eventfd_ctx **slot, *ctx;
	s64 id = colinux_core_ioeventfd_check(&cf->guest, arg);

	if (id < 0)
		return id;
	if (arg->flags & COOPERATIVE_EVENTFD_DEASSIGN) {
		slot = ev->ioeventfds ? &ev->ioeventfds[arg->device *
			COOPERATIVE_VIRTIO_MAX_QUEUES + arg->queue] : NULL;
		if (!slot || !*slot)
			return -ENOENT;
		eventfd_ctx_put(*slot);
		*slot = NULL;
		return 0;
	}
	if (!ev->ioeventfds) {
		ev->ioeventfds = kcalloc(COOPERATIVE_VIRTIO_MAX_DEVICES *
					 COOPERATIVE_VIRTIO_MAX_QUEUES,
					 sizeof(*ev->ioeventfds),
					 GFP_KERNEL_ACCOUNT);
		if (!ev->ioeventfds)
			return -ENOMEM;
	}
	slot = &ev->ioeventfds[arg->device * COOPERATIVE_VIRTIO_MAX_QUEUES +
			       arg->queue];
	if (*slot) {
		pr_warn_ratelimited("guest %u: IOEVENTFD refused: device %u queue %u is bound already\n",
				    (u32)id, arg->device, arg->queue);
		return -EEXIST;
	}
	ctx = colinux_eventfd(arg->fd, "IOEVENTFD");
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	*slot = ctx;
	return 0;
}

static long colinux_irqfd_assign(struct colinux_events *ev, u32 id,
				 const struct cooperative_ioctl_irqfd *arg,
				 u32 *isr)
{
	struct colinux_irqfd *irqfd, *other;
	struct eventfd_ctx *ctx;
	__poll_t events;
	struct fd f;
	long ret = 0;

	f = fdget(arg->fd);
	if (!f.file) {
		pr_warn_ratelimited("guest %u: IRQFD refused: fd %d is not open\n",
				    id, arg->fd);
		return -EBADF;
	}
	ctx = eventfd_ctx_fileget(f.file);
	if (IS_ERR(ctx)) {
		pr_warn_ratelimited("guest %u: IRQFD refused: fd %d is not an eventfd\n",
				    id, arg->fd);
		ret = PTR_ERR(ctx);
		goto out;
	}
	list_for_each_entry(other, &ev->irqfds, link) {
		if (other->ctx == ctx && other->line == arg->line) {
			pr_warn_ratelimited("guest %u: IRQFD refused: fd %d is bound to line %u already\n",
					    id, arg->fd, arg->line);
			ret = -EEXIST;
			goto put;
		}
	}
	if (ev->nr_irqfds >= COOPERATIVE_IRQFD_MAX) {
		pr_warn_ratelimited("guest %u: IRQFD refused: %u bindings already (COOPERATIVE_IRQFD_MAX)\n",
				    id, ev->nr_irqfds);
		ret = -ENOSPC;
		goto put;
	}
	irqfd = kzalloc(sizeof(*irqfd), GFP_KERNEL_ACCOUNT);
	if (!irqfd) {
		ret = -ENOMEM;
		goto put;
	}
	irqfd->ev = ev;
	irqfd->ctx = ctx;
	irqfd->line = arg->line;
	irqfd->isr = isr;
	irqfd->isr_bits = arg->isr_bits;
	init_waitqueue_func_entry(&irqfd->wait, colinux_irqfd_wake);
	init_poll_funcptr(&irqfd->pt, colinux_irqfd_queue);
	list_add_tail(&irqfd->link, &ev->irqfds);
	ev->nr_irqfds++;
	/* From here on the wake function may run, on any CPU. */
	events = vfs_poll(f.file, &irqfd->pt);
	/* A count already there raises the line once (it stays unread). */
	if (events & EPOLLIN)
		colinux_irqfd_fire(irqfd);
	goto out;
put:
	eventfd_ctx_put(ctx);
out:
	fdput(f);
	return ret;
}

static long colinux_irqfd(struct colinux_file *cf,
			  const struct cooperative_ioctl_irqfd *arg)
{
	struct colinux_events *ev = &cf->ev;
	struct colinux_irqfd *irqfd;
	struct eventfd_ctx *ctx;
	s64 id = colinux_core_irqfd_check(&cf->guest, arg);

	if (id < 0)
		return id;
	if (!(arg->flags & COOPERATIVE_EVENTFD_DEASSIGN)) {
		u32 *isr = NULL;

		if (arg->flags & COOPERATIVE_IRQFD_ISR) {
			const u64 *frames;
			u64 count;

			/* The core checked the word lies inside guest RAM. */
			if (colinux_core_frames(&cf->guest, &frames, &count) ||
			    arg->isr >> PAGE_SHIFT >= count)
				return -EINVAL;
			isr = page_address(pfn_to_page(frames[arg->isr >>
							      PAGE_SHIFT])) +
			      offset_in_page(arg->isr);
		}
		return colinux_irqfd_assign(ev, id, arg, isr);
	}
	ctx = colinux_eventfd(arg->fd, "IRQFD");
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	list_for_each_entry(irqfd, &ev->irqfds, link) {
		if (irqfd->ctx == ctx && irqfd->line == arg->line) {
			colinux_irqfd_free(ev, irqfd);
			eventfd_ctx_put(ctx);
			return 0;
		}
	}
	eventfd_ctx_put(ctx);
	return -ENOENT;
}

/* EPOLLIN while lines raised by IRQFDs wait for RUN. */
static __poll_t colinux_poll(struct file *file, poll_table *wait)
{
	struct colinux_file *cf = file->private_data;

	poll_wait(file, &cf->ev.poll_wq, wait);
	return READ_ONCE(cf->ev.lines) ? EPOLLIN | EPOLLRDNORM : 0;
}

static int colinux_open(struct inode *inode, struct file *file)
{
	struct colinux_file *cf;

	/* A guest runs in ring 0: whoever controls it controls the host. */
	if (!capable(CAP_SYS_RAWIO))
		return -EPERM;
	/*
	 * For the same reason a locked-down kernel (Secure Boot lockdown,
	 * lockdown=integrity or confidentiality) forbids it, as it forbids
	 * /dev/mem: the guest kernel can read and write all of host memory.
	 */
	if (security_locked_down(LOCKDOWN_DEV_MEM)) {
		pr_warn_ratelimited("%s[%d]: /dev/colinux refused: the kernel is locked down (a cooperative guest kernel has the access to host memory that lockdown forbids)\n",
				    current->comm, task_pid_nr(current));
		return -EPERM;
	}
	cf = kzalloc(sizeof(*cf), GFP_KERNEL_ACCOUNT);
	if (!cf)
		return -ENOMEM;
	mutex_init(&cf->lock);
	spin_lock_init(&cf->mem_lock);
	colinux_events_init(&cf->ev);
	file->private_data = cf;
	return nonseekable_open(inode, file);
}

/* CREATE within what the host-wide limit leaves. */
static long colinux_create(struct colinux_file *cf,
			   struct cooperative_ioctl_create *arg)
{
	unsigned long limit = colinux_limit_pages(), left, held;
	struct colinux_mem *mem;
	struct cooperative_ioctl_info info = {
		.abi_version = COOPERATIVE_ABI_VERSION,
	};
	long ret;

	mem = kzalloc(sizeof(*mem), GFP_KERNEL_ACCOUNT);
	if (!mem)
		return -ENOMEM;
	mutex_lock(&colinux_create_lock);
	held = atomic_long_read(&colinux_guest_pages);
	left = limit > held ? limit - held : 0;
	ret = colinux_core_create(&cf->guest, arg, left);
	if (ret >= 0 && (colinux_core_frames(&cf->guest, &mem->frames,
					     &mem->nr_frames) ||
			 colinux_core_info(&cf->guest, &info)))
		ret = -EINVAL;	/* cannot happen: the core just made it */
	if (ret >= 0)
		atomic_long_add(mem->nr_frames, &colinux_guest_pages);
	mutex_unlock(&colinux_create_lock);
	if (ret < 0) {
		kfree(mem);
		return ret;
	}
	refcount_set(&mem->ref, 1);
	spin_lock_init(&mem->lock);
	mem->guest_id = info.guest_id;
	spin_lock(&cf->mem_lock);
	cf->mem = mem;
	spin_unlock(&cf->mem_lock);
	return ret;
}

/*
 * The end of the file's guest (DESTROY, close): its bindings, its run
 * state, its RAM (pages still mapped stay, with their references).
 * -EINVAL when there was no guest. Called with the file's mutex held or
 * as the file's last user.
 */
static int colinux_end_guest(struct colinux_file *cf)
{
	struct colinux_mem *mem;

	colinux_events_clear(&cf->ev);
	colinux_run_free(cf->run);
	cf->run = NULL;
	spin_lock(&cf->mem_lock);
	mem = cf->mem;
	cf->mem = NULL;
	spin_unlock(&cf->mem_lock);
	if (mem) {
		spin_lock(&mem->lock);
		mem->frames = NULL;
		spin_unlock(&mem->lock);
		colinux_mem_put(mem);
	}
	return colinux_core_destroy(&cf->guest);
}

static int colinux_release(struct inode *inode, struct file *file)
{
	struct colinux_file *cf = file->private_data;

	/*
	 * The last reference is gone: nobody else can hold the mutex, and
	 * no mapping exists (each holds a reference to the file).
	 */
	colinux_end_guest(cf);
	mutex_destroy(&cf->lock);
	kfree(cf);
	return 0;
}

/*
 * RUN: the core checks the argument; the passage sets the guest up to run
 * once and runs it; the core learns whether it started or ended (INFO).
 */
static long colinux_shim_run(struct colinux_file *cf,
			     struct cooperative_ioctl_run *arg)
{
	const u64 *frames;
	u64 count;
	long ret;

	ret = colinux_core_run_check(&cf->guest, arg,
				     cf->run && colinux_run_state(cf->run) !=
				     COOPERATIVE_GUEST_STATE_CREATED);
	if (ret)
		return ret;
	if (colinux_core_frames(&cf->guest, &frames, &count))
		return -EINVAL;
	if (!cf->run) {
		struct colinux_run *run = colinux_run_create(frames, count,
							     &cf->ev);

		if (IS_ERR(run))
			return PTR_ERR(run);
		cf->run = run;
	}
	ret = colinux_run(cf->run, arg);
	colinux_core_set_state(&cf->guest, colinux_run_state(cf->run));
	return ret;
}

static long colinux_ioctl(struct file *file, unsigned int cmd,
			  unsigned long uarg)
{
	struct colinux_file *cf = file->private_data;
	void __user *argp = (void __user *)uarg;
	union {
		struct cooperative_ioctl_create create;
		struct cooperative_ioctl_load load;
		struct cooperative_ioctl_info info;
		struct cooperative_ioctl_run run;
		struct cooperative_ioctl_ioeventfd ioeventfd;
		struct cooperative_ioctl_irqfd irqfd;
	} arg;
	long ret;

	switch (cmd) {
	case COOPERATIVE_IOCTL_CREATE:
	case COOPERATIVE_IOCTL_LOAD:
	case COOPERATIVE_IOCTL_INFO:
	case COOPERATIVE_IOCTL_RUN:
	case COOPERATIVE_IOCTL_IOEVENTFD:
	case COOPERATIVE_IOCTL_IRQFD:
		/* The size is the one the number encodes, <= sizeof(arg). */
		if (copy_from_user(&arg, argp, _IOC_SIZE(cmd)))
			return -EFAULT;
		/*
		 * An output buffer that cannot be written is refused before
		 * anything happens: write back what was read.
		 */
		if ((_IOC_DIR(cmd) & _IOC_READ) &&
		    copy_to_user(argp, &arg, _IOC_SIZE(cmd)))
			return -EFAULT;
		break;
	case COOPERATIVE_IOCTL_DESTROY:
		break;
	default:
		return -ENOTTY;
	}

	if (mutex_lock_killable(&cf->lock))
		return -EINTR;
	switch (cmd) {
	case COOPERATIVE_IOCTL_CREATE:
		ret = colinux_create(cf, &arg.create);
		break;
	case COOPERATIVE_IOCTL_LOAD:
		ret = colinux_core_load(&cf->guest, &arg.load);
		break;
	case COOPERATIVE_IOCTL_INFO:
		ret = colinux_core_info(&cf->guest, &arg.info);
		break;
	case COOPERATIVE_IOCTL_RUN:
		ret = colinux_shim_run(cf, &arg.run);
		break;
	case COOPERATIVE_IOCTL_IOEVENTFD:
		ret = colinux_ioeventfd(cf, &arg.ioeventfd);
		break;
	case COOPERATIVE_IOCTL_IRQFD:
		ret = colinux_irqfd(cf, &arg.irqfd);
		break;
	default:
		ret = colinux_end_guest(cf);
		break;
	}
	mutex_unlock(&cf->lock);

	if (!ret && cmd == COOPERATIVE_IOCTL_INFO &&
	    copy_to_user(argp, &arg.info, sizeof(arg.info)))
		ret = -EFAULT;
	if (!ret && cmd == COOPERATIVE_IOCTL_RUN &&
	    copy_to_user(argp, &arg.run, sizeof(arg.run)))
		ret = -EFAULT;
	return ret;
}

static const struct file_operations colinux_fops = {
	.owner = THIS_MODULE,
	.open = colinux_open,
	.release = colinux_release,
	.mmap = colinux_mmap,
	.poll = colinux_poll,
	.unlocked_ioctl = colinux_ioctl,
	/* The argument structures have the same layout for 32-bit daemons. */
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};

static struct miscdevice colinux_device = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "colinux",
	.fops = &colinux_fops,
	.mode = 0600,
};

static int __init colinux_init(void)
{
	int ret;

	ret = colinux_passage_init();
	if (ret)
		return ret;
	if (passage_selftest) {
		ret = colinux_passage_selftest_run(passage_selftest);
		if (ret)
			goto fail;
	}
	if (passage_faults) {
		ret = colinux_passage_fault_run();
		if (!ret)
			ret = colinux_passage_clobber_run();
		if (!ret)
			ret = colinux_passage_nmi_run();
		if (!ret)
			ret = colinux_passage_thunk_check();
		if (ret)
			goto fail;
	}
	if (passage_busy) {
		ret = colinux_passage_busy_run(passage_busy);
		if (ret)
			goto fail;
	}
	ret = misc_register(&colinux_device);
	if (ret) {
		pr_err("cannot register /dev/colinux: %d\n", ret);
		goto fail;
	}
	pr_info("ready: /dev/colinux, ABI version %u\n",
		COOPERATIVE_ABI_VERSION);
	return 0;
fail:
	colinux_passage_exit();
	return ret;
}

static void __exit colinux_exit(void)
{
	misc_deregister(&colinux_device);
	colinux_passage_exit();
}

module_init(colinux_init);
module_exit(colinux_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Cooperative Linux (colinux) host driver");
MODULE_INFO(colinux_abi, __stringify(COOPERATIVE_ABI_VERSION));
