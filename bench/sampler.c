// SPDX-License-Identifier: GPL-2.0
/*
 * Kernel-timed sampling against the user-space alternative, in the guest.
 *
 *   sampler kernel|user|idle PERIOD_NS SECONDS [spin]
 *
 * The reader (or the loop) runs pinned to CPU 0; CPUs 1..N-1 are sampled,
 * each for three MSRs (MPERF, APERF, APIC_BASE) and a timestamp.
 *   kernel: msrdrv's sampler, one hrtimer per sampled CPU; the reader polls
 *           the sampler's fd (watermark: about 20 wakes a second), copies
 *           the new records' TSCs out of the read-only rings and hands them
 *           back with one CONSUME per wake.
 *   user:   a loop that sleeps to the next period (clock_nanosleep,
 *           TIMER_ABSTIME) and submits one batch with the three reads and an
 *           RDTSC for every sampled CPU; a period it wakes too late for is
 *           skipped and counted as missed, as the kernel's timer does.
 *   idle:   nothing: the baseline for spin.
 * spin: a spinner pinned to each sampled CPU reads CLOCK_MONOTONIC in a loop
 * and adds up every gap between SPIN_GAP_NS and SPIN_GAP_MAX_NS: the time
 * the CPU was taken from it by an interrupt (a sample, or anything else,
 * which idle measures).  Longer gaps are the host descheduling the vCPU
 * thread: counted apart, they would drown the figure in emulator noise.
 *
 * The reader's CPU time and the wall time cover the sampling loop only, not
 * the setup (the kernel sampler's rings are allocated and zeroed at start).
 *
 * Prints one JSON object: per sampled CPU the samples, dropped and missed,
 * the interval error (|TSC step - period|) percentiles over all CPUs, the
 * reader's CPU time, and the spinners' stolen time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "msrdrv.h"

#define MAX_CPUS	64
#define NMSRS		3
#define SPIN_GAP_NS	2000
#define SPIN_GAP_MAX_NS	1000000

static const __u32 msrs[NMSRS] = { 0xe7, 0xe8, 0x1b };

struct series {
	__u64 *tsc;
	size_t n, cap;
	__u64 samples, dropped, missed, throttled;
};

struct spin_shared {
	int go, stop;
	long long stolen_ns[MAX_CPUS];
	long long host_ns[MAX_CPUS];	/* gaps above SPIN_GAP_MAX_NS */
	long long spun_ns[MAX_CPUS];
	long long loops[MAX_CPUS];
};

static struct series ser[MAX_CPUS];
static int ncpu;
/* The sampling loop's own span: its CPU time and wall time. */
static struct rusage loop_r0, loop_r1;
static long long loop_t0, loop_t1;

static long long now_ns(clockid_t clk);

static void loop_begin(void)
{
	getrusage(RUSAGE_SELF, &loop_r0);
	loop_t0 = now_ns(CLOCK_MONOTONIC);
}

static void loop_end(void)
{
	loop_t1 = now_ns(CLOCK_MONOTONIC);
	getrusage(RUSAGE_SELF, &loop_r1);
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static long long now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		die("sched_setaffinity");
}

static void add(struct series *s, __u64 tsc)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 65536;
		s->tsc = realloc(s->tsc, s->cap * sizeof(*s->tsc));
		if (!s->tsc)
			die("realloc");
	}
	s->tsc[s->n++] = tsc;
	s->samples++;
}

static int open_dev(void)
{
	int fd = open(MSRDRV_DEVICE, O_RDWR);

	if (fd < 0)
		die("open " MSRDRV_DEVICE);
	return fd;
}

/* A sampler on CPUs 1..ncpu-1; fills *req (out fields) and returns its fd. */
static int start_sampler(int dev, __u64 period_ns, __u32 nrecords,
			 __u32 watermark, struct msrdrv_sampler_start *req)
{
	struct msrdrv_op ops[NMSRS];
	__u8 cpus[MAX_CPUS / 8] = { 0 };
	int i, fd;

	memset(ops, 0, sizeof(ops));
	for (i = 0; i < NMSRS; i++) {
		ops[i].op = MSRDRV_OP_READ;
		ops[i].cpu = MSRDRV_CPU_SELF;
		ops[i].msr = msrs[i];
	}
	for (i = 1; i < ncpu; i++)
		cpus[i / 8] |= 1 << (i % 8);
	memset(req, 0, sizeof(*req));
	req->abi_version = MSRDRV_ABI_VERSION;
	req->nops = NMSRS;
	req->nrecords = nrecords;
	req->watermark = watermark;
	req->period_ns = period_ns;
	req->ops = (uintptr_t)ops;
	req->cpus = (uintptr_t)cpus;
	req->cpus_size = sizeof(cpus);
	fd = ioctl(dev, MSRDRV_IOC_SAMPLER_START, req);
	if (fd < 0)
		die("MSRDRV_IOC_SAMPLER_START");
	return fd;
}

/* Copy out every new record's TSC, hand them back; returns records read. */
static size_t drain(int fd, const char *map, __u64 *tails)
{
	const struct msrdrv_sampler_header *h = (const void *)map;
	struct msrdrv_sampler_consume c = {
		.abi_version = MSRDRV_ABI_VERSION,
		.nrings = h->nrings,
		.tails = (uintptr_t)tails,
	};
	size_t got = 0;
	__u32 i;

	for (i = 0; i < h->nrings; i++) {
		const char *ring = map + h->ring_offset + i * h->ring_stride;
		const struct msrdrv_ring_header *r = (const void *)ring;
		__u64 head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
		__u64 seq, sum = 0;

		for (seq = tails[i]; seq < head; seq++) {
			const struct msrdrv_record *rec = (const void *)
				(ring + h->data_offset +
				 (seq & (h->nrecords - 1)) * h->record_size);
			int k;

			if (rec->type != MSRDRV_REC_SAMPLE)
				continue;
			add(&ser[r->cpu], rec->tsc);
			for (k = 0; k < NMSRS; k++)	/* the reader's work */
				sum += rec->values[k];
			got++;
		}
		tails[i] = head;
		ser[r->cpu].dropped = r->dropped;
		ser[r->cpu].missed = r->missed;
		ser[r->cpu].throttled = r->throttled;
		(void)sum;
	}
	if (got && ioctl(fd, MSRDRV_IOC_SAMPLER_CONSUME, &c))
		die("MSRDRV_IOC_SAMPLER_CONSUME");
	return got;
}

static void run_kernel(int dev, __u64 period_ns, double seconds)
{
	struct msrdrv_sampler_start req;
	__u64 tails[MAX_CPUS] = { 0 };
	__u32 wm = 50000000ULL / period_ns;	/* about 20 wakes a second */
	__u32 nrecords = 1024;
	struct pollfd pfd;
	long long end;
	char *map;
	int fd;

	wm = wm < 1 ? 1 : (wm > 16384 ? 16384 : wm);
	while (nrecords < 8 * wm)	/* room for 0.4 s of a late reader */
		nrecords *= 2;
	fd = start_sampler(dev, period_ns, nrecords, wm, &req);
	map = mmap(NULL, req.mmap_size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		die("mmap");
	pfd.fd = fd;
	pfd.events = POLLIN;
	loop_begin();
	end = now_ns(CLOCK_MONOTONIC) + (long long)(seconds * 1e9);
	while (now_ns(CLOCK_MONOTONIC) < end) {
		if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
			die("poll");
		drain(fd, map, tails);
	}
	if (ioctl(fd, MSRDRV_IOC_SAMPLER_STOP))
		die("MSRDRV_IOC_SAMPLER_STOP");
	drain(fd, map, tails);
	loop_end();
	munmap(map, req.mmap_size);
	close(fd);
}

static void run_user(int dev, __u64 period_ns, double seconds)
{
	int nops = (ncpu - 1) * (NMSRS + 1), i, c, k;
	struct msrdrv_op *ops = calloc(nops, sizeof(*ops));
	struct msrdrv_batch b = { .abi_version = MSRDRV_ABI_VERSION };
	long long next, end, now;
	struct timespec ts;

	if (!ops)
		die("calloc");
	for (c = 1, i = 0; c < ncpu; c++) {
		ops[i].op = MSRDRV_OP_RDTSC;
		ops[i++].cpu = c;
		for (k = 0; k < NMSRS; k++, i++) {
			ops[i].op = MSRDRV_OP_READ;
			ops[i].cpu = c;
			ops[i].msr = msrs[k];
		}
	}
	b.nops = nops;
	b.ops = (uintptr_t)ops;
	loop_begin();
	next = now_ns(CLOCK_MONOTONIC) + period_ns;
	end = next + (long long)(seconds * 1e9);
	while (next < end) {
		ts.tv_sec = next / 1000000000LL;
		ts.tv_nsec = next % 1000000000LL;
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		if (ioctl(dev, MSRDRV_IOC_BATCH, &b))
			die("MSRDRV_IOC_BATCH");
		for (c = 1, i = 0; c < ncpu; c++, i += NMSRS + 1)
			if (!ops[i].err)
				add(&ser[c], ops[i].value);
		next += period_ns;
		now = now_ns(CLOCK_MONOTONIC);
		if (now > next) {	/* late past a whole period: skip it */
			long long skip = (now - next) / period_ns + 1;

			for (c = 1; c < ncpu; c++)
				ser[c].missed += skip;
			next += skip * period_ns;
		}
	}
	loop_end();
	free(ops);
}

/* One spinner per sampled CPU, in shared memory; returns it. */
static struct spin_shared *spinners(void)
{
	struct spin_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int c;

	if (sh == MAP_FAILED)
		die("mmap");
	for (c = 1; c < ncpu; c++) {
		long long first, last, t, stolen = 0, host = 0, loops = 0;

		if (fork())
			continue;
		pin(c);
		while (!__atomic_load_n(&sh->go, __ATOMIC_ACQUIRE))
			;
		first = now_ns(CLOCK_MONOTONIC);
		last = first;
		while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
			t = now_ns(CLOCK_MONOTONIC);
			if (t - last > SPIN_GAP_MAX_NS)
				host += t - last;
			else if (t - last > SPIN_GAP_NS)
				stolen += t - last;
			last = t;
			loops++;
		}
		sh->stolen_ns[c] = stolen;
		sh->host_ns[c] = host;
		sh->spun_ns[c] = last - first;
		sh->loops[c] = loops;
		_exit(0);
	}
	return sh;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

static double cpu_s(const struct rusage *a, const struct rusage *b)
{
	return (b->ru_utime.tv_sec - a->ru_utime.tv_sec) +
	       (b->ru_stime.tv_sec - a->ru_stime.tv_sec) +
	       ((b->ru_utime.tv_usec - a->ru_utime.tv_usec) +
		(b->ru_stime.tv_usec - a->ru_stime.tv_usec)) / 1e6;
}

/* The kernel's TSC frequency, from a sampler's header. */
static __u32 tsc_khz(int dev)
{
	struct msrdrv_sampler_start req;
	const struct msrdrv_sampler_header *h;
	int fd = start_sampler(dev, 1000000000ULL, 2, 1, &req);
	__u32 khz;

	h = mmap(NULL, req.mmap_size, PROT_READ, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED)
		die("mmap");
	khz = h->tsc_khz;
	munmap((void *)h, req.mmap_size);
	close(fd);
	return khz;
}

static void report(const char *mode, __u64 period_ns, double seconds,
		   double wall, double reader_cpu, __u32 khz,
		   const struct spin_shared *sh)
{
	size_t total = 0, n = 0, c, i;
	long long *err;

	for (c = 1; c < (size_t)ncpu; c++)
		total += ser[c].n;
	err = malloc((total + 1) * sizeof(*err));
	if (!err)
		die("malloc");
	for (c = 1; c < (size_t)ncpu; c++)
		for (i = 1; i < ser[c].n; i++) {
			long long step = (long long)((ser[c].tsc[i] - ser[c].tsc[i - 1]) *
						     1e6 / khz);

			err[n++] = llabs(step - (long long)period_ns);
		}
	qsort(err, n, sizeof(*err), cmp_ll);
	printf("{\"mode\": \"%s\", \"period_ns\": %llu, \"seconds\": %g, \"wall_s\": %.4f, ",
	       mode, (unsigned long long)period_ns, seconds, wall);
	printf("\"reader_cpu_s\": %.6f, \"tsc_khz\": %u, \"cpus\": [", reader_cpu, khz);
	for (c = 1; c < (size_t)ncpu; c++) {
		printf("%s{\"cpu\": %zu, ", c > 1 ? ", " : "", c);
		printf("\"samples\": %llu, ", (unsigned long long)ser[c].samples);
		printf("\"dropped\": %llu, ", (unsigned long long)ser[c].dropped);
		printf("\"missed\": %llu, ", (unsigned long long)ser[c].missed);
		printf("\"throttled\": %llu, ", (unsigned long long)ser[c].throttled);
		printf("\"stolen_ns\": %lld, ", sh ? sh->stolen_ns[c] : -1);
		printf("\"host_ns\": %lld, ", sh ? sh->host_ns[c] : -1);
		printf("\"spun_ns\": %lld, ", sh ? sh->spun_ns[c] : -1);
		printf("\"spin_loops\": %lld}", sh ? sh->loops[c] : -1);
	}
	printf("], \"intervals\": %zu, ", n);
	printf("\"err_p50_ns\": %lld, ", n ? err[n / 2] : -1);
	printf("\"err_p99_ns\": %lld, ", n ? err[(size_t)(n * 0.99)] : -1);
	printf("\"err_max_ns\": %lld}\n", n ? err[n - 1] : -1);
	free(err);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "kernel";
	__u64 period_ns = argc > 2 ? strtoull(argv[2], NULL, 0) : 1000000;
	double seconds = argc > 3 ? atof(argv[3]) : 3.0;
	int spin = argc > 4 && !strcmp(argv[4], "spin");
	struct spin_shared *sh = NULL;
	int dev, c;
	__u32 khz;

	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu < 2 || ncpu > MAX_CPUS) {
		fprintf(stderr, "sampler: needs 2-%d CPUs, has %d\n", MAX_CPUS, ncpu);
		return 1;
	}
	dev = open_dev();
	khz = tsc_khz(dev);
	if (spin)
		sh = spinners();
	pin(0);
	if (sh) {
		__atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
		usleep(100000);	/* the spinners are running */
	}
	if (!strcmp(mode, "kernel")) {
		run_kernel(dev, period_ns, seconds);
	} else if (!strcmp(mode, "user")) {
		run_user(dev, period_ns, seconds);
	} else {
		loop_begin();
		usleep((useconds_t)(seconds * 1e6));
		loop_end();
	}
	if (sh) {
		__atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
		for (c = 1; c < ncpu; c++)
			wait(NULL);
	}
	report(mode, period_ns, seconds, (loop_t1 - loop_t0) / 1e9,
	       cpu_s(&loop_r0, &loop_r1), khz, sh);
	close(dev);
	return 0;
}
