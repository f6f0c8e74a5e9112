// SPDX-License-Identifier: GPL-2.0
/*
 * colinux host driver: the kernel-facing shim.
 *
 * /dev/colinux (root only): each open file holds at most one cooperative
 * guest, made by the ioctls of <linux/cooperative.h>. This file does what
 * needs the kernel: the device, copying ioctl arguments in and out, the
 * per-file mutex, pages, mappings and logging. The guest logic (argument
 * checks, guest RAM, loading, accounting, teardown) is in the Rust core,
 * behind colinux_core.h. Closing the file (also when the daemon is killed)
 * destroys the guest.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmzone.h>
#include <linux/nodemask.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

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
/* colinux_shim_run() checks every reserved field: two of them today. */
static_assert(sizeof(struct cooperative_ioctl_run) == COOPERATIVE_IOCTL_RUN_SIZE);
static_assert(sizeof(((struct cooperative_ioctl_run *)0)->reserved) ==
	      2 * sizeof(__u64));

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
 * its RAM. colinux_guest_pages counts what the guests hold, under
 * colinux_create_lock.
 */
static DEFINE_MUTEX(colinux_create_lock);
static unsigned long colinux_guest_pages;

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

struct colinux_file {
	struct mutex lock;		/* serialises the ioctls of this file */
	struct colinux_guest *guest;	/* owned by the core; NULL if none */
	struct colinux_run *run;	/* its passage and page tables, once run */
	unsigned long pages;		/* guest RAM counted in colinux_guest_pages */
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
	file->private_data = cf;
	return nonseekable_open(inode, file);
}

/* The file's guest RAM no longer counts against the host-wide limit. */
static void colinux_uncount(struct colinux_file *cf)
{
	mutex_lock(&colinux_create_lock);
	colinux_guest_pages -= cf->pages;
	cf->pages = 0;
	mutex_unlock(&colinux_create_lock);
}

/* CREATE within what the host-wide limit leaves. */
static long colinux_create(struct colinux_file *cf,
			   struct cooperative_ioctl_create *arg)
{
	unsigned long limit = colinux_limit_pages(), left;
	long ret;

	mutex_lock(&colinux_create_lock);
	left = limit > colinux_guest_pages ? limit - colinux_guest_pages : 0;
	ret = colinux_core_create(&cf->guest, arg, left);
	if (ret >= 0) {
		cf->pages = arg->memory_size >> PAGE_SHIFT;
		colinux_guest_pages += cf->pages;
	}
	mutex_unlock(&colinux_create_lock);
	return ret;
}

static int colinux_release(struct inode *inode, struct file *file)
{
	struct colinux_file *cf = file->private_data;

	/* The last reference is gone: nobody else can hold the mutex. */
	colinux_run_free(cf->run);
	colinux_core_destroy(&cf->guest);
	colinux_uncount(cf);
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
		struct colinux_run *run = colinux_run_create(frames, count);

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
	} arg;
	long ret;

	switch (cmd) {
	case COOPERATIVE_IOCTL_CREATE:
	case COOPERATIVE_IOCTL_LOAD:
	case COOPERATIVE_IOCTL_INFO:
	case COOPERATIVE_IOCTL_RUN:
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
	default:
		colinux_run_free(cf->run);
		cf->run = NULL;
		ret = colinux_core_destroy(&cf->guest);
		colinux_uncount(cf);
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
