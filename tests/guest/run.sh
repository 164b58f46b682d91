#!/bin/sh
# In-guest entry: set the guest up the way an installed system is (group
# msr, test users, the udev rule), then run the in-guest pytest suite and save
# the kernel log for the host to check.  Runs as root inside the VM.
set -u
R=${MSRDRV_RESULTS:?}
PY=${MSRDRV_PYTHON:-python3}

# virtme hides /etc/shadow behind a tmpfs file that useradd cannot replace:
# uncover the overlay's own copy so user and group tools work.
mountpoint -q /etc/shadow && umount /etc/shadow
getent group msr >/dev/null || groupadd --system msr
id msruser >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh -G msr msruser
id msruser2 >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh -G msr msruser2
id otheruser >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh otheruser
install -m 0644 udev/60-msrdrv.rules /etc/udev/rules.d/60-msrdrv.rules
udevadm control --reload

# Run from a world-readable copy: the checkout may sit in a private home
# directory, and the tests' unprivileged users must read msrctl and the
# compiled helpers.
SRC=/tmp/msrdrv-src
rm -rf "$SRC" && mkdir -p "$SRC"
cp -a msrctl tests dkms udev pyproject.toml "$SRC"/
chmod -R a+rX "$SRC"
cd "$SRC" || exit 1

[ $# -eq 0 ] && set -- tests/guest
echo "msrdrv-tests: suite starts" > /dev/kmsg
# A limit per test (pytest-timeout; the slowest takes about 50 s on an idle
# machine): a hung test fails with its stack and the rest still run.
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$PWD "$PY" -m pytest -p no:cacheprovider \
	--timeout="${MSRDRV_TEST_TIMEOUT:-300}" --junitxml="$R/guest.xml" --durations=12 -v "$@"
rc=$?
# make test-debug only: the module's coverage counts, before the guest goes.
[ -n "${MSRDRV_GCOV_OUT:-}" ] && sh tests/debug/gcov-collect.sh "$MSRDRV_GCOV_OUT"
dmesg > "$R/dmesg.txt"
exit $rc
