# msrdrv + msrctl.  The two commands the README documents:
#   make demo   boot Debian's kernel under QEMU, load msrdrv, batch-read MSRs
#   make test   everything CI runs: lint, host units (latest PyPI and Debian 12
#               stacks), the in-guest suite against the real module, and the
#               Debian packages end to end (make test-deb)
# Both install what they need first (tests/bootstrap.sh).

PY      := .venv/bin/python
RESULTS := results
# The guest kernel: the newest one installed with headers (linux-image-amd64).
KVER    ?= $(shell ls -d /lib/modules/*/build 2>/dev/null | cut -d/ -f4 | sort -V | tail -1)

.PHONY: all bootstrap module demo test test-host test-guest test-debug lint bench bench-startup bench-irqoff bench-sampler bench-exporter clean

all: module

bootstrap:
	@tests/bootstrap.sh

module: bootstrap
	$(MAKE) -s -C dkms KVER=$(KVER) MSRDRV_WERROR=1

demo: module
	$(PY) tests/vm.py --kernel $(KVER) -- tests/guest/demo.sh

lint: bootstrap
	tests/lint.sh

# Benchmarks (about 11 minutes; bench/README.md): the guest with 4 pinned vCPUs,
# start-up natively on the host; msr-tools and matplotlib are optional
# extras for the comparison and the plot.
bench: module
	@dpkg-query -W -f='$${Status}' msr-tools 2>/dev/null | grep -q "install ok" || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq msr-tools >/dev/null || true
	@$(PY) -c "import matplotlib" 2>/dev/null || .venv/bin/pip install -q matplotlib || true
	$(PY) bench/run.py

# The CLI's start-up alone, natively on the host (a few minutes, no guest):
# `msrctl read` against `python3 -c pass` and against `import typer`, both
# Python stacks, bytecode compiled (bench/results/startup.md).
bench-startup: bootstrap
	$(PY) bench/run.py --startup-only

# The longest stall one batch causes on its target CPU, this tree against the
# module before interrupts-off sections (bench/irqoff.py; emulated figures).
bench-irqoff: module
	$(PY) bench/irqoff.py

# The kernel sampler against a user-space loop that sleeps and submits one
# batch per period: rate, jitter, cost on the sampled CPUs, reader CPU time
# (bench/sampler.py; 4 pinned vCPUs, one boot, about 6 minutes; emulated figures).
bench-sampler: module
	$(PY) bench/sampler.py

# The CPU and wall time of one `msrctl exporter` scrape (bench/exporter.py; emulated figures).
bench-exporter: module
	$(PY) bench/exporter.py

test-host: bootstrap
	@mkdir -p $(RESULTS)
	$(PY) -m pytest tests/host -q --junitxml=$(RESULTS)/host.xml
	PYTHONPATH=$(CURDIR) /usr/bin/python3 -m pytest tests/host -q --junitxml=$(RESULTS)/host-debian12.xml

test-guest: module
	$(PY) tests/suite.py --kernel $(KVER)

# The in-guest suite under a debug kernel (issue 12): Debian's bookworm source
# (linux-source-6.1) with virtme-ng's small config plus KASAN, KFENCE, lockdep,
# UBSAN, DEBUG_OBJECTS and GCOV, built once and cached in
# /var/cache/msrdrv-debug-kernel (tests/debug/kernel.sh; about 40 minutes the
# first time on 2 cores; a guest then boots in about 11); the module built
# with coverage; the test files split among two guests run at once
# (tests/debug/shards.py); sanitizer and lockdep reports in a guest's log
# fail; results, findings and the coverage of dkms/*.c in results/debug/.
# DEBUG_TESTS= runs a subset of tests/guest.
DEBUG_TESTS ?=

test-debug: bootstrap
	tests/debug/run.sh $(DEBUG_TESTS)

# Runs every stage even after a failure, then one closing line for them all.
# The Debian packages build (clean chroot: mostly mirror and disk waits) in
# the background while lint, host and guest tests run, under a limit of
# their own; their guest test waits for them.
DEB_BUILD_LIMIT ?= 1800
test: bootstrap
	@mkdir -p $(RESULTS); rm -f $(RESULTS)/*.xml $(RESULTS)/deb-build.*; rc=0; \
	echo "test: building the Debian packages in the background (log: $(RESULTS)/deb-build.log)"; \
	( timeout $(DEB_BUILD_LIMIT) $(MAKE) --no-print-directory deb deb-upgrade >$(RESULTS)/deb-build.log 2>&1; \
		echo $$? >$(RESULTS)/deb-build.rc ) & \
	$(MAKE) --no-print-directory lint || rc=1; \
	$(MAKE) --no-print-directory test-host || rc=1; \
	$(MAKE) --no-print-directory test-guest || rc=1; \
	wait; cat $(RESULTS)/deb-build.log; brc=$$(cat $(RESULTS)/deb-build.rc 2>/dev/null || echo 1); \
	if [ "$$brc" = 0 ]; then \
		$(MAKE) --no-print-directory test-deb-guest DEB_TEST_ARGS='-k "not autopkgtest"' || rc=1; \
		tests/deb/piuparts.sh $(DEB_DIR) $(RESULTS)/piuparts.xml || rc=1; \
	else \
		rc=1; [ "$$brc" != 124 ] || echo "test: the package build ran out of its $(DEB_BUILD_LIMIT) s" >&2; \
		echo "test: the package build failed (exit $$brc; log above): no package test ran" >&2; \
	fi; \
	$(PY) tests/summary.py $(RESULTS)/host.xml $(RESULTS)/host-debian12.xml $(RESULTS)/guest.xml \
		$(RESULTS)/deb.xml $(RESULTS)/piuparts.xml || rc=1; \
	exit $$rc

clean:
	-$(MAKE) -s -C dkms KVER=$(KVER) clean
	rm -rf $(RESULTS) build

# --- Debian packages (issue 4, 16; owned with debian/ and tests/deb/) -------------
# make deb       the source package (orig tarball without debian/, .dsc) and
#                both binaries (arch all) built from it in a clean bookworm
#                chroot (pbuilder; base cached in /var/cache/pbuilder, made on
#                first use), then lintian on source and binaries (errors and
#                warnings fail); all in build/deb/.  DEB_BUILDER=host builds
#                on this machine instead (tests/deb/build.sh)
# make deb-upgrade  the same tree as the next patch release (build/deb-upgrade/,
#                built here, unit tests skipped): what the upgrade test installs
# make deb-lintian-trixie  make deb, then trixie's lintian (errors/warnings
#                fail) on the same .changes and any .dsc, in the cached trixie
#                chroot of make compat (tests/deb/lintian-release.sh)
# make deb-piuparts  piuparts' install-purge-install cycle on the .debs
# make test-deb  make deb and deb-upgrade, then boot the guest once: apt install
#                without kernel headers, the headers' DKMS hook, udev, group
#                access, upgrade with the module in use, remove/purge with it
#                loaded, the autopkgtest runner; checks the guest dmesg;
#                closing line 'deb: N passed, N failed, N skipped'
# The .debs are only ever installed inside the guest, never on this machine.
DEB_DIR := build/deb
DEB_UPGRADE_DIR := build/deb-upgrade
DEB_UPGRADE_VERSION := $(shell awk -F. '{ print $$1 "." $$2 "." $$3 + 1 }' dkms/VERSION)

.PHONY: deb deb-upgrade deb-repro deb-lintian-trixie deb-piuparts test-deb test-deb-guest

deb:
	tests/deb/build.sh $(DEB_DIR)

deb-upgrade:
	DEB_BUILDER=host DEB_BUILD_OPTIONS=nocheck MSRDRV_DEB_VERSION=$(DEB_UPGRADE_VERSION) \
		tests/deb/build.sh $(DEB_UPGRADE_DIR)

# Debian's reprotest: a second build under other hash seed, time (faketime), file
# order (disorderfs), path, locale, time zone, umask, HOME, CPUs, uname, host
# name must give identical .debs (diffoscope on a difference); ~20 s, nocheck.
deb-repro:
	tests/deb/repro.sh

# The next release's lintian knows tags bookworm's does not (aliased-location).
deb-lintian-trixie: deb
	tests/deb/lintian-release.sh trixie $(DEB_DIR)

# piuparts (root): install, purge, install, purge in a fresh copy of the clean
# chroot, dependencies from the mirror; files left behind fail (~50 s).
deb-piuparts: deb
	@mkdir -p $(RESULTS)
	tests/deb/piuparts.sh $(DEB_DIR) $(RESULTS)/piuparts.xml

# DEB_TEST_ARGS: pytest arguments for the guest run; `make test` leaves out the
# autopkgtest runner (dkms-autopkgtest purges, reinstalls and builds once more:
# about 5 min under TCG on the 2-core machine) to keep `make test` near 25 minutes.
DEB_TEST_ARGS ?=

test-deb: bootstrap deb deb-upgrade
	$(MAKE) --no-print-directory test-deb-guest

# The guest part alone, on packages already built.
test-deb-guest: bootstrap
	$(PY) tests/deb/e2e.py --kernel $(KVER) --debs $(DEB_DIR) --upgrade-debs $(DEB_UPGRADE_DIR) -- $(DEB_TEST_ARGS)

# --- Full-system test (owned with tests/system/) ------------------------------
# make test-system  make deb and deb-upgrade, then a real Debian 12 machine
#                with systemd as PID 1, booted under QEMU (TCG) once per stage
#                from the kernel in its own /boot: apt install offline, DKMS
#                build, group access, both units enabled, reboot (the list in
#                force before user sessions), package upgrade with the units
#                running, kernel ABI upgrade to bookworm-backports (offline),
#                runtime lockdown, module.sig_enforce=1, lockdown=integrity,
#                purge with the exporter running.  The image (debootstrap;
#                systemd, the kernel, DKMS and only the .debs' Depends) is
#                built once and cached in /var/cache/msrdrv-system
#                (tests/system/image.sh); each run boots a copy.  Rewrites
#                tests/system/results.md and build/system/results.json;
#                closing line 'system: N passed, N failed'.  Not part of
#                make test: 12-17 min on the idle 2-core machine (image
#                cached or not) on top of make test's ~24 would pass the
#                25-minute budget of make test.  SYSTEM_DEBS= and
#                SYSTEM_UPGRADE_DEBS= test other .debs (test-system-guest
#                skips the package build)
.PHONY: test-system test-system-guest

test-system: bootstrap deb deb-upgrade
	$(MAKE) --no-print-directory test-system-guest

test-system-guest: bootstrap
	tests/system/run.py

# --- Kernel compatibility (issue 6; owned with tests/compat/) -----------------
# make compat        build dkms/ with -Werror, then `dkms build -k`, against
#                    linux-headers-amd64 of bullseye, bookworm, trixie and sid,
#                    each in a debootstrap chroot of that release (cached in
#                    /var/cache/msrdrv-compat; COMPAT_RELEASES= picks others);
#                    rewrites tests/compat/results.md; 'compat: N passed, N failed'
# make compat-boot   the in-guest suite on sid's newest kernel (COMPAT_BOOT=
#                    picks another release, COMPAT_BOOT_TESTS= a subset of
#                    tests/guest), booted from its linux-image .deb; nothing is
#                    installed on the host, KVER's default is unchanged
# make compat-clean  drop the cached chroots
COMPAT_RELEASES ?= bullseye bookworm trixie sid
COMPAT_BOOT     ?= sid
COMPAT_BOOT_TESTS ?=

.PHONY: compat compat-boot compat-clean

compat:
	tests/compat/matrix.sh $(COMPAT_RELEASES)

compat-boot: bootstrap
	tests/compat/boottest.sh $(COMPAT_BOOT) $(COMPAT_BOOT_TESTS)

compat-clean:
	tests/compat/clean.sh
