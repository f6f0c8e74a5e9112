/*
 * Entry points of the colinux test payload.
 *
 * On entry: 32-bit protected mode with PAE paging, CS=0x10, DS=SS=ES=0x18,
 * interrupts off, the passage's IDT loaded, EAX = the shared state's guest
 * virtual address (0xffc02000). ESP is valid but not ours: every entry
 * moves to the payload's own stack first, clears .bss (which holds that
 * stack; nothing has used it yet) and calls its C function with the shared
 * state as the only argument. The C functions never return.
 */

	.section .text.start, "ax"
	.code32

	.macro PAYLOAD_ENTRY name, cfunc
	.globl \name
	.type \name, @function
\name:
	movl	$\cfunc, %ebx
	jmp	payload_common_entry
	.size \name, . - \name
	.endm

	PAYLOAD_ENTRY startup_32, payload_c_all
	PAYLOAD_ENTRY payload_roundtrips, payload_c_roundtrips
	PAYLOAD_ENTRY payload_exceptions, payload_c_exceptions
	PAYLOAD_ENTRY payload_busy, payload_c_busy
	PAYLOAD_ENTRY payload_busy3, payload_c_busy3
	PAYLOAD_ENTRY payload_virtio, payload_c_virtio
	PAYLOAD_ENTRY payload_cobd_hostile, payload_c_cobd_hostile

/*
 * A guest kernel that never gives the CPU back: interrupts off, a loop.
 * Only an NMI gets it out of the guest world (the driver's run watchdog).
 */
	.globl payload_spin
	.type payload_spin, @function
payload_spin:
	cli
1:	jmp	1b
	.size payload_spin, . - payload_spin

/*
 * A guest kernel that raises the host's REBOOT_VECTOR (0xf8) itself, then
 * an invalid opcode: the host must not run its reboot handler for a vector
 * its local APIC never delivered (that handler stops the CPU); the guest
 * resumes after the int and ends on the ud2 (fault, vector 6).
 */
	.globl payload_int_f8
	.type payload_int_f8, @function
payload_int_f8:
	cli
	int	$0xf8
	ud2
	.size payload_int_f8, . - payload_int_f8

/* EAX = shared state, EBX = C function to call. */
payload_common_entry:
	cli
	cld
	movl	$payload_stack_top, %esp
	movl	%eax, %edx		/* keep the shared state */
	movl	$__bss_start, %edi
	movl	$__bss_end, %ecx
	subl	%edi, %ecx
	xorl	%eax, %eax
	rep stosb
	xorl	%ebp, %ebp
	pushl	%edx
	call	*%ebx
1:	ud2
	jmp	1b

	.text

/*
 * Exception stubs. The C handlers get a pointer to the pushal frame (and,
 * for #PF, the error code right above it) and may edit the saved registers.
 */
	.globl payload_pf_stub
	.type payload_pf_stub, @function
payload_pf_stub:
	pushal
	cld
	pushl	%esp
	call	payload_pf_handler
	addl	$4, %esp
	popal
	addl	$4, %esp		/* the error code */
	iret
	.size payload_pf_stub, . - payload_pf_stub

	.globl payload_de_stub
	.type payload_de_stub, @function
payload_de_stub:
	pushal
	cld
	pushl	%esp
	call	payload_de_handler
	addl	$4, %esp
	popal
	iret
	.size payload_de_stub, . - payload_de_stub

/* What gcc may emit calls to even when freestanding. */
	.globl memcpy
	.type memcpy, @function
memcpy:
	pushl	%edi
	pushl	%esi
	movl	12(%esp), %edi
	movl	16(%esp), %esi
	movl	20(%esp), %ecx
	movl	%edi, %eax
	rep movsb
	popl	%esi
	popl	%edi
	ret
	.size memcpy, . - memcpy

	.globl memset
	.type memset, @function
memset:
	pushl	%edi
	movl	8(%esp), %edi
	movl	12(%esp), %eax
	movl	16(%esp), %ecx
	movl	%edi, %edx
	rep stosb
	movl	%edx, %eax
	popl	%edi
	ret
	.size memset, . - memset

	.bss
	.balign 16
payload_stack:
	.skip	16384
payload_stack_top:

	.section .note.GNU-stack, "", @progbits
