// SPDX-License-Identifier: GPL-2.0
/*
 * Random ioctls against /dev/msrdrv: random headers, op codes, flags, CPUs,
 * MSRs and counts (0 and huge included), bad and unaligned pointers, arrays
 * and headers that run into an unmapped page, random ioctl numbers.
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
