// SPDX-License-Identifier: GPL-2.0
/*
 * Random ioctls against /dev/msrdrv: random headers, op codes, flags, CPUs,
 * MSRs and counts (0 and huge included), bad and unaligned pointers, arrays
 * and headers that run into an unmapped page, random ioctl numbers.  Kernel
 * samplers too: random SAMPLER_START requests (periods, ring sizes,
 * watermarks, CPU bitmaps, op sets, reserved fields); a sampler that starts
 * gets random mmap()s (write and exec asked for, wrong sizes and offsets),
 * poll(), CONSUMEs with random and valid tails and random ioctls, then is
 * closed.
 *
 * usage: fuzz N SEED root|user
 * "root" keeps its write ops on harmless MSRs (TSC_AUX, saved and put back
 * by the caller, and IA32_PKRS with a reserved bit, which faults), since a
 * privileged random write could wreck the guest.  "user" writes anywhere:
 * the module's policy must refuse it.  Prints one "errno count" line per
 * outcome and "total N".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "msrdrv.h"

#define ARENA_OPS	8192
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

static __u64 rng_state;

static __u64 rnd(void)
{
	/* xorshift64*: reproducible from the seed, no libc state */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static __u32 pick(const __u32 *v, unsigned int n)
{
	return v[rnd() % n];
}

static const __u32 msrs[] = {
	0x10, 0x1b, 0xe7, 0xe8, 0x3a, 0x1a0, 0x277, 0x6e1, 0x802, 0xc0000080,
	0xc0000081, 0xc0000082, 0xc0000100, 0xc0000101, 0xc0000103, 0x0,
	0xffffffff, 0x40000000, 0x12345678,
};

static const __u32 cpus[] = { 0, 1, 2, 3, MSRDRV_CPU_SELF, 4096, 0x7fffffff };

static const __u32 counts[] = { 0, 1, 2, 3, 31, 32, 33, 4095, 4096, 4097,
				   65536, 0x7fffffff, 0xffffffff };

static void random_op(struct msrdrv_op *op, int root)
{
	__u64 r = rnd();

	op->op = r % 8 == 0 ? rnd() & 0xffff : r % 5;	/* mostly valid */
	op->flags = rnd() % 6 == 0 ? rnd() & 0xffff :
		    (op->op == MSRDRV_OP_WRITE ? rnd() & 1 : 0);
	op->cpu = rnd() % 3 ? pick(cpus, 5) : (__u32)rnd();
	op->msr = rnd() % 4 ? pick(msrs, ARRAY_SIZE(msrs)) :
			      (__u32)rnd();
	op->err = (__s32)rnd();
	op->value = rnd();
	op->mask = rnd();
	if (root && op->op == MSRDRV_OP_WRITE) {
		/* privileged writes only where they cannot hurt */
		if (rnd() & 1) {
			op->msr = 0xc0000103;	/* TSC_AUX, restored by caller */
			op->value &= 0xffffffffULL;
		} else {
			op->msr = 0x6e1;	/* IA32_PKRS: bit 40 faults */
			op->value = 1ULL << 40;
			op->flags = 0;
		}
	}
}

/* Seed-form commands up to the edge; root writes only harmless MSRs. */
static void random_legacy(struct msrdrv_legacy_cmd *c, char *edge, int root)
{
	unsigned int k;

	for (k = 0; k < MSR_VEC_LIMIT && (char *)(c + k + 1) <= edge; k++) {
		c[k].op = rnd() % 6;
		c[k].ecx = rnd() % 2 ? pick(msrs, ARRAY_SIZE(msrs)) :
				       (__u32)rnd();
		c[k].value = rnd();
		if (root && c[k].op == MSR_WRITE) {
			c[k].ecx = 0xc0000103;
			c[k].value &= 0xffffffffULL;
		}
	}
}

/* Sampler ops: mostly a valid set (READ or RDTSC on the sampled CPU). */
static void random_sampler_op(struct msrdrv_op *op)
{
	random_op(op, 0);
	if (rnd() % 8) {
		op->op = rnd() % 2 ? MSRDRV_OP_READ : MSRDRV_OP_RDTSC;
		op->flags = 0;
		op->mask = 0;
		op->cpu = MSRDRV_CPU_SELF;
	}
}

/* Poke a started sampler: mappings, poll, CONSUME, stray ioctls. */
static void poke_sampler(int sfd, const struct msrdrv_sampler_start *a,
			 char *scratch, long pg)
{
	static const int prots[] = { PROT_READ, PROT_READ | PROT_WRITE,
				     PROT_WRITE, PROT_READ | PROT_EXEC,
				     PROT_NONE };
	struct msrdrv_sampler_consume c;
	struct pollfd pfd = { .fd = sfd, .events = POLLIN };
	__u64 *tails = (__u64 *)scratch;
	size_t len = a->mmap_size;
	const char *map = MAP_FAILED;
	unsigned int k, n = rnd() % 4;
	void *m;

	for (k = 0; k < n; k++) {
		size_t l = rnd() % 4 ? len : len + (rnd() % 3 - 1) * pg;
		off_t off = rnd() % 4 ? 0 : pg * (rnd() % 3);
		int prot = prots[rnd() % 5];

		m = mmap(NULL, l ? l : pg, prot,
			 rnd() % 4 ? MAP_SHARED : MAP_PRIVATE, sfd, off);
		if (m == MAP_FAILED)
			continue;
		/* Kept to read heads from: a whole, readable mapping. */
		if (map == MAP_FAILED && l == len && !off &&
		    (prot & PROT_READ)) {
			map = m;
			continue;
		}
		munmap(m, l ? l : pg);
	}
	poll(&pfd, 1, 0);
	for (k = 0; k < 4; k++) {
		const struct msrdrv_sampler_header *h = (const void *)map;
		unsigned int i;

		c.abi_version = rnd() % 8 ? MSRDRV_ABI_VERSION : rnd();
		c.nrings = rnd() % 4 ? a->nrings : rnd();
		c.tails = (uintptr_t)tails;
		if (rnd() % 8 == 0)
			c.tails = rnd();
		for (i = 0; i < a->nrings && i < 64; i++) {
			const struct msrdrv_ring_header *r;

			tails[i] = rnd() % 32;
			if (map != MAP_FAILED && rnd() % 2) {
				r = (const void *)(map + h->ring_offset +
						   i * h->ring_stride);
				tails[i] = r->head - rnd() % 2;
			}
		}
		ioctl(sfd, rnd() % 8 ? MSRDRV_IOC_SAMPLER_CONSUME :
		      (unsigned long)rnd(), &c);
	}
	if (map != MAP_FAILED)
		munmap((void *)map, len);
}

/* One random SAMPLER_START; returns its result, closing what it started. */
static int fuzz_sampler(int fd, char *arena, char *edge, long pg)
{
	struct msrdrv_sampler_start *a = (struct msrdrv_sampler_start *)arena;
	struct msrdrv_op *ops = (struct msrdrv_op *)(arena + pg);
	__u8 *cpus = (__u8 *)(arena + 2 * pg);
	unsigned int k;
	int ret;

	memset(a, 0, sizeof(*a));
	a->abi_version = rnd() % 16 ? MSRDRV_ABI_VERSION : rnd();
	a->flags = rnd() % 16 ? 0 : rnd();
	a->nops = rnd() % 4 ? 1 + rnd() % 8 : pick(counts, 13);
	a->nrecords = rnd() % 4 ? 1U << (1 + rnd() % 10) :
		      (rnd() % 8 ? 1U << (rnd() % 32) : (__u32)rnd());
	a->watermark = rnd() % 4 ? 1 + rnd() % a->nrecords : (__u32)rnd();
	a->period_ns = rnd() % 4 ? 100000 + rnd() % 10000000 :
		       (rnd() % 2 ? rnd() % 200000 : rnd());
	a->cpus_size = rnd() % 4 ? 1 : (rnd() % 2 ? rnd() % 2048 : rnd());
	for (k = 0; k < 64; k++)
		cpus[k] = rnd() % 4 ? rnd() & 3 : rnd();
	a->cpus = (uintptr_t)cpus;
	if (rnd() % 8 == 0)	/* a bitmap running into the unmapped page */
		a->cpus = (uintptr_t)(edge - rnd() % 4);
	else if (rnd() % 16 == 0)
		a->cpus = rnd();
	for (k = 0; k < 64; k++)
		random_sampler_op(&ops[k]);
	a->ops = (uintptr_t)ops;
	if (rnd() % 8 == 0)
		a->ops = (uintptr_t)(edge - sizeof(*ops) * (rnd() % 3));
	else if (rnd() % 16 == 0)
		a->ops = 0xffff888000000000ULL + (rnd() & 0xffffff);
	if (rnd() % 16 == 0)
		a->reserved[rnd() % 4] = rnd();
	a->nrings = rnd();	/* out fields: any input is fine */
	a->mmap_size = rnd();
	ret = ioctl(fd, MSRDRV_IOC_SAMPLER_START, a);
	if (ret >= 0) {
		poke_sampler(ret, a, arena + 3 * pg, pg);
		close(ret);
	}
	return ret;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int root = argc > 3 && !strcmp(argv[3], "root");
	long pg = sysconf(_SC_PAGESIZE);
	size_t arena_len = ARENA_OPS * sizeof(struct msrdrv_op);
	long counts_by_errno[256] = { 0 };
	char *arena, *edge;
	long i;
	int fd;

	rng_state = argc > 2 ? strtoull(argv[2], NULL, 0) | 1 : 1;
	/* a mapped arena followed by an inaccessible page */
	arena = mmap(NULL, arena_len + pg, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (arena == MAP_FAILED || mprotect(arena + arena_len, pg, PROT_NONE))
		return 99;
	edge = arena + arena_len;
	fd = open("/dev/msrdrv", O_RDWR);
	if (fd < 0) {
		perror("open /dev/msrdrv");
		return 98;
	}

	for (i = 0; i < n; i++) {
		struct msrdrv_batch *hdr = (struct msrdrv_batch *)arena;
		struct msrdrv_op *ops = (struct msrdrv_op *)(arena + pg);
		unsigned long cmd;
		void *arg = hdr;
		__u32 nops, k, room;
		__u64 where = rnd() % 16;
		int ret;

		nops = rnd() % 4 ? rnd() % 40 : pick(counts, 13);
		room = (arena_len - pg) / sizeof(*ops);
		/* where the op array lives: mostly valid, often at the edge */
		if (where < 8) {
			ops = (struct msrdrv_op *)(arena + pg);
		} else if (where < 11) {
			k = nops < room ? nops : room;
			ops = (struct msrdrv_op *)edge - k + rnd() % 2;
		} else if (where < 13) {
			ops = (struct msrdrv_op *)(arena + pg + 1 + rnd() % 31);
		}
		for (k = 0; k < 64 && k < room; k++) {
			if ((char *)(ops + k + 1) > edge)
				break;
			random_op(&ops[k], root);
		}
		if (nops > 64 && nops <= room && rnd() % 2)
			for (; k < nops && (char *)(ops + k + 1) <= edge; k++)
				random_op(&ops[k], root);

		hdr->abi_version = rnd() % 16 ? MSRDRV_ABI_VERSION : rnd();
		hdr->flags = rnd() % 4 ? 0 : (rnd() % 4 ? MSRDRV_BATCH_SNAPSHOT : rnd());
		hdr->self_cpu = rnd();	/* output only: any input is fine */
		hdr->nops = nops;
		hdr->ndone = rnd();
		hdr->nerrs = rnd();
		hdr->ops = (uintptr_t)ops;
		if (where == 13)
			hdr->ops = rnd();			/* wild pointer */
		else if (where == 14)
			hdr->ops = 0xffff888000000000ULL + (rnd() & 0xffffff);

		if (rnd() % 16 == 0) {
			ret = fuzz_sampler(fd, arena, edge, pg);
			counts_by_errno[ret < 0 ? errno & 0xff : 0]++;
			continue;
		}
		switch (rnd() % 16) {
		case 0:
			cmd = IOCTL_MSR_CMDS;
			arg = rnd() % 2 ? (void *)ops :
			      (void *)(edge - sizeof(struct msrdrv_legacy_cmd) * (1 + rnd() % 3));
			random_legacy(arg, edge, root);
			break;
		case 1:
			cmd = MSRDRV_IOC_INFO;
			arg = rnd() % 2 ? (void *)hdr : (void *)(edge - 8);
			break;
		case 2:
			cmd = MSRDRV_IOC_GET_ALLOWLIST;
			break;
		case 3:
			cmd = MSRDRV_IOC_SET_ALLOWLIST;	/* refused unless admin */
			break;
		case 4:
			cmd = (unsigned long)rnd();
			break;
		case 5:
			cmd = MSRDRV_IOC_BATCH;
			/* header cut short by the unmapped page */
			arg = edge - 1 - rnd() % sizeof(*hdr);
			break;
		case 6:
			cmd = MSRDRV_IOC_BATCH;
			arg = (void *)(uintptr_t)rnd();
			break;
		default:
			cmd = MSRDRV_IOC_BATCH;
			break;
		}
		ret = ioctl(fd, cmd, arg);
		counts_by_errno[ret < 0 ? errno & 0xff : 0]++;
	}
	close(fd);
	for (i = 0; i < 256; i++)
		if (counts_by_errno[i])
			printf("%ld %ld\n", i, counts_by_errno[i]);
	printf("total %ld\n", n);
	return 0;
}
