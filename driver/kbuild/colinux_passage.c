// SPDX-License-Identifier: GPL-2.0
/*
 * colinux host driver: setting up and driving the passage (see
 * colinux_passage.S for the switch itself, colinux_passage.h for the page).
 *
 * A passage needs, all below 4 GiB so that 32-bit code can load them: the
 * passage page, the host transition tables (a top-level table with the
 * host's kernel half and the passage page mapped at its physical address,
 * 4 or 5 levels as the host uses), and the guest transition tables (PAE:
 * the passage page at its physical address and at PASSAGE_GUEST_VA).
 *
 * Today this drives the passage self-test only: a tiny 32-bit guest built
 * into the passage page that counts and calls back, N round trips, run
 * when the module is loaded with passage_selftest=N.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/string.h>
#include <linux/err.h>
#include <asm/tsc.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/math64.h>
#include <linux/sizes.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/sched/signal.h>
#include <linux/sched/stat.h>
#include <linux/workqueue.h>
#include <linux/percpu.h>
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <asm/apic.h>
#include <asm/nmi.h>
#include <asm/debugreg.h>
#include <asm/fpu/api.h>
#include <asm/fpu/xcr.h>
#include <asm/desc.h>
#include <asm/irq_vectors.h>
#include <asm/trapnr.h>
#include <asm/msr.h>
#include <asm/nospec-branch.h>
#include <asm/processor.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>

#include <linux/cooperative.h>
#include "colinux_passage.h"
#include "colinux_passage_c.h"
#include "colinux_core.h"

extern const u8 colinux_passage_template[];
extern const u8 colinux_passage_template_end[];
extern const u8 colinux_passage_guest_entry[];
extern const u8 colinux_passage_selftest[];
extern const u8 colinux_passage_selftest_busy[];
extern const u8 colinux_passage_selftest_ud2[];
extern const u8 colinux_passage_selftest_clobber[];
extern const u8 colinux_passage_selftest_nmi[];
extern const u8 colinux_passage_selftest_pf[];
extern const u8 colinux_passage_selftest_gp[];
extern const u8 colinux_passage_guest_irq[];
extern const u8 colinux_passage_guest_fault[];
extern const u8 colinux_passage_nmi32[];
extern const u8 colinux_passage_mce32[];
extern const u8 colinux_passage_nmi64[];
extern const u8 colinux_passage_mce64[];
extern const u8 colinux_passage_int_table[];
extern const u8 colinux_passage_knmi[];
extern const u8 colinux_passage_kmce[];
long colinux_passage_enter(void *passage);

/* DR7's local and global enable bits for the four breakpoints. */
#define DR7_ENABLES	0xffUL

#define PT_PRESENT	0x001ULL
#define PT_RW		0x002ULL
#define PT_ADDR_MASK	0x000ffffffffff000ULL
/* Up to 5 host levels + 3 guest levels, each one page. */
#define PASSAGE_MAX_TABLES	12

/*
 * Page-table pages, owned by a passage or a running guest: allocated
 * zeroed with @gfp (plus what the caller adds), freed together.
 */
struct pt_pool {
	struct page **pages;
	int nr, max;
	gfp_t gfp;
};

static u64 *pt_new(struct pt_pool *pool, u64 *phys, gfp_t extra)
{
	struct page *page;

	if (pool->nr >= pool->max)
		return NULL;
	page = alloc_page(pool->gfp | __GFP_ZERO | extra);
	if (!page)
		return NULL;
	pool->pages[pool->nr++] = page;
	*phys = page_to_phys(page);
	return page_address(page);
}

/* The next-level table under @table[@index], made if absent. */
static u64 *pt_walk(struct pt_pool *pool, u64 *table, int index, u64 flags)
{
	u64 phys;
	u64 *next;

	if (table[index] & PT_PRESENT)
		return phys_to_virt(table[index] & PT_ADDR_MASK);
	next = pt_new(pool, &phys, 0);
	if (!next)
		return NULL;
	table[index] = phys | flags;
	return next;
}

/* Map the page at @phys at @va in a PAE (3-level) table set. */
static int pt_map_pae(struct pt_pool *pool, u64 *pdpt, u32 va, u64 phys)
{
	u64 *pd, *pt;

	/* PDPTEs take only the present bit (RW/US are reserved there). */
	pd = pt_walk(pool, pdpt, (va >> 30) & 3, PT_PRESENT);
	if (!pd)
		return -ENOMEM;
	pt = pt_walk(pool, pd, (va >> 21) & 511, PT_PRESENT | PT_RW);
	if (!pt)
		return -ENOMEM;
	pt[(va >> 12) & 511] = phys | PT_PRESENT | PT_RW;
	return 0;
}

static void pt_pool_free(struct pt_pool *pool)
{
	int i;

	for (i = 0; i < pool->nr; i++)
		__free_page(pool->pages[i]);
	pool->nr = 0;
}

struct colinux_passage {
	struct page *page;		/* the passage page */
	u8 *kva;			/* its kernel address */
	struct page *idt_page;		/* the guest-side IDT page */
	u8 *idt_kva;
	u32 phys;			/* its physical address (< 4 GiB) */
	struct page *table_pages[PASSAGE_MAX_TABLES];
	struct pt_pool tables;		/* all below 4 GiB */
	u64 host_top_phys;		/* host transition top-level table */
	u64 *host_top;
	u32 guest_pdpt_phys;		/* guest transition PDPT */
	/*
	 * The guest's x87/SSE registers while the host runs (FXSAVE format;
	 * a Linux guest runs without XSAVE), or NULL for guests that keep
	 * none (the self-tests). Without it the host's own FPU use between
	 * two switches would show up in the guest's registers.
	 */
	struct fxregs_state *guest_fpu;
	/* The guest's DR0-3 while the host runs (see G_DR7). */
	unsigned long guest_dr[4];
	/*
	 * For the watchdog (see run_watchdog): the CPU of the last switch,
	 * whether the guest world is running there now, and how many
	 * switches have come back.
	 */
	int cpu;
	bool in_guest;
	unsigned long switches;
	/*
	 * The guest's asynchronous events (IRQFD), or NULL (the
	 * self-tests): told on which CPU the guest world runs, so that a
	 * line raised meanwhile interrupts that CPU.
	 */
	struct colinux_events *ev;
};

/* The host transition tables: kernel half of the host's, plus identity. */
static int passage_build_host_tables(struct colinux_passage *p)
{
	int levels = (native_read_cr4() & X86_CR4_LA57) ? 5 : 4;
	u64 *host = phys_to_virt(__read_cr3() & PT_ADDR_MASK);
	u64 *table;
	int level;

	p->host_top = pt_new(&p->tables, &p->host_top_phys, 0);
	if (!p->host_top)
		return -ENOMEM;
	memcpy(p->host_top + 256, host + 256, 256 * sizeof(u64));
	table = p->host_top;
	for (level = levels; level > 1; level--) {
		int index = ((u64)p->phys >> (12 + 9 * (level - 1))) & 511;

		table = pt_walk(&p->tables, table, index, PT_PRESENT | PT_RW);
		if (!table)
			return -ENOMEM;
	}
	table[(p->phys >> 12) & 511] = p->phys | PT_PRESENT | PT_RW;
	return 0;
}

static int passage_build_guest_tables(struct colinux_passage *p)
{
	u64 phys;
	u64 *pdpt = pt_new(&p->tables, &phys, 0);
	int ret;

	if (!pdpt)
		return -ENOMEM;
	p->guest_pdpt_phys = phys;
	ret = pt_map_pae(&p->tables, pdpt, p->phys, p->phys);
	if (!ret)
		ret = pt_map_pae(&p->tables, pdpt, PASSAGE_GUEST_VA, p->phys);
	if (!ret)
		ret = pt_map_pae(&p->tables, pdpt, PASSAGE_IDT_GVA,
				      page_to_phys(p->idt_page));
	return ret;
}

static void passage_free(struct colinux_passage *p)
{
	pt_pool_free(&p->tables);
	if (p->page)
		__free_page(p->page);
	if (p->idt_page)
		__free_page(p->idt_page);
	kfree(p);
}

#define V(type, off)	(*(type *)(p->kva + (off)))

/* A 32-bit available TSS descriptor. */
static u64 passage_tss_desc(u32 base, u32 limit)
{
	return (limit & 0xffffULL) | ((u64)(base & 0xffffff) << 16) |
	       (0x89ULL << 40) | ((u64)((limit >> 16) & 0xf) << 48) |
	       ((u64)(base >> 24) << 56);
}

/* A 32-bit interrupt gate to @offset in code segment @sel. */
static u64 passage_gate32(u32 offset, u16 sel)
{
	return (offset & 0xffff) | ((u64)sel << 16) |
	       (0x8e00ULL << 32) | ((u64)(offset >> 16) << 48);
}

/* A 64-bit interrupt gate (no IST) to @offset in the switch GDT. */
static void passage_gate64(u64 *gate, u64 offset)
{
	gate[0] = (offset & 0xffff) | ((u64)PASSAGE_CS64 << 16) |
		  (0x8e00ULL << 32) | (((offset >> 16) & 0xffff) << 48);
	gate[1] = offset >> 32;
}

#define TMPL_OFF(sym)	((u32)((sym) - colinux_passage_template))

/*
 * The switch-time IDT (see colinux_passage.h): NMI and #MC, in both gate
 * formats at the identity address, in the 32-bit format at the guest one.
 */
static void passage_fill_switch_idt(struct colinux_passage *p)
{
	u64 *id = (u64 *)(p->kva + PASSAGE_SIDT_ID);
	u64 *gva = (u64 *)(p->kva + PASSAGE_SIDT_GVA);

	id[X86_TRAP_NMI] = passage_gate32(p->phys + TMPL_OFF(colinux_passage_nmi32),
					  PASSAGE_CS32);
	id[X86_TRAP_MC] = passage_gate32(p->phys + TMPL_OFF(colinux_passage_mce32),
					 PASSAGE_CS32);
	passage_gate64(id + 2 * X86_TRAP_NMI,
		       p->phys + TMPL_OFF(colinux_passage_nmi64));
	passage_gate64(id + 2 * X86_TRAP_MC,
		       p->phys + TMPL_OFF(colinux_passage_mce64));
	gva[X86_TRAP_NMI] = passage_gate32(PASSAGE_GUEST_VA +
					   TMPL_OFF(colinux_passage_nmi32),
					   PASSAGE_CS32);
	gva[X86_TRAP_MC] = passage_gate32(PASSAGE_GUEST_VA +
					  TMPL_OFF(colinux_passage_mce32),
					  PASSAGE_CS32);
	V(u16, PASSAGE_SIDTR_ID) = PASSAGE_SIDT_ID_LIMIT;
	V(u64, PASSAGE_SIDTR_ID + 2) = p->phys + PASSAGE_SIDT_ID;
	V(u16, PASSAGE_SIDTR_GVA) = PASSAGE_SIDT_GVA_LIMIT;
	V(u32, PASSAGE_SIDTR_GVA + 2) = PASSAGE_GUEST_VA + PASSAGE_SIDT_GVA;
}

/*
 * The kernel-side switch IDT (see colinux_passage.h): NMI and #MC to the
 * record-only handlers in the module's text, through the host's kernel
 * code selector, which the switch GDT has at the same value.
 */
static_assert(PASSAGE_CS64 == __KERNEL_CS);
static void passage_fill_kernel_idt(struct colinux_passage *p)
{
	u64 *k = (u64 *)(p->kva + PASSAGE_KIDT);

	passage_gate64(k + 2 * X86_TRAP_NMI, (u64)colinux_passage_knmi);
	passage_gate64(k + 2 * X86_TRAP_MC, (u64)colinux_passage_kmce);
	V(u16, PASSAGE_KIDTR) = PASSAGE_KIDT_LIMIT;
	V(u64, PASSAGE_KIDTR + 2) = (u64)(p->kva + PASSAGE_KIDT);
}

/*
 * The guest-side IDT: external vectors (32-255), NMI and machine checks
 * belong to the host and are forwarded to it; other exceptions end the
 * guest as a reported fault. Each stub is "push $v;
 * jmp common" (vectors above 127 are sign-extended by push; the common
 * entry masks them).
 */
static void passage_fill_idt(struct colinux_passage *p)
{
	u32 irq = PASSAGE_GUEST_VA +
		  (colinux_passage_guest_irq - colinux_passage_template);
	u32 fault = PASSAGE_GUEST_VA +
		    (colinux_passage_guest_fault - colinux_passage_template);
	u64 *idt = (u64 *)p->idt_kva;
	int v;

	for (v = 0; v < 256; v++) {
		u32 off = PASSAGE_IDT_STUBS + v * PASSAGE_IDT_STUB_SIZE;
		u32 stub = PASSAGE_IDT_GVA + off;
		bool host = v >= 32 || v == X86_TRAP_NMI || v == X86_TRAP_MC;
		u32 target = host ? irq : fault;
		s32 rel = target - (stub + PASSAGE_IDT_STUB_SIZE);
		u8 *code = p->idt_kva + off;

		code[0] = 0x6a;			/* push $imm8 */
		code[1] = v;
		code[2] = 0xe9;			/* jmp rel32 */
		memcpy(code + 3, &rel, 4);
		/*
		 * The ABI's code selector, flat in every guest GDT, so that a
		 * guest can copy these gates into its own IDT unchanged.
		 */
		idt[v] = passage_gate32(stub, COOPERATIVE_PASSAGE_CODE_SELECTOR);
	}
}

static struct colinux_passage *passage_create(void)
{
	size_t code = colinux_passage_template_end - colinux_passage_template;
	struct colinux_passage *p;
	u64 *gdt;

	if (code > PASSAGE_CODE_MAX) {
		pr_err("passage code is %zu bytes, more than %d\n", code,
		       PASSAGE_CODE_MAX);
		return NULL;
	}
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return NULL;
	p->tables.pages = p->table_pages;
	p->tables.max = PASSAGE_MAX_TABLES;
	p->tables.gfp = GFP_KERNEL | GFP_DMA32;
	p->page = alloc_page(GFP_KERNEL | GFP_DMA32 | __GFP_ZERO);
	if (!p->page)
		goto fail;
	p->kva = page_address(p->page);
	p->phys = page_to_phys(p->page);
	p->idt_page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!p->idt_page)
		goto fail;
	p->idt_kva = page_address(p->idt_page);
	if (passage_build_host_tables(p) || passage_build_guest_tables(p))
		goto fail;
	memcpy(p->kva, colinux_passage_template, code);

	gdt = (u64 *)(p->kva + PASSAGE_GDT);
	gdt[PASSAGE_CS64 / 8] = 0x00af9a000000ffffULL;
	gdt[PASSAGE_CS32 / 8] = 0x00cf9a000000ffffULL;
	gdt[PASSAGE_DS32 / 8] = 0x00cf92000000ffffULL;
	gdt = (u64 *)(p->kva + PASSAGE_GGDT);
	/* Selector 0x08 as the ABI asks of every guest GDT (see the header). */
	gdt[COOPERATIVE_PASSAGE_CODE_SELECTOR / 8] = 0x00cf9a000000ffffULL;
	gdt[PASSAGE_GUEST_CS / 8] = 0x00cf9a000000ffffULL;
	gdt[PASSAGE_GUEST_DS / 8] = 0x00cf92000000ffffULL;
	gdt[PASSAGE_TSS32 / 8] = passage_tss_desc(PASSAGE_GUEST_VA +
						  P_SELFTEST_TSS, 0x67);
	V(u16, PASSAGE_GGDTR) = PASSAGE_GGDT_SIZE - 1;
	V(u32, PASSAGE_GGDTR + 2) = PASSAGE_GUEST_VA + PASSAGE_GGDT;
	V(u16, PASSAGE_GDTR_ID) = PASSAGE_GDT_SIZE - 1;
	V(u64, PASSAGE_GDTR_ID + 2) = p->phys + PASSAGE_GDT;
	V(u16, PASSAGE_GDTR_GVA) = PASSAGE_GDT_SIZE - 1;
	V(u32, PASSAGE_GDTR_GVA + 2) = PASSAGE_GUEST_VA + PASSAGE_GDT;
	V(u64, H_TRANS_CR3) = p->host_top_phys;
	V(u32, G_TRANS_CR3) = p->guest_pdpt_phys;
	V(u32, P_PHYS) = p->phys;
	V(u32, P_GVA) = PASSAGE_GUEST_VA;
	passage_fill_idt(p);
	passage_fill_switch_idt(p);
	passage_fill_kernel_idt(p);
	return p;
fail:
	passage_free(p);
	return NULL;
}

/*
 * The self-test guest's initial state: it "returns" from a passage call
 * into colinux_passage_selftest, with the passage GDT, no IDT and
 * interrupts off, on a stack in the passage page.
 */
static void passage_selftest_guest(struct colinux_passage *p, const u8 *entry,
				   u32 eflags)
{
	u32 frame = P_SELFTEST_STACK_TOP - 11 * 4;
	u32 *stack = (u32 *)(p->kva + frame);

	memset(stack, 0, 8 * 4);	/* pushal image */
	stack[8] = PASSAGE_GUEST_VA + (entry - colinux_passage_template);
	stack[9] = PASSAGE_GUEST_CS;
	stack[10] = X86_EFLAGS_FIXED | eflags;
	V(u32, G_ESP) = PASSAGE_GUEST_VA + frame;
	V(u32, G_CR0) = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP |
			X86_CR0_PG;
	V(u32, G_CR3) = p->guest_pdpt_phys;
	V(u32, G_CR4) = X86_CR4_PAE | X86_CR4_MCE;
	V(u16, G_GDTR) = PASSAGE_GGDT_SIZE - 1;
	V(u32, G_GDTR + 2) = PASSAGE_GUEST_VA + PASSAGE_GGDT;
	V(u16, G_IDTR) = 256 * 8 - 1;
	V(u32, G_IDTR + 2) = PASSAGE_IDT_GVA;
	V(u16, G_TR) = PASSAGE_TSS32;
	V(u16, G_LDT) = 0;
	V(u16, G_SS) = PASSAGE_GUEST_DS;
	V(u16, G_DS) = PASSAGE_GUEST_DS;
	V(u16, G_ES) = PASSAGE_GUEST_DS;
	V(u16, G_FS) = PASSAGE_GUEST_DS;
	V(u16, G_GS) = PASSAGE_GUEST_DS;
	V(u32, P_SELFTEST_COUNT) = 0;
}

typedef void (*passage_int_fn)(void);

/* Values passage_switch_seen() reports. */
#define PASSAGE_SEEN	4

/*
 * MSRs a guest kernel may write (its own CPU setup, mitigations, debug
 * features) and the host relies on, where the CPU has them: each is
 * written back after a switch when the guest left it changed. TSC_AUX is
 * also written back by the passage itself, before the host's IDT.
 */
static struct {
	u32 index;
	bool present;
} passage_msrs[] = {
	{ MSR_TSC_AUX },
	{ MSR_IA32_SPEC_CTRL },
	{ MSR_IA32_TSX_CTRL },
	{ MSR_IA32_DEBUGCTLMSR },
	{ MSR_MISC_FEATURES_ENABLES },
	{ MSR_IA32_MISC_ENABLE },
	{ MSR_TEST_CTRL },
	{ MSR_IA32_UMWAIT_CONTROL },
};

#define PASSAGE_NR_MSRS	ARRAY_SIZE(passage_msrs)

/*
 * Testing: behave as if CR4.VMXE were set (as when another hypervisor
 * has turned VMX on), to exercise the refusal; the test host's CPU has no
 * VMX to turn on.
 */
static bool test_vmx_on;
module_param(test_vmx_on, bool, 0600);
MODULE_PARM_DESC(test_vmx_on,
		 "testing: refuse every switch as if another hypervisor had turned VMX on");

/*
 * VMX on (KVM or another hypervisor ran VMXON on this CPU) forbids what the
 * switch does (CR0.PG/PE and CR4 fixed bits): check at every switch, with
 * interrupts off, since a VM may start at any time between two.
 */
static bool passage_vmx_on(void)
{
	return (native_read_cr4() & X86_CR4_VMXE) || READ_ONCE(test_vmx_on);
}

/* Host CPU state the 32-bit world may change and the switch does not own. */
struct passage_host_state {
	u64 sysenter_cs, sysenter_esp, sysenter_eip, pat, xcr0;
	u64 star, lstar, cstar, sfmask;
	u64 msr[PASSAGE_NR_MSRS];
	u32 pkru;
	unsigned long dr7, dr[4], dr6;
};

static void passage_save_state(struct colinux_passage *p,
			       struct passage_host_state *h)
{
	unsigned int i;

	rdmsrl(MSR_IA32_SYSENTER_CS, h->sysenter_cs);
	rdmsrl(MSR_IA32_SYSENTER_ESP, h->sysenter_esp);
	rdmsrl(MSR_IA32_SYSENTER_EIP, h->sysenter_eip);
	rdmsrl(MSR_IA32_CR_PAT, h->pat);
	rdmsrl(MSR_STAR, h->star);
	rdmsrl(MSR_LSTAR, h->lstar);
	rdmsrl(MSR_CSTAR, h->cstar);
	rdmsrl(MSR_SYSCALL_MASK, h->sfmask);
	h->xcr0 = boot_cpu_has(X86_FEATURE_OSXSAVE) ? xgetbv(XCR_XFEATURE_ENABLED_MASK) : 0;
	h->pkru = boot_cpu_has(X86_FEATURE_OSPKE) ? rdpkru() : 0;
	for (i = 0; i < PASSAGE_NR_MSRS; i++)
		if (passage_msrs[i].present)
			rdmsrl(passage_msrs[i].index, h->msr[i]);
	V(u32, P_TSC_AUX_SAVED) = passage_msrs[0].present;
	V(u32, H_TSC_AUX) = h->msr[0];
	/*
	 * The guest world gives sysenter nowhere to go: with SYSENTER_CS 0 it
	 * raises #GP (the passage clears EFER.SCE for syscall). With the
	 * host's values a guest user's sysenter would enter ring 0 at the
	 * low half of the host's entry point.
	 */
	wrmsrl(MSR_IA32_SYSENTER_CS, 0);
	get_debugreg(h->dr7, 7);
	get_debugreg(h->dr6, 6);
	if (h->dr7) {
		/* Host breakpoints are live: keep their addresses too. */
		get_debugreg(h->dr[0], 0);
		get_debugreg(h->dr[1], 1);
		get_debugreg(h->dr[2], 2);
		get_debugreg(h->dr[3], 3);
		set_debugreg(0, 7);
	}
	/* The guest's own breakpoints: the passage arms DR7 itself. */
	if (V(u32, G_DR7) & DR7_ENABLES) {
		set_debugreg(p->guest_dr[0], 0);
		set_debugreg(p->guest_dr[1], 1);
		set_debugreg(p->guest_dr[2], 2);
		set_debugreg(p->guest_dr[3], 3);
	}
}

static void passage_restore_state(struct colinux_passage *p,
				  const struct passage_host_state *h)
{
	unsigned int i;
	unsigned long dr7;
	u64 v;

	wrmsrl(MSR_IA32_SYSENTER_CS, h->sysenter_cs);
	wrmsrl(MSR_IA32_SYSENTER_ESP, h->sysenter_esp);
	wrmsrl(MSR_IA32_SYSENTER_EIP, h->sysenter_eip);
	wrmsrl(MSR_IA32_CR_PAT, h->pat);
	wrmsrl(MSR_STAR, h->star);
	wrmsrl(MSR_LSTAR, h->lstar);
	wrmsrl(MSR_CSTAR, h->cstar);
	wrmsrl(MSR_SYSCALL_MASK, h->sfmask);
	if (boot_cpu_has(X86_FEATURE_OSXSAVE))
		xsetbv(XCR_XFEATURE_ENABLED_MASK, h->xcr0);
	if (boot_cpu_has(X86_FEATURE_OSPKE))
		wrpkru(h->pkru);
	for (i = 0; i < PASSAGE_NR_MSRS; i++) {
		if (!passage_msrs[i].present)
			continue;
		rdmsrl(passage_msrs[i].index, v);
		if (v != h->msr[i])
			wrmsrl(passage_msrs[i].index, h->msr[i]);
	}
	/*
	 * The passage disarmed the guest's breakpoints (G_DR7 keeps them);
	 * DR7 is the host's again whatever it was, and DR6 too.
	 */
	if (V(u32, G_DR7) & DR7_ENABLES) {
		get_debugreg(p->guest_dr[0], 0);
		get_debugreg(p->guest_dr[1], 1);
		get_debugreg(p->guest_dr[2], 2);
		get_debugreg(p->guest_dr[3], 3);
	}
	if (h->dr7) {
		set_debugreg(h->dr[0], 0);
		set_debugreg(h->dr[1], 1);
		set_debugreg(h->dr[2], 2);
		set_debugreg(h->dr[3], 3);
	}
	set_debugreg(h->dr6, 6);
	get_debugreg(dr7, 7);
	if (dr7 != h->dr7)
		set_debugreg(h->dr7, 7);
}

/*
 * One round trip into the passage's guest and back, on this CPU. The
 * guest may use the FPU/SSE registers (kernel_fpu_begin() has saved the
 * task's) and change MSRs the switch itself does not restore; those are
 * saved and restored here. An interrupt the guest world took is raised
 * again through the host's IDT before interrupts are enabled, so the host
 * handles it as its own. Returns the PASSAGE_EXIT_* reason; @seen, if not
 * NULL, gets SYSENTER_CS and XCR0 as the guest left them, whether an NMI
 * was recorded during the switch and DR7 as the passage left it
 * (PASSAGE_SEEN values).
 */
/*
 * Whether the guest world's exit on @vector is one to raise in the host:
 * NMI and #MC, and external vectors the local APIC really has in service
 * (it delivered them; the host's handler acknowledges them). A guest that
 * executes `int $v` itself does not make the host run the handler of a
 * vector that did not arrive (REBOOT_VECTOR, say).
 */
static bool passage_replayable(u32 vector)
{
	if (vector == X86_TRAP_NMI || vector == X86_TRAP_MC)
		return true;
	if (vector < FIRST_EXTERNAL_VECTOR || vector > 0xff)
		return false;
	if (!boot_cpu_has(X86_FEATURE_APIC))
		return true;
	return apic_read(APIC_ISR + (vector / 32) * 0x10) & BIT(vector % 32);
}

static u32 passage_switch_seen(struct colinux_passage *p, u64 *seen)
{
	struct desc_ptr *rw = (struct desc_ptr *)(p->kva + H_GDTR_RW);
	struct passage_host_state h;
	unsigned long flags;
	u32 reason;

	kernel_fpu_begin();
	local_irq_save(flags);
	if (passage_vmx_on()) {
		local_irq_restore(flags);
		kernel_fpu_end();
		return PASSAGE_EXIT_REFUSED;
	}
	/*
	 * A line raised from now on interrupts this CPU, which takes the IPI
	 * in the guest world (it is held until the guest enables interrupts,
	 * as any host interrupt); one raised before is seen here, and the
	 * switch is not made: RUN takes the line first.
	 */
	if (p->ev && colinux_events_enter(p->ev, smp_processor_id())) {
		colinux_events_leave(p->ev);
		local_irq_restore(flags);
		kernel_fpu_end();
		return PASSAGE_EXIT_RETRY;
	}
	rw->size = GDT_SIZE - 1;
	rw->address = (unsigned long)get_cpu_gdt_rw(smp_processor_id());
	passage_save_state(p, &h);
	V(u32, P_EXIT_REASON) = 0;
	if (p->guest_fpu)
		asm volatile("fxrstor %0" : : "m" (*p->guest_fpu));
	WRITE_ONCE(p->cpu, smp_processor_id());
	WRITE_ONCE(p->in_guest, true);
	colinux_passage_enter(p->kva);
	WRITE_ONCE(p->in_guest, false);
	/* Before the host's handlers run: a line they raise needs no IPI. */
	if (p->ev)
		colinux_events_leave(p->ev);
	WRITE_ONCE(p->switches, p->switches + 1);
	if (p->guest_fpu)
		asm volatile("fxsave %0" : "=m" (*p->guest_fpu));
	if (seen) {
		rdmsrl(MSR_IA32_SYSENTER_CS, seen[0]);
		seen[1] = boot_cpu_has(X86_FEATURE_OSXSAVE) ?
			  xgetbv(XCR_XFEATURE_ENABLED_MASK) : 0;
		seen[2] = V(u32, P_NMI_PENDING);
		get_debugreg(seen[3], 7);
	}
	passage_restore_state(p, &h);
	reason = V(u32, P_EXIT_REASON);
	/* Events the switch itself recorded go to the host's handlers. */
	if (V(u32, P_NMI_PENDING)) {
		V(u32, P_NMI_PENDING) = 0;
		((passage_int_fn)(colinux_passage_int_table + 16 * X86_TRAP_NMI))();
	}
	if (V(u32, P_MCE_PENDING)) {
		V(u32, P_MCE_PENDING) = 0;
		((passage_int_fn)(colinux_passage_int_table + 16 * X86_TRAP_MC))();
	}
	if (reason == PASSAGE_EXIT_IRQ && passage_replayable(V(u32, P_EXIT_VECTOR)))
		((passage_int_fn)(colinux_passage_int_table +
				  16 * (V(u32, P_EXIT_VECTOR) & 0xff)))();
	local_irq_restore(flags);
	kernel_fpu_end();
	return reason;
}

static u32 passage_switch(struct colinux_passage *p)
{
	return passage_switch_seen(p, NULL);
}

int colinux_passage_selftest_run(unsigned long rounds)
{
	struct colinux_passage *p;
	unsigned long i;
	u64 start, cycles;
	int cpus_seen = 0, last_cpu = -1;

	if (passage_vmx_on()) {
		pr_warn("passage self-test: VMX is on (another hypervisor); not switching\n");
		return -EBUSY;
	}
	p = passage_create();
	if (!p)
		return -ENOMEM;
	passage_selftest_guest(p, colinux_passage_selftest, 0);
	start = rdtsc();
	for (i = 0; i < rounds; i++) {
		u32 reason = passage_switch(p);

		if (reason != PASSAGE_EXIT_CALL) {
			pr_err("passage self-test: guest exit reason %u (vector %u)%s\n",
			       reason, V(u32, P_EXIT_VECTOR),
			       reason == PASSAGE_EXIT_FAULT &&
			       V(u32, P_EXIT_VECTOR) == 6 ?
			       ": the guest did not find its CR2 again" : "");
			passage_free(p);
			return -EIO;
		}
		if (V(u32, P_SELFTEST_COUNT) != i + 1) {
			pr_err("passage self-test: guest count %u after %lu round trips\n",
			       V(u32, P_SELFTEST_COUNT), i + 1);
			passage_free(p);
			return -EIO;
		}
		if (raw_smp_processor_id() != last_cpu) {
			last_cpu = raw_smp_processor_id();
			cpus_seen++;
		}
		/* As a page fault of the host would (the guest checks). */
		native_write_cr2(0x5a5a5000 + (i & 0xfff));
		if (need_resched())
			cond_resched();
	}
	cycles = rdtsc() - start;
	pr_info("passage self-test: %lu round trips host->guest->host, %llu TSC cycles each, CPU changes %d\n",
		rounds, rounds ? div64_u64(cycles, rounds) : 0, cpus_seen);
	passage_free(p);
	return 0;
}

/*
 * The busy self-test: a guest that computes with interrupts on for
 * @seconds; the host only gets the CPU back through forwarded interrupts
 * (its timer among them) and must stay responsive meanwhile.
 */
int colinux_passage_busy_run(unsigned long seconds)
{
	unsigned long end = jiffies + seconds * HZ, start_jiffies = jiffies;
	unsigned long forwarded = 0, timer = 0, switches = 0;
	struct colinux_passage *p;
	int ret = 0;

	if (passage_vmx_on())
		return -EBUSY;
	p = passage_create();
	if (!p)
		return -ENOMEM;
	passage_selftest_guest(p, colinux_passage_selftest_busy,
			       X86_EFLAGS_IF);
	while (time_before(jiffies, end)) {
		u32 reason = passage_switch(p);

		switches++;
		if (reason == PASSAGE_EXIT_IRQ) {
			forwarded++;
			if (V(u32, P_EXIT_VECTOR) == LOCAL_TIMER_VECTOR)
				timer++;
		} else {
			pr_err("passage busy test: guest exit reason %u (vector %u)\n",
			       reason, V(u32, P_EXIT_VECTOR));
			ret = -EIO;
			break;
		}
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		cond_resched();
	}
	pr_info("passage busy test: %lu s, guest counted to %u, %lu interrupts forwarded (%lu timer), %lu jiffies passed\n",
		seconds, V(u32, P_SELFTEST_COUNT), forwarded, timer,
		jiffies - start_jiffies);
	passage_free(p);
	return ret;
}

/*
 * Guests that break (an invalid opcode, a page fault, a bad selector)
 * must come back as reported faults with the host unharmed.
 */
int colinux_passage_fault_run(void)
{
	static const struct {
		const u8 *entry;
		u32 vector;
		const char *what;
	} cases[] = {
		{ colinux_passage_selftest_ud2, 6, "invalid opcode" },
		{ colinux_passage_selftest_pf, 14, "page fault" },
		{ colinux_passage_selftest_gp, 13, "general protection" },
	};
	int i, ret = 0;

	if (passage_vmx_on())
		return -EBUSY;
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		struct colinux_passage *p = passage_create();
		u32 reason;

		if (!p)
			return -ENOMEM;
		passage_selftest_guest(p, cases[i].entry, 0);
		reason = passage_switch(p);
		pr_info("passage fault test: %s: exit reason %u, vector %u, eip %#x, cr2 %#x\n",
			cases[i].what, reason, V(u32, P_EXIT_VECTOR),
			V(u32, P_EXIT_EIP), V(u32, P_EXIT_CR2));
		if (reason != PASSAGE_EXIT_FAULT ||
		    V(u32, P_EXIT_VECTOR) != cases[i].vector)
			ret = -EIO;
		passage_free(p);
	}
	return ret;
}

/*
 * A C function whose whole body is its return: objtool lists that return
 * site and the module loader patches it as the host's mitigations say
 * (a jump to the selected return thunk, or a plain ret).
 */
static noinline notrace void passage_ret_probe(void)
{
	barrier();
}

/* The opcode of a return instruction and, for a jmp rel32, its target. */
static const u8 *passage_ret_form(const u8 *insn, u8 *op)
{
	s32 rel;

	*op = insn[0];
	if (insn[0] != 0xe9)
		return NULL;
	memcpy(&rel, insn + 1, sizeof(rel));
	return insn + 5 + rel;
}

/*
 * The assembly's returns, which it lists in .return_sites itself, must have
 * been patched like the C code's: the same instruction to the same thunk.
 */
int colinux_passage_thunk_check(void)
{
	const u8 *want_target, *target;
	u8 want_op, op;
	int v, differ = 0;

	want_target = passage_ret_form((const u8 *)passage_ret_probe, &want_op);
	for (v = 0; v < 256; v++) {
		target = passage_ret_form(colinux_passage_int_table + 16 * v + 6, &op);
		if (op != want_op || target != want_target)
			differ++;
	}
	pr_info("passage return-thunk check: C returns as %#x to %pS; %d of 256 forwarding returns differ\n",
		want_op, want_target, differ);
	return differ ? -EIO : 0;
}

/*
 * A guest that changes SYSENTER MSRs, PAT, FPU/SSE control and XCR0:
 * the host must see the guest's values right after the switch and its
 * own after the restore.
 */
int colinux_passage_clobber_run(void)
{
	struct colinux_passage *p;
	u64 before_cs, before_xcr0, after_cs, after_xcr0, seen[PASSAGE_SEEN];
	u64 before_aux = 0, after_aux = 0;
	unsigned long before_dr7, after_dr7;
	bool aux = boot_cpu_has(X86_FEATURE_RDTSCP) || boot_cpu_has(X86_FEATURE_RDPID);
	u32 reason;
	int ret = 0;

	if (passage_vmx_on())
		return -EBUSY;
	if (!boot_cpu_has(X86_FEATURE_XSAVE))
		return -EOPNOTSUPP;
	p = passage_create();
	if (!p)
		return -ENOMEM;
	passage_selftest_guest(p, colinux_passage_selftest_clobber, 0);
	rdmsrl(MSR_IA32_SYSENTER_CS, before_cs);
	before_xcr0 = xgetbv(XCR_XFEATURE_ENABLED_MASK);
	if (aux)
		rdmsrl(MSR_TSC_AUX, before_aux);
	get_debugreg(before_dr7, 7);
	reason = passage_switch_seen(p, seen);
	rdmsrl(MSR_IA32_SYSENTER_CS, after_cs);
	after_xcr0 = xgetbv(XCR_XFEATURE_ENABLED_MASK);
	if (aux)
		rdmsrl(MSR_TSC_AUX, after_aux);
	get_debugreg(after_dr7, 7);
	pr_info("passage state test: exit %u; SYSENTER_CS host %#llx, guest %#llx, restored %#llx; XCR0 host %#llx, guest %#llx, restored %#llx\n",
		reason, before_cs, seen[0], after_cs, before_xcr0, seen[1],
		after_xcr0);
	pr_info("passage state test: TSC_AUX host %#llx, guest %#x, restored %#llx; DR7 host %#lx, guest %#x, during the switch %#llx, restored %#lx\n",
		before_aux, V(u32, P_SELFTEST_COUNT), after_aux, before_dr7, V(u32, G_DR7),
		seen[3], after_dr7);
	if (reason != PASSAGE_EXIT_CALL || seen[0] != 0x73 || seen[1] != 3 ||
	    after_cs != before_cs || after_xcr0 != before_xcr0)
		ret = -EIO;
	if (aux && (V(u32, P_SELFTEST_COUNT) != 0x5a5 || after_aux != before_aux))
		ret = -EIO;
	/* The guest armed breakpoint 0: disarmed in the passage, not in the host. */
	if ((V(u32, G_DR7) & DR7_ENABLES) != 1 || (seen[3] & DR7_ENABLES) ||
	    after_dr7 != before_dr7)
		ret = -EIO;
	passage_free(p);
	return ret;
}

/*
 * Running a real guest: the RUN ioctl.
 *
 * A guest that runs gets the passage pages (passage code, the passage's
 * IDT, the shared state) at the fixed addresses of the ABI and initial
 * page tables (PAE) that map its RAM at COOPERATIVE_KERNEL_VA_OFFSET.
 * Guest RAM is host pages anywhere (the core's frame table); the page
 * tables hold those real host frames. Only the PDPT, which CR3 holds in
 * 32-bit mode, must lie below 4 GiB.
 *
 * A guest started with boot parameters (a Linux guest) also gets the
 * translation tables p2m and m2p at the top of its RAM, virtual
 * interrupts (injected at its irq_entry), a one-shot TSC timer, console
 * input, and RUN returns to the daemon when it idles (EXIT_IDLE) and at
 * the end of each time slice (EXIT_YIELD). A guest started without them
 * (the test payloads) has its IDLE operations served in the kernel and
 * is never sliced, as before.
 */
#define RUN_VA_OFFSET		COOPERATIVE_KERNEL_VA_OFFSET
/* RAM mapped by the initial tables ends below the passage pages. */
#define RUN_VA_LIMIT		COOPERATIVE_PASSAGE_GUEST_VA
/* Guest time after which RUN returns EXIT_YIELD (Linux guests). */
#define RUN_SLICE_NS		(10 * NSEC_PER_MSEC)

/*
 * Halt polling, as KVM's halt_poll_ns. An idle guest often waits for an
 * answer another thread or process gives within microseconds (a back
 * end's IRQFD: virtiofsd's answer to a FUSE request, a disk worker's
 * completion). Returning EXIT_IDLE then costs the daemon's thread a
 * sleep and a wake-up, and the answer waits for the scheduler. Instead
 * RUN first watches the lines (and the guest's timer) for up to a window,
 * and enters the guest at once when one comes. The window adapts to how
 * long the guest's idles last, per guest: it grows (10 us, then doubling)
 * while idles end within halt_poll_ns, and drops to 0 after an idle that
 * lasted longer; polling stops early when another task wants the CPU or
 * a signal is pending.
 */
static unsigned int halt_poll_ns = 200000;
module_param(halt_poll_ns, uint, 0644);
MODULE_PARM_DESC(halt_poll_ns,
		 "longest time (ns) an idle Linux guest's RUN watches for a line before it returns to the daemon; adaptive below it; at most 10 ms; 0: never (default 200000, as KVM's)");
#define RUN_POLL_START_NS	10000

static_assert(PASSAGE_GUEST_VA == COOPERATIVE_PASSAGE_GUEST_VA);
static_assert(PASSAGE_CS32 == COOPERATIVE_PASSAGE_CODE_SELECTOR);
static_assert(PASSAGE_DS32 == COOPERATIVE_PASSAGE_DATA_SELECTOR);
static_assert(PASSAGE_GUEST_DS == COOPERATIVE_PASSAGE_DATA_SELECTOR);
static_assert(PASSAGE_IDT_GVA == COOPERATIVE_PASSAGE_IDT_GUEST_VA);
static_assert(sizeof(struct cooperative_m2p_entry) == 8);

/* What the guest waits for when RUN resumes it. */
enum run_wait {
	RUN_WAIT_NONE,		/* nothing: it continues where it left */
	RUN_WAIT_STATUS,	/* the daemon's status for the op RUN returned */
	RUN_WAIT_IDLE,		/* the end of its IDLE: status OK */
};

struct colinux_run {
	struct colinux_passage *p;
	struct page *shared_page;
	struct cooperative_shared_state *shared;
	struct pt_pool tables;		/* the guest's page-table pages */
	u64 *pdpt;
	u64 pdpt_phys;
	const u64 *frames;		/* guest pfn -> host frame (the core's) */
	u64 nr_frames;
	bool started, dead;
	bool linux_boot;		/* started with boot parameters */
	struct fxregs_state *guest_fpu;	/* its FPU registers (the passage's) */
	u32 last_exit;			/* PASSAGE_EXIT_* of the last switch */
	struct colinux_events *ev;	/* IOEVENTFD and IRQFD (the shim's) */
	enum run_wait wait;
	u64 poll_ns;			/* halt polling's window now */
	u64 idle_at;			/* when RUN returned EXIT_IDLE */
	struct delayed_work watchdog;	/* see run_watchdog() */
	unsigned long watched_switches;	/* p->switches at its last look */
	unsigned long kicks;		/* NMIs it sent */
};

/* A rate-limited complaint about the daemon's or the guest's input. */
#define run_warn(fmt, ...)						\
	pr_warn_ratelimited("%s[%d]: " fmt "\n", current->comm,	\
			    task_pid_nr(current), ##__VA_ARGS__)

static int run_map(struct colinux_run *r, u32 va, u64 phys)
{
	return pt_map_pae(&r->tables, r->pdpt, va, phys);
}

/*
 * A guest that never leaves the guest world (a guest kernel spinning with
 * interrupts off takes no host interrupt, so no switch comes back) would
 * hold its CPU forever, and its daemon could not even be killed: the
 * kill's IPI is an interrupt too. A watchdog on another CPU looks every
 * RUN_KICK_MS; when the guest world has been running since its last look
 * without a switch coming back, it sends that CPU an NMI, which the guest
 * world forwards like any NMI. The host's NMI handlers then run, ours
 * (colinux_nmi) claims it, and RUN sees pending signals and the end of its
 * slice as after any exit. On a one-CPU host there is no other CPU to send
 * it from.
 */
#define RUN_KICK_MS	50

static DEFINE_PER_CPU(bool, colinux_nmi_kick);

static int colinux_nmi(unsigned int type, struct pt_regs *regs)
{
	if (!this_cpu_read(colinux_nmi_kick))
		return NMI_DONE;
	this_cpu_write(colinux_nmi_kick, false);
	return NMI_HANDLED;
}

/* The watchdog's next look, from a CPU other than @guest_cpu if any. */
static void run_watchdog_queue(struct colinux_run *r, int guest_cpu)
{
	int next = cpumask_any_but(cpu_online_mask, guest_cpu);

	if (next >= nr_cpu_ids)
		next = guest_cpu;
	queue_delayed_work_on(next, system_wq, &r->watchdog,
			      msecs_to_jiffies(RUN_KICK_MS));
}

static void run_watchdog(struct work_struct *work)
{
	struct colinux_run *r = container_of(to_delayed_work(work),
					     struct colinux_run, watchdog);
	struct colinux_passage *p = r->p;
	unsigned long switches = READ_ONCE(p->switches);
	int cpu = READ_ONCE(p->cpu);

	if (READ_ONCE(p->in_guest) && switches == r->watched_switches &&
	    cpu != raw_smp_processor_id() && cpu_online(cpu)) {
		per_cpu(colinux_nmi_kick, cpu) = true;
		/* The flag before the NMI that finds it. */
		smp_mb();
		apic->send_IPI(cpu, NMI_VECTOR);
		r->kicks++;
	}
	r->watched_switches = switches;
	run_watchdog_queue(r, cpu);
}

int colinux_passage_init(void)
{
	unsigned int i;
	u64 v;

	for (i = 0; i < PASSAGE_NR_MSRS; i++)
		passage_msrs[i].present = !rdmsrl_safe(passage_msrs[i].index, &v);
	return register_nmi_handler(NMI_LOCAL, colinux_nmi, 0, "colinux");
}

void colinux_passage_exit(void)
{
	unregister_nmi_handler(NMI_LOCAL, "colinux");
}

void colinux_run_free(struct colinux_run *r)
{
	if (!r)
		return;
	if (r->started)
		cancel_delayed_work_sync(&r->watchdog);
	if (r->kicks)
		pr_info("%s[%d]: the guest was kicked out of the guest world by %lu NMIs\n",
			current->comm, task_pid_nr(current), r->kicks);
	pt_pool_free(&r->tables);
	kvfree(r->tables.pages);
	if (r->shared_page)
		__free_page(r->shared_page);
	if (r->p)
		passage_free(r->p);
	kfree(r->guest_fpu);
	kfree(r);
}

/* Guest RAM mapped by the initial tables, in bytes. */
static u64 run_mapped_size(const struct colinux_run *r)
{
	return min_t(u64, r->nr_frames << PAGE_SHIFT,
		     (u64)RUN_VA_LIMIT - RUN_VA_OFFSET);
}

struct colinux_run *colinux_run_create(const u64 *frames, u64 nr_frames,
				       struct colinux_events *ev)
{
	struct colinux_run *r = kzalloc(sizeof(*r), GFP_KERNEL);
	struct cooperative_shared_state *s;
	u64 pfn, mapped;
	int ret = -ENOMEM;

	if (!r)
		return ERR_PTR(-ENOMEM);
	r->frames = frames;
	r->nr_frames = nr_frames;
	mapped = run_mapped_size(r) >> PAGE_SHIFT;
	r->tables.max = 4 + DIV_ROUND_UP(mapped, 512);
	r->tables.gfp = GFP_KERNEL_ACCOUNT;
	r->tables.pages = kvcalloc(r->tables.max, sizeof(*r->tables.pages),
				   GFP_KERNEL);
	if (!r->tables.pages)
		goto fail;
	r->p = passage_create();
	if (!r->p)
		goto fail;
	r->guest_fpu = kzalloc(sizeof(*r->guest_fpu), GFP_KERNEL_ACCOUNT);
	if (!r->guest_fpu)
		goto fail;
	r->guest_fpu->cwd = 0x37f;	/* the state after FNINIT */
	r->guest_fpu->mxcsr = MXCSR_DEFAULT;
	r->p->guest_fpu = r->guest_fpu;
	r->ev = ev;
	r->p->ev = ev;
	r->shared_page = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!r->shared_page)
		goto fail;
	r->shared = page_address(r->shared_page);
	/* CR3 holds the PDPT: it must lie below 4 GiB. */
	r->pdpt = pt_new(&r->tables, &r->pdpt_phys, GFP_DMA32);
	if (!r->pdpt)
		goto fail;
	for (pfn = 0; pfn < mapped; pfn++) {
		ret = run_map(r, RUN_VA_OFFSET + (pfn << PAGE_SHIFT),
			      frames[pfn] << PAGE_SHIFT);
		if (ret)
			goto fail;
		if (!(pfn & 4095))
			cond_resched();
	}
	ret = run_map(r, COOPERATIVE_PASSAGE_GUEST_VA, r->p->phys);
	if (!ret)
		ret = run_map(r, COOPERATIVE_PASSAGE_IDT_GUEST_VA,
			      page_to_phys(r->p->idt_page));
	if (!ret)
		ret = run_map(r, COOPERATIVE_SHARED_STATE_GUEST_VA,
			      page_to_phys(r->shared_page));
	if (ret)
		goto fail;

	s = r->shared;
	s->magic = COOPERATIVE_ABI_MAGIC;
	s->abi_version = COOPERATIVE_ABI_VERSION;
	s->size = sizeof(*s);
	s->nr_vcpus = 1;
	s->vcpu_size = sizeof(s->vcpu[0]);
	s->vcpu_offset = offsetof(struct cooperative_shared_state, vcpu);
	s->passage_entry = PASSAGE_GUEST_VA +
		(colinux_passage_guest_entry - colinux_passage_template);
	/* The guest maps these itself at the ABI's fixed addresses. */
	s->passage_frame = r->p->phys >> PAGE_SHIFT;
	s->passage_idt_frame = page_to_pfn(r->p->idt_page);
	s->shared_state_frame = page_to_pfn(r->shared_page);
	s->boot.magic = COOPERATIVE_ABI_MAGIC;
	s->boot.abi_version = COOPERATIVE_ABI_VERSION;
	s->boot.memory_size = nr_frames << PAGE_SHIFT;
	s->boot.cpu_khz = tsc_khz;
	return r;
fail:
	colinux_run_free(r);
	return ERR_PTR(ret);
}

/* Copy @len bytes between guest-physical @pa and @buf. */
static int run_copy(struct colinux_run *r, u64 pa, void *buf, u64 len,
		    bool to_guest)
{
	u8 *b = buf;

	if (pa + len < pa || pa + len > (r->nr_frames << PAGE_SHIFT))
		return -EINVAL;
	while (len) {
		u64 off = pa & ~PAGE_MASK;
		u64 n = min_t(u64, len, PAGE_SIZE - off);
		u8 *page = kmap_local_page(pfn_to_page(r->frames[pa >> PAGE_SHIFT]));

		if (to_guest)
			memcpy(page + off, b, n);
		else
			memcpy(b, page + off, n);
		kunmap_local(page);
		pa += n;
		b += n;
		len -= n;
	}
	return 0;
}

/*
 * Text from guest-physical @pa (@len bytes, truncated to what RUN can
 * return) into @out, NUL-terminated; returns the bytes stored.
 */
static u32 run_text(struct colinux_run *r, u64 pa, u64 len, u8 *out)
{
	len = min_t(u64, len, COOPERATIVE_RUN_TEXT_SIZE - 1);
	memset(out, 0, COOPERATIVE_RUN_TEXT_SIZE);
	if (run_copy(r, pa, out, len, false))
		return strscpy(out, "(text outside guest RAM)",
			       COOPERATIVE_RUN_TEXT_SIZE);
	return len;
}

/* The guest's first state: as if it had called the passage from @entry. */
static int run_start(struct colinux_run *r, u64 entry, u64 stack)
{
	u64 limit = RUN_VA_OFFSET + run_mapped_size(r);
	u32 frame[11] = { 0 };
	u32 esp;

	if (entry < RUN_VA_OFFSET || entry >= limit ||
	    stack < RUN_VA_OFFSET + sizeof(frame) || stack > limit ||
	    (stack & 3))
		return -EINVAL;
	esp = stack - sizeof(frame);
	frame[7] = COOPERATIVE_SHARED_STATE_GUEST_VA;	/* EAX */
	frame[8] = entry;
	frame[9] = PASSAGE_GUEST_CS;
	frame[10] = X86_EFLAGS_FIXED;
	if (run_copy(r, esp - RUN_VA_OFFSET, frame, sizeof(frame), true))
		return -EINVAL;
	passage_selftest_guest(r->p, colinux_passage_selftest, 0);
	*(u32 *)(r->p->kva + G_ESP) = esp;
	*(u32 *)(r->p->kva + G_CR3) = r->pdpt_phys;
	return 0;
}

/* The daemon's boot parameters: the core checks and names the first bad field. */
static int run_boot_check(const struct colinux_run *r,
			  const struct cooperative_boot_params *b)
{
	return colinux_core_boot_check(b, r->nr_frames << PAGE_SHIFT);
}

/*
 * The translation tables at the top of guest RAM (see struct
 * cooperative_boot_params): the p2m (one __u32 host frame per guest pfn),
 * then, 8-byte aligned, the m2p hash (2 * pages slots or more, a power of
 * two: at most half full, so probes stay short). Fills their fields.
 */
static int run_tables(struct colinux_run *r, struct cooperative_boot_params *b)
{
	u64 pages = r->nr_frames, ram = pages << PAGE_SHIFT;
	u64 entries = roundup_pow_of_two(2 * pages);
	u64 m2p_off = ALIGN(pages * sizeof(u32), 8);
	u64 size = PAGE_ALIGN(m2p_off + entries * sizeof(struct cooperative_m2p_entry));
	struct cooperative_m2p_entry *m2p;
	u64 base, pfn, done;
	u32 *p2m;
	u8 *buf;
	int ret = 0;

	if (size > ram) {
		run_warn("RUN: translation tables (%llu KiB) larger than guest RAM",
			 size >> 10);
		return -ENOSPC;
	}
	base = ram - size;
	if (base < b->kernel_end ||
	    (b->initrd_address && base < b->initrd_address + b->initrd_size) ||
	    (b->virtio_count && base < b->virtio_address +
	     (u64)b->virtio_count * COOPERATIVE_VIRTIO_DEVICE_SIZE)) {
		run_warn("RUN: translation tables at %#llx (%llu KiB) would overlap the %s: more guest RAM needed",
			 base, size >> 10,
			 base < b->kernel_end ? "kernel" :
			 b->virtio_count && base >= b->initrd_address + b->initrd_size ?
			 "virtio table" : "initrd");
		return -ENOSPC;
	}
	for (pfn = 0; pfn < pages; pfn++) {
		if (!r->frames[pfn] || r->frames[pfn] > U32_MAX) {
			run_warn("RUN: host frame %#llx of guest pfn %#llx does not fit the 32-bit p2m",
				 r->frames[pfn], pfn);
			return -E2BIG;
		}
	}
	buf = kvzalloc(size, GFP_KERNEL_ACCOUNT);
	if (!buf)
		return -ENOMEM;
	p2m = (u32 *)buf;
	m2p = (struct cooperative_m2p_entry *)(buf + m2p_off);
	for (pfn = 0; pfn < pages; pfn++) {
		u32 frame = r->frames[pfn];
		u32 slot = COOPERATIVE_M2P_SLOT(frame, entries);

		p2m[pfn] = frame;
		/* Never full (entries >= 2 * pages); frames are distinct. */
		while (m2p[slot].frame)
			slot = (slot + 1) & (entries - 1);
		m2p[slot].frame = frame;
		m2p[slot].pfn = pfn;
		if (!(pfn & 4095))
			cond_resched();
	}
	for (done = 0; done < size && !ret; done += SZ_1M) {
		ret = run_copy(r, base + done, buf + done,
			       min_t(u64, SZ_1M, size - done), true);
		cond_resched();
	}
	kvfree(buf);
	if (ret)
		return ret;
	b->p2m_address = base;
	b->m2p_address = base + m2p_off;
	b->m2p_entries = entries;
	b->tables_pages = size >> PAGE_SHIFT;
	return 0;
}

/* A Linux guest's boot: its parameters in, tables built, shared state. */
static int run_boot(struct colinux_run *r, u64 user)
{
	struct cooperative_boot_params b;
	int ret;

	if (copy_from_user(&b, u64_to_user_ptr(user), sizeof(b)))
		return -EFAULT;
	ret = run_boot_check(r, &b);
	if (!ret)
		ret = run_tables(r, &b);
	if (ret)
		return ret;
	b.cpu_khz = tsc_khz;
	b.host_time_ns = ktime_get_real_ns();
	r->shared->boot = b;
	return 0;
}

/*
 * Console input from the daemon into the shared ring, as much as fits, and
 * the power button when the daemon presses it.
 */
static int run_input(struct colinux_run *r, struct cooperative_ioctl_run *arg)
{
	struct cooperative_shared_state *s = r->shared;
	const u8 __user *src = u64_to_user_ptr(arg->input);
	u32 head = s->input_head, used = head - s->input_tail;
	u32 room = used < COOPERATIVE_INPUT_SIZE ?
		   COOPERATIVE_INPUT_SIZE - used : 0;
	u32 n = arg->input ? min(arg->input_size, room) : 0, done;

	for (done = 0; done < n;) {
		u32 at = (head + done) % COOPERATIVE_INPUT_SIZE;
		u32 chunk = min(n - done, COOPERATIVE_INPUT_SIZE - at);

		if (copy_from_user(s->input + at, src + done, chunk))
			return -EFAULT;
		done += chunk;
	}
	arg->input_size = n;
	if (n) {
		s->input_head = head + n;
		s->vcpu[0].pending_irqs |= BIT(COOPERATIVE_IRQ_KEYBOARD);
	}
	if (arg->flags & COOPERATIVE_RUN_POWER_BUTTON)
		s->vcpu[0].pending_irqs |= BIT(COOPERATIVE_IRQ_POWER);
	return 0;
}

/* The guest's one-shot timer: due means its line becomes pending. */
static void run_timer(struct cooperative_vcpu_state *v)
{
	if (v->timer_deadline && rdtsc() >= v->timer_deadline) {
		v->pending_irqs |= BIT(COOPERATIVE_IRQ_TIMER);
		v->timer_deadline = 0;
	}
}

/* Nanoseconds until the guest's timer is due (at least 1), 0: none. */
static u64 run_timeout_ns(const struct cooperative_vcpu_state *v)
{
	u64 now = rdtsc();

	if (!v->timer_deadline)
		return 0;
	if (v->timer_deadline <= now || !tsc_khz)
		return 1;
	return max_t(u64, mul_u64_u32_div(v->timer_deadline - now,
					  NSEC_PER_MSEC, tsc_khz), 1);
}

/*
 * Where the guest resumes: its virtual-interrupt entry when it left on a
 * host interrupt with interrupts on and a line is pending, else 0 (where
 * it left). Never in the middle of an operation: those exits are calls.
 */
static u32 run_inject(struct colinux_run *r,
		      const struct cooperative_vcpu_state *v)
{
	if (r->last_exit != PASSAGE_EXIT_IRQ || !v->pending_irqs ||
	    !v->irq_entry ||
	    !(*(u32 *)(r->p->kva + G_EFLAGS) & X86_EFLAGS_IF))
		return 0;
	return v->irq_entry;
}

/* Lines the daemon's IRQFDs raised since the last look become pending. */
static void run_lines(struct colinux_run *r, struct cooperative_vcpu_state *v)
{
	if (r->ev)
		v->pending_irqs |= colinux_events_take(r->ev);
}

/*
 * Halt polling (see halt_poll_ns): watch for a line or the guest's timer
 * for up to the window. True when one came (it is pending now).
 */
static bool run_halt_poll(struct colinux_run *r,
			  struct cooperative_vcpu_state *v)
{
	u64 start, window = r->poll_ns;

	if (!window || !r->ev)
		return false;
	start = ktime_get_ns();
	do {
		if (colinux_events_pending(r->ev) ||
		    (v->timer_deadline && rdtsc() >= v->timer_deadline)) {
			run_timer(v);
			run_lines(r, v);
			if (v->pending_irqs)
				return true;
		}
		cpu_relax();
	} while (ktime_get_ns() - start < window && !need_resched() &&
		 !signal_pending(current) && single_task_running());
	return false;
}

/*
 * The guest idled for @idle_ns since it could not be served by polling:
 * grow the window while idles are short, drop it after a long one.
 */
static void run_halt_poll_adapt(struct colinux_run *r, u64 idle_ns)
{
	/* Never longer than a time slice: RUN must come back to the daemon. */
	u64 max = min_t(u64, READ_ONCE(halt_poll_ns), RUN_SLICE_NS);

	if (idle_ns <= r->poll_ns)
		return;
	if (idle_ns > max)
		r->poll_ns = 0;
	else if (r->poll_ns < max)
		r->poll_ns = min(max, r->poll_ns ? r->poll_ns * 2 :
				 RUN_POLL_START_NS);
}

/*
 * COOPERATIVE_OP_VIRTIO: a NOTIFY of a queue bound to an eventfd
 * (IOEVENTFD) signals it and the guest goes on with STATUS_OK; one with
 * a device or queue out of range gets STATUS_INVALID at once. Both are
 * served here (true); everything else goes to the daemon (false).
 */
static bool run_notify(struct colinux_run *r, struct cooperative_vcpu_state *v)
{
	u64 device = v->params[0], queue = v->params[2];

	if (v->params[1] != COOPERATIVE_VIRTIO_REQ_NOTIFY || !r->ev)
		return false;
	if (device >= COOPERATIVE_VIRTIO_MAX_DEVICES ||
	    queue >= COOPERATIVE_VIRTIO_MAX_QUEUES) {
		run_warn("guest VIRTIO NOTIFY refused: device %llu queue %llu out of range",
			 device, queue);
		v->status = COOPERATIVE_STATUS_INVALID;
		return true;
	}
	if (!colinux_events_notify(r->ev, device, queue))
		return false;
	v->status = COOPERATIVE_STATUS_OK;
	return true;
}

/*
 * MESSAGE_TO_MONITOR: a valid message goes to the daemon (true); a bad
 * one is refused with status INVALID and the guest resumed (false).
 */
static bool run_message(struct colinux_run *r, struct cooperative_vcpu_state *v,
			struct cooperative_ioctl_run *arg)
{
	u64 pa = v->params[0], size = v->params[1];
	struct cooperative_message m;
	const char *bad = NULL;

	if (size < sizeof(m))
		bad = "params[1] smaller than the message header";
	else if (pa + size < pa || pa + size > (r->nr_frames << PAGE_SHIFT))
		bad = "message outside guest RAM";
	else if (run_copy(r, pa, &m, sizeof(m), false))
		bad = "header outside guest RAM";
	else if (m.size > size - sizeof(m))
		bad = "header size beyond params[1]";
	if (bad) {
		run_warn("guest MESSAGE_TO_MONITOR refused: %s", bad);
		v->status = COOPERATIVE_STATUS_INVALID;
		return false;
	}
	arg->exit_reason = COOPERATIVE_RUN_EXIT_OPERATION;
	arg->operation = COOPERATIVE_OP_MESSAGE_TO_MONITOR;
	memset(arg->params, 0, sizeof(arg->params));
	arg->params[0] = m.to;
	arg->params[1] = m.type;
	arg->params[2] = m.size;
	arg->text_size = run_text(r, pa + sizeof(m), m.size, arg->text);
	return true;
}

u32 colinux_run_state(const struct colinux_run *r)
{
	if (r->dead)
		return COOPERATIVE_GUEST_STATE_DEAD;
	return r->started ? COOPERATIVE_GUEST_STATE_RUNNING :
			    COOPERATIVE_GUEST_STATE_CREATED;
}

int colinux_run(struct colinux_run *r, struct cooperative_ioctl_run *arg)
{
	struct cooperative_vcpu_state *v = &r->shared->vcpu[0];
	struct colinux_passage *p = r->p;
	u64 start = ktime_get_ns();
	int ret;

	if (r->dead)
		return -ESRCH;
	if (!r->started) {
		ret = run_start(r, arg->entry, arg->stack);
		if (!ret && arg->boot)
			ret = run_boot(r, arg->boot);
		if (ret)
			return ret;
		r->started = true;
		r->linux_boot = arg->boot != 0;
		INIT_DELAYED_WORK(&r->watchdog, run_watchdog);
		run_watchdog_queue(r, raw_smp_processor_id());
	} else if (arg->entry || arg->stack || arg->boot) {
		return -EINVAL;
	}
	ret = run_input(r, arg);
	if (ret)
		return ret;
	if (r->wait == RUN_WAIT_STATUS) {
		v->status = arg->status;
	} else if (r->wait == RUN_WAIT_IDLE) {
		v->status = COOPERATIVE_STATUS_OK;
		run_halt_poll_adapt(r, ktime_get_ns() - r->idle_at);
	}
	r->wait = RUN_WAIT_NONE;
	arg->idle_round_trips = 0;
	arg->halt_polls = 0;
	arg->interrupts = 0;
	arg->text_size = 0;
	arg->timeout_ns = 0;
	for (;;) {
		u32 reason;

		run_timer(v);
		run_lines(r, v);
		V(u32, G_INJECT) = run_inject(r, v);
		reason = passage_switch(p);
		V(u32, G_INJECT) = 0;
		if (reason == PASSAGE_EXIT_REFUSED) {
			run_warn("RUN refused: this CPU has VMX turned on (another hypervisor, e.g. KVM running a VM); a cooperative guest cannot switch while it is");
			return -EBUSY;
		}
		if (reason != PASSAGE_EXIT_RETRY)
			r->last_exit = reason;

		if (reason == PASSAGE_EXIT_RETRY) {
			/* Not switched: a line came; take it, decide again. */
		} else if (reason == PASSAGE_EXIT_IRQ) {
			arg->interrupts++;
		} else if (reason == PASSAGE_EXIT_FAULT) {
			r->dead = true;
			arg->exit_reason = COOPERATIVE_RUN_EXIT_FAULT;
			arg->vector = V(u32, P_EXIT_VECTOR);
			arg->fault_eip = V(u32, P_EXIT_EIP);
			arg->fault_address = V(u32, P_EXIT_CR2);
			return 0;
		} else if (v->operation == COOPERATIVE_OP_IDLE) {
			if (r->linux_boot) {
				run_timer(v);
				run_lines(r, v);
				if (!v->pending_irqs && run_halt_poll(r, v))
					arg->halt_polls++;
				if (!v->pending_irqs) {
					r->wait = RUN_WAIT_IDLE;
					arg->exit_reason = COOPERATIVE_RUN_EXIT_IDLE;
					arg->timeout_ns = run_timeout_ns(v);
					r->idle_at = ktime_get_ns();
					return 0;
				}
			}
			arg->idle_round_trips++;
			v->status = COOPERATIVE_STATUS_OK;
		} else if (v->operation == COOPERATIVE_OP_MESSAGE_TO_MONITOR) {
			if (run_message(r, v, arg)) {
				r->wait = RUN_WAIT_STATUS;
				return 0;
			}
		} else if (v->operation == COOPERATIVE_OP_VIRTIO &&
			   run_notify(r, v)) {
			/* A queue notification served here: the guest goes on. */
		} else {
			arg->exit_reason = COOPERATIVE_RUN_EXIT_OPERATION;
			arg->operation = v->operation;
			memcpy(arg->params, v->params, sizeof(arg->params));
			if (v->operation == COOPERATIVE_OP_DEBUG_LINE)
				arg->text_size = run_text(r, v->params[0],
							  v->params[1], arg->text);
			if (v->operation == COOPERATIVE_OP_TERMINATE) {
				r->dead = true;
				/* A NUL-terminated reason: its size counts the NUL. */
				if (v->params[1]) {
					run_text(r, v->params[1], v->params[2],
						 arg->text);
					arg->text_size = strnlen(arg->text,
								 COOPERATIVE_RUN_TEXT_SIZE);
				}
			}
			r->wait = RUN_WAIT_STATUS;
			return 0;
		}
		/*
		 * Served here: a forwarded interrupt, an IDLE, a bad message, a
		 * queue notification, a switch not made.
		 */
		if (r->linux_boot && ktime_get_ns() - start > RUN_SLICE_NS) {
			arg->exit_reason = COOPERATIVE_RUN_EXIT_YIELD;
			return 0;
		}
		if (signal_pending(current)) {
			arg->exit_reason = COOPERATIVE_RUN_EXIT_INTERRUPTED;
			return 0;
		}
		cond_resched();
	}
}

/*
 * An NMI taken while the switch-time IDT is loaded is recorded and then
 * replayed to the host's NMI handler after the switch.
 */
int colinux_passage_nmi_run(void)
{
	struct colinux_passage *p;
	u64 seen[PASSAGE_SEEN] = { 0 };
	u32 reason;
	int ret = 0;

	if (passage_vmx_on())
		return -EBUSY;
	p = passage_create();
	if (!p)
		return -ENOMEM;
	passage_selftest_guest(p, colinux_passage_selftest_nmi, 0);
	reason = passage_switch_seen(p, seen);
	pr_info("passage NMI test: exit %u, NMI recorded during the switch: %llu, replayed to the host\n",
		reason, seen[2]);
	if (reason != PASSAGE_EXIT_CALL || seen[2] != 1)
		ret = -EIO;
	passage_free(p);
	return ret;
}
