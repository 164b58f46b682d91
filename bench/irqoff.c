// SPDX-License-Identifier: GPL-2.0
/*
 * How long can one msrdrv batch keep a target CPU from running its own
 * task?  A spinner pinned to the target CPU reads CLOCK_MONOTONIC in a tight
 * loop and records every gap above GAP_NS; another process, pinned
 * elsewhere, sends batches of N reads to the target CPU.  A gap is an
 * interrupts-off section plus IPI entry and exit, or the host descheduling
 * the vCPU: a run without batches gives that noise.  Prints one JSON object
 * with the number of gaps and their median, 99th percentile and maximum.
 *
 * Then the batches time themselves: N ops, every other one an RDTSC, on the
 * target CPU.  Inside an interrupts-off section consecutive RDTSCs are a
 * few hundred ns apart; between sections comes an IPI round trip.  Cutting
 * the series where a step exceeds 8 times the median step gives the
 * sections; the longest one's span is the longest interrupts-off stretch.
 *
 *   irqoff TARGET_CPU SECONDS N [N...]   (N = 0: no batches, the baseline)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "msrdrv.h"

#define GAP_NS		20000
#define MAX_GAPS	1048576

struct shared {
	int stop;
	long ngaps;
	long long gaps[MAX_GAPS];
};

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		exit(1);
	}
}

/* The spinner: every gap above GAP_NS, in memory shared with the parent. */
static void spin(struct shared *sh)
{
	long long last = now_ns(), t;

	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		t = now_ns();
		if (t - last > GAP_NS && sh->ngaps < MAX_GAPS)
			sh->gaps[sh->ngaps++] = t - last;
		last = t;
	}
}

static struct shared *measure(int fd, int target, int other, double secs,
			      unsigned int n, long *batches)
{
	struct shared *sh;
	struct msrdrv_op *ops = NULL;
	struct msrdrv_batch b;
	long long end;
	unsigned int i;
	pid_t pid;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		exit(1);
	sh->stop = 0;
	sh->ngaps = 0;
	pid = fork();
	if (pid == 0) {
		pin(target);
		spin(sh);
		_exit(0);
	}
	pin(other);
	if (n) {
		ops = calloc(n, sizeof(*ops));
		for (i = 0; i < n; i++) {
			ops[i].op = MSRDRV_OP_READ;
			ops[i].cpu = target;
			ops[i].msr = 0x10;
		}
	}
	memset(&b, 0, sizeof(b));
	b.abi_version = MSRDRV_ABI_VERSION;
	b.nops = n;
	b.ops = (unsigned long)ops;
	usleep(100000);
	*batches = 0;
	end = now_ns() + (long long)(secs * 1e9);
	while (now_ns() < end) {
		if (n) {
			if (ioctl(fd, MSRDRV_IOC_BATCH, &b)) {
				fprintf(stderr, "batch of %u: %s\n", n, strerror(errno));
				exit(1);
			}
			(*batches)++;
		} else {
			usleep(1000);
		}
	}
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
	waitpid(pid, NULL, 0);
	free(ops);
	qsort(sh->gaps, sh->ngaps, sizeof(sh->gaps[0]), cmp_ll);
	return sh;
}

static long long pct(const struct shared *sh, int p)
{
	return sh->ngaps ? sh->gaps[(sh->ngaps - 1) * p / 100] : 0;
}

static int batch(int fd, struct msrdrv_op *ops, unsigned int n)
{
	struct msrdrv_batch b;

	memset(&b, 0, sizeof(b));
	b.abi_version = MSRDRV_ABI_VERSION;
	b.nops = n;
	b.ops = (unsigned long)ops;
	return ioctl(fd, MSRDRV_IOC_BATCH, &b);
}

/* TSC ticks per ns, from two RDTSC ops 200 ms apart. */
static double tsc_per_ns(int fd, int target)
{
	struct msrdrv_op op;
	long long t0, t1;
	unsigned long long c0;

	memset(&op, 0, sizeof(op));
	op.op = MSRDRV_OP_RDTSC;
	op.cpu = target;
	t0 = now_ns();
	if (batch(fd, &op, 1))
		exit(1);
	c0 = op.value;
	usleep(200000);
	t1 = now_ns();
	if (batch(fd, &op, 1))
		exit(1);
	return (double)(op.value - c0) / (t1 - t0);
}

/* The longest section of one batch of n ops, in ns; *nsec counts them. */
static double longest_section(int fd, int target, unsigned int n,
			      double per_ns, int *nsec)
{
	struct msrdrv_op *ops = calloc(n, sizeof(*ops));
	unsigned int i, k = n / 2, start = 0;
	long long *d = calloc(k, sizeof(*d));
	long long med, span, best = 0;

	for (i = 0; i < n; i++) {
		ops[i].op = i % 2 ? MSRDRV_OP_READ : MSRDRV_OP_RDTSC;
		ops[i].cpu = target;
		ops[i].msr = 0x10;
	}
	if (batch(fd, ops, n))
		exit(1);
	for (i = 1; i < k; i++)
		d[i] = ops[2 * i].value - ops[2 * i - 2].value;
	qsort(d + 1, k - 1, sizeof(*d), cmp_ll);
	med = d[k / 2];
	*nsec = 1;
	for (i = 1; i <= k; i++) {
		if (i < k && (long long)(ops[2 * i].value - ops[2 * i - 2].value) <= 8 * med)
			continue;
		span = ops[2 * (i - 1)].value - ops[2 * start].value;
		if (span > best)
			best = span;
		if (i < k)
			++*nsec;
		start = i;
	}
	free(d);
	free(ops);
	return best / per_ns;
}

int main(int argc, char **argv)
{
	int fd, target, i;
	double secs;
	long batches;
	struct shared *sh;
	const char *sep = "";
	double per_ns;

	if (argc < 4) {
		fprintf(stderr, "usage: %s TARGET_CPU SECONDS N [N...]\n", argv[0]);
		return 2;
	}
	target = atoi(argv[1]);
	secs = atof(argv[2]);
	fd = open(MSRDRV_DEVICE, O_RDWR);
	if (fd < 0) {
		perror(MSRDRV_DEVICE);
		return 1;
	}
	printf("{\"target_cpu\": %d, \"seconds\": %g, \"gap_ns\": %d, \"runs\": [",
	       target, secs, GAP_NS);
	for (i = 3; i < argc; i++) {
		sh = measure(fd, target, target ? 0 : 1, secs, atoi(argv[i]),
			     &batches);
		printf("%s{\"ops\": %s, \"batches\": %ld, \"gaps\": %ld, ",
		       i > 3 ? ", " : "", argv[i], batches, sh->ngaps);
		printf("\"median_gap_ns\": %lld, \"p99_gap_ns\": %lld, \"max_gap_ns\": %lld}",
		       pct(sh, 50), pct(sh, 99), pct(sh, 100));
		munmap(sh, sizeof(*sh));
		fflush(stdout);
	}
	printf("], \"sections\": [");
	per_ns = tsc_per_ns(fd, target);
	for (i = 3; i < argc; i++) {
		unsigned int n = atoi(argv[i]);
		double worst = 0, ns;
		int r, nsec, most = 0;

		if (n < 4)
			continue;
		for (r = 0; r < 10; r++) {
			ns = longest_section(fd, target, n, per_ns, &nsec);
			if (ns > worst)
				worst = ns;
			if (nsec > most)
				most = nsec;
		}
		printf("%s{\"ops\": %u, \"longest_ns\": %.0f, \"sections\": %d}",
		       sep, n, worst, most);
		sep = ", ";
	}
	printf("], \"tsc_per_ns\": %.3f}\n", per_ns);
	return 0;
}
