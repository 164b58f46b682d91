// SPDX-License-Identifier: GPL-2.0
/*
 * A seed-style client: fills struct msrdrv_legacy_cmd commands and calls
 * IOCTL_MSR_CMDS, compiled against the shipped msrdrv.h.  The commands are
 * placed at the very end of a page followed by an inaccessible page, so the
 * driver must not read past the STOP.
 *
 * usage: legacy_cmds read|fault|full|nostop|badop|readonly
 * prints "ret <r> errno <e>" then one "op ecx value" line per command.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "msrdrv.h"

static struct msrdrv_legacy_cmd *at_page_end(unsigned int n)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED || mprotect(p + pg, pg, PROT_NONE))
		return NULL;
	return (struct msrdrv_legacy_cmd *)(p + pg) - n;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "read";
	struct msrdrv_legacy_cmd *c;
	unsigned int i, n;
	int fd, ret;

	if (!strcmp(mode, "full"))
		n = MSR_VEC_LIMIT;
	else if (!strcmp(mode, "nostop"))
		n = 3;
	else
		n = 4;
	c = at_page_end(n);
	if (!c)
		return 99;
	memset(c, 0, n * sizeof(*c));

	if (!strcmp(mode, "read")) {
		c[0].op = MSR_READ;
		c[0].ecx = 0x1b;
		c[1].op = MSR_RDTSC;
		c[2].op = MSR_RDTSC;
		c[3].op = MSR_STOP;
	} else if (!strcmp(mode, "badop") || !strcmp(mode, "readonly")) {
		/* badop: an unknown op after a read; readonly: no room for results */
		c[0].op = MSR_READ;
		c[0].ecx = 0x1b;
		c[1].op = strcmp(mode, "badop") ? MSR_RDTSC : 0x77;
		c[2].op = MSR_RDTSC;
		c[3].op = MSR_STOP;
	} else if (!strcmp(mode, "fault")) {
		c[0].op = MSR_READ;
		c[0].ecx = 0x1b;
		c[1].op = MSR_WRITE;
		c[1].ecx = 0x6e1;
		c[1].eax = 0;
		c[1].edx = 1u << 8;	/* bit 40: reserved, so #GP */
		c[2].op = MSR_READ;
		c[2].ecx = 0x1b;
		c[3].op = MSR_STOP;
	} else {
		/* full: no STOP, the limit ends it; nostop: runs off the page */
		for (i = 0; i < n; i++) {
			c[i].op = i % 2 ? MSR_RDTSC : MSR_READ;
			c[i].ecx = 0x1b;
		}
	}

	fd = open("/dev/msrdrv", O_RDWR);
	if (fd < 0) {
		perror("open /dev/msrdrv");
		return 98;
	}
	if (!strcmp(mode, "readonly") &&
	    mprotect((void *)((unsigned long)c & ~(sysconf(_SC_PAGESIZE) - 1)),
		     sysconf(_SC_PAGESIZE), PROT_READ))
		return 97;
	ret = ioctl(fd, IOCTL_MSR_CMDS, c);
	printf("ret %d errno %d\n", ret, ret < 0 ? errno : 0);
	for (i = 0; i < n; i++)
		printf("%u %#x %#llx\n", c[i].op, c[i].ecx,
		       (unsigned long long)c[i].value);
	close(fd);
	return 0;
}
