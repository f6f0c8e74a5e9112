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
#include <linux/io.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <asm/debugreg.h>
#include <asm/desc.h>
#include <asm/msr.h>
#include <asm/processor.h>
#include <asm/special_insns.h>
#include <asm/tlbflush.h>

#include "colinux_passage.h"
#include "colinux_passage_c.h"

extern const u8 colinux_passage_template[];
extern const u8 colinux_passage_template_end[];
extern const u8 colinux_passage_guest_entry[];
extern const u8 colinux_passage_selftest[];
long colinux_passage_enter(void *passage);

#define PT_PRESENT	0x001ULL
#define PT_RW		0x002ULL
#define PT_ADDR_MASK	0x000ffffffffff000ULL
/* Up to 5 host levels + 3 guest levels, each one page. */
#define PASSAGE_MAX_TABLES	12

struct colinux_passage {
	struct page *page;		/* the passage page */
	u8 *kva;			/* its kernel address */
	u32 phys;			/* its physical address (< 4 GiB) */
	struct page *tables[PASSAGE_MAX_TABLES];
	int nr_tables;
	u64 host_top_phys;		/* host transition top-level table */
	u64 *host_top;
	u32 guest_pdpt_phys;		/* guest transition PDPT */
};

static u64 *passage_new_table(struct colinux_passage *p, u64 *phys)
{
	struct page *page;

	if (p->nr_tables >= PASSAGE_MAX_TABLES)
		return NULL;
	page = alloc_page(GFP_KERNEL | GFP_DMA32 | __GFP_ZERO);
	if (!page)
		return NULL;
	p->tables[p->nr_tables++] = page;
	*phys = page_to_phys(page);
	return page_address(page);
}

/* The next-level table under @table[@index], made if absent. */
static u64 *passage_walk(struct colinux_passage *p, u64 *table, int index,
			 u64 flags)
{
	u64 phys;
	u64 *next;

	if (table[index] & PT_PRESENT)
		return phys_to_virt(table[index] & PT_ADDR_MASK);
	next = passage_new_table(p, &phys);
	if (!next)
		return NULL;
	table[index] = phys | flags;
	return next;
}

/* Map the passage page at @va in a PAE (3-level) table set. */
static int passage_map_pae(struct colinux_passage *p, u64 *pdpt, u32 va)
{
	u64 *pd, *pt;

	/* PDPTEs take only the present bit (RW/US are reserved there). */
	pd = passage_walk(p, pdpt, (va >> 30) & 3, PT_PRESENT);
	if (!pd)
		return -ENOMEM;
	pt = passage_walk(p, pd, (va >> 21) & 511, PT_PRESENT | PT_RW);
	if (!pt)
		return -ENOMEM;
	pt[(va >> 12) & 511] = p->phys | PT_PRESENT | PT_RW;
	return 0;
}

/* The host transition tables: kernel half of the host's, plus identity. */
static int passage_build_host_tables(struct colinux_passage *p)
{
	int levels = (native_read_cr4() & X86_CR4_LA57) ? 5 : 4;
	u64 *host = phys_to_virt(__read_cr3() & PT_ADDR_MASK);
	u64 *table;
	int level;

	p->host_top = passage_new_table(p, &p->host_top_phys);
	if (!p->host_top)
		return -ENOMEM;
	memcpy(p->host_top + 256, host + 256, 256 * sizeof(u64));
	table = p->host_top;
	for (level = levels; level > 1; level--) {
		int index = ((u64)p->phys >> (12 + 9 * (level - 1))) & 511;

		table = passage_walk(p, table, index, PT_PRESENT | PT_RW);
		if (!table)
			return -ENOMEM;
	}
	table[(p->phys >> 12) & 511] = p->phys | PT_PRESENT | PT_RW;
	return 0;
}

static int passage_build_guest_tables(struct colinux_passage *p)
{
	u64 phys;
	u64 *pdpt = passage_new_table(p, &phys);
	int ret;

	if (!pdpt)
		return -ENOMEM;
	p->guest_pdpt_phys = phys;
	ret = passage_map_pae(p, pdpt, p->phys);
	if (ret)
		return ret;
	return passage_map_pae(p, pdpt, PASSAGE_GUEST_VA);
}

static void passage_free(struct colinux_passage *p)
{
	int i;

	for (i = 0; i < p->nr_tables; i++)
		__free_page(p->tables[i]);
	if (p->page)
		__free_page(p->page);
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
	p->page = alloc_page(GFP_KERNEL | GFP_DMA32 | __GFP_ZERO);
	if (!p->page)
		goto fail;
	p->kva = page_address(p->page);
	p->phys = page_to_phys(p->page);
	if (passage_build_host_tables(p) || passage_build_guest_tables(p))
		goto fail;
	memcpy(p->kva, colinux_passage_template, code);

	gdt = (u64 *)(p->kva + PASSAGE_GDT);
	gdt[PASSAGE_CS64 / 8] = 0x00af9a000000ffffULL;
	gdt[PASSAGE_CS32 / 8] = 0x00cf9a000000ffffULL;
	gdt[PASSAGE_DS32 / 8] = 0x00cf92000000ffffULL;
	gdt[PASSAGE_TSS32 / 8] = passage_tss_desc(PASSAGE_GUEST_VA +
						  P_SELFTEST_TSS, 0x67);
	V(u16, PASSAGE_GDTR_ID) = PASSAGE_GDT_SIZE - 1;
	V(u64, PASSAGE_GDTR_ID + 2) = p->phys + PASSAGE_GDT;
	V(u16, PASSAGE_GDTR_GVA) = PASSAGE_GDT_SIZE - 1;
	V(u32, PASSAGE_GDTR_GVA + 2) = PASSAGE_GUEST_VA + PASSAGE_GDT;
	V(u64, H_TRANS_CR3) = p->host_top_phys;
	V(u32, G_TRANS_CR3) = p->guest_pdpt_phys;
	V(u32, P_PHYS) = p->phys;
	V(u32, P_GVA) = PASSAGE_GUEST_VA;
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
static void passage_selftest_guest(struct colinux_passage *p)
{
	u32 frame = P_SELFTEST_STACK_TOP - 11 * 4;
	u32 *stack = (u32 *)(p->kva + frame);

	memset(stack, 0, 8 * 4);	/* pushal image */
	stack[8] = PASSAGE_GUEST_VA +
		   (colinux_passage_selftest - colinux_passage_template);
	stack[9] = PASSAGE_CS32;
	stack[10] = X86_EFLAGS_FIXED;
	V(u32, G_ESP) = PASSAGE_GUEST_VA + frame;
	V(u32, G_CR0) = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP |
			X86_CR0_PG;
	V(u32, G_CR3) = p->guest_pdpt_phys;
	V(u32, G_CR4) = X86_CR4_PAE;
	V(u16, G_GDTR) = PASSAGE_GDT_SIZE - 1;
	V(u32, G_GDTR + 2) = PASSAGE_GUEST_VA + PASSAGE_GDT;
	V(u16, G_IDTR) = 0;
	V(u32, G_IDTR + 2) = 0;
	V(u16, G_TR) = PASSAGE_TSS32;
	V(u16, G_LDT) = 0;
	V(u16, G_SS) = PASSAGE_DS32;
	V(u16, G_DS) = PASSAGE_DS32;
	V(u16, G_ES) = PASSAGE_DS32;
	V(u16, G_FS) = PASSAGE_DS32;
	V(u16, G_GS) = PASSAGE_DS32;
	V(u32, P_SELFTEST_COUNT) = 0;
}

/* One round trip into the passage's guest and back, on this CPU. */
static void passage_switch(struct colinux_passage *p)
{
	struct desc_ptr *rw = (struct desc_ptr *)(p->kva + H_GDTR_RW);
	unsigned long flags, dr7;

	local_irq_save(flags);
	rw->size = GDT_SIZE - 1;
	rw->address = (unsigned long)get_cpu_gdt_rw(smp_processor_id());
	get_debugreg(dr7, 7);
	if (dr7)
		set_debugreg(0, 7);
	colinux_passage_enter(p->kva);
	if (dr7)
		set_debugreg(dr7, 7);
	local_irq_restore(flags);
}

int colinux_passage_selftest_run(unsigned long rounds)
{
	struct colinux_passage *p;
	unsigned long i;
	u64 start, cycles;
	int cpus_seen = 0, last_cpu = -1;

	if (native_read_cr4() & X86_CR4_VMXE) {
		pr_warn("passage self-test: VMX is on (another hypervisor); not switching\n");
		return -EBUSY;
	}
	p = passage_create();
	if (!p)
		return -ENOMEM;
	passage_selftest_guest(p);
	start = rdtsc();
	for (i = 0; i < rounds; i++) {
		passage_switch(p);
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
		if (need_resched())
			cond_resched();
	}
	cycles = rdtsc() - start;
	pr_info("passage self-test: %lu round trips host->guest->host, %llu TSC cycles each, CPU changes %d\n",
		rounds, rounds ? div64_u64(cycles, rounds) : 0, cpus_seen);
	passage_free(p);
	return 0;
}
