/* SPDX-License-Identifier: GPL-2.0 */
/*
 * colinux host driver: the passage, the world switch between the x86_64
 * host kernel and a 32-bit (PAE) cooperative guest.
 *
 * Way out (host -> guest), colinux_passage_enter():
 *   1. (host, kernel text) save callee-saved registers, flags, control
 *      registers, EFER, GDTR/IDTR/TR, selectors and segment-base MSRs in
 *      the passage page; clear CR4.PCIDE and CR4.CET (long mode cannot be
 *      left with PCIDE set; CET is restored with CR4 on the way back);
 *      load the host transition page table: the host's kernel half plus
 *      the passage page at its physical address; jump to that address.
 *   2. (64-bit, identity) load the passage GDT and far-return into its
 *      32-bit code segment: compatibility mode.
 *   3. (compat, identity) switch to the passage stack and data segments,
 *      turn paging off (this leaves IA-32e mode), clear EFER.LME, set
 *      CR4.PAE, load the guest transition PDPT (passage page at identity
 *      and at PASSAGE_GUEST_VA), turn paging on: 32-bit PAE paging.
 *   4. (32-bit, guest address) load the guest's CR3, CR4, GDT, IDT, LDT,
 *      TR (busy bit cleared first), stack and segments, popal, iret: the
 *      guest continues where it called the passage (or, when G_INJECT is
 *      set, popal and a jump there: a virtual interrupt, whose frame is
 *      the guest's iret frame).
 * Way back (guest -> host), the guest entry, in the reverse order: save
 * the guest's registers and state, passage GDT, guest transition tables,
 * identity, paging off, host CR4 (without PCIDE/CET), host transition top
 * table, host EFER (LME), paging on: compatibility mode; far return into
 * the 64-bit segment; jump to the kernel-text return path, which loads the
 * host CR3 and CR4, reloads TR from the writable GDT alias, the GDT, IDT,
 * selectors and segment bases, and returns to the C caller.
 *
 * Everything between colinux_passage_template and _end is copied into the
 * passage page and runs there (position independent: %ebx/%rbx holds the
 * page's address in the current mapping). Every target of an indirect
 * jump starts with ENDBR64 (a no-op where CET is off) for kernels with IBT.
 * Interrupts stay disabled throughout. NMIs and machine checks cannot be
 * masked: from the first change of host state on the way out until the
 * host's state is whole again on the way back, a switch-time IDT is
 * loaded whose NMI and #MC gates only record the event (the kernel-side
 * one in the module's text while the host's kernel half is mapped, the
 * dual-format one in the passage page while paging is off or the guest's
 * tables are loaded); the host replays what was recorded through its own
 * IDT once the switch is over. The record handlers return without iret,
 * so NMIs stay blocked until that replay. CR4.MCE stays set in every step
 * and in the guest, so a machine check is an exception, never a shutdown.
 *
 * The guest world runs with SYSENTER_CS = 0 (set by the C caller) and
 * EFER.SCE clear: a guest user's sysenter raises #GP and its syscall #UD
 * in the guest, instead of entering ring 0 at the host's entry points.
 * Every guest-side entry loads the ABI's flat data selector into DS before
 * it touches memory: a guest user can hold any segment in DS (one it made
 * with set_thread_area) when an interrupt enters the passage.
 */
#include <linux/linkage.h>
#include <asm/nospec-branch.h>
#include "colinux_passage.h"

#define CP_CR0_PG		0x80000000
#define CP_CR4_PAE		0x00000020
#define CP_CR4_MCE		0x00000040
#define CP_CR4_PCIDE	0x00020000
#define CP_CR4_CET		0x00800000
#define CP_MSR_EFER	0xc0000080
#define CP_MSR_FS_BASE	0xc0000100
#define CP_MSR_GS_BASE	0xc0000101
#define CP_MSR_KGS_BASE	0xc0000102
#define CP_MSR_TSC_AUX	0xc0000103
#define CP_EFER_SCE	0x00000001
#define CP_EFER_LME	0x00000100
#define CP_DR7_ENABLES	0xff

/*
 * Returns from the module's text: through the kernel's return thunk, and
 * listed in .return_sites so that the module loader patches each to the
 * thunk the host's mitigations selected (retbleed, SRSO, ITS), as objtool
 * would list them; objtool does not process this file (it changes CPU
 * modes), so the list is made here.
 */
#if defined(CONFIG_RETHUNK) || defined(CONFIG_MITIGATION_RETHUNK)
.macro PASSAGE_RET
.Lret_\@:
	jmp	__x86_return_thunk
	.pushsection .return_sites, "a"
	.balign	4
	.long	.Lret_\@ - .
	.popsection
	int3
.endm
#else
.macro PASSAGE_RET
	RET
.endm
#endif

#define ENDBR64		.byte 0xf3, 0x0f, 0x1e, 0xfa
#define OFF(label)	((label) - colinux_passage_template)

	.text
/* long colinux_passage_enter(void *passage) -- interrupts must be off. */
SYM_FUNC_START(colinux_passage_enter)
	push	%rbp
	push	%rbx
	push	%r12
	push	%r13
	push	%r14
	push	%r15
	pushfq
	cli
	mov	%rsp, H_RSP(%rdi)
	mov	%cr0, %rax
	mov	%rax, H_CR0(%rdi)
	mov	%cr3, %rax
	mov	%rax, H_CR3(%rdi)
	mov	%cr4, %rax
	mov	%rax, H_CR4(%rdi)
	mov	$CP_MSR_EFER, %ecx
	rdmsr
	mov	%eax, H_EFER(%rdi)
	mov	%edx, H_EFER+4(%rdi)
	mov	$CP_MSR_FS_BASE, %ecx
	rdmsr
	mov	%eax, H_FSBASE(%rdi)
	mov	%edx, H_FSBASE+4(%rdi)
	mov	$CP_MSR_GS_BASE, %ecx
	rdmsr
	mov	%eax, H_GSBASE(%rdi)
	mov	%edx, H_GSBASE+4(%rdi)
	mov	$CP_MSR_KGS_BASE, %ecx
	rdmsr
	mov	%eax, H_KGSBASE(%rdi)
	mov	%edx, H_KGSBASE+4(%rdi)
	sgdt	H_GDTR(%rdi)
	sidt	H_IDTR(%rdi)
	str	H_TR(%rdi)
	sldt	H_LDT(%rdi)
	mov	%cs, H_CS(%rdi)
	mov	%ss, H_SS(%rdi)
	mov	%ds, H_DS(%rdi)
	mov	%es, H_ES(%rdi)
	mov	%fs, H_FS(%rdi)
	mov	%gs, H_GS(%rdi)
	lea	.Lhost_return(%rip), %rax
	mov	%rax, H_RET(%rdi)
	mov	%rdi, H_KVA(%rdi)
	lidt	PASSAGE_KIDTR(%rdi)	/* NMI/#MC recorded from here on */
	mov	%cr4, %rax
	and	$~(CP_CR4_PCIDE | CP_CR4_CET), %rax
	mov	%rax, %cr4
	mov	H_TRANS_CR3(%rdi), %rax
	mov	%rax, %cr3
	mov	P_PHYS(%rdi), %ebx
	lea	OFF(.Lid64_out)(%rbx), %rax
	ANNOTATE_RETPOLINE_SAFE
	jmp	*%rax

.Lhost_return:
	/* Kernel text again, host transition CR3; %rdi = the passage page. */
	ENDBR64
	mov	H_CR3(%rdi), %rax
	mov	%rax, %rdx
	and	$~0xfff, %rdx
	mov	%rdx, %cr3		/* PCID 0: CR4.PCIDE may be set now */
	mov	H_CR4(%rdi), %rdx
	mov	%rdx, %cr4
	mov	%rax, %cr3
	/* CS holds the switch GDT's 64-bit selector: reload the host's. */
	movzwl	H_CS(%rdi), %eax
	push	%rax
	lea	.Lhost_cs(%rip), %rax
	push	%rax
	lretq
.Lhost_cs:
	mov	H_SS(%rdi), %ss
	mov	H_DS(%rdi), %ds
	mov	H_ES(%rdi), %es
	mov	H_FS(%rdi), %fs
	mov	H_GS(%rdi), %gs
	mov	%rdi, %rsi
	mov	$CP_MSR_FS_BASE, %ecx
	mov	H_FSBASE(%rsi), %eax
	mov	H_FSBASE+4(%rsi), %edx
	wrmsr
	mov	$CP_MSR_GS_BASE, %ecx
	mov	H_GSBASE(%rsi), %eax
	mov	H_GSBASE+4(%rsi), %edx
	wrmsr
	mov	$CP_MSR_KGS_BASE, %ecx
	mov	H_KGSBASE(%rsi), %eax
	mov	H_KGSBASE+4(%rsi), %edx
	wrmsr
	cmpl	$0, P_TSC_AUX_SAVED(%rsi)
	je	1f
	mov	$CP_MSR_TSC_AUX, %ecx
	mov	H_TSC_AUX(%rsi), %eax
	xor	%edx, %edx
	wrmsr
1:	/* The host's state is whole: its own IDT last. */
	lidt	H_IDTR(%rsi)
	popfq
	pop	%r15
	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbx
	pop	%rbp
	xor	%eax, %eax
	PASSAGE_RET
SYM_FUNC_END(colinux_passage_enter)

/*
 * Forwarding an interrupt to the host: colinux_passage_int_table + 16 * v
 * is a function that raises vector v through the host's own IDT, so the
 * host's handler runs (and acknowledges the APIC) exactly as if the
 * interrupt had arrived in the host. It returns through the kernel's
 * return thunk (PASSAGE_RET), as the host's mitigations chose it.
 */
	.balign 16
	.globl	colinux_passage_int_table
colinux_passage_int_table:
	vector = 0
	.rept	256
	.balign	16
	ENDBR64
	.byte	0xcd, vector		/* int $vector */
	PASSAGE_RET
	vector = vector + 1
	.endr

/*
 * The record-only handlers of the kernel-side switch IDT (64-bit, module
 * text, no IST: the stack in use is a host kernel stack). They find the
 * passage page through IDTR, whose base is its PASSAGE_KIDT, set a flag
 * the C caller replays, and return without iretq (which would unblock
 * NMIs before the replay): the interrupted RIP and RFLAGS go below the
 * interrupted RSP, then popfq and a far return (EVENT_RETURN64_FAR).
 */
.macro KRECORD flag
	ENDBR64
	push	%rax
	push	%rbx
	sub	$16, %rsp
	sidt	(%rsp)
	mov	2(%rsp), %rax
	add	$16, %rsp
	movl	$1, (\flag - PASSAGE_KIDT)(%rax)
	EVENT_RETURN64_FAR
.endm

/*
 * Return from an event frame (RIP, CS, RFLAGS, RSP, SS above %rax and %rbx
 * pushed by the handler) to the same privilege level without iretq: the
 * words the return needs (CS, RIP, RFLAGS, the handler's %rax) are written
 * below the interrupted RSP (each frame slot is read before anything is
 * written over it), then popfq and a far return (lretq), which also
 * reloads CS: the handlers in the passage page interrupt 64-bit and
 * compatibility-mode code. The host's return-thunk patching covers near
 * returns only; these run only while an NMI or #MC is being recorded.
 */
.macro EVENT_RETURN64_FAR
	mov	40(%rsp), %rax		/* the interrupted RSP */
	mov	24(%rsp), %rbx		/* CS */
	mov	%rbx, -8(%rax)
	mov	16(%rsp), %rbx		/* RIP */
	mov	%rbx, -16(%rax)
	mov	32(%rsp), %rbx		/* RFLAGS */
	mov	%rbx, -24(%rax)
	mov	8(%rsp), %rbx		/* the handler's saved %rax */
	mov	%rbx, -32(%rax)
	mov	(%rsp), %rbx
	lea	-32(%rax), %rsp
	pop	%rax
	popfq
	lretq
.endm

	.globl	colinux_passage_knmi
	.globl	colinux_passage_kmce
colinux_passage_knmi:
	KRECORD	P_NMI_PENDING
colinux_passage_kmce:
	KRECORD	P_MCE_PENDING

/* The code copied into the passage page. */
	.section .rodata, "a"
	.balign 16
	.globl	colinux_passage_template
	.globl	colinux_passage_template_end
	.globl	colinux_passage_guest_entry
	.globl	colinux_passage_selftest
	.globl	colinux_passage_selftest_busy
	.globl	colinux_passage_selftest_ud2
	.globl	colinux_passage_selftest_clobber
	.globl	colinux_passage_selftest_nmi
	.globl	colinux_passage_selftest_pf
	.globl	colinux_passage_selftest_gp
	.globl	colinux_passage_guest_irq
	.globl	colinux_passage_guest_fault
	.globl	colinux_passage_nmi32
	.globl	colinux_passage_mce32
	.globl	colinux_passage_nmi64
	.globl	colinux_passage_mce64
colinux_passage_template:

/* ---- way out, 64-bit at the identity address: into compat mode ---- */
	.code64
.Lid64_out:
	ENDBR64
	lgdt	PASSAGE_GDTR_ID(%rbx)
	lidt	PASSAGE_SIDTR_ID(%rbx)	/* NMI/#MC recorded from here on */
	lea	OFF(.Lc32_out)(%rbx), %rax
	pushq	$PASSAGE_CS32
	push	%rax
	lretq

/* ---- way out, compatibility mode at the identity address ---- */
	.code32
.Lc32_out:
	mov	$PASSAGE_DS32, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%eax, %fs
	mov	%eax, %gs
	lea	PASSAGE_STACK_TOP(%ebx), %esp
	mov	%cr0, %eax
	and	$~CP_CR0_PG, %eax
	mov	%eax, %cr0		/* paging off: IA-32e mode is left */
	mov	$CP_MSR_EFER, %ecx
	rdmsr
	and	$~(CP_EFER_LME | CP_EFER_SCE), %eax	/* the guest gets no syscall */
	wrmsr
	mov	$(CP_CR4_PAE | CP_CR4_MCE), %eax
	mov	%eax, %cr4
	mov	G_TRANS_CR3(%ebx), %eax
	mov	%eax, %cr3
	mov	G_CR0(%ebx), %eax
	or	$(CP_CR0_PG | 1), %eax
	mov	%eax, %cr0		/* 32-bit PAE paging on */
	mov	P_GVA(%ebx), %ebx
	lea	OFF(.Lg32_in)(%ebx), %eax
	jmp	*%eax

/* ---- way out, 32-bit at the guest address: become the guest ---- */
.Lg32_in:
	ENDBR64
	lidt	PASSAGE_SIDTR_GVA(%ebx)	/* the identity leaves with CR3 below */
	lea	PASSAGE_STACK_TOP(%ebx), %esp
	lgdt	PASSAGE_GDTR_GVA(%ebx)
	mov	G_CR3(%ebx), %eax
	mov	%eax, %cr3
	mov	G_CR4(%ebx), %eax
	or	$CP_CR4_MCE, %eax	/* machine checks stay exceptions */
	mov	%eax, %cr4
	mov	G_CR2(%ebx), %eax	/* the host's faults changed it */
	mov	%eax, %cr2
	lgdt	G_GDTR(%ebx)
	lldt	G_LDT(%ebx)
	movzwl	G_TR(%ebx), %eax
	test	%eax, %eax
	jz	1f
	and	$~7, %eax
	mov	G_GDTR+2(%ebx), %edx
	andb	$~0x02, 5(%edx,%eax)
	ltr	G_TR(%ebx)
1:	mov	G_ES(%ebx), %es
	mov	G_FS(%ebx), %fs
	mov	G_GS(%ebx), %gs
	mov	G_SS(%ebx), %ss
	mov	G_ESP(%ebx), %esp
	/*
	 * Every segment, then the guest's IDT: an NMI from there on is the
	 * guest's to forward, and finds the world it saves whole. DS may be a
	 * guest user's segment: the rest reads the page through CS, which is
	 * flat (the ABI's code selector).
	 */
	mov	G_DS(%ebx), %ds
	lidt	%cs:G_IDTR(%ebx)
	/* The guest's breakpoints again, now that its IDT takes a #DB. */
	mov	%cs:G_DR7(%ebx), %eax
	test	$CP_DR7_ENABLES, %al
	jz	1f
	mov	%eax, %dr7
1:	cmpl	$0, %cs:G_INJECT(%ebx)
	jne	2f
	popal
	iret
	/*
	 * Deliver a virtual interrupt: the guest's registers back, its iret
	 * frame stays on its stack, and it continues at G_INJECT, reached
	 * through the page's fixed guest address (%ebx is the guest's again
	 * after popal) and CS.
	 */
2:	popal
	jmp	*%cs:(PASSAGE_GUEST_VA + G_INJECT)

/*
 * The start of every guest-side entry, after its pushal: DS (whatever the
 * guest held, maybe a user's segment with any base) saved and replaced by
 * the ABI's flat data selector, %ebx = the page at its guest address, the
 * guest's IDT saved and the switch-time one loaded (NMI/#MC recorded from
 * then on), the guest's breakpoints disarmed.
 */
.macro GUEST_ENTRY_PROLOGUE
	mov	%ds, %ecx
	mov	$PASSAGE_DS32, %eax
	mov	%eax, %ds
	call	1f
1:	pop	%ebx
	sub	$OFF(1b), %ebx		/* %ebx = the page, guest address */
	sidt	G_IDTR(%ebx)
	lidt	PASSAGE_SIDTR_GVA(%ebx)
	mov	%ecx, G_DS(%ebx)
	mov	%dr7, %eax
	mov	%eax, G_DR7(%ebx)
	test	$CP_DR7_ENABLES, %al
	jz	2f
	xor	%eax, %eax
	mov	%eax, %dr7
2:
.endm

/*
 * ---- the guest entry: the guest calls here ----
 * The guest's caller has pushed EFLAGS and CS and calls this address, so
 * that its stack holds an iret frame; its interrupts are off.
 */
colinux_passage_guest_entry:
	pushal
	GUEST_ENTRY_PROLOGUE
	/* Only now: a nested NMI before the lidt has had its own round trip. */
	movl	$PASSAGE_EXIT_CALL, P_EXIT_REASON(%ebx)
.Lguest_save:
	/*
	 * The EFLAGS of the iret frame above the pushal image (after a fault,
	 * whatever lies there instead: that guest is not resumed).
	 */
	mov	40(%esp), %eax
	mov	%eax, G_EFLAGS(%ebx)
	mov	%esp, G_ESP(%ebx)
	mov	%ss, G_SS(%ebx)
	mov	%es, G_ES(%ebx)
	mov	%fs, G_FS(%ebx)
	mov	%gs, G_GS(%ebx)
	mov	%cr2, %eax
	mov	%eax, G_CR2(%ebx)
	mov	%cr0, %eax
	mov	%eax, G_CR0(%ebx)
	mov	%cr3, %eax
	mov	%eax, G_CR3(%ebx)
	mov	%cr4, %eax
	mov	%eax, G_CR4(%ebx)
	sgdt	G_GDTR(%ebx)
	str	G_TR(%ebx)
	sldt	G_LDT(%ebx)
	lgdt	PASSAGE_GDTR_GVA(%ebx)
	lea	OFF(.Lg32_out)(%ebx), %eax
	push	$PASSAGE_CS32
	push	%eax
	lret
.Lg32_out:
	mov	$PASSAGE_DS32, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%eax, %fs
	mov	%eax, %gs
	lea	PASSAGE_STACK_TOP(%ebx), %esp
	mov	G_TRANS_CR3(%ebx), %eax
	mov	%eax, %cr3
	mov	P_PHYS(%ebx), %ebx
	lea	OFF(.Lid32_back)(%ebx), %eax
	jmp	*%eax

/* ---- way back, 32-bit at the identity address: into long mode ---- */
.Lid32_back:
	ENDBR64
	lgdt	PASSAGE_GDTR_ID(%ebx)
	lidt	PASSAGE_SIDTR_ID(%ebx)	/* both formats: valid until the host's */
	lea	PASSAGE_STACK_TOP(%ebx), %esp
	mov	%cr0, %eax
	and	$~CP_CR0_PG, %eax
	mov	%eax, %cr0		/* paging off */
	mov	H_CR4(%ebx), %eax
	and	$~(CP_CR4_PCIDE | CP_CR4_CET), %eax
	mov	%eax, %cr4		/* PAE, and LA57 if the host uses it */
	mov	H_TRANS_CR3(%ebx), %eax
	mov	%eax, %cr3
	mov	$CP_MSR_EFER, %ecx
	mov	H_EFER(%ebx), %eax
	mov	H_EFER+4(%ebx), %edx
	wrmsr				/* EFER.LME (and NXE, SCE) back */
	mov	H_CR0(%ebx), %eax
	mov	%eax, %cr0		/* paging on: IA-32e, compatibility */
	lea	OFF(.Lid64_back)(%ebx), %eax
	push	$PASSAGE_CS64
	push	%eax
	lret

	.code64
.Lid64_back:
	/*
	 * The host's TR and GDT before leaving the identity page (which holds
	 * the switch-time IDT); then the kernel-side switch IDT, until the
	 * host's CR3, CR4 and segment bases are back. ltr needs the TSS
	 * descriptor not busy, in the writable GDT alias.
	 */
	mov	H_KVA(%rbx), %rdi
	mov	H_RSP(%rdi), %rsp	/* the host stack, mapped here too */
	lgdt	H_GDTR_RW(%rdi)
	movzwl	H_TR(%rdi), %eax
	and	$~7, %eax
	mov	H_GDTR_RW+2(%rdi), %rdx
	andb	$~0x02, 5(%rdx,%rax)
	ltr	H_TR(%rdi)
	lgdt	H_GDTR(%rdi)
	lldt	H_LDT(%rdi)
	/* Not yet the host's IDT: its CR3, CR4 and segment bases come first. */
	lidt	PASSAGE_KIDTR(%rdi)
	ANNOTATE_RETPOLINE_SAFE
	jmp	*H_RET(%rdi)

/*
 * ---- interrupts and exceptions in the guest world ----
 * An IDT stub has pushed the vector over the CPU's iret frame (EIP, CS,
 * EFLAGS: ring 0 to ring 0, no error code for external vectors). Record
 * why, drop the vector and go through the guest entry like a call: the
 * host forwards the interrupt to its own handler and resumes the guest.
 */
	.code32
colinux_passage_guest_irq:
	pushal
	GUEST_ENTRY_PROLOGUE
	mov	32(%esp), %eax		/* the vector the stub pushed */
	and	$0xff, %eax
	mov	%eax, P_EXIT_VECTOR(%ebx)
	movl	$PASSAGE_EXIT_IRQ, P_EXIT_REASON(%ebx)
	/* Drop the vector: move the eight saved registers up over it. */
	mov	28(%esp), %eax
	mov	%eax, 32(%esp)
	mov	24(%esp), %eax
	mov	%eax, 28(%esp)
	mov	20(%esp), %eax
	mov	%eax, 24(%esp)
	mov	16(%esp), %eax
	mov	%eax, 20(%esp)
	mov	12(%esp), %eax
	mov	%eax, 16(%esp)
	mov	8(%esp), %eax
	mov	%eax, 12(%esp)
	mov	4(%esp), %eax
	mov	%eax, 8(%esp)
	mov	(%esp), %eax
	mov	%eax, 4(%esp)
	lea	4(%esp), %esp
	jmp	.Lguest_save

/* An exception with no guest handler: report it; the guest is not resumed. */
colinux_passage_guest_fault:
	pushal
	GUEST_ENTRY_PROLOGUE
	mov	%cr2, %eax
	mov	%eax, P_EXIT_CR2(%ebx)
	mov	36(%esp), %eax		/* EIP, or the error code */
	mov	%eax, P_EXIT_EIP(%ebx)
	mov	32(%esp), %eax
	and	$0xff, %eax
	mov	%eax, P_EXIT_VECTOR(%ebx)
	movl	$PASSAGE_EXIT_FAULT, P_EXIT_REASON(%ebx)
	jmp	.Lguest_save

/*
 * ---- events during the switch: record, replay in the host ----
 * Reached through the switch-time IDT, in whichever mode the switch is.
 */
/*
 * They return without iret, which would unblock NMIs before the host's
 * replay, with a far return to the interrupted CS: this code runs copied into the passage
 * page, in modes and mappings where the host's return thunk cannot be
 * reached (32-bit code, identity and guest addresses), only while an NMI
 * or #MC is being recorded, with interrupts off. DS is loaded with the
 * flat data selector (valid in the switch GDT and, by the ABI, in the
 * guest's): whatever the interrupted code had may not be flat.
 */
.macro RECORD32 flag
	push	%ds
	push	%eax
	mov	$PASSAGE_DS32, %eax
	mov	%eax, %ds
	call	1f
1:	pop	%eax
	movl	$1, (\flag - OFF(1b))(%eax)
	/* 0: %eax, 4: %ds, 8: EIP, 12: CS, 16: EFLAGS -> EFLAGS, EIP, CS */
	mov	16(%esp), %eax
	xchg	%eax, 8(%esp)
	xchg	%eax, 12(%esp)
	mov	%eax, 16(%esp)
	pop	%eax
	pop	%ds
	popfl
	lret
.endm
colinux_passage_nmi32:
	RECORD32 P_NMI_PENDING
colinux_passage_mce32:
	RECORD32 P_MCE_PENDING
	.code64
colinux_passage_nmi64:
	push	%rax
	push	%rbx
	lea	colinux_passage_template(%rip), %rax
	movl	$1, P_NMI_PENDING(%rax)
	EVENT_RETURN64_FAR
colinux_passage_mce64:
	push	%rax
	push	%rbx
	lea	colinux_passage_template(%rip), %rax
	movl	$1, P_MCE_PENDING(%rax)
	EVENT_RETURN64_FAR
	.code32

/*
 * ---- the self-test guest ----
 * Counts, puts a value made of the count in CR2, then calls the passage;
 * forever. The host checks the count after each round trip and
 * overwrites its own CR2 before the next; the guest must find its CR2
 * again (else an invalid opcode: a fault exit).
 */
colinux_passage_selftest:
	call	1f
1:	pop	%ebx
	sub	$OFF(1b), %ebx
2:	incl	P_SELFTEST_COUNT(%ebx)
	mov	P_SELFTEST_COUNT(%ebx), %eax
	xor	$0xc2c2c2c2, %eax
	mov	%eax, %cr2
	pushfl
	cli
	push	%cs
	call	colinux_passage_guest_entry
	mov	P_SELFTEST_COUNT(%ebx), %eax
	xor	$0xc2c2c2c2, %eax
	mov	%cr2, %ecx
	cmp	%eax, %ecx
	je	2b
	ud2

/*
 * ---- the busy self-test guest ----
 * Interrupts on, counts forever; only host interrupts, forwarded through
 * the passage, give the CPU back to the host.
 */
colinux_passage_selftest_busy:
	call	1f
1:	pop	%ebx
	sub	$OFF(1b), %ebx
	sti
2:	incl	P_SELFTEST_COUNT(%ebx)
	jmp	2b

/*
 * ---- a self-test guest that changes host-visible CPU state ----
 * SYSENTER MSRs, PAT, the x87 control word, MXCSR, XCR0, TSC_AUX and an
 * armed breakpoint in DR7, then calls back; the host must find its own
 * values again.
 */
colinux_passage_selftest_clobber:
	call	1f
1:	pop	%ebx
	sub	$OFF(1b), %ebx
	xor	%edx, %edx
	mov	$0x174, %ecx		/* SYSENTER_CS */
	mov	$0x73, %eax
	wrmsr
	mov	$0x175, %ecx		/* SYSENTER_ESP */
	mov	$0xc0ffee00, %eax
	wrmsr
	mov	$0x176, %ecx		/* SYSENTER_EIP */
	mov	$0xc0de0000, %eax
	wrmsr
	mov	$0x277, %ecx		/* PAT: all write-back */
	mov	$0x06060606, %eax
	mov	%eax, %edx
	wrmsr
	mov	%cr4, %eax
	or	$(0x200 | 0x400 | 0x40000), %eax	/* OSFXSR, OSXMMEXCPT, OSXSAVE */
	mov	%eax, %cr4
	fninit
	movw	$0x0c7f, P_SELFTEST_COUNT(%ebx)
	fldcw	P_SELFTEST_COUNT(%ebx)
	movl	$0x3f80, P_SELFTEST_COUNT(%ebx)
	ldmxcsr	P_SELFTEST_COUNT(%ebx)
	xor	%ecx, %ecx
	xor	%edx, %edx
	mov	$3, %eax		/* XCR0 = x87 | SSE */
	xsetbv
	cmpl	$0, P_TSC_AUX_SAVED(%ebx)	/* the CPU has TSC_AUX */
	je	1f
	mov	$CP_MSR_TSC_AUX, %ecx
	mov	$0x5a5, %eax
	xor	%edx, %edx
	wrmsr
	rdmsr				/* what the guest world now has */
	mov	%eax, P_SELFTEST_COUNT(%ebx)
1:	xor	%eax, %eax		/* breakpoint 0: execution at 0 */
	mov	%eax, %dr0
	mov	$1, %eax
	mov	%eax, %dr7
	pushfl
	cli
	push	%cs
	call	colinux_passage_guest_entry
	ud2

/*
 * ---- a self-test guest that raises an NMI while the switch-time IDT is
 * loaded (as an NMI arriving inside the switch would find it) ----
 */
colinux_passage_selftest_nmi:
	call	1f
1:	pop	%ebx
	sub	$OFF(1b), %ebx
	lidt	PASSAGE_SIDTR_GVA(%ebx)
	int	$2
	pushfl
	cli
	push	%cs
	call	colinux_passage_guest_entry
	ud2

/* ---- self-test guests that break: each must come back as a fault ---- */
colinux_passage_selftest_ud2:
	ud2
colinux_passage_selftest_pf:
	movl	$0x1234, 0x10
colinux_passage_selftest_gp:
	mov	$0x7f8, %eax
	mov	%eax, %ds
	.code64
colinux_passage_template_end:
