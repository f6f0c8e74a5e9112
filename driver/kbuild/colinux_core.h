/* SPDX-License-Identifier: GPL-2.0 */
/*
 * colinux host driver: the interface between the C shim and the Rust core.
 *
 * The Rust side is driver/src/ffi.rs; keep the two in step. The core owns
 * the guest (struct colinux_guest is opaque here); the shim owns the file,
 * its mutex and everything that touches kernel structures. The core calls
 * nothing but the colinux_shim_* functions below.
 */
#ifndef COLINUX_CORE_H
#define COLINUX_CORE_H

#include <linux/types.h>
#include <linux/cooperative.h>
#include <colinux/ioctl.h>

/* A guest, owned by the core; a file holds a pointer to at most one. */
struct colinux_guest;

/*
 * Implemented by the Rust core. Each takes the file's guest pointer (NULL
 * when it has none), is called with the file's mutex held and with the
 * ioctl argument already copied into kernel memory, and returns 0 or a
 * negative errno.
 */

/* Validate @arg and allocate the guest's RAM, at most @max_pages pages. */
int colinux_core_create(struct colinux_guest **guest,
			const struct cooperative_ioctl_create *arg,
			u64 max_pages);
/* Copy the daemon's data into guest RAM, then zero the tail. */
int colinux_core_load(struct colinux_guest **guest,
		      const struct cooperative_ioctl_load *arg);
/* Fill @arg (state NONE when there is no guest). */
int colinux_core_info(struct colinux_guest *const *guest,
		      struct cooperative_ioctl_info *arg);
/* The host frame of each guest page: *@frames (valid until destroy), *@count. */
int colinux_core_frames(struct colinux_guest *const *guest, const u64 **frames,
			u64 *count);
/* RUN's @arg for the guest; @started: an earlier RUN started it. */
int colinux_core_run_check(struct colinux_guest *const *guest,
			   const struct cooperative_ioctl_run *arg, int started);
/* A Linux guest's boot parameters @boot, for @ram bytes of guest RAM. */
int colinux_core_boot_check(const struct cooperative_boot_params *boot,
			    u64 ram);
/* The guest started or ended: COOPERATIVE_GUEST_STATE_RUNNING or _DEAD. */
void colinux_core_set_state(struct colinux_guest **guest, u32 state);
/*
 * IOEVENTFD's and IRQFD's @arg for the guest: its id (>= 0), or -EPROTO,
 * -EINVAL, -EBADF. The descriptor and the bindings are the shim's to check.
 */
s64 colinux_core_ioeventfd_check(struct colinux_guest *const *guest,
				 const struct cooperative_ioctl_ioeventfd *arg);
s64 colinux_core_irqfd_check(struct colinux_guest *const *guest,
			     const struct cooperative_ioctl_irqfd *arg);
/*
 * mmap() of guest RAM (@guest_pages pages, 0: no guest) from page @pgoff,
 * @pages long, @shared: MAP_SHARED. 0, -ENODEV or -EINVAL. Unlike the
 * others it needs no lock (it is given numbers, not the guest).
 */
int colinux_core_mmap_check(u32 guest_id, u64 guest_pages, u64 pgoff,
			    u64 pages, int shared);
/* Free the guest and all its memory; *@guest becomes NULL. -EINVAL if none. */
int colinux_core_destroy(struct colinux_guest **guest);

/* Implemented by the shim, for the core. */

/* One zeroed page; its frame number in *@frame. -EINTR, -ENOMEM. */
int colinux_shim_alloc_page(u64 *frame);
/* Free a page colinux_shim_alloc_page() returned. */
void colinux_shim_free_page(u64 frame);
/* Copy @len bytes from the daemon's @user_address into page @frame. */
int colinux_shim_copy_from_user(u64 frame, u32 offset, u64 user_address,
				u32 len);
/* Zero @len bytes of page @frame from @offset. */
int colinux_shim_zero(u64 frame, u32 offset, u32 len);
/* Zeroed memory for the core's tables (any size), and its release. */
void *colinux_shim_alloc(size_t size);
void colinux_shim_free(void *ptr);
/* Log a message (not NUL-terminated) about a guest, rate-limited. */
#define COLINUX_LOG_INFO	0
#define COLINUX_LOG_WARN	1
#define COLINUX_NO_GUEST	0xffffffffU
void colinux_shim_log(u32 level, u32 guest_id, const char *msg, size_t len);
/*
 * The compiler's memory functions: the core object's references to
 * memcpy() and friends are renamed to these when it is built, so that it
 * needs nothing from the kernel but this shim.
 */
void *colinux_shim_memcpy(void *dst, const void *src, size_t len);
void *colinux_shim_memmove(void *dst, const void *src, size_t len);
void *colinux_shim_memset(void *dst, int c, size_t len);
int colinux_shim_memcmp(const void *a, const void *b, size_t len);

#endif /* COLINUX_CORE_H */
