// SPDX-License-Identifier: GPL-2.0
/*
 * Concurrency and CPU hotplug: THREADS threads each submit BATCHES batches
 * that read IA32_APIC_BASE and the TSC on every CPU, while one more thread
 * takes CPU 1 offline and back online over and over.  Every op must come
 * back right (APIC_BASE 0xfee00900 on CPU 0, 0xfee00800 elsewhere) or with
 * -ENXIO for an offline CPU; anything else is counted as wrong.
 *
 * usage: stress THREADS BATCHES NCPUS
 * prints: "batches B ops O ok K enxio E wrong W toggles T"
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "msrdrv.h"

#define MAX_CPUS	64

static int nbatches, ncpus;
static atomic_long n_ok, n_enxio, n_wrong, n_batches, n_toggles;
static atomic_int done;

static void *worker(void *unused)
{
	struct msrdrv_op ops[2 * MAX_CPUS];
	struct msrdrv_batch hdr;
	int fd = open("/dev/msrdrv", O_RDWR);
	int b, c, i;

	if (fd < 0) {
		atomic_fetch_add(&n_wrong, 1);
		return NULL;
	}
	for (b = 0; b < nbatches; b++) {
		for (c = 0, i = 0; c < ncpus; c++) {
			ops[i++] = (struct msrdrv_op){ .op = MSRDRV_OP_READ,
						       .cpu = c, .msr = 0x1b };
			ops[i++] = (struct msrdrv_op){ .op = MSRDRV_OP_RDTSC,
						       .cpu = c };
		}
		hdr = (struct msrdrv_batch){ .abi_version = MSRDRV_ABI_VERSION,
					     .nops = i,
					     .ops = (uintptr_t)ops };
		if (ioctl(fd, MSRDRV_IOC_BATCH, &hdr) || hdr.ndone != (__u32)i) {
			atomic_fetch_add(&n_wrong, 1);
			continue;
		}
		for (c = 0; c < ncpus; c++) {
			struct msrdrv_op *rd = &ops[2 * c], *ts = &ops[2 * c + 1];
			__u64 want = c == 0 ? 0xfee00900 : 0xfee00800;

			if (!rd->err && rd->value == want && !ts->err &&
			    ts->value && rd->cpu == (__u32)c)
				atomic_fetch_add(&n_ok, 2);
			else if (rd->err == -ENXIO && ts->err == -ENXIO && c)
				atomic_fetch_add(&n_enxio, 2);
			else
				atomic_fetch_add(&n_wrong, 2);
		}
		atomic_fetch_add(&n_batches, 1);
	}
	close(fd);
	return NULL;
}

static void *toggler(void *unused)
{
	const char *path = "/sys/devices/system/cpu/cpu1/online";
	int on = 0;

	while (!atomic_load(&done)) {
		int fd = open(path, O_WRONLY);

		if (fd < 0)
			break;
		if (write(fd, on ? "1" : "0", 1) == 1)
			atomic_fetch_add(&n_toggles, 1);
		close(fd);
		on = !on;
		usleep(2000);
	}
	/* leave CPU 1 online */
	{
		int fd = open(path, O_WRONLY);

		if (fd >= 0) {
			if (write(fd, "1", 1) != 1)
				atomic_fetch_add(&n_wrong, 1);
			close(fd);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads = argc > 1 ? atoi(argv[1]) : 8;
	pthread_t th[64], tog;
	int i;

	nbatches = argc > 2 ? atoi(argv[2]) : 10000;
	ncpus = argc > 3 ? atoi(argv[3]) : 2;
	if (nthreads > 64 || ncpus > MAX_CPUS)
		return 99;
	pthread_create(&tog, NULL, toggler, NULL);
	for (i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	atomic_store(&done, 1);
	pthread_join(tog, NULL);
	printf("batches %ld ops %ld ok %ld enxio %ld wrong %ld toggles %ld\n",
	       atomic_load(&n_batches),
	       atomic_load(&n_ok) + atomic_load(&n_enxio) + atomic_load(&n_wrong),
	       atomic_load(&n_ok), atomic_load(&n_enxio), atomic_load(&n_wrong),
	       atomic_load(&n_toggles));
	return atomic_load(&n_wrong) ? 1 : 0;
}
