/* SPDX-License-Identifier: GPL-2.0 */
/*
 * colinux host driver: layout of the passage page.
 *
 * The passage page is one page of host memory below 4 GiB. It holds the
 * world-switch code (copied from colinux_passage.S at run time), a small
 * GDT used during the switch, a stack for the moments when neither world's
 * stack is usable, and the saved state of both worlds. It is mapped at its
 * physical address (identity) in the transition page tables of both worlds,
 * and at PASSAGE_GUEST_VA in the guest's. This header is shared by the
 * assembly and the C side; everything is an offset into the page.
 */
#ifndef COLINUX_PASSAGE_H
#define COLINUX_PASSAGE_H

/* Guest virtual address of the passage page (top 4 MiB of the guest). */
#define PASSAGE_GUEST_VA	0xffc00000

/* Code (copied from the template) occupies the start of the page. */
#define PASSAGE_CODE_MAX	0x900

/*
 * The switch-time GDT: null, 32-bit code, 64-bit code, data. Its 64-bit
 * code and data selectors are the host kernel's (__KERNEL_CS 0x10,
 * __KERNEL_DS 0x18), so that while it is loaded in IA-32e mode an NMI
 * can still be delivered through 64-bit gates naming them.
 */
#define PASSAGE_GDT		0x900
#define PASSAGE_CS32		0x08
#define PASSAGE_CS64		0x10
#define PASSAGE_DS32		0x18
#define PASSAGE_GDT_SIZE	32
/* Pseudo-descriptors for that GDT: at its identity and guest addresses. */
#define PASSAGE_GDTR_ID		0x928	/* u16 limit, u64 base */
#define PASSAGE_GDTR_GVA	0x938	/* u16 limit, u32 base */

/* Host state (64-bit world), saved on the way out and restored on return. */
#define H_RSP			0x940
#define H_CR0			0x948
#define H_CR3			0x950
#define H_CR4			0x958
#define H_EFER			0x960
#define H_TRANS_CR3		0x968	/* host transition top-level table */
#define H_KVA			0x970	/* kernel address of this page */
#define H_RET			0x978	/* kernel address of the return path */
#define H_GDTR			0x980	/* as stored by sgdt: 10 bytes */
#define H_IDTR			0x990	/* as stored by sidt: 10 bytes */
#define H_GDTR_RW		0x9a0	/* writable alias of this CPU's GDT */
#define H_TR			0x9b0	/* u16 task register selector */
#define H_SS			0x9b2	/* u16 */
#define H_DS			0x9b4	/* u16 */
#define H_ES			0x9b6	/* u16 */
#define H_FS			0x9b8	/* u16 */
#define H_GS			0x9ba	/* u16 */
#define H_LDT			0x9bc	/* u16 LDT selector */
#define H_CS			0x9be	/* u16 kernel code selector */

/* Guest state (32-bit world). */
#define G_TRANS_CR3		0x9c0	/* guest transition PDPT, u32 */
#define G_CR0			0x9c4
#define G_CR3			0x9c8
#define G_CR4			0x9cc
#define G_ESP			0x9d0
#define G_GDTR			0x9d4	/* 6 bytes */
#define G_IDTR			0x9dc	/* 6 bytes */
#define G_TR			0x9e4	/* u16 */
#define G_LDT			0x9e6	/* u16 */
#define G_SS			0x9e8	/* u16 */
#define G_DS			0x9ea	/* u16 */
#define G_ES			0x9ec	/* u16 */
#define G_FS			0x9ee	/* u16 */
#define G_GS			0x9f0	/* u16 */

/* Where this page is: identity (physical) and guest virtual. */
#define P_PHYS			0x9f8	/* u32 */
#define P_GVA			0x9fc	/* u32 */

/* Host segment bases, MSRs the 32-bit world overwrites. */
#define H_FSBASE		0xa00
#define H_GSBASE		0xa08
#define H_KGSBASE		0xa10

/* The self-test guest's counter (see colinux_passage.S). */
#define P_SELFTEST_COUNT	0xa18	/* u32 */
/* Why the guest last came back (set on the guest side before the switch). */
#define P_EXIT_REASON		0xa1c	/* u32, PASSAGE_EXIT_* */
#define P_EXIT_VECTOR		0xa20	/* u32, the vector for IRQ and FAULT */
#define P_EXIT_CR2		0xa24	/* u32, CR2 at a FAULT */
#define P_EXIT_EIP		0xa28	/* u32, EIP at a FAULT without error code */
#define PASSAGE_EXIT_CALL	1	/* the guest called the passage */
#define PASSAGE_EXIT_IRQ	2	/* an interrupt to forward to the host */
#define PASSAGE_EXIT_FAULT	3	/* an exception the guest has no handler for */
/* Not an exit: the switch was refused (VMX is on), the guest did not run. */
#define PASSAGE_EXIT_REFUSED	4
/* Not an exit: a line was raised as the guest was entered; not switched. */
#define PASSAGE_EXIT_RETRY	5

/*
 * The second passage page (guest side only, at PASSAGE_GUEST_VA + 4 KiB):
 * an IDT for guests that have none of their own yet (the self-tests), and
 * one stub per vector: push the vector, jump to the common entry.
 */
#define PASSAGE_IDT_GVA		(PASSAGE_GUEST_VA + 0x1000)
#define PASSAGE_IDT_STUBS	0x800	/* offset in that page */
#define PASSAGE_IDT_STUB_SIZE	7

/* The self-test guest's TSS (104 bytes). */
#define P_SELFTEST_TSS		0xa40

/*
 * The initial GDT of a guest started by the host (until it loads its own):
 * null, 32-bit code (the ABI's COOPERATIVE_PASSAGE_CODE_SELECTOR), 32-bit
 * code, data, the TSS above.
 */
#define PASSAGE_GGDT		0xab0
#define PASSAGE_GUEST_CS	0x10
#define PASSAGE_GUEST_DS	0x18
#define PASSAGE_TSS32		0x20
#define PASSAGE_GGDT_SIZE	40

/*
 * The switch-time IDT, valid in every mode the switch passes through: for
 * NMI (2) and machine check (18) it holds both a 32-bit gate (at 8 * v, as
 * legacy protected mode reads it) and a 64-bit gate (at 16 * v, as IA-32e
 * mode reads it), to handlers that only record the event; the host
 * replays it through its own IDT after the switch. One copy at the
 * identity address (both formats), one for the guest address (32-bit).
 * The 32-bit gates use selector 0x08, a flat 32-bit code segment in the
 * switch GDT and, by the ABI, in every guest GDT, so they stay valid
 * whichever of the two GDTs is loaded when an NMI arrives.
 */
#define PASSAGE_SIDT_ID		0xb00	/* 304 bytes */
#define PASSAGE_SIDT_GVA	0xc30	/* 152 bytes */
#define PASSAGE_SIDT_ID_LIMIT	303
#define PASSAGE_SIDT_GVA_LIMIT	151
#define PASSAGE_SIDTR_ID	0xae0	/* u16 limit, u64 base */
#define PASSAGE_SIDTR_GVA	0xaf0	/* u16 limit, u32 base */
#define PASSAGE_GGDTR		0xad8	/* u16 limit, u32 base */
/* Events recorded during a switch, replayed by the host (u32 flags). */
#define P_NMI_PENDING		0xa2c
#define P_MCE_PENDING		0xa30
/* The EFLAGS of the guest's iret frame at its last exit (IF: 0x200). */
#define G_EFLAGS		0xa34	/* u32 */
/*
 * Virtual-interrupt injection: when nonzero, the way in does not return
 * to where the guest left but jumps to this guest address, leaving the
 * guest's iret frame on its stack, as an interrupt gate would (the
 * passage runs with interrupts off, so they stay off). Set by the host
 * before each switch.
 */
#define G_INJECT		0xa38	/* u32 */
/*
 * The kernel-side switch IDT: 64-bit gates for NMI (2) and machine check
 * (18) to record-only handlers in the module's text, read at the page's
 * kernel address. It is loaded on the host side of the switch, wherever
 * the host's IDT would find host state that is not yet (or no longer)
 * complete: from before CR4/CR3 change on the way out until the host's
 * CR3, CR4, segments and segment bases are all back on the way home.
 */
#define PASSAGE_KIDTR		0xcd0	/* u16 limit, u64 base */
#define PASSAGE_KIDT		0xd00	/* 304 bytes */
#define PASSAGE_KIDT_LIMIT	303
/*
 * The guest's DR7 while the host runs: the guest side of the passage
 * disarms its breakpoints before anything else and re-arms them only once
 * the guest's IDT is back, so no guest breakpoint (a guest user's, set
 * through ptrace, included) can fire inside the switch or in the host.
 */
#define G_DR7			0xce0	/* u32 */
/*
 * The host's TSC_AUX (the CPU number RDPID and RDTSCP give the host's
 * NMI and #MC entries, to find the per-CPU area), written back on the way
 * home before the host's IDT is loaded when P_TSC_AUX_SAVED is nonzero.
 */
#define H_TSC_AUX		0xce4	/* u32 */
#define P_TSC_AUX_SAVED		0xce8	/* u32 */
/*
 * The guest's CR2 while the host runs: a world switch can come between a
 * guest page fault and its handler's read of CR2 (an NMI or a machine
 * check leaves the guest world whatever its interrupt flag), and the host
 * overwrites CR2 with its own page faults meanwhile; the way in puts the
 * guest's back.
 */
#define G_CR2			0xcec	/* u32 */

/* The self-test guest's stack grows down from here. */
#define P_SELFTEST_STACK_TOP	0xf00
/* The kernel-side IDT stays clear of the self-test stack. */
#if PASSAGE_KIDT + PASSAGE_KIDT_LIMIT + 1 > P_SELFTEST_STACK_TOP - 128
#error "the kernel-side switch IDT overlaps the self-test stack"
#endif

/* The switch-time stack grows down from here (to 0xf00). */
#define PASSAGE_STACK_TOP	0x1000

#endif /* COLINUX_PASSAGE_H */
