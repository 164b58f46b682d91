#!/bin/sh
# In-guest entry of the package test (tests/deb/e2e.py boots the guest):
# runs tests/deb/test_deb_e2e.py as root with Debian's python3 and pytest,
# then saves the kernel log for the host to check.  Nothing is set up by hand
# here: the group, the udev rule and the module come from the packages.
set -u
R=${MSRDRV_RESULTS:?}

# virtme hides /etc/shadow behind a tmpfs file that useradd and
# systemd-sysusers cannot replace: uncover the overlay's own copy.
mountpoint -q /etc/shadow && umount /etc/shadow

# Guest-only speed-up, not part of what is tested: man-db's trigger would
# re-index every manual page of the host root over 9p under TCG.
rm -f /var/lib/man-db/auto-update

echo "msrdrv-deb: package test starts" > /dev/kmsg
# -P: the checkout's msrctl/ must not shadow the installed package.
# Each apt step has its own limit (test_deb_e2e.py); pytest-timeout bounds
# every test as a whole, so one that hangs elsewhere fails on its own.
PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -P -m pytest -p no:cacheprovider \
	--timeout="${MSRDRV_TEST_TIMEOUT:-2400}" --junitxml="$R/deb.xml" --durations=0 -v tests/deb/test_deb_e2e.py "$@"
rc=$?
dmesg > "$R/deb-dmesg.txt"
exit $rc
